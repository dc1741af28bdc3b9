"""The attention views of a run, shared by the Summarize and Question answering pages: the map
(binned overview and token-level zoom), the text coloured by attention, the heads grid, the
global tokens, the cross-attention and where the output came from, and the downloads.

The numbers come from `ledviz.views` and `ledviz.provenance`, cached here per run and view
(changing the view never re-runs the model); the figures and HTML from `ledviz.plots`, the
files from `ledviz.export`. This module only arranges widgets and caches.

The API: `attention_views(result, loaded, key)` (tabs with all of the below), `map_view`,
`text_view`, `heads_view`, `global_tokens_view`, `export_view`, `cross_attention_view`,
`source_view`; their parts `plot`, `figure` (a figure built once for the same arguments),
`figure_export`, `highlighted_document`, `show_passages`, `faithfulness_marks`;
cached numbers `aggregated`, `overview_map`, `zoom_map`, `token_row`, `cross_map`, `global_stats`,
`top_passages`, `result_view`.
"""

from __future__ import annotations

import hashlib
import types
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import streamlit as st
import torch

from ledviz import analysis, export, plots, provenance, views
from ledviz.pipeline import Document, LoadedModel, RunResult
from ledviz.runs import run_id
from ledviz.unfold import SparseAttention
from ledviz.views import STATS, View
from pages.common import as_typed, clamp_state, count, current_view, keep_valid, select_head, show_errors

OVERVIEW_BINS = 256  # the default: a 560-pixel map shows no more, and 512 x 512 takes a browser 4x longer to draw
BIN_CHOICES = [128, 256, 512]
MAX_ZOOM = 512  # the most tokens a token-level heatmap shows
MAX_GLOBAL_ROWS = 100
GLOBAL_BINS = 256  # columns of the global tokens' rows
CROSS_BINS = 512  # columns of the cross-attention map


# ---------------------------------------------------------------------------------------------
# numbers for the views, cached per run and view
# ---------------------------------------------------------------------------------------------

def result_view(result: RunResult, view: View | None = None) -> View:
    """The view (the sidebar's by default), clipped to the run's number of layers and heads."""
    return (view or current_view()).fit(result)


@st.cache_resource(max_entries=8, show_spinner=False)
def _aggregated(rid: str, view_key: tuple, _result: RunResult) -> SparseAttention:
    return views.aggregated(_result, View(*view_key))


def aggregated(result: RunResult, view: View | None = None) -> SparseAttention:
    """The one-head attention of the view (mean/max over its heads and layers)."""
    return _aggregated(run_id(result), result_view(result, view).key, result)


@st.cache_data(max_entries=32, show_spinner=False)
def _overview(rid: str, view_key: tuple, bins: int, _result: RunResult) -> tuple[np.ndarray, list[int]]:
    return views.overview_map(_aggregated(rid, view_key, _result), bins)


def overview_map(result: RunResult, view: View | None = None, bins: int = OVERVIEW_BINS):
    """(K, K) binned attention mass of the whole document, and the bins' token edges (K + 1)."""
    return _overview(run_id(result), result_view(result, view).key, bins, result)


@st.cache_data(max_entries=32, show_spinner=False)
def _zoom(rid: str, view_key: tuple, rows: tuple[int, int], cols: tuple[int, int], _result: RunResult) -> np.ndarray:
    return views.zoom_map(_aggregated(rid, view_key, _result), rows, cols)


def zoom_map(result: RunResult, rows: tuple[int, int], cols: tuple[int, int], view: View | None = None) -> np.ndarray:
    """Dense attention of queries rows[0]:rows[1] to keys cols[0]:cols[1] for the view."""
    return _zoom(run_id(result), result_view(result, view).key, tuple(rows), tuple(cols), result)


def token_row(result: RunResult, i: int, direction: str = "from", view: View | None = None) -> np.ndarray:
    """(N,) where token i looks (direction 'from': its row) or who looks at it ('to': its column)."""
    return views.token_row(aggregated(result, view), i, direction)


@st.cache_data(max_entries=32, show_spinner=False)
def _cross(rid: str, view_key: tuple, _result: RunResult) -> np.ndarray | None:
    return views.cross_map(_result, View(*view_key))


def cross_map(result: RunResult, view: View | None = None) -> np.ndarray | None:
    """(T, N) cross-attention of the output onto the input for the view (ledviz.views.cross_map)."""
    if not result.cross_attentions:
        return None
    return _cross(run_id(result), (view or current_view()).key, result)


@st.cache_data(max_entries=32, show_spinner=False)
def _global_stats(rid: str, layer: int, _result: RunResult) -> pd.DataFrame:
    return analysis.global_token_stats([_result.layers[layer]])


def global_stats(result: RunResult, view: View | None = None) -> pd.DataFrame:
    """Per global token, its statistics in the view (ledviz.views.global_stats)."""
    rid = run_id(result)
    return views.global_stats(result, result_view(result, view), lambda l: _global_stats(rid, l, result))


@st.cache_data(max_entries=16, show_spinner=False)
def _passages(rid: str, _doc: Document) -> analysis.TokenGroups:
    return provenance.sentence_groups(_doc)


def passages(result: RunResult) -> analysis.TokenGroups:
    """The run's document's sentences as token groups."""
    return _passages(run_id(result), result.document)


def top_passages(result: RunResult, weights: np.ndarray, k: int = 3) -> list[provenance.Passage]:
    """The k sentences of the document holding the most of `weights` (N,): (span, share, text)."""
    return provenance.top_passages(passages(result), weights, k)


# ---------------------------------------------------------------------------------------------
# parts of views
# ---------------------------------------------------------------------------------------------

def plot(fig, key: str, **kwargs) -> Any:
    """st.plotly_chart with the app's defaults."""
    return st.plotly_chart(fig, key=key, config={"displaylogo": False}, **kwargs)


def figure(make: Callable[..., Any], *args, **kwargs) -> Any:
    """`make(*args, **kwargs)` (a ledviz.plots function), built once for the same arguments: a rerun
    (a click elsewhere, another tab, a rerun while a job streams) reuses the figure already built, and
    any changed argument (another run, view, setting or range) builds a new one. The cache is keyed
    by a digest of every argument (arrays and tables by their bytes: `_digest`), not by names of
    settings a caller could forget to list. A cached figure is shared, never changed: st.plotly_chart
    and the exports only read it.

    `make` is keyed by its module and qualified name, so it must be a module's function: two lambdas or
    local functions of one place share their name but not what they capture, and would share a figure
    (their id would not do either: a new one each rerun, and an id can be reused). A TypeError otherwise."""
    if not isinstance(make, types.FunctionType) or "<" in make.__qualname__:
        raise TypeError(f"figure(): make must be a module's function (a ledviz.plots function), not {make!r}: "
                        "a lambda, local function or method is more than its name, which keys the cache")
    return _figure(f"{make.__module__}.{make.__qualname__}", _digest((args, sorted(kwargs.items()))),
                   make, args, kwargs)


@st.cache_resource(max_entries=32, show_spinner=False)  # shared by every session: a few MB each at most
def _figure(name: str, digest: str, _make: Callable[..., Any], _args: tuple, _kwargs: dict) -> Any:
    return _make(*_args, **_kwargs)


def _digest(value: Any) -> str:
    """A digest of a figure's arguments: numbers, text, ranges, a module's functions (by name), arrays,
    tensors and tables (by dtype, shape and bytes), and lists, tuples and dicts of them; anything else is
    a TypeError, so that no argument goes unseen by the key."""
    h = hashlib.blake2b(digest_size=16)

    def feed(v: Any) -> None:
        if v is None or isinstance(v, (bool, int, float, str, range)):
            h.update(f"{type(v).__name__}:{v!r};".encode())
        elif isinstance(v, np.ndarray):
            h.update(f"array:{v.dtype}:{v.shape};".encode())
            if v.dtype.hasobject:  # its bytes are addresses, which a new object may reuse: its items instead
                feed(v.tolist())
            else:
                h.update(np.ascontiguousarray(v).tobytes())
        elif isinstance(v, np.generic):
            feed(v.item())
        elif isinstance(v, torch.Tensor):
            # every dtype as itself (a float64 cut to float32 would key two close tensors alike), bfloat16,
            # which numpy lacks, as float32 (exact); the tensor's dtype keyed too
            h.update(f"tensor:{v.dtype};".encode())
            feed(v.detach().to("cpu", torch.float32 if v.dtype == torch.bfloat16 else v.dtype).numpy())
        elif isinstance(v, (pd.DataFrame, pd.Series)):
            h.update(f"pandas:{list(v.columns) if isinstance(v, pd.DataFrame) else [v.name]!r};".encode())
            try:
                h.update(pd.util.hash_pandas_object(v, index=True).to_numpy().tobytes())
            except TypeError:  # cells of lists or other unhashable values: their text
                h.update(v.to_json(orient="split", double_precision=15).encode())
        elif isinstance(v, (list, tuple)):
            h.update(f"{type(v).__name__}[{len(v)}];".encode())
            for item in v:
                feed(item)
        elif isinstance(v, dict):
            h.update(f"dict[{len(v)}];".encode())
            for k, item in v.items():
                feed(k)
                feed(item)
        elif isinstance(v, types.FunctionType) and "<" not in v.__qualname__:
            # a module's function, by its name; a lambda, a local function (a closure's captured values) or a
            # bound method (its object) is more than its name: an error below
            h.update(f"fn:{v.__module__}.{v.__qualname__};".encode())
        else:
            raise TypeError(f"figure(): cannot key a cached figure on a {type(v).__name__}; pass numbers, text, "
                            "arrays, tables, a module's functions or lists of them")

    feed(value)
    return h.hexdigest()


def figure_export(fig, name: str, key: str) -> None:
    """A small 'Export' popover for a figure: HTML always; PNG and SVG once this server has shown it
    can draw them (plots.ImageExport), else why not. `name`: the file name without its extension
    (export.figure_file_stem: the run and the figure)."""
    with st.popover("Export figure", icon=":material/download:"):
        st.download_button("Interactive HTML", data=lambda: plots.figure_html(fig), file_name=f"{name}.html",
                           mime="text/html", key=f"{key}.html", on_click="ignore")
        status = plots.ImageExport.shared().status()
        if status == "ready":
            for fmt, mime in plots.IMAGE_FORMATS.items():
                st.download_button(fmt.upper(), data=lambda fmt=fmt: plots.figure_image(fig, fmt),
                                   file_name=f"{name}.{fmt}", mime=mime, key=f"{key}.{fmt}", on_click="ignore")
        elif status == "checking":
            st.caption("PNG and SVG: starting the browser that draws them… (open this again in a moment)")
        else:
            st.caption(f"{status}. The camera icon in the figure's toolbar saves a PNG from your browser.")


def highlighted_document(result: RunResult, weights: np.ndarray, *, focus: Sequence[int] = (),
                         outline: Sequence[tuple[int, int]] = (), label: str = "attention",
                         height: int = 420) -> None:
    """The document text with each token shaded by weights (N,), in a scrolling box."""
    w = views.on_document(result, weights)
    top = float(w.max()) if w.size else 0.0
    # attention is heavy-tailed: a square-root shade keeps the weaker passages visible beside the peaks
    st.html(plots.legend_html(label, top, note="(square-root shading; hover a word for its value)"))
    st.html(plots.attention_html(result.document.text, result.document.text_spans(), w, focus=focus,
                                 outline=outline, gamma=0.5, max_height=height))


def show_passages(top: Sequence[provenance.Passage], title: str = "Passages it attended to most") -> None:
    """A numbered list of passages (from `top_passages`) with their share of the attention."""
    if top:
        st.html(plots.passages_html(top, title))


def _token_picker(result: RunResult, key: str, label: str, default: int = 0) -> int:
    doc = result.document
    n = doc.n_tokens
    st.session_state.setdefault(key, min(default, n - 1))  # the start, set here only (not also as a default value)
    clamp_state(key, 0, n - 1)
    i = int(st.number_input(label, 0, n - 1, key=key, persist_state="session"))
    st.caption(f"Token {i}: “{as_typed(doc.token_texts()[i])}”" + (" · global" if i in set(result.global_positions) else ""))
    return i


# ---------------------------------------------------------------------------------------------
# the views
# ---------------------------------------------------------------------------------------------

def map_view(result: RunResult, key: str, view: View | None = None, wide: bool = False) -> None:
    """Binned overview of the whole map with a zoom range, and the token-level map of that range
    (below it, or beside it when `wide`)."""
    v = result_view(result, view)
    doc = result.document
    n = doc.n_tokens
    if wide:
        c1, c2, c3 = st.columns([2.6, 1.5, 1])
    else:  # in a page's narrower column (Summarize's, 1150 px) three columns cut the labels ("Overvie w bins", "25")
        c1 = st.container()
        c2, c3 = st.columns(2)
    scale = c2.selectbox("Colour scale", list(plots.SCALES), format_func=plots.SCALES.get, key=f"{key}.scale",
                         persist_state="session")
    bins = c3.selectbox("Overview bins", BIN_CHOICES, index=BIN_CHOICES.index(OVERVIEW_BINS), key=f"{key}.bins",
                        persist_state="session", help="Bins per side of the whole-document map (fewer draw faster).")
    default = (0, min(n, 64))
    # the zoom belongs to a document: another document starts again from its first tokens
    document = (n, hash(doc.text))
    if st.session_state.get(f"{key}.zoom_document") != document:
        st.session_state[f"{key}.zoom_document"] = document
        st.session_state[f"{key}.rows"] = st.session_state[f"{key}.cols"] = default
    # the sliders take their range from the session state alone (set here, never also as a default value:
    # Streamlit warns on both); the key slider's state may have gone while it was hidden
    for axis in ("rows", "cols"):
        st.session_state.setdefault(f"{key}.{axis}", default)
        clamp_state(f"{key}.{axis}", 0, n)
    with c1:
        rows = st.slider("Zoom: query tokens", 0, n, key=f"{key}.rows", persist_state="session",
                         help=f"At most {MAX_ZOOM} tokens are shown token by token.")
        same = st.checkbox("Keys: the same tokens", True, key=f"{key}.same", persist_state="session")
        cols = rows if same else st.slider("Zoom: key tokens", 0, n, key=f"{key}.cols", persist_state="session")
    if rows[1] - rows[0] > MAX_ZOOM or cols[1] - cols[0] > MAX_ZOOM:
        st.caption(f"The token-level map shows the first {MAX_ZOOM} tokens of the range.")
    rows = (rows[0], min(rows[1], rows[0] + MAX_ZOOM))
    cols = (cols[0], min(cols[1], cols[0] + MAX_ZOOM))
    m, edges = overview_map(result, v, bins)
    real = len(edges) - 1
    size = edges[1] - edges[0]
    if real != bins:  # bins hold whole tokens, the same number each (the last one fewer)
        why = (f"the document has fewer than {bins} tokens" if n < bins else
               f"{bins} bins would split tokens")
        c3.caption(f"Drawn: {real:,} × {real:,} bins of {count(size, 'token')} ({why}).")
    if note := v.max_mass_note(float(m.sum()), n):
        st.caption(note)
    title = (f"Whole document: {n:,} tokens, {real:,} × {real:,} bins of {size:,}<br>"
             f"<span style='font-size:12px'>{v.label()}</span>")
    fig = figure(plots.overview_figure, m, edges, title=title, scale=scale, zoom=(rows, cols),
                 global_positions=result.global_positions)
    left, right = st.columns(2, gap="medium") if wide else (st.container(), st.container())
    with left:
        plot(fig, key=f"{key}.overview")
        if result.global_positions:
            st.caption(f"In red: the {count(len(result.global_positions), 'global token')}, ▼ above and ▶ beside the "
                       f"map (a global row or column is one bin wide here), {plots.GLOBAL_SYMBOL} on the token "
                       "map's labels.")
        figure_export(fig, export.figure_file_stem(result, "attention-overview"), f"{key}.overview_export")
    with right:
        if rows[1] - rows[0] < 1 or cols[1] - cols[0] < 1:
            st.info("Choose a token range to zoom into.")
            return
        z = zoom_map(result, rows, cols, v)
        texts = doc.token_texts()
        marked = result.global_positions
        fig2 = figure(plots.token_heatmap_figure, z,
                      plots.token_axis_labels(texts, range(*rows), global_positions=marked),
                      plots.token_axis_labels(texts, range(*cols), global_positions=marked),
                      title=views.zoom_title(rows, cols),
                      scale="linear" if scale == "clipped" else scale, height=560 if wide else None)
        plot(fig2, key=f"{key}.zoom")
        figure_export(fig2, export.figure_file_stem(result, "attention-tokens"), f"{key}.zoom_export")


def text_view(result: RunResult, key: str, view: View | None = None, default_token: int = 0) -> None:
    """The document coloured by the attention from (or to) a chosen token."""
    c1, c2 = st.columns([1, 1])
    with c1:
        i = _token_picker(result, f"{key}.token", "Token position", default_token)
    direction = c2.radio("Attention", ["from", "to"], key=f"{key}.direction", horizontal=True,
                         format_func={"from": "from this token (where it looks)",
                                      "to": "to this token (who looks at it)"}.get, persist_state="session")
    w = token_row(result, i, direction, view)
    fig = figure(plots.profile_figure, views.on_document(result, w), marks=[(i, "token")], value_name="attention",
                 height=180, global_positions=result.global_positions)
    plot(fig, key=f"{key}.profile")
    highlighted_document(result, w, focus=[i], label=f"attention {direction} token {i}")


def heads_view(result: RunResult, key: str, view: View | None = None) -> None:
    """The layer × head grid of a per-head statistic; a click on a cell shows that head everywhere."""
    v = result_view(result, view)
    table = analysis.stats_table(dict(sorted(result.head_stats.items())))
    if table.empty:
        st.info("This run kept no per-head statistics.")
        return
    stat = st.segmented_control("Statistic", list(STATS), format_func=STATS.get, default="mean_distance",
                                required=True, key=f"{key}.stat", persist_state="session")
    grid = views.stat_grid(table, stat)
    selected = None
    if v.layer is not None and v.heads is not None and len(v.heads) == 1:
        selected = (list(grid.index).index(v.layer), list(grid.columns).index(v.heads[0]))
    fig = figure(plots.grid_figure, grid.to_numpy(), [f"layer {l}" for l in grid.index],
                 [f"head {h}" for h in grid.columns], value_name=STATS[stat], selected=selected)
    chart_key = f"{key}.grid"

    def picked() -> None:
        points = st.session_state[chart_key]["selection"]["points"]
        if points:  # the invisible cell markers: x = column (head), y = row (layer)
            p = points[0]
            select_head(int(grid.index[int(p["y"])]), int(grid.columns[int(p["x"])]))

    plot(fig, key=chart_key, on_select=picked, selection_mode="points")
    st.caption("Averaged over the document's tokens. Click a cell to show that layer and head in every view "
               "(the sidebar follows).")
    figure_export(fig, export.figure_file_stem(result, f"heads-{stat}"), f"{key}.grid_export")
    with st.expander("All statistics as a table"):
        st.dataframe(table.drop(columns=["batch"]), hide_index=True, height=260)


def global_tokens_view(result: RunResult, key: str, view: View | None = None) -> None:
    """The global tokens: their statistics, and where each of them looks over the document."""
    v = result_view(result, view)
    doc = result.document
    if not result.global_positions:
        st.info("This run has no global tokens: choose some (e.g. the first token) before running.")
        return
    stats = global_stats(result, v)
    texts = doc.token_texts()
    stats.insert(1, "token", [texts[p] for p in stats["position"]])
    shown = stats.nlargest(MAX_GLOBAL_ROWS, "received_mean").sort_values("position") \
        if len(stats) > MAX_GLOBAL_ROWS else stats
    rows = views.global_rows(aggregated(result, v), list(shown["position"]))  # (G, N)
    m, edges = views.binned_rows(rows, doc.n_tokens, GLOBAL_BINS)
    note = f" (the {MAX_GLOBAL_ROWS} most attended of {len(stats)})" if len(stats) > MAX_GLOBAL_ROWS else ""
    fig = figure(plots.rows_figure, m, plots.token_axis_labels(texts, list(shown["position"])), edges,
                 title=f"Where each global token looks{note} — {v.label()}", value_name="attention mass",
                 global_positions=result.global_positions)
    plot(fig, key=f"{key}.rows")
    figure_export(fig, export.figure_file_stem(result, "global-tokens"), f"{key}.rows_export")
    st.dataframe(
        stats, hide_index=True, height=260 if len(stats) > 6 else "auto",
        column_order=["position", "token", "received_mean", "received_sum", "mean_distance", "entropy", "self_mass",
                      "global_mass"],
        column_config={  # the bar first and short headers: the table fits a half-width column
            "position": st.column_config.NumberColumn("pos", width=48),
            "token": st.column_config.TextColumn(width=80),
            "received_mean": st.column_config.ProgressColumn("received", format="%.4f", min_value=0.0,
                                                             max_value=float(stats["received_mean"].max() or 1.0),
                                                             width=100, help="mean attention a token pays to it"),
            "received_sum": st.column_config.NumberColumn("sum", format="%.2f", width=56,
                                                          help="attention all tokens pay to it, summed"),
            "mean_distance": st.column_config.NumberColumn("dist.", format="%.0f", width=50,
                                                           help="mean distance (tokens) of its own attention"),
            "entropy": st.column_config.NumberColumn("entropy", format="%.2f", width=60),
            "self_mass": st.column_config.NumberColumn("self", format="%.3f", width=52),
            "global_mass": st.column_config.NumberColumn("globals", format="%.3f", width=60,
                                                         help="its attention on the global tokens"),
        })
    st.caption("received: the attention all tokens pay to it; mean distance and entropy: of its own row.")


def cross_attention_view(result: RunResult, loaded: LoadedModel | None, key: str, view: View | None = None) -> None:
    """Output tokens × document: the decoder's cross-attention for the view, binned along the document."""
    cm = cross_map(result, view)
    if cm is None:
        st.info("No output tokens, so no cross-attention.")
        return
    m, edges = views.binned_rows(cm, result.document.n_tokens, CROSS_BINS)
    labels = plots.output_axis_labels(provenance.output_pieces(result, loaded.tokenizer if loaded else None))
    fig = figure(plots.rows_figure, m, labels, edges,
                 title="Cross-attention: each output token onto the input", value_name="attention mass",
                 global_positions=result.global_positions)
    plot(fig, key=f"{key}.cross")
    if result.global_positions:
        st.caption(f"▼ in red above the map: the {count(len(result.global_positions), 'global token')} of the input.")
    figure_export(fig, export.figure_file_stem(result, "cross-attention"), f"{key}.cross_export")


def source_view(result: RunResult, loaded: LoadedModel | None, key: str, view: View | None = None,
                what: str = "summary token") -> None:
    """Pick an output token (or all of them): the document shaded by its cross-attention, and the
    passages (sentences) it drew on most."""
    cm = cross_map(result, view)
    if cm is None:
        st.info("No output tokens, so nothing to trace back.")
        return
    pieces = provenance.output_pieces(result, loaded.tokenizer if loaded else None)
    special = loaded.tokenizer.all_special_ids if loaded is not None else ()
    options = [-1] + provenance.output_steps(result, special)
    flagged = faithfulness_marks(result, pieces, what)
    names = {-1: f"every {what}",
             **{k: ("⚠ " if k in flagged else "") + plots.piece_label(pieces[k - 1], "␣") for k in options[1:]}}
    keep_valid(f"{key}.out_token", options)
    box = st.container(height=150 if len(options) > 24 else "content")
    k = box.pills(f"Which {what}? (the output, token by token)", options, format_func=names.get, default=-1,
                  required=True, key=f"{key}.out_token", persist_state="session", wrap=True)
    if k != -1:
        names[k] = f"token {k} “{names[k]}”"
    weights = cm.mean(0) if k == -1 else cm[k - 1]
    show_passages(top_passages(result, weights, 3))
    highlighted_document(result, weights, label=f"cross-attention of {names[k]}", height=360)


def faithfulness_marks(result: RunResult, pieces: Sequence[str], what: str | None = "summary token") -> dict[int, str]:
    """The output with the words and numbers the document does not contain marked, and a line on
    what that means; returns the output steps {k: word} of the marked tokens (provenance.flagged_steps).
    `what` names the output's tokens offered below for picking (None: no picker follows)."""
    marks = provenance.run_unsupported_words(result)
    if not result.output_text.strip():
        return {}
    st.markdown("**Checked against the document**")
    st.html(plots.faithfulness_html(result.output_text, marks))
    labels = provenance.label_spans(result.output_text, provenance.fact_labels())
    aside = "stopwords" + (" and the fact list's labels" if labels else "")
    if marks:
        distinct = provenance.distinct_marks(marks)
        words = (", ".join(f"“{as_typed(text)}”" + (f" ({n}×)" if n > 1 else "") for text, n in distinct[:8])
                 + (f" and {len(distinct) - 8} more" if len(distinct) > 8 else ""))
        st.caption(f"Not in the document: {words} (marked; numbers compared by value, {aside} left out)."
                   + (f" Pick a ⚠ {what} below to see where the model looked while writing it." if what else
                      " The shading below is where the answer tokens looked."))
    else:
        st.caption(f"Every word and number of it occurs in the document ({aside} aside): nothing is made up "
                   "word by word, which does not make it right.")
    cut = provenance.open_last_word(result)
    if cut:  # a cancel or the token limit may have stopped the output inside its last word
        st.caption(f"The output stopped before it ended{' (cancelled)' if result.stopped_early else ''}, perhaps "
                   f"inside its last word: “{as_typed(cut)}” is checked as the beginning of a word, not as a whole one.")
    return provenance.flagged_steps(result.output_text, pieces, marks)


def export_view(result: RunResult, key: str, view: View | None = None) -> None:
    """Downloads: the run's settings (JSON), its attention maps and statistics (.npz, Parquet)."""
    v = result_view(result, view)
    st.markdown("Files are made when you click (big runs take a moment).")
    # a row that wraps: in a half-page column, three fixed columns cut the buttons' labels short
    row = st.container(horizontal=True)
    row.download_button("Settings (JSON)", data=export.run_settings_json(result, v),
                        file_name=export.run_file_name(result, ".json"), mime="application/json", key=f"{key}.json",
                        on_click="ignore", icon=":material/settings:")
    row.download_button("Maps and statistics (.npz)", data=lambda: export.run_npz_bytes(result),
                        file_name=export.run_file_name(result, ".npz"), mime="application/octet-stream",
                        key=f"{key}.npz", on_click="ignore", icon=":material/data_array:")
    if export.parquet_available():
        row.download_button("Tables (Parquet, zip)", data=lambda: export.run_parquet_zip(result),
                            file_name=export.run_file_name(result, "-parquet.zip"), mime="application/zip",
                            key=f"{key}.parquet", on_click="ignore", icon=":material/table:")
    else:
        row.caption("Parquet needs pyarrow (`pip install pyarrow`); the .npz file has everything.")
    st.caption("The .npz holds every encoder layer in band + global form (float16, "
               f"{result.memory.get('attention_mb', 0):.0f} MB before compression), the per-head statistics "
               "and the text, offsets and settings as JSON; "
               "read it back with `ledviz.export.load_npz`. The Parquet tables hold per-head statistics, "
               "256-bin overviews of every head and the global-token statistics. Figures: the Export button "
               "under each figure.")


VIEW_TABS = {"map": "Map", "text": "Text", "heads": "Heads", "global": "Global tokens", "export": "Export"}


def attention_views(result: RunResult, loaded: LoadedModel | None, key: str, *, tabs: Sequence[str] = tuple(VIEW_TABS),
                    default_token: int = 0, extra: dict[str, Callable[[], None]] | None = None,
                    wide: bool = False) -> None:
    """The encoder attention views of a run in tabs. Only the open tab is computed (tabs with
    on_change="rerun"), so switching views or changing the sidebar redraws quickly. `extra`
    adds tabs {label: draw function} after the standard views, before Export; `wide` (the views
    span the page) sets figures side by side."""
    v = result_view(result)
    draw = {
        "map": lambda: map_view(result, f"{key}.map", v, wide),
        "text": lambda: text_view(result, f"{key}.text", v, default_token),
        "heads": lambda: heads_view(result, f"{key}.heads", v),
        "global": lambda: global_tokens_view(result, f"{key}.global", v),
        "export": lambda: export_view(result, f"{key}.export", v),
    }
    # the extra tabs go after the views, before Export (the run's download stays the last tab)
    views = [(VIEW_TABS[t], draw[t]) for t in tabs if t != "export"] + list((extra or {}).items())
    views += [(VIEW_TABS[t], draw[t]) for t in tabs if t == "export"]
    labels, fns = [label for label, _ in views], [fn for _, fn in views]
    containers = st.tabs(labels, key=f"{key}.tab", on_change="rerun")
    for label, tab, fn in zip(labels, containers, fns):
        if tab.open is False:
            continue
        with tab, show_errors(f"drawing the {label} view"):
            fn()
