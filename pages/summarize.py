"""Summarize: a document in, its summary streamed token by token, and for each summary token the
passages of the document it attended to; beside it the encoder's attention views."""

import streamlit as st

from pages.common import (
    attention_views,
    cross_attention_view,
    document_input,
    document_status,
    global_tokens_input,
    require_model,
    run_panel,
    run_summary,
    show_errors,
    show_output,
    source_view,
)

KEY = "summarize"


def settings(doc):
    """Global tokens and generation settings; returns (global kind, mask, max new tokens, beams)."""
    c1, c2, c3 = st.columns([2, 1, 1])
    with c1:
        kind, mask = global_tokens_input(f"{KEY}.settings", doc, default="first")
    max_new = c2.number_input("Max summary tokens", 1, 1024, 64, key=f"{KEY}.max_new", persist_state="session")
    beams = c3.number_input("Beams", 1, 8, 1, key=f"{KEY}.beams", persist_state="session",
                            help="1 = greedy decoding, streamed token by token.")
    return kind, mask, int(max_new), int(beams)


def main() -> None:
    st.title("Summarize")
    st.caption("LED reads the whole document with windowed attention plus a few global tokens, then writes a "
               "summary. See which passages each summary token drew on, and how the encoder's attention spreads.")
    loaded = require_model()
    limit = loaded.config.max_decoder_position_embeddings - 1
    source = document_input("doc")
    doc = document_status(loaded, None if source is None else source.text)
    kind, mask, max_new, beams = settings(doc)
    result = run_panel(KEY, loaded, doc, mask, task="summarize", max_new_tokens=min(max_new, limit), num_beams=beams,
                       button_label="Summarize", stream_label="Summary",
                       settings=dict(global_tokens=kind, document=None if source is None else source.label))
    if result is None:
        return
    st.divider()
    left, right = st.columns([2, 3], gap="large")
    with left:
        st.subheader("Summary")
        show_output(result)
        run_summary(result)
        st.subheader("Where the summary came from")
        with show_errors("tracing the summary back to the document"):
            source_view(result, loaded, f"{KEY}.source", what="summary token")
    with right:
        st.subheader("Encoder attention")
        attention_views(result, loaded, f"{KEY}.views",
                        extra={"Cross-attention": lambda: cross_attention_view(result, loaded, f"{KEY}.cross")})


with show_errors("drawing the Summarize page"):
    main()
