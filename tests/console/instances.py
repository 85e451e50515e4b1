"""The console's container instances view in a real browser (tests/cluster.rs runs it
against `serve --cluster` with agents): headless Debian chromium over chromedriver,
loopback only, signed in with serve's key. It checks what a user would see:

- PHASE=connected: every instance of CONNECTED (comma-separated ids) listed with
  "CONNECTED" and its runningTasksCount from COUNTS (id=n,...); the task TASK_ID's detail
  page names its container instance TASK_INSTANCE.
- PHASE=disconnected: the instances of DISCONNECTED shown "DISCONNECTED", those of
  CONNECTED still "CONNECTED".

No error in the browser's JS console. A screenshot goes to $SHOTS/instances-$PHASE.png.
"""

import os

from selenium.webdriver.common.by import By

from session import URL, Session

PHASE = os.environ["PHASE"]
CLUSTER = os.environ.get("CLUSTER", "default")


def ids(name):
    return [x for x in os.environ.get(name, "").split(",") if x]


s = Session("instances-" + PHASE, window="1400,800")
d, wait, shot, check_console = s.d, s.wait, s.shot, s.check_console


def cell(instance, css):
    return d.find_element(By.CSS_SELECTOR, f'tr[data-instance="{instance}"] {css}').text.strip()


try:
    d.get(URL + "/#/instances?cluster=" + CLUSTER)
    counts = dict(x.split("=") for x in ids("COUNTS"))
    for i in ids("CONNECTED"):
        wait(f"{i} CONNECTED", lambda: cell(i, "td.agent") == "CONNECTED")
        if i in counts:
            wait(f"{i} running {counts[i]}", lambda: cell(i, "td.running-tasks") == counts[i])
        # Registered and remaining CPU and memory are shown as numbers (read in a wait: a
        # refreshed row may replace the cell between Selenium's find and its read).
        wait(f"{i}'s memory remaining / registered", lambda: "/" in cell(i, 'td[data-resource="MEMORY"]'))
    for i in ids("DISCONNECTED"):
        wait(f"{i} DISCONNECTED", lambda: cell(i, "td.agent") == "DISCONNECTED")
    rows = d.find_elements(By.CSS_SELECTOR, "#instances-table tbody tr")
    want = len(ids("CONNECTED")) + len(ids("DISCONNECTED"))
    assert len(rows) == want, f"{len(rows)} rows, want {want}"
    shot("instances-" + PHASE)
    check_console("instances")

    if os.environ.get("TASK_ID"):
        d.get(URL + f"/#/task/{CLUSTER}/{os.environ['TASK_ID']}")
        wait("the task's container instance",
             lambda: d.find_element(By.ID, "task-instance").text.strip() == os.environ["TASK_INSTANCE"])
        # The task's own views (isolation, stats, timeline, logs) read the box that runs
        # it: not yet served across boxes (docs/cluster.md), so their 404s are expected.
        check_console("task", allow="/console/api/tasks/" + os.environ["TASK_ID"] + "/")
finally:
    s.end(allow=("/console/api/tasks/" + os.environ["TASK_ID"] + "/")
          if os.environ.get("TASK_ID") else None)
