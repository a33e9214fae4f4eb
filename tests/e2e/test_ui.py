"""A headless Chromium logs into the Airflow UI through the proxy and finds the
DAG with a successful run. The screenshot is kept in .build/artifacts."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, sync_playwright

from harness.settings import BASE_URL, REPO, secret

ARTIFACTS = REPO / ".build" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium aborts a navigation when this machine's network changes (tests/ha's hosts and
# Molecule's containers come and go beside this suite): net::ERR_NETWORK_CHANGED, or a
# connection reset as Docker rewrites its rules. Only such network errors are tried again.
NETWORK_ERROR = "net::ERR_"
ERROR_PAGE = "chrome-error://"
ATTEMPTS = 3


@pytest.fixture(scope="module")
def browser(recorded_slot):
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def links() -> list[str]:
    return sorted(path.name for path in Path("/sys/class/net").iterdir())


def wait_for_a_quiet_network(quiet_s: float = 5, timeout: float = 120) -> None:
    """Until no link has come or gone for ``quiet_s`` (at most ``timeout``)."""
    deadline = time.monotonic() + timeout
    before, since = links(), time.monotonic()
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(1)
        now = links()
        if now != before:
            before, since = now, time.monotonic()


def log_in_and_open_the_runs(page: Page) -> str:
    page.goto(f"{BASE_URL}/airflow/")
    # The FAB auth manager's login form.
    page.locator("input[name=username]").fill("admin")
    page.locator("input[name=password]").fill(secret("airflow_admin_password"))
    page.locator("[type=submit]").click()
    # The login page is under /airflow/ too: wait until it has redirected away, or
    # Chromium shows its error page (a navigation a click started raises nothing).
    page.wait_for_url(lambda url: url.startswith(ERROR_PAGE) or (url.startswith(BASE_URL) and "/auth/" not in url))
    if page.url.startswith(ERROR_PAGE):
        code = page.inner_text("body").split()[-1]  # the page ends with the error's code
        raise PlaywrightError(f"net::{code}: Chromium's error page after the login")
    page.goto(f"{BASE_URL}/airflow/dags/btc_usd_exchange_rate/runs")
    page.get_by_text("e2e-", exact=False).first.wait_for(timeout=60_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "airflow-dag-runs.png"), full_page=True)
    return page.inner_text("body")


def test_login_and_see_the_dag_with_a_successful_run(browser):
    for attempt in range(1, ATTEMPTS + 1):
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900})
        try:
            body = log_in_and_open_the_runs(context.new_page())
            break
        except PlaywrightError as exc:
            if attempt == ATTEMPTS or NETWORK_ERROR not in str(exc):
                raise
            print(f"attempt {attempt}: {str(exc).splitlines()[0]}; once more when the network is quiet")
            wait_for_a_quiet_network()
        finally:
            context.close()
    assert "btc_usd_exchange_rate" in body
    assert "success" in body.lower()
    assert "sign in" not in body.lower()
