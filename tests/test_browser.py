"""One real-browser test: `streamlit run app.py` in a subprocess, headless Chromium (Debian's
chromium package) through Playwright; open Summarize, pick a sample, run, wait for the charts,
and save a screenshot under the test's tmp_path."""

from __future__ import annotations

import os
import shutil

import pytest

from app_driver import CHARTS, CHROMIUM, IDLE, serve_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def server(tmp_path):
    """The app served on a free port (its log in tmp_path); yields its base URL and always stops it."""
    with open(tmp_path / "streamlit.log", "wb") as log, serve_app(log) as url:
        yield url


def idle(page, timeout: float = 180_000) -> None:
    """Wait until the script has finished running (a rerun may start just after a click)."""
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE, timeout=timeout)


def test_summarize_in_a_browser(server, tmp_path):
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip(f"BROWSER TEST SKIPPED: {CHROMIUM} is missing (apt-get install -y chromium); CI installs it")
    playwright = pytest.importorskip("playwright.sync_api", reason="BROWSER TEST SKIPPED: playwright is not installed")
    with playwright.sync_playwright() as p:
        # Playwright refuses --user-data-dir among launch args: the persistent context takes the directory
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            viewport={"width": 1500, "height": 2200},
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()
            page.goto(server + "/")  # Summarize is the default page
            idle(page)
            page.get_by_role("heading", name="Summarize").first.wait_for()

            # pick a sample document in the selectbox
            sample = "Company report (about 2.5K tokens)"
            page.locator("[data-testid='stSelectbox']").filter(has_text="Sample document").click()
            page.get_by_role("option", name=sample).click()
            idle(page)
            playwright.expect(page.get_by_role("combobox", name="Sample document")).to_have_value(sample)

            page.get_by_role("button", name="Summarize", exact=True).click()
            idle(page)
            page.wait_for_selector(CHARTS, timeout=120_000)
            idle(page)
            page.wait_for_timeout(1500)  # let Plotly finish drawing
            page.screenshot(path=str(tmp_path / "summarize.png"), full_page=True)

            assert page.locator("[data-testid='stException']").count() == 0
            assert page.locator("[data-testid='stAlertContentError']").count() == 0
            assert page.locator("[data-testid='stPlotlyChart']").count() >= 2
            assert page.get_by_role("heading", name="Where the summary came from").count() == 1
        finally:
            browser.close()
    assert (tmp_path / "summarize.png").stat().st_size > 10_000
