"""The Corpus study page in headless Chromium: a wrong folder, a real study's figures, and a
document opened in the Attention lab; screenshots under the test's tmp_path."""

from __future__ import annotations

import pytest

from browser_fixtures import browser, idle, no_failure, server  # noqa: F401 - the fixtures

from ledviz.study import StudySpec, load_study, run_study

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_study_page_in_a_browser(server, browser, tmp_path):  # noqa: F811 - the fixtures
    study = tmp_path / "study"
    run_study(StudySpec(corpus="demo:3:200-300", settings=["first", "none"], max_new_tokens=16), study,
              progress=False)
    page = browser.new_page()
    page.goto(server + "/study")
    idle(page)
    page.get_by_role("heading", name="Corpus study").first.wait_for()
    box = page.get_by_role("textbox", name="Results folder")
    box.fill(str(tmp_path / "nowhere"))
    box.press("Enter")
    idle(page)
    errors = page.locator("[data-testid='stAlertContentError']")
    assert errors.count() == 1 and "There is no folder" in errors.inner_text()

    box.fill(str(study))
    box.press("Enter")
    idle(page)
    page.wait_for_selector("[data-testid='stPlotlyChart']", timeout=60_000)
    page.wait_for_timeout(1500)  # let Plotly draw
    page.screenshot(path=str(tmp_path / "study.png"))
    no_failure(page)
    assert page.locator("[data-testid='stAlertContentError']").count() == 0
    assert page.locator("[data-testid='stPlotlyChart']").count() == 4
    assert page.get_by_text("3 documents × 2 settings: 6 of 6 rows (complete)", exact=False).count() == 1

    page.get_by_role("button", name="Open in the Attention lab").click()
    idle(page)
    page.get_by_role("heading", name="Global-attention lab").first.wait_for()
    page.screenshot(path=str(tmp_path / "lab.png"))
    no_failure(page)
    assert page.locator("[data-testid='stAlertContentError']").count() == 0
    assert page.get_by_role("textbox", name="Paste a document").input_value() == load_study(study).record(0).text
    assert (tmp_path / "study.png").stat().st_size > 10_000
