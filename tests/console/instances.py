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

import base64
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

URL = os.environ["CONSOLE_URL"].rstrip("/")
SHOTS = os.environ["SHOTS"]
PHASE = os.environ["PHASE"]
CLUSTER = os.environ.get("CLUSTER", "default")


def ids(name):
    return [x for x in os.environ.get(name, "").split(",") if x]


o = webdriver.ChromeOptions()
o.binary_location = "/usr/bin/chromium"
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--window-size=1400,800", "--no-proxy-server", "--disable-extensions",
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


def check_console(page, allow=None):
    for e in d.get_log("browser"):
        print(f"[browser {page}] {e['level']}: {e['message']}")
        if allow and allow in e["message"]:
            continue
        if e["level"] == "SEVERE":
            errors.append(f"{page}: {e['message']}")


def shot(name):
    d.save_screenshot(os.path.join(SHOTS, name + ".png"))


def wait(what, f, timeout=60):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            if f():
                return
        except Exception as e:  # the row may not be there yet
            last = e
        time.sleep(0.3)
    shot("failed-instances-" + PHASE)
    raise AssertionError(f"timed out waiting for {what} (last error: {last}); page:\n"
                         + d.find_element(By.TAG_NAME, "main").text)


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
    try:
        check_console("end", allow=("/console/api/tasks/" + os.environ["TASK_ID"] + "/")
                      if os.environ.get("TASK_ID") else None)
    finally:
        d.quit()

if errors:
    print("JS console errors:\n" + "\n".join(errors))
    sys.exit(1)
print("ok")
