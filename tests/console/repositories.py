"""The console's ECR repositories in a real browser (tests/console.rs): headless Debian
chromium over chromedriver, loopback only, signed in with serve's key. It checks what a
user would see, against what the API answered the test (the environment):

- repository REPO with its URI URI and its tag mutability MUTABILITY (the words shown);
- its images IMAGES (digest=tags, `;`-separated; tags `,`-separated), the image PULLED
  with a last pull time, the others "never";
- its lifecycle policy (the text shows COUNT_TYPE), its preview listing EXPIRED as an
  image that would expire, and EXPIRED again under "Expired" (lifecycle expiry removed it).

No error in the browser's JS console. A screenshot goes to $SHOTS/repositories.png.
"""

import os

from selenium.webdriver.common.by import By

from session import URL, Session

REPO, URI, MUTABILITY = os.environ["REPO"], os.environ["URI"], os.environ["MUTABILITY"]
IMAGES = dict(x.split("=") for x in os.environ["IMAGES"].split(";") if x)
PULLED, EXPIRED, COUNT_TYPE = os.environ["PULLED"], os.environ["EXPIRED"], os.environ["COUNT_TYPE"]

s = Session("repositories", window="1400,1300")
d, wait, shot, check_console = s.d, s.wait, s.shot, s.check_console
card = f'#repositories section[data-repo="{REPO}"]'


def text(css):
    return d.find_element(By.CSS_SELECTOR, f"{card} {css}").text.strip()


def images():
    rows = d.find_elements(By.CSS_SELECTOR, f"{card} tr[data-image]")
    return {r.get_attribute("data-image"): r.find_element(By.CSS_SELECTOR, "td.image-tags").text.strip()
            for r in rows}


try:
    d.get(URL + "/#/repositories")
    wait("the repository's URI", lambda: text(".repo-uri") == URI)
    wait("its tag mutability", lambda: text(".mutability") == MUTABILITY)
    wait(f"its images {IMAGES}", lambda: images() == IMAGES)
    def rows_read():
        for digest in IMAGES:
            pull = text(f'tr[data-image="{digest}"] td.last-pull')
            assert (pull != "never") == (digest == PULLED), f"{digest}: last pull {pull!r}"
            size = text(f'tr[data-image="{digest}"] td.image-size')
            assert size.endswith("MiB"), size

    # Read whole again if the page's refresh replaced a row under us (Session.read).
    s.read(rows_read)
    wait("the lifecycle policy", lambda: COUNT_TYPE in text("pre.lifecycle-policy"))
    wait("the preview's image that would expire",
         lambda: d.find_elements(By.CSS_SELECTOR, f'{card} tr[data-preview="{EXPIRED}"]'))
    wait("the image expiry removed",
         lambda: d.find_elements(By.CSS_SELECTOR, f'{card} tr[data-expired="{EXPIRED}"]'))
    # The nav marks the page.
    nav = d.find_element(By.CSS_SELECTOR, 'nav a[data-nav="repositories"]')
    assert nav.get_attribute("aria-current") == "page"
    shot("repositories")
    check_console("repositories")
finally:
    s.end()
