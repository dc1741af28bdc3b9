"""The model: the loaded checkpoint's configuration, parameters, windows per layer and memory use,
where it came from and how long it took to load. The numbers come from `ledviz.explain`."""

from __future__ import annotations

import json
import os

import pandas as pd
import streamlit as st

from ledviz import answering, device, explain, pipeline, plots
from ledviz.runs import size_text
from pages.common import as_typed, error_text, render_page, require_model, show_errors
from pages.views import figure, plot

KEY = "model_page"
ARCHITECTURE = [  # the config fields a reader looks for first, in reading order
    "d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
    "encoder_ffn_dim", "decoder_ffn_dim", "attention_window", "max_encoder_position_embeddings",
    "max_decoder_position_embeddings", "vocab_size", "activation_function", "dropout", "attention_dropout",
    "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "tie_word_embeddings", "dtype",
]
SOURCES = {pipeline.EMBEDDED: "Embedded", "local": "Local folder", "hub": "Hub"}


def _value(v) -> str:
    """A config value as one line of text (lists and dicts as JSON)."""
    return json.dumps(v) if isinstance(v, (list, dict, tuple)) else str(v)


def origin(loaded) -> None:
    """Where the checkpoint came from and how long it took."""
    where = pipeline.default_model_dir() if loaded.source == pipeline.EMBEDDED else loaded.name
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Source", SOURCES.get(loaded.source, loaded.source))
    c2.metric("Load time", f"{loaded.load_seconds:.2f} s")
    c3.metric("Parameters", f"{loaded.model.num_parameters() / 1e6:,.2f} M")
    c4.metric("Longest input", f"{loaded.max_tokens:,} tokens")
    st.caption(f"Loaded from `{where}`" + (f" (folder `{os.path.abspath(where)}`)" if os.path.isdir(where) and
                                          os.path.abspath(where) != where else "") +
               f" · weights on {loaded.model.device}, {str(loaded.model.dtype).replace('torch.', '')}")
    cap = device.cpu_capability()
    if cap.fast_bfloat16:
        st.caption(f"CPU: fast bfloat16, with {cap.detail}. Summarize offers **fast (bfloat16)** for documents of "
                   f"{device.LONG_DOCUMENT_TOKENS:,} tokens or more; float32 stays the default.")
    else:
        st.caption(f"CPU: {cap.detail}, so bfloat16 is not fast here: runs use float32.")


def configuration(loaded) -> None:
    cfg = loaded.config.to_dict()
    main = pd.DataFrame([(k, _value(cfg[k])) for k in ARCHITECTURE if k in cfg], columns=["field", "value"])
    st.dataframe(main, hide_index=True, width="stretch", height=min(740, 35 * len(main) + 40))
    with st.expander("Every field of config.json"):
        everything = pd.DataFrame(sorted((k, _value(v)) for k, v in cfg.items()), columns=["field", "value"])
        st.dataframe(everything, hide_index=True, width="stretch")


def parameters(loaded) -> None:
    table = explain.parameter_table(loaded.model)
    summary = explain.parameter_summary(table)
    cols = st.columns(5)
    for col, part in zip(cols, ("total", "embeddings", "encoder", "decoder", "head")):
        share = f"{summary[part] / max(summary['total'], 1):.0%}" if part != "total" else None
        col.metric(part.capitalize() if part != "head" else "Task heads", f"{summary[part]:,}", share,
                   delta_color="off", delta_arrow="off", delta_description="of all" if share else None)
    st.caption("Embeddings: the token table (shared by encoder, decoder and the tied LM head) and the two position "
               "tables. Encoder and decoder: their layers and embedding layer norms. Tied weights count once.")
    rule = answering.decline_rule(loaded.model)
    if rule is not None and rule.head is not None:  # the QA page's decline decisions are its: say it exists
        st.caption(rule.head.describe())
    by_component = explain.parameters_by_component(table)
    left, right = st.columns([1, 1])
    with left:
        # fixed widths: the share's bar and its percentage fit beside the names (stretched columns clipped it)
        st.dataframe(by_component, hide_index=True, width="stretch", height=35 * len(by_component) + 40,
                     column_config={"part": st.column_config.TextColumn(width=90),
                                    "component": st.column_config.TextColumn(width=150),
                                    "params": st.column_config.NumberColumn(format="localized", width=90),
                                    "share": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1,
                                                                             width=150)})
    with right:
        fig = figure(plots.parameters_figure, explain.parameters_per_layer(table))
        plot(fig, key=f"{KEY}.per_layer")
    with st.expander("Every parameter tensor"):
        st.dataframe(table, hide_index=True, width="stretch")


def windows(loaded) -> None:
    wins = loaded.config.attention_windows()
    fig = figure(plots.windows_figure, wins)
    plot(fig, key=f"{KEY}.windows")
    st.caption(f"Each token sees w = attention_window / 2 tokens on either side. Inputs are padded to a multiple "
               f"of the largest window ({max(wins)}).")


def memory(loaded) -> None:
    by_dtype = explain.weights_by_dtype(loaded.model)
    n_params = loaded.model.num_parameters()
    left, right = st.columns([2, 3])
    with left:
        st.markdown("**Weights in memory**")
        st.dataframe(by_dtype, hide_index=True, width="stretch",
                     column_config={"mb": st.column_config.NumberColumn("MB", format="%.1f"),
                                    "elements": st.column_config.NumberColumn(format="localized")})
        st.caption(f"The same {n_params:,} parameters would take {n_params * 4 / 2**20:,.1f} MB in float32 and "
                   f"{n_params * 2 / 2**20:,.1f} MB in float16 or bfloat16.")
    with right:
        st.markdown("**Encoder attention for a document**")
        c1, c2 = st.columns(2)
        n = c1.number_input("Document length (tokens)", 1, 1_000_000, loaded.max_tokens, key=f"{KEY}.n",
                            persist_state="session")
        x = c2.number_input("Global tokens", 0, 100_000, 1, key=f"{KEY}.x", persist_state="session")
        table = explain.attention_memory(loaded.config, int(n), int(x))
        if x > n:  # the estimate counts at most every token as global: said, not done silently
            st.caption(f"{int(x):,} global tokens is more than the document's {int(n):,}: counted as {int(n):,} "
                       "(every token global).")
        fig = figure(plots.attention_memory_figure, table)
        plot(fig, key=f"{KEY}.attention_memory")
        total32, total16 = table.float32_mb.sum(), table.float16_mb.sum()
        full = table.full_float32_mb.sum()
        st.caption(f"Kept for every layer: **{size_text(total32)}** as float32, **{size_text(total16)}** as float16 "
                   f"(the app keeps float16). The encoder computes one layer at a time, so its peak is the largest "
                   f"layer ({size_text(table.float32_mb.max())}). Dense N × N maps of every head and layer would take "
                   f"{size_text(full)} as float32. Beyond the model's limit ({loaded.max_tokens:,} tokens) "
                   "the numbers are hypothetical.")


def main() -> None:
    st.title("The model")
    loaded = require_model()
    err = st.session_state.get("model.error")
    if err is not None:  # why, here too: below 640 px wide the sidebar that also says it starts closed
        shown = "the embedded demo model" if loaded.source == pipeline.EMBEDDED else f"`{as_typed(loaded.name)}`"
        st.warning(f"The model asked for last could not be loaded. {error_text(err, 'loading the model')}  \n"
                   f"This page shows the model still in use, {shown}.", icon=":material/warning:")
    origin(loaded)
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader("Configuration")
        with show_errors("reading the configuration"):
            configuration(loaded)
    with right:
        st.subheader("Attention windows")
        with show_errors("drawing the windows"):
            windows(loaded)
    st.subheader("Parameters")
    with show_errors("counting the parameters"):
        parameters(loaded)
    st.subheader("Memory")
    with show_errors("estimating memory"):
        memory(loaded)


render_page(main, "the Model page")
