"""A service's scaling on its console page, in a real browser (tests/console.rs): the
service SERVICE, a scalable target with target tracking policy POLICY at TARGET % CPU,
already scaled out to DESIRED tasks by it. Checked as a user would read the page:

- the scalable target's bounds and the policy by name;
- the CPU utilization chart: datapoints, the policy's target drawn as its line, the
  latest datapoint above 0 (the tasks burn their CPU);
- the memory utilization chart with datapoints;
- the running and desired count chart: DESIRED running, DESIRED desired;
- the scaling activity "Setting desired count to DESIRED." with its status and cause.

No error in the browser's JS console. Screenshot: $SHOTS/service-scaling.png.
"""

import os
import re

from selenium.webdriver.common.by import By

from session import URL, Session

SERVICE, POLICY = os.environ["SERVICE"], os.environ["POLICY"]
TARGET, DESIRED = os.environ["TARGET"], os.environ["DESIRED"]

s = Session("service-scaling", window="1400,1600")
d, wait = s.d, s.wait


def label(chart):
    return d.find_element(By.ID, chart).get_attribute("aria-label")


def points(chart):
    return len(d.find_elements(By.CSS_SELECTOR, f"#{chart} circle.pt"))


try:
    d.get(URL + f"/#/service/default/{SERVICE}")
    wait("the scalable target and its policy", lambda: re.search(
        rf"1 to 2 tasks; policies: {POLICY} \(TargetTrackingScaling\)",
        d.find_element(By.ID, "scalable-target").text))
    wait("CPU datapoints and the policy's target line",
         lambda: points("svc-cpu-chart") >= 2 and f"target {TARGET}" in label("svc-cpu-chart"))
    latest = float(re.search(r"latest ([0-9.]+) %", label("svc-cpu-chart")).group(1))
    assert latest > 0, label("svc-cpu-chart")
    assert d.find_elements(By.CSS_SELECTOR, "#svc-cpu-chart line.limit"), "no target line"
    wait("memory datapoints", lambda: points("svc-mem-chart") >= 1)
    wait(f"{DESIRED} running and {DESIRED} desired", lambda: re.search(
        rf"latest {DESIRED}, desired {DESIRED}", label("svc-count-chart")))
    row = wait("the scaling activity", lambda: [
        r for r in d.find_elements(By.CSS_SELECTOR, "#scaling tr.activity")
        if f"Setting desired count to {DESIRED}." in r.text])[0]
    assert "SUCCESSFUL" in row.text.upper(), row.text
    assert "AlarmHigh" in row.text and f"triggered policy {POLICY}" in row.text, row.text
    print("CPU chart:", label("svc-cpu-chart"))
    print("count chart:", label("svc-count-chart"))
    print("activity:", row.text)
    d.execute_script("document.getElementById('scaling').scrollIntoView()")
    s.shot("service-scaling")
    s.check_console("service")
finally:
    s.end()
