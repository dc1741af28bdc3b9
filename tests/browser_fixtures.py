"""A served app and a headless Chromium (Debian's chromium through Playwright), shared by the browser test modules."""

from __future__ import annotations

import os
import shutil

import pytest

from app_driver import serve_app
from ledviz.localserver import CHROMIUM, IDLE


@pytest.fixture
def server(tmp_path):
    """The app served on a free port (its log in tmp_path); yields its base URL and always stops it."""
    with open(tmp_path / "streamlit.log", "wb") as log, serve_app(log) as url:
        yield url


def idle(page, timeout: float = 180_000) -> None:
    """Wait until the script has finished running (a rerun may start just after a click)."""
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE, timeout=timeout)


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium context (Debian's chromium), closed afterwards."""
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip(f"BROWSER TEST SKIPPED: {CHROMIUM} is missing (apt-get install -y chromium); CI installs it")
    playwright = pytest.importorskip("playwright.sync_api", reason="BROWSER TEST SKIPPED: playwright is not installed")
    with playwright.sync_playwright() as p:
        # Playwright refuses --user-data-dir among launch args: the persistent context takes the directory
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            viewport={"width": 1500, "height": 2200},
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"])
        try:
            yield context
        finally:
            context.close()


def no_failure(page) -> None:
    """No traceback and no "Something went wrong" on the page."""
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.get_by_text("Something went wrong").count() == 0
