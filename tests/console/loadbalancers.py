"""The console's load balancers in a real browser (tests/console.rs): headless Debian
chromium over chromedriver, loopback only, signed in with serve's key. It checks what a
user would see, against what the API answered the test (the environment):

- the Load balancers page: load balancer LB with its DNS name DNS, the listener on PORT
  forwarding to target group TG, and TG's targets TARGETS (id:port, comma-separated), each
  HEALTHY, with a strip of its health changes (serve's record, not the
  page's polls): it starts `initial` and ends `healthy` on the page's first view, though
  the targets turned healthy before the page opened, and a poll with no change adds none;
- the page of service SERVICE: its target group with the same targets, HEALTHY; then the
  console's own "Update service" form scales it to 1, and one target goes DRAINING there
  (deregistered before its task is stopped, as ECS does) while the other stays HEALTHY.

No error in the browser's JS console. Screenshots go to $SHOTS/loadbalancers*.png and
$SHOTS/service-lb*.png.
"""

import os
import time

from selenium.webdriver.common.by import By

from session import URL, Session

LB, DNS, PORT = os.environ["LB"], os.environ["DNS"], os.environ["PORT"]
TG, SERVICE = os.environ["TG"], os.environ["SERVICE"]
TARGETS = sorted(x for x in os.environ["TARGETS"].split(",") if x)

s = Session("loadbalancers")
d, wait, shot, check_console = s.d, s.wait, s.shot, s.check_console


def targets(scope):
    """The rows of target group TG in `scope` (a CSS selector): {id:port: state}."""
    rows = d.find_elements(By.CSS_SELECTOR, f'{scope} section[data-tg="{TG}"] tr[data-target]')
    return {r.get_attribute("data-target"): r.find_element(By.CSS_SELECTOR, "td.target-state").text.strip()
            for r in rows}


def strip(scope, target):
    """The states of the ticks of `target`'s strip, oldest first."""
    return [t.get_attribute("data-state") for t in d.find_elements(
        By.CSS_SELECTOR, f'{scope} section[data-tg="{TG}"] tr[data-target="{target}"] .strip .tick')]


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
    # Each strip is the target's history from before the page opened: registered
    # (initial), then healthy; the page's polls (every 2 s) add nothing while nothing
    # changes.
    for t in TARGETS:
        states = strip("#loadbalancers", t)
        assert states and states[0] == "initial" and states[-1] == "healthy", f"{t}: {states}"
    first = {t: strip("#loadbalancers", t) for t in TARGETS}
    time.sleep(5)
    assert {t: strip("#loadbalancers", t) for t in TARGETS} == first, "a poll with no change added a tick"
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
    s.end()
