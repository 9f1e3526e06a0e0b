#!/usr/bin/env python3
"""Opens a sender's verification page in a real, headless Chromium.

    python3 tests/peers/browser.py URL SCREENSHOT_DIR [--no-click]

Loads URL, saves SCREENSHOT_DIR/verify-page.png and prints one JSON line
{"step":"get","title":...,"text":...} with the page's title and visible
text. Unless --no-click is given it then clicks the form's submit button,
waits for the next page (its title changes, at most 15 s), saves
SCREENSHOT_DIR/confirmed.png and prints {"step":"post",...} likewise.

Uses Debian's chromium, chromium-driver and python3-selenium (selenium 4),
run by /usr/bin/python3 (the packaged module is not on other Pythons'
path). Only loopback is reachable, so every flag that would make Chromium
phone home is set, and proxies from the environment are ignored. The
browser is always shut down. Exit status 0 on success; anything else is a
failure, described on stderr.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
NEXT_PAGE_WAIT = 15.0


def emit(step, driver):
    body = driver.find_element("tag name", "body")
    line = {"step": step, "title": driver.title, "text": body.text}
    print(json.dumps(line), flush=True)


def screenshot(driver, path):
    if not driver.save_screenshot(path):
        raise RuntimeError(f"could not save a screenshot to {path}")


def run(url, shots, click):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

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
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)

    driver = None
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(30)
        driver.set_window_size(1024, 768)

        driver.get(url)
        screenshot(driver, os.path.join(shots, "verify-page.png"))
        emit("get", driver)
        if not click:
            return

        before = driver.title
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        deadline = time.monotonic() + NEXT_PAGE_WAIT
        while time.monotonic() < deadline:
            try:
                if (
                    driver.title != before
                    and driver.execute_script("return document.readyState") == "complete"
                ):
                    break
            except Exception:
                pass  # the page is being replaced; ask again
            time.sleep(0.1)
        else:
            print(
                f"browser.py: title still {before!r} after {NEXT_PAGE_WAIT:.0f} s",
                file=sys.stderr,
            )
        screenshot(driver, os.path.join(shots, "confirmed.png"))
        emit("post", driver)
    finally:
        try:
            if driver is not None:
                driver.quit()
        finally:
            shutil.rmtree(profile, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("screenshot_dir")
    parser.add_argument(
        "--no-click",
        action="store_true",
        help="only load the page and report it; do not press the button",
    )
    args = parser.parse_args()
    if not os.path.isdir(args.screenshot_dir):
        print(f"browser.py: not a directory: {args.screenshot_dir}", file=sys.stderr)
        return 2
    # Only loopback: never route the driver or the browser through a proxy.
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        os.environ.pop(var, None)
    try:
        run(args.url, args.screenshot_dir, not args.no_click)
    except Exception:
        print("browser.py: failed:", file=sys.stderr)
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
