"""The numbers the app's attention views show, for a run and a `View` (which layers and heads, and
how they combine). Library code: no Streamlit and no caching here; the app caches these per run.

Every function takes a `pipeline.RunResult` (or what one holds) and returns arrays or tables for
`ledviz.plots`: the aggregated attention of a view, its binned overview and token-level zoom, one
token's row or column, the decoder's cross-attention, per-head and per-global-token statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from . import analysis
from .pipeline import RunResult
from .text import token_range
from .unfold import SparseAttention

STATS = {  # per-head statistics of analysis.head_stats, as the app names them
    "mean_distance": "mean distance (tokens)",
    "entropy": "entropy (nats)",
    "global_mass": "mass on global tokens",
    "self_mass": "mass on itself",
}


@dataclass(frozen=True)
class View:
    """What the attention views show: one encoder layer or all, all/one/some heads, mean or max."""

    layer: int | None = None  # None: every layer
    heads: tuple[int, ...] | None = None  # None: every head
    reduce: str = "mean"

    @property
    def layers(self) -> list[int] | None:
        return None if self.layer is None else [self.layer]

    @property
    def key(self) -> tuple:
        return (self.layer, self.heads, self.reduce)

    def clip(self, num_layers: int, num_heads: int) -> "View":
        """The same view for a model of another size (out-of-range choices fall back to all)."""
        layer = self.layer if self.layer is not None and self.layer < num_layers else None
        heads = tuple(h for h in self.heads if h < num_heads) if self.heads is not None else None
        return View(layer, heads or None, self.reduce)

    def fit(self, result: RunResult) -> "View":
        """The view clipped to a run's number of encoder layers and heads."""
        first = next(iter(result.layers.values()))
        v = self.clip(max(result.layers) + 1, first.num_heads)
        if v.layer is not None and v.layer not in result.layers:  # the run kept fewer layers: show those
            v = View(None, v.heads, v.reduce)
        return v

    def label(self) -> str:
        layer = "all layers" if self.layer is None else f"layer {self.layer}"
        if self.heads is None:
            heads = "all heads"
        elif len(self.heads) == 1:
            heads = f"head {self.heads[0]}"
        else:
            heads = "heads " + ", ".join(map(str, self.heads))
        return f"{layer}, {heads}" + (f" ({self.reduce})" if self.combines else "")

    @property
    def combines(self) -> bool:
        """Whether the view combines several heads or layers (with its mean or max), not one head of one layer."""
        return self.layer is None or self.heads is None or len(self.heads) > 1

    def max_mass_note(self, mass: float, n_tokens: int) -> str | None:
        """A line under a map of the max view: how much attention it shows per token. One head's row sums
        to 1, a max over several heads' rows to more (`mass`: the map's total, e.g. the sum of the binned
        overview): the colour bar, "attention mass", read as a share it is not. None for a mean or one head."""
        if self.reduce != "max" or not self.combines or n_tokens < 1:
            return None
        per_token = mass / n_tokens
        return (f"Max view: each cell is the largest value any one of the heads shown gives it, so a token's row holds "
                f"{per_token:.1f} of attention on average here, not 1 as one head's row does: read it for where some "
                "head looks strongly, not as a share (the mean view shows shares).")


def sorted_layers(result: RunResult) -> list[SparseAttention]:
    return [result.layers[k] for k in sorted(result.layers)]


def aggregated(result: RunResult, view: View) -> SparseAttention:
    """The one-head attention of the view (mean/max over its heads and layers)."""
    layers = sorted_layers(result)
    if view.layer is None and view.heads is None and len(layers) == 1 and layers[0].num_heads == 1:
        return layers[0]
    return analysis.aggregate(layers, layers=view.layers, heads=None if view.heads is None else list(view.heads),
                              reduce=view.reduce)


def overview_map(agg: SparseAttention, bins: int) -> tuple[np.ndarray, list[int]]:
    """(K, K) binned attention mass of the whole document, and the bins' token edges (K + 1)."""
    m = analysis.overview(agg, bins=bins, reduce="sum")[0]
    return m.numpy(), analysis.bin_edges(agg.seq_len, bins)


def zoom_map(agg: SparseAttention, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """Dense attention of queries rows[0]:rows[1] to keys cols[0]:cols[1]."""
    return analysis.zoom(agg, rows, cols)[0].numpy()


def zoom_title(rows: tuple[int, int], cols: tuple[int, int]) -> str:
    """The token map's title for queries rows[0]:rows[1] and keys cols[0]:cols[1] (stops excluded), in words:
    "Queries and keys: tokens 0–63", "Queries: token 5 → keys: tokens 0–63" ("Tokens 5–5 → 0–63" before)."""
    q, k = token_range(rows[0], rows[1] - 1), token_range(cols[0], cols[1] - 1)
    return f"Queries and keys: {q}" if tuple(rows) == tuple(cols) else f"Queries: {q} → keys: {k}"


def token_row(agg: SparseAttention, i: int, direction: str = "from") -> np.ndarray:
    """(N,) where token i looks (direction 'from': its row) or who looks at it ('to': its column)."""
    if direction not in ("from", "to"):
        raise ValueError(f"direction must be 'from' or 'to', got {direction!r}")
    vec = analysis.row_view(agg, i) if direction == "from" else analysis.col_view(agg, i)
    return vec[0].numpy()


def on_document(result: RunResult, weights) -> np.ndarray:
    """Per-token weights (N,) with the tokens outside the document text (question, special) set to 0."""
    w = np.asarray(weights, dtype=np.float32)
    return np.where(result.document.in_document(), w, np.float32(0.0))


def cross_map(result: RunResult, view: View) -> np.ndarray | None:
    """(T, N) cross-attention of the output onto the input for the view's layers and heads (all of
    them where the view's are out of the decoder's range); row t is the step that produced output
    token t + 1 (output_ids[0] is the decoder's start token). None without output."""
    if not result.cross_attentions:
        return None
    n_heads = result.cross_attentions[0].shape[0]
    v = view.clip(len(result.cross_attentions), n_heads)
    return analysis.cross_attention_map([c[None] for c in result.cross_attentions], layers=v.layers,
                                        heads=None if v.heads is None else list(v.heads), reduce=v.reduce).numpy()


def binned_rows(rows, n_tokens: int, bins: int) -> tuple[np.ndarray, list[int]]:
    """Rows (R, N) summed into at most `bins` column bins along the document, and the bins' edges."""
    bins = min(bins, n_tokens)
    m = analysis.bin_matrix(torch.as_tensor(rows).float(), (len(rows), bins), reduce="sum").numpy()
    return m, analysis.bin_edges(n_tokens, bins)


def stat_grid(table: pd.DataFrame, stat: str) -> pd.DataFrame:
    """(layer x head) grid of one per-head statistic (a STATS name) from analysis.stats_table,
    averaged over the table's batch rows."""
    if stat not in STATS:
        raise ValueError(f"stat must be one of {tuple(STATS)}, got {stat!r}")
    return table.pivot_table(index="layer", columns="head", values=stat, aggfunc="mean")


def global_stats(result: RunResult, view: View,
                 layer_stats: Callable[[int], pd.DataFrame] | None = None) -> pd.DataFrame:
    """Per global token, its statistics in the view: mean (or, for a 'max' view, max) over the view's
    heads and layers. `layer_stats(layer)` gives one layer's analysis.global_token_stats (the app
    passes a cached one)."""
    layer_stats = layer_stats or (lambda l: analysis.global_token_stats([result.layers[l]]))
    layers = sorted(result.layers) if view.layer is None else [view.layer]
    df = pd.concat([layer_stats(l) for l in layers], ignore_index=True)
    if view.heads is not None:
        df = df[df["head"].isin(view.heads)]
    agg = "max" if view.reduce == "max" else "mean"
    return df.drop(columns=["layer", "head", "slot"]).groupby("position", as_index=False).agg(agg)


def global_rows(agg: SparseAttention, positions: Sequence[int]) -> torch.Tensor:
    """(G, N) the attention rows of the given global tokens (positions) in the aggregated view."""
    used = agg.global_used[0].nonzero(as_tuple=True)[0]
    slot_of = {int(agg.global_positions[0, s]): int(s) for s in used}
    missing = [p for p in positions if p not in slot_of]
    if missing:
        raise ValueError(f"positions {missing} are not global tokens of this run")
    return agg.global_rows[0, 0][[slot_of[p] for p in positions]].float()
