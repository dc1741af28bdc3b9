"""Plotly figures and HTML for the app's attention views. Library code: no Streamlit here.

Every builder takes numbers already computed by `ledviz.analysis` (numpy arrays or tensors)
and labels, and returns a `plotly.graph_objects.Figure` (or an HTML string for the document
coloured by attention). Matrices are drawn as in the paper figures: queries down the rows,
keys along the columns, token 0 at the top left.
"""

from __future__ import annotations

import html
import importlib.util
import math
import os
import threading
import time
from typing import Callable, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .text import decimal, token_range

SCALES = {"clipped": "clipped at 99.5%", "linear": "linear", "log": "log10"}  # colour scales of the maps
ATTENTION_RGB = (230, 85, 13)  # the orange of the highlighted text
MATCH_RGB = (35, 139, 69)  # outline of exact answer matches
COLORSCALE = "Viridis"
_LOG_FLOOR = 1e-6


def _np(values) -> np.ndarray:
    """A tensor or array as a float32 numpy array."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().float().numpy()
    return np.asarray(values, dtype=np.float32)


def _scaled(z: np.ndarray, scale: str, value_name: str = "attention") -> tuple[np.ndarray, float | None, str]:
    """The values to colour by, the top of the colour range, and the colour bar's title: the
    quantity (`value_name`), with what the scale did to it."""
    if scale == "log":
        return np.log10(np.maximum(z, _LOG_FLOOR)), None, f"log10 {value_name}"
    if scale == "clipped":
        nonzero = z[z > 0]
        top = float(np.quantile(nonzero, 0.995)) if nonzero.size else 1.0
        return z, max(top, 1e-12), f"{value_name}<br>(top 0.5% clipped)"
    if scale != "linear":
        raise ValueError(f"scale must be one of {tuple(SCALES)}, got {scale!r}")
    return z, None, value_name


def escape(text) -> str:
    """Text for Plotly labels and for HTML: Plotly reads labels as HTML, so a token such as '<s>'
    would otherwise vanish into a tag. Every label and every piece of HTML text goes through here."""
    return html.escape(str(text), quote=False)


def _layout(fig: go.Figure, title: str | None = None, height: int | None = None, *, rows_down: bool = True,
            square: bool = False, title_size: int | None = 14, top: int | None = None, legend_y: float | None = None,
            **layout) -> go.Figure:
    """The one layout of every figure: title, height, tight margins (`top` overrides the top one),
    a horizontal legend below the plot at `legend_y`; rows from the top for maps (`rows_down`),
    square cells with `square`. Further keywords go to update_layout."""
    font = dict(size=title_size) if title_size else {}
    fig.update_layout(title=dict(text=title, font=font) if title else None, height=height,
                      margin=dict(l=10, r=10, t=top if top is not None else (40 if title else 10), b=10), **layout)
    if legend_y is not None:
        fig.update_layout(legend=dict(orientation="h", y=legend_y))
    if rows_down:  # (not an axis laid over the map, such as mark_global_columns')
        fig.update_yaxes(autorange="reversed", selector=lambda axis: not axis.overlaying)
    if square:
        fig.update_yaxes(scaleanchor="x", scaleratio=1, constrain="domain")
        fig.update_xaxes(constrain="domain")
    return fig


def wrap_title(text: str, width: int = 44) -> str:
    """`text` broken into lines of at most `width` characters at spaces, joined by Plotly's "<br>": a
    long title or axis label that a narrow screen (a phone, 400 px) would cut at the figure's edge
    reads in full. A word longer than `width` stays whole on its own line; the text's own "<br>"s stay."""
    lines: list[str] = []
    for part in text.split("<br>"):
        line = ""
        for word in part.split(" "):
            if line and len(line) + 1 + len(word) > width:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        lines.append(line)
    return "<br>".join(lines)


GLOBAL_MARK = "#d62728"  # the colour global tokens are marked with on every map
GLOBAL_SYMBOL = "▲"


def token_axis_labels(texts: Sequence[str], positions: Sequence[int], width: int = 14,
                      global_positions: Sequence[int] = ()) -> list[str]:
    """Unique short axis labels 'position text' for the tokens at `positions` (texts: every token's
    text), escaped, new lines shown as ⏎ and long tokens cut to `width` characters; the labels of
    `global_positions` are marked (▲, bold, in GLOBAL_MARK's colour)."""
    marked = set(global_positions)
    out = []
    for p in positions:
        t = texts[p].replace("\n", "⏎")
        label = escape(f"{p} {t if len(t) <= width else t[: width - 1] + '…'}")
        out.append(_global_label(label) if p in marked else label)
    return out


def _global_label(label: str) -> str:
    """An (escaped) axis label marked as a global token's."""
    return f'<b style="color:{GLOBAL_MARK}">{GLOBAL_SYMBOL} {label}</b>'


def mark_global_tokens(fig: go.Figure, positions: Sequence[int], *, rows: bool = True, cols: bool = True,
                       row: int | None = None, col: int | None = None, offset: float = 0.0) -> go.Figure:
    """Mark global token positions on a map whose axes are token positions: a ▼ above the map over
    each global key column and a ▶ left of it beside each global query row (a global token's row and
    column are one bin wide on a whole-document map, too thin to see). `offset` shifts the marks
    (0.5 centres them in the bins of a map whose cells start at their position). Legend: once."""
    positions = sorted({int(p) for p in positions})
    if not positions:
        return fig
    where = dict(row=row, col=col) if row is not None else {}
    hover = "global token %{customdata}<extra></extra>"
    common = dict(mode="markers", customdata=positions, hovertemplate=hover, cliponaxis=False,
                  name=f"{GLOBAL_SYMBOL} global token", legendgroup="global")
    xs = [p + offset for p in positions]
    if cols:
        fig.add_trace(go.Scatter(x=xs, y=[0] * len(xs), showlegend=False,
                                 marker=dict(symbol="triangle-down", size=9, color=GLOBAL_MARK), **common), **where)
    if rows:
        fig.add_trace(go.Scatter(x=[0] * len(xs), y=xs, showlegend=False,
                                 marker=dict(symbol="triangle-right", size=9, color=GLOBAL_MARK), **common), **where)
    return fig


def mark_global_columns(fig: go.Figure, positions: Sequence[int], *, offset: float = 0.0) -> go.Figure:
    """Mark global token positions along the top of a figure whose x axis is document tokens and
    whose y axis is anything else (output tokens, a few chosen tokens, an attention value): a ▼
    over each global position, on an invisible y axis of its own (0 to 1) laid over the figure's."""
    positions = sorted({int(p) for p in positions})
    if not positions:
        return fig
    fig.add_trace(go.Scatter(
        x=[p + offset for p in positions], y=[1.0] * len(positions), yaxis="y2", mode="markers",
        customdata=positions, hovertemplate="global token %{customdata}<extra></extra>", cliponaxis=False,
        showlegend=False, name=f"{GLOBAL_SYMBOL} global token",
        marker=dict(symbol="triangle-down", size=9, color=GLOBAL_MARK)))
    fig.update_layout(yaxis2=dict(overlaying="y", range=[0, 1], visible=False, fixedrange=True))
    return fig


PART_OF_CHARACTER = "(part of a character)"  # a token's label when it completes no character


def piece_label(piece: str, blank: str | None = None) -> str:
    """A generated token's piece as shown: stripped; a blank piece as `blank` (its repr where None), and
    an empty piece (a token holding the first bytes of a character the next token completes:
    tokenization.shown_pieces) as PART_OF_CHARACTER. Not escaped."""
    if not piece:
        return PART_OF_CHARACTER
    return piece.strip() or (repr(piece) if blank is None else blank)


def output_axis_labels(pieces: Sequence[str]) -> list[str]:
    """Unique axis labels 'k piece' for generated tokens (k from 1), escaped; pieces as piece_label
    shows them (blank ones by repr)."""
    return [escape(f"{k} {piece_label(p)}") for k, p in enumerate(pieces, start=1)]


# ---------------------------------------------------------------------------------------------
# maps
# ---------------------------------------------------------------------------------------------

def overview_figure(values, edges: Sequence[int], *, title: str | None = None, scale: str = "clipped",
                    value_name: str = "attention mass", zoom: tuple[tuple[int, int], tuple[int, int]] | None = None,
                    global_positions: Sequence[int] = (), height: int = 560) -> go.Figure:
    """Binned map (K, K) of a whole document; edges (K + 1) are the bins' token boundaries.

    Each cell spans its bin's tokens, so the axes read in tokens. `zoom`
    ((row_start, row_stop), (col_start, col_stop)) outlines a token range; `global_positions`
    are marked on both edges (`mark_global_tokens`).
    """
    z = _np(values)
    bounds = np.asarray(edges)  # K + 1 values: Plotly reads them as the cells' edges
    shown, zmax, bar = _scaled(z, scale, value_name)
    hover = "queries ≈ %{y:.0f}<br>keys ≈ %{x:.0f}<br>" + value_name + " %{customdata:.4g}<extra></extra>"
    fig = go.Figure(go.Heatmap(
        z=shown, x=bounds, y=bounds, customdata=z if scale == "log" else None, colorscale=COLORSCALE,
        zmin=None if scale == "log" else 0, zmax=zmax,
        hovertemplate=hover if scale == "log" else hover.replace("customdata", "z"),
        colorbar=dict(title=dict(text=bar, side="right"), thickness=12),
    ))
    if zoom is not None:
        (r0, r1), (c0, c1) = zoom
        fig.add_shape(type="rect", x0=c0, x1=c1, y0=r0, y1=r1, line=dict(color="#ff2b2b", width=2))
    mark_global_tokens(fig, global_positions, offset=0.5)
    fig.update_xaxes(title_text="key token", range=[0, int(edges[-1])])
    fig.update_yaxes(title_text="query token", range=[int(edges[-1]), 0])
    _layout(fig, title, height, square=True, top=58 if title and "<br>" in title else None)
    # the square map in a wide figure (a 2560 px screen) is narrower than its plot area: drawn in the middle,
    # it stood some 800 px from its colour bar at the right edge; against the right side it sits beside it
    fig.update_xaxes(constraintoward="right")
    fig.update_yaxes(autorange=None)
    return fig


def token_heatmap_figure(values, row_labels: Sequence[str], col_labels: Sequence[str], *,
                         title: str | None = None, scale: str = "linear", height: int | None = None) -> go.Figure:
    """Token-level map (R, C) with one label per row and column (labels must be unique, e.g. '12 word')."""
    z = _np(values)
    shown, zmax, bar = _scaled(z, scale, "attention")
    fig = go.Figure(go.Heatmap(
        z=shown, x=list(col_labels), y=list(row_labels), colorscale=COLORSCALE, zmin=0 if scale != "log" else None,
        zmax=zmax, customdata=z,
        hovertemplate="query %{y}<br>key %{x}<br>attention %{customdata:.4g}<extra></extra>",
        colorbar=dict(title=dict(text=bar, side="right"), thickness=12),
    ))
    n = max(len(row_labels), len(col_labels))
    font = 10 if n <= 64 else 8
    fig.update_xaxes(type="category", tickangle=-60, tickfont=dict(size=font), title_text="key")
    fig.update_yaxes(type="category", tickfont=dict(size=font), title_text="query")
    return _layout(fig, title, height or min(640, max(360, 9 * len(row_labels) + 160)))


def grid_figure(values, row_labels: Sequence[str], col_labels: Sequence[str], *, title: str | None = None,
                value_name: str = "value", selected: tuple[int, int] | None = None, colorscale: str = COLORSCALE,
                height: int | None = None) -> go.Figure:
    """A small labelled grid (e.g. layers x heads of a statistic) with the values written in the cells.

    `selected` (row, column) is outlined. Each cell also carries an invisible square marker at
    (column index, row index): heatmap cells do not report clicks reliably, markers do, so a
    point selection on this figure gives the clicked cell as its x (column) and y (row).
    """
    z = _np(values)
    R, C = z.shape
    text = z.size <= 400
    fig = go.Figure(go.Heatmap(
        z=z, x=np.arange(C), y=np.arange(R), colorscale=colorscale, hoverinfo="skip",
        texttemplate="%{z:.2f}" if text else None, textfont=dict(size=11),
        colorbar=dict(title=dict(text=value_name, side="right"), thickness=12), xgap=2, ygap=2,
    ))
    rr, cc = np.meshgrid(np.arange(R), np.arange(C), indexing="ij")
    labels = [f"{row_labels[r]}, {col_labels[c]}<br>{value_name} {z[r, c]:.4g}" for r, c in zip(rr.ravel(), cc.ravel())]
    fig.add_trace(go.Scatter(x=cc.ravel(), y=rr.ravel(), mode="markers", text=labels, showlegend=False,
                             hovertemplate="%{text}<extra></extra>",
                             marker=dict(symbol="square", size=max(8, min(40, 600 // max(C, 1))),
                                         color="rgba(0,0,0,0)")))
    if selected is not None:
        r, c = selected
        fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5,
                      line=dict(color="#ff2b2b", width=3))
    fig.update_xaxes(tickmode="array", tickvals=list(range(C)), ticktext=list(col_labels), showgrid=False,
                     zeroline=False, range=[-0.5, C - 0.5])
    fig.update_yaxes(tickmode="array", tickvals=list(range(R)), ticktext=list(row_labels), showgrid=False,
                     zeroline=False)
    fig.update_layout(dragmode=False, clickmode="event+select")
    return _layout(fig, title, height or max(220, 44 * R + 110))


def rows_figure(values, row_labels: Sequence[str], edges: Sequence[int], *, title: str | None = None,
                x_title: str = "token position", value_name: str = "attention", scale: str = "clipped",
                height: int | None = None, global_positions: Sequence[int] = ()) -> go.Figure:
    """Some tokens (rows) against the whole document in bins (columns): cross-attention of output
    tokens, or where each global token looks. edges (K + 1) are the column bins' token boundaries;
    `global_positions` are marked above the columns (`mark_global_columns`)."""
    z = _np(values)
    shown, zmax, bar = _scaled(z, scale, value_name)
    fig = go.Figure(go.Heatmap(
        z=shown, x=np.asarray(edges), y=list(row_labels), colorscale=COLORSCALE,
        zmin=0 if scale != "log" else None, zmax=zmax, customdata=z,
        hovertemplate="%{y}<br>tokens ≈ %{x:.0f}<br>" + value_name + " %{customdata:.4g}<extra></extra>",
        colorbar=dict(title=dict(text=bar, side="right"), thickness=12),
    ))
    mark_global_columns(fig, global_positions, offset=0.5)
    fig.update_xaxes(title_text=x_title, range=[0, int(edges[-1])])
    fig.layout.yaxis.update(type="category", tickfont=dict(size=10 if len(row_labels) <= 40 else 8))
    return _layout(fig, title, height or min(900, max(260, 16 * len(row_labels) + 120)))


def profile_figure(values, *, title: str | None = None, value_name: str = "attention",
                   marks: Sequence[tuple[int, str]] = (), spans: Sequence[tuple[int, int]] = (),
                   height: int = 240, global_positions: Sequence[int] = ()) -> go.Figure:
    """One value per input token (N,) as a filled line, along the token positions (a QA input's question
    comes first, its values 0 where only the document counts); `marks` (position, label) are drawn as
    dashed lines, `spans` (start, stop) as shaded token ranges, `global_positions` as ▼ above."""
    y = _np(values)
    fig = go.Figure(go.Scatter(x=np.arange(len(y)), y=y, mode="lines", line=dict(width=1, color="#e6550d"),
                               fill="tozeroy",
                               hovertemplate="token %{x}<br>" + value_name + " %{y:.4g}<extra></extra>"))
    for a, b in spans:
        fig.add_vrect(x0=a, x1=b, fillcolor="rgba(35,139,69,0.25)", line_width=0)
    for pos, label in marks:
        fig.add_vline(x=pos, line=dict(color="#444", dash="dot", width=1), annotation_text=label,
                      annotation_position="top")
    mark_global_columns(fig, global_positions)
    fig.update_xaxes(title_text="token position", range=[0, max(1, len(y) - 1)])
    fig.update_yaxes(title_text=value_name, rangemode="tozero")
    return _layout(fig, title, height, rows_down=False, top=None if title else (26 if marks else 10),
                   showlegend=False)


# ---------------------------------------------------------------------------------------------
# the document as text, coloured by attention
# ---------------------------------------------------------------------------------------------

def attention_html(text: str, spans: Sequence[tuple[int, int] | None], weights, *,
                   rgb: tuple[int, int, int] = ATTENTION_RGB, focus: Sequence[int] = (),
                   outline: Sequence[tuple[int, int]] = (), top: float | None = None, min_alpha: float = 0.03,
                   levels: int = 16, gamma: float = 1.0, max_height: int | None = None) -> str:
    """`text` as HTML with each token's characters shaded by its weight (alpha = weight / top).

    spans[i] is token i's (start, end) in `text`, or None for tokens not in it; weights (N,) are
    the values to show (attention from or to a token, cross-attention, ...). `top` is the value
    of full colour (default: the largest weight); `gamma` < 1 (alpha = (weight / top) ** gamma)
    brings out weak attention next to a few strong peaks. Shades come in `levels` steps, and neighbouring
    tokens of the same shade share one span (with the spaces between them), so a long document
    stays a small page and a highlighted passage reads as one. Tokens in `focus` are underlined;
    character ranges in `outline` (e.g. exact matches of an answer) are boxed. Every piece of
    text is HTML-escaped; hovering shows the tokens and their largest value.
    """
    w = _np(weights).reshape(-1)
    if len(spans) != len(w):
        raise ValueError(f"{len(spans)} spans but {len(w)} weights")
    top = float(top if top is not None else (w.max() if w.size else 0.0)) or 1.0
    focus = set(focus)
    cuts = sorted({p for a, b in outline for p in (a, b)})  # outline boundaries split tokens
    boxes = sorted(outline)

    def boxed(a: int) -> bool:
        return any(s <= a < e for s, e in boxes)

    # pieces of text: (start, end, style key, token or None); a style key of None is plain text
    pieces: list[tuple[int, int, tuple | None, int | None]] = []
    pos = 0
    for start, end, i in sorted((s[0], s[1], i) for i, s in enumerate(spans) if s is not None and s[1] > s[0]):
        start = max(start, pos)  # overlapping offsets (rare): skip the overlap
        if start >= end:
            continue
        if start > pos:
            pieces.append((pos, start, None, None))
        alpha = min(1.0, max(0.0, float(w[i]) / top)) ** gamma
        level = round(alpha * levels) if alpha >= min_alpha else 0
        for a, b in zip([start] + [c for c in cuts if start < c < end], [c for c in cuts if start < c < end] + [end]):
            key = (level, i in focus, boxed(a))
            pieces.append((a, b, key if key != (0, False, False) else None, i))
        pos = end
    if pos < len(text):
        pieces.append((pos, len(text), None, None))

    # runs: neighbouring shaded pieces of one style, across whitespace-only gaps, become one span
    out: list[str] = []
    run: list = []  # [start, end, key, first token, last token, largest weight]

    def close() -> None:
        if not run:
            return
        a, b, (level, focused, box), t0, t1, wmax = run
        style = f"background:rgba({rgb[0]},{rgb[1]},{rgb[2]},{0.75 * level / levels:.3f});" if level else ""
        if focused:
            style += "border-bottom:3px solid #1f77b4;font-weight:600;"
        if box:
            style += f"outline:2px solid rgb{MATCH_RGB};"
        tokens = token_range(t0, t1)
        out.append(f'<span style="{style}" title="{tokens}: {decimal(wmax)}">{escape(text[a:b])}</span>')
        run.clear()

    k = 0
    while k < len(pieces):
        a, b, key, i = pieces[k]
        if key is None:
            gap_joins = (run and i is None and not text[a:b].strip() and k + 1 < len(pieces)
                         and pieces[k + 1][2] == run[2] and not run[2][1])
            if gap_joins:
                run[1] = b
            else:
                close()
                out.append(escape(text[a:b]))
        elif run and run[2] == key and run[1] == a and not key[1]:
            run[1], run[4], run[5] = b, i, max(run[5], float(w[i]))
        else:
            close()
            run.extend([a, b, key, i, i, float(w[i])])
        k += 1
    close()
    scroll = f"max-height:{max_height}px;overflow-y:auto;" if max_height else ""
    return (f'<div style="white-space:pre-wrap;line-height:1.6;font-size:0.92rem;{scroll}">'
            + "".join(out) + "</div>")


def legend_html(label: str, top: float, rgb: tuple[int, int, int] = ATTENTION_RGB, note: str = "") -> str:
    """A small colour bar: from no shade to full colour at `top`, with an optional note after it."""
    r, g, b = rgb
    return (f'<div style="font-size:0.8rem;display:flex;align-items:center;gap:6px;flex-wrap:wrap">'
            f'{escape(label)}: 0<span style="display:inline-block;width:120px;height:10px;'
            f'background:linear-gradient(to right,rgba({r},{g},{b},0),rgba({r},{g},{b},0.75))"></span>'
            f'{decimal(top)}<span style="opacity:0.7">{escape(note)}</span></div>')


# ---------------------------------------------------------------------------------------------
# comparing settings (the lab)
# ---------------------------------------------------------------------------------------------

SETTING_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]  # one per setting, in order


def bars_figure(df, columns: dict[str, str], title: str, y_title: str, *, x: str = "setting",
                stacked: bool = False, height: int = 300) -> go.Figure:
    """Grouped (or stacked) bars of the table's `columns` {column: legend name} for each row's `x`
    label; columns missing or all empty are left out. The bars lie horizontal, one row per label, so
    the labels read in full beside them (upright under four bars in a third of the page they were
    slanted and cut: "positi…"); `y_title` names the values' axis."""
    fig = go.Figure()
    for col, name in columns.items():
        if col in df and df[col].notna().any():
            fig.add_trace(go.Bar(y=df[x].map(escape), x=df[col], name=name, orientation="h",
                                 hovertemplate="%{y}<br>" + name + " %{x:.3f}<extra></extra>"))
    return _layout(fig, title, height, rows_down=True, legend_y=-0.33, barmode="stack" if stacked else "group",
                   xaxis_title=y_title, yaxis_automargin=True)


# the QA page draws answerability_figure above decline_figure: the same left margin (labels cut to fit it)
# puts both x = 0 at the same place, so a reader compares the bars (automargin would size each to its labels)
# the labels in two lines of DECISION_LABEL_LINE characters: a margin of 270 px for one line left a 400 px screen's
# figure (about 345 px) 60 px of bars, their values cut at its edge
DECISION_LABEL_CHARS = 40
DECISION_LABEL_LINE = 21
DECISION_LABEL_PX = 150
DECISION_TITLE_CHARS = 30  # an x-axis title's line (centred on the bars, about 190 px on a phone): 79 characters ran off


def decline_figure(span_text: str, span_score: float, decline_score: float, threshold: float | None, label: str,
                   declined: bool, *, percent: Callable[[float], str] | None = None) -> go.Figure:
    """The decline decision of a kept answer (ledviz.answering): the scores of the best span and of
    the decline answer (`label` says which score: answering.SCORE_NAMES), and the bar the decline
    had to clear: the span's score plus the margin (`threshold`; None where the margin did not
    decide, an answerability head did: no bar is drawn). `percent` (answering.percent), where each
    score is one token's log-probability: the bars are the probabilities themselves on a 0-1 axis
    (a longer bar is the likelier answer, as in answerability_figure; negative log-probabilities
    drew the likelier answer as the shorter bar), each with its log-probability."""
    if percent and threshold is not None:
        raise ValueError("decline_figure draws a margin's bar on log-probabilities: give threshold or percent, not both")
    names = [f"best span: “{span_text}”", "decline: “not in the document”"]
    short = [wrap_title(escape(n if len(n) <= DECISION_LABEL_CHARS else n[:DECISION_LABEL_CHARS - 3] + "…”"),
                        DECISION_LABEL_LINE) for n in names]
    chosen = [not declined, declined]
    scores = (span_score, decline_score)
    if percent:
        x = [math.exp(v) for v in scores]
        text = [f"{percent(p)} (log-probability {v:.2f})" for p, v in zip(x, scores)]
        title = "the model's probability of each answer at the first token where the two differ"
    else:
        x, text, title = list(scores), [f"{v:.2f}" for v in scores], label
    fig = go.Figure(go.Bar(
        y=short, x=x, orientation="h",
        marker_color=["#2ca02c" if c else "#bbbbbb" for c in chosen],
        text=[t + (" (chosen)" if c else "") for t, c in zip(text, chosen)],
        # beside a short bar, not inside (see answerability_figure)
        textposition=["inside" if percent and v >= 0.5 else "outside" if percent else "auto" for v in x],
        cliponaxis=False, hovertemplate="%{y}<br>" + title + " %{x:.3f}<extra></extra>"))
    if percent:
        fig.update_xaxes(range=[0, 1])
    if threshold is not None:
        bar = span_score + threshold
        # every score (answering.SCORES) is a log-probability, at most 0: a bar above 0 no decline can clear
        reach = ": out of reach, a log-probability is at most 0" if bar > 0 else ""
        fig.add_vline(x=bar, line_dash="dash", line_color=GLOBAL_MARK,
                      annotation_text=f"to decline, beat {bar:.2f} (span {threshold:+g}){reach}",
                      annotation_position="top", annotation_xanchor="right" if reach else "center")
    return _decision_layout(fig, 170, title)


def _decision_layout(fig: go.Figure, height: int, x_title: str) -> go.Figure:
    fig.update_yaxes(automargin=False)
    x_title = wrap_title(x_title, DECISION_TITLE_CHARS)
    lines = x_title.count("<br>")  # each further line of the title: 15 px more below the axis
    fig = _layout(fig, None, height + 15 * lines, rows_down=True, top=30, xaxis_title=x_title)
    return fig.update_layout(margin=dict(l=DECISION_LABEL_PX, b=45 + 15 * lines))


def answerability_figure(probability: float, threshold: float, declined: bool) -> go.Figure:
    """The answerability head's verdict on a kept answer (ledviz.answerability): its probability
    that the document answers the question, on a 0-1 axis, and the threshold below which the
    answer declines; in decline_figure's style."""
    text = f"answerable: {probability:.2f}" + (" (declined)" if declined else " (answered)")
    inside = probability >= 0.5
    fig = go.Figure(go.Bar(
        y=["answerable"], x=[probability], orientation="h",
        marker_color=["#bbbbbb" if declined else "#2ca02c"], text=[text],
        # a short bar's text goes beside it, not inside ("auto" hides the text of a bar too short to hold it, a
        # probability near 0), and past the threshold's line where the bar ends before it: the line crossed it
        textposition="inside" if inside else "outside" if probability >= threshold else "none", cliponaxis=False,
        hovertemplate="P(answerable) %{x:.3f}<extra></extra>"))
    fig.add_vline(x=threshold, line_dash="dash", line_color=GLOBAL_MARK,
                  annotation_text=f"declines below {threshold:.2f}", annotation_position="top")
    if not inside and probability < threshold:
        fig.add_annotation(x=threshold, y=0, text=text, showarrow=False, xanchor="left", xshift=6,
                           font=dict(color="#444"))
    fig.update_xaxes(range=[0, 1])
    return _decision_layout(fig, 135, "the answerability head's probability that the document answers the question")


def layer_distance_figure(table, labels: Sequence[str], reference: int) -> go.Figure:
    """Per layer (the table's index), each setting's attention distance to the reference setting
    (the table's columns are the settings' labels; the reference's own column is not drawn)."""
    fig = go.Figure()
    for n, label in enumerate(labels):
        if n == reference:
            continue
        fig.add_trace(go.Scatter(x=table.index, y=table[label], name=escape(label), mode="lines+markers",
                                 line=dict(color=SETTING_COLORS[n % len(SETTING_COLORS)]),
                                 hovertemplate="layer %{x}<br>" + escape(label) + ": %{y:.3f}<extra></extra>"))
    fig.update_xaxes(title="encoder layer", tickmode="array", tickvals=list(table.index))
    fig.update_yaxes(title="mean total variation", rangemode="tozero")
    return _layout(fig, f"Attention distance to “{escape(labels[reference])}”, per layer", 320, rows_down=False,
                   legend_y=-0.25)


def binned_map_figure(values, edges: Sequence[int], title: str, *, diverging: bool = False,
                      zmax: float | None = None, global_positions: Sequence[int] = ()) -> go.Figure:
    """A binned (K, K) map with bins starting at edges[:-1]: the mean attention a query of a row's bin
    pays to a key of a column's bin, or (`diverging`) a difference of two such maps, coloured
    symmetrically around 0 up to ±zmax; `global_positions` are marked on its edges."""
    z = _np(values)
    zmax = zmax if zmax is not None else max(float(np.abs(z).max()) if z.size else 0.0, 1e-9)
    starts = np.asarray(edges[:-1])
    fig = go.Figure(go.Heatmap(
        z=z, x=starts, y=starts, colorscale="RdBu_r" if diverging else "Viridis",
        zmin=-zmax if diverging else 0, zmax=zmax, zmid=0 if diverging else None,
        hovertemplate="queries %{y}…<br>keys %{x}…<br>%{z:.4f}<extra></extra>",
        colorbar=dict(thickness=10, title=dict(text="difference" if diverging else "mean attention", side="right")),
    ))
    mark_global_tokens(fig, global_positions)
    fig.update_xaxes(title_text="key token", range=[0, edges[-1]], constrain="domain")
    fig.update_yaxes(title_text="query token", range=[edges[-1], 0], scaleanchor="x", constrain="domain")
    return _layout(fig, escape(title), 420, rows_down=False, title_size=13)


def token_distance_figure(distance, marks: Sequence[tuple[Sequence[int], str, str]] = ()) -> go.Figure:
    """The distance between two settings' attention rows per token (N,), with global tokens marked:
    `marks` is (positions, colour, name) per setting; sets of more than 400 positions are not drawn."""
    tv = _np(distance)
    fig = go.Figure(go.Scatter(x=np.arange(len(tv)), y=tv, mode="lines", fill="tozeroy", line=dict(width=1),
                               hovertemplate="token %{x}<br>distance %{y:.3f}<extra></extra>", name="distance"))
    top = float(tv.max()) if tv.size else 0.0
    for positions, color, name in marks:
        if 0 < len(positions) <= 400:
            fig.add_trace(go.Scatter(x=list(positions), y=[(top or 1.0) * 1.05] * len(positions), mode="markers",
                                     marker=dict(symbol="triangle-down", size=7, color=color), name=escape(name),
                                     hovertemplate="global token %{x}<extra></extra>"))
    fig.update_xaxes(title="token")
    fig.update_yaxes(title="total variation", rangemode="tozero")
    return _layout(fig, "Distance per token (A vs B)", 240, rows_down=False, title_size=13, legend_y=-0.35)


# ---------------------------------------------------------------------------------------------
# how LED attention works: the raw output beside the unfolded map, and what the band costs
# ---------------------------------------------------------------------------------------------

EXPLAIN_SUBPLOT_TITLES = {  # short enough for narrow subplots
    "local": "raw: encoder_attentions<br>row = query, column = slot",
    "global": "raw: global_attentions<br>row = key",
    "absolute": "unfolded N × N<br>row = query, column = key",
}
EXPLAIN_HIGHLIGHT = {"picked": "#d62728", "partner": "#ff7f0e"}
EXPLAIN_MIN_SHARE = 0.2  # the least share of the figure's width a subplot gets
EXPLAIN_STACK_GAP = 150  # px between two stacked maps


def _one_map(ex) -> int:
    """The height of one explain map with its title and labels, in px."""
    return max(460, 15 * ex.n + 190)


def _nan_to_none(t) -> list[list[float | None]]:
    return [[None if v != v else v for v in row] for row in t.tolist()]


def explain_figure(ex, focus: tuple[str, int, int] | None = None,
                   stacked: bool = False) -> tuple[go.Figure, dict[int, str]]:
    """An explain.ExplainExample as one figure: raw local | raw global (when it has global tokens) |
    unfolded N × N, sharing the token rows, or with `stacked` one above the other, each the figure's
    full width and with its own token labels (for a narrow screen, where side by side the titles
    run into each other and the column labels cannot be read); returns it and {curve number: part}.

    Plotly in Streamlit cannot link hover across charts, so the views are subplots of one figure.
    Each carries an invisible square marker on every cell: its hover text names the cell and its
    partner in the other view, and a click selects it (heatmap cells do not report clicks
    reliably). `focus` (part, row, column) and its partner are framed.
    """
    from .explain import GLOBAL, LOCAL

    parts = [LOCAL] + ([GLOBAL] if ex.x else []) + ["absolute"]
    data = {LOCAL: ex.local_display(), GLOBAL: ex.global_display(), "absolute": ex.dense_display()}
    marked = set(ex.global_positions)
    tokens = [_global_label(escape(t)) if i in marked else escape(t) for i, t in enumerate(ex.token_labels())]
    local_cols = [_global_label(escape(c)) if c.startswith("g:") else escape(c) for c in ex.local_column_labels()]
    global_cols = [_global_label(escape(c)) for c in ex.global_column_labels()]
    xlabels = {LOCAL: local_cols, GLOBAL: global_cols, "absolute": tokens}
    titles = {LOCAL: EXPLAIN_SUBPLOT_TITLES["local"], GLOBAL: EXPLAIN_SUBPLOT_TITLES["global"],
              "absolute": EXPLAIN_SUBPLOT_TITLES["absolute"]}
    # columns in proportion to their cells, but each at least EXPLAIN_MIN_SHARE of the width, so a
    # narrow subplot's two-line title does not run into its neighbour's
    cells = [len(xlabels[p]) for p in parts]
    widths = [max(c, EXPLAIN_MIN_SHARE * sum(cells) / (1 - EXPLAIN_MIN_SHARE * (len(parts) - 1))) for c in cells]
    # rows are token positions in every subplot: one shared y axis, labelled once on the left
    if stacked:
        # between two maps: the upper one's column labels and axis title, the lower one's two-line title
        fig = make_subplots(rows=len(parts), cols=1, vertical_spacing=EXPLAIN_STACK_GAP / (_one_map(ex) * len(parts)),
                            subplot_titles=[titles[p] for p in parts])
    else:
        fig = make_subplots(rows=1, cols=len(parts), column_widths=widths, horizontal_spacing=0.03,
                            shared_yaxes=True, subplot_titles=[titles[p] for p in parts])
    at = (lambda k: dict(row=k, col=1)) if stacked else (lambda k: dict(row=1, col=k))
    zmax = max(float(ex.dense.max()), 1e-6)
    curves: dict[int, str] = {}
    for k, part in enumerate(parts, start=1):
        z = data[part]
        rows, cols = z.shape
        fig.add_trace(go.Heatmap(z=_nan_to_none(z), x=list(range(cols)), y=list(range(rows)),
                                 coloraxis="coloraxis", hoverinfo="skip", xgap=1, ygap=1), **at(k))
        xs, ys, text = [], [], []
        for r in range(rows):
            for c in range(cols):
                xs.append(c)
                ys.append(r)
                text.append(escape(ex.describe(part, r, c)))
        curves[len(fig.data)] = part
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", text=text, hovertemplate="%{text}<extra></extra>",
                                 marker=dict(symbol="square", size=9, color="rgba(0,0,0,0)"),
                                 showlegend=False), **at(k))
        fig.update_xaxes(tickmode="array", tickvals=list(range(cols)), ticktext=xlabels[part],
                         tickangle=-90 if part == "absolute" else -60, tickfont=dict(size=9),
                         range=[-0.5, cols - 0.5], showgrid=False, zeroline=False, **at(k))
        fig.update_yaxes(tickmode="array", tickvals=list(range(rows)), ticktext=tokens, autorange="reversed",
                         tickfont=dict(size=9), showgrid=False, zeroline=False, **at(k))
    fig.update_xaxes(title_text="key offset (global columns first)", **at(1))
    fig.update_xaxes(title_text="key", **at(len(parts)))
    if focus:
        cells = [(focus, EXPLAIN_HIGHLIGHT["picked"])]
        other = ex.partner(*focus)
        if other is not None:
            cells.append((other, EXPLAIN_HIGHLIGHT["partner"]))
        for (part, r, c), color in cells:
            if part in parts:
                fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5,
                              line=dict(color=color, width=3), **at(parts.index(part) + 1))
    height = _one_map(ex) * len(parts) if stacked else _one_map(ex)
    # stacked (narrow), the colour bar lies under the maps rather than taking a column of their width
    bar = dict(title="p", thickness=12) if not stacked else \
        dict(title="p", thickness=12, orientation="h", len=0.8, y=-115 / height, yanchor="top")
    _layout(fig, None, height, rows_down=False, top=40,
            coloraxis=dict(colorscale="Blues", cmin=0, cmax=zmax, colorbar=bar),
            plot_bgcolor="#e8e8e8", hovermode="closest", clickmode="event+select")
    if stacked:
        fig.update_layout(margin_b=130)
    fig.update_annotations(font_size=12)
    return fig, curves


def cost_figures(table, window: int, heads: int, layers: int, dtype: str) -> tuple[go.Figure, go.Figure]:
    """From explain.cost_table: scored pairs per head, and the probability memory of the whole
    encoder, against the number of tokens N (log-log), LED beside full attention."""
    pairs = go.Figure()
    pairs.add_trace(go.Scatter(x=table.n, y=table.led_pairs, name="LED: N(2w+1) + 2xN", mode="lines"))
    pairs.add_trace(go.Scatter(x=table.n, y=table.full_pairs, name="full attention: N²", mode="lines",
                               line=dict(dash="dash")))
    crossover = 2 * window + 1  # below it the band is wider than the document
    if table.n.min() < crossover < table.n.max():
        # a series of the legend, named there: the vertical line's own annotation was drawn off the top of the
        # plot, and the legend named the two curves only, so the dotted line read as nothing
        top = max(float(table.full_pairs.max()), float(table.led_pairs.max()))
        bottom = min(float(table.full_pairs.min()), float(table.led_pairs.min()))
        name = wrap_title(f"crossover N = 2w + 1 = {crossover:,} (below it the window is wider than the text)", 34)
        pairs.add_trace(go.Scatter(x=[crossover, crossover], y=[bottom, top], mode="lines", name=name,
                                   line=dict(color="grey", dash="dot"), hovertemplate="N = %{x:,}<extra></extra>"))
    pairs.update_xaxes(title="tokens N", type="log")
    pairs.update_yaxes(title="pairs", type="log")
    _layout(pairs, f"scored pairs per head<br>window w = {window:,} on each side", 360, rows_down=False,
            title_size=None, legend_y=-0.25, top=55)  # two lines, as the memory figure's title beside it
    memory = go.Figure()
    memory.add_trace(go.Scatter(x=table.n, y=table.led_mb, name="LED band + global", mode="lines"))
    memory.add_trace(go.Scatter(x=table.n, y=table.full_mb, name="full N × N", mode="lines", line=dict(dash="dash")))
    memory.update_xaxes(title="tokens N", type="log")
    memory.update_yaxes(title="MB", type="log")
    # two lines: in one the title ran past a 400 px screen's figure and was cut ("… 6 layers, floa")
    _layout(memory, f"attention probabilities kept<br>{heads} heads × {layers} layers, {dtype}", 360,
            rows_down=False, title_size=None, legend_y=-0.25, top=55)
    return pairs, memory


# ---------------------------------------------------------------------------------------------
# the model: parameters, windows, memory
# ---------------------------------------------------------------------------------------------

def parameters_figure(per_layer) -> go.Figure:
    """Parameters per layer (rows of `per_layer`, explain.parameters_per_layer), stacked by component
    (its columns)."""
    fig = go.Figure([go.Bar(x=per_layer.index, y=per_layer[c], name=escape(c),
                            hovertemplate="%{x}<br>" + escape(c) + " %{y:,}<extra></extra>")
                     for c in per_layer.columns])
    return _layout(fig, "Parameters per layer", 360, rows_down=False, legend_y=-0.2, barmode="stack",
                   yaxis_title="parameters")


def windows_figure(windows: Sequence[int]) -> go.Figure:
    """The attention window (2w) of each encoder layer."""
    fig = go.Figure(go.Bar(x=[f"layer {i}" for i in range(len(windows))], y=list(windows), text=list(windows),
                           textposition="outside", customdata=[w // 2 for w in windows],
                           hovertemplate="%{x}<br>attention_window %{y} (w = %{customdata} each side)<extra></extra>"))
    fig.update_yaxes(title="attention_window (2w)", rangemode="tozero")
    return _layout(fig, "Attention window per encoder layer", 280, rows_down=False)


def attention_memory_figure(table) -> go.Figure:
    """Attention probabilities per encoder layer (all heads) in MB as float32 and float16, from
    explain.attention_memory."""
    fig = go.Figure([go.Bar(x=table.layer, y=table.float32_mb, name="float32"),
                     go.Bar(x=table.layer, y=table.float16_mb, name="float16")])
    fig.update_xaxes(title="encoder layer", tickmode="array", tickvals=list(table.layer))
    return _layout(fig, "Probabilities per layer (all heads)", 280, rows_down=False, legend_y=-0.3, barmode="group",
                   yaxis_title="MB")


# ---------------------------------------------------------------------------------------------
# passages and documents as HTML
# ---------------------------------------------------------------------------------------------

def passages_html(passages: Sequence[tuple[tuple[int, int], float, str]], title: str, max_chars: int = 400) -> str:
    """A numbered list of passages (span, share, text), each with its share of the attention."""
    items = "".join(
        # a share under half a percent is "<1%", not "0%" (a long document spreads attention over many passages)
        f'<li><b>{"&lt;1%" if 0 < mass < 0.005 else f"{mass:.0%}"}</b> · '
        f'<span style="background:rgba({ATTENTION_RGB[0]},{ATTENTION_RGB[1]},'
        f'{ATTENTION_RGB[2]},0.22)">'
        f'{escape(text if len(text) <= max_chars else text[:max_chars - 1] + "…")}</span></li>'
        for _, mass, text in passages)
    return f'<div style="font-size:0.9rem">{escape(title)}:<ol style="margin:4px 0">{items}</ol></div>'


UNSUPPORTED_RGB = (214, 39, 40)  # words of an output that the document does not contain


def faithfulness_html(text: str, marks) -> str:
    """An output (summary, answer) with its words and numbers that do not occur in the document
    (provenance.unsupported_words: items with start, end, kind) marked: red wavy underline and a tint,
    with a hover title."""
    r, g, b = UNSUPPORTED_RGB
    out, pos = [], 0
    for m in sorted(marks, key=lambda m: m.start):
        if m.start < pos:
            continue
        out.append(escape(text[pos:m.start]))
        out.append(f'<span style="text-decoration:underline wavy rgb({r},{g},{b});background:rgba({r},{g},{b},0.12)" '
                   f'title="this {m.kind} does not occur in the document">{escape(text[m.start:m.end])}</span>')
        pos = m.end
    out.append(escape(text[pos:]))
    return f'<div style="font-size:1rem;line-height:1.6;white-space:pre-wrap">{"".join(out)}</div>'


def text_box_html(text: str, max_height: int = 300) -> str:
    """Plain text in a scrolling box, line breaks kept."""
    return (f'<div style="white-space:pre-wrap;max-height:{max_height}px;overflow-y:auto;font-size:0.9rem">'
            f"{escape(text)}</div>")


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------

IMAGE_FORMATS = {"png": "image/png", "svg": "image/svg+xml"}


def _browser_path() -> str | None:
    """The Chrome/Chromium kaleido will drive (BROWSER_PATH, read by kaleido's choreographer, wins)."""
    from .localserver import browser_path

    return browser_path()


def image_export_problem() -> str | None:
    """Why figures cannot be written as PNG/SVG here (None: they can, as far as can be told without
    drawing one; `ImageExport` draws one to be sure)."""
    if importlib.util.find_spec("kaleido") is None:
        return "PNG and SVG files need the kaleido package: pip install -r requirements-export.txt"
    if _browser_path() is None:
        return ("PNG and SVG files need Chrome or Chromium (kaleido draws with it): install chromium, or set "
                "BROWSER_PATH to a Chrome binary")
    return None


EXPORT_TEMPLATE = "plotly_white"  # what a figure written to a file is drawn with (close to the app's light theme)


def exported_figure(fig: go.Figure) -> go.Figure:
    """A copy of the figure as it is written to a file (PNG, SVG, HTML): drawn with `EXPORT_TEMPLATE`,
    whatever template the figure was built with.

    Why: importing Streamlit makes its "streamlit" template plotly's default, so every figure built in
    the app carries it. That template holds only placeholder colours ("#000001"…) that Streamlit's
    browser code swaps for its theme's, together with the theme's axis settings; a file drawn outside
    the app got neither: no automargin, so with our tight margins the x tick labels fell off the bottom
    of the whole-document map and the axis title sat where they belong. A known template draws every
    file alike, in the app or not; what the figure sets itself (margins, axes, colours) still wins."""
    out = go.Figure(fig)
    out.update_layout(template=EXPORT_TEMPLATE)
    return out


def figure_image(fig: go.Figure, fmt: str = "png", scale: float = 2.0) -> bytes:
    """The figure (`exported_figure`) as PNG or SVG bytes, drawn by kaleido (>= 1) in a headless Chrome/Chromium with
    the plotly.js that ships with plotly (nothing is fetched from the network; no MathJax). The
    browser's profile goes into the process's export folder (`_profiles_folder`), which is
    cleaned up at exit even where a browser is still running then."""
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"format must be one of {tuple(IMAGE_FORMATS)}, got {fmt!r}")
    problem = image_export_problem()
    if problem is not None:
        raise ImportError(problem)
    import plotly
    import kaleido

    browser = _browser_path()
    if browser and not os.environ.get("BROWSER_PATH"):
        os.environ["BROWSER_PATH"] = browser  # choreographer finds the browser through it
    plotlyjs = os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")
    return kaleido.calc_fig_sync(exported_figure(fig), opts=dict(format=fmt, scale=scale),
                                 kopts=dict(plotlyjs=plotlyjs, mathjax=False, tmp_dir=_profiles_folder()))


_profiles: str | None = None  # this process's folder for the export browsers' profiles (_profiles_folder)
_profiles_lock = threading.Lock()


def _profiles_folder() -> str:
    """This process's folder for the profiles of the browsers kaleido starts, made once, and removed at
    exit by `_remove_profiles`.

    Why: kaleido's browser library keeps each profile in a tempfile.TemporaryDirectory and removes it when
    the browser closes. A process that exits while a browser runs (the export check starts one when the
    app opens: a test or a server stopped within seconds) leaves the removal to TemporaryDirectory's
    own clean-up at exit, which raced the browser still writing into the profile and printed
    "OSError: [Errno 39] Directory not empty" with a traceback. `_remove_profiles` runs before that
    clean-up (see there): it lets a running check end, stops any browser still using this folder, and
    removes the folder; TemporaryDirectory then finds nothing left to remove."""
    global _profiles
    with _profiles_lock:
        if _profiles is None or not os.path.isdir(_profiles):
            import atexit
            import tempfile
            import weakref

            _profiles = tempfile.mkdtemp(prefix="ledviz-export-")
            # atexit runs its callbacks last registered first, and weakref.finalize (TemporaryDirectory's
            # clean-up) registers its one callback when the first finalize is made: one made here, before
            # ours, has ours run first
            weakref.finalize(_remove_profiles, lambda: None)
            atexit.register(_remove_profiles, _profiles)
        return _profiles


def _browsers_using(folder: str) -> list[int]:
    """The ids of the processes whose command line names `folder` (Linux's /proc; none elsewhere)."""
    found = []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                with open(os.path.join(entry.path, "cmdline"), "rb") as f:
                    if folder.encode() in f.read():
                        found.append(int(entry.name))
            except OSError:  # gone meanwhile, or not ours to read
                pass
    return found


def _remove_profiles(folder: str, wait: float = 10.0) -> None:
    """At exit: let a running export check end (up to `wait` seconds: its browser then closes and removes
    its own profile); stop any browser still using `folder`, and give the check a moment to end once its
    browser is gone (it may only just be starting one: that one is stopped too); then remove the folder."""
    import shutil
    import signal

    check = ImageExport._shared
    thread = check.thread if check is not None else None
    if thread is not None:
        thread.join(wait)
    for _ in range(3):
        pids = _browsers_using(folder)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if thread is not None and thread.is_alive():
            thread.join(2.0)
        elif not pids:
            break
    for _ in range(20):  # a killed browser's last writes may still land for a moment
        shutil.rmtree(folder, ignore_errors=True)
        if not os.path.exists(folder):
            return
        time.sleep(0.05)


class ImageExport:
    """Whether PNG/SVG export works in this process, found out once by drawing a tiny figure in a
    background thread (starting a browser takes seconds): `status()` is 'checking', 'ready', or the
    reason it does not work. One per process (`shared()`)."""

    _shared: "ImageExport | None" = None
    _lock = threading.Lock()
    TIMEOUT = 90.0  # seconds the probe may take before export is declared not working

    def __init__(self) -> None:
        self.problem: str | None = image_export_problem()
        self.ready = False
        self.started = time.monotonic()
        self.thread: threading.Thread | None = None
        if self.problem is None:
            self.thread = threading.Thread(target=self._probe, name="ledviz-image-export-probe", daemon=True)
            self.thread.start()

    def _probe(self) -> None:
        try:
            data = figure_image(go.Figure(go.Bar(x=[1], y=[1])), "png", scale=1)
            if not data.startswith(b"\x89PNG"):
                raise RuntimeError("kaleido returned something other than a PNG")
            self.ready = True
        except Exception as err:  # noqa: BLE001 - the reason is shown instead of the buttons
            self.problem = f"PNG and SVG export does not work here ({type(err).__name__}: {err})"

    def status(self) -> str:
        if self.ready:
            return "ready"
        if self.problem is None and time.monotonic() - self.started > self.TIMEOUT:
            self.problem = (f"PNG and SVG export does not work here (the browser that draws them did not answer "
                            f"within {self.TIMEOUT:.0f} s)")
        return self.problem or "checking"

    @classmethod
    def shared(cls) -> "ImageExport":
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared


def figure_html(fig: go.Figure) -> str:
    """A self-contained HTML page of the figure (`exported_figure`; plotly.js inlined, so it opens offline)."""
    return exported_figure(fig).to_html(include_plotlyjs=True, full_html=True)
