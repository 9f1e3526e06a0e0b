#!/usr/bin/env python3
"""Walks the mailbox owner's pages in a real, headless Chromium.

    python3 tests/peers/owner_browser.py PLAN SCREENSHOT_DIR

PLAN is a text file of steps, one a line, fields separated by tabs:

    size    WIDTH HEIGHT        the window's size in CSS pixels
    get     URL SHOT            load URL
    type    CSS VALUE           clear the field CSS matches and type VALUE
    click   CSS SHOT            click what CSS matches and wait for the next page
    link    TEXT SHOT           click the link whose text contains TEXT, likewise
    frame   CSS SHOT            report the document inside the iframe CSS matches
    setval  CSS VALUE           set a field's value without key events (a textarea;
                                `\n` in VALUE is a line break)

Every step but `type`, `setval` and `size` saves SCREENSHOT_DIR/SHOT (a PNG
of the whole page, at most 6000 pixels tall) and prints one JSON line whose values are all strings:
{"step", "url", "title", "text" (the visible text), "errors" (the console's
errors and warnings since the last report, one a line)}. A step that waits
for a next page waits until the old document is gone and the new one is
loaded (at most 15 s) and fails otherwise.

Uses Debian's chromium, chromium-driver and python3-selenium (selenium 4),
run by /usr/bin/python3. Only loopback is reachable, so every flag that
would make Chromium phone home is set, and proxies from the environment are
ignored. The browser is always shut down. Exit status 0 when every step
ran; anything else is a failure, described on stderr.
"""

import base64
import json
import os
import shutil
import sys
import tempfile
import traceback

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
NEXT_PAGE_WAIT = 15.0


class Walk:
    def __init__(self, driver, shots):
        self.driver = driver
        self.shots = shots

    def console(self):
        """The console's errors and warnings since the last call."""
        lines = []
        for entry in self.driver.get_log("browser"):
            if entry.get("level") in ("SEVERE", "WARNING"):
                lines.append(f"{entry.get('level')}: {entry.get('message', '')}")
        return "\n".join(lines)

    def shot(self, name):
        """Saves the whole page, not only the window's part of it."""
        d = self.driver
        size = d.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        png = d.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": min(size["height"], 6000),
                    "scale": 1,
                },
            },
        )["data"]
        with open(os.path.join(self.shots, name), "wb") as f:
            f.write(base64.b64decode(png))

    def report(self, step, shot, title=None, text=None, viewport=False):
        if viewport:
            self.driver.save_screenshot(os.path.join(self.shots, shot))
        else:
            self.shot(shot)
        d = self.driver
        if text is None:
            text = d.find_element("tag name", "body").text
        line = {
            "step": step,
            "url": d.current_url,
            "title": d.title if title is None else title,
            "text": text,
            "errors": self.console(),
        }
        print(json.dumps(line), flush=True)

    def next_page(self, element, step, shot):
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        old = self.driver.find_element("tag name", "html")
        element.click()
        wait = WebDriverWait(self.driver, NEXT_PAGE_WAIT)
        wait.until(ec.staleness_of(old))
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
        self.report(step, shot)

    def run(self, fields):
        from selenium.webdriver.common.by import By

        d = self.driver
        verb, args = fields[0], fields[1:]
        if verb == "size":
            d.set_window_size(int(args[0]), int(args[1]))
        elif verb == "get":
            d.get(args[0])
            self.report("get", args[1])
        elif verb == "type":
            field = d.find_element(By.CSS_SELECTOR, args[0])
            field.clear()
            field.send_keys(args[1])
        elif verb == "setval":
            field = d.find_element(By.CSS_SELECTOR, args[0])
            value = args[1].replace("\\n", "\n")
            d.execute_script("arguments[0].value = arguments[1];", field, value)
        elif verb == "click":
            self.next_page(d.find_element(By.CSS_SELECTOR, args[0]), "click", args[1])
        elif verb == "link":
            self.next_page(d.find_element(By.PARTIAL_LINK_TEXT, args[0]), "link", args[1])
        elif verb == "frame":
            frame = d.find_element(By.CSS_SELECTOR, args[0])
            d.execute_script("arguments[0].scrollIntoView()", frame)
            d.switch_to.frame(frame)
            try:
                title = d.title
                text = d.find_element("tag name", "body").text
            finally:
                d.switch_to.default_content()
            # The window's part of the page, scrolled to the frame: a
            # capture beyond the window leaves a sandboxed frame blank.
            self.report("frame", args[1], title=title, text=text, viewport=True)
        else:
            raise ValueError(f"unknown step {verb!r}")


def run(plan, shots):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="boxtrap-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--no-proxy-server",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})

    driver = None
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(30)
        driver.set_window_size(1024, 768)
        walk = Walk(driver, shots)
        for n, line in enumerate(plan, 1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            try:
                walk.run(fields)
            except Exception as e:
                raise RuntimeError(f"step {n} {fields!r} failed on {driver.current_url}") from e
    finally:
        try:
            if driver is not None:
                driver.quit()
        finally:
            shutil.rmtree(profile, ignore_errors=True)


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    plan_path, shots = sys.argv[1], sys.argv[2]
    if not os.path.isdir(shots):
        print(f"owner_browser.py: not a directory: {shots}", file=sys.stderr)
        return 2
    with open(plan_path, encoding="utf-8") as f:
        plan = f.readlines()
    # Only loopback: never route the driver or the browser through a proxy.
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        os.environ.pop(var, None)
    try:
        run(plan, shots)
    except Exception:
        print("owner_browser.py: failed:", file=sys.stderr)
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
