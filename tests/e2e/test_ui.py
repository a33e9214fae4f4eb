"""A headless Chromium logs into the Airflow UI through the proxy and finds the
DAG with a successful run. The screenshot is kept in .build/artifacts."""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import sync_playwright

from harness.docker import docker_daemon_lock
from harness.settings import BASE_URL, REPO, secret

ARTIFACTS = REPO / ".build" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def page(recorded_slot):
    # tests/ha's hosts coming and going change this machine's network, and Chromium
    # aborts a page on that (net::ERR_NETWORK_CHANGED): not while they live.
    with docker_daemon_lock(exclusive=True, timeout=1800), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900})
        yield context.new_page()
        browser.close()


def test_login_and_see_the_dag_with_a_successful_run(page):
    page.goto(f"{BASE_URL}/airflow/")
    # The FAB auth manager's login form.
    page.locator("input[name=username]").fill("admin")
    page.locator("input[name=password]").fill(secret("airflow_admin_password"))
    page.locator("[type=submit]").click()
    # The login page is under /airflow/ too: wait until it has redirected away.
    page.wait_for_url(lambda url: "/auth/" not in url)
    page.goto(f"{BASE_URL}/airflow/dags/btc_usd_exchange_rate/runs")
    page.get_by_text("e2e-", exact=False).first.wait_for(timeout=60_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "airflow-dag-runs.png"), full_page=True)
    body = page.inner_text("body")
    assert "btc_usd_exchange_rate" in body
    assert "success" in body.lower()
    assert "sign in" not in body.lower()
