"""A service's metrics and scaling on its console page, in a real browser
(tests/console.rs), on a read-only console: the service SERVICE, a scalable target with
target tracking policy POLICY at TARGET % CPU, already scaled out from 1 to DESIRED tasks
by it, in a cluster with Container Insights on; the box publishes every PERIOD s. Checked
as a user would read the page:

- the charts are CloudWatch's history: at the page's first showing, CPU datapoints from
  before the page opened, and the running count's history from 1 task to more (the page
  never polled a 1: the service ran DESIRED tasks before it opened);
- a time axis: times (HH:MM) along it, named with the time zone; the unit in the titles;
- the last hour by default, at PERIOD_1H s a point; "3h" shows 3 hours at PERIOD_3H s;
- the scalable target's bounds and the policy by name;
- the CPU utilization chart: the policy's target drawn as its line, the latest datapoint
  above 0 (the tasks burn their CPU); the memory utilization chart with datapoints;
- the running and desired count: DESIRED running, DESIRED desired;
- the scaling activity "Setting desired count to DESIRED." with its status and cause;
- read-only: no Update service form.

No error in the browser's JS console. Screenshot: $SHOTS/service-scaling.png.
"""

import os
import re
import time

from selenium.webdriver.common.by import By

from session import URL, Session

SERVICE, POLICY = os.environ["SERVICE"], os.environ["POLICY"]
TARGET, DESIRED = os.environ["TARGET"], os.environ["DESIRED"]
PERIOD_1H, PERIOD_3H = os.environ["PERIOD_1H"], os.environ["PERIOD_3H"]

s = Session("service-scaling", window="1400,1600")
d, wait = s.d, s.wait


# The page redraws its charts at each poll: each read is made again whole when a poll
# replaced what it was reading (Session.read).
def label(chart):
    return s.read(lambda: d.find_element(By.ID, chart).get_attribute("aria-label"))


def points(chart):
    """The chart's datapoints (its solid series) as (time s, value)."""
    return s.read(lambda: [(float(p.get_attribute("data-t")), float(p.get_attribute("data-v")))
                           for p in d.find_elements(By.CSS_SELECTOR, f"#{chart} circle.pt")])


try:
    opened = time.time()
    d.get(URL + f"/#/service/default/{SERVICE}")
    # The first showing of the charts (the page's first poll), read at once.
    wait("the charts", lambda: d.find_elements(By.CSS_SELECTOR, "#svc-count-chart circle.pt"))
    cpu, running = points("svc-cpu-chart"), points("svc-count-chart")
    print("at the first showing: CPU", cpu, "running", running)
    # A whole period over before the page opened.
    assert len(cpu) >= 2 and min(t for t, _ in cpu) + 1.5 * float(PERIOD_1H) < opened, cpu
    # One task, then more (a period's Average is 1.5 when the second came in its middle).
    values = [v for _, v in running]
    one = [i for i, v in enumerate(values) if 0 < v <= 1]
    assert one and any(v > 1 for v in values[one[0] + 1:]), running
    cpu_label = label("svc-cpu-chart")
    assert f"period {PERIOD_1H} s" in cpu_label, cpu_label
    ticks = s.read(lambda: [t.text for t in d.find_elements(By.CSS_SELECTOR, "#svc-cpu-chart text.tick")])
    assert len(ticks) >= 3 and all(re.fullmatch(r"\d\d:\d\d", t) for t in ticks), ticks
    assert re.search(r"time \(UTC", s.read(lambda: d.find_element(
        By.CSS_SELECTOR, "#svc-cpu-chart text.axis-title").text))
    assert "CPU utilization (Percent)" in s.read(lambda: d.find_element(By.ID, "scaling").text)
    assert not d.find_elements(By.ID, "svc-desired"), "read-only: no Update service form"

    wait("the scalable target and its policy", lambda: re.search(
        rf"1 to 2 tasks; policies: {POLICY} \(TargetTrackingScaling\)",
        d.find_element(By.ID, "scalable-target").text))
    wait("CPU datapoints and the policy's target line",
         lambda: len(points("svc-cpu-chart")) >= 2 and f"target {TARGET}" in label("svc-cpu-chart"))
    cpu_label = label("svc-cpu-chart")
    latest = float(re.search(r"latest ([0-9.]+) %", cpu_label).group(1))
    assert latest > 0, cpu_label
    assert d.find_elements(By.CSS_SELECTOR, "#svc-cpu-chart line.limit"), "no target line"
    wait("memory datapoints", lambda: len(points("svc-mem-chart")) >= 1)
    wait(f"{DESIRED} running and {DESIRED} desired", lambda: re.search(
        rf"latest {DESIRED}, desired {DESIRED}", label("svc-count-chart")))
    row = wait("the scaling activity", lambda: [
        r.text for r in d.find_elements(By.CSS_SELECTOR, "#scaling tr.activity")
        if f"Setting desired count to {DESIRED}." in r.text])[0]
    assert "SUCCESSFUL" in row.upper(), row
    assert "AlarmHigh" in row and f"triggered policy {POLICY}" in row, row
    print("CPU chart:", label("svc-cpu-chart"))
    print("count chart:", label("svc-count-chart"))
    print("activity:", row)
    d.execute_script("document.getElementById('scaling').scrollIntoView()")
    s.shot("service-scaling")

    s.read(lambda: d.find_element(By.LINK_TEXT, "3h").click())
    wait("the last 3 hours", lambda: f"period {PERIOD_3H} s" in label("svc-cpu-chart")
         and points("svc-cpu-chart"))
    assert "range=3h" in d.current_url, d.current_url
    print("3 hours:", label("svc-cpu-chart"))
    s.check_console("service")
finally:
    s.end()
