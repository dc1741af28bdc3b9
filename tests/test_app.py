"""The Streamlit app through AppTest: the frame, the Summarize and Question answering pages, and
bad input (empty document, non-text upload, oversized document, unknown Hub id offline). The app
runs the embedded demo model (ledviz/demo/model); tests/app_driver.py drives it.
"""

from __future__ import annotations

import pytest

from app_driver import TIMEOUT, assert_clean, charts, messages, open_app


# ---------------------------------------------------------------------------------------------
# the frame and the pages' main actions
# ---------------------------------------------------------------------------------------------

def test_frame_loads_the_model_and_draws_the_shared_sidebar():
    at = open_app()
    assert_clean(at)
    assert at.sidebar.selectbox(key="view.layer").value == -1  # all layers
    assert any("layers ×" in c.value for c in at.sidebar.caption)
    assert at.session_state["model.loaded"] is not None
    assert any("synthetic reports only" in c.value for c in at.sidebar.caption)  # what the embedded model knows


def test_summarize_runs_streams_and_draws_every_view():
    at = open_app()
    at.button(key="summarize.run").click().run()
    assert_clean(at)
    result = at.session_state["summarize.result"]
    assert result.document.n_tokens > 500 and result.output_ids
    assert charts(at) >= 2  # overview + token-level map
    assert any(s.value == "Summary" for s in at.subheader)
    run_id = result.settings["run_id"]

    # every tab draws, and changing the view reuses the run
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
    assert at.session_state["summarize.result"].settings["run_id"] == run_id  # not re-run


def test_question_answering_runs_and_traces_answer_and_question():
    at = open_app("pages/qa.py")
    assert any("Type a question" in m for m in messages(at, "info"))
    at.text_input(key="qa.question").set_value("Who is the project lead?").run()
    assert at.selectbox(key="qa.settings.global").value == "question"  # the default for QA
    at.button(key="qa.run").click().run()
    assert_clean(at)
    result = at.session_state["qa.result"]
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
    free = at.session_state["qa.result"]
    assert free.settings["answer_from_document"] is False and free is not result


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

def test_empty_document_shows_a_message():
    at = open_app()
    at.button_group(key="doc.source").set_value("Paste").run()
    at.text_area(key="doc.pasted").set_value("   \n  ").run()
    assert not at.exception
    assert any("Choose, paste or upload a document" in m for m in messages(at, "info"))
    assert at.button(key="summarize.run").disabled

    at.button_group(key="doc.source").set_value("Upload").run()
    at.file_uploader(key="doc.upload").set_value(("empty.txt", b"", "text/plain")).run()
    assert not at.exception
    assert any("the document is empty" in m for m in messages(at, "error"))
    assert at.button(key="summarize.run").disabled


def test_non_text_upload_shows_a_message():
    at = open_app()
    at.button_group(key="doc.source").set_value("Upload").run()
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01" + bytes(range(256))
    at.file_uploader(key="doc.upload").set_value(("scan.txt", png, "text/plain")).run()
    assert not at.exception
    assert any("is not readable text" in m for m in messages(at, "error"))
    assert at.button(key="summarize.run").disabled


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
    assert any(f"reads at most {limit} tokens" in w and "were cut" in w for w in warnings), warnings
    assert not at.button(key="summarize.run").disabled


def test_unknown_hub_id_offline_shows_a_message_and_keeps_the_model():
    at = open_app()
    at.sidebar.radio(key="model.source").set_value("hub").run()
    at.sidebar.text_input(key="model.hub_id").set_value("nobody/no-such-led-model").run()
    at.sidebar.button(key="model.load_hub").click().run()
    assert not at.exception
    errors = messages(at, "error")
    assert any("nobody/no-such-led-model" in e and "Hub" in e for e in errors), errors
    assert at.session_state["model.loaded"] is not None  # the embedded model stays in use
    assert at.button(key="summarize.run") is not None


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
    result = at.session_state["summarize.result"]
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
