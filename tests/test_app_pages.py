"""The Attention lab, How LED attention works and The model pages, run inside the app's frame with
Streamlit's AppTest (tests/app_driver.py): each renders, its main action runs and draws charts,
and bad input shows a message instead of a traceback.
"""

from __future__ import annotations

import os

import pytest

from app_driver import assert_clean, charts, kept, messages, open_app, paste, run_lab_encoder_only, when_waiting

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------------------------------------
# the lab
# ---------------------------------------------------------------------------------------------

def test_lab_says_its_outputs_are_unconstrained():
    at = open_app("pages/lab.py")
    at.segmented_control(key="lab.task").set_value("qa").run()
    assert_clean(at)
    assert any("Type a question" in i.value for i in at.info)
    assert any("unconstrained" in c.value for c in at.caption)
    # summarizing too: its summary can differ from the Summarize page's, which keeps each fact's value to the document
    at.segmented_control(key="lab.task").set_value("summarize").run()
    said = [c.value for c in at.caption if "unconstrained" in c.value]
    assert len(said) == 1 and "Summarize page keeps each fact's value to the document" in said[0], said


def test_lab_opened_on_question_answering_puts_setting_1_on_the_question():
    """However the lab is opened on question answering (here: the task already chosen when the page
    first draws), Setting 1 starts on the question's tokens; back on summarizing it starts on the
    first token again, and a kind the user chose stays through a switch."""
    at = open_app()
    at.session_state["lab.task"] = "qa"
    at.switch_page("pages/lab.py").run()
    assert_clean(at)
    assert at.segmented_control(key="lab.task").value == "qa"
    assert at.selectbox(key="lab.s0.kind").value == "question"
    assert not [m for m in messages(at, "warning") if "Session State API" in m]
    at.segmented_control(key="lab.task").set_value("summarize").run()
    assert at.selectbox(key="lab.s0.kind").value == "first"
    at.segmented_control(key="lab.task").set_value("qa").run()
    assert at.selectbox(key="lab.s0.kind").value == "question"
    at.selectbox(key="lab.s0.kind").set_value("sentences").run()
    for task in ("summarize", "qa"):
        at.segmented_control(key="lab.task").set_value(task).run()
        assert_clean(at)
        assert at.selectbox(key="lab.s0.kind").value == "sentences"


def test_lab_compares_settings_and_draws_charts():
    at = open_app("pages/lab.py")
    assert at.title[0].value == "Global-attention lab"
    paste(at)
    at.number_input(key="lab.count").set_value(3).run()
    at.selectbox(key="lab.s2.kind").set_value("pattern").run()
    at.text_input(key="lab.s2.pattern").set_value(r"^\d").run()
    at.number_input(key="lab.max_new").set_value(4).run()
    assert charts(at) == 0
    at.button(key="lab.run").click().run()
    assert_clean(at)
    assert charts(at) >= 7  # likelihood, time, memory, per layer, A, B, A - B, per token
    table = at.dataframe[0].value
    assert list(table.setting) == ["first <s>", "sentence starts", "pattern /^\\d/"]
    assert {"log_likelihood", "reference_log_likelihood", "mean_tv_vs_reference", "encode_s"} <= set(table.columns)
    assert table.reference_log_likelihood.notna().all()
    # three cards: each card's two log-likelihoods one under the other (side by side, "-145.31" was cut)
    assert len(at.metric) == 6
    assert not [m for c in at.columns for m in c.children.values() if m.type == "metric"]
    # another pair for the difference map, and a sidebar view of one layer and head
    at.selectbox(key="lab.diff_a").set_value(2).run()
    at.sidebar.selectbox(key="view.layer").set_value(0).run()  # the sidebar's layer choice
    assert_clean(at)
    assert charts(at) >= 7
    # changing a setting marks the results as stale, and the Reference names settings by their new label
    at.selectbox(key="lab.s1.kind").set_value("none").run()
    assert any("earlier input or settings: press **Compare**" in i.value for i in at.info)
    assert at.selectbox(key="lab.reference").options[1] == "Setting 2: none"
    # an invalid setting: its message, and the controls and the (stale) results stay
    at.selectbox(key="lab.s1.kind").set_value("positions").run()
    at.text_input(key="lab.s1.positions").set_value("0, ten, 20").run()
    assert_lab_controls_stay(at, "whole numbers")
    assert at.selectbox(key="lab.reference").options[1] == "Setting 2: (to fix)"
    # Compare is off until the setting is fixed: the note points to the message, not to the button (runs.stale_note)
    assert charts(at) >= 7 and any("earlier input or settings. **Compare** stays off" in i.value for i in at.info)


def test_lab_output_cut_at_its_token_limit_says_so_as_summarize_does():
    """A setting's output that ran to "Max output tokens" unfinished carries the same cut warning as
    Summarize and QA (runs.cut_note), one per cut output; at the lab's largest limit the fix says the
    control is at its most."""
    at = open_app("pages/lab.py")
    at.number_input(key="lab.max_new").set_value(4).run()
    at.button(key="lab.run").click().run()
    assert_clean(at)
    _, comp = kept(at, "lab")
    cut = [w.value for w in at.warning if "was cut at 4 tokens: raise Max output tokens" in w.value]
    unfinished = [item for item in comp.results if not item.run.ended]
    assert unfinished and len(cut) == len(unfinished), (cut, [item.run.output_text for item in comp.results])
    most = at.number_input(key="lab.max_new").max
    at.number_input(key="lab.max_new").set_value(most).run()
    at.button(key="lab.run").click().run()
    assert_clean(at)
    _, comp = kept(at, "lab")
    cut = [w.value for w in at.warning if "was cut at" in w.value]
    assert len(cut) == sum(not item.run.ended for item in comp.results), cut
    assert all(f"Max output tokens is at its most, {most:,}" in c for c in cut), cut


def test_lab_defaults_let_a_sample_summary_finish():
    """Opened as is, Compare on each sample report: the reference setting's free summary ends on its own,
    with no "was cut" warning (the default of 32 output tokens cut every sample's summary: they take 34-36)."""
    at = open_app("pages/lab.py")
    for sample in at.selectbox(key="doc.sample").options:
        at.selectbox(key="doc.sample").set_value(sample).run()
        at.button(key="lab.run").click().run()
        assert_clean(at)
        _, comp = kept(at, "lab")
        assert comp.results[0].run.ended, (sample, comp.results[0].run.output_text)
        assert not [w.value for w in at.warning if "was cut at" in w.value], sample


def test_lab_output_with_a_broken_character_says_what_the_mark_is():
    """On the sample report, the first <s> setting's free summary writes "Feven" and a character it never
    finishes: the card shows U+FFFD (as written) and a caption saying what it marks, and nothing else does."""
    at = open_app("pages/lab.py")
    at.button(key="lab.run").click().run()
    assert_clean(at)
    _, comp = kept(at, "lab")
    results = comp.results
    broken = ["\ufffd" in item.output_text for item in results]
    assert broken[0], [item.output_text for item in results]  # the case under test
    notes = [c.value for c in at.caption if "bytes that form no character" in c.value]
    assert len(notes) == sum(broken), notes


def test_lab_compare_is_a_job_of_the_shared_queue():
    from ledviz.memory import Handle
    from pages.running import server

    at = open_app("pages/lab.py")
    paste(at)
    at.number_input(key="lab.count").set_value(2).run()
    at.number_input(key="lab.max_new").set_value(2).run()
    assert at.button(key="lab.cancel").disabled  # nothing to cancel yet
    completed = server().queue.snapshot()["completed"]
    at.button(key="lab.run").click().run()
    assert_clean(at)
    assert server().queue.snapshot()["completed"] == completed + 1
    assert isinstance(at.session_state["lab.result"], Handle)  # kept in the server's bounded store
    _, comp = kept(at, "lab")
    assert comp.labels == ["first <s>", "sentence starts"] and charts(at) >= 6
    assert at.button(key="lab.cancel").disabled and not at.button(key="lab.run").disabled


def test_lab_compare_waits_its_turn_and_is_cancelled_while_waiting():
    """Another user's run holds the only worker: the comparison waits (place 1) and a Cancel (what
    the Cancel button's callback does, from another thread here) takes it out of the queue."""
    from pages.running import server

    at = open_app("pages/lab.py")
    paste(at)
    with when_waiting(server(), "lab", lambda job: job.cancel()) as seen:
        at.button(key="lab.run").click().run()
    assert_clean(at)
    assert seen["place"] == 1
    assert any("Cancelled before it started" in i for i in messages(at, "info")), messages(at, "info")
    assert not at.button(key="lab.run").disabled and charts(at) == 0


def test_lab_refuses_a_comparison_that_would_not_fit_in_memory(monkeypatch):
    monkeypatch.setenv("LEDVIZ_MEMORY_BUDGET_MB", "1")
    at = open_app("pages/lab.py")
    paste(at)
    at.number_input(key="lab.count").set_value(4).run()
    at.button(key="lab.run").click().run()
    assert_clean(at, errors_ok=True)
    refusals = messages(at, "error")
    assert any("would not fit in memory" in e and "4 runs kept together" in e and "compare fewer settings" in e
               for e in refusals), refusals
    assert not any("Something went wrong" in e for e in refusals)
    assert not at.button(key="lab.run").disabled and charts(at) == 0


def assert_lab_controls_stay(at, message: str) -> None:
    """The message is shown, nothing else went wrong, and the lab's controls are all there."""
    assert_clean(at, errors_ok=True)
    shown = messages(at, "error") + messages(at, "info")
    assert any(message in m for m in shown), shown
    assert not any("Something went wrong" in e for e in messages(at, "error")), messages(at, "error")
    assert at.button(key="lab.run").disabled
    assert at.selectbox(key="lab.reference") is not None and at.number_input(key="lab.count") is not None


def test_lab_encoder_only():
    at = open_app("pages/lab.py")
    run_lab_encoder_only(at)
    assert_clean(at)
    assert charts(at) >= 6
    assert at.dataframe[0].value.output.isna().all()


@pytest.mark.parametrize("kind,key,value,message", [
    ("pattern", "pattern", "(unclosed", "put a backslash before a character meant literally"),
    ("positions", "positions", "0, 99999", "outside the document (0 to 318): give positions from 0 to 318"),
    ("positions", "positions", "0, ten, 20", "whole numbers"),
])
def test_lab_bad_input_shows_a_message_and_keeps_the_controls(kind, key, value, message):
    at = open_app("pages/lab.py")
    paste(at)
    at.selectbox(key="lab.s1.kind").set_value(kind).run()
    at.text_input(key=f"lab.s1.{key}").set_value(value).run()
    assert_lab_controls_stay(at, message)


def test_a_pattern_matching_no_token_says_the_setting_runs_without_global_tokens():
    """"0 global token(s)" under a pattern that matched nothing left a stranger to work out why; the caption
    says no token matches and what the setting then is."""
    at = open_app("pages/lab.py")
    paste(at)
    at.selectbox(key="lab.s1.kind").set_value("pattern").run()
    at.text_input(key="lab.s1.pattern").set_value("zzzqqq").run()
    assert_clean(at)
    said = [c.value for c in at.caption if c.value.startswith("0 global tokens")]
    assert said == ["0 global tokens: no token matches this choice, so it runs as one without global tokens."], said
    assert any(c.value == "1 global token." for c in at.caption)  # setting 1, the first token


def test_lab_reference_survives_a_label_the_browser_kept():
    """The browser sends back the label it showed; once the settings' labels have changed, Streamlit
    hands that label (a str) to the script as the Reference's value. It used to end the page with
    "TypeError: '>=' not supported between 'str' and 'int'"."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    at = open_app("pages/lab.py")
    paste(at)
    at.selectbox(key="lab.reference").set_value(1).run()
    shown = at.selectbox(key="lab.reference").options[1]
    assert shown == "Setting 2: sentence starts"
    at.selectbox(key="lab.s1.kind").set_value("none").run()  # the label changes...
    box = at.selectbox(key="lab.reference")

    class BrowserKeptLabel(type(box)):  # ...but the browser sends back the label it showed
        @property
        def _widget_state(self):
            return WidgetState(id=self.id, string_value=shown)

    box.__class__ = BrowserKeptLabel
    at.run()
    assert_clean(at)
    box = at.selectbox(key="lab.reference")
    # a label it cannot place: the first setting, under the current labels
    assert box.value == 0 and box.options == ["Setting 1: first <s>", "Setting 2: none", "Setting 3: every 64th"]
    assert not at.button(key="lab.run").disabled
    at.run()  # and the next run too
    assert_clean(at)


def test_lab_question_cleared_while_a_setting_uses_it():
    at = open_app("pages/lab.py")
    paste(at)
    at.segmented_control(key="lab.task").set_value("qa").run()
    at.text_input(key="lab.question").set_value("Who is the project lead?").run()
    at.selectbox(key="lab.s0.kind").set_value("question").run()
    assert_clean(at)
    assert not at.button(key="lab.run").disabled
    at.text_input(key="lab.question").set_value("").run()
    assert_lab_controls_stay(at, "type a question above")
    assert at.selectbox(key="lab.s0.kind").value == "question"  # kept, not silently changed


def test_lab_reads_the_question_as_the_qa_page_does():
    """The lab's question answering reads the question with pipeline.read_question, as the QA page
    does: "Read as: …" with what changed, a checkbox on for the embedded model, the comparison run on
    the read question; cleared, the question goes as typed."""
    at = open_app("pages/lab.py")
    paste(at)
    at.segmented_control(key="lab.task").set_value("qa").run()
    assert at.checkbox(key="lab.read_question.embedded").value is True
    at.text_input(key="lab.question").set_value("WHO IS THE PROJCT LEAD?").run()
    assert_clean(at)
    read = [c.value for c in at.caption if c.value.startswith("Read as:")]
    assert read and "Who is the project lead?" in read[0] and "“projct” read as “project”" in read[0], read
    at.number_input(key="lab.count").set_value(2).run()
    at.number_input(key="lab.max_new").set_value(2).run()
    # setting 1, the reference, reads the question as the QA page does: global attention on its tokens
    assert at.selectbox(key="lab.s0.kind").value == "question"
    at.button(key="lab.run").click().run()
    assert_clean(at)
    _, comp = kept(at, "lab")
    assert comp.document.question == "Who is the project lead?"
    assert comp.labels[0] == "question" and comp.results[0].global_positions == comp.document.question_tokens()
    at.checkbox(key="lab.read_question.embedded").uncheck().run()
    assert not [c.value for c in at.caption if c.value.startswith("Read as:")]
    assert any("earlier input or settings" in i.value for i in at.info)  # the question asked changed
    at.segmented_control(key="lab.task").set_value("summarize").run()  # no question: setting 1 back to its own
    assert_clean(at)
    assert at.selectbox(key="lab.s0.kind").value == "first"


def test_lab_names_every_k_in_english():
    """k = 1 read "every 1th" in the Reference and the results ("every 2th", "every 22th" too)."""
    at = open_app("pages/lab.py")
    paste(at)
    at.number_input(key="lab.s2.k").set_value(1).run()
    assert at.selectbox(key="lab.reference").options[2] == "Setting 3: every token"
    at.number_input(key="lab.s2.k").set_value(22).run()
    assert at.selectbox(key="lab.reference").options[2] == "Setting 3: every 22nd"


def test_a_rerun_does_not_read_the_question_again(monkeypatch):
    """The reading (the document's words, the slips) is cached per model, question and document: reruns
    of the page with the same question and document do not redo it."""
    from ledviz import pipeline
    from pages.common import _read_question

    _read_question.clear()
    calls = []
    real = pipeline.read_question
    monkeypatch.setattr(pipeline, "read_question", lambda *a, **k: calls.append(a) or real(*a, **k))
    at = open_app("pages/qa.py")
    paste(at)
    at.text_input(key="qa.question").set_value("WHO IS THE PROJECT LEAD?").run()
    for _ in range(3):
        at.run()
    assert len(calls) == 1
    at.text_input(key="qa.question").set_value("WHERE IS THE SITE?").run()
    assert len(calls) == 2 and any("Where is the site?" in c.value for c in at.caption)


# ---------------------------------------------------------------------------------------------
# how LED attention works
# ---------------------------------------------------------------------------------------------

def test_how_it_works_recomputes_and_links_cells():
    at = open_app("pages/how_it_works.py")
    assert at.title[0].value == "How LED attention works"
    assert charts(at) == 3  # the linked maps, pairs and memory against N
    at.toggle(key="hiw.stacked").set_value(True).run()  # the maps one above the other, for a narrow screen
    assert_clean(at)
    assert charts(at) == 3
    at.toggle(key="hiw.stacked").set_value(False).run()
    at.slider(key="hiw.w").set_value(5).run()
    at.multiselect(key="hiw.globals").set_value(["0:<s>", "7:lead"]).run()
    at.number_input(key="hiw.i").set_value(9).run()
    at.number_input(key="hiw.j").set_value(7).run()
    assert_clean(at)
    picked = next(m.value for m in at.markdown if m.value.startswith("**Picked**"))
    assert "key 7 “lead”" in picked and "encoder_attentions[9, g:7]" in picked
    at.number_input(key="hiw.j").set_value(20).run()  # far and not global: never scored
    assert any("never scored" in m.value for m in at.markdown)
    assert not any("full attention" in m.value for m in at.info)
    at.slider(key="hiw.n").set_value(8).run()  # fewer tokens: the picked cell and globals are clamped
    assert_clean(at)
    at.slider(key="hiw.w").set_value(12).run()  # a window over all 8 tokens: full attention, and said
    assert [m.value for m in at.info if "full attention" in m.value], [m.value for m in at.info]
    at.slider(key="hiw.w").set_value(5).run()
    assert at.multiselect(key="hiw.globals").value == ["0:<s>"]  # token 7 is now </s>, not "lead"
    assert at.number_input(key="hiw.i").value <= 7 and at.number_input(key="hiw.j").value <= 7
    at.slider(key="hiw.n").set_value(44).run()  # the largest: every word of the example
    assert_clean(at)
    assert charts(at) == 3
    at.select_slider(key="hiw.cost_window").set_value(512).run()
    at.radio(key="hiw.cost_dtype").set_value("float16").run()
    assert_clean(at)
    assert charts(at) == 3


def test_how_it_works_keeps_its_page_for_a_token_count_it_cannot_show():
    """The slider used to go to 48 with an example of 44 tokens: 45 to 48 failed and the rest of the
    page disappeared. A value kept from then is pulled back into range."""
    from ledviz import explain

    at = open_app("pages/how_it_works.py")
    assert at.slider(key="hiw.n").max == explain.MAX_TOKENS == 44
    at.slider(key="hiw.n").set_value(48).run()  # what the page offered before
    assert_clean(at)
    assert explain.MIN_TOKENS <= at.slider(key="hiw.n").value <= 44 and charts(at) == 3
    assert any(h.value == "What the window saves" for h in at.header)


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------

def test_model_page():
    at = open_app("pages/model.py")
    assert at.title[0].value == "The model"
    assert charts(at) == 3  # windows, parameters per layer, attention memory
    labels = [m.label for m in at.metric]
    assert {"Source", "Load time", "Parameters", "Total", "Encoder", "Decoder"} <= set(labels)
    # "Task heads 0" beside the QA page's "answerability head": the page says the head exists, its size and threshold
    head = [c.value for c in at.caption if "an answerability head decides" in c.value]
    from ledviz import answerability
    from ledviz.pipeline import default_model_dir

    shipped = answerability.load(os.path.join(default_model_dir(), "answerability.json"))
    assert len(head) == 1 and f"below a probability of {shipped.threshold:.2f}" in head[0], head
    assert "answerability.json" in head[0], head
    assert shipped.parameter_count > 0 and f"{shipped.parameter_count:,} parameters" in head[0], head
    at.number_input(key="model_page.n").set_value(16_384).run()
    at.number_input(key="model_page.x").set_value(64).run()
    assert_clean(at)
    assert any("16,384" in c.value or "hypothetical" in c.value for c in at.caption)
    from ledviz import device

    cpu = [c.value for c in at.caption if c.value.startswith("CPU:")]
    assert len(cpu) == 1 and ("fast bfloat16" in cpu[0]) == device.fast_bfloat16()
    # readable by a stranger: PyTorch named as such, no parentheses inside parentheses (it read
    # "CPU: fast bfloat16 (AVX-512 BF16, AMX (torch: AVX512))")
    depth = deepest = 0
    for ch in cpu[0]:
        depth += (ch == "(") - (ch == ")")
        deepest = max(deepest, depth)
    assert deepest <= 1 and depth == 0 and "torch:" not in cpu[0] and "PyTorch's CPU kernels" in cpu[0], cpu[0]
