"""What the console's browser scripts share (tests/console/*.py, run by tests/console.rs
and tests/cluster.rs through `Api::browser`): headless Debian chromium over chromedriver,
loopback only, signed in with serve's key (HTTP Basic on every request, as a user's
browser sends it after the sign-in prompt); the browser's JS console collected; each
screenshot to $SHOTS/<name>.png; a wait that names what it waited for and shows the page.

Environment: CONSOLE_URL, CONSOLE_USER, CONSOLE_PASSWORD, SHOTS.
"""

import base64
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

URL = os.environ["CONSOLE_URL"].rstrip("/")
SHOTS = os.environ["SHOTS"]


def network_changed(message):
    """Whether a JS console entry is Chromium dropping a request because the host's
    network changed (net::ERR_NETWORK_CHANGED: it watches every interface's addresses,
    and the suite's other tests add and remove veths and namespaces all the time). Not the
    page's error: the request is the page's poll, made again at its next turn, and each
    step still waits for what the page must show. Said, not counted."""
    if "net::ERR_NETWORK_CHANGED" not in message:
        return False
    print("  (the host's network changed under the browser: another test's veth or "
          "namespace; the page polls again)")
    return True


class Session:
    def __init__(self, name, window="1400,900"):
        """A signed-in browser; `name` names the screenshot of a failed wait."""
        self.name = name
        o = webdriver.ChromeOptions()
        o.binary_location = "/usr/bin/chromium"
        for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  f"--window-size={window}", "--no-proxy-server", "--disable-extensions",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]:
            o.add_argument(a)
        o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
        pair = f"{os.environ['CONSOLE_USER']}:{os.environ['CONSOLE_PASSWORD']}".encode()
        self.d.execute_cdp_cmd("Network.enable", {})
        self.d.execute_cdp_cmd("Network.setExtraHTTPHeaders", {
            "headers": {"Authorization": "Basic " + base64.b64encode(pair).decode()}})
        self.errors = []

    def check_console(self, page, allow=None):
        """Prints the browser's JS console; a SEVERE entry (but `allow`'s, and the host's
        network changing under the browser: `network_changed`) is an error."""
        for e in self.d.get_log("browser"):
            print(f"[browser {page}] {e['level']}: {e['message']}")
            if (allow and allow in e["message"]) or network_changed(e["message"]):
                continue
            if e["level"] == "SEVERE":
                self.errors.append(f"{page}: {e['message']}")

    def shot(self, name):
        self.d.save_screenshot(os.path.join(SHOTS, name + ".png"))

    def wait(self, what, f, timeout=60):
        """f()'s first true answer within `timeout` s (an element a refreshed view replaced
        under us is tried again)."""
        end = time.time() + timeout
        last = None
        while time.time() < end:
            try:
                r = f()
                if r:
                    return r
            except Exception as e:
                last = e
            time.sleep(0.3)
        self.shot("failed-" + self.name)
        raise AssertionError(f"timed out waiting for {what} (last error: {last}); page:\n"
                             + self.d.find_element(By.TAG_NAME, "main").text)

    def read(self, f, timeout=10):
        """f() once the view holds still under it: read again from the start when the
        console's refresh replaced an element f was reading (a stale element), as a person
        reads a page again that changed under their eyes. An assertion in f fails at once.
        """
        end = time.time() + timeout
        while True:
            try:
                return f()
            except StaleElementReferenceException:
                if time.time() >= end:
                    raise
                time.sleep(0.2)

    def end(self, allow=None):
        """Quits the browser; exits 1 if the JS console had an error (but `allow`'s)."""
        try:
            self.check_console("end", allow)
        finally:
            self.d.quit()
        if self.errors:
            print("JS console errors:\n" + "\n".join(self.errors))
            sys.exit(1)
        print("ok")
