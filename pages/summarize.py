"""Summarize: a document in, its summary streamed token by token, and for each summary token the
passages of the document it attended to; beside it the encoder's attention views."""

import streamlit as st

from ledviz import pipeline
from pages.common import (
    attention_kept_input,
    document_input,
    document_status,
    most_new_tokens,
    precision_setting,
    render_page,
    require_model,
    run_panel,
    run_settings,
    run_summary,
    show_errors,
    show_output,
)
from pages.views import attention_views, cross_attention_view, source_view

KEY = "summarize"
MAX_TOKENS = 1024  # the most summary tokens asked for (fewer where the model's decoder has fewer positions)


def main() -> None:
    st.title("Summarize")
    st.caption("LED reads the whole document with windowed attention plus a few global tokens, then writes a "
               "summary. See which passages each summary token drew on, and how the encoder's attention spreads.")
    loaded = require_model()
    source = document_input("doc")
    doc = document_status(loaded, None if source is None else source.text)
    if source is not None and (note := pipeline.demo_model_note(loaded, source.text)):
        st.info(note, icon=":material/info:")  # the embedded model on a text unlike its training reports
    kind, mask, max_new, beams = run_settings(KEY, doc, default_global="first", label="Max summary tokens",
                                              max_tokens=MAX_TOKENS, default_tokens=64)
    note_slot = st.container()  # always there: the elements below keep their places as the note comes and goes
    if note := pipeline.demo_summary_global_note(loaded, mask):
        note_slot.info(note, icon=":material/info:")
    kept = attention_kept_input(KEY, loaded)
    precision = precision_setting(KEY, doc)
    facts_from_document = False
    if loaded.source == pipeline.EMBEDDED:  # the constraint knows the embedded model's "Label: value." list
        facts_from_document = st.checkbox(
            "Keep each fact's value to the document", True, key=f"{KEY}.from_document", persist_state="session",
            help="Constrained decoding: each value in the summary must be a passage of the document, each label "
                 "is used once, so no value is made up and nothing repeats. The model still chooses the passages. "
                 "Clear it to see the model's unconstrained summary.")
    result = run_panel(KEY, loaded, doc, mask, task="summarize", max_new_tokens=max_new, num_beams=beams,
                       button_label="Summarize", stream_label="Summary",
                       generation=dict(facts_from_document=facts_from_document, precision=precision, **kept),
                       settings=dict(global_tokens=kind, document=None if source is None else source.label))
    if result is None:
        return
    st.divider()
    left, right = st.columns([2, 3], gap="large")
    with left:
        st.subheader("Summary")
        show_output(result, setting="Max summary tokens")
        run_summary(result, "Max summary tokens", most_new_tokens(loaded, MAX_TOKENS))
        st.subheader("Where the summary came from")
        with show_errors("tracing the summary back to the document"):
            source_view(result, loaded, f"{KEY}.source", what="summary token")
    with right:
        st.subheader("Encoder attention")
        attention_views(result, loaded, f"{KEY}.views",
                        extra={"Cross-attention": lambda: cross_attention_view(result, loaded, f"{KEY}.cross")})


render_page(main, "the Summarize page")
