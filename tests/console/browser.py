"""The web console in a real browser (tests/console.rs runs it): headless Debian chromium
over chromedriver, loopback only. It looks at what a user would: the task RUNNING, its
namespaces, limits, a memory chart with points, a log line the task printed, Stop leading
to STOPPED with UserInitiated, and no error in the browser's JS console. Screenshots of
each page go to $SHOTS.

Environment: CONSOLE_URL, TASK_ID, CLUSTER, SHOTS, READ_ONLY (1: check the actions are
hidden instead of using them), CONSOLE_USER and CONSOLE_PASSWORD (serve's access key: the
browser signs in with it, as HTTP Basic credentials on every request).
"""

import base64
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait
from session import network_changed

URL = os.environ["CONSOLE_URL"].rstrip("/")
TASK = os.environ["TASK_ID"]
CLUSTER = os.environ.get("CLUSTER", "default")
SHOTS = os.environ["SHOTS"]
READ_ONLY = os.environ.get("READ_ONLY") == "1"
USERNS = os.environ.get("USERNS") == "1"
TIMEOUT = 60
STARTED = time.time()


def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    # Root in a container: no sandbox; no proxy for loopback; nothing fetched elsewhere.
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,800", "--no-proxy-server", "--disable-extensions",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run"]:
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager (which would download one) never runs.
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


d = browser()
errors = []
if os.environ.get("CONSOLE_USER"):
    # Signed in: what the browser sends once the user typed the key into its Basic prompt.
    pair = f"{os.environ['CONSOLE_USER']}:{os.environ['CONSOLE_PASSWORD']}".encode()
    d.execute_cdp_cmd("Network.enable", {})
    d.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                      {"headers": {"Authorization": "Basic " + base64.b64encode(pair).decode()}})


def check_console(page):
    """Fails on any SEVERE entry of the browser's JS console since the last check."""
    for e in d.get_log("browser"):
        print(f"[browser {page}] {e['level']}: {e['message']}")
        if e["level"] == "SEVERE" and not network_changed(e["message"]):
            errors.append(f"{page}: {e['message']}")


def wait(what, f, timeout=TIMEOUT):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            v = f()
            if v:
                # When each step was reached: a failure's output says how far it got.
                print(f"{time.time() - STARTED:6.2f} s: {what}")
                return v
        except Exception as e:  # the element may not be there yet
            last = e
        time.sleep(0.3)
    shot("failed-" + what.replace(" ", "-")[:40])
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def click(what, by, value):
    """Clicks an element found afresh at each try: a list the page refreshes may replace
    it between the find and the click (Selenium's stale element), where a person's click
    would land on its replacement."""
    def once():
        d.find_element(by, value).click()
        return True
    wait(what, once)


def shot(name, full=True):
    """A PNG of the whole page (not only the viewport) at the current width."""
    path = os.path.join(SHOTS, name + ".png")
    if full:
        w = d.execute_script("return window.innerWidth")
        h = d.execute_script("return Math.min(document.documentElement.scrollHeight, 6000)")
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                          {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": w < 700})
        png = d.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        with open(path, "wb") as f:
            f.write(base64.b64decode(png["data"]))
    else:
        d.save_screenshot(path)
    print("screenshot", path)


def shot_el(name, css):
    """A PNG of one element of the page, however tall."""
    r = d.execute_script(
        "const r = document.querySelector(arguments[0]).getBoundingClientRect();"
        "return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height];", css)
    png = d.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": r[0], "y": r[1], "width": r[2], "height": min(r[3], 6000), "scale": 1}})
    path = os.path.join(SHOTS, name + ".png")
    with open(path, "wb") as f:
        f.write(base64.b64decode(png["data"]))
    print("screenshot", path)


def open_page(fragment):
    d.get(URL + "/#" + fragment)


def text(css):
    return d.find_element(By.CSS_SELECTOR, css).text


try:
    # Clusters: the default cluster counts the web task and the service's as running.
    open_page("/clusters")
    wait("the default cluster card",
         lambda: int(d.find_element(By.CSS_SELECTOR, f'[data-cluster="{CLUSTER}"] .counts b').text) >= 1)
    shot("clusters")
    check_console("clusters")

    # Tasks: the task is listed RUNNING; the filters narrow the list.
    open_page("/tasks")
    wait("the task RUNNING in the list",
         lambda: "RUNNING" in text(f'tr[data-task="{TASK}"] td:nth-child(4)'))
    if not READ_ONLY:
        Select(d.find_element(By.NAME, "family")).select_by_value("web")
        wait("the family filter", lambda: "family=web" in d.current_url)
        wait("only web tasks", lambda: (rows := d.find_elements(By.CSS_SELECTOR, "#tasks-table tbody tr"))
             and all("web:" in r.text for r in rows))
    shot("tasks")
    check_console("tasks")

    # One task: status, isolation picture, limits, charts, timeline, logs.
    open_page(f"/task/{CLUSTER}/{TASK}")
    wait("the task page RUNNING", lambda: text("#task-status") == "RUNNING")
    wait("the namespaces", lambda: len(d.find_elements(By.CSS_SELECTOR, "#ns-table .ns")) >= 7)
    net = d.find_elements(By.CSS_SELECTOR, '#ns-table tr[data-ns="net"] .ns')
    assert net and all(n.text == "task" for n in net), [n.text for n in net]
    user = d.find_elements(By.CSS_SELECTOR, '#ns-table tr[data-ns="user"] .ns')
    # The task's user namespace: "own" with one container, "task" when they share it.
    want_user = ("own", "task") if USERNS else ("host",)
    assert user and all(n.text in want_user for n in user), [n.text for n in user]
    mapping = d.find_elements(By.CSS_SELECTOR, '[id^="userns-"]')
    assert mapping, "no user namespace line"
    if USERNS:
        assert all("the task's own" in m.text and "host ids" in m.text for m in mapping), \
            [m.text for m in mapping]
    else:
        assert all("root in the container is root on the host" in m.text for m in mapping), \
            [m.text for m in mapping]
    limits = text("#limits")
    assert "memory.max" in limits or "memory.limit_in_bytes" in limits, limits
    wait("a memory chart with points",
         lambda: len(d.find_elements(By.CSS_SELECTOR, "#mem-chart circle.pt")) >= 2)
    wait("a CPU chart with points",
         lambda: len(d.find_elements(By.CSS_SELECTOR, "#cpu-chart circle.pt")) >= 1)
    wait("the launch timeline", lambda: len(d.find_elements(By.CSS_SELECTOR, "#gantt rect")) >= 3)
    want = os.environ.get("LOG_LINE", "hello from minifargate" if not READ_ONLY else "tick")
    wait(f"the log line {want!r}", lambda: want in text("#logs"))
    shot("task-full")
    d.execute_script("window.scrollTo(0, 0)")
    shot("task", full=False)
    shot_el("task-isolation", "#isolation")
    shot_el("task-timeline", "#timeline")
    shot_el("task-logs", "#logs-view")
    check_console("task")

    if READ_ONLY:
        assert not d.find_elements(By.ID, "stop-btn"), "read-only: no Stop button"
        assert "read-only" in text("#mode")
        open_page("/taskdefs")
        wait("the families", lambda: "tick" in text("#taskdefs"))
        click("the revision 1 link", By.LINK_TEXT, "1")
        wait("the findings", lambda: "error(s)" in text("#findings"))
        assert not d.find_elements(By.ID, "run-btn"), "read-only: no Run task"
        shot("read-only-taskdef")
        check_console("read-only")
    else:
        # Task definitions: the JSON, validate's verdict and the diff of two revisions.
        open_page("/taskdefs")
        wait("the families", lambda: "web" in text("#taskdefs"))
        shot("taskdefs")
        open_page("/taskdef/web/2")
        wait("the findings", lambda: "error(s)" in text("#findings"))
        wait("the JSON", lambda: '"family": "web"' in text("#taskdef-json"))
        wait("the other revision", lambda: len(d.find_elements(By.CSS_SELECTOR, "#diff-with option")) >= 2)
        Select(d.find_element(By.ID, "diff-with")).select_by_value("1")
        wait("the diff", lambda: any('"1024"' in e.text for e in d.find_elements(By.CSS_SELECTOR, "#diff .diff-add")))
        shot("taskdef")
        check_console("taskdef")

        # Services: the service, then scaled to 0 from its page.
        open_page("/services")
        wait("the service", lambda: "ticker" in text("#services"))
        shot("services")
        click("the ticker link", By.LINK_TEXT, "ticker")
        wait("the service page", lambda: text("#svc-counts").startswith("1 /"))
        wait("the desired count filled in", lambda: d.find_element(By.ID, "svc-desired").get_attribute("value") == "1")
        box = d.find_element(By.ID, "svc-desired")
        box.clear()
        box.send_keys("0")
        d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait("desired 0", lambda: text("#svc-counts").startswith("0 /"))
        shot("service")
        check_console("service")

        # Run a task from a registered definition, with overrides; its page shows its output.
        open_page("/taskdef/tick/1")
        wait("the run form", lambda: d.find_element(By.ID, "run-btn").is_displayed())
        count = d.find_element(By.ID, "run-count")
        count.clear()
        count.send_keys("1")
        d.find_element(By.ID, "run-overrides").send_keys(
            '{"containerOverrides": [{"name": "app", "command": ["sh", "-c", '
            '"echo from-the-console; trap \'exit 0\' TERM; while :; do sleep 1; done"]}]}')
        d.find_element(By.ID, "run-btn").click()
        started = wait("the started task's link",
                       lambda: d.find_element(By.CSS_SELECTOR, "#run-result a").text)
        print("RUN_FROM_CONSOLE", started)
        click("the started task's link", By.CSS_SELECTOR, "#run-result a")
        wait("the new task RUNNING", lambda: text("#task-status") == "RUNNING")
        wait("the override's output", lambda: "from-the-console" in text("#logs"))
        d.execute_script("window.scrollTo(0, 0)")
        shot("run-task-result", full=False)
        check_console("run")

        # Phone width and the dark theme.
        d.set_window_size(390, 844)
        d.execute_cdp_cmd("Emulation.setEmulatedMedia",
                          {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        open_page(f"/task/{CLUSTER}/{TASK}")
        wait("the task page at phone width", lambda: text("#task-status") == "RUNNING")
        wait("a memory chart with points (phone)",
             lambda: len(d.find_elements(By.CSS_SELECTOR, "#mem-chart circle.pt")) >= 2)
        shot("task-phone-dark", full=False)
        d.execute_script("document.getElementById('ns-table').scrollIntoView()")
        shot("task-phone-dark-namespaces", full=False)
        d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        d.set_window_size(1280, 800)

        # Stop, from the task page: STOPPED, UserInitiated.
        open_page(f"/task/{CLUSTER}/{TASK}")
        wait("the task page RUNNING", lambda: text("#task-status") == "RUNNING")
        # With the keyboard only: Tab to Stop, Enter, Tab from the reason to Confirm, Enter.
        d.execute_script("document.querySelector('.skip').focus()")  # the page's first stop
        for _ in range(40):
            ActionChains(d).send_keys(Keys.TAB).perform()
            if d.switch_to.active_element.get_attribute("id") == "stop-btn":
                break
        assert d.switch_to.active_element.get_attribute("id") == "stop-btn", "Tab never reached Stop"
        ActionChains(d).send_keys(Keys.ENTER).perform()
        wait("the reason focused", lambda: d.switch_to.active_element.get_attribute("id") == "stop-reason")
        ActionChains(d).send_keys(Keys.TAB).perform()
        assert d.switch_to.active_element.get_attribute("id") == "stop-confirm"
        ActionChains(d).send_keys(Keys.ENTER).perform()
        wait("STOPPED", lambda: text("#task-status") == "STOPPED", timeout=90)
        wait("UserInitiated", lambda: text("#stop-code") == "UserInitiated")
        d.execute_script("window.scrollTo(0, 0)")
        shot("task-stopped", full=False)
        check_console("stop")
finally:
    try:
        check_console("end")
    finally:
        d.quit()

if errors:
    print("JS console errors:\n" + "\n".join(errors))
    sys.exit(1)
print("ok")
