"""Views of LED encoder attention, computed from the sparse band + global form (never an N x N map).

Every view here reads a `SparseAttention` (one layer, see `ledviz.unfold`) or a sequence of them,
and gives what a person looks at: a binned overview, a dense zoom, one token's row or column,
aggregates over heads and layers, per-head and per-global-token statistics, cross-attention onto
the source, attention rollout, and word / sentence level maps from tokenizer offsets.
Cost is O(N x (2w + 1 + 2x)) per head; results are float32.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from . import fused
from .errors import InputError
from .sentences import sentence_spans  # noqa: F401 - ledviz.analysis.sentence_spans, the sentences of a text
from .unfold import SparseAttention

Tensor = torch.Tensor
REDUCES = ("sum", "mean", "max")
STAT_NAMES = ("mean_distance", "entropy", "global_mass", "self_mass")


def _check_reduce(reduce: str, allowed: Sequence[str] = REDUCES) -> None:
    """Raise InputError unless `reduce` is one of `allowed`."""
    if reduce not in allowed:
        raise InputError(f"reduce must be one of {tuple(allowed)}, got {reduce!r}")


def _as_layers(attn: SparseAttention | Sequence[SparseAttention]) -> list[SparseAttention]:
    """A single layer or a sequence of layers, as a list."""
    return [attn] if isinstance(attn, SparseAttention) else list(attn)


def _layer_id(sp: SparseAttention, position: int) -> int:
    """The layer index of `sp`: its own, else its position in the list."""
    return sp.layer if sp.layer is not None else position


# ---------------------------------------------------------------------------------------------
# index gymnastics
# ---------------------------------------------------------------------------------------------

def bin_size(seq_len: int, bins: int) -> int:
    """Tokens per bin when `seq_len` tokens go into at most `bins` bins."""
    if bins < 1:
        raise InputError(f"bins must be >= 1, got {bins}")
    return max(1, math.ceil(seq_len / bins))


def bin_edges(seq_len: int, bins: int) -> list[int]:
    """Token boundaries of the bins: bin k covers tokens [edges[k], edges[k + 1])."""
    s = bin_size(seq_len, bins)
    return list(range(0, seq_len, s)) + [seq_len]


def _bin_widths(seq_len: int, bins: int, device=None) -> Tensor:
    """(K,) float32 number of tokens in each bin."""
    edges = bin_edges(seq_len, bins)
    return torch.tensor([b - a for a, b in zip(edges[:-1], edges[1:])], dtype=torch.float32, device=device)


def _row_blocks(rows: Tensor, s: int) -> Tensor:
    """(N, ...) -> (K, s, ...): rows zero-padded to a multiple of s and grouped in blocks of s."""
    N = rows.shape[0]
    K = math.ceil(N / s)
    pad = [0, 0] * (rows.dim() - 1) + [0, K * s - N]
    return F.pad(rows, pad).reshape(K, s, *rows.shape[1:])


def _diagonal_buffer(N: int, W: int, s: int, device=None) -> Tensor:
    """Zeroed float32 (K*s, W + s - 1) work buffer for `_block_diagonals` of an (N, W) band."""
    return torch.zeros(math.ceil(N / s) * s, W + s - 1, dtype=torch.float32, device=device)


def _block_diagonals(band: Tensor, s: int, reduce: str = "sum", buffer: Tensor | None = None,
                     row_scale: Tensor | None = None) -> Tensor:
    """Band (N, W) -> (K, s + W - 1): entry [r, u] reduces (sum or max, float32) the band entries of the rows
    r*s .. r*s + s - 1 whose key is r*s + u - w, i.e. query block r laid out by key ("skew").

    Each row is padded with s - 1 zeros; row t of a block is then read shifted by t through a
    strided view (the out-of-band reads land on the zeros), so one copy does it all. `buffer`
    (from `_diagonal_buffer`) saves allocating that copy again for every head; `row_scale` (N,)
    multiplies each row on the way in.
    """
    N, W = band.shape
    K = math.ceil(N / s)
    width = W + s - 1
    padded = _diagonal_buffer(N, W, s, band.device) if buffer is None else buffer  # (K*s, W + s - 1)
    if row_scale is None:
        padded[:N, :W] = band  # one copy, converting to float32; the padding stays zero
    else:
        torch.mul(band, row_scale[:, None], out=padded[:N, :W])
    # view[r, u, t] = padded[r*s + t, u - t]
    view = padded.as_strided((K, width, s), (s * width, 1, width - 1))
    return view.amax(2) if reduce == "max" else view.sum(2)


def _band_vecmat(v: Tensor, band: Tensor, w: int, first_row: int = 0, seq_len: int | None = None,
                 block: int = 256, buffers: dict | None = None) -> Tensor:
    """Weights v (R,) of band rows first_row .. first_row + R - 1 (band (R, 2w+1)) -> (seq_len,):
    out[j] = sum_i v[i] * A[i, j] over the window entries. `buffers` keeps work buffers between calls."""
    R, W = band.shape
    N = R if seq_len is None else seq_len
    s = min(block, R)
    buffer = None
    if buffers is not None:
        if (R, W, s) not in buffers:
            buffers[(R, W, s)] = _diagonal_buffer(R, W, s, band.device)
        buffer = buffers[(R, W, s)]
    strips = _block_diagonals(band, s, buffer=buffer, row_scale=v)  # (K, s + W - 1): [r, u] -> key first_row + r*s + u - w
    K = strips.shape[0]
    idx = (torch.arange(K, device=v.device)[:, None] * s + torch.arange(s + W - 1, device=v.device)).reshape(-1)
    ext = torch.zeros(K * s + W - 1, dtype=v.dtype, device=v.device).index_add_(0, idx, strips.reshape(-1))
    k0 = first_row - w  # key of ext[0]
    a, b = max(0, k0), min(N, k0 + ext.shape[0])
    out = torch.zeros(N, dtype=v.dtype, device=v.device)
    out[a:b] = ext[a - k0: b - k0]
    return out


def _head_mean(t: Tensor, heads: Sequence[int]) -> Tensor:
    """t (1, H, R, C) -> (R, C) float32 mean over `heads` (a view when it is one float32 head)."""
    if len(heads) == 1:
        return t[0, heads[0]].float()
    out = torch.zeros(1, *t.shape[2:], dtype=torch.float32, device=t.device)
    _head_sum(t, heads, out)
    return out[0].div_(len(heads))


def _head_sum(t: Tensor, heads: Sequence[int], out: Tensor, reduce: str = "sum", chunk: int = 256) -> None:
    """out (..., R, C) float32 (+= or max=) t[:, h] (B, H, R, C) over `heads`, in row chunks that stay in cache
    (a sum: in one pass of the compiled kernel, fused.head_sum, where it is in use)."""
    if reduce != "max" and out.dim() == 3 and fused.head_sum(t, list(heads), out):
        return
    for r in range(0, t.shape[2], chunk):
        acc = out[..., r: r + chunk, :]
        for h in heads:
            part = t[:, h, r: r + chunk]
            if reduce == "max":
                acc.copy_(torch.maximum(acc, part.float()))
            else:
                acc.add_(part)


def _reduce(t: Tensor, dim: int, reduce: str) -> Tensor:
    """Sum (also for mean, divided later) or max along `dim`."""
    return t.amax(dim) if reduce == "max" else t.sum(dim)


def _combine(out: Tensor, dim: int, index: Tensor, values: Tensor, reduce: str) -> None:
    """out[..., index, ...] (+= or max=) values along `dim`, duplicates in `index` allowed."""
    if reduce == "max":
        shape = [1] * values.dim()
        shape[dim] = -1
        out.scatter_reduce_(dim, index.view(shape).expand_as(values), values, "amax")
    else:
        out.index_add_(dim, index, values)


# ---------------------------------------------------------------------------------------------
# overview, zoom, rows and columns
# ---------------------------------------------------------------------------------------------

def overview(attn: SparseAttention, bins: int = 512, reduce: str = "sum", batch: int = 0) -> Tensor:
    """(H, K, K) binned map of one batch element, K <= bins: block [r, c] reduces queries of bin r x keys of bin c.

    reduce: "sum" (attention mass), "mean" (sum / block area, the mean of the dense block, zeros
    included) or "max". Bins hold `bin_size(N, bins)` tokens; the last one may be shorter.
    """
    _check_reduce(reduce)
    H, N, W = attn.num_heads, attn.seq_len, attn.band.shape[-1]
    w, dev = attn.window, attn.band.device
    s = bin_size(N, bins)
    K = math.ceil(N / s)
    out = torch.zeros(H, K, K, dtype=torch.float32, device=dev)
    # band: each block of s rows laid out by key (column u is key r*s + u - w), reduced over the rows
    r = torch.arange(K, device=dev)[:, None]
    key = r * s + torch.arange(s + W - 1, device=dev)[None, :] - w  # (K, s + W - 1)
    # index into the (K*K) map; keys outside the sequence go to an extra slot K*K, dropped after
    flat = torch.where((key >= 0) & (key < N), r * K + key.clamp(0, N - 1) // s, K * K).reshape(-1)
    target = torch.zeros(K * K + 1, dtype=torch.float32, device=dev)
    buffer = _diagonal_buffer(N, W, s, dev)
    for h in range(H):
        strips = _block_diagonals(attn.band[batch, h], s, reduce, buffer)  # (K, s + W - 1)
        target.zero_()
        _combine(target, 0, flat, strips.reshape(-1), reduce)
        out[h] = target[: K * K].view(K, K)
    # global columns (non-global queries -> global keys) and rows (global queries -> all keys)
    used = attn.global_used[batch].nonzero(as_tuple=True)[0]
    if len(used):
        pos_bin = attn.global_positions[batch, used] // s  # (xb,)
        cols = attn.global_cols[batch][:, :, used].float().transpose(0, 1)  # (N, H, xb)
        cols = _reduce(_row_blocks(cols, s), 1, reduce).permute(1, 0, 2)  # (H, K, xb)
        _combine(out, 2, pos_bin, cols, reduce)
        rows = attn.global_rows[batch][:, used].float().permute(2, 0, 1)  # (N, H, xb)
        rows = _reduce(_row_blocks(rows, s), 1, reduce).permute(1, 2, 0)  # (H, xb, K)
        _combine(out, 1, pos_bin, rows, reduce)
    if reduce == "mean":
        sizes = _bin_widths(N, bins, dev)  # (K,)
        out /= sizes[:, None] * sizes[None, :]
    return out


def zoom(attn: SparseAttention, rows: tuple[int, int], cols: tuple[int, int], batch: int = 0,
         max_cells: int = 16_777_216) -> Tensor:
    """(H, b - a, d - c) dense block of queries [a, b) x keys [c, d) of one batch element."""
    (a, b), (c, d) = rows, cols
    N, w, dev = attn.seq_len, attn.window, attn.band.device
    if not (0 <= a <= b <= N and 0 <= c <= d <= N):
        raise InputError(f"zoom ranges {rows} x {cols} must lie within [0, {N}]")
    if (b - a) * (d - c) > max_cells:
        raise InputError(f"a zoom of {(b - a)} x {(d - c)} tokens is too large; zoom in further or use overview()")
    i = torch.arange(a, b, device=dev)[:, None]
    j = torch.arange(c, d, device=dev)[None, :]
    slot = j - i + w  # (R, C) window slot of key j for query i
    inside = (slot >= 0) & (slot <= 2 * w)
    out = attn.band[batch][:, i, slot.clamp(0, 2 * w)].float() * inside  # (H, R, C)
    for slot_c in attn.global_used[batch].nonzero(as_tuple=True)[0].tolist():
        p = int(attn.global_positions[batch, slot_c])
        if c <= p < d:
            out[:, :, p - c] += attn.global_cols[batch, :, a:b, slot_c].float()
        if a <= p < b:
            out[:, p - a, :] = attn.global_rows[batch, :, slot_c, c:d].float()
    return out


def row_view(attn: SparseAttention, i: int, batch: int = 0) -> Tensor:
    """(H, N): where token i looks (its attention over all keys)."""
    return attn.row(i)[batch]


def col_view(attn: SparseAttention, j: int, batch: int = 0) -> Tensor:
    """(H, N): who looks at token j (entry i = attention of query i to j)."""
    return attn.col(j)[batch]


# ---------------------------------------------------------------------------------------------
# aggregation over heads and layers
# ---------------------------------------------------------------------------------------------

def aggregate(
    attn: SparseAttention | Sequence[SparseAttention],
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    reduce: str = "mean",
) -> SparseAttention:
    """One-head SparseAttention (float32): the mean or max over the chosen heads of the chosen layers.

    Layers may have different windows: the result has the widest, narrower bands centred in it.
    All layers must come from the same run (same masks, hence the same global tokens).
    """
    _check_reduce(reduce, ("mean", "max"))
    items = [sp for n, sp in enumerate(_as_layers(attn)) if layers is None or _layer_id(sp, n) in layers]
    if not items:
        raise InputError(f"no layer to aggregate (asked for layers {layers})")
    first = items[0]
    for sp in items[1:]:
        if sp.band.shape[:3] != first.band.shape[:3] or not torch.equal(sp.global_positions, first.global_positions):
            raise InputError("aggregate() needs layers of one run: batch, length and global tokens differ")
    B, N, x = first.batch_size, first.seq_len, first.num_global
    wmax = max(sp.window for sp in items)
    dev = first.band.device
    band = torch.zeros(B, 1, N, 2 * wmax + 1, dtype=torch.float32, device=dev)
    cols = torch.zeros(B, 1, N, x, dtype=torch.float32, device=dev)
    rows = torch.zeros(B, 1, x, N, dtype=torch.float32, device=dev)
    count = 0
    for sp in items:
        hs = list(range(sp.num_heads)) if heads is None else list(heads)
        off = wmax - sp.window
        _head_sum(sp.band, hs, band[:, 0, :, off: off + 2 * sp.window + 1], reduce)
        _head_sum(sp.global_cols, hs, cols[:, 0], reduce)
        _head_sum(sp.global_rows, hs, rows[:, 0], reduce)
        count += len(hs)
    if reduce == "mean":
        for t in (band, cols, rows):
            t /= max(count, 1)
    layer = first.layer if len(items) == 1 else None
    return SparseAttention(band, cols, rows, first.global_positions, first.attention_mask, layer=layer)


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------

def _entropy(p: Tensor) -> Tensor:
    """-sum p log p over the last dim (0 log 0 = 0), in nats."""
    return -torch.special.xlogy(p, p).sum(-1)


# probabilities below this count as 0 in `_band_entropy` (their p log p is below 1e-28)
_ENTROPY_FLOOR = 1e-30


def _band_entropy(p: Tensor, work: Tensor | None = None) -> Tensor:
    """`_entropy` of float32 rows (..., W), about 3 times faster on long rows: p . log(max(p, 1e-30))
    (xlogy takes a slow path per element, and so does log at 0). `work`: a buffer of p's shape
    for the logarithms (a fresh one costs page faults on every call); it is overwritten."""
    logs = torch.clamp_min(p, _ENTROPY_FLOOR, out=work).log_()
    return -logs.mul_(p).sum(-1)


# head_stats reads the band in slices of about this many bytes (float32). With one thread, slices
# that stay in cache (3 times faster than whole heads). With several, every operation waits for all
# the threads, which on a busy machine costs far more than the cache saves (at 4,096 tokens, 2
# threads, load 2.5: 1 MB slices 4.6-7 s a layer against 0.56 s for whole heads, 0.065 s on 1
# thread): there a slice is a whole head.
STATS_SLICE_BYTES = 1 << 20
STATS_SLICE_BYTES_THREADED = 1 << 30


def head_stats(attn: SparseAttention, row_stats: Tensor | None = None) -> dict[str, Tensor]:
    """Per-head statistics of one layer, each (B, H), averaged over the non-padding query rows.

    mean_distance: sum_j p_ij |i - j| (tokens); entropy: of each row, in nats; global_mass:
    attention on global tokens; self_mass: p_ii. Rows of global queries are included.

    `row_stats` (B, H, N, 4), when given: these four per query row (in STAT_NAMES' order) as the
    encoder's fused kernel computed them from the float32 probabilities before they were stored
    (ledviz/fused_band.cpp), so the band is not read again; the rows of global queries still come
    from global_rows.
    """
    B, H, N, W = attn.band.shape
    w, dev = attn.window, attn.band.device
    offsets = (torch.arange(W, device=dev) - w).abs().float()  # (W,)
    i = torch.arange(N, device=dev)
    pos = attn.global_positions  # (B, x)
    used = attn.global_used
    col_dist = (i[None, :, None] - pos[:, None, :]).abs().float()  # (B, N, x)
    row_dist = (pos[:, :, None] - i[None, None, :]).abs().float()  # (B, x, N)
    gather_pos = pos.clamp(min=0)
    b_used, c_used = used.nonzero(as_tuple=True)
    p_used = pos[b_used, c_used]
    valid = attn.attention_mask.float()  # (B, N)
    n_valid = valid.sum(1).clamp(min=1)  # (B,)
    out = {name: torch.zeros(B, H, dtype=torch.float32, device=dev) for name in STAT_NAMES}
    if row_stats is not None and row_stats.shape != (B, H, N, len(STAT_NAMES)):
        raise InputError(f"row_stats must be (batch, heads, seq_len, {len(STAT_NAMES)}) = "
                         f"{(B, H, N, len(STAT_NAMES))}, got {tuple(row_stats.shape)}")
    if row_stats is None:
        # the band is read a slice of rows at a time, in float32, with its logarithms: two buffers
        # reused by every slice and head
        slice_bytes = STATS_SLICE_BYTES if torch.get_num_threads() == 1 else STATS_SLICE_BYTES_THREADED
        rows = max(1, min(N, slice_bytes // (B * W * 4)))
        band = torch.empty(B, rows, W, dtype=torch.float32, device=dev)
        work = torch.empty_like(band)
    for h in range(H):
        grows = attn.global_rows[:, h].float()  # (B, x, N)
        if row_stats is not None:  # written below: copies, never views
            per_row = {name: row_stats[:, h, :, k].to(torch.float32, copy=True) for k, name in enumerate(STAT_NAMES)}
        else:
            per_row = _band_row_stats(attn, h, col_dist, offsets, band, work)
        # rows of global queries (zero above) from global_rows
        at_globals = grows.gather(2, gather_pos[:, None, :].expand(B, pos.shape[1], pos.shape[1]))  # (B, x, x)
        global_row = {
            "mean_distance": (grows * row_dist).sum(-1),
            "entropy": _entropy(grows),
            "global_mass": (at_globals * used[:, None, :]).sum(-1),
            "self_mass": at_globals.diagonal(dim1=1, dim2=2),
        }
        for name in STAT_NAMES:
            per_row[name][b_used, p_used] = global_row[name][b_used, c_used]
            out[name][:, h] = (per_row[name] * valid).sum(1) / n_valid
    return out


def _band_row_stats(attn: SparseAttention, h: int, col_dist: Tensor, offsets: Tensor, band: Tensor,
                    work: Tensor) -> dict[str, Tensor]:
    """head_stats' four statistics of every query row of head h, (B, N) each, read off the stored
    probabilities: the global columns, then the band a slice of rows at a time (in `band`, with its
    logarithms in `work`)."""
    N, w, rows = attn.band.shape[2], attn.window, band.shape[1]
    cols = attn.global_cols[:, h].float()  # (B, N, x)
    per_row = {
        "mean_distance": (cols * col_dist).sum(-1),
        "entropy": _entropy(cols),
        "global_mass": cols.sum(-1),
        "self_mass": attn.band[:, h, :, w].to(torch.float32, copy=True),  # written below: never a view
    }
    for r0 in range(0, N, rows):
        part = band[:, : min(rows, N - r0)]
        part.copy_(attn.band[:, h, r0: r0 + rows])  # (B, R, W)
        per_row["mean_distance"][:, r0: r0 + rows] += part @ offsets
        per_row["entropy"][:, r0: r0 + rows] += _band_entropy(part, work[:, : part.shape[1]])
    return per_row


def stats_table(stats_by_layer: Mapping[int, Mapping[str, Tensor]]) -> pd.DataFrame:
    """Tidy table of per-head statistics: columns layer, batch, head and one per statistic."""
    records = []
    for layer, stats in stats_by_layer.items():
        names = list(stats)
        B, H = stats[names[0]].shape
        for b in range(B):
            for h in range(H):
                records.append({"layer": int(layer), "batch": b, "head": h,
                                **{n: float(stats[n][b, h]) for n in names}})
    return pd.DataFrame.from_records(records, columns=["layer", "batch", "head", *STAT_NAMES])


def head_stats_table(attn: SparseAttention | Sequence[SparseAttention]) -> pd.DataFrame:
    """`head_stats` of every layer as one tidy table (layer, batch, head, statistics)."""
    return stats_table({_layer_id(sp, n): head_stats(sp) for n, sp in enumerate(_as_layers(attn))})


def global_token_stats(attn: SparseAttention | Sequence[SparseAttention], batch: int = 0) -> pd.DataFrame:
    """Per layer, head and global token: where it looks and how much it is looked at.

    Columns: layer, head, slot, position, mean_distance, entropy, self_mass, global_mass (of its
    own row), received_sum (sum over all queries of their attention to it), received_mean
    (received_sum / number of non-padding tokens).
    """
    records = []
    for n, sp in enumerate(_as_layers(attn)):
        used = sp.global_used[batch].nonzero(as_tuple=True)[0]
        pos = sp.global_positions[batch, used]  # (xb,)
        n_valid = max(int(sp.attention_mask[batch].sum()), 1)
        rows = sp.global_rows[batch][:, used].float()  # (H, xb, N)
        i = torch.arange(sp.seq_len, device=rows.device)
        dist = (rows * (pos[:, None] - i[None, :]).abs()).sum(-1)  # (H, xb)
        ent = _entropy(rows)
        at_globals = rows[:, :, pos]  # (H, xb, xb): global c -> global c'
        received = sp.global_cols[batch][:, :, used].float().sum(1) + at_globals.sum(1)  # (H, xb)
        for h in range(sp.num_heads):
            for k, slot in enumerate(used.tolist()):
                records.append({
                    "layer": _layer_id(sp, n), "head": h, "slot": slot, "position": int(pos[k]),
                    "mean_distance": float(dist[h, k]), "entropy": float(ent[h, k]),
                    "self_mass": float(at_globals[h, k, k]), "global_mass": float(at_globals[h, k].sum()),
                    "received_sum": float(received[h, k]), "received_mean": float(received[h, k]) / n_valid,
                })
    columns = ["layer", "head", "slot", "position", "mean_distance", "entropy", "self_mass", "global_mass",
               "received_sum", "received_mean"]
    return pd.DataFrame.from_records(records, columns=columns)


# ---------------------------------------------------------------------------------------------
# cross-attention (decoder -> source)
# ---------------------------------------------------------------------------------------------

def cross_attention_map(
    cross_attentions: Sequence[Tensor],
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    reduce: str = "mean",
    batch: int = 0,
) -> Tensor:
    """(T, N): attention of each generated token onto the source, mean or max over chosen layers and heads.

    cross_attentions: one (B, H, T, N) tensor per decoder layer (None entries are skipped).
    """
    _check_reduce(reduce, ("mean", "max"))
    chosen = [layer for n, layer in enumerate(cross_attentions)
              if layer is not None and (layers is None or n in layers)]
    if not chosen:
        raise InputError("no cross-attention layer selected (run the model with output_attentions=True)")
    if reduce == "mean":  # summed head by head into one (T, N): no float32 copy of every head
        first = chosen[0][batch]
        out = torch.zeros(1, *first.shape[1:], dtype=torch.float32, device=first.device)
        count = 0
        for layer in chosen:
            hs = list(range(layer.shape[1])) if heads is None else list(heads)
            if any(not 0 <= h < layer.shape[1] for h in hs):
                raise InputError(f"heads {hs} are not all among the {layer.shape[1]} cross-attention heads")
            _head_sum(layer[batch: batch + 1], hs, out)
            count += len(hs)
        return out[0].div_(count)
    picked = [layer[batch].float() if heads is None else layer[batch].float()[list(heads)] for layer in chosen]
    return torch.cat(picked, dim=0).amax(0)  # (layers * heads, T, N) -> (T, N)


def bin_matrix(mat: Tensor, bins: int | tuple[int, int] = 512, reduce: str = "sum") -> Tensor:
    """(R, C) -> (at most bins_r, at most bins_c) block sums / means / maxima of a dense matrix."""
    _check_reduce(reduce)
    br, bc = (bins, bins) if isinstance(bins, int) else bins
    R, C = mat.shape
    sr, sc = bin_size(R, br), bin_size(C, bc)
    Kr, Kc = math.ceil(R / sr), math.ceil(C / sc)
    blocks = F.pad(mat.float(), (0, Kc * sc - C, 0, Kr * sr - R)).view(Kr, sr, Kc, sc)
    out = _reduce(_reduce(blocks, 3, reduce), 1, reduce)  # (Kr, Kc)
    if reduce == "mean":
        out = out / (_bin_widths(R, br, mat.device)[:, None] * _bin_widths(C, bc, mat.device)[None, :])
    return out


def cross_attention_overview(cross_attentions: Sequence[Tensor], bins: int | tuple[int, int] = 512,
                             reduce: str = "sum", **select) -> Tensor:
    """`cross_attention_map` binned into at most bins x bins blocks (keyword `select`: layers, heads, batch)."""
    return bin_matrix(cross_attention_map(cross_attentions, **select), bins, reduce)


def source_mass(cross_attentions: Sequence[Tensor], **select) -> Tensor:
    """(N,): mean over generated tokens of their attention on each source token."""
    return cross_attention_map(cross_attentions, **select).mean(0)


# ---------------------------------------------------------------------------------------------
# attention rollout
# ---------------------------------------------------------------------------------------------

def rollout(
    attn: Sequence[SparseAttention],
    token: int,
    *,
    batch: int = 0,
    heads: Sequence[int] | None = None,
    add_identity: bool = True,
) -> Tensor:
    """(N,) contributions of every input token to `token`'s representation after the last given layer.

    Attention rollout (Abnar & Zuidema, 2020): per layer, the mean over heads A, with the
    residual as (A + I) renormalized per row; the product of the layers from the top down,
    read at row `token`. Computed as vector x sparse-matrix products that touch only the band
    rows the vector reaches, so the top layers cost little. A heuristic: it ignores values, the
    output projection and the MLPs, and says nothing causal. `add_identity=False` gives the raw
    product of the attention maps. For many tokens, pass `[aggregate(sp) for sp in layers]`
    (one head each) so the mean over heads is taken once; an `AttentionStore` can compute
    those as the model runs (`reducers={"head_mean": aggregate}`).
    """
    layers = sorted(_as_layers(attn), key=lambda sp: sp.layer if sp.layer is not None else 0)
    N, dev = layers[0].seq_len, layers[0].band.device
    if not 0 <= token < N:
        raise InputError(f"token {token} is outside the sequence of {N} tokens")
    v = torch.zeros(N, dtype=torch.float32, device=dev)
    v[token] = 1.0
    buffers: dict = {}
    for sp in reversed(layers):
        v = _rollout_step(sp.select(batch=batch), v, heads, add_identity, buffers)
    return v


def _rollout_step(sp: SparseAttention, v: Tensor, heads: Sequence[int] | None, add_identity: bool,
                  buffers: dict | None = None) -> Tensor:
    """v (N,) -> v @ A~ for one layer of one element, A~ = rownorm(mean_heads(A) (+ I))."""
    N, w = sp.seq_len, sp.window
    hs = list(range(sp.num_heads)) if heads is None else list(heads)
    used = sp.global_used[0].nonzero(as_tuple=True)[0]
    pos = sp.global_positions[0, used]  # (xb,)
    # rows of the global queries: mean over heads
    rows = _head_mean(sp.global_rows[:, :, used], hs)  # (xb, N)
    # band and global columns of the local rows v reaches (all of them once a global row has spread v)
    local = (v != 0) & ~sp.is_global[0]
    reached = local.nonzero(as_tuple=True)[0]
    lo, hi = (int(reached[0]), int(reached[-1]) + 1) if len(reached) else (0, 0)
    band = _head_mean(sp.band[:, :, lo:hi], hs)  # (R, 2w+1)
    cols = _head_mean(sp.global_cols[:, :, lo:hi][..., used], hs)  # (R, xb)
    u = v.clone()
    if add_identity:  # (A + I) / row sum: scale each row's weight by 1 / (row sum + 1)
        u[lo:hi] = v[lo:hi] / (band.sum(-1) + cols.sum(-1) + 1.0)
        u[pos] = v[pos] / (rows.sum(-1) + 1.0)
    out = u[pos] @ rows  # global queries -> every key
    if hi > lo:
        out += _band_vecmat(u[lo:hi], band, w, first_row=lo, seq_len=N, buffers=buffers)  # local queries -> window keys
        out.index_add_(0, pos, u[lo:hi] @ cols)  # local queries -> global keys
    return out + u if add_identity else out


# ---------------------------------------------------------------------------------------------
# words and sentences
# ---------------------------------------------------------------------------------------------

def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the whitespace-separated words of `text`."""
    return [m.span() for m in re.finditer(r"\S+", text)]


@dataclass
class TokenGroups:
    """Tokens grouped into words or sentences.

    index: (N,) long, the group of each token (-1: in no group). labels / spans: per group, its
    text and character span, in order of first appearance.
    """

    index: Tensor
    labels: list[str]
    spans: list[tuple[int, int]]

    @property
    def num_groups(self) -> int:
        """G."""
        return len(self.labels)


def token_groups(text: str, offsets, unit: str = "word", special: str = "own") -> TokenGroups:
    """Group tokens by the word or sentence (ledviz.sentences' rule) their character span (tokenizer
    offsets) falls in.

    offsets: (start, end) per token (a list, or an (N, 2) / (1, N, 2) tensor or array).
    A token with an empty span (special tokens, padding) gets its own group ("own") or none
    ("drop"). A token covering only whitespace joins the next word (the last one at the end).
    """
    if unit not in ("word", "sentence"):
        raise InputError(f"unit must be 'word' or 'sentence', got {unit!r}")
    if special not in ("own", "drop"):
        raise InputError(f"special must be 'own' or 'drop', got {special!r}")
    pairs = [(int(s), int(e)) for s, e in torch.as_tensor(offsets).reshape(-1, 2).tolist()]
    spans = word_spans(text) if unit == "word" else sentence_spans(text)
    starts = [s for s, _ in spans]
    owner = [-1] * len(text)  # character -> span
    for k, (s, e) in enumerate(spans):
        owner[s:e] = [k] * (e - s)
    group_of: dict[tuple[str, int], int] = {}
    labels, group_spans, index = [], [], []
    for t, (s, e) in enumerate(pairs):
        if e <= s:
            if special == "drop":
                index.append(-1)
                continue
            key, label, span = ("special", t), f"[{t}]", (s, e)
        else:
            hit = next((owner[c] for c in range(s, min(e, len(text))) if owner[c] >= 0), None)
            if hit is None:  # whitespace only: the next span, else the last
                hit = min(bisect.bisect_left(starts, s), len(spans) - 1) if spans else None
            if hit is None:
                index.append(-1)
                continue
            key, label, span = ("span", hit), text[spans[hit][0]: spans[hit][1]], spans[hit]
        if key not in group_of:
            group_of[key] = len(labels)
            labels.append(label)
            group_spans.append(span)
        index.append(group_of[key])
    return TokenGroups(torch.tensor(index, dtype=torch.long), labels, group_spans)


def group_attention(
    attn: SparseAttention,
    groups: TokenGroups,
    *,
    batch: int = 0,
    row_reduce: str = "mean",
    max_groups: int = 4096,
    chunk_rows: int = 1024,
) -> Tensor:
    """(H, G, G) attention between groups: rows are the mean (or sum) over the group's tokens, columns the sum.

    Tokens outside every group (index -1) and padding are left out. Goes through the sparse
    entries in chunks of `chunk_rows` queries.
    """
    _check_reduce(row_reduce, ("mean", "sum"))
    G, N, H = groups.num_groups, attn.seq_len, attn.num_heads
    if groups.index.shape[0] != N:
        raise InputError(f"the groups cover {groups.index.shape[0]} tokens, the attention {N}")
    if G > max_groups:
        raise InputError(f"{G} groups make a {G} x {G} map; use sentences, drop tokens (index -1) or raise max_groups")
    g = groups.index.to(attn.band.device)
    out = torch.zeros(H, G * G, dtype=torch.float32, device=attn.band.device)
    for r0 in range(0, N, chunk_rows):
        q, k, v = attn.entries(batch, rows=(r0, min(N, r0 + chunk_rows)))
        gq, gk = g[q], g[k]
        keep = (gq >= 0) & (gk >= 0)
        out.index_add_(1, (gq * G + gk)[keep], v[:, keep])
    out = out.view(H, G, G)
    if row_reduce == "mean":
        members = g[(g >= 0) & attn.attention_mask[batch]]
        counts = torch.bincount(members, minlength=G).clamp(min=1).float()
        out = out / counts[None, :, None]
    return out
