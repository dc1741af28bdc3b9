"""The Corpus study page in headless Chromium: a wrong folder, a real study's figures, and a
document opened in the Attention lab; screenshots under the test's tmp_path."""

from __future__ import annotations

import os
import shutil

import pytest

from test_app import app_model_env
from test_browser import CHROMIUM, idle, server  # noqa: F401 - the server fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_study_page_in_a_browser(server, tmp_path, monkeypatch):  # noqa: F811 - the fixture
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip(f"BROWSER TEST SKIPPED: {CHROMIUM} is missing (apt-get install -y chromium); CI installs it")
    playwright = pytest.importorskip("playwright.sync_api", reason="BROWSER TEST SKIPPED: playwright is not installed")
    from ledviz.study import StudySpec, run_study

    for k, v in {**app_model_env(), "HF_HUB_OFFLINE": "1"}.items():
        monkeypatch.setenv(k, v)
    study = tmp_path / "study"
    run_study(StudySpec(corpus="demo:3:200-300", settings=["first", "none"], max_new_tokens=16), study,
              progress=False)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            viewport={"width": 1400, "height": 2400},
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page()
            page.goto(server + "/study")
            idle(page)
            page.get_by_role("heading", name="Corpus study").first.wait_for()
            box = page.get_by_role("textbox", name="Results folder")
            box.fill(str(tmp_path / "nowhere"))
            box.press("Enter")
            idle(page)
            errors = page.locator("[data-testid='stAlertContentError']")
            assert errors.count() == 1 and "is not a folder" in errors.inner_text()

            box.fill(str(study))
            box.press("Enter")
            idle(page)
            page.wait_for_selector("[data-testid='stPlotlyChart']", timeout=60_000)
            page.wait_for_timeout(1500)  # let Plotly draw
            page.screenshot(path=str(tmp_path / "study.png"))
            assert page.locator("[data-testid='stException']").count() == 0
            assert page.locator("[data-testid='stAlertContentError']").count() == 0
            assert page.locator("[data-testid='stPlotlyChart']").count() == 4
            assert page.get_by_text("3 documents × 2 settings: 6 of 6 rows (complete)", exact=False).count() == 1

            page.get_by_role("button", name="Open in the Attention lab").click()
            idle(page)
            page.get_by_role("heading", name="Global-attention lab").first.wait_for()
            page.screenshot(path=str(tmp_path / "lab.png"))
            assert page.locator("[data-testid='stException']").count() == 0
            assert page.locator("[data-testid='stAlertContentError']").count() == 0
            pasted = page.get_by_role("textbox", name="Paste a document").input_value()
            from ledviz.study import load_study

            assert pasted == load_study(study).record(0).text
        finally:
            browser.close()
    assert (tmp_path / "study.png").stat().st_size > 10_000
