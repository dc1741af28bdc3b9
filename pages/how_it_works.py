"""How LED attention works: the raw band + global output of a tiny LED layer next to its unfolded
N x N map, with linked cells, and what the band costs next to full attention.

Linking the two maps: both are subplots of one figure (`ledviz.plots.explain_figure`) whose
invisible cell markers report clicks (`st.plotly_chart(on_select=..., selection_mode="points")`).
The selection callback stores the cell, the script reruns and the figure frames the cell and its
partner. Number inputs pick a cell of the unfolded map as well (keyboard users, and tests, which
cannot click a chart).
"""

from __future__ import annotations

import streamlit as st

from ledviz import explain, plots
from ledviz.errors import LedvizError
from pages.common import clamp_state, count, keep_valid, render_page, show_errors, stack_toggle
from pages.views import plot

CHART_KEY = "hiw.chart"
PART_TITLES = {
    explain.LOCAL: "encoder_attentions[l]: N × (x + 2w + 1)",
    explain.GLOBAL: "encoder_global_attentions[l]: N × x",
    "absolute": "unfolded: N × N (query × key)",
}
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
    # each part draws on its own: a problem in one shows its message and leaves the others (and every
    # control) on the page
    with show_errors("drawing the example"):
        example_section()
    with show_errors("computing the cost"):
        cost_section()


def example_section() -> None:
    """The controls of the example, the linked maps and the picked cell."""
    c1, c2, c3 = st.columns([2, 2, 1])
    clamp_state("hiw.n", explain.MIN_TOKENS, explain.MAX_TOKENS)  # a value kept from an older page may not fit
    clamp_state("hiw.w", 1, explain.MAX_WINDOW)
    n = c1.slider("tokens N", explain.MIN_TOKENS, explain.MAX_TOKENS, 24, key="hiw.n")
    w = c2.slider("window w (each side; attention_window = 2w)", 1, explain.MAX_WINDOW, 3, key="hiw.w")
    c2.caption(explain.window_text(w, n))
    head = c3.radio("head", [0, 1], horizontal=True, key="hiw.head")
    tokens = explain.example_tokens(n)
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]
    _clamp_state(n, labels)
    st.session_state.setdefault("hiw.globals", [labels[0]])
    picked = st.multiselect("global tokens", labels, key="hiw.globals",
                            help="tokens with global attention: they see every token, and every token sees them")
    positions = [labels.index(p) for p in picked]

    ex = explain.build_example(n, w, positions, head=head)
    st.session_state["hiw.example"] = ex
    focus = st.session_state.get("hiw.focus")
    if not _valid_focus(ex, focus):
        focus = ("absolute", min(n - 1, n // 2), min(n - 1, n // 2 + 2))
        st.session_state["hiw.focus"] = focus
        st.session_state["hiw.i"], st.session_state["hiw.j"] = focus[1], focus[2]

    stacked = stack_toggle("Stack the maps", key="hiw.stacked",
                           help="one above the other, each the page's width: for a narrow screen (a phone), where "
                                "side by side their titles run into each other and the column labels cannot be read "
                                "(on at first on a phone)")
    fig, curves = plots.explain_figure(ex, focus, stacked=stacked)
    st.session_state["hiw.curves"] = curves
    st.plotly_chart(fig, key=CHART_KEY, on_select=_on_chart_select, selection_mode="points",
                    config={"displayModeBar": False})
    st.caption(f"Hover a cell to see its partner; click one to frame it (red) and its partner (orange). "
               f"Grey cells hold no score; ▲ marks the global tokens on every map. "
               f"x = {count(ex.x, 'global token')}, w = {w}: the raw output has {ex.width} columns, "
               f"the unfolded map {n}.")
    if note := ex.window_note():
        st.info(note, icon=":material/select_all:")

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


def cost_section() -> None:
    """What the band costs next to full attention."""
    st.header("What the window saves")
    st.markdown(
        "Full attention scores all N² pairs. LED scores N × (2w + 1) window slots, plus N per global token "
        "in each direction, so its cost grows linearly with the document."
    )
    ex = st.session_state.get("hiw.example")
    w = int(st.session_state.get("hiw.w", 3))
    k1, k2, k3, k4 = st.columns(4)
    windows = sorted({2 * w, 128, 256, 512, 1024, 2048})
    keep_valid("hiw.cost_window", windows)
    cost_window = k1.select_slider("attention_window (2w)", windows, value=1024, key="hiw.cost_window",
                                   help=f"this example uses {2 * w}; LED-base and LED-large use 1024")
    n_global = k2.number_input("global tokens", 0, 4096, max(1, ex.x if ex is not None else 1), key="hiw.cost_global")
    preset = k3.selectbox("model", list(MODEL_PRESETS), key="hiw.cost_model")
    dtype = k4.radio("stored as", ["float32", "float16"], horizontal=True, key="hiw.cost_dtype")
    heads, layers = MODEL_PRESETS[preset]
    table = explain.cost_table(cost_window // 2, int(n_global), heads=heads, layers=layers,
                               bytes_per_score=4 if dtype == "float32" else 2)
    last = table.iloc[-1]
    m1, m2, m3 = st.columns(3)
    m1.metric(f"LED pairs per head at N = {int(last.n):,}", f"{int(last.led_pairs):,}")
    m2.metric("full attention pairs", f"{int(last.full_pairs):,}", f"{last.ratio:.1f}× more", delta_color="inverse")
    m3.metric(f"memory, {preset.split(' (')[0]}", f"{last.led_mb:,.0f} MB", f"full: {last.full_mb:,.0f} MB",
              delta_color="off", delta_arrow="off")
    pairs_fig, memory_fig = plots.cost_figures(table, cost_window // 2, heads, layers, dtype)
    left, right = st.columns(2)
    with left:
        plot(pairs_fig, key="hiw.cost_pairs")
    with right:
        plot(memory_fig, key="hiw.cost_memory")


render_page(render, "the How LED attention works page")
