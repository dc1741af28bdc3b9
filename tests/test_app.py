"""The Streamlit app through AppTest: the frame, the Summarize and Question answering pages, and
bad input (empty document, non-text upload, oversized document, unknown Hub id offline). The app
runs the embedded demo model (ledviz/demo/model); tests/app_driver.py drives it.
"""

from __future__ import annotations

import functools
import re

import pytest

from app_driver import (SHORT_DOC, TIMEOUT, assert_clean, charts, kept, load_folder, load_hub_id, messages, open_app, paste,
                        readable)


# ---------------------------------------------------------------------------------------------
# the frame and the pages' main actions
# ---------------------------------------------------------------------------------------------

@pytest.mark.app_install
def test_frame_loads_the_model_and_draws_the_shared_sidebar():
    at = open_app()
    assert_clean(at)
    assert at.sidebar.selectbox(key="view.layer").value == -1  # all layers
    assert any("layers ×" in c.value for c in at.sidebar.caption)
    assert at.session_state["model.loaded"] is not None
    assert any("synthetic reports only" in c.value for c in at.sidebar.caption)  # what the embedded model knows


def test_the_image_export_check_starts_when_the_app_opens_not_at_the_first_figure(monkeypatch):
    """The PNG/SVG export check (a headless browser, plots.ImageExport) starts with the app, so that it
    does not compete with the first answer for the cores (it used to start at the first figure drawn)."""
    from ledviz import plots

    monkeypatch.setattr(plots.ImageExport, "_shared", None)  # as in a fresh server process
    at = open_app()
    assert charts(at) == 0  # no figure drawn yet
    assert plots.ImageExport._shared is not None


def test_summarize_runs_streams_and_draws_every_view():
    at = open_app()
    at.button(key="summarize.run").click().run()
    assert_clean(at)
    result = kept(at, "summarize")
    assert result.document.n_tokens > 500 and result.output_ids
    assert charts(at) >= 2  # overview + token-level map
    # the caption names the marks the overview draws (▼ over columns, ▶ beside rows), not the labels' ▲ alone
    assert any("▼ above and ▶ beside the map" in c.value for c in at.caption), [c.value for c in at.caption]
    assert any(s.value == "Summary" for s in at.subheader)
    run_id = result.settings["run_id"]

    # every tab draws, and changing the view reuses the run; Export is the last tab
    assert [t.label for t in at.tabs][-2:] == ["Cross-attention", "Export"], [t.label for t in at.tabs]
    for tab, least in [("Text", 1), ("Heads", 1), ("Global tokens", 1), ("Cross-attention", 1), ("Export", 0)]:
        at.session_state["summarize.views.tab"] = tab
        at.run()
        assert_clean(at)
        assert charts(at) >= least, tab
    at.session_state["summarize.views.tab"] = "Map"
    at.sidebar.selectbox(key="view.layer").set_value(1).run()
    at.sidebar.button_group(key="view.heads_mode").set_value("one").run()
    at.sidebar.selectbox(key="view.head").set_value(1).run()
    assert_clean(at)
    assert charts(at) >= 2
    assert any("layer 1, head 1" in c.value for c in at.sidebar.caption)
    assert kept(at, "summarize").settings["run_id"] == run_id  # not re-run
    # on the embedded model, each value is kept to the document by default (and the run says so)
    assert at.checkbox(key="summarize.from_document").value is True
    assert result.settings["facts_from_document"] is True
    flat = " " + " ".join(result.document.text.split())
    for part in result.output_text.rstrip(".").split(". "):
        value = part.partition(":")[2].strip()
        assert value and f" {value}" in flat, f"{value!r} is not a span of the document"
    assert any("values kept to spans of the document" in c.value for c in at.caption)
    at.checkbox(key="summarize.from_document").uncheck().run()
    at.button(key="summarize.run").click().run()
    assert_clean(at)
    assert kept(at, "summarize").settings["facts_from_document"] is False


def test_figures_are_built_once_per_run_view_and_setting(monkeypatch):
    """A rerun (a click elsewhere, a tab) rebuilt every figure (0.6-0.7 s a rerun). Now a figure is built
    once for the same arguments and reused; a changed setting, view or run builds a new one (never a stale
    figure), and going back to one already seen reuses it."""
    from ledviz import plots
    from pages.views import _figure

    _figure.clear()  # the cache is the process's: an earlier test's run of the same sample holds its figure
    built: list[tuple] = []
    real = plots.overview_figure

    @functools.wraps(real)  # the stand-in takes the module function's name (figure keys its cache by it)
    def overview(m, edges, **kwargs):
        built.append((float(m.sum()), kwargs["scale"], kwargs["zoom"]))
        return real(m, edges, **kwargs)

    monkeypatch.setattr(plots, "overview_figure", overview)
    at = open_app()
    at.button(key="summarize.run").click().run()
    assert_clean(at)
    assert len(built) == 1 and charts(at) >= 2
    spec = at.get("plotly_chart")[0].proto.spec
    at.run()
    at.sidebar.radio(key="view.reduce").set_value("mean").run()  # (already the mean: nothing changes)
    assert len(built) == 1 and at.get("plotly_chart")[0].proto.spec == spec  # reused, drawn the same
    at.selectbox(key="summarize.views.map.scale").set_value("log").run()
    assert len(built) == 2 and built[-1][1] == "log"
    at.sidebar.radio(key="view.reduce").set_value("max").run()  # another view: other numbers, a new figure
    assert len(built) == 3 and built[-1][0] != built[-2][0]
    assert_clean(at)
    at.selectbox(key="summarize.views.map.scale").set_value("clipped").run()
    at.sidebar.radio(key="view.reduce").set_value("mean").run()  # back to the first: reused
    assert len(built) == 4 and at.get("plotly_chart")[0].proto.spec == spec
    at.button(key="summarize.run").click().run()  # a new run of the same input: the same numbers, the same figure
    assert_clean(at)
    assert at.get("plotly_chart")[0].proto.spec == spec


def test_a_figure_key_sees_every_argument():
    """pages.views.figure keys its cache on a digest of every argument: one changed element of an array, a
    keyword, a tensor, a table cell changes it; an argument it cannot digest is an error, not ignored."""
    import numpy as np
    import pandas as pd
    import torch

    from pages.views import _digest

    a = np.zeros((4, 4), np.float32)
    b = a.copy()
    b[3, 3] = 1e-7
    assert _digest(((a,), [])) == _digest(((a.copy(),), [])) != _digest(((b,), []))
    assert _digest(((), [("scale", "log")])) != _digest(((), [("scale", "linear")]))
    assert _digest((torch.zeros(3),)) != _digest((torch.tensor([0.0, 0.0, 1.0]),))
    assert _digest((pd.DataFrame({"x": [1.0]}),)) != _digest((pd.DataFrame({"x": [2.0]}),))
    assert _digest(([1, 2],)) != _digest(((1, 2),)) and _digest((1,)) != _digest(("1",))
    with pytest.raises(TypeError, match="cannot key a cached figure on a object"):
        _digest((object(),))
    # a float64 tensor keyed as itself, not cut to float32 (two close tensors keyed alike); its dtype keyed too
    x = torch.tensor([1.0], dtype=torch.float64)
    assert _digest((x,)) != _digest((x + 1e-12,)) and _digest((x,)) != _digest((x.float(),))
    assert _digest((x.bfloat16(),)) == _digest((x.bfloat16(),))
    # an object array by its items, not by their addresses
    assert _digest((np.array(["a", 1], dtype=object),)) == _digest((np.array(["a", 1], dtype=object),))
    assert _digest((np.array(["a", 1], dtype=object),)) != _digest((np.array(["b", 1], dtype=object),))
    # a module's function by its name; a lambda, a closure or a bound method is more than its name
    from ledviz import answering

    assert _digest((answering.percent,)) == _digest((answering.percent,)) != _digest((answering.margin_explanation,))

    def local(t):
        return t

    # nor is the figure's own function keyed by its name alone unless it is a module's function
    from pages.views import figure

    for make in (lambda: None, local, [].append):
        with pytest.raises(TypeError, match="make must be a module's function"):
            figure(make)
    for unkeyed in (lambda t: t, local, [].append, pd.DataFrame().copy):
        with pytest.raises(TypeError, match="cannot key a cached figure"):
            _digest((unkeyed,))


def test_question_answering_runs_and_traces_answer_and_question():
    at = open_app("pages/qa.py")
    assert any("Type a question" in m for m in messages(at, "info"))
    at.text_input(key="qa.question").set_value("Who is the project lead?").run()
    assert at.selectbox(key="qa.settings.global").value == "question"  # the default for QA
    at.button(key="qa.run").click().run()
    assert_clean(at)
    result = kept(at, "qa")
    assert result.document.question == "Who is the project lead?"
    assert set(result.global_positions) == set(result.document.question_tokens())
    heads = [s.value for s in at.subheader]
    assert "Where the answer came from" in heads and "Where the question looked" in heads
    assert charts(at) >= 3  # question profile + overview + token map
    # by default the answer is kept to a span of the document (constrained decoding), and says so
    assert at.checkbox(key="qa.from_document").value is True
    assert result.settings["answer_from_document"] is True
    doc = result.document
    answer = [t for t in result.output_ids[1:] if t not in (0, 1, 2)]
    source = doc.input_ids[0, doc.document_tokens()].tolist()
    assert answer and any(source[i: i + len(answer)] == answer for i in range(len(source)))
    assert any("span of the document" in c.value for c in at.caption)
    at.checkbox(key="qa.from_document").uncheck().run()
    at.button(key="qa.run").click().run()
    assert_clean(at)
    free = kept(at, "qa")
    assert free.settings["answer_from_document"] is False and free is not result


def test_no_head_chosen_to_combine_says_all_heads_are_shown():
    """Heads: Chosen with the "Heads to combine" box emptied shows every head, and the sidebar says why and
    what to do (it read "Showing all layers, all heads (mean)." as if All had been picked)."""
    at = open_app()
    at.sidebar.button_group(key="view.heads_mode").set_value("some").run()
    at.sidebar.multiselect(key="view.head_set").set_value([1, 2]).run()
    assert [c.value for c in at.sidebar.caption if "Showing" in c.value] == ["Showing all layers, heads 1, 2 (mean)."]
    at.sidebar.multiselect(key="view.head_set").set_value([]).run()
    assert_clean(at)
    shown = [c.value for c in at.sidebar.caption if "showing" in c.value.lower()]
    assert shown == ["No head chosen: showing all layers, all heads (mean); pick heads to combine."], shown


def test_a_suggested_question_clicked_again_comes_back_after_an_edit():
    """Clicking a suggested question fills the question; after the question is edited, clicking the
    same suggestion again brings it back (it used to clear the pill and keep the edited question)."""
    at = open_app("pages/qa.py")
    suggestions = at.button_group(key="qa.suggested")
    first = suggestions.options[0]
    suggestions.set_value(first).run()
    assert at.text_input(key="qa.question").value == first
    at.text_input(key="qa.question").set_value("What is the deadline for it?").run()
    at.button_group(key="qa.suggested").set_value(first).run()
    assert_clean(at)
    assert at.text_input(key="qa.question").value == first


def test_a_fast_double_click_on_a_suggested_question_keeps_it():
    """A fast double click on a suggested question: the second click reaches the server with the
    browser's stale values, the question box as it was before the first click ('') and the pill
    clicked off. The question stays the suggestion (it was emptied: the stale box value won) and
    the pill stays selected, as it is while the question is that suggestion."""
    at = open_app("pages/qa.py")
    at.text_input(key="qa.question").set_value("").run()
    first = at.button_group(key="qa.suggested").options[0]
    at.button_group(key="qa.suggested").set_value(first).run()
    assert at.text_input(key="qa.question").value == first
    # the second click, sent before the first one's rerun reached the browser
    at.text_input(key="qa.question").set_value("")
    at.button_group(key="qa.suggested").set_value(None).run()
    assert_clean(at)
    assert at.text_input(key="qa.question").value == first
    assert at.button_group(key="qa.suggested").value == first
    # a question typed by hand leaves no suggestion selected
    at.text_input(key="qa.question").set_value("What is the deadline for it?").run()
    assert at.button_group(key="qa.suggested").value is None


def test_the_suggested_questions_cannot_be_cleared_by_a_click():
    """A double click on a suggested question of a fresh QA page, which the browser sends as one
    message, selected and cleared the pill in one step: the server saw no selection and the question
    box stayed empty. The pills are required: a click on the selected pill does nothing, so the
    message carries the suggestion (the browser test clicks for real)."""
    at = open_app("pages/qa.py")
    pills = at.button_group(key="qa.suggested")
    assert pills.proto.required and pills.value is None  # none selected until one is picked
    first = pills.options[0]
    assert at.text_input(key="qa.question").value == ""
    pills.set_value(first).run()  # the double click's one message
    assert_clean(at)
    assert at.text_input(key="qa.question").value == first
    assert at.button_group(key="qa.suggested").value == first


def test_the_question_shown_with_its_answer_is_as_typed_not_markdown():
    """The question under the answer, and the one asked, show their `$`, `_` and `*` as typed (the
    caption read "$_x_" as "$" and an italic "x")."""
    at = open_app("pages/qa.py")
    at.text_input(key="qa.question").set_value("WHAT IS THE BUDGET IN $ OR $_X_?").run()
    at.button(key="qa.run").click().run()
    assert_clean(at)
    shown = [c.value for c in at.caption if c.value.startswith("Question: ")]
    assert len(shown) == 1, shown
    assert r"\$\_x\_?" in shown[0] and r"(asked as: WHAT IS THE BUDGET IN \$ OR \$\_X\_?)" in shown[0], shown



def test_messages_quoting_the_users_text_show_it_as_typed():
    """An error that quotes what was typed (a pattern, positions) showed it as Markdown: "**x**" bold,
    "$2 … $" as LaTeX, "www.example.com" and "a@b.org" as links. Shown through as_typed now."""
    from ledviz.text import WORD_JOINER as wj

    at = open_app("pages/summarize.py")
    paste(at, "**bold** costs $5 and $6, see www.example.com or write to a@b.org <b>x</b>. " * 3)
    at.selectbox(key="summarize.settings.global").set_value("pattern").run()
    at.text_input(key="summarize.settings.global_pattern").set_value("[**x** www.example.com").run()
    errors = [e.value for e in at.error]  # the Markdown sent to the browser
    assert len(errors) == 1 and f"\\[\\*\\*x\\*\\* www{wj}\\.example\\.com" in errors[0], errors
    at.selectbox(key="summarize.settings.global").set_value("positions").run()
    at.text_input(key="summarize.settings.global_positions").set_value("1, $2$a@b.org").run()
    errors = [e.value for e in at.error]  # the message quotes the part that is not a position
    assert len(errors) == 1 and f"'\\$2\\$a@{wj}b\\.org' is not a token position" in errors[0], errors


def test_question_answering_reads_a_shouted_question_and_can_take_it_as_typed():
    """The QA page reads the question first (pipeline.read_question), shows "Read as: …" with what
    changed, and gives the model the question exactly as typed when the setting is cleared."""
    at = open_app("pages/qa.py")
    assert at.checkbox(key="qa.read_question.embedded").value is True  # on for the embedded model
    at.text_input(key="qa.question").set_value("Who is the projcet lead?").run()
    read = [c.value for c in at.caption if c.value.startswith("Read as:")]
    assert read and "Who is the project lead" in read[0] and "projcet" in read[0], read
    at.text_input(key="qa.question").set_value("WHO IS THE PROJECT LEAD?").run()
    assert any("Who is the project lead" in c.value and "capitals" in c.value for c in at.caption)
    at.button(key="qa.run").click().run()
    assert_clean(at)
    result = kept(at, "qa")
    assert result.document.question == "Who is the project lead?"
    assert result.settings["question_asked"] == "WHO IS THE PROJECT LEAD?"
    assert any("(asked as: WHO IS THE PROJECT LEAD?)" in c.value for c in at.caption)
    at.checkbox(key="qa.read_question.embedded").uncheck().run()
    assert not [c.value for c in at.caption if c.value.startswith("Read as:")]
    at.button(key="qa.run").click().run()
    assert_clean(at)
    result = kept(at, "qa")
    assert result.document.question == "WHO IS THE PROJECT LEAD?" and "question_asked" not in result.settings
    at.text_input(key="qa.question").set_value("Who is the project lead?").run()  # nothing to read differently
    at.checkbox(key="qa.read_question.embedded").check().run()
    assert not [c.value for c in at.caption if c.value.startswith("Read as:")]


def test_a_run_can_be_cancelled():
    from ledviz import pipeline
    from ledviz.demo.data import sample_documents
    from ledviz.runs import RunJob

    loaded = pipeline.load_model(pipeline.EMBEDDED)
    doc = pipeline.prepare_document(loaded, next(iter(sample_documents().values())))
    job = RunJob(loaded, doc, pipeline.global_attention_mask(doc, "first"), task="summarize",
                 max_new_tokens=loaded.config.max_decoder_position_embeddings - 1, num_beams=1)
    job.cancel()
    job.start().thread.join(TIMEOUT)
    assert job.done and job.error is None, job.error
    assert job.result.stopped_early
    assert len(job.result.output_ids) <= 3


# ---------------------------------------------------------------------------------------------
# bad input: a message, never a traceback
# ---------------------------------------------------------------------------------------------

def test_a_kept_result_with_an_empty_document_does_not_ask_for_a_disabled_button():
    """After a summary, an empty paste: the note above the old result said "press Summarize" while
    Summarize was off; it says the button is off until the input can run (runs.stale_note)."""
    at = open_app()
    at.number_input(key="summarize.max_new").set_value(4).run()
    at.button(key="summarize.run").click().run()
    assert_clean(at)
    paste(at, "a document that is not the sample")
    stale = [m for m in messages(at, "info") if "earlier input or settings" in m]
    assert len(stale) == 1 and "press **Summarize**" in stale[0], stale
    at.text_area(key="doc.pasted").set_value("").run()
    assert at.button(key="summarize.run").disabled
    stale = [m for m in messages(at, "info") if "earlier input or settings" in m]
    assert len(stale) == 1 and "press" not in stale[0] and "stays off until the current input can run" in stale[0], stale


def test_empty_document_shows_a_message():
    at = open_app()
    at.button_group(key="doc.source").set_value("Paste").run()
    at.text_area(key="doc.pasted").set_value("").run()
    assert any("Choose, paste or upload a document" in m for m in messages(at, "info"))
    at.text_area(key="doc.pasted").set_value("   \n  ").run()
    assert not at.exception
    # a paste of only blanks says so (it used to read as if nothing had been pasted), once
    infos = messages(at, "info")
    assert any("The pasted text is blank (only spaces or line breaks)" in m for m in infos), infos
    assert not any("Choose, paste or upload a document" in m for m in infos), infos
    assert at.button(key="summarize.run").disabled

    at.button_group(key="doc.source").set_value("Upload").run()
    at.file_uploader(key="doc.upload").set_value(("empty.txt", b"", "text/plain")).run()
    assert not at.exception
    assert any(m.startswith("The document is empty") for m in messages(at, "error"))  # a sentence
    assert any("upload a text, PDF or HTML file that has text in it" in m for m in messages(at, "error"))
    assert at.button(key="summarize.run").disabled


def test_qa_says_an_empty_upload_is_empty_before_a_question_is_typed():
    """The QA page with an empty upload says the document is empty at once, as Summarize does (it
    asked for a question, and said so only after one was typed)."""
    at = open_app("pages/qa.py")
    at.button_group(key="doc.source").set_value("Upload").run()
    at.file_uploader(key="doc.upload").set_value(("empty.txt", b"", "text/plain")).run()
    assert not at.exception
    assert any(m.startswith("The document is empty") for m in messages(at, "error")), messages(at, "error")
    assert not any("Type a question" in m for m in messages(at, "info"))
    assert at.button(key="qa.run").disabled


def test_the_embedded_model_on_an_article_says_it_knows_only_reports():
    """Summarize and QA with the embedded model on a text unlike its reports show a note (an info,
    not an error) that its output is likely meaningless; on a sample report, none."""
    article = "Photosynthesis is the process by which green plants turn light and water into sugar. " * 3
    for page in ("pages/summarize.py", "pages/qa.py"):
        at = open_app(page)
        assert not any("trained on synthetic project" in m for m in messages(at, "info")), page  # a sample
        paste(at, article)
        assert any("The embedded demo model was trained on synthetic project, company and expedition reports" in m
                   for m in messages(at, "info")), (page, messages(at, "info"))
        assert not messages(at, "error"), page


def test_a_token_limit_below_the_pages_says_so_next_to_the_input():
    """The embedded model's decoder writes at most 127 tokens, fewer than the 1,024 Summarize offers:
    the input says so (the browser pulled a typed 1024 back to 127 without a word)."""
    at = open_app()
    assert at.number_input(key="summarize.max_new").proto.max == 127
    assert any(c.value == "At most 127 for this model: its decoder's position limit." for c in at.caption), \
        [c.value for c in at.caption]


def test_non_text_upload_shows_a_message():
    at = open_app()
    at.button_group(key="doc.source").set_value("Upload").run()
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01" + bytes(range(256))
    at.file_uploader(key="doc.upload").set_value(("scan.txt", png, "text/plain")).run()
    assert not at.exception
    assert any("is not readable text" in m for m in messages(at, "error"))
    assert at.button(key="summarize.run").disabled
    # the upload's error alone: not also the generic "Choose, paste or upload a document."
    said = [m for kind in ("error", "warning", "info") for m in messages(at, kind)]
    assert len(said) == 1 and "is not readable text" in said[0], said
    for page in ("pages/qa.py", "pages/lab.py"):  # the other pages that take a document say it once too
        at.switch_page(page).run()
        at.button_group(key="doc.source").set_value("Upload").run()
        at.file_uploader(key="doc.upload").set_value(("scan.txt", png, "text/plain")).run()
        said = [m for kind in ("error", "warning", "info") for m in messages(at, kind)]
        assert len(said) == 1 and "is not readable text" in said[0], (page, said)


@pytest.mark.parametrize("setting, kind, said", [
    ({"typical_p": 0.5}, "warning", "sets generation options that ledviz does not implement and ignores: "
                                    "{'typical_p': 0.5} (remove them from the file"),
    ({"max_new_token": 30}, "error", "has unknown generation setting(s) 'max_new_token' (did you mean "
                                     "'max_new_tokens'?): fix the spelling or remove the key"),
])
def test_a_models_ignored_or_misspelt_generation_setting_is_shown(tmp_path, setting, kind, said):
    """A user model whose generation_config.json sets an option ledviz ignores: the library's warning reached
    only the server's log; the sidebar shows it. A misspelt key: an error naming the file, the old model kept."""
    import json
    import shutil

    from ledviz import pipeline

    folder = tmp_path / "model"
    shutil.copytree(pipeline.default_model_dir(), folder)
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, **setting}))
    at = open_app()
    load_folder(at, folder)
    assert not at.exception
    shown = [readable(m.value) for m in getattr(at.sidebar, kind)]
    assert any(said in m and str(folder / "generation_config.json") in m for m in shown), shown
    assert at.session_state["model.active"] == (str(folder) if kind == "warning" else "embedded")


@pytest.mark.parametrize("page, key, default", [(None, "summarize.max_new", 64), ("pages/qa.py", "qa.max_new", 24),
                                                ("pages/lab.py", "lab.max_new", 64)])
def test_max_new_tokens_stops_at_what_the_model_can_write(page, key, default):
    """The widget took up to 1,024 summary tokens while the embedded model writes at most 127: a larger
    number was cut silently. Now the widget's limit is the model's, and its help says why."""
    at = open_app(page)
    limit = at.session_state["model.loaded"].config.max_decoder_position_embeddings - 1
    box = at.number_input(key=key)
    assert box.max == limit and box.value == default and f"this model writes at most {limit:,} tokens" in box.help
    box.set_value(limit).run()
    assert_clean(at)
    assert at.session_state[key] == limit


def test_a_summary_cut_at_its_token_limit_says_so_as_an_answer_does():
    """The QA page said "The answer was cut at N tokens: raise Max answer tokens"; Summarize said nothing of a
    summary that ran to its limit unfinished. Now it says so in the same words (ledviz.runs.cut_note), and
    at the model's most, that the setting is at its most."""
    at = open_app()
    at.number_input(key="summarize.max_new").set_value(3).run()
    at.button(key="summarize.run").click().run()
    assert_clean(at)
    assert not kept(at, "summarize").ended
    cut = [w for w in messages(at, "warning") if "The summary was cut at 3 tokens: raise Max summary tokens" in w]
    assert len(cut) == 1, messages(at, "warning")
    most = at.number_input(key="summarize.max_new").max
    at.number_input(key="summarize.max_new").set_value(most).run()
    at.checkbox(key="summarize.from_document").uncheck().run()  # free: the model may run on to its limit
    at.button(key="summarize.run").click().run()
    assert_clean(at)
    if not kept(at, "summarize").ended:
        assert any(f"Max summary tokens is at its most, {most:,}" in w for w in messages(at, "warning"))
    else:
        assert not [w for w in messages(at, "warning") if "was cut at" in w]


def test_a_summary_of_one_token_says_it_is_the_start_marker():
    """Max summary tokens = 1: the run's one token is LED's start marker <s>, and the page showed "(empty: the model
    ended at once)" above "The summary was cut at 1 token ... It did not end". Now a caption under the setting says
    what 1 gives, and the summary's place says it was cut with the marker alone, and the fix."""
    from app_driver import readable

    at = open_app()
    at.number_input(key="summarize.max_new").set_value(1).run()
    assert_clean(at)
    assert any(readable(c.value).startswith("Max summary tokens = 1: the output is a single token") for c in at.caption)
    at.button(key="summarize.run").click().run()
    assert_clean(at)
    shown = [readable(m.value) for m in at.markdown]
    assert "_(no text yet: the summary was cut at 1 token, and its only token is the model's marker <s>, which is " \
           "not text: raise Max summary tokens)_" in shown, shown
    assert not [m for m in shown if "ended at once" in m]


def test_qa_says_what_the_demo_model_answers_and_that_it_needs_the_question_global():
    """A stranger asked the embedded model about anything, and set the global tokens to <s>: its "not in the
    document" and its wrong spans read as faults of the app. The page now says which questions it answers, and,
    where the question's tokens are not all global, that it was trained with them global."""
    from app_driver import readable

    at = open_app("pages/qa.py")
    at.text_input(key="qa.question").set_value("Who is the project lead?").run()
    assert_clean(at)
    captions = [readable(c.value) for c in at.caption]
    assert any(c.startswith("The embedded demo model answers questions about the key facts") and "lead" in c
               for c in captions), captions
    trained = [i for i in messages(at, "info") if "trained with global attention on the question tokens" in i]
    assert not trained  # the default: the question's tokens are global
    at.selectbox(key="qa.settings.global").set_value("first").run()
    assert_clean(at)
    trained = [i for i in messages(at, "info") if "trained with global attention on the question tokens" in i]
    assert len(trained) == 1 and "Choose “the question tokens”" in trained[0], messages(at, "info")


def test_every_token_global_is_said_to_be_full_attention():
    """k = 1 made all 982 tokens global, and the page said "982 global tokens." only: that is full attention, with
    its cost, which a stranger trying the extreme should be told."""
    from app_driver import readable

    at = open_app()
    at.selectbox(key="summarize.settings.global").set_value("every_k").run()
    at.number_input(key="summarize.settings.global_k").set_value(1).run()
    assert_clean(at)
    said = [readable(c.value) for c in at.caption if "every token is global" in c.value]
    assert len(said) == 1 and "so this is full attention" in said[0], [c.value for c in at.caption]
    at.number_input(key="summarize.settings.global_k").set_value(2).run()
    assert not [c.value for c in at.caption if "every token is global" in c.value]


def _columns_beside(node, key: str, row=None):
    """The number of columns in the row whose column holds the widget `key` (None where it is not in a row)."""
    for child in getattr(node, "children", {}).values():
        if getattr(child, "key", None) == key:
            return None if row is None else len(row.children)
        found = _columns_beside(child, key, node if getattr(child, "type", "") == "column" else row)
        if found is not None:
            return found
    return None


def test_the_map_controls_of_summarize_take_two_columns():
    """In Summarize's attention column (3/5 of the page) the map's controls took three columns: at 1150 px the
    labels broke ("Overvie w bins") and the choices were cut ("clipped a", "25"). There they now take two, under
    the zoom; the QA page's full-width map keeps three."""
    at = open_app()
    at.button(key="summarize.run").click().run()
    assert_clean(at)
    assert _columns_beside(at._tree, "summarize.views.map.scale") == 2
    qa = open_app("pages/qa.py")
    qa.text_input(key="qa.question").set_value("Who is the project lead?").run()
    qa.button(key="qa.run").click().run()
    assert_clean(qa)
    assert _columns_beside(qa._tree, "qa.views.map.scale") == 3


def test_a_word_marked_twice_is_listed_once():
    """The free summary of the expedition sample writes "Revenue" twice: the caption read "Not in the document:
    “Revenue”, “Revenue”"; now "“Revenue” (2×)"."""
    from app_driver import readable

    at = open_app()
    at.selectbox(key="doc.sample").set_value("Expedition report (about 4K tokens)").run()
    at.checkbox(key="summarize.from_document").uncheck().run()
    at.number_input(key="summarize.max_new").set_value(127).run()
    at.button(key="summarize.run").click().run()
    assert_clean(at)
    said = [readable(c.value) for c in at.caption if "Not in the document:" in readable(c.value)]
    assert len(said) == 1, [c.value for c in at.caption]
    listed = said[0].split(" (marked;")[0]
    words = [w for w in listed.split("“")[1:]]
    assert len(words) == len(set(words)), said[0]
    if "Revenue" in kept(at, "summarize").output_text:
        assert "“Revenue” (2×)" in said[0], said[0]


def test_the_token_count_says_what_is_not_the_documents():
    """The count read "990 tokens (6 of them the question) ...; the document has 980 tokens": the other 4,
    the model's <s> and </s> markers, were left for the reader to guess."""
    at = open_app("pages/qa.py")
    at.text_input(key="qa.question").set_value("Who is the project lead?").run()
    loaded = at.session_state["model.loaded"]
    from ledviz.demo.data import sample_documents
    from ledviz.pipeline import prepare_document

    doc = prepare_document(loaded, next(iter(sample_documents().values())), "Who is the project lead?")
    n_doc, n_q = len(doc.document_tokens()), len(doc.question_tokens())
    said = f"{doc.n_tokens:,} tokens ({n_q} of them the question, {doc.n_tokens - n_doc - n_q} the model's markers"
    assert any(c.value.startswith(said) and f"the document has {n_doc:,} tokens" in c.value for c in at.caption), \
        [c.value for c in at.caption]


def test_a_question_without_words_is_refused_not_answered():
    """ "???" was answered with a span of the document ("Lunastad"), as if it were a question; now a
    message with the fix, and nothing to answer."""
    at = open_app("pages/qa.py")
    at.text_input(key="qa.question").set_value("???").run()
    assert_clean(at, errors_ok=True)
    assert any("The question '???' has no words: type a question about the document" in m
               for m in messages(at, "error")), messages(at, "error")
    assert at.button(key="qa.run").disabled


def test_a_question_too_long_for_the_model_says_to_shorten_it():
    """A question that leaves no room for the document: a message naming the question's length and
    the fix (it showed the tokenizer's "use another truncation strategy ... or a larger max_length")."""
    at = open_app("pages/qa.py")
    limit = at.session_state["model.loaded"].max_tokens
    at.text_input(key="qa.question").set_value("Who is the project lead " * (limit // 5) + "?").run()
    assert not at.exception
    errors = messages(at, "error")
    assert len(errors) == 1 and errors[0].startswith("The question is ") and "shorten the question" in errors[0], errors
    assert f"limit of {limit:,} tokens" in errors[0] and "truncation" not in errors[0]
    assert at.button(key="qa.run").disabled
    # one that leaves room for a little of the document runs on what is left (the document is cut, not the question)
    at.text_input(key="qa.question").set_value("Who is the project lead " * (limit // 6) + "?").run()
    assert_clean(at)
    assert any("were cut" in w for w in messages(at, "warning")) and not at.button(key="qa.run").disabled


def test_oversized_document_shows_what_was_cut():
    from ledviz.demo.data import sample_documents

    at = open_app()
    limit = at.session_state["model.loaded"].max_tokens
    text = "\n\n".join(sample_documents().values())
    while len(text) < 6 * limit:  # about 5 characters a token
        text += "\n\n" + text
    at.button_group(key="doc.source").set_value("Paste").run()
    at.text_area(key="doc.pasted").set_value(text).run()
    assert not at.exception
    warnings = messages(at, "warning")
    cut = next(w for w in warnings if "were cut" in w)
    number = r"\d{1,3}(,\d{3})*"  # thousands separated
    assert re.search(f"reads at most {limit:,} tokens; the last {number} tokens of the document "
                     f"\\(from character {number} of {number}:", cut), cut
    assert not at.button(key="summarize.run").disabled
    # the count is the whole document's, not what is left of it after the cut
    shown = re.search(f"the document has ({number}) tokens \\(({number}) of them read\\)",
                      " ".join(c.value for c in at.caption))
    cut_tokens = int(re.search(f"the last ({number}) tokens", cut).group(1).replace(",", ""))
    assert shown, [c.value for c in at.caption]
    total, read = (int(g.replace(",", "")) for g in shown.group(1, 3))
    assert total == read + cut_tokens and read < limit < total


def test_load_from_the_hub_needs_an_id():
    at = open_app()
    at.sidebar.radio(key="model.source").set_value("hub").run()
    assert not at.sidebar.button(key="model.load_hub").disabled
    at.sidebar.text_input(key="model.hub_id").set_value("  ").run()
    assert_clean(at)
    assert at.sidebar.button(key="model.load_hub").disabled  # a click would have done nothing


@pytest.mark.app_install
def test_unknown_hub_id_offline_shows_a_message_and_keeps_the_model():
    at = open_app()
    load_hub_id(at, "nobody/no-such-led-model")
    assert not at.exception
    errors = messages(at, "error")
    assert any("nobody/no-such-led-model" in e and "Hub" in e for e in errors), errors
    assert at.session_state["model.loaded"] is not None  # the embedded model stays in use
    assert at.button(key="summarize.run") is not None


@pytest.mark.app_install
def test_invalid_hub_id_says_what_a_hub_id_looks_like():
    at = open_app()
    load_hub_id(at, "not a valid id!!")
    assert not at.exception
    errors = sorted(set(messages(at, "error")))
    assert len(errors) == 1 and "HFValidationError" not in errors[0], errors
    assert "'not a valid id!!'" in errors[0] and "valid Hub model id" in errors[0]
    assert "allenai/led-base-16384" in errors[0]
    assert at.session_state["model.loaded"] is not None


def upload(at, name: str, data: bytes):
    at.button_group(key="doc.source").set_value("Upload").run()
    at.file_uploader(key="doc.upload").set_value((name, data, "application/octet-stream")).run()
    assert_clean(at)
    return at


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16-le"])
def test_latin1_and_utf16_uploads_are_read(encoding):
    text = SHORT_DOC.replace("Velmora", "Vélmora") + " Café."
    at = upload(open_app(), "report.txt", text.encode(encoding))
    assert not at.button(key="summarize.run").disabled
    captions = [readable(c.value) for c in at.caption]
    assert any("Using report.txt" in c for c in captions)
    assert any(("Not UTF-8" if encoding == "latin-1" else "UTF-16-LE") in c for c in captions), captions
    assert at.session_state["doc.uploaded"].text == text


def test_pdf_and_html_uploads():
    pytest.importorskip("pypdf")
    from test_uploads import PAGE, make_pdf

    at = upload(open_app(), "report.pdf", make_pdf([SHORT_DOC[:200], None]))
    assert "Project Bluefinch report." in at.session_state["doc.uploaded"].text
    assert any("PDF: 2 pages, text read from 1." in readable(c.value) for c in at.caption)
    assert any("No text on page 2" in w for w in messages(at, "warning"))
    assert not at.button(key="summarize.run").disabled
    at.file_uploader(key="doc.upload").set_value(("page.html", PAGE.encode(), "text/html")).run()
    assert_clean(at)
    assert at.session_state["doc.uploaded"].text.startswith("Project Bluefinch\n\nThe lead is Maren Okafor")
    at.file_uploader(key="doc.upload").set_value(("scan.pdf", make_pdf([None]), "application/pdf")).run()
    assert not at.exception
    assert any("no text layer" in e for e in messages(at, "error"))
    assert at.button(key="summarize.run").disabled


def test_zoom_starts_again_on_another_document_and_bins_are_honest():
    at = open_app()
    paste(at, "Hi.")
    at.button(key="summarize.run").click().run()
    assert_clean(at)
    tiny = kept(at, "summarize").document.n_tokens
    assert tiny < 10 and at.slider(key="summarize.views.map.rows").value == (0, tiny)
    paste(at, SHORT_DOC * 3)
    at.button(key="summarize.run").click().run()
    assert_clean(at)
    n = kept(at, "summarize").document.n_tokens
    assert n > 64 and at.slider(key="summarize.views.map.rows").value == (0, 64)
    at.selectbox(key="summarize.views.map.bins").set_value(512).run()
    assert_clean(at)
    from ledviz.analysis import bin_edges

    real = len(bin_edges(n, 512)) - 1
    assert real < 512 and any(f"{real:,} × {real:,} bins of" in c.value for c in at.caption)  # not "512"


def test_zoom_sliders_take_their_range_from_the_session_state_only(monkeypatch):
    """No "created with a default value but also had its value set via the Session State API" in the
    server log (Streamlit says it once per process): the zoom is set for a new document, and the key
    slider, hidden while "the same tokens" is ticked, comes back with a range."""
    from streamlit.elements.lib import policies

    said = []
    monkeypatch.setattr(policies, "_shown_default_value_warning", False)
    monkeypatch.setattr(policies._LOGGER, "warning", lambda msg, *args, **kw: said.append(msg % args))
    at = open_app()
    paste(at, "Hi.")
    at.button(key="summarize.run").click().run()
    paste(at, SHORT_DOC)
    at.button(key="summarize.run").click().run()
    at.slider(key="summarize.views.map.rows").set_value((10, 20)).run()
    at.checkbox(key="summarize.views.map.same").uncheck().run()
    assert_clean(at)
    assert at.slider(key="summarize.views.map.cols").value == (0, 64)
    # a token and an output token picked far in; the next run is shorter: both start again in range
    at.session_state["summarize.views.tab"] = "Text"
    at.run()
    at.number_input(key="summarize.views.text.token").set_value(150).run()
    steps = len(at.button_group(key="summarize.source.out_token").options) - 1  # "every summary token", 1..
    at.button_group(key="summarize.source.out_token").set_value(steps).run()
    assert at.button_group(key="summarize.source.out_token").value == steps
    paste(at, "Hi.")
    at.button(key="summarize.run").click().run()
    assert_clean(at)
    tiny = kept(at, "summarize").document.n_tokens
    assert at.number_input(key="summarize.views.text.token").value < tiny
    assert at.button_group(key="summarize.source.out_token").value == -1
    assert not [m for m in said if "Session State API" in m], said


def test_span_kept_answer_is_not_a_success_and_shares_stay_under_100_percent():
    at = open_app("pages/qa.py")
    at.text_input(key="qa.question").set_value("What is the capital of France?").run()  # off-topic
    at.button(key="qa.run").click().run()
    assert_clean(at)
    assert kept(at, "qa").settings["answer_from_document"] is True
    assert not at.success, [s.value for s in at.success]  # kept to the document by construction: no ✓
    # a span of the document, or the decline "not in the document" (what the embedded model answers here)
    said = " ".join(messages(at, "info"))
    declined_said = "The model declined" in said or "the answerability head judged" in said
    assert ("kept to a span of the document" in said) != declined_said, said
    # the run's facts say the decline was allowed too, so a declined answer does not read as "kept to a span"
    facts = [c.value for c in at.caption if "input tokens" in c.value]
    assert len(facts) == 1 and "answer kept to a span of the document (or declined)" in facts[0], facts
    # the embedded model's decline rule weighed the best span against the decline: the page says so, with the margin
    answer = kept(at, "qa").answer
    if answer.answerable is not None:  # the model's answerability head decided: its probability and threshold
        weighing = [c.value for c in at.caption if "answerability head" in c.value]
        # plain words for a reader who never heard of the head, and its verdict beside the model's own scores
        assert len(weighing) == 1 and "estimates how likely it is that the document answers the question" in weighing[0]
        scores = [c.value for c in at.caption if c.value.startswith("Below, the model's own preference")]
        assert len(scores) == 1 and ("agrees with it here" in scores[0]) != ("overruled" in scores[0]), scores
        if answer.declined:  # the head declined: "Where the answer came from" does not call it the model's decline
            assert "the answerability head judged" in said and "The model declined" not in said, said
        assert len(weighing) == 1 and f"probability of {answer.answerable:.2f}" in weighing[0], weighing
        assert f"threshold of {answer.rule.head.threshold:.2f}" in weighing[0]
        assert weighing[0].startswith("Declined" if answer.declined else "Answered")
        assert len(at.get("plotly_chart")) >= 3  # the head's verdict, the weighed scores, the profile
    else:
        weighing = [c.value for c in at.caption if "weighed against" in c.value]
        assert answer.rule is not None and len(weighing) == 1 and f"{abs(answer.margin()):.2f}" in weighing[0], weighing
        assert (answer.span_text in weighing[0]) == answer.declined and len(at.get("plotly_chart")) >= 2
    at.sidebar.radio(key="view.reduce").set_value("max").run()
    assert_clean(at)
    shares = [int(m.group(1)) for c in at.caption
              if (m := re.search(r"(\d+)% of the question tokens' attention goes to the document", c.value))]
    assert shares and all(0 < s <= 100 for s in shares), shares
    assert any("averaged over the heads and layers" in c.value for c in at.caption)
    at.checkbox(key="qa.from_document").uncheck().run()  # the model's free answer: no ✓ either
    at.button(key="qa.run").click().run()
    assert_clean(at)
    assert kept(at, "qa").settings["answer_from_document"] is False and kept(at, "qa").answer is None
    assert not [c.value for c in at.caption if "weighed against" in c.value]  # a free answer is not weighed
    assert not at.success, [s.value for s in at.success]
    # a free answer is checked word by word against the document (faithfulness marks), a decline is said so
    marks = any(m.value == "**Checked against the document**" for m in at.markdown)
    assert marks != any("The model declined" in i for i in messages(at, "info"))


@pytest.mark.slow  # the app run on a 1,000-token report
def test_an_answer_begun_inside_a_name_is_shown_begun_where_the_name_begins():
    """The start rule on the QA page: the model writes "Ruiz" of "Dóra Ruiz" (a first name it
    never saw); the page shows "Dóra Ruiz" and says where the model began and what was weighed."""
    from ledviz.demo import data, evaluate

    ex = evaluate.question_sets(data.VALID_SEED, 1, [1000])["unseen values"][0]
    at = open_app("pages/qa.py")
    paste(at, ex.document)
    at.text_input(key="qa.question").set_value(ex.question).run()
    at.button(key="qa.run").click().run()
    assert_clean(at)
    result = kept(at, "qa")
    assert result.output_text == "Dóra Ruiz" and result.answer.span_text == "Ruiz"
    captions = [c.value for c in at.caption]
    assert any("began its answer inside a name of the document (at “Ruiz”)" in c and "“Dóra Ruiz”" in c
               for c in captions), captions
    # the decision (the answerability head's, for the embedded model) is about the span as written
    assert any("the best span the model found, “Ruiz”" in c for c in captions), captions


def test_an_answer_cut_inside_a_character_is_shown_whole_and_said_cut():
    """A Japanese document (no spaces) and 3 answer tokens: the kept span stops inside a character.
    The page shows no U+FFFD (answer, decline caption, figure) and says the answer was cut."""
    at = open_app("pages/qa.py")
    paste(at, "東京本社の社長は山田太郎です。大阪支社の社長は佐藤花子です。")
    at.text_input(key="qa.question").set_value("Who is the president of the Tokyo office?").run()
    at.number_input(key="qa.max_new").set_value(3).run()
    at.button(key="qa.run").click().run()
    assert_clean(at)
    answer = kept(at, "qa").answer
    assert answer.unfinished and answer.partial  # the case under test
    shown = [m.value for m in at.markdown] + [c.value for c in at.caption] + messages(at, "info")
    shown += [str(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert not [t for t in shown if "\ufffd" in t or "\\ufffd" in t], [t[:200] for t in shown if "\ufffd" in t]
    cut = [w for w in messages(at, "warning") if "was cut at 3 tokens: raise Max answer tokens" in w]
    assert len(cut) == 1, messages(at, "warning")
    weighing = [c.value for c in at.caption if "the best span the model found" in c.value]
    assert weighing and all("…" in c for c in weighing), weighing  # the span as shown, marked unfinished


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------

def test_export_files_read_back(tmp_path):
    import json
    import zipfile

    from ledviz import export
    from ledviz.views import View

    at = open_app()
    at.button(key="summarize.run").click().run()
    result = kept(at, "summarize")
    path = tmp_path / "run.npz"
    path.write_bytes(export.run_npz_bytes(result))
    back = export.load_npz(path)
    assert sorted(back.layers) == sorted(result.layers)
    assert back.metadata["text"] == result.document.text
    assert json.loads(export.run_settings_json(result, View()))["settings"]["task"] == "summarize"
    pytest.importorskip("pyarrow", reason="Parquet export needs pyarrow")
    (tmp_path / "run.zip").write_bytes(export.run_parquet_zip(result))
    names = zipfile.ZipFile(tmp_path / "run.zip").namelist()
    assert {"head_stats.parquet", "overviews.parquet", "global_tokens.parquet"} <= set(names)


def test_summarize_offers_fast_bfloat16_for_a_long_document():
    """A long sample document: the precision choice appears (where the CPU has fast bfloat16), the
    run uses it and says so; on a CPU without it (simulated), float32 with a caption saying why."""
    from ledviz import device
    from ledviz.demo.data import sample_documents

    at = open_app()
    at.selectbox(key="doc.sample").set_value(list(sample_documents())[-1]).run()  # about 4K tokens
    assert_clean(at)
    if device.fast_bfloat16():
        at.radio(key="summarize.precision").set_value("fast (bfloat16)").run()
        at.button(key="summarize.run").click().run()
        assert_clean(at)
        result = kept(at, "summarize")
        assert result.settings["precision"] == "bfloat16"
        assert any("computed in bfloat16" in c.value for c in at.caption)
    with device.simulated_cpu_flags({"avx2"}):
        at.run()
    assert_clean(at)
    assert not [r for r in at.radio if r.key == "summarize.precision"]
    assert any("bfloat16 would be slower" in c.value for c in at.caption)


def test_the_demo_model_s_summary_with_more_global_tokens_says_it_reads_them_as_a_question():
    """The corpus study found the embedded model writes "not in the document" for every summary under sentence
    starts (30 of 30 reports): it was trained with <s> alone global for summaries and the question's tokens global
    for questions. A teacher comparing settings read that as what global attention does to LED; Summarize and the
    lab now say it is the demo model's training. Not under <s> alone nor with no global tokens."""
    said = "more global tokens read to it like a question"
    at = open_app()
    assert_clean(at)
    assert not [i for i in messages(at, "info") if said in i]  # the default: <s> alone
    at.selectbox(key="summarize.settings.global").set_value("sentences").run()
    assert_clean(at)
    assert len([i for i in messages(at, "info") if said in i]) == 1, messages(at, "info")
    at.selectbox(key="summarize.settings.global").set_value("none").run()
    assert not [i for i in messages(at, "info") if said in i]

    lab = open_app("pages/lab.py")
    assert_clean(lab)
    notes = [i for i in messages(lab, "info") if said in i]
    # the lab's default settings on summarize: <s>, none, sentence starts: one note under the cards, not one a card
    assert len(notes) == 1, messages(lab, "info")
