#!/usr/bin/env python3
"""Walks the mailbox owner's pages in a real, headless Chromium.

    python3 tests/peers/owner_browser.py PLAN SCREENSHOT_DIR [AXE_JS]

PLAN is a text file of steps, one a line, fields separated by tabs:

    size    WIDTH HEIGHT        the window's size in CSS pixels
    get     URL SHOT            load URL
    type    CSS VALUE           clear the field CSS matches and type VALUE
    click   CSS SHOT            click what CSS matches and wait for the next page
    link    TEXT SHOT           click the link whose text contains TEXT, likewise
    frame   CSS SHOT            report the document inside the iframe CSS matches
    setval  CSS VALUE           set a field's value without key events (a textarea;
                                `\n` in VALUE is a line break)
    scheme  light|dark          the colour scheme the pages are asked for
                                (prefers-color-scheme)

Every step but `type`, `setval` and `size` saves SCREENSHOT_DIR/SHOT (a PNG
of the whole page, at most 6000 pixels tall) and prints one JSON line whose values are all strings:
{"step", "url", "title", "text" (the visible text), "errors" (the console's
errors and warnings since the last report, one a line)}. A step that waits
for a next page waits until the old document is gone and the new one is
loaded (at most 15 s) and fails otherwise.

With AXE_JS (axe-core's axe.min.js), every reported page (for `frame`, the
document in the frame) is also checked for accessibility, and the JSON line
gets three more strings, each one finding a line:
"axe": axe-core's violations of WCAG 2.0, 2.1 and 2.2 A and AA (rule, impact,
the elements and what is wrong);
"a11y": what the walk's own checks found: `lang` on <html>, a skip link to
<main> as the first Tab stop, a visible outline on each of the first Tab
stops (moved to by real Tab key presses), a label on every field, at least
24 by 24 CSS pixels for every button, field and navigation link (WCAG
2.2's 2.5.8);
"live": the text of the page's live regions (role=status or alert,
aria-live), where its result messages are announced.

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


# The walk's own checks, run in the page; returns findings, one a string.
OWN_CHECKS = r"""
const found = [];
const where = (e) => {
  let s = e.tagName.toLowerCase();
  if (e.id) s += '#' + e.id;
  else if (e.name) s += '[name=' + e.name + ']';
  const t = (e.textContent || e.value || '').trim().replace(/\s+/g, ' ').slice(0, 40);
  return t ? s + ' "' + t + '"' : s;
};
const shown = (e) => {
  const r = e.getBoundingClientRect();
  const st = getComputedStyle(e);
  return r.width > 0 && r.height > 0 && st.visibility !== 'hidden' && st.display !== 'none';
};
if (!document.documentElement.lang) found.push('no lang on <html>');
// A page of ours (not a mail's HTML part) has its content in <main>.
if (arguments[0] && !document.querySelector('main')) found.push('no <main>');
const fields = document.querySelectorAll(
  'input:not([type=hidden]):not([type=submit]):not([type=button]), select, textarea');
for (const f of fields) {
  const named = (f.labels && f.labels.length) || f.getAttribute('aria-label')
    || f.getAttribute('aria-labelledby');
  if (!named) found.push('no label: ' + where(f));
}
const targets = document.querySelectorAll(
  'button, input:not([type=hidden]), select, summary, nav a, .actions a, header a');
for (const t of targets) {
  if (!shown(t) || t.closest('.skip')) continue;
  const r = t.getBoundingClientRect();
  if (r.width < 24 || r.height < 24)
    found.push('target smaller than 24x24 (' + Math.round(r.width) + 'x' + Math.round(r.height) + '): ' + where(t));
}
return found;
"""

# axe-core's run on the document, with WCAG 2.x A/AA rules; returns its
# violations as lines.
AXE_RUN = r"""
const done = arguments[arguments.length - 1];
axe.run(document, {
  runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']},
  resultTypes: ['violations'],
  iframes: false,
}).then((r) => {
  const lines = [];
  for (const v of r.violations) {
    for (const n of v.nodes) {
      lines.push(v.id + ' (' + v.impact + '): ' + n.target.join(' ') + ': '
        + (n.failureSummary || v.help).replace(/\s+/g, ' '));
    }
  }
  done(lines);
}).catch((e) => done(['axe failed: ' + e]));
"""

LIVE_TEXT = r"""
return Array.from(document.querySelectorAll('[role=status], [role=alert], [aria-live]'))
  .map((e) => e.textContent.trim().replace(/\s+/g, ' ')).filter((t) => t);
"""

# Puts the keyboard's starting point at the top of the page, as a fresh
# load does: focus on a throw-away element before everything else.
FOCUS_TOP = r"""
if (document.activeElement) document.activeElement.blur();
const top = document.createElement('span');
top.tabIndex = -1;
document.body.prepend(top);
top.focus();
top.addEventListener('blur', () => top.remove(), {once: true});
window.scrollTo(0, 0);
"""

# How the focused element looks: its outline (or box shadow) and place.
FOCUS_LOOK = r"""
const e = document.activeElement;
if (!e || e === document.body) return null;
const st = getComputedStyle(e);
const r = e.getBoundingClientRect();
return {
  tag: e.tagName.toLowerCase(),
  href: e.getAttribute('href') || '',
  text: (e.textContent || e.value || '').trim().slice(0, 40),
  outline: st.outlineStyle !== 'none' && parseFloat(st.outlineWidth) >= 2,
  shadow: st.boxShadow !== 'none',
  onscreen: r.width > 0 && r.height > 0 && r.bottom > 0 && r.right > 0
    && r.top < innerHeight && r.left < innerWidth,
};
"""

# Writes a copy of a document into this blank one, without anything that
# loads: src, srcset, background and poster attributes, <link>, <meta>,
# <base>, <script>, <object>, <embed>, <iframe>.
WRITE_COPY = r"""
const doc = new DOMParser().parseFromString(arguments[0], 'text/html');
doc.querySelectorAll('link, meta, base, script, object, embed, iframe').forEach((e) => e.remove());
for (const e of doc.querySelectorAll('[src], [srcset], [background], [poster]')) {
  for (const a of ['src', 'srcset', 'background', 'poster']) e.removeAttribute(a);
}
document.open();
document.write('<!doctype html>' + doc.documentElement.outerHTML);
document.close();
"""

# Tab stops checked for a visible focus on each page.
TAB_STOPS = 4


class Walk:
    def __init__(self, driver, shots, axe=None):
        self.driver = driver
        self.shots = shots
        self.axe = axe

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

    def report(self, step, shot, title=None, text=None, viewport=False, audit=None):
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
        if audit is not None:
            line.update(audit)
        elif self.axe is not None:
            line.update(self.audit(keyboard=True))
        print(json.dumps(line), flush=True)

    def audit(self, keyboard, copy=False):
        """axe-core's findings, the walk's own and the live regions' text,
        for the current document (the frame's, after switch_to.frame)."""
        d = self.driver
        if not copy and d.execute_script("return window.origin;") == "null":
            # A sandboxed document (CSP `sandbox`): no script runs in it.
            return self.audit_copy(d.execute_script("return document.documentElement.outerHTML;"))
        d.execute_script(self.axe)
        d.set_script_timeout(60)
        axe = d.execute_async_script(AXE_RUN)
        own = d.execute_script(OWN_CHECKS, not copy)
        if keyboard:
            own += self.focus_walk()
        live = d.execute_script(LIVE_TEXT)
        return {"axe": "\n".join(axe), "a11y": "\n".join(own), "live": "\n".join(live)}

    def audit_copy(self, html):
        """axe and the static checks on a copy of a document that runs no
        script (the HTML part's frame), written into a blank tab with
        everything that could load something removed first."""
        d = self.driver
        home = d.current_window_handle
        d.switch_to.new_window("tab")
        try:
            d.execute_script(WRITE_COPY, html)
            return self.audit(keyboard=False, copy=True)
        finally:
            d.close()
            d.switch_to.window(home)

    def focus_walk(self):
        """Real Tab presses from the top of the page: the first stop is a
        skip link to <main>; every stop shows an outline and is on screen.
        The page is scrolled back and focus dropped afterwards."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        d = self.driver
        found = []
        d.execute_script(FOCUS_TOP)
        for n in range(TAB_STOPS):
            ActionChains(d).send_keys(Keys.TAB).perform()
            look = d.execute_script(FOCUS_LOOK)
            if look is None:
                if n == 0:
                    found.append("Tab moves focus nowhere")
                break
            name = f"{look['tag']} {look['text']!r}"
            if n == 0 and not (look["tag"] == "a" and look["href"] == "#main"):
                found.append(f"first Tab stop is not a skip link to #main: {name}")
            if not (look["outline"] or look["shadow"]):
                found.append(f"no visible focus outline on Tab stop {n + 1}: {name}")
            if not look["onscreen"]:
                found.append(f"Tab stop {n + 1} is off screen when focused: {name}")
        d.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);")
        return found

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
        elif verb == "scheme":
            d.execute_cdp_cmd(
                "Emulation.setEmulatedMedia",
                {"features": [{"name": "prefers-color-scheme", "value": args[0]}]},
            )
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
                html = d.execute_script("return document.documentElement.outerHTML;")
            finally:
                d.switch_to.default_content()
            # No script runs in the sandboxed frame, axe-core neither: its
            # document is checked as a copy in a tab of its own.
            audit = self.audit_copy(html) if self.axe is not None else None
            # The window's part of the page, scrolled to the frame: a
            # capture beyond the window leaves a sandboxed frame blank.
            self.report("frame", args[1], title=title, text=text, viewport=True, audit=audit)
        else:
            raise ValueError(f"unknown step {verb!r}")


def run(plan, shots, axe):
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
        walk = Walk(driver, shots, axe)
        for n, line in enumerate(plan, 1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            try:
                print(f"step {n}: {fields!r}", file=sys.stderr, flush=True)
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
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    plan_path, shots = sys.argv[1], sys.argv[2]
    axe = None
    if len(sys.argv) == 4:
        with open(sys.argv[3], encoding="utf-8") as f:
            axe = f.read()
    if not os.path.isdir(shots):
        print(f"owner_browser.py: not a directory: {shots}", file=sys.stderr)
        return 2
    with open(plan_path, encoding="utf-8") as f:
        plan = f.readlines()
    # Only loopback: never route the driver or the browser through a proxy.
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        os.environ.pop(var, None)
    try:
        run(plan, shots, axe)
    except Exception:
        print("owner_browser.py: failed:", file=sys.stderr)
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
