"""The console's load balancers in a real browser (tests/console.rs): headless Debian
chromium over chromedriver, loopback only, signed in with serve's key. It checks what a
user would see, against what the API answered the test (the environment):

- the Load balancers page: load balancer LB with its DNS name DNS, the listener on PORT
  forwarding to target group TG, and TG's targets TARGETS (id:port, comma-separated), each
  HEALTHY, with a health strip that grows at each poll;
- the page of service SERVICE: its target group with the same targets, HEALTHY; then the
  console's own "Update service" form scales it to 1, and one target goes DRAINING there
  (deregistered before its task is stopped, as ECS does) while the other stays HEALTHY.

No error in the browser's JS console. Screenshots go to $SHOTS/loadbalancers*.png and
$SHOTS/service-lb*.png.
"""

import base64
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

URL = os.environ["CONSOLE_URL"].rstrip("/")
SHOTS = os.environ["SHOTS"]
LB, DNS, PORT = os.environ["LB"], os.environ["DNS"], os.environ["PORT"]
TG, SERVICE = os.environ["TG"], os.environ["SERVICE"]
TARGETS = sorted(x for x in os.environ["TARGETS"].split(",") if x)

o = webdriver.ChromeOptions()
o.binary_location = "/usr/bin/chromium"
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--window-size=1400,900", "--no-proxy-server", "--disable-extensions",
          "--disable-background-networking", "--disable-component-update",
          "--disable-sync", "--no-first-run"]:
    o.add_argument(a)
o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
pair = f"{os.environ['CONSOLE_USER']}:{os.environ['CONSOLE_PASSWORD']}".encode()
d.execute_cdp_cmd("Network.enable", {})
d.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                  {"headers": {"Authorization": "Basic " + base64.b64encode(pair).decode()}})
errors = []


def check_console(page):
    for e in d.get_log("browser"):
        print(f"[browser {page}] {e['level']}: {e['message']}")
        if e["level"] == "SEVERE":
            errors.append(f"{page}: {e['message']}")


def shot(name):
    d.save_screenshot(os.path.join(SHOTS, name + ".png"))


def wait(what, f, timeout=60):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            r = f()
            if r:
                return r
        except Exception as e:  # a refreshed view may replace the element under us
            last = e
        time.sleep(0.3)
    shot("failed-loadbalancers")
    raise AssertionError(f"timed out waiting for {what} (last error: {last}); page:\n"
                         + d.find_element(By.TAG_NAME, "main").text)


def targets(scope):
    """The rows of target group TG in `scope` (a CSS selector): {id:port: state}."""
    rows = d.find_elements(By.CSS_SELECTOR, f'{scope} section[data-tg="{TG}"] tr[data-target]')
    return {r.get_attribute("data-target"): r.find_element(By.CSS_SELECTOR, "td.target-state").text.strip()
            for r in rows}


def strip_len(scope, target):
    return len(d.find_elements(
        By.CSS_SELECTOR, f'{scope} section[data-tg="{TG}"] tr[data-target="{target}"] .strip .tick'))


try:
    d.get(URL + "/#/loadbalancers")
    lb = f'#loadbalancers section[data-lb="{LB}"]'
    wait("the load balancer's DNS name",
         lambda: d.find_element(By.CSS_SELECTOR, lb + " .dns-name").text.strip() == DNS)
    wait("the listener forwarding to the target group",
         lambda: f"forward to {TG}" in d.find_element(
             By.CSS_SELECTOR, f'{lb} tr[data-listener="{PORT}"] td.rules').text)
    wait(f"targets {TARGETS} healthy",
         lambda: targets("#loadbalancers") == {t: "HEALTHY" for t in TARGETS})
    # The strip grows at each poll (every 2 s).
    first = strip_len("#loadbalancers", TARGETS[0])
    wait("the health strip to grow", lambda: strip_len("#loadbalancers", TARGETS[0]) >= first + 2)
    shot("loadbalancers")
    check_console("loadbalancers")

    d.get(URL + f"/#/service/default/{SERVICE}")
    wait("the service's targets healthy", lambda: targets("main") == {t: "HEALTHY" for t in TARGETS})
    shot("service-lb")
    # Scale in from the console's own form: one target drains, the other stays.
    count = wait("the desired count field", lambda: d.find_element(By.ID, "svc-desired"))
    count.clear()
    count.send_keys("1")
    d.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    seen = wait("one target draining, one healthy",
                lambda: sorted(targets("main").values()) == ["DRAINING", "HEALTHY"] and targets("main"))
    print("after the scale-in:", seen)
    assert set(seen) == set(TARGETS), f"the targets changed: {seen} against {TARGETS}"
    draining = [t for t, st in seen.items() if st == "DRAINING"][0]
    wait("a draining tick in the strip", lambda: d.find_elements(
        By.CSS_SELECTOR, f'main section[data-tg="{TG}"] tr[data-target="{draining}"] .strip .t-draining'))
    shot("service-lb-draining")
    check_console("service")
finally:
    try:
        check_console("end")
    finally:
        d.quit()

if errors:
    print("JS console errors:\n" + "\n".join(errors))
    sys.exit(1)
print("ok")
