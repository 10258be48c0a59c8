#!/usr/bin/env python3
"""Drives the dashboard (GET /ui) of a live node in a real headless Chromium.

    python dashboard.py BASE_URL [--screenshot PATH] [--insecure | --ca PEM [--client-cert PEM --client-key PEM]]

BASE_URL is a node of a 3-node cluster, e.g. http://127.0.0.1:8123. Over HTTPS, either --insecure
(the node's certificate is accepted unverified), or --ca: the browser trusts that CA through an NSS
database of its own (Chromium on Linux reads $HOME/.pki/nssdb; certutil and pk12util come from
Debian's libnss3-tools), and with --client-cert/--client-key it holds that client certificate
there and presents it to the node's origin without asking (the auto_select_certificate content
setting), as a browser of an mTLS deployment would. The browser and its driver
are Debian's (/usr/bin/chromium, /usr/bin/chromedriver), named explicitly so that Selenium never
looks for one on the network. Every step waits by polling against a deadline, never by sleeping:

1. the cluster table shows 3 nodes, exactly one of them Leader;
2. the page's New-key form writes ui/from-page, and the page says it succeeded;
3. the watch feed, started on prefix ui/, shows ui/from-api once Python writes it over the API;
4. the key browser lists both keys under ui/, opens ui/from-page, shows its value as text and,
   toggled, as hex;
5. the page is saved as a screenshot when asked.

On success it prints one JSON object on stdout and exits 0; on failure it prints the step that
failed, what the page showed and the browser's console log on stderr, and exits 1.
"""

import argparse
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = os.environ.get("CETE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CETE_CHROMEDRIVER", "/usr/bin/chromedriver")
DEADLINE = 20  # seconds, for every wait

PAGE_KEY = "ui/from-page"
PAGE_VALUE = "written in the browser"
API_KEY = "ui/from-api"
API_VALUE = "sent over the API"


class StepFailed(Exception):
    pass


def brief(error):
    """An exception in one line: Selenium's carry the driver's stack trace after the message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def css_string(text):
    """A CSS string literal for an attribute selector."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Tls:
    """How to reach the node: plain, HTTPS unverified, or HTTPS trusting `ca`, with a client
    certificate when `client` names one (certificate and key, PEM)."""

    def __init__(self, insecure=False, ca=None, client=None):
        self.insecure, self.ca, self.client = insecure, ca, client
        self.home = None  # the browser's NSS database lives here, removed at the end

    def context(self):
        if self.insecure:
            return ssl._create_unverified_context()
        if self.ca is None:
            return None
        context = ssl.create_default_context(cafile=self.ca)
        if self.client:
            context.load_cert_chain(*self.client)
        return context

    def browser_home(self, home):
        """An NSS database under `home` that trusts the CA and holds the client certificate."""
        nssdb = os.path.join(home, ".pki", "nssdb")
        os.makedirs(nssdb)
        db = "sql:" + nssdb
        quiet = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
        subprocess.run(["certutil", "-N", "-d", db, "--empty-password"], **quiet)
        subprocess.run(["certutil", "-A", "-d", db, "-n", "cete-test-ca", "-t", "C,,", "-i", self.ca], **quiet)
        if self.client:
            p12 = os.path.join(home, "client.p12")
            certificate, key = self.client
            export = ["openssl", "pkcs12", "-export", "-in", certificate, "-inkey", key, "-out", p12, "-passout", "pass:"]
            subprocess.run(export, **quiet)
            subprocess.run(["pk12util", "-i", p12, "-d", db, "-W", ""], **quiet)


def start_browser(tls, base_url):
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-extensions",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    environment = dict(os.environ)
    if tls.insecure:
        options.set_capability("acceptInsecureCerts", True)
    elif tls.ca:
        home = tls.home = tempfile.mkdtemp(prefix="cete-browser-")
        tls.browser_home(home)
        environment["HOME"] = home
        if tls.client:
            # Present the certificate to this origin without the dialog a person would answer.
            origin = base_url.rstrip("/")
            rule = {origin + ",*": {"setting": {"filters": [{}]}}}
            options.add_experimental_option("prefs", {"profile.content_settings.exceptions.auto_select_certificate": rule})
    # The driver is named: Selenium Manager has nothing to look up (and offline, it would not try).
    os.environ.setdefault("SE_OFFLINE", "true")
    service = Service(executable_path=CHROMEDRIVER, env=environment)
    driver = webdriver.Chrome(service=service, options=options)
    # --window-size counts the window's frame too: make the page itself 1280x900.
    try:
        inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
        outer = driver.get_window_size()
        driver.set_window_size(outer["width"] + 1280 - inner[0], outer["height"] + 900 - inner[1])
    except Exception:
        driver.quit()
        raise
    return driver


def wait_for(driver, what, condition):
    """Polls condition(driver) until it answers something truthy; fails naming `what`. The page
    rebuilds its tables as it refreshes them, so an element gone stale is just polled again."""
    wait = WebDriverWait(
        driver, DEADLINE, poll_frequency=0.2, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
    )
    try:
        return wait.until(condition)
    except Exception as e:  # a timeout, or the page went away
        raise StepFailed(f"waited {DEADLINE} s in vain for {what} ({brief(e)})") from None


def text_of(element):
    """The element's text exactly as in the DOM (whitespace kept, unlike .text)."""
    return element.get_property("textContent")


def api_put(base_url, key, value, tls):
    context = tls.context()
    url = base_url + "/v1/data/" + "/".join(urllib.request.quote(s, safe="") for s in key.split("/"))
    request = urllib.request.Request(
        url, data=value.encode(), method="PUT", headers={"Content-Type": "text/plain; charset=utf-8"}
    )
    with urllib.request.urlopen(request, timeout=DEADLINE, context=context) as answer:
        if answer.status != 200:
            raise StepFailed(f"PUT {url} answered {answer.status}")


def cluster_ready(driver):
    """The node ids and the leader, once the table shows 3 nodes and exactly one leader."""
    rows = driver.find_elements(By.CSS_SELECTOR, "#cluster-body tr[data-node-id]")
    nodes = [(row.get_attribute("data-node-id"), row.get_attribute("data-state")) for row in rows]
    leaders = [node for node, state in nodes if state == "Leader"]
    if len(nodes) == 3 and len(leaders) == 1:
        return [node for node, _ in nodes], leaders[0]
    return False


def hex_from_dump(dump):
    """The bytes of a `000000  77 72 ...  |wr...|` dump, as one hex string."""
    digits = []
    for line in dump.splitlines():
        columns = line.split("|")[0].split()
        digits.extend(columns[1:])  # the first column is the offset
    return "".join(digits)


def run(driver, base_url, screenshot, tls, seen):
    # 1. The cluster, live.
    seen["step"] = "1: the cluster table"
    driver.get(base_url + "/ui")
    nodes, leader = wait_for(driver, "3 nodes in the cluster table, exactly one Leader", cluster_ready)
    wait_for(
        driver,
        "the connection status to say live",
        lambda d: d.find_element(By.ID, "conn-status").get_attribute("data-state") == "live",
    )

    # 2. A key written through the page's form.
    seen["step"] = "2: the New-key form"
    driver.find_element(By.ID, "new-key").send_keys(PAGE_KEY)
    driver.find_element(By.ID, "new-value").send_keys(PAGE_VALUE)
    driver.find_element(By.ID, "new-submit").click()

    def written(d):
        status = d.find_element(By.ID, "new-status")
        return status if status.is_displayed() and status.get_attribute("data-state") in ("ok", "error") else False

    status = wait_for(driver, "the New-key form to answer", written)
    if status.get_attribute("data-state") != "ok" or status.get_attribute("data-key") != PAGE_KEY:
        raise StepFailed(f"the New-key form said: {status.text!r}")

    # 3. The watch feed sees a write made over the API.
    seen["step"] = "3: the watch feed"
    prefix = driver.find_element(By.ID, "watch-prefix")
    prefix.clear()
    prefix.send_keys("ui/")
    driver.find_element(By.ID, "watch-start").click()

    def watching(d):
        state = d.find_element(By.ID, "watch-state")
        return state.get_attribute("data-state") == "watching" and state.get_attribute("data-prefix") == "ui/"

    wait_for(driver, "the watch to be connected on prefix ui/", watching)
    api_put(base_url, API_KEY, API_VALUE, tls)
    entry = wait_for(
        driver,
        f"a feed entry for {API_KEY}",
        lambda d: d.find_elements(By.CSS_SELECTOR, f"#watch-feed li[data-key={css_string(API_KEY)}]"),
    )[0]
    if entry.get_attribute("data-type") != "Set" or API_VALUE not in entry.text:
        raise StepFailed(f"the feed entry for {API_KEY} reads {entry.text!r} (type {entry.get_attribute('data-type')})")

    # 4. The key browser: both keys, one opened, as text then hex.
    seen["step"] = "4: the key browser"
    search = driver.find_element(By.ID, "scan-prefix")
    search.clear()
    search.send_keys("ui/")
    driver.find_element(By.ID, "scan-submit").click()

    def listed(d):
        keys = {row.get_attribute("data-key") for row in d.find_elements(By.CSS_SELECTOR, "#key-body tr[data-key]")}
        return keys if {PAGE_KEY, API_KEY} <= keys else False

    wait_for(driver, f"{PAGE_KEY} and {API_KEY} in the key list", listed)
    row_button = f"#key-body tr[data-key={css_string(PAGE_KEY)}] button"
    wait_for(driver, f"a click on {PAGE_KEY}", lambda d: d.find_element(By.CSS_SELECTOR, row_button).click() or True)

    def shown_as_text(d):
        view = d.find_element(By.ID, "value-view")
        return (
            text_of(d.find_element(By.ID, "detail-key")) == PAGE_KEY
            and view.get_attribute("data-mode") == "text"
            and text_of(view) == PAGE_VALUE
        )

    wait_for(driver, f"the value of {PAGE_KEY} shown as text", shown_as_text)
    revision = text_of(driver.find_element(By.ID, "detail-mod"))
    if not revision.isdigit():
        raise StepFailed(f"the key's mod revision shows as {revision!r}")
    driver.find_element(By.ID, "view-hex").click()
    expected_hex = PAGE_VALUE.encode().hex()

    def shown_as_hex(d):
        view = d.find_element(By.ID, "value-view")
        if view.get_attribute("data-mode") != "hex":
            return False
        shown = hex_from_dump(text_of(view))
        return shown if shown == expected_hex else False

    shown_hex = wait_for(driver, f"the value of {PAGE_KEY} shown as hex", shown_as_hex)

    # 5. The picture for the README, with everything populated.
    if screenshot:
        seen["step"] = "5: the screenshot"
        driver.execute_script("window.scrollTo(0, 0)")
        if not driver.save_screenshot(screenshot):
            raise StepFailed(f"could not save the screenshot to {screenshot}")

    return {"nodes": nodes, "leader": leader, "wrote": PAGE_KEY, "feed_saw": API_KEY, "hex": shown_hex}


def report_failure(driver, seen, error):
    print(f"dashboard.py failed at step {seen.get('step', '?')}: {error}", file=sys.stderr)
    if driver is None:
        return
    try:
        print("--- the page showed:", file=sys.stderr)
        print(driver.find_element(By.TAG_NAME, "body").text, file=sys.stderr)
    except Exception as e:
        print(f"(could not read the page: {e})", file=sys.stderr)
    try:
        print("--- the browser's console:", file=sys.stderr)
        for entry in driver.get_log("browser"):
            print(f"{entry.get('level')} {entry.get('message')}", file=sys.stderr)
    except Exception as e:
        print(f"(could not read the console: {e})", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url", help="a node's HTTP(S) address, e.g. http://127.0.0.1:8000")
    parser.add_argument("--screenshot", metavar="PATH", help="save a PNG of the page here")
    parser.add_argument("--insecure", action="store_true", help="accept the node's certificate unverified")
    parser.add_argument("--ca", metavar="PEM", help="trust this CA (the browser through an NSS database of its own)")
    parser.add_argument("--client-cert", metavar="PEM", help="present this client certificate (mTLS); needs --ca")
    parser.add_argument("--client-key", metavar="PEM", help="the key of --client-cert")
    args = parser.parse_args()
    if bool(args.client_cert) != bool(args.client_key) or (args.client_cert and not args.ca):
        parser.error("--client-cert and --client-key go together, with --ca")
    client = (args.client_cert, args.client_key) if args.client_cert else None
    tls = Tls(insecure=args.insecure, ca=args.ca, client=client)
    base_url = args.base_url.rstrip("/")

    driver = None
    seen = {"step": "0: starting Chromium"}
    try:
        driver = start_browser(tls, base_url)
        result = run(driver, base_url, args.screenshot, tls, seen)
    except Exception as e:
        report_failure(driver, seen, e if isinstance(e, StepFailed) else brief(e))
        return 1
    finally:
        if driver is not None:
            try:
                driver.quit()
            except Exception:
                pass
        if tls.home:
            shutil.rmtree(tls.home, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
