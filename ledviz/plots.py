"""Plotly figures and HTML for the app's attention views. Library code: no Streamlit here.

Every builder takes numbers already computed by `ledviz.analysis` (numpy arrays or tensors)
and labels, and returns a `plotly.graph_objects.Figure` (or an HTML string for the document
coloured by attention). Matrices are drawn as in the paper figures: queries down the rows,
keys along the columns, token 0 at the top left.
"""

from __future__ import annotations

import html
import importlib.util
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

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


def _scaled(z: np.ndarray, scale: str) -> tuple[np.ndarray, float | None, str]:
    """The values to colour by, the top of the colour range, and the colour bar's title."""
    if scale == "log":
        return np.log10(np.maximum(z, _LOG_FLOOR)), None, "log10"
    if scale == "clipped":
        nonzero = z[z > 0]
        top = float(np.quantile(nonzero, 0.995)) if nonzero.size else 1.0
        return z, max(top, 1e-12), "clipped"
    if scale != "linear":
        raise ValueError(f"scale must be one of {tuple(SCALES)}, got {scale!r}")
    return z, None, ""


def _layout(fig: go.Figure, title: str | None, height: int, square: bool = False) -> go.Figure:
    """Common layout: title, height, tight margins, rows from the top."""
    fig.update_layout(title=dict(text=title, font=dict(size=14)) if title else None, height=height,
                      margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    fig.update_yaxes(autorange="reversed")
    if square:
        fig.update_yaxes(scaleanchor="x", scaleratio=1, constrain="domain")
        fig.update_xaxes(constrain="domain")
    return fig


# ---------------------------------------------------------------------------------------------
# maps
# ---------------------------------------------------------------------------------------------

def overview_figure(values, edges: Sequence[int], *, title: str | None = None, scale: str = "clipped",
                    value_name: str = "attention mass", zoom: tuple[tuple[int, int], tuple[int, int]] | None = None,
                    height: int = 560) -> go.Figure:
    """Binned map (K, K) of a whole document; edges (K + 1) are the bins' token boundaries.

    Each cell spans its bin's tokens, so the axes read in tokens. `zoom`
    ((row_start, row_stop), (col_start, col_stop)) outlines a token range.
    """
    z = _np(values)
    bounds = np.asarray(edges)  # K + 1 values: Plotly reads them as the cells' edges
    shown, zmax, bar = _scaled(z, scale)
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
    fig.update_xaxes(title_text="key token", range=[0, int(edges[-1])])
    fig.update_yaxes(title_text="query token", range=[int(edges[-1]), 0])
    _layout(fig, title, height, square=True)
    fig.update_yaxes(autorange=None)
    return fig


def token_heatmap_figure(values, row_labels: Sequence[str], col_labels: Sequence[str], *,
                         title: str | None = None, scale: str = "linear", height: int | None = None) -> go.Figure:
    """Token-level map (R, C) with one label per row and column (labels must be unique, e.g. '12 word')."""
    z = _np(values)
    shown, zmax, bar = _scaled(z, scale)
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
                x_title: str = "document token", value_name: str = "attention", scale: str = "clipped",
                height: int | None = None) -> go.Figure:
    """Some tokens (rows) against the whole document in bins (columns): cross-attention of output
    tokens, or where each global token looks. edges (K + 1) are the column bins' token boundaries."""
    z = _np(values)
    shown, zmax, bar = _scaled(z, scale)
    fig = go.Figure(go.Heatmap(
        z=shown, x=np.asarray(edges), y=list(row_labels), colorscale=COLORSCALE,
        zmin=0 if scale != "log" else None, zmax=zmax, customdata=z,
        hovertemplate="%{y}<br>tokens ≈ %{x:.0f}<br>" + value_name + " %{customdata:.4g}<extra></extra>",
        colorbar=dict(title=dict(text=bar, side="right"), thickness=12),
    ))
    fig.update_xaxes(title_text=x_title, range=[0, int(edges[-1])])
    fig.update_yaxes(type="category", tickfont=dict(size=10 if len(row_labels) <= 40 else 8))
    return _layout(fig, title, height or min(900, max(260, 16 * len(row_labels) + 120)))


def profile_figure(values, *, title: str | None = None, value_name: str = "attention",
                   marks: Sequence[tuple[int, str]] = (), spans: Sequence[tuple[int, int]] = (),
                   height: int = 240) -> go.Figure:
    """One value per document token (N,) as a filled line; `marks` (position, label) are drawn as
    dashed lines and `spans` (start, stop) as shaded token ranges."""
    y = _np(values)
    fig = go.Figure(go.Scatter(x=np.arange(len(y)), y=y, mode="lines", line=dict(width=1, color="#e6550d"),
                               fill="tozeroy", hovertemplate="token %{x}<br>" + value_name + " %{y:.4g}<extra></extra>"))
    for a, b in spans:
        fig.add_vrect(x0=a, x1=b, fillcolor="rgba(35,139,69,0.25)", line_width=0)
    for pos, label in marks:
        fig.add_vline(x=pos, line=dict(color="#444", dash="dot", width=1), annotation_text=label,
                      annotation_position="top")
    fig.update_xaxes(title_text="document token", range=[0, max(1, len(y) - 1)])
    fig.update_yaxes(title_text=value_name, rangemode="tozero")
    fig.update_layout(title=dict(text=title, font=dict(size=14)) if title else None, height=height,
                      margin=dict(l=10, r=10, t=40 if title else (26 if marks else 10), b=10), showlegend=False)
    return fig


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
        tokens = f"token {t0}" if t0 == t1 else f"tokens {t0}–{t1}"
        out.append(f'<span style="{style}" title="{tokens}: {wmax:.4g}">{html.escape(text[a:b])}</span>')
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
                out.append(html.escape(text[a:b]))
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
            f'{html.escape(label)}: 0<span style="display:inline-block;width:120px;height:10px;'
            f'background:linear-gradient(to right,rgba({r},{g},{b},0),rgba({r},{g},{b},0.75))"></span>'
            f'{top:.3g}<span style="opacity:0.7">{html.escape(note)}</span></div>')


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------

def png_export_available() -> bool:
    """Whether Plotly can write PNG files here (it needs the kaleido package)."""
    return importlib.util.find_spec("kaleido") is not None


def figure_html(fig: go.Figure) -> str:
    """A self-contained HTML page of the figure (plotly.js inlined, so it opens offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


def figure_png(fig: go.Figure, scale: float = 2.0) -> bytes:
    """The figure as PNG bytes (needs kaleido: see `png_export_available`)."""
    if not png_export_available():
        raise ImportError("PNG export needs the kaleido package: pip install kaleido")
    return fig.to_image(format="png", scale=scale)
