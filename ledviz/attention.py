"""The LED encoder's self-attention: a sliding window of +-w tokens, plus global tokens that see and are seen by all.

Read top to bottom: the one predicate that says when the encoder runs for inference, the
per-batch bookkeeping (`GlobalLayout`, with the inference path's reused `InferenceScratch`), the
index helpers (window slots, block spans, diagonals), then the two implementations:

- `reference_attention`: whole tensors, differentiable, the readable definition. It returns the
  probabilities in LED's layout: local (B, H, L, x + 2w + 1) = x global columns then the 2w + 1
  window slots, global (B, H, x, L). Its band is computed either as one gathered window per query
  (implementation "reference") or as query blocks against key spans (implementation "blocked",
  the same numbers with less memory).
- `blocked_inference_attention`: the fast path, taken by the "blocked" implementation when
  `is_inference`: head by head, a few query blocks at a time, softmax in place, in scratch
  memory reused by every layer of a forward pass. Checked against the reference in
  tests/test_fast_attention.py.

`LEDEncoderSelfAttention` holds the parameters (named as in the public checkpoints) and picks
the implementation by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import fused
from .config import LEDConfig
from .device import libc_madvise as _madvise

Tensor = torch.Tensor

ATTENTION_IMPLEMENTATIONS = ("blocked", "reference", "sdpa")  # "sdpa": attention_gpu.py, the default on CUDA
# the inference path works on slices of about this many bytes: the scores of a chunk of query
# blocks, and the feed-forward activations of a slice of rows (LEDEncoderLayer)
INFERENCE_CHUNK_BYTES = 32 << 20


def is_inference(module: nn.Module) -> bool:
    """True when `module` runs for inference: eval mode and no gradients.

    The one test for the encoder's in-place inference code (attention and the layer's tail). A
    model in train mode keeps its dropout even under torch.no_grad(), so it takes the reference
    code, as transformers does.
    """
    return not module.training and not torch.is_grad_enabled()


def rows_per_slice(n: int, row_bytes: int) -> int:
    """How many of n rows (or blocks) of `row_bytes` scratch each one slice of the inference path takes."""
    return max(1, min(n, INFERENCE_CHUNK_BYTES // row_bytes))


# ---------------------------------------------------------------------------------------------
# Per-batch bookkeeping, shared by all layers of one forward pass
# ---------------------------------------------------------------------------------------------

class ReusedBuffer:
    """One allocation, grown when needed and handed out as uninitialised views of the shape asked for.

    Fresh large tensors cost page faults on every use; reusing one allocation keeps the matrix
    products at full speed. A view must not be returned or kept past the layer that took it.
    """

    def __init__(self):
        self._data: Tensor | None = None

    def view(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        numel = math.prod(shape)
        data = self._data
        if data is None or data.numel() < numel or data.dtype != like.dtype or data.device != like.device:
            data = self._data = torch.empty(numel, dtype=like.dtype, device=like.device)
        return data[:numel].view(shape)


@dataclass
class InferenceScratch:
    """The inference path's scratch memory, one `ReusedBuffer` per use."""

    keys_values: ReusedBuffer = field(default_factory=ReusedBuffer)  # (B, L' + 2w, 2D)
    queries: ReusedBuffer = field(default_factory=ReusedBuffer)  # (n, D)
    head_out: ReusedBuffer = field(default_factory=ReusedBuffer)  # (n, hd)
    # the largest two are never alive at once, so they share one allocation: a chunk's scores
    # (attention), then a slice of feed-forward activations (the layer's tail)
    scores_or_activations: ReusedBuffer = field(default_factory=ReusedBuffer)
    layer_rows: ReusedBuffer = field(default_factory=ReusedBuffer)  # (rows, D): the layer's tail
    narrow_stream: ReusedBuffer = field(default_factory=ReusedBuffer)  # (B L, D): GlobalLayout.narrow_stream


@dataclass
class GlobalLayout:
    """Padding and global-attention bookkeeping for one (padded) batch.

    is_padding, is_global: (B, L) bool.  global_index: (B, x) positions of each element's global
    tokens in ascending order, 0 where unused; global_valid: (B, x) which of those slots are used.
    """

    is_padding: Tensor
    is_global: Tensor
    global_index: Tensor
    global_valid: Tensor
    scratch: InferenceScratch = field(default_factory=InferenceScratch, repr=False, compare=False)
    # per-row statistics of the probabilities (analysis.STAT_NAMES), for a caller that reduces them:
    # when `want_row_stats`, the fused kernel path leaves each layer's (B, H, L, 4) float32 in
    # `row_stats` (other paths leave None: the caller computes them from the probabilities)
    want_row_stats: bool = field(default=False, repr=False, compare=False)
    row_stats: Tensor | None = field(default=None, repr=False, compare=False)
    # the encoder's float32 residual stream (modeling.py): whether a layer may write its result over its input
    stream_reusable: bool = field(default=False, repr=False, compare=False)
    # ... and its copy in the weights' dtype, written by the layer that made the stream (its last layer norm
    # writes both): (the float32 stream (B, L, D) the layer returned, the copy), taken by the next layer
    narrow_stream: tuple[Tensor, Tensor] | None = field(default=None, repr=False, compare=False)

    @property
    def num_global(self) -> int:
        return self.global_index.shape[1]

    @property
    def dropped_keys(self) -> Tensor:
        """(B, L) bool: keys no window slot may hold (padding and global tokens)."""
        return self.is_padding | self.is_global

    @classmethod
    def from_mask(cls, mask_state: Tensor) -> "GlobalLayout":
        """mask_state: (B, L) with 0 = padding, 1 = local, 2 = global."""
        is_global = mask_state == 2
        positions = global_positions(is_global)  # (B, x)
        return cls(mask_state == 0, is_global, positions.clamp(min=0), positions >= 0)


# outputs at least this large have their memory mapped in one call before they are written (fresh_output)
POPULATE_MIN_BYTES = 64 << 20
_MADV_POPULATE_WRITE = 23  # Linux 5.14+


def fresh_output(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """torch.empty(shape) for a large output written once (the kept probabilities). On Linux its pages
    are first mapped in one call (madvise MADV_POPULATE_WRITE) rather than one fault per 4 KB page
    as they are written: about a tenth less of that cost (at 16,384 tokens a layer keeps 400 MB).
    Where the call is not available (another system, an older kernel) it is simply not made."""
    out = torch.empty(shape, dtype=dtype, device=device)
    nbytes = out.numel() * out.element_size()
    if device.type == "cpu" and nbytes >= POPULATE_MIN_BYTES:
        madvise = _madvise()
        if madvise is not None:
            page = 4096
            start = -(-out.data_ptr() // page) * page
            end = (out.data_ptr() + nbytes) // page * page
            if end > start:
                madvise(start, end - start, _MADV_POPULATE_WRITE)  # a refusal changes nothing
    return out


def global_positions(is_global: Tensor) -> Tensor:
    """(B, N) bool -> (B, x) long: each element's global positions in ascending order, -1 in unused slots.

    The one numbering of global tokens: slot c of an element is its c-th global token, and x is
    the largest count in the batch. The encoder's probabilities use it for their global columns.
    """
    counts = is_global.sum(dim=1)  # (B,)
    x = int(counts.max()) if counts.numel() else 0
    positions = torch.arange(is_global.shape[1], device=is_global.device).expand_as(is_global)
    # global positions keep their value, the rest sort after them
    keyed = torch.where(is_global, positions, is_global.shape[1])
    ordered = keyed.sort(dim=1).values[:, :x]  # (B, x)
    return ordered.masked_fill(ordered == is_global.shape[1], -1)


# ---------------------------------------------------------------------------------------------
# Index helpers
# ---------------------------------------------------------------------------------------------

def pad_seq(t: Tensor, before: int, after: int, value: float = 0.0, dim: int = -2) -> Tensor:
    """Pad tensor `t` along `dim` with `before`/`after` entries of `value`."""
    pad = [0, 0] * (t.dim() - 1 - (dim % t.dim())) + [before, after]
    return F.pad(t, pad, value=value)


def window_slots(keys: Tensor, w: int, fill: bool = False, rows: tuple[int, int] | None = None) -> Tensor:
    """(B, L) per-key flags -> (B, R, 2w+1): slot s of query i holds the flag of key i + s - w, `fill`
    outside the sequence. The one map from keys to window slots; `rows` = (start, stop) builds
    only those queries (R = stop - start; default all L)."""
    r0, r1 = rows if rows is not None else (0, keys.shape[1])
    padded = F.pad(keys.to(torch.uint8), (w, w), value=int(fill))  # (B, L + 2w)
    return padded.unfold(1, 2 * w + 1, 1)[:, r0:r1].bool()  # (B, R, 2w+1)


def _gather_positions(t: Tensor, index: Tensor) -> Tensor:
    """(B, H, L, d) gathered at positions index (B, x) -> (B, H, x, d)."""
    B, H, _, d = t.shape
    return t.gather(2, index[:, None, :, None].expand(B, H, index.shape[1], d))


def _diagonals(blocks: Tensor, w: int) -> Tensor:
    """View of the band inside block scores: (..., c, c + 2w) -> (..., c, 2w+1), [i, s] = blocks[i, i + s]."""
    c = blocks.shape[-2]
    size = blocks.shape[:-2] + (c, 2 * w + 1)
    stride = blocks.stride()[:-2] + (blocks.stride(-2) + blocks.stride(-1), blocks.stride(-1))
    return blocks.as_strided(size, stride, blocks.storage_offset())


def _block_spans(t: Tensor, w: int, c: int, length: int) -> Tensor:
    """Key/value spans of each query block: (B, H, L, hd) -> (B, H, L'/c, c + 2w, hd), span k = keys [kc - w, kc + c + w)."""
    padded = pad_seq(t, w, w + length - t.shape[2])  # (B, H, L' + 2w, hd)
    return padded.unfold(2, c + 2 * w, c).transpose(-1, -2)  # (B, H, nb, c + 2w, hd)


def _round_up(n: int, c: int) -> int:
    return -(-n // c) * c


# the band (the 2w + 1 window slots of every query), two ways that give the same numbers

def _band_scores_by_windows(q: Tensor, k: Tensor, w: int, c: int) -> Tensor:
    """(B, H, L, hd) x (B, H, L, hd) -> (B, H, L, 2w+1), slot w + d = key i + d: one gathered window per query."""
    k_win = pad_seq(k, w, w).unfold(2, 2 * w + 1, 1)  # (B, H, L, hd, 2w+1)
    return torch.einsum("bhld,bhldw->bhlw", q, k_win)


def _band_output_by_windows(p: Tensor, v: Tensor, w: int, c: int) -> Tensor:
    """probs (B, H, L, 2w+1) x values (B, H, L, hd) -> (B, H, L, hd)."""
    v_win = pad_seq(v, w, w).unfold(2, 2 * w + 1, 1)  # (B, H, L, hd, 2w+1)
    return torch.einsum("bhlw,bhldw->bhld", p, v_win)


def _band_scores_by_blocks(q: Tensor, k: Tensor, w: int, c: int) -> Tensor:
    """The same band scores, by query blocks of c rows against key spans of c + 2w."""
    B, H, L, hd = q.shape
    Lb = _round_up(L, c)
    q_blocks = pad_seq(q, 0, Lb - L).view(B, H, Lb // c, c, hd)
    scores = q_blocks @ _block_spans(k, w, c, Lb).transpose(-1, -2)  # (B, H, nb, c, c + 2w)
    return _diagonals(scores, w).reshape(B, H, Lb, 2 * w + 1)[:, :, :L]


def _band_output_by_blocks(p: Tensor, v: Tensor, w: int, c: int) -> Tensor:
    """The same band output: the band scattered into (c, c + 2w) blocks, times the value spans."""
    B, H, L, _ = p.shape
    Lb = _round_up(L, c)
    blocks = p.new_zeros(B, H, Lb // c, c, c + 2 * w)
    _diagonals(blocks, w).copy_(pad_seq(p, 0, Lb - L).view(B, H, Lb // c, c, 2 * w + 1))
    out = blocks @ _block_spans(v, w, c, Lb)  # (B, H, nb, c, hd)
    return out.reshape(B, H, Lb, -1)[:, :, :L]


_BANDS = {
    "reference": (_band_scores_by_windows, _band_output_by_windows),
    "blocked": (_band_scores_by_blocks, _band_output_by_blocks),
}


# ---------------------------------------------------------------------------------------------
# The module: parameters, and the choice of implementation
# ---------------------------------------------------------------------------------------------

class LEDEncoderSelfAttention(nn.Module):
    """Longformer self-attention: a sliding window of +-w tokens, plus global tokens that see and are seen by all.

    `implementation` picks how it is computed: "blocked" (default) or "reference" (one gathered
    window per query: the readable definition), or "sdpa" (blocked dense attention for a GPU,
    attention_gpu.py; "blocked" takes it on CUDA at inference). All give the same probabilities.
    """

    def __init__(self, config: LEDConfig, layer_id: int):
        super().__init__()
        d, h = config.d_model, config.encoder_attention_heads
        self.num_heads, self.head_dim, self.embed_dim = h, d // h, d
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.query_global, self.key_global, self.value_global = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.dropout = config.attention_dropout
        self.layer_id = layer_id
        self.one_sided_attn_window_size = config.attention_windows()[layer_id] // 2
        self.implementation = "blocked"
        self.block_size: int | None = None  # None: the one-sided window, clamped to [32, 128]

    def heads(self, x: Tensor) -> Tensor:
        """(B, L, D) -> (B, H, L, hd)."""
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)

    def block(self) -> int:
        """Query rows per block of the blocked implementation."""
        w = self.one_sided_attn_window_size
        # small blocks waste little of the (c, c + 2w) products outside the band
        return self.block_size or min(128, max(32, w))

    def forward(
        self,
        hidden_states: Tensor,
        layout: GlobalLayout,
        layer_head_mask: Tensor | None = None,
        output_attentions: bool = False,
        probs_dtype: torch.dtype | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """hidden_states (B, L, D), L padded to a multiple of the window.

        Returns the attention output (B, L, D), the local probabilities (B, H, L, x + 2w + 1) and
        the global probabilities (B, H, x, L) (these two only with output_attentions).
        """
        if self.implementation == "sdpa" or (self.implementation == "blocked" and hidden_states.is_cuda
                                             and is_inference(self)):
            from .attention_gpu import sdpa_attention  # the GPU path (its own module; it imports this one)
            return sdpa_attention(self, hidden_states, layout, layer_head_mask, output_attentions, probs_dtype)
        if self.implementation == "blocked" and is_inference(self):
            return blocked_inference_attention(self, hidden_states, layout, layer_head_mask, output_attentions,
                                               probs_dtype)
        return reference_attention(self, hidden_states, layout, layer_head_mask, output_attentions, probs_dtype,
                                   band=self.implementation)


# ---------------------------------------------------------------------------------------------
# The reference: whole tensors, differentiable
# ---------------------------------------------------------------------------------------------

def reference_attention(
    attn: LEDEncoderSelfAttention, hidden_states: Tensor, layout: GlobalLayout, layer_head_mask: Tensor | None,
    output_attentions: bool, probs_dtype: torch.dtype | None, band: str = "reference",
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Longformer attention on whole tensors; `band` ("reference" or "blocked") says how the window part is computed."""
    band_scores, band_output = _BANDS[band]
    B, L, D = hidden_states.shape
    w, c, x = attn.one_sided_attn_window_size, attn.block(), layout.num_global
    neg = torch.finfo(hidden_states.dtype).min
    q = attn.heads(attn.query(hidden_states)) / math.sqrt(attn.head_dim)  # (B, H, L, hd)
    k = attn.heads(attn.key(hidden_states))
    v = attn.heads(attn.value(hidden_states))

    # window scores, with padding / global / out-of-sequence keys removed
    dropped = window_slots(layout.dropped_keys, w, fill=True)  # (B, L, 2w+1)
    scores = band_scores(q, k, w, c).masked_fill(dropped[:, None], neg)  # (B, H, L, 2w+1)

    # every query also scores every global key (local projections); unused slots removed
    if x:
        k_glob = _gather_positions(k, layout.global_index)  # (B, H, x, hd)
        v_glob = _gather_positions(v, layout.global_index)
        glob = (q @ k_glob.transpose(-1, -2)).masked_fill(~layout.global_valid[:, None, None, :], neg)
        scores = torch.cat([glob, scores], dim=-1)  # (B, H, L, x + 2w + 1)
    probs = scores.softmax(dim=-1, dtype=torch.float32)
    if layer_head_mask is not None:
        probs = layer_head_mask.view(1, -1, 1, 1) * probs
    probs = probs.masked_fill(layout.is_padding[:, None, :, None], 0.0).type_as(scores)
    probs = F.dropout(probs, p=attn.dropout, training=attn.training)

    # output of the local rows: global columns + band
    out = band_output(probs[..., x:], v, w, c)  # (B, H, L, hd)
    if x:
        out = out + probs[..., :x] @ v_glob

    global_probs = None
    if x:
        out, global_probs = _global_rows(attn, hidden_states, out, layout, layer_head_mask)
        # rows of global queries were computed above only as filler: zero them
        probs = probs.masked_fill(layout.is_global[:, None, :, None], 0.0)
    out = out.transpose(1, 2).reshape(B, L, D)
    if not output_attentions:
        return out, None, None
    return out, probs.to(probs_dtype or probs.dtype), global_probs


def _global_rows(
    attn: LEDEncoderSelfAttention, hidden_states: Tensor, out: Tensor, layout: GlobalLayout,
    layer_head_mask: Tensor | None, folded: bool = False, in_place: bool = False, float32_scores: bool = False,
) -> tuple[Tensor, Tensor]:
    """Global queries attend to every non-padding key with the *_global projections; their rows of
    `out` (B, H, L, hd) are replaced. Returns out and the global probabilities (B, H, x, L).

    With `float32_scores` (bfloat16 on the CPU, without autograd: the inference path), the scores are taken
    from the product as it accumulates them, in float32 (fused.product_float32): rounded to bfloat16, a score
    of 40 would move by up to 0.125 before the softmax, the largest part of the global probabilities' error.
    The probabilities are rounded once, after the softmax.

    With `folded`, the key and value projections are not applied to all L positions: each
    global query is folded into the key weights (scores = (q W_k) h, the key bias adds the
    same constant to a whole row and cancels in the softmax), and the value weights are
    applied after the probabilities (p (h W_v^T + b) = (p h) W_v^T + (sum p) b). That costs
    O(x H L D) instead of O(L D^2): the cheaper way when there are few global tokens.
    """
    B, L, D = hidden_states.shape
    H, hd, x = attn.num_heads, attn.head_dim, layout.num_global
    neg = torch.finfo(hidden_states.dtype).min
    h_glob = hidden_states.gather(1, layout.global_index[:, :, None].expand(B, x, D))  # (B, x, D)
    q = attn.heads(attn.query_global(h_glob)) / math.sqrt(hd)  # (B, H, x, hd)
    product = fused.product_float32 if float32_scores else torch.matmul
    if folded:
        q_folded = (q @ attn.key_global.weight.view(H, hd, D)).reshape(B, H * x, D)
        # hidden (B, L, D) as the left operand, as it is stored: its transpose as the right one
        # would be copied first (for bfloat16 on the CPU: an (L, D) copy per layer)
        scores = product(hidden_states, q_folded.transpose(1, 2)).transpose(1, 2).reshape(B, H, x, L)
    else:
        k = attn.heads(attn.key_global(hidden_states))  # (B, H, L, hd)
        scores = product(q, k.transpose(-1, -2))  # (B, H, x, L)
    scores = scores.masked_fill(layout.is_padding[:, None, None, :], neg)
    probs = scores.softmax(dim=-1, dtype=torch.float32)
    if layer_head_mask is not None:
        probs = layer_head_mask.view(1, -1, 1, 1) * probs
    # unused global slots attend nowhere (transformers fills them with 1/L instead)
    probs = probs.masked_fill(~layout.global_valid[:, None, :, None], 0.0).type_as(hidden_states)
    probs = F.dropout(probs, p=attn.dropout, training=attn.training)
    if folded:
        mixed = (probs.reshape(B, H * x, L) @ hidden_states).view(B, H, x, D)
        g_out = mixed @ attn.value_global.weight.view(H, hd, D).transpose(-1, -2)  # (B, H, x, hd)
        g_out = g_out + probs.sum(-1, keepdim=True) * attn.value_global.bias.view(H, 1, hd)
    else:
        g_out = probs @ attn.heads(attn.value_global(hidden_states))  # (B, H, x, hd)
    # write the rows of the used slots back at their positions
    b_idx, slot = layout.global_valid.nonzero(as_tuple=True)
    if not in_place:
        out = out.clone()
    out[b_idx, :, layout.global_index[b_idx, slot]] = g_out[b_idx, :, slot]
    return out, probs


# ---------------------------------------------------------------------------------------------
# The inference path: head by head, a chunk of query blocks at a time, in place
# ---------------------------------------------------------------------------------------------
#
# Query block j holds the c rows [jc, jc + c) and reads the key span [jc - w, jc + c + w): its
# scores are one (c, c + 2w) matrix whose diagonals [i, i + s] are the 2w + 1 window slots. Keys
# and values are written once between w zero rows on each side, so every span is a strided view.
# For each chunk of blocks and each head: score the x global keys and the spans into one row per
# query (the global columns, padded to an aligned width, then the block's c + 2w columns), mask
# what lies outside each row's window, softmax in place over the whole row, multiply the same
# buffer (now zero outside the band) by the global values and the value spans.

@dataclass(frozen=True)
class _Blocks:
    """Query blocks of c rows over L rows padded to L' (a multiple of c), windows of +-w."""

    w: int
    c: int
    length: int

    @property
    def padded(self) -> int:  # L'
        return _round_up(self.length, self.c)

    @property
    def count(self) -> int:  # nb = L' / c
        return self.padded // self.c

    @property
    def span(self) -> int:  # keys read by one block
        return self.c + 2 * self.w

    @property
    def slots(self) -> int:  # window slots of one query
        return 2 * self.w + 1


# the global columns of a chunk's score rows take a multiple of this many columns, so that the
# band after them starts on an aligned address
GLOBAL_COLUMNS_ALIGN = 32


def _global_width(x: int) -> int:
    """Columns the x global scores take at the start of a chunk's score rows (x, rounded up; unused ones masked)."""
    return _round_up(x, GLOBAL_COLUMNS_ALIGN) if x else 0


class _BlockMask:
    """What to drop in the (c, c + 2w) band blocks and the (c, x) global columns of one sequence, kept small.

    Most of a block is inside the band and valid; only two triangles (keys before a row's window
    and after it) and a few columns (padding, global or out-of-sequence keys) must be dropped, so
    they are filled directly instead of masking the whole block. Unused global slots are dropped
    from the global columns.
    """

    def __init__(self, layout: GlobalLayout, b: int, blocks: _Blocks):
        c, w = blocks.c, blocks.w
        L = layout.is_padding.shape[1]
        dev = layout.is_padding.device
        self.c, self.w = c, w
        lower = torch.ones(c, c, dtype=torch.bool, device=dev).tril_(-1)
        self.before, self.after = lower, lower.t()  # keys left / right of the window
        keys = F.pad(layout.dropped_keys[b].to(torch.uint8), (w, w + blocks.padded - L), value=1)
        key_drop = keys.unfold(0, blocks.span, c).bool()  # (nb, c + 2w)
        self.block, self.col = key_drop.nonzero(as_tuple=True)  # ascending blocks
        self.block_cpu = self.block.cpu()
        self.unused_slots = (~layout.global_valid[b]).nonzero().flatten()
        self.num_global = layout.num_global
        self._layout, self._b, self._blocks, self._kernel_masks = layout, b, blocks, None

    def columns(self, j0: int, j1: int) -> tuple[Tensor, Tensor] | None:
        """(block - j0, column) of the dropped key columns in blocks j0..j1-1, or None."""
        lo, hi = torch.searchsorted(self.block_cpu, torch.tensor([j0, j1])).tolist()  # no device sync
        return (self.block[lo:hi] - j0, self.col[lo:hi]) if hi > lo else None

    def apply(self, scores: Tensor, columns: tuple[Tensor, Tensor] | None, neg: float) -> None:
        """Fill the dropped entries of a chunk's block scores (blocks, c, c + 2w) with `neg`;
        `columns` is what `columns()` gave for that chunk."""
        c, w = self.c, self.w
        scores[..., :c].masked_fill_(self.before, neg)
        scores[..., 2 * w: 2 * w + c].masked_fill_(self.after, neg)
        if columns is not None:
            scores[columns[0], :, columns[1]] = neg

    def kernel_masks(self) -> "_KernelMasks":
        """The same masks as the fused kernel reads them (built once, on first use)."""
        if self._kernel_masks is None:
            self._kernel_masks = _KernelMasks.of(self._layout, self._b, self._blocks)
        return self._kernel_masks

    def apply_global(self, scores: Tensor, neg: float) -> None:
        """Fill the unused global slots of (n, xp) global columns with `neg`, and the alignment columns past x."""
        if len(self.unused_slots):
            scores[:, self.unused_slots] = neg
        scores[:, self.num_global:] = neg


# what the fused kernel adds to a masked score (fused_band.cpp: anything at or below -1e29 is masked)
_KERNEL_MASKED = -1e30


@dataclass(frozen=True)
class _KernelMasks:
    """One sequence's masks as fused_band.cpp reads them: float32 biases (0, or -1e30 where masked) and row flags.

    key_bias (L' + 2w,): the keys between their margins (block j's span is [jc, jc + c + 2w));
    global_bias (x,): unused global slots; row_zero (L',) uint8: rows whose probabilities are 0
    (padding queries, and rows past the sequence); global_pos (x,): the global tokens' positions.
    """

    key_bias: Tensor
    global_bias: Tensor
    row_zero: Tensor
    global_pos: Tensor

    @classmethod
    def of(cls, layout: GlobalLayout, b: int, blocks: _Blocks) -> "_KernelMasks":
        L = layout.is_padding.shape[1]
        w = blocks.w
        keys = F.pad(layout.dropped_keys[b], (w, w + blocks.padded - L), value=True)
        rows = F.pad(layout.is_padding[b], (0, blocks.padded - L), value=True)
        as_bias = lambda dropped: torch.zeros(dropped.shape, dtype=torch.float32).masked_fill_(dropped.cpu(), _KERNEL_MASKED)
        return cls(as_bias(keys), as_bias(~layout.global_valid[b]), rows.to(torch.uint8).cpu().contiguous(),
                   layout.global_index[b].to(torch.float32).cpu().contiguous())


@dataclass
class _Chunk:
    """Query blocks j0..j1-1 of one sequence (its rows r0..r1-1) and the scratch views they work in."""

    j0: int
    j1: int
    r0: int
    r1: int
    queries: Tensor  # (n, H, hd), n = (j1 - j0) c, scaled; rows past the sequence are zero
    scores: Tensor  # (n, xp + c + 2w): each query's global columns, then its block's; scores, then probabilities
    block_scores: Tensor  # (j1 - j0, c, c + 2w) view of `scores`: the blocks
    global_scores: Tensor | None  # (n, xp) view of `scores`: the global columns (x used, the rest masked)
    num_global: int  # x
    head_out: Tensor  # (n, hd)
    dropped_columns: tuple[Tensor, Tensor] | None  # _BlockMask.columns of these blocks
    padding_rows: Tensor | None  # rows (from r0) of padding queries


def blocked_inference_attention(
    attn: LEDEncoderSelfAttention, hidden_states: Tensor, layout: GlobalLayout, layer_head_mask: Tensor | None,
    output_attentions: bool, probs_dtype: torch.dtype | None,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The same attention as `reference_attention`, without autograd: fast, and no (B, H, L, 2w+1) scores."""
    B, L, D = hidden_states.shape
    H, x = attn.num_heads, layout.num_global
    blocks = _Blocks(attn.one_sided_attn_window_size, attn.block(), L)
    dtype = hidden_states.dtype
    kv = _keys_values_between_margins(attn, hidden_states, blocks, layout.scratch)  # (B, L' + 2w, 2, H, hd)
    k_glob, v_glob = _global_keys_values(kv, layout, blocks.w)  # (B, x, H, hd) each, or None

    out = hidden_states.new_empty(B, L, D)
    out_heads = out.view(B, L, H, attn.head_dim)
    probs = fresh_output((B, H, L, x + blocks.slots), probs_dtype or dtype, hidden_states.device) \
        if output_attentions else None
    head_weights = layer_head_mask.to(dtype).tolist() if layer_head_mask is not None else None
    kernel = _fused_kernel_for(hidden_states, probs)
    whole_head = None if kernel is None else fused.bf16_head_kernel() if dtype == torch.bfloat16 else \
        fused.f32_head_kernel() if dtype == torch.float32 else None
    # the kernel computes each row's statistics as it goes; rows up to L' (it writes whole blocks)
    row_stats = hidden_states.new_zeros(B, H, blocks.padded, 4, dtype=torch.float32) \
        if kernel is not None and layout.want_row_stats else None
    for b in range(B):
        mask = _BlockMask(layout, b, blocks)
        for chunk in _chunks(attn, hidden_states[b], layout, b, blocks, mask):
            for h in range(H):
                if whole_head is not None:  # products, softmax and output rows in one call
                    _fused_head(whole_head, chunk, h, kv[b], k_glob[b] if x else None, v_glob[b] if x else None,
                                     mask.kernel_masks(), blocks, head_weights[h] if head_weights is not None else None,
                                     probs[b, h, chunk.r0: chunk.r1] if output_attentions else None,
                                     out_heads[b, chunk.r0: chunk.r1, h],
                                     row_stats[b, h, chunk.r0:] if row_stats is not None else None)
                    continue
                k_spans = kv[b, :, 0, h].unfold(0, blocks.span, blocks.c)  # (nb, hd, c + 2w) view
                v_spans = kv[b, :, 1, h].unfold(0, blocks.span, blocks.c).transpose(1, 2)  # (nb, c + 2w, hd)
                head_weight = head_weights[h] if head_weights is not None else None
                dest = probs[b, h, chunk.r0: chunk.r1] if output_attentions else None
                _score(chunk, h, k_spans[chunk.j0: chunk.j1], k_glob[b, :, h] if x else None,
                       mask if kernel is None else None)
                if kernel is not None:  # mask, softmax, weight and the kept copy in one pass
                    _fused_probabilities(kernel, chunk, mask.kernel_masks(), blocks, head_weight, dest,
                                         row_stats[b, h, chunk.r0:] if row_stats is not None else None)
                else:
                    _softmax_in_place(chunk)
                    _weigh(chunk, head_weight)
                _mix_values(chunk, v_spans[chunk.j0: chunk.j1], v_glob[b, :, h] if x else None)
                out_heads[b, chunk.r0: chunk.r1, h] = chunk.head_out[: chunk.r1 - chunk.r0]
                if dest is not None and kernel is None:
                    _copy_probs(chunk, dest, blocks.w, x)

    if output_attentions:
        glob_b, glob_i = layout.is_global.nonzero(as_tuple=True)
        if len(glob_b):
            probs[glob_b, :, glob_i] = 0.0  # rows of global queries live in the global probabilities
    layout.row_stats = row_stats[:, :, :L] if row_stats is not None else None
    global_probs = None
    if x:
        # the global queries' rows are written into `out` through a (B, H, L, hd) view of it
        _, global_probs = _global_rows(attn, hidden_states, out_heads.permute(0, 2, 1, 3), layout,
                                       layer_head_mask, folded=2 * x * H <= D, in_place=True,
                                       float32_scores=dtype == torch.bfloat16 and hidden_states.device.type == "cpu")
    return out, probs, global_probs


def _keys_values_between_margins(attn: LEDEncoderSelfAttention, hidden_states: Tensor, blocks: _Blocks,
                                 scratch: InferenceScratch) -> Tensor:
    """Keys and values of every position from one product, between zero rows: (B, L' + 2w, 2, H, hd).

    Rows [w, w + L) hold positions 0..L-1; the w rows before and the w + L' - L after are zero,
    so block j's key span is rows [jc, jc + c + 2w): a view.
    """
    B, L, D = hidden_states.shape
    w = blocks.w
    kv = scratch.keys_values.view((B, blocks.padded + 2 * w, 2 * D), hidden_states)
    kv[:, :w] = 0
    kv[:, w + L:] = 0
    weight = torch.cat([attn.key.weight, attn.value.weight])  # (2D, D)
    bias = torch.cat([attn.key.bias, attn.value.bias])
    for b in range(B):
        torch.addmm(bias, hidden_states[b], weight.t(), out=kv[b, w: w + L])
    return kv.view(B, blocks.padded + 2 * w, 2, attn.num_heads, attn.head_dim)


def _global_keys_values(kv: Tensor, layout: GlobalLayout, w: int) -> tuple[Tensor | None, Tensor | None]:
    """The keys and values (B, x, H, hd) of the global tokens, read off `kv`; (None, None) without any."""
    if not layout.num_global:
        return None, None
    B, _, _, H, hd = kv.shape
    rows = (layout.global_index + w)[:, :, None, None].expand(B, layout.num_global, H, hd)  # (B, x, H, hd)
    return kv[:, :, 0].gather(1, rows), kv[:, :, 1].gather(1, rows)


def _chunks(attn: LEDEncoderSelfAttention, hidden: Tensor, layout: GlobalLayout, b: int, blocks: _Blocks,
            mask: _BlockMask):
    """The chunks of query blocks of sequence b (hidden (L, D)), each with its queries projected and scaled."""
    L, D = hidden.shape
    c, x = blocks.c, layout.num_global
    xp = _global_width(x)
    scratch = layout.scratch
    per_chunk = rows_per_slice(blocks.count, c * (xp + blocks.span) * hidden.element_size())  # blocks per chunk
    n_max = per_chunk * c
    scores = scratch.scores_or_activations.view((n_max, xp + blocks.span), hidden)
    queries = scratch.queries.view((n_max, D), hidden)
    head_out = scratch.head_out.view((n_max, attn.head_dim), hidden)
    padding = layout.is_padding[b].nonzero().flatten().cpu()  # chosen per chunk without device syncs

    for j0 in range(0, blocks.count, per_chunk):
        j1 = min(blocks.count, j0 + per_chunk)
        r0, r1 = j0 * c, min(L, j1 * c)
        n = (j1 - j0) * c
        q = queries[:n]
        scale = 1 / math.sqrt(attn.head_dim)  # applied by the product itself, not by a pass over q
        torch.addmm(attn.query.bias, hidden[r0:r1], attn.query.weight.t(), beta=scale, alpha=scale,
                    out=q[: r1 - r0])
        q[r1 - r0:] = 0
        pad_rows = padding[(padding >= r0) & (padding < r1)] - r0
        yield _Chunk(
            j0, j1, r0, r1, queries=q.view(n, attn.num_heads, attn.head_dim), scores=scores[:n],
            block_scores=scores[:n, xp:].view(j1 - j0, c, blocks.span),
            global_scores=scores[:n, :xp] if x else None, num_global=x,
            head_out=head_out[:n], dropped_columns=mask.columns(j0, j1),
            padding_rows=pad_rows.to(hidden.device) if len(pad_rows) else None,
        )


# How the chunk's products against the overlapping key/value spans run: "auto" (one batched product
# where the CPU's kernel takes overlapping spans as they are, else one product per block),
# "batched" or "per_block" (the tests force each one).
SPAN_PRODUCTS = "auto"


def _batched_spans(t: Tensor) -> bool:
    """Whether a batched product over the overlapping span views runs without a copy for tensors like `t`.

    On the CPU only float32 does: for bfloat16 and float16, torch.bmm first copies the spans into
    a contiguous tensor (c + 2w keys per block: (c + 2w) / c times the keys), which costs more
    than the product; one product per block reads each span in place.
    """
    if SPAN_PRODUCTS != "auto":
        return SPAN_PRODUCTS == "batched"
    return t.dtype == torch.float32 or t.device.type != "cpu"


def _span_product(a: Tensor, spans: Tensor, out: Tensor) -> None:
    """out (blocks, c, m) = a (blocks, c, k) x spans (blocks, k, m), spans being overlapping views."""
    if _batched_spans(out):
        torch.bmm(a, spans, out=out)
        return
    for i in range(out.shape[0]):
        torch.mm(a[i], spans[i], out=out[i])


def _score(chunk: _Chunk, h: int, k_spans: Tensor, k_glob: Tensor | None, mask: _BlockMask | None) -> None:
    """Head h's scores: block_scores against the key spans (blocks, hd, c + 2w), global_scores against
    the global keys k_glob (x, hd); with `mask`, what no row may see is set to the dtype's minimum
    (without, the fused kernel masks as it reads)."""
    neg = torch.finfo(chunk.block_scores.dtype).min
    blocks, c, _ = chunk.block_scores.shape
    q = chunk.queries[:, h]  # (n, hd)
    # a product into this contiguous buffer: into a strided view it runs at half speed
    _span_product(q.view(blocks, c, -1), k_spans, chunk.block_scores)
    if mask is not None:
        mask.apply(chunk.block_scores, chunk.dropped_columns, neg)
    if k_glob is not None:
        torch.mm(q, k_glob.t(), out=chunk.global_scores[:, : chunk.num_global])
        if mask is not None:
            mask.apply_global(chunk.global_scores, neg)


def _fused_kernel_for(hidden_states: Tensor, probs: Tensor | None):
    """The fused kernel (fused.band_kernel) when it builds here and takes these dtypes, else None."""
    if hidden_states.device.type != "cpu" or hidden_states.dtype not in fused.DTYPE_CODES:
        return None
    if probs is not None and probs.dtype not in fused.DTYPE_CODES:
        return None
    return fused.band_kernel()


def _fused_head(whole_head, chunk: _Chunk, h: int, kv: Tensor, k_glob: Tensor | None, v_glob: Tensor | None,
                masks: _KernelMasks, blocks: _Blocks, head_weight: float | None, dest: Tensor | None,
                out: Tensor, stats: Tensor | None = None) -> None:
    """Head h of a chunk entirely in fused_band.cpp, block by block while each block is in cache. In bfloat16
    (ledviz_band_attention_bf16): the scores from the CPU's matrix unit (AMX), or from AVX-512 BF16's dot
    products, where the kernel runs them and the shapes fit (whole_head.products), else from MKL's bfloat16 products (rounded to bfloat16 as PyTorch's
    product gives them, unless fused.float32_scores); in float32 (ledviz_band_attention_f32) from MKL's
    sgemm_. Then the probabilities as _fused_probabilities makes them, times the values, into `out`
    (r1 - r0, hd). kv: this sequence's (L' + 2w, 2, H, hd) keys and values between their margins; k_glob,
    v_glob (x, H, hd)."""
    c, w, x = blocks.c, blocks.w, chunk.num_global
    q = chunk.queries[:, h]  # (n, hd)
    n, hd = q.shape
    function, (gemm, unit) = whole_head.function, whole_head.products(hd, c, w)
    keys, values = kv[chunk.j0 * c:, 0, h], kv[chunk.j0 * c:, 1, h]  # (rows, hd) each
    # the kernel trusts these: every pointer below covers what it reads or writes
    assert kv.dtype == q.dtype == out.dtype and q.stride(1) == keys.stride(1) == out.stride(1) == 1
    assert q.dtype == whole_head.dtype
    assert keys.shape[0] >= (chunk.j1 - chunk.j0 - 1) * c + blocks.span and n == (chunk.j1 - chunk.j0) * c
    assert out.shape == (chunk.r1 - chunk.r0, hd)
    if x:
        k_glob, v_glob = k_glob[:, h], v_glob[:, h]  # (x, hd)
        assert k_glob.shape == v_glob.shape == (x, hd) and k_glob.stride() == v_glob.stride() and k_glob.stride(1) == 1
    fused.call(
        function, gemm, q.data_ptr(), q.stride(0), keys.data_ptr(), values.data_ptr(), keys.stride(0),
        k_glob.data_ptr() if x else None, v_glob.data_ptr() if x else None, k_glob.stride(0) if x else 0,
        chunk.j1 - chunk.j0, hd, x, c, w,
        *_row_arguments(chunk, masks, blocks, head_weight, dest, stats, n),
        out.data_ptr(), out.shape[0], out.stride(0), 0 if fused.float32_scores else 1,
        *((unit,) if whole_head.dtype == torch.bfloat16 else ()),  # where the bfloat16 products run
    )


def _row_arguments(chunk: _Chunk, masks: _KernelMasks, blocks: _Blocks, head_weight: float | None,
                   dest: Tensor | None, stats: Tensor | None, n: int) -> tuple:
    """The arguments both entry points of fused_band.cpp take for a chunk's n rows, in their order: the
    masks from the chunk's first key on, its rows' flags, the head weight, the kept probabilities `dest`
    (r1 - r0, x + 2w + 1) or none, the statistics' rows, the global positions and the first row; with the
    checks that every pointer covers what the kernel reads or writes through it."""
    c, w, x = blocks.c, blocks.w, chunk.num_global
    assert masks.row_zero.numel() >= chunk.r0 + n
    assert masks.key_bias.numel() >= chunk.j1 * c + 2 * w and masks.global_bias.numel() == x == masks.global_pos.numel()
    if dest is not None:
        assert dest.shape == (chunk.r1 - chunk.r0, x + blocks.slots) and dest.stride(1) == 1
    f32 = masks.key_bias.element_size()
    return (
        masks.key_bias.data_ptr() + chunk.j0 * c * f32, masks.global_bias.data_ptr(),
        masks.row_zero.data_ptr() + chunk.r0, 1.0 if head_weight is None else float(head_weight),
        None if dest is None else dest.data_ptr(), 0 if dest is None else fused.DTYPE_CODES[dest.dtype],
        0 if dest is None else dest.shape[0], 0 if dest is None else dest.stride(0),
        _stats_pointer(stats, n), masks.global_pos.data_ptr(), chunk.r0,
    )


def _stats_pointer(stats: Tensor | None, n: int) -> int | None:
    """The address of (n, 4) float32 rows of statistics for the kernel to write, or None."""
    if stats is None:
        return None
    assert stats.dtype == torch.float32 and stats.shape[0] >= n and stats.shape[1] == 4 and stats.is_contiguous()
    return stats.data_ptr()


def _fused_probabilities(kernel, chunk: _Chunk, masks: _KernelMasks, blocks: _Blocks, head_weight: float | None,
                         dest: Tensor | None, stats: Tensor | None = None) -> None:
    """What _softmax_in_place, _weigh and _copy_probs do (the masks of _BlockMask.apply included), in one
    call of fused_band.cpp: the chunk's scores become probabilities, zero outside each row's window,
    and `dest` (r1 - r0, x + 2w + 1), when given, receives them in LED's layout and its own dtype;
    `stats` (>= n, 4), when given, each row's statistics (analysis.STAT_NAMES)."""
    scores, c, w, x = chunk.scores, blocks.c, blocks.w, chunk.num_global
    n, width = scores.shape
    xp = width - blocks.span
    assert scores.is_contiguous() and chunk.r1 - chunk.r0 <= n  # the kernel trusts these (and _row_arguments')
    fused.call(kernel, scores.data_ptr(), fused.DTYPE_CODES[scores.dtype], n, scores.stride(0), x, xp, c, w,
                 *_row_arguments(chunk, masks, blocks, head_weight, dest, stats, n))


def _softmax_in_place(chunk: _Chunk) -> None:
    """Scores -> probabilities over each row's [global columns, band], in the same buffer (accumulated in float32)."""
    torch.softmax(chunk.scores, dim=-1, out=chunk.scores)


def _weigh(chunk: _Chunk, head_weight: float | None) -> None:
    """Scale the probabilities by the head mask's weight, and zero the rows of padding queries (they attend nowhere)."""
    if head_weight is not None:
        chunk.scores.mul_(head_weight)
    if chunk.padding_rows is not None:
        chunk.scores.index_fill_(0, chunk.padding_rows, 0.0)


def _mix_values(chunk: _Chunk, v_spans: Tensor, v_glob: Tensor | None) -> None:
    """head_out (n, hd) = probabilities x values: the band blocks x value spans (blocks, c + 2w, hd), plus global."""
    blocks, c, _ = chunk.block_scores.shape
    _span_product(chunk.block_scores, v_spans, chunk.head_out.view(blocks, c, -1))
    if v_glob is not None:
        chunk.head_out.addmm_(chunk.global_scores[:, : chunk.num_global], v_glob)


def _copy_probs(chunk: _Chunk, dest: Tensor, w: int, x: int) -> None:
    """Write the chunk's probabilities into dest (r1 - r0, x + 2w + 1), LED's layout: global columns, then window slots."""
    c = chunk.block_scores.shape[1]
    rows = chunk.r1 - chunk.r0
    # the band first: this large copy runs on all threads and takes the page faults of the fresh
    # output tensor; the narrow global columns follow
    diagonals = _diagonals(chunk.block_scores, w)  # (blocks, c, 2w + 1) view
    whole = rows // c  # whole blocks; the last one of a sequence may be partial
    if whole:
        dest[: whole * c, x:].view(whole, c, 2 * w + 1).copy_(diagonals[:whole])
    if whole * c < rows:
        dest[whole * c:, x:] = diagonals[whole, : rows - whole * c]
    if x:
        dest[:, :x] = chunk.global_scores[:rows, :x]
