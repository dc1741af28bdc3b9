"""How LED attention works: the raw band + global output of a tiny LED layer next to its unfolded
N x N map, with linked cells, and what the band costs next to full attention.

Linking the two maps: Plotly in Streamlit cannot link hover across charts, so both maps are
subplots of ONE figure. Each subplot carries an invisible scatter point on every cell: its hover
text names the partner cell in the other view, and clicking it selects it
(`st.plotly_chart(on_select=..., selection_mode="points")`; heatmap cells themselves do not report
clicks reliably). The selection callback stores the cell, the script reruns and draws a frame
around the cell and its partner. Number inputs pick a cell of the unfolded map as well (keyboard
users, and tests, which cannot click a chart).
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from ledviz import explain
from ledviz.errors import LedvizError
from pages.common import plot, show_error, show_errors

CHART_KEY = "hiw.chart"
PART_TITLES = {
    explain.LOCAL: "encoder_attentions[l]: N × (x + 2w + 1)",
    explain.GLOBAL: "encoder_global_attentions[l]: N × x",
    "absolute": "unfolded: N × N (query × key)",
}
SUBPLOT_TITLES = {  # short enough for narrow subplots
    explain.LOCAL: "raw: encoder_attentions<br>row = query, column = slot",
    explain.GLOBAL: "raw: global_attentions<br>row = key",
    "absolute": "unfolded N × N<br>row = query, column = key",
}
HIGHLIGHT = {"picked": "#d62728", "partner": "#ff7f0e"}
MODEL_PRESETS = {  # heads x encoder layers, for the memory estimate
    "LED-base (12 heads × 6 layers)": (12, 6),
    "LED-large (16 heads × 12 layers)": (16, 12),
    "one head of one layer": (1, 1),
}


# ---------------------------------------------------------------------------------------------
# state: the picked cell, as (part, row, col)
# ---------------------------------------------------------------------------------------------

def _on_chart_select() -> None:
    """A click on a cell of the figure: remember it, and point the number inputs at its absolute cell."""
    event = st.session_state.get(CHART_KEY)
    points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else \
        getattr(getattr(event, "selection", None), "points", []) or []
    if not points:
        return
    pt = points[-1]
    part = st.session_state.get("hiw.curves", {}).get(pt.get("curve_number"))
    if part is None or pt.get("x") is None or pt.get("y") is None:
        return
    cell = (part, int(round(pt["y"])), int(round(pt["x"])))
    st.session_state["hiw.focus"] = cell
    absolute = cell if part == "absolute" else None
    if absolute is None and "hiw.example" in st.session_state:
        try:
            absolute = st.session_state["hiw.example"].partner(*cell)
        except LedvizError:
            absolute = None
    if absolute is not None:
        st.session_state["hiw.i"], st.session_state["hiw.j"] = absolute[1], absolute[2]


def _on_cell_input() -> None:
    st.session_state["hiw.focus"] = ("absolute", int(st.session_state["hiw.i"]), int(st.session_state["hiw.j"]))


def _clamp_state(n: int, token_labels: list[str]) -> None:
    """Keep widget state valid when the number of tokens changes (Streamlit rejects values out of range)."""
    for key in ("hiw.i", "hiw.j"):
        if key in st.session_state and not 0 <= st.session_state[key] < n:
            st.session_state[key] = min(max(int(st.session_state[key]), 0), n - 1)
    if "hiw.globals" in st.session_state:
        st.session_state["hiw.globals"] = [g for g in st.session_state["hiw.globals"] if g in token_labels]


def _valid_focus(ex: explain.ExplainExample, focus) -> bool:
    if not focus:
        return False
    part, row, col = focus
    n_cols = {explain.LOCAL: ex.width, explain.GLOBAL: ex.x, "absolute": ex.n}[part]
    return 0 <= row < ex.n and 0 <= col < n_cols


# ---------------------------------------------------------------------------------------------
# the figure
# ---------------------------------------------------------------------------------------------

def plotly_text(s: str) -> str:
    """Plotly reads labels as HTML: escape the angle brackets of tokens such as <s>."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _nan_to_none(t) -> list[list[float | None]]:
    return [[None if v != v else v for v in row] for row in t.tolist()]


def linked_figure(ex: explain.ExplainExample, focus) -> tuple[go.Figure, dict[int, str]]:
    """Raw local | raw global (when x > 0) | unfolded, one figure; returns it and {curve number: part}."""
    parts = [explain.LOCAL] + ([explain.GLOBAL] if ex.x else []) + ["absolute"]
    data = {explain.LOCAL: ex.local_display(), explain.GLOBAL: ex.global_display(), "absolute": ex.dense_display()}
    tokens = [plotly_text(t) for t in ex.token_labels()]
    xlabels = {explain.LOCAL: ex.local_column_labels(), explain.GLOBAL: ex.global_column_labels(), "absolute": tokens}
    widths = [max(len(xlabels[p]), 5) for p in parts]
    # rows are token positions in every subplot: one shared y axis, labelled once on the left
    fig = make_subplots(rows=1, cols=len(parts), column_widths=widths, horizontal_spacing=0.03, shared_yaxes=True,
                        subplot_titles=[SUBPLOT_TITLES[p] for p in parts])
    zmax = max(float(ex.dense.max()), 1e-6)
    curves: dict[int, str] = {}
    for k, part in enumerate(parts, start=1):
        z = data[part]
        rows, cols = z.shape
        fig.add_trace(go.Heatmap(z=_nan_to_none(z), x=list(range(cols)), y=list(range(rows)),
                                 coloraxis="coloraxis", hoverinfo="skip", xgap=1, ygap=1), row=1, col=k)
        # invisible points on every cell: the hover text and the click target
        xs, ys, text = [], [], []
        for r in range(rows):
            for c in range(cols):
                xs.append(c)
                ys.append(r)
                text.append(plotly_text(ex.describe(part, r, c)))
        curves[len(fig.data)] = part
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", text=text, hovertemplate="%{text}<extra></extra>",
                                 marker=dict(symbol="square", size=9, color="rgba(0,0,0,0)"),
                                 showlegend=False), row=1, col=k)
        fig.update_xaxes(tickmode="array", tickvals=list(range(cols)), ticktext=xlabels[part],
                         tickangle=-90 if part == "absolute" else -60, tickfont=dict(size=9),
                         range=[-0.5, cols - 0.5], showgrid=False, zeroline=False, row=1, col=k)
        fig.update_yaxes(tickmode="array", tickvals=list(range(rows)), ticktext=tokens, autorange="reversed",
                         tickfont=dict(size=9), showgrid=False, zeroline=False, row=1, col=k)
    fig.update_xaxes(title_text="key offset (global columns first)", row=1, col=1)
    fig.update_xaxes(title_text="key", row=1, col=len(parts))
    # frames around the picked cell and its partner
    if focus:
        cells = [(focus, HIGHLIGHT["picked"])]
        other = ex.partner(*focus)
        if other is not None:
            cells.append((other, HIGHLIGHT["partner"]))
        for (part, r, c), color in cells:
            if part in parts:
                fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5,
                              line=dict(color=color, width=3), row=1, col=parts.index(part) + 1)
    fig.update_layout(coloraxis=dict(colorscale="Blues", cmin=0, cmax=zmax, colorbar=dict(title="p", thickness=12)),
                      height=max(460, 15 * ex.n + 190), margin=dict(l=10, r=10, t=40, b=10),
                      plot_bgcolor="#e8e8e8", hovermode="closest", clickmode="event+select")
    fig.update_annotations(font_size=12)
    return fig, curves


def cost_figures(table, window: int, heads: int, layers: int, dtype: str) -> tuple[go.Figure, go.Figure]:
    """Scored pairs per head, and probability memory of the whole encoder, against N (log-log)."""
    pairs = go.Figure()
    pairs.add_trace(go.Scatter(x=table.n, y=table.led_pairs, name="LED: N(2w+1) + 2xN", mode="lines"))
    pairs.add_trace(go.Scatter(x=table.n, y=table.full_pairs, name="full attention: N²", mode="lines",
                               line=dict(dash="dash")))
    crossover = 2 * window + 1  # below it the band is wider than the document
    if table.n.min() < crossover < table.n.max():
        pairs.add_vline(x=crossover, line=dict(color="grey", dash="dot"),
                        annotation_text=f"N = 2w + 1 = {crossover:,}", annotation_position="top left")
    pairs.update_layout(title="scored pairs per head", xaxis=dict(title="tokens N", type="log"),
                        yaxis=dict(title="pairs", type="log"), height=360, legend=dict(orientation="h", y=-0.25),
                        margin=dict(l=10, r=10, t=40, b=10))
    memory = go.Figure()
    memory.add_trace(go.Scatter(x=table.n, y=table.led_mb, name="LED band + global", mode="lines"))
    memory.add_trace(go.Scatter(x=table.n, y=table.full_mb, name="full N × N", mode="lines", line=dict(dash="dash")))
    memory.update_layout(title=f"attention probabilities kept, {heads} heads × {layers} layers, {dtype}",
                         xaxis=dict(title="tokens N", type="log"), yaxis=dict(title="MB", type="log"),
                         height=360, legend=dict(orientation="h", y=-0.25), margin=dict(l=10, r=10, t=40, b=10))
    return pairs, memory


# ---------------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------------

def render() -> None:
    st.title("How LED attention works")
    st.markdown(
        "LED's encoder does not score every pair of tokens. Each token looks at the **w tokens on either "
        "side** (the window) and at the **global tokens**; global tokens look at everything. The model "
        "returns this as a narrow matrix: per query, first one column per global token (`g:pos`), then the "
        "window slots by offset (`-w` … `+w`). Global tokens' own rows come in a second output. Below, one "
        "head of a tiny LED layer with fixed random weights reads a short sentence."
    )

    c1, c2, c3 = st.columns([2, 2, 1])
    n = c1.slider("tokens N", explain.MIN_TOKENS, explain.MAX_TOKENS, 24, key="hiw.n")
    w = c2.slider("window w (each side; attention_window = 2w)", 1, explain.MAX_WINDOW, 3, key="hiw.w")
    head = c3.radio("head", [0, 1], horizontal=True, key="hiw.head")
    tokens = explain.example_tokens(n)
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]
    _clamp_state(n, labels)
    st.session_state.setdefault("hiw.globals", [labels[0]])
    picked = st.multiselect("global tokens", labels, key="hiw.globals",
                            help="tokens with global attention: they see every token, and every token sees them")
    positions = [labels.index(p) for p in picked]

    try:
        ex = explain.build_example(n, w, positions, head=head)
    except Exception as err:  # noqa: BLE001 - shown, never raised
        show_error(err)
        return
    st.session_state["hiw.example"] = ex
    focus = st.session_state.get("hiw.focus")
    if not _valid_focus(ex, focus):
        focus = ("absolute", min(n - 1, n // 2), min(n - 1, n // 2 + 2))
        st.session_state["hiw.focus"] = focus
        st.session_state["hiw.i"], st.session_state["hiw.j"] = focus[1], focus[2]

    fig, curves = linked_figure(ex, focus)
    st.session_state["hiw.curves"] = curves
    st.plotly_chart(fig, key=CHART_KEY, on_select=_on_chart_select, selection_mode="points",
                    config={"displayModeBar": False})
    st.caption(f"Hover a cell to see its partner; click one to frame it (red) and its partner (orange). "
               f"Grey cells hold no score. x = {ex.x} global token(s), w = {w}: the raw output has "
               f"{ex.width} columns, the unfolded map {n}.")

    st.markdown("**Or pick a cell of the unfolded map**")
    i_col, j_col, text_col = st.columns([1, 1, 4])
    st.session_state.setdefault("hiw.i", focus[1])
    st.session_state.setdefault("hiw.j", focus[2])
    i_col.number_input("query i", 0, n - 1, key="hiw.i", on_change=_on_cell_input)
    j_col.number_input("key j", 0, n - 1, key="hiw.j", on_change=_on_cell_input)
    part, r, c = focus
    lines = [f"**Picked** ({PART_TITLES[part].split(':')[0]}): {ex.describe(part, r, c)}"]
    other = ex.partner(part, r, c)
    if other is not None:
        lines.append(f"**Partner** ({PART_TITLES[other[0]].split(':')[0]}): {ex.describe(*other)}")
    else:
        lines.append("**Partner**: none, this cell has no counterpart in the other view.")
    text_col.markdown("  \n".join(lines))

    # cost compared to full attention
    st.header("What the window saves")
    st.markdown(
        "Full attention scores all N² pairs. LED scores N × (2w + 1) window slots, plus N per global token "
        "in each direction, so its cost grows linearly with the document."
    )
    k1, k2, k3, k4 = st.columns(4)
    windows = sorted({2 * w, 128, 256, 512, 1024, 2048})
    cost_window = k1.select_slider("attention_window (2w)", windows, value=1024, key="hiw.cost_window",
                                   help=f"this example uses {2 * w}; LED-base and LED-large use 1024")
    n_global = k2.number_input("global tokens", 0, 4096, max(1, ex.x), key="hiw.cost_global")
    preset = k3.selectbox("model", list(MODEL_PRESETS), key="hiw.cost_model")
    dtype = k4.radio("stored as", ["float32", "float16"], horizontal=True, key="hiw.cost_dtype")
    heads, layers = MODEL_PRESETS[preset]
    try:
        table = explain.cost_table(cost_window // 2, int(n_global), heads=heads, layers=layers,
                                   bytes_per_score=4 if dtype == "float32" else 2)
    except Exception as err:  # noqa: BLE001
        show_error(err)
        return
    last = table.iloc[-1]
    m1, m2, m3 = st.columns(3)
    m1.metric(f"LED pairs per head at N = {int(last.n):,}", f"{int(last.led_pairs):,}")
    m2.metric("full attention pairs", f"{int(last.full_pairs):,}", f"{last.ratio:.1f}× more", delta_color="inverse")
    m3.metric(f"memory, {preset.split(' (')[0]}", f"{last.led_mb:,.0f} MB", f"full: {last.full_mb:,.0f} MB",
              delta_color="off", delta_arrow="off")
    pairs_fig, memory_fig = cost_figures(table, cost_window // 2, heads, layers, dtype)
    left, right = st.columns(2)
    with left:
        plot(pairs_fig, key="hiw.cost_pairs")
    with right:
        plot(memory_fig, key="hiw.cost_memory")


with show_errors("drawing the How LED attention works page"):
    render()
