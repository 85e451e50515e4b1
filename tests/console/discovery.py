"""A service's discovery names on its console page, in a real browser (tests/console.rs):
the service SERVICE, registered (serviceRegistries, REGISTRY_ARN) in the Cloud Map service
whose tasks resolve NAME with the records RECORDS, and with Service Connect in the
namespace CONNECT_NS, port name PORT_NAME, client alias ALIAS (dnsName:port). INSTANCES
and CONNECT_INSTANCES are the instances Cloud Map lists for each (`id=address:port`,
comma-separated), as the AWS CLI answered the test. Checked as a user would read the page:

- the name NAME, the registry's ARN, its records and TTLs;
- each registered instance: the task's id (a link to the task), its address and port;
- the Service Connect namespace, the alias as `dnsName:port`, and the instances of its
  discovery name.

The service CLIENT_SERVICE (no task) names no namespace nor alias name: the page shows
the cluster's default namespace DEFAULT_NS and the alias CLIENT_ALIAS, marked as ECS's
default name.

With ERROR set (the registry REGISTRY_ARN names no Cloud Map service): the registry's
section shows ERROR, Cloud Map's error as the API answers it, beside the ARN.

No error in the browser's JS console. Screenshot: $SHOTS/service-discovery.png.
"""

import os

from selenium.webdriver.common.by import By

from session import URL, Session

E = os.environ
SERVICE, NAME, ARN = E["SERVICE"], E["NAME"], E["REGISTRY_ARN"]


def expected(var):
    return sorted(tuple(x.replace("=", " ").replace(":", " ").split()) for x in E[var].split(","))


def rows(section):
    return sorted((r.get_attribute("data-instance"),
                   r.find_element(By.CLASS_NAME, "instance-address").text,
                   r.find_element(By.CLASS_NAME, "instance-port").text)
                  for r in section.find_elements(By.CSS_SELECTOR, "tr[data-instance]"))


s = Session("service-discovery", window="1400,1800")
d, wait = s.d, s.wait
if "ERROR" in E:
    # The registry names a Cloud Map service that is not there: Cloud Map's error, where
    # the registry's section is, with its ARN.
    try:
        d.get(URL + f"/#/service/default/{SERVICE}")
        reg = wait(f"the error {E['ERROR']}", lambda: [
            r for r in d.find_elements(By.CSS_SELECTOR, "section.registry")
            if r.find_element(By.CLASS_NAME, "registry-arn").text == ARN
            and r.find_element(By.CLASS_NAME, "error").text == E["ERROR"]])[0]
        print("registry:", reg.text)
        s.check_console("service", allow="/console/api/servicediscovery/GetService")
    finally:
        s.end(allow="/console/api/servicediscovery/GetService")
    raise SystemExit(0)
try:
    d.get(URL + f"/#/service/default/{SERVICE}")
    wait(f"the registry's name {NAME}", lambda: d.find_element(
        By.CSS_SELECTOR, f'section.registry[data-registry="{NAME}"]'))

    # Each group of reads below is read again whole if the page's refresh replaces what
    # it was reading (s.read).
    def registry():
        reg = d.find_element(By.CSS_SELECTOR, f'section.registry[data-registry="{NAME}"]')
        assert reg.find_element(By.CLASS_NAME, "dns-name").text == NAME, reg.text
        assert reg.find_element(By.CLASS_NAME, "registry-arn").text == ARN, reg.text
        records = reg.find_element(By.CLASS_NAME, "dns-records").text
        assert records.startswith(E["RECORDS"] + ";"), records
    s.read(registry)
    want = expected("INSTANCES")
    wait(f"the registered instances {want}", lambda: rows(d.find_element(
        By.CSS_SELECTOR, f'section.registry[data-registry="{NAME}"]')) == want)

    def links():
        reg = d.find_element(By.CSS_SELECTOR, f'section.registry[data-registry="{NAME}"]')
        for task, _, _ in want:
            link = reg.find_element(By.CSS_SELECTOR, f'tr[data-instance="{task}"] a')
            href = link.get_attribute("href")
            assert href.endswith(f"#/task/default/{task}"), href
    s.read(links)

    def connect():
        sc = d.find_element(By.ID, "service-connect")
        assert sc.find_element(By.CLASS_NAME, "connect-namespace").text == E["CONNECT_NS"], sc.text
        svc = sc.find_element(By.CSS_SELECTOR, f'section.connect-service[data-port-name="{E["PORT_NAME"]}"]')
        aliases = [a.text for a in svc.find_elements(By.CLASS_NAME, "client-alias")]
        assert aliases == [E["ALIAS"]], aliases
    s.read(connect)
    want = expected("CONNECT_INSTANCES")
    wait(f"Service Connect's instances {want}", lambda: rows(d.find_element(
        By.CSS_SELECTOR, f'section.connect-service[data-port-name="{E["PORT_NAME"]}"]')) == want)
    print("registry:", s.read(lambda: d.find_element(By.CSS_SELECTOR, "section.registry").text))
    print("service connect:", s.read(lambda: d.find_element(By.ID, "service-connect").text))
    d.execute_script("document.querySelector('section.registry').scrollIntoView()")
    s.shot("service-discovery")
    s.check_console("service")

    # CLIENT_SERVICE names no namespace and no alias name: the cluster's default namespace
    # DEFAULT_NS, and the alias under ECS's default name, CLIENT_ALIAS.
    d.get(URL + f"/#/service/default/{E['CLIENT_SERVICE']}")
    wait("the client's Service Connect", lambda: d.find_element(By.ID, "service-connect"))

    def client():
        sc = d.find_element(By.ID, "service-connect")
        ns = sc.find_element(By.CSS_SELECTOR, "dd")
        assert ns.find_element(By.CLASS_NAME, "connect-namespace").text == E["DEFAULT_NS"], ns.text
        assert "(the cluster's default)" in ns.text, ns.text
        aliases = [a.text for a in sc.find_elements(By.CLASS_NAME, "client-alias")]
        assert aliases == [E["CLIENT_ALIAS"] + " (default name)"], aliases
    s.read(client)
    wait("no instances", lambda: "No registered instances." in d.find_element(By.ID, "service-connect").text)
    print("client's service connect:", s.read(lambda: d.find_element(By.ID, "service-connect").text))
    s.check_console("client")
finally:
    s.end()
