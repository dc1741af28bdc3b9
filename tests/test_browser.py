"""Real-browser tests: `streamlit run app.py` in a subprocess, headless Chromium (Debian's chromium
package) through Playwright. Summarize: pick a sample, run, wait for the charts. Question answering:
a suggested question, its answer with the decline weighing, the suggestion clicked again after an
edit, a double click on a suggestion. The Attention lab
and How LED attention works: an invalid input each, and the page's controls stay; the lab reads a
question as the QA page does. An answer cut inside a character (a Japanese document) shows no
U+FFFD and says it was cut; the lab on question answering starts Setting 1 on the question.
Screenshots are saved under the test's tmp_path."""

from __future__ import annotations

import pytest

from app_driver import CHARTS
from browser_fixtures import server, idle, browser, no_failure  # noqa: F401 (fixtures and helpers shared with other modules)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_summarize_in_a_browser(server, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(server + "/")  # Summarize is the default page
    idle(page)
    page.get_by_role("heading", name="Summarize").first.wait_for()

    # pick a sample document in the selectbox
    sample = "Company report (about 2.5K tokens)"
    page.locator("[data-testid='stSelectbox']").filter(has_text="Sample document").click()
    page.get_by_role("option", name=sample).click()
    idle(page)
    expect(page.get_by_role("combobox", name="Sample document")).to_have_value(sample)

    page.get_by_role("button", name="Summarize", exact=True).click()
    idle(page)
    page.wait_for_selector(CHARTS, timeout=120_000)
    idle(page)
    page.wait_for_timeout(1500)  # let Plotly finish drawing
    page.screenshot(path=str(tmp_path / "summarize.png"), full_page=True)

    no_failure(page)
    assert page.locator("[data-testid='stAlertContentError']").count() == 0
    assert page.locator("[data-testid='stPlotlyChart']").count() >= 2
    assert page.get_by_role("heading", name="Where the summary came from").count() == 1
    assert page.get_by_text("Checked against the document").count() == 1
    assert (tmp_path / "summarize.png").stat().st_size > 10_000

    # the Export tab: every download button's label reads in full (not cut short with "…")
    page.get_by_role("tab", name="Export").click()
    idle(page)
    buttons = page.locator("[data-testid='stDownloadButton']")
    buttons.first.wait_for()
    assert buttons.count() >= 2
    cut = page.evaluate("""() => [...document.querySelectorAll("[data-testid='stDownloadButton'] button *")]
        .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)""")
    page.screenshot(path=str(tmp_path / "export.png"), full_page=True)
    assert not cut, cut

    # a click on the heads grid's cell (layer 1, head 2) sets the sidebar (pages.common.select_head),
    # and the server logs no "created with a default value but also had its value set via the Session
    # State API" for the widgets it sets
    page.get_by_role("tab", name="Heads").click()
    idle(page)
    grid = page.get_by_role("tabpanel").locator(".js-plotly-plot .nsewdrag").first
    grid.wait_for()
    page.wait_for_timeout(1000)
    box = grid.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 2.5 / 4, box["y"] + box["height"] * 1.5 / 2)
    idle(page)
    page.get_by_test_id("stSidebar").get_by_text("Showing layer 1, head 2.").wait_for(timeout=30_000)
    no_failure(page)
    log = (tmp_path / "streamlit.log").read_text(errors="replace")
    assert "Session State API" not in log, log[-2000:]


def test_question_answering_in_a_browser(server, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(server + "/qa")
    idle(page)
    page.get_by_role("heading", name="Question answering").first.wait_for()
    question = page.get_by_label("Question", exact=True)
    suggestion = "Who is the project lead?"
    page.get_by_text(suggestion, exact=True).first.click()  # a suggested question (a pill)
    idle(page)
    expect(question).to_have_value(suggestion)
    # edited, then the same suggestion clicked again: it comes back (the second click used to clear the pill)
    question.fill("What is the deadline for it?")
    question.press("Enter")
    idle(page)
    page.get_by_text(suggestion, exact=True).first.click()
    idle(page)
    expect(question).to_have_value(suggestion)

    page.get_by_role("button", name="Answer", exact=True).click()
    idle(page)
    page.get_by_role("heading", name="Where the answer came from").wait_for(timeout=120_000)
    idle(page)
    page.wait_for_timeout(1500)  # let Plotly finish drawing
    page.screenshot(path=str(tmp_path / "qa.png"), full_page=True)
    no_failure(page)
    assert page.locator("[data-testid='stAlertContentError']").count() == 0
    # the embedded model's answerability head decided: a caption with its probability, its figure
    # ("answerable: 0.93"), the weighed scores' figure, and the run's facts
    expect(page.get_by_text("(its answerability head)", exact=False)).to_have_count(1)
    # in words for a reader who never heard of the head: what it estimates, as a percentage, and whether it
    # agreed with the model's own preference (drawn as probabilities beside it)
    expect(page.get_by_text("estimates how likely it is that the document answers the question", exact=False)
           ).to_have_count(1)
    expect(page.get_by_text("The checker agrees with it here.", exact=False)).to_have_count(1)
    # (the axis titles are wrapped into lines of plots.DECISION_TITLE_CHARS: each line is a text element of its own)
    expect(page.get_by_text("the model's probability of", exact=False).first).to_be_visible()
    expect(page.get_by_text("answerable: ", exact=False).first).to_be_visible()
    expect(page.get_by_text("answer kept to a span of the document (or declined)", exact=False)).to_have_count(1)
    assert page.locator("[data-testid='stPlotlyChart']").count() >= 4  # head, scores, question profile, maps
    # the head's figure and the scores' figure, one above the other, put x = 0 at the same place (their plot
    # areas were offset by their labels' widths), and both span the same 0-1 axis
    areas = []
    for title in ("the answerability head's", "the model's probability of"):
        chart = page.locator("[data-testid='stPlotlyChart']").filter(has_text=title)
        expect(chart).to_have_count(1)
        areas.append(chart.locator(".nsewdrag").first.bounding_box())
    assert abs(areas[0]["x"] - areas[1]["x"]) < 1 and abs(areas[0]["width"] - areas[1]["width"]) < 1, areas


def test_a_double_click_on_a_suggested_question_keeps_it_in_a_browser(server, browser, tmp_path):
    """A double click on a suggested question of a fresh QA page, sent by the browser as one message
    (Playwright's dblclick): the pill was selected and cleared in one step, the server saw neither,
    and the question box stayed empty. The pills are required: a click on the selected one keeps it."""
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(server + "/qa")
    idle(page)
    page.get_by_role("heading", name="Question answering").first.wait_for()
    question = page.get_by_label("Question", exact=True)
    expect(question).to_have_value("")
    suggestion = "Who is the project lead?"
    page.get_by_text(suggestion, exact=True).first.dblclick()
    idle(page)
    page.screenshot(path=str(tmp_path / "qa-dblclick.png"), full_page=True)
    no_failure(page)
    expect(question).to_have_value(suggestion)
    # the pill shows selected, as it does while the question is that suggestion
    pill = page.get_by_test_id("stButtonGroup").filter(has_text="Suggested questions").locator("button", has_text=suggestion)
    expect(pill).to_have_attribute("data-selected", "true")
    # a second double click on the selected pill keeps the question too
    pill.dblclick()
    idle(page)
    expect(question).to_have_value(suggestion)
    expect(pill).to_have_attribute("data-selected", "true")


def test_lab_keeps_its_controls_on_invalid_input(server, browser, tmp_path):
    """Positions '0, ten, 20' used to add "TypeError: '>=' not supported between 'str' and 'int'" and
    take away the Reference selector and the Compare button. Fixed, the comparison runs."""
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(server + "/lab")
    idle(page)
    page.get_by_role("heading", name="Global-attention lab").wait_for()
    # the Reference on setting 2, then setting 2 changed: the box follows the new label
    page.locator("[data-testid='stSelectbox']").filter(has_text="Reference").click()
    page.get_by_role("option", name="Setting 2: sentence starts").click()
    idle(page)
    page.locator("[data-testid='stSelectbox']").filter(has_text="Global attention on").nth(1).click()
    page.get_by_role("option", name="tokens picked by position").click()
    idle(page)
    positions = page.get_by_role("textbox", name="Token positions (commas; ranges like 10-20)")
    positions.fill("0, ten, 20")
    positions.press("Enter")
    idle(page)
    page.screenshot(path=str(tmp_path / "lab-invalid.png"), full_page=True)
    no_failure(page)
    expect(page.get_by_text("'ten' is not a token position")).to_be_visible()
    expect(page.get_by_role("button", name="Compare")).to_be_visible()
    expect(page.get_by_role("button", name="Compare")).to_be_disabled()
    expect(page.get_by_role("combobox", name="Reference")).to_have_value("Setting 2: (to fix)")
    positions.fill("0, 10, 20")
    positions.press("Enter")
    idle(page)
    no_failure(page)
    expect(page.get_by_role("combobox", name="Reference")).to_have_value("Setting 2: positions 0,10,20")
    expect(page.get_by_role("button", name="Compare")).to_be_enabled()
    # Compare goes through the server's queue: its Cancel is live while it runs, the results come back
    expect(page.get_by_role("button", name="Cancel")).to_be_disabled()
    page.get_by_role("button", name="Compare").click()
    page.get_by_role("heading", name="Outputs").wait_for(timeout=180_000)
    idle(page)
    no_failure(page)
    expect(page.get_by_role("button", name="Cancel")).to_be_disabled()
    expect(page.get_by_role("button", name="Compare")).to_be_enabled()


def test_lab_reads_a_shouted_misspelt_question_and_refuses_one_without_words(server, browser, tmp_path):
    """The lab's question answering reads the question as the QA page does ("Read as: ...", the
    checkbox beside the question), compares on it; "???" is refused with the fix (it was answered)."""
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(server + "/lab")
    idle(page)
    page.get_by_role("heading", name="Global-attention lab").wait_for()
    # the task's control (not the sidebar's link of the same name, which a click could hit before the page drew)
    page.get_by_test_id("stMain").get_by_text("Question answering", exact=True).click()
    idle(page)
    question = page.get_by_label("Question", exact=True)
    question.fill("???")
    question.press("Enter")
    idle(page)
    # under load a rerun can outlast expect's default 5 s: wait for the page to settle with the message
    expect(page.get_by_text("has no words: type a question about the document")).to_be_visible(timeout=60_000)
    idle(page)
    page.screenshot(path=str(tmp_path / "lab-no-words.png"), full_page=True)
    no_failure(page)
    expect(page.get_by_role("button", name="Compare")).to_be_disabled(timeout=60_000)
    question.fill("WHO IS THE PROJCT LEAD?")
    question.press("Enter")
    idle(page)
    expect(page.get_by_role("checkbox", name="Read the question first (capitals, letter slips)")).to_be_checked()
    expect(page.get_by_text("Read as: Who is the project lead?")).to_be_visible(timeout=60_000)
    page.get_by_role("button", name="Compare").click()
    page.get_by_role("heading", name="Outputs").wait_for(timeout=180_000)
    idle(page)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(tmp_path / "lab-qa.png"), full_page=True)
    no_failure(page)
    assert page.locator("[data-testid='stAlertContentError']").count() == 0
    # setting 1, the reference, is the question's tokens (set when the task switched), with no warning from
    # Streamlit that the widget got its value twice
    expect(page.get_by_role("combobox", name="Reference")).to_have_value("Setting 1: question")
    log = (tmp_path / "streamlit.log").read_text(errors="replace")
    assert "Session State API" not in log, log[-2000:]


def test_how_it_works_keeps_its_controls_on_invalid_input(server, browser, tmp_path):
    """A key position past the example's last token, typed into the cell picker."""
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(server + "/how_it_works")
    idle(page)
    page.get_by_role("heading", name="How LED attention works").wait_for()
    page.wait_for_selector(CHARTS, timeout=60_000)
    key = page.get_by_label("key j")
    key.fill("999")
    key.press("Enter")
    idle(page)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(tmp_path / "how-it-works-invalid.png"), full_page=True)
    no_failure(page)
    assert page.locator("[data-testid='stPlotlyChart']").count() == 3
    expect(page.get_by_role("slider", name="tokens N")).to_be_visible()
    expect(page.get_by_role("heading", name="What the window saves")).to_be_visible()
    # the browser refuses the number (24 tokens by default): the picked cell stays one of the map's
    expect(page.get_by_text("Picked (unfolded)")).to_be_visible()


def test_an_answer_cut_inside_a_character_and_the_lab_on_question_answering(server, browser, tmp_path):
    """A Japanese document (no spaces), 8 answer tokens: the weighed span stops inside a character.
    The page shows no U+FFFD, says the span was cut and how to fix it, and writes the head's
    probability (near 0) beside its bar. Then the lab: on question answering, Setting 1 is on the
    question's tokens, also after a visit to another page."""
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(server + "/qa")
    idle(page)
    page.get_by_test_id("stMain").get_by_text("Paste", exact=True).click()
    idle(page)
    area = page.get_by_label("Paste a document")
    area.fill("東京本社の社長は山田太郎です。大阪支社の社長は佐藤花子です。")
    area.press("Control+Enter")
    idle(page)
    question = page.get_by_label("Question", exact=True)
    question.fill("Who is the president of the Tokyo office?")
    question.press("Enter")
    idle(page)
    tokens = page.get_by_role("spinbutton", name="Max answer tokens")
    tokens.fill("8")
    tokens.press("Enter")
    idle(page)
    page.get_by_role("button", name="Answer", exact=True).click()
    page.get_by_role("heading", name="Where the answer came from").wait_for(timeout=120_000)
    idle(page)
    page.wait_for_timeout(1500)  # let Plotly finish drawing
    page.screenshot(path=str(tmp_path / "qa-cut.png"), full_page=True)
    no_failure(page)
    assert "\ufffd" not in page.inner_text("body")
    expect(page.get_by_text("was cut at 8 tokens: raise Max answer tokens", exact=False)).to_have_count(1)
    expect(page.get_by_text("answerable: 0.00", exact=False).first).to_be_visible()

    page.get_by_test_id("stSidebarNav").get_by_text("Attention lab").click()
    idle(page)
    page.get_by_test_id("stMain").get_by_text("Question answering", exact=True).click()
    idle(page)
    setting_1 = page.get_by_role("combobox", name="Global attention on").first
    expect(setting_1).to_have_value("the question tokens")
    page.get_by_test_id("stSidebarNav").get_by_text("Question answering").click()
    idle(page)
    page.get_by_test_id("stSidebarNav").get_by_text("Attention lab").click()
    idle(page)
    page.screenshot(path=str(tmp_path / "lab-qa.png"), full_page=True)
    no_failure(page)
    expect(page.get_by_role("combobox", name="Global attention on").first).to_have_value("the question tokens")
