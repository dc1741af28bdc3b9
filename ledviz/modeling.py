"""LED (Longformer-Encoder-Decoder) in plain PyTorch.

Read top to bottom: the encoder's sliding-window + global self-attention (a plain reference
path and a blocked fast path that give the same probabilities), the BART-style decoder, the
encoder/decoder stacks, `LEDModel`, and the task heads. Parameter names follow the public
checkpoints (`led.encoder.layers.0.self_attn.longformer_self_attn.query.weight`, ...), so
their state dicts load as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import LEDConfig
from .errors import InputError
from .outputs import (
    BaseModelOutputWithPastAndCrossAttentions,
    LEDEncoderBaseModelOutput,
    LEDSeq2SeqLMOutput,
    LEDSeq2SeqModelOutput,
    LEDSeq2SeqQuestionAnsweringModelOutput,
    LEDSeq2SeqSequenceClassifierOutput,
)
from .generation import GenerationMixin
from .pretrained import LEDPreTrainedModel

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "tanh": torch.tanh,
}
# the encoder's inference path works on slices of about this many bytes: the scores of a chunk
# of query blocks, and the feed-forward activations of a slice of rows
INFERENCE_CHUNK_BYTES = 32 << 20
# in-place versions, used by the encoder's inference path
_INPLACE_ACTIVATIONS = {
    "gelu": torch.ops.aten.gelu_,
    "relu": torch.relu_,
    "tanh": torch.tanh_,
}

# An attention sink receives each encoder layer's probabilities as they are produced:
# sink(layer_index, local_probs (B, H, N, x + 2w + 1), global_probs (B, H, N, x) or None)
AttentionSink = Callable[[int, torch.Tensor, "torch.Tensor | None"], None]


def get_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation_function {name!r} is not supported; use one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def shift_tokens_right(input_ids: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs from targets: prepend the start token, drop the last token, -100 -> pad."""
    shifted = input_ids.new_zeros(input_ids.shape)
    shifted[:, 1:] = input_ids[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


# ---------------------------------------------------------------------------------------------
# Encoder self-attention: which tokens are padding / global, shared by all layers of one forward
# ---------------------------------------------------------------------------------------------

@dataclass
class GlobalLayout:
    """Padding and global-attention bookkeeping for one (padded) batch.

    is_padding, is_global: (B, L) bool.  global_index: (B, x) positions of each element's global
    tokens in ascending order, 0 where unused; global_valid: (B, x) which of those slots are used.
    """

    is_padding: torch.Tensor
    is_global: torch.Tensor
    global_index: torch.Tensor
    global_valid: torch.Tensor
    # scratch memory of the inference path, reused by every layer of one forward pass
    workspace: dict = field(default_factory=dict, repr=False, compare=False)

    def buffer(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An uninitialised scratch tensor of `shape`, shared by all layers of this forward pass.

        Fresh large tensors cost page faults on every use; reusing one allocation keeps the
        matrix products at full speed. Callers must not return a buffer or keep it past a layer.
        """
        numel = math.prod(shape)
        buf = self.workspace.get(name)
        if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
            buf = self.workspace[name] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buf[:numel].view(shape)

    @property
    def num_global(self) -> int:
        return self.global_index.shape[1]

    @classmethod
    def from_mask(cls, mask_state: torch.Tensor) -> "GlobalLayout":
        """mask_state: (B, L) with 0 = padding, 1 = local, 2 = global."""
        is_padding = mask_state == 0
        is_global = mask_state == 2
        counts = is_global.sum(dim=1)  # (B,)
        x = int(counts.max()) if counts.numel() else 0
        # stable sort puts global positions first, in ascending order
        order = torch.sort((~is_global).to(torch.int8), dim=1, stable=True).indices[:, :x]  # (B, x)
        valid = torch.arange(x, device=mask_state.device)[None, :] < counts[:, None]  # (B, x)
        return cls(is_padding, is_global, order.masked_fill(~valid, 0), valid)


def _pad_seq(t: torch.Tensor, before: int, after: int, value: float = 0.0, dim: int = -2) -> torch.Tensor:
    """Pad tensor `t` along `dim` with `before`/`after` entries of `value`."""
    pad = [0, 0] * (t.dim() - 1 - (dim % t.dim())) + [before, after]
    return F.pad(t, pad, value=value)


def _window_key_mask(layout: GlobalLayout, w: int) -> torch.Tensor:
    """(B, L, 2w+1) True where window slot d of query i must be dropped: outside, padding or global key."""
    drop = (layout.is_padding | layout.is_global).to(torch.uint8)
    drop = F.pad(drop, (w, w), value=1)  # (B, L + 2w): slots outside the sequence
    return drop.unfold(1, 2 * w + 1, 1).bool()  # (B, L, 2w+1)


def _band_scores_plain(q: torch.Tensor, k: torch.Tensor, w: int) -> torch.Tensor:
    """Reference band scores: (B, H, L, hd) x (B, H, L, hd) -> (B, H, L, 2w+1), slot w + d = key i + d."""
    k_win = _pad_seq(k, w, w).unfold(2, 2 * w + 1, 1)  # (B, H, L, hd, 2w+1)
    return torch.einsum("bhld,bhldw->bhlw", q, k_win)


def _band_output_plain(p: torch.Tensor, v: torch.Tensor, w: int) -> torch.Tensor:
    """Reference band output: probs (B, H, L, 2w+1) x values (B, H, L, hd) -> (B, H, L, hd)."""
    v_win = _pad_seq(v, w, w).unfold(2, 2 * w + 1, 1)  # (B, H, L, hd, 2w+1)
    return torch.einsum("bhlw,bhldw->bhld", p, v_win)


def _diagonals(blocks: torch.Tensor, w: int) -> torch.Tensor:
    """View of the band inside block scores: (..., c, c + 2w) -> (..., c, 2w+1), [i, s] = blocks[i, i + s]."""
    c = blocks.shape[-2]
    size = blocks.shape[:-2] + (c, 2 * w + 1)
    stride = blocks.stride()[:-2] + (blocks.stride(-2) + blocks.stride(-1), blocks.stride(-1))
    return blocks.as_strided(size, stride, blocks.storage_offset())


class _BlockMask:
    """What to drop in the (c, c + 2w) band blocks and the (c, x) global columns of one sequence, kept small.

    Most of a block is inside the band and valid; only two triangles (keys before a row's window
    and after it) and a few columns (padding, global or out-of-sequence keys) must be dropped, so
    they are filled directly instead of masking the whole block. Unused global slots are dropped
    from the global columns.
    """

    def __init__(self, layout: GlobalLayout, b: int, w: int, c: int, length: int):
        L = layout.is_padding.shape[1]
        dev = layout.is_padding.device
        self.c, self.w = c, w
        lower = torch.ones(c, c, dtype=torch.bool, device=dev).tril_(-1)  # keys left of the window
        self.before, self.after = lower, lower.t()  # after: keys right of the window
        keys = F.pad((layout.is_padding[b] | layout.is_global[b]).to(torch.uint8), (w, w + length - L), value=1)
        key_drop = keys.unfold(0, c + 2 * w, c).bool()  # (nb, c + 2w)
        self.block, self.col = key_drop.nonzero(as_tuple=True)  # ascending blocks
        self.block_cpu = self.block.cpu()
        self.slots = (~layout.global_valid[b]).nonzero().flatten()

    def columns(self, j0: int, j1: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(block - j0, column) of the dropped key columns in blocks j0..j1-1, or None."""
        lo, hi = torch.searchsorted(self.block_cpu, torch.tensor([j0, j1])).tolist()  # no device sync
        return (self.block[lo:hi] - j0, self.col[lo:hi]) if hi > lo else None

    def apply(self, band: torch.Tensor, columns: tuple[torch.Tensor, torch.Tensor] | None, neg: float) -> None:
        """Fill the dropped entries of a chunk of blocks, `band` (blocks, c, c + 2w), with `neg`;
        `columns` is what `columns()` gave for that chunk."""
        c, w = self.c, self.w
        band[..., :c].masked_fill_(self.before, neg)
        band[..., 2 * w: 2 * w + c].masked_fill_(self.after, neg)
        if columns is not None:
            band[columns[0], :, columns[1]] = neg


def _join_global_softmax(band: torch.Tensor, glob: torch.Tensor, band_max: torch.Tensor, glob_max: torch.Tensor,
                         scale: torch.Tensor) -> None:
    """Turn a row-wise softmax over the band alone into one over [global columns, band], in place.

    band (n, W): softmax of the band scores, whose row maxima were `band_max` (n,) before it;
    glob (n, x): the global scores, replaced by their probabilities. The largest band
    probability of a row is 1 / Z_band, with Z_band = sum(exp(s - band_max)); with the
    joint maximum m, the joint normaliser is Z_band exp(band_max - m) + sum(exp(g - m)).
    glob_max and scale are (n,) scratch.
    """
    torch.amax(glob, dim=-1, out=glob_max)
    torch.maximum(band_max, glob_max, out=glob_max)  # joint row maximum m
    glob.sub_(glob_max[:, None]).exp_()
    torch.amax(band, dim=-1, out=scale)  # 1 / Z_band
    band_max.sub_(glob_max).exp_().div_(scale)  # Z_band exp(band_max - m): the band's share
    torch.add(band_max, glob.sum(dim=-1), out=scale)  # joint normaliser
    glob.div_(scale[:, None])
    band.mul_(band_max.div_(scale)[:, None])


def _block_spans(t: torch.Tensor, w: int, c: int, length: int) -> torch.Tensor:
    """Key/value spans of each query block: (B, H, L, hd) -> (B, H, L'/c, c + 2w, hd), span k = keys [kc - w, kc + c + w)."""
    padded = _pad_seq(t, w, w + length - t.shape[2])  # (B, H, L' + 2w, hd)
    return padded.unfold(2, c + 2 * w, c).transpose(-1, -2)  # (B, H, nb, c + 2w, hd)


def _band_scores_blocked(q: torch.Tensor, k: torch.Tensor, w: int, c: int) -> torch.Tensor:
    """Band scores by query blocks of c against key spans of c + 2w: same numbers as the plain path."""
    B, H, L, hd = q.shape
    Lb = -(-L // c) * c  # round up to a multiple of the block
    qb = _pad_seq(q, 0, Lb - L).view(B, H, Lb // c, c, hd)
    scores = qb @ _block_spans(k, w, c, Lb).transpose(-1, -2)  # (B, H, nb, c, c + 2w)
    return _diagonals(scores, w).reshape(B, H, Lb, 2 * w + 1)[:, :, :L]


def _band_output_blocked(p: torch.Tensor, v: torch.Tensor, w: int, c: int) -> torch.Tensor:
    """Band output by blocks: scatter the band into (c, c + 2w) blocks, multiply by the value spans."""
    B, H, L, _ = p.shape
    Lb = -(-L // c) * c
    blocks = p.new_zeros(B, H, Lb // c, c, c + 2 * w)
    _diagonals(blocks, w).copy_(_pad_seq(p, 0, Lb - L).view(B, H, Lb // c, c, 2 * w + 1))
    out = blocks @ _block_spans(v, w, c, Lb)  # (B, H, nb, c, hd)
    return out.reshape(B, H, Lb, -1)[:, :, :L]


def _gather_positions(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, H, L, d) gathered at positions index (B, x) -> (B, H, x, d)."""
    B, H, _, d = t.shape
    return t.gather(2, index[:, None, :, None].expand(B, H, index.shape[1], d))


class LEDEncoderSelfAttention(nn.Module):
    """Longformer self-attention: a sliding window of +-w tokens, plus global tokens that see and are seen by all.

    `impl` picks how the band is computed: "blocked" (default, query blocks against key spans of
    block + 2w) or "plain" (one gathered window per query: the readable reference). Both return
    the same probabilities.
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
        self.impl = "blocked"
        self.block_size: int | None = None  # None: the one-sided window, clamped to [32, 128]

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, H, L, hd)."""
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)

    def _block(self) -> int:
        w = self.one_sided_attn_window_size
        # small blocks waste little of the (c, c + 2w) products outside the band
        return self.block_size or min(128, max(32, w))

    def forward(
        self,
        hidden_states: torch.Tensor,
        layout: GlobalLayout,
        layer_head_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        probs_dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """hidden_states (B, L, D), L padded to a multiple of the window.

        Returns the attention output (B, L, D), the local probabilities (B, H, L, x + 2w + 1) and
        the global probabilities (B, H, x, L) (these two only with output_attentions).
        Without autograd the blocked path runs head group by head group (see _forward_fast).
        """
        if self.impl == "blocked" and not (torch.is_grad_enabled() and hidden_states.requires_grad):
            return self._forward_fast(hidden_states, layout, layer_head_mask, output_attentions, probs_dtype)
        B, L, D = hidden_states.shape
        w, x = self.one_sided_attn_window_size, layout.num_global
        neg = torch.finfo(hidden_states.dtype).min
        q = self._heads(self.query(hidden_states)) / math.sqrt(self.head_dim)  # (B, H, L, hd)
        k = self._heads(self.key(hidden_states))
        v = self._heads(self.value(hidden_states))

        # window scores, with padding / global / out-of-sequence keys removed
        if self.impl == "plain":
            band = _band_scores_plain(q, k, w)
        else:
            band = _band_scores_blocked(q, k, w, self._block())
        band = band.masked_fill(_window_key_mask(layout, w)[:, None], neg)  # (B, H, L, 2w+1)

        # every query also scores every global key (local projections); unused slots removed
        if x:
            k_glob = _gather_positions(k, layout.global_index)  # (B, H, x, hd)
            v_glob = _gather_positions(v, layout.global_index)
            glob = (q @ k_glob.transpose(-1, -2)).masked_fill(~layout.global_valid[:, None, None, :], neg)
            scores = torch.cat([glob, band], dim=-1)  # (B, H, L, x + 2w + 1)
        else:
            scores = band
        probs = scores.softmax(dim=-1, dtype=torch.float32)
        if layer_head_mask is not None:
            probs = layer_head_mask.view(1, -1, 1, 1) * probs
        probs = probs.masked_fill(layout.is_padding[:, None, :, None], 0.0).type_as(scores)
        probs = F.dropout(probs, p=self.dropout, training=self.training)

        # output of the local rows: global columns + band
        band_probs = probs[..., x:]
        if self.impl == "plain":
            out = _band_output_plain(band_probs, v, w)
        else:
            out = _band_output_blocked(band_probs, v, w, self._block())
        if x:
            out = out + probs[..., :x] @ v_glob  # (B, H, L, hd)

        global_probs = None
        if x:
            out, global_probs = self._global_rows(hidden_states, out, layout, layer_head_mask)
            # rows of global queries were computed above only as filler: zero them
            probs = probs.masked_fill(layout.is_global[:, None, :, None], 0.0)
        out = out.transpose(1, 2).reshape(B, L, D)
        if not output_attentions:
            return out, None, None
        return out, probs.to(probs_dtype or probs.dtype), global_probs

    def _forward_fast(self, hidden_states, layout, layer_head_mask, output_attentions, probs_dtype):
        """Inference path: a few query blocks at a time, head by head, softmax in place, no copies of k or v.

        k and v come from one matrix product written between w zero rows on each side, so the
        key (value) span [kc - w, kc + c + w) of every query block of c rows is a strided view;
        the queries are projected one chunk of blocks at a time. For each chunk and head, the
        block scores against the c + 2w span keys go into one contiguous (c, c + 2w) buffer per
        block (a product written into a strided view runs at half speed) and those against the x
        global keys into a small (c, x) one; entries outside each row's window are masked, the
        softmax runs in place over the band and is then joined with the global columns
        (`_join_global_softmax`), and the same buffer, now zero outside the band, multiplies the
        value spans. The returned probabilities (x global columns, then the 2w + 1 window slots)
        are read off the blocks' diagonals only when asked for. The scratch buffers are shared by
        all layers of a forward pass (`layout.buffer`).
        """
        B, L, D = hidden_states.shape
        H, hd, w, x = self.num_heads, self.head_dim, self.one_sided_attn_window_size, layout.num_global
        c = self._block()
        Lb = -(-L // c) * c  # rows rounded up to whole blocks
        nb, span, W = Lb // c, 2 * w + 1, c + 2 * w
        dtype = hidden_states.dtype
        neg = torch.finfo(dtype).min

        # [w zero rows | k v of the L positions | w + Lb - L zero rows]: every key span is a view
        kv = layout.buffer("keys_values", (B, Lb + 2 * w, 2 * D), hidden_states)
        kv[:, :w] = 0
        kv[:, w + L:] = 0
        weight = torch.cat([self.key.weight, self.value.weight])
        bias = torch.cat([self.key.bias, self.value.bias])
        for b in range(B):
            torch.addmm(bias, hidden_states[b], weight.t(), out=kv[b, w: w + L])
        heads = kv.view(B, Lb + 2 * w, 2, H, hd)
        if x:
            at = layout.global_index + w  # (B, x) rows of the global tokens
            k_glob = heads[:, :, 0].gather(1, at[:, :, None, None].expand(B, x, H, hd))  # (B, x, H, hd)
            v_glob = heads[:, :, 1].gather(1, at[:, :, None, None].expand(B, x, H, hd))

        chunk = _slice_rows(nb, c * W * hidden_states.element_size())  # blocks per step
        band_buf = layout.buffer("scratch", (chunk, c, W), hidden_states)  # shared with the feed-forward
        q_buf = layout.buffer("queries", (chunk * c, D), hidden_states)
        o_buf = layout.buffer("head_out", (chunk * c, hd), hidden_states)
        if x:
            glob_buf = layout.buffer("global_scores", (chunk * c, x), hidden_states)
            stats = layout.buffer("row_stats", (3, chunk * c), hidden_states)
        out = hidden_states.new_empty(B, L, D)
        out_heads = out.view(B, L, H, hd)
        probs_out = hidden_states.new_empty(B, H, L, x + span, dtype=probs_dtype or dtype) if output_attentions else None
        for b in range(B):
            mask = _BlockMask(layout, b, w, c, Lb)
            pad_rows = layout.is_padding[b].nonzero().flatten().cpu()  # chosen per chunk without device syncs
            for j0 in range(0, nb, chunk):
                j1 = min(nb, j0 + chunk)
                r0, r1 = j0 * c, min(L, j1 * c)  # rows of the sequence in this chunk
                n = (j1 - j0) * c
                # the queries of this chunk only, scaled; rows past the sequence are zero
                q = q_buf[:n]
                torch.addmm(self.query.bias, hidden_states[b, r0:r1], self.query.weight.t(), out=q[: r1 - r0])
                q[r1 - r0:] = 0
                q.div_(math.sqrt(hd))
                q_heads = q.view(n, H, hd)
                here = pad_rows[(pad_rows >= r0) & (pad_rows < r1)] - r0
                dropped = mask.columns(j0, j1)
                band = band_buf[: j1 - j0]  # contiguous: a matrix product into a strided view is much slower
                rows = band.view(n, W)
                o = o_buf[:n]
                if x:
                    glob = glob_buf[:n]
                    band_max, glob_max, scale = stats[:, :n]
                for h in range(H):
                    k_spans = heads[b, :, 0, h].unfold(0, W, c)  # (nb, hd, W) view
                    v_spans = heads[b, :, 1, h].unfold(0, W, c).transpose(1, 2)  # (nb, W, hd) view
                    torch.bmm(q_heads[:, h].view(j1 - j0, c, hd), k_spans[j0:j1], out=band)
                    mask.apply(band, dropped, neg)
                    if x:
                        torch.mm(q_heads[:, h], k_glob[b, :, h].t(), out=glob)
                        if len(mask.slots):
                            glob[:, mask.slots] = neg
                        torch.amax(rows, dim=-1, out=band_max)
                    torch.softmax(band, dim=-1, out=band)
                    if x:
                        _join_global_softmax(rows, glob, band_max, glob_max, scale)
                    if layer_head_mask is not None:
                        band.mul_(layer_head_mask[h].to(dtype))
                        if x:
                            glob.mul_(layer_head_mask[h].to(dtype))
                    if len(here):
                        idx = here.to(rows.device)
                        rows.index_fill_(0, idx, 0.0)  # padding queries attend nowhere
                        if x:
                            glob.index_fill_(0, idx, 0.0)
                    torch.bmm(band, v_spans[j0:j1], out=o.view(j1 - j0, c, hd))
                    if x:
                        o.addmm_(glob, v_glob[b, :, h])
                    out_heads[b, r0:r1, h] = o[: r1 - r0]
                    if output_attentions:
                        # the band first: this large copy runs on all threads and takes the page
                        # faults of the fresh output tensor; the narrow global columns follow
                        dest = probs_out[b, h, r0:r1]
                        diag = _diagonals(band, w)  # (j1 - j0, c, 2w + 1) view
                        whole = (r1 - r0) // c
                        if whole:
                            dest[: whole * c, x:].view(whole, c, span).copy_(diag[:whole])
                        if whole * c < r1 - r0:
                            dest[whole * c:, x:] = diag[whole, : r1 - r0 - whole * c]
                        if x:
                            dest[:, :x] = glob[: r1 - r0]
        if output_attentions:
            glob_b, glob_i = layout.is_global.nonzero(as_tuple=True)
            if len(glob_b):
                probs_out[glob_b, :, glob_i] = 0.0  # rows of global queries live in the global probabilities
        global_probs = None
        if x:
            # their rows are written into `out` through a (B, H, L, hd) view of it
            _, global_probs = self._global_rows(hidden_states, out_heads.permute(0, 2, 1, 3), layout,
                                                layer_head_mask, folded=2 * x * H <= D, in_place=True)
        return out, probs_out, global_probs

    def _global_rows(
        self, hidden_states: torch.Tensor, out: torch.Tensor, layout: GlobalLayout, layer_head_mask: torch.Tensor | None,
        folded: bool = False, in_place: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Global queries attend to every non-padding key with the *_global projections; their rows replace the local ones.

        With `folded`, the key and value projections are not applied to all L positions: each
        global query is folded into the key weights (scores = (q W_k) h, the key bias adds the
        same constant to a whole row and cancels in the softmax), and the value weights are
        applied after the probabilities (p (h W_v^T + b) = (p h) W_v^T + (sum p) b). That costs
        O(x H L D) instead of O(L D^2): the cheaper way when there are few global tokens.
        """
        B, L, D = hidden_states.shape
        H, hd, x = self.num_heads, self.head_dim, layout.num_global
        neg = torch.finfo(hidden_states.dtype).min
        h_glob = hidden_states.gather(1, layout.global_index[:, :, None].expand(B, x, D))  # (B, x, D)
        q = self._heads(self.query_global(h_glob)) / math.sqrt(self.head_dim)  # (B, H, x, hd)
        if folded:
            q_folded = (q @ self.key_global.weight.view(H, hd, D)).reshape(B, H * x, D)
            scores = (q_folded @ hidden_states.transpose(1, 2)).view(B, H, x, L)
        else:
            k = self._heads(self.key_global(hidden_states))  # (B, H, L, hd)
            scores = q @ k.transpose(-1, -2)  # (B, H, x, L)
        scores = scores.masked_fill(layout.is_padding[:, None, None, :], neg)
        probs = scores.softmax(dim=-1, dtype=torch.float32)
        if layer_head_mask is not None:
            probs = layer_head_mask.view(1, -1, 1, 1) * probs
        # unused global slots attend nowhere (transformers fills them with 1/L instead)
        probs = probs.masked_fill(~layout.global_valid[:, None, :, None], 0.0).type_as(scores)
        probs = F.dropout(probs, p=self.dropout, training=self.training)
        if folded:
            mixed = (probs.reshape(B, H * x, L) @ hidden_states).view(B, H, x, D)
            g_out = mixed @ self.value_global.weight.view(H, hd, D).transpose(-1, -2)  # (B, H, x, hd)
            g_out = g_out + probs.sum(-1, keepdim=True) * self.value_global.bias.view(H, 1, hd)
        else:
            g_out = probs @ self._heads(self.value_global(hidden_states))  # (B, H, x, hd)
        # write the rows of the used slots back at their positions
        b_idx, slot = layout.global_valid.nonzero(as_tuple=True)
        if not in_place:
            out = out.clone()
        out[b_idx, :, layout.global_index[b_idx, slot]] = g_out[b_idx, :, slot]
        return out, probs


def _slice_rows(n: int, row_bytes: int) -> int:
    """How many of n rows (blocks) of `row_bytes` scratch each one slice of the inference path takes."""
    return max(1, min(n, INFERENCE_CHUNK_BYTES // row_bytes))


def _rows_in_place(x: torch.Tensor, layout: GlobalLayout, rows: int,
                   fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """x (N, D) <- fn(x), `rows` rows at a time, for a row-wise fn(part, buf) that returns its
    (part rows, D) result (buf is a scratch buffer of that shape it may write into): no second
    (N, D) tensor."""
    N, D = x.shape
    buf = layout.buffer("row_out", (rows, D), x)
    for r0 in range(0, N, rows):
        part = x[r0: r0 + rows]
        part.copy_(fn(part, buf[: part.shape[0]]))


class LEDEncoderAttention(nn.Module):
    """Longformer self-attention followed by the output projection."""

    def __init__(self, config: LEDConfig, layer_id: int):
        super().__init__()
        self.longformer_self_attn = LEDEncoderSelfAttention(config, layer_id)
        self.output = nn.Linear(config.d_model, config.d_model)

    def forward(self, hidden_states, layout, layer_head_mask=None, output_attentions=False, probs_dtype=None):
        out, local_probs, global_probs = self.longformer_self_attn(
            hidden_states, layout, layer_head_mask, output_attentions, probs_dtype)
        return self.output(out), local_probs, global_probs


class LEDDecoderAttention(nn.Module):
    """Multi-head attention of the decoder (self or cross), with a key/value cache."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, is_decoder: bool = True, bias: bool = True):
        super().__init__()
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.scaling = self.head_dim ** -0.5
        self.dropout = dropout
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        past_key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        layer_head_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ):
        """attention_mask: additive (B, 1, T, S). Returns output (B, T, D), probs (B, H, T, S), the (k, v) cache."""
        B, T, D = hidden_states.shape
        q = self._heads(self.q_proj(hidden_states) * self.scaling)
        if key_value_states is not None:
            # cross-attention: keys/values of the encoder output are computed once, then reused
            if past_key_value is not None:
                k, v = past_key_value
            else:
                k, v = self._heads(self.k_proj(key_value_states)), self._heads(self.v_proj(key_value_states))
        else:
            k, v = self._heads(self.k_proj(hidden_states)), self._heads(self.v_proj(hidden_states))
            if past_key_value is not None:
                k = torch.cat([past_key_value[0], k], dim=2)
                v = torch.cat([past_key_value[1], v], dim=2)
        scores = q @ k.transpose(-1, -2)  # (B, H, T, S)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = scores.softmax(dim=-1)
        if layer_head_mask is not None:
            probs = layer_head_mask.view(1, -1, 1, 1) * probs
        out = F.dropout(probs, p=self.dropout, training=self.training) @ v  # (B, H, T, hd)
        out = self.out_proj(out.transpose(1, 2).reshape(B, T, D))
        return out, (probs if output_attentions else None), (k, v)


# ---------------------------------------------------------------------------------------------
# Layers and stacks
# ---------------------------------------------------------------------------------------------

class LEDEncoderLayer(nn.Module):
    def __init__(self, config: LEDConfig, layer_id: int):
        super().__init__()
        d = config.d_model
        self.self_attn = LEDEncoderAttention(config, layer_id)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.dropout, self.activation_dropout = config.dropout, config.activation_dropout
        self.activation_fn = get_activation(config.activation_function)
        self.activation_inplace = _INPLACE_ACTIVATIONS.get(config.activation_function)

    def forward(self, hidden_states, layout, layer_head_mask=None, output_attentions=False, probs_dtype=None):
        # attention block (post-LayerNorm)
        residual = hidden_states
        h, local_probs, global_probs = self.self_attn.longformer_self_attn(
            hidden_states, layout, layer_head_mask, output_attentions, probs_dtype)
        if not self.training and not (torch.is_grad_enabled() and h.requires_grad):
            h = self._tail_inference(h.contiguous(), residual, layout)
        else:
            h = self.self_attn.output(h)
            h = residual + F.dropout(h, p=self.dropout, training=self.training)
            h = self.self_attn_layer_norm(h)
            # feed-forward block
            residual = h
            f = F.dropout(self.activation_fn(self.fc1(h)), p=self.activation_dropout, training=self.training)
            h = residual + F.dropout(self.fc2(f), p=self.dropout, training=self.training)
            h = self.final_layer_norm(h)
        if h.dtype == torch.float16 and not torch.isfinite(h).all():
            limit = torch.finfo(h.dtype).max - 1000
            h = h.clamp(-limit, limit)
        return h, local_probs, global_probs

    def _tail_inference(self, h: torch.Tensor, residual: torch.Tensor, layout: GlobalLayout) -> torch.Tensor:
        """Output projection, residual sums, layer norms and feed-forward without autograd, written
        over `h` (the attention output, which only this layer holds) a slice of rows at a time: no
        second (L, D) tensor, and the (L, ffn) activations of a long document only ever a slice
        at a time, in a scratch buffer shared by the layers of the pass."""
        B, L, D = h.shape
        flat = h.view(B * L, D)
        ffn = self.fc1.out_features
        rows = _slice_rows(B * L, ffn * h.element_size())
        scratch = layout.buffer("scratch", (rows, ffn), h)  # shared with the attention scores
        proj, ln1, ln2 = self.self_attn.output, self.self_attn_layer_norm, self.final_layer_norm

        def layer_norm(ln: nn.LayerNorm, t: torch.Tensor) -> torch.Tensor:
            return F.layer_norm(t, ln.normalized_shape, ln.weight, ln.bias, ln.eps)

        def feed_forward(part: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
            f = torch.addmm(self.fc1.bias, part, self.fc1.weight.t(), out=scratch[: part.shape[0]])
            if self.activation_inplace is not None:
                self.activation_inplace(f)
            else:
                f = self.activation_fn(f)
            return layer_norm(ln2, torch.addmm(self.fc2.bias, f, self.fc2.weight.t(), out=buf).add_(part))

        _rows_in_place(flat, layout, rows, lambda part, buf: torch.addmm(proj.bias, part, proj.weight.t(), out=buf))
        flat.add_(residual.reshape(B * L, D))
        _rows_in_place(flat, layout, rows, lambda part, buf: layer_norm(ln1, part))
        _rows_in_place(flat, layout, rows, feed_forward)
        return h


class LEDDecoderLayer(nn.Module):
    def __init__(self, config: LEDConfig):
        super().__init__()
        d, h = config.d_model, config.decoder_attention_heads
        self.self_attn = LEDDecoderAttention(d, h, dropout=config.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.encoder_attn = LEDDecoderAttention(d, h, dropout=config.attention_dropout)
        self.encoder_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, config.decoder_ffn_dim)
        self.fc2 = nn.Linear(config.decoder_ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.dropout, self.activation_dropout = config.dropout, config.activation_dropout
        self.activation_fn = get_activation(config.activation_function)

    def forward(self, hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask,
                layer_head_mask=None, cross_attn_layer_head_mask=None, past_key_value=None, output_attentions=False,
                cross_group: int = 1):
        """past_key_value: (self_k, self_v, cross_k, cross_v), self part None before the first step.

        cross_group > 1: the decoder rows come in groups of that size per encoder row (the beams of
        one document); each group is folded into one query sequence, so all of them read the same
        cross-attention keys/values without a copy per row. Returns h, self probs, cross probs, cache.
        """
        has_self_past = past_key_value is not None and past_key_value[0] is not None
        self_past = past_key_value[:2] if has_self_past else None
        cross_past = past_key_value[2:] if past_key_value is not None and past_key_value[2] is not None else None
        # causal self-attention
        residual = hidden_states
        h, self_probs, self_kv = self.self_attn(hidden_states, None, self_past, attention_mask, layer_head_mask, output_attentions)
        h = self.self_attn_layer_norm(residual + F.dropout(h, p=self.dropout, training=self.training))
        # cross-attention onto the encoder output
        residual = h
        R, T, D = h.shape
        folded = h.reshape(R // cross_group, cross_group * T, D) if cross_group > 1 else h
        c, cross_probs, cross_kv = self.encoder_attn(
            folded, encoder_hidden_states, cross_past, encoder_attention_mask, cross_attn_layer_head_mask, output_attentions
        )
        if cross_group > 1:
            c = c.reshape(R, T, D)
            if cross_probs is not None:  # (B, H, group * T, N) -> (R, H, T, N)
                B, H, _, N = cross_probs.shape
                cross_probs = cross_probs.view(B, H, cross_group, T, N).transpose(1, 2).reshape(R, H, T, N)
        h = self.encoder_attn_layer_norm(residual + F.dropout(c, p=self.dropout, training=self.training))
        # feed-forward
        residual = h
        f = F.dropout(self.activation_fn(self.fc1(h)), p=self.activation_dropout, training=self.training)
        h = self.final_layer_norm(residual + F.dropout(self.fc2(f), p=self.dropout, training=self.training))
        return h, self_probs, cross_probs, self_kv + cross_kv


class LEDLearnedPositionalEmbedding(nn.Embedding):
    """Learned absolute positions 0, 1, ... (no offset, unlike BART)."""

    def forward(self, seq_len: int, past_len: int = 0) -> torch.Tensor:  # type: ignore[override]
        positions = torch.arange(past_len, past_len + seq_len, dtype=torch.long, device=self.weight.device)
        return super().forward(positions)


def _check_mask(name: str, mask: torch.Tensor | None, shape: tuple[int, ...]) -> None:
    if mask is not None and tuple(mask.shape) != tuple(shape):
        raise InputError(
            f"{name} has shape {tuple(mask.shape)} but the input has shape {tuple(shape)}: "
            f"give one mask value per input token"
        )


def _inverted_mask(mask: torch.Tensor, dtype: torch.dtype, tgt_len: int) -> torch.Tensor:
    """(B, S) 1/0 mask -> additive (B, 1, tgt_len, S) with the dtype's minimum where masked."""
    m = mask[:, None, None, :].to(torch.bool).expand(mask.shape[0], 1, tgt_len, mask.shape[1])
    return torch.zeros(m.shape, dtype=dtype, device=mask.device).masked_fill(~m, torch.finfo(dtype).min)


class LEDEncoder(LEDPreTrainedModel):
    """Embeddings and the Longformer encoder layers; pads to a multiple of the window and trims back."""

    def __init__(self, config: LEDConfig, embed_tokens: nn.Embedding | None = None):
        super().__init__(config)
        self.dropout, self.layerdrop = config.dropout, config.encoder_layerdrop
        self.padding_idx = config.pad_token_id
        self.max_source_positions = config.max_encoder_position_embeddings
        self.embed_tokens = embed_tokens or nn.Embedding(config.vocab_size, config.d_model, self.padding_idx)
        self.embed_positions = LEDLearnedPositionalEmbedding(config.max_encoder_position_embeddings, config.d_model)
        self.layers = nn.ModuleList([LEDEncoderLayer(config, i) for i in range(config.encoder_layers)])
        self.layernorm_embedding = nn.LayerNorm(config.d_model)
        self.gradient_checkpointing = False
        self.post_init()

    def set_attention_impl(self, impl: str, block_size: int | None = None) -> None:
        """Choose the band computation: "blocked" (fast, default) or "plain" (reference)."""
        if impl not in ("blocked", "plain"):
            raise ValueError(f"attention impl must be 'blocked' or 'plain', got {impl!r}")
        for layer in self.layers:
            layer.self_attn.longformer_self_attn.impl = impl
            layer.self_attn.longformer_self_attn.block_size = block_size

    def _pad_to_window(self, input_ids, mask_state, inputs_embeds):
        """Right-pad ids/embeddings/mask to a multiple of the largest attention window."""
        window = max(self.config.attention_windows())
        L = inputs_embeds.shape[1]
        pad = (window - L % window) % window
        if L + pad > self.max_source_positions:
            raise InputError(
                f"the input has {L} tokens (padded to {L + pad}, a multiple of the attention window {window}), "
                f"but this model reads at most {self.max_source_positions} tokens "
                f"(max_encoder_position_embeddings): truncate the input, e.g. tokenizer(..., truncation=True, "
                f"max_length={self.max_source_positions - (self.max_source_positions % window)})"
            )
        if pad:
            if input_ids is not None:
                input_ids = F.pad(input_ids, (0, pad), value=self.padding_idx)
            pad_ids = torch.full((inputs_embeds.shape[0], pad), self.padding_idx, dtype=torch.long, device=inputs_embeds.device)
            inputs_embeds = torch.cat([inputs_embeds, self.embed_tokens(pad_ids)], dim=1)
            mask_state = F.pad(mask_state, (0, pad), value=0)
        return pad, input_ids, mask_state, inputs_embeds

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        attention_sink: AttentionSink | None = None,
        attention_layers: list[int] | None = None,
        attention_dtype: torch.dtype | None = None,
    ):
        """Encode a batch. `global_attention_mask` 1 marks global tokens (padding wins over global).

        Keeping attentions: `output_attentions` returns them all; `attention_layers` keeps only
        those layers (others are None), `attention_dtype` stores them in reduced precision, and
        `attention_sink(layer, local, global)` receives each layer's (trimmed) probabilities as the
        encoder produces them, so a caller can reduce them without holding every layer at once.
        """
        cfg = self.config
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = cfg.return_dict if return_dict is None else return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("give exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            if input_ids.dim() != 2:
                raise InputError(f"input_ids must have shape (batch, sequence), got {tuple(input_ids.shape)}")
            if input_ids.shape[1] == 0:
                raise InputError("input_ids is empty: the document has no tokens")
            inputs_embeds = self.embed_tokens(input_ids)
        B, N = inputs_embeds.shape[:2]
        _check_mask("attention_mask", attention_mask, (B, N))
        _check_mask("global_attention_mask", global_attention_mask, (B, N))

        # 0 = padding, 1 = local, 2 = global (padding wins over global)
        keep = torch.ones(B, N, dtype=torch.long, device=inputs_embeds.device) if attention_mask is None else (attention_mask > 0).long()
        mask_state = keep if global_attention_mask is None else keep * (1 + (global_attention_mask > 0).long())
        pad, input_ids, mask_state, inputs_embeds = self._pad_to_window(input_ids, mask_state, inputs_embeds)
        layout = GlobalLayout.from_mask(mask_state)
        if head_mask is not None and head_mask.shape[0] != len(self.layers):
            raise InputError(f"head_mask is given for {head_mask.shape[0]} layers, but the encoder has {len(self.layers)}")

        # embeddings
        h = inputs_embeds + self.embed_positions(inputs_embeds.shape[1]).to(inputs_embeds.dtype)
        h = F.dropout(self.layernorm_embedding(h), p=self.dropout, training=self.training)
        del inputs_embeds  # (B, L, D): not needed past here, and large for a long document

        want_probs = output_attentions or attention_sink is not None
        all_hidden = [] if output_hidden_states else None
        all_local = [] if output_attentions else None
        all_global = [] if (output_attentions and layout.num_global) else None
        for idx, layer in enumerate(self.layers):
            if output_hidden_states:
                all_hidden.append(h)
            if self.training and torch.rand([]) < self.layerdrop:  # LayerDrop
                local_probs = global_probs = None
            else:
                layer_mask = head_mask[idx] if head_mask is not None else None
                keep_this = want_probs and (attention_layers is None or idx in attention_layers)
                if self.gradient_checkpointing and self.training:
                    h, local_probs, global_probs = checkpoint(layer, h, layout, layer_mask, keep_this, attention_dtype,
                                                              use_reentrant=False)
                else:
                    h, local_probs, global_probs = layer(h, layout, layer_mask, keep_this, attention_dtype)
            # trim padding and put the global probabilities as (B, H, N, x)
            if local_probs is not None:
                local_probs = local_probs[:, :, :N]
                if global_probs is not None:
                    global_probs = global_probs.transpose(2, 3)[:, :, :N]
                if attention_dtype is not None and global_probs is not None:
                    global_probs = global_probs.to(attention_dtype)
                if attention_sink is not None:
                    attention_sink(idx, local_probs, global_probs)
            if output_attentions:
                all_local.append(local_probs)
                if all_global is not None:
                    all_global.append(global_probs)
        if output_hidden_states:
            all_hidden.append(h)
            all_hidden = tuple(s[:, :N] for s in all_hidden)
        h = h[:, :N]
        all_local = tuple(all_local) if all_local is not None else None
        all_global = tuple(all_global) if all_global is not None else None
        if not return_dict:
            return tuple(v for v in (h, all_hidden, all_local, all_global) if v is not None)
        return LEDEncoderBaseModelOutput(last_hidden_state=h, hidden_states=all_hidden, attentions=all_local,
                                         global_attentions=all_global)


class LEDDecoder(LEDPreTrainedModel):
    """Embeddings and the causal decoder layers with cross-attention onto the encoder output."""

    def __init__(self, config: LEDConfig, embed_tokens: nn.Embedding | None = None):
        super().__init__(config)
        self.dropout, self.layerdrop = config.dropout, config.decoder_layerdrop
        self.padding_idx = config.pad_token_id
        self.max_target_positions = config.max_decoder_position_embeddings
        self.embed_tokens = embed_tokens or nn.Embedding(config.vocab_size, config.d_model, self.padding_idx)
        self.embed_positions = LEDLearnedPositionalEmbedding(config.max_decoder_position_embeddings, config.d_model)
        self.layers = nn.ModuleList([LEDDecoderLayer(config) for _ in range(config.decoder_layers)])
        self.layernorm_embedding = nn.LayerNorm(config.d_model)
        self.gradient_checkpointing = False
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        global_attention_mask: torch.Tensor | None = None,  # accepted for symmetry; the decoder has none
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        past_key_values: tuple | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ):
        cfg = self.config
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        use_cache = cfg.use_cache if use_cache is None else use_cache
        return_dict = cfg.return_dict if return_dict is None else return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("give exactly one of decoder_input_ids and decoder_inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        B, T = inputs_embeds.shape[:2]
        past_len = past_key_values[0][0].shape[2] if past_key_values else 0
        if past_len + T > self.max_target_positions:
            raise InputError(
                f"the decoder input reaches {past_len + T} tokens but the model's decoder reads at most "
                f"{self.max_target_positions} (max_decoder_position_embeddings): generate fewer tokens"
            )
        dtype = inputs_embeds.dtype

        # causal mask (+ decoder padding), only when more than one query (as the reference)
        self_mask = None
        if T > 1:
            causal = torch.ones(T, past_len + T, dtype=torch.bool, device=inputs_embeds.device).tril(past_len)
            self_mask = torch.zeros(B, 1, T, past_len + T, dtype=dtype, device=inputs_embeds.device)
            allowed = causal[None, None]
            if attention_mask is not None:
                _check_mask("decoder_attention_mask", attention_mask, (B, past_len + T))
                allowed = allowed & attention_mask[:, None, None, :].bool()
            self_mask = self_mask.masked_fill(~allowed, torch.finfo(dtype).min)
        cross_mask = None
        if encoder_hidden_states is not None and encoder_attention_mask is not None:
            cross_mask = _inverted_mask(encoder_attention_mask, dtype, T)

        h = inputs_embeds + self.embed_positions(T, past_len).to(dtype)
        h = F.dropout(self.layernorm_embedding(h), p=self.dropout, training=self.training)

        all_hidden = [] if output_hidden_states else None
        all_self = [] if output_attentions else None
        all_cross = [] if output_attentions else None
        cache = [] if use_cache else None
        for idx, layer in enumerate(self.layers):
            if output_hidden_states:
                all_hidden.append(h)
            if self.training and torch.rand([]) < self.layerdrop:
                continue
            args = (h, self_mask, encoder_hidden_states, cross_mask,
                    head_mask[idx] if head_mask is not None else None,
                    cross_attn_head_mask[idx] if cross_attn_head_mask is not None else None,
                    past_key_values[idx] if past_key_values else None, output_attentions)
            if self.gradient_checkpointing and self.training:
                h, self_probs, cross_probs, kv = checkpoint(layer, *args, use_reentrant=False)
            else:
                h, self_probs, cross_probs, kv = layer(*args)
            if use_cache:
                cache.append(kv)
            if output_attentions:
                all_self.append(self_probs)
                all_cross.append(cross_probs)
        if output_hidden_states:
            all_hidden.append(h)
        fields = dict(
            last_hidden_state=h,
            past_key_values=tuple(cache) if use_cache else None,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_self) if output_attentions else None,
            cross_attentions=tuple(all_cross) if output_attentions else None,
        )
        if not return_dict:
            return tuple(v for v in fields.values() if v is not None)
        return BaseModelOutputWithPastAndCrossAttentions(**fields)


def _as_encoder_output(encoder_outputs) -> LEDEncoderBaseModelOutput:
    """Accept an encoder output object or a tuple (hidden, [hidden_states], [attentions], [global])."""
    if isinstance(encoder_outputs, LEDEncoderBaseModelOutput):
        return encoder_outputs
    items = list(encoder_outputs) + [None] * 3
    return LEDEncoderBaseModelOutput(*items[:4])


class LEDModel(LEDPreTrainedModel):
    """The bare LED encoder-decoder, returning the decoder's hidden states."""

    base_model_prefix = ""

    def __init__(self, config: LEDConfig):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.encoder = LEDEncoder(config, self.shared)
        self.decoder = LEDDecoder(config, self.shared)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.shared = value
        self.encoder.embed_tokens = value
        self.decoder.embed_tokens = value

    def get_encoder(self) -> LEDEncoder:
        return self.encoder

    def get_decoder(self) -> LEDDecoder:
        return self.decoder

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        decoder_head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        encoder_outputs=None,
        global_attention_mask: torch.Tensor | None = None,
        past_key_values: tuple | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ):
        cfg = self.config
        return_dict = cfg.return_dict if return_dict is None else return_dict
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        if input_ids is not None and input_ids.dim() == 2 and input_ids.shape[1] == 0:
            raise InputError("input_ids is empty: the document has no tokens")
        # the decoder sees the input shifted right when no decoder input is given
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            if input_ids is None:
                raise InputError("give decoder_input_ids (or decoder_inputs_embeds) when the input is given as inputs_embeds")
            decoder_input_ids = shift_tokens_right(input_ids, cfg.pad_token_id, cfg.decoder_start_token_id)
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask,
                head_mask=head_mask, inputs_embeds=inputs_embeds, output_attentions=output_attentions,
                output_hidden_states=output_hidden_states, return_dict=True,
            )
        else:
            encoder_outputs = _as_encoder_output(encoder_outputs)
        dec = self.decoder(
            input_ids=decoder_input_ids, attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state, encoder_attention_mask=attention_mask,
            head_mask=decoder_head_mask, cross_attn_head_mask=cross_attn_head_mask, past_key_values=past_key_values,
            inputs_embeds=decoder_inputs_embeds, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=True,
        )
        out = LEDSeq2SeqModelOutput(
            last_hidden_state=dec.last_hidden_state,
            past_key_values=dec.past_key_values,
            decoder_hidden_states=dec.hidden_states,
            decoder_attentions=dec.attentions,
            cross_attentions=dec.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
            encoder_global_attentions=encoder_outputs.global_attentions,
        )
        return out if return_dict else out.to_tuple()


def _seq2seq_fields(out: LEDSeq2SeqModelOutput) -> dict:
    """The fields every LED head output copies from the base model output."""
    return dict(
        past_key_values=out.past_key_values,
        decoder_hidden_states=out.decoder_hidden_states,
        decoder_attentions=out.decoder_attentions,
        cross_attentions=out.cross_attentions,
        encoder_last_hidden_state=out.encoder_last_hidden_state,
        encoder_hidden_states=out.encoder_hidden_states,
        encoder_attentions=out.encoder_attentions,
        encoder_global_attentions=out.encoder_global_attentions,
    )


class LEDForConditionalGeneration(GenerationMixin, LEDPreTrainedModel):
    """LED with a language-modeling head (tied to the shared embeddings): summarization, generative QA."""

    _tied_weights = {"lm_head.weight": "led.shared.weight"}

    def __init__(self, config: LEDConfig):
        super().__init__(config)
        self.led = LEDModel(config)
        self.register_buffer("final_logits_bias", torch.zeros((1, config.vocab_size)))
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()
        self.tie_weights()

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.led.shared.weight

    def get_encoder(self) -> LEDEncoder:
        return self.led.encoder

    def get_decoder(self) -> LEDDecoder:
        return self.led.decoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.led.shared

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        decoder_head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        encoder_outputs=None,
        global_attention_mask: torch.Tensor | None = None,
        past_key_values: tuple | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ):
        """labels (B, T): target ids, -100 ignored in the loss; the decoder input defaults to them shifted right."""
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        out = self.led(
            input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask, head_mask=head_mask, decoder_head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask, encoder_outputs=encoder_outputs,
            global_attention_mask=global_attention_mask, past_key_values=past_key_values, inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=True,
        )
        logits = self.lm_head(out.last_hidden_state) + self.final_logits_bias.to(out.last_hidden_state.dtype)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1).to(logits.device))
        res = LEDSeq2SeqLMOutput(loss=loss, logits=logits, **_seq2seq_fields(out))
        return res if return_dict else res.to_tuple()


class LEDClassificationHead(nn.Module):
    """dropout -> dense -> tanh -> dropout -> out_proj on one pooled vector."""

    def __init__(self, input_dim: int, inner_dim: int, num_classes: int, pooler_dropout: float):
        super().__init__()
        self.dense = nn.Linear(input_dim, inner_dim)
        self.dropout = nn.Dropout(p=pooler_dropout)
        self.out_proj = nn.Linear(inner_dim, num_classes)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.dense(self.dropout(hidden_states)))
        return self.out_proj(self.dropout(h))


def _classification_loss(config: LEDConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Regression (1 label), single-label or multi-label classification, as config.problem_type says."""
    problem = config.problem_type
    if problem is None:
        if config.num_labels == 1:
            problem = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
    if problem == "regression":
        return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype)) if config.num_labels == 1 \
            else F.mse_loss(logits, labels.to(logits.dtype))
    if problem == "single_label_classification":
        return F.cross_entropy(logits.view(-1, config.num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class LEDForSequenceClassification(LEDPreTrainedModel):
    """LED with a classification head on the decoder state at the last </s> token."""

    def __init__(self, config: LEDConfig):
        super().__init__(config)
        self.led = LEDModel(config)
        self.classification_head = LEDClassificationHead(config.d_model, config.d_model, config.num_labels,
                                                         config.classifier_dropout)
        self.post_init()

    def get_encoder(self) -> LEDEncoder:
        return self.led.encoder

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        decoder_head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        encoder_outputs=None,
        global_attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ):
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if input_ids is None:
            raise InputError("LEDForSequenceClassification needs input_ids: it pools at the last </s> token")
        out = self.led(
            input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask, head_mask=head_mask, decoder_head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask, encoder_outputs=encoder_outputs,
            global_attention_mask=global_attention_mask, inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=True,
        )
        hidden = out.last_hidden_state  # (B, T, D), T = input length (decoder reads the shifted input)
        eos = input_ids.eq(self.config.eos_token_id).to(hidden.device)
        counts = eos.sum(dim=1)
        if counts.numel() and (counts != counts[0]).any():
            raise InputError(
                f"every row must hold the same number of </s> tokens (got {counts.tolist()}): the classifier "
                "pools the decoder state at the last </s>"
            )
        if counts.numel() and counts[0] == 0:
            raise InputError("the input has no </s> token: tokenize with add_special_tokens=True")
        pooled = hidden[eos, :].view(hidden.shape[0], -1, hidden.shape[-1])[:, -1, :]
        logits = self.classification_head(pooled)
        loss = _classification_loss(self.config, logits, labels) if labels is not None else None
        res = LEDSeq2SeqSequenceClassifierOutput(loss=loss, logits=logits, **_seq2seq_fields(out))
        return res if return_dict else res.to_tuple()


class LEDForQuestionAnswering(LEDPreTrainedModel):
    """LED with a span head (start/end logits) on the decoder's last hidden state."""

    def __init__(self, config: LEDConfig):
        super().__init__(config)
        config.id2label = {0: "LABEL_0", 1: "LABEL_1"}
        config.label2id = {"LABEL_0": 0, "LABEL_1": 1}
        self.led = LEDModel(config)
        self.qa_outputs = nn.Linear(config.d_model, 2)
        self.post_init()

    def get_encoder(self) -> LEDEncoder:
        return self.led.encoder

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        decoder_head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        encoder_outputs=None,
        global_attention_mask: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ):
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if start_positions is not None and end_positions is not None:
            use_cache = False
        out = self.led(
            input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask, head_mask=head_mask, decoder_head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask, encoder_outputs=encoder_outputs,
            global_attention_mask=global_attention_mask, inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=True,
        )
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).split(1, dim=-1)
        start_logits, end_logits = start_logits.squeeze(-1).contiguous(), end_logits.squeeze(-1).contiguous()
        loss = None
        if start_positions is not None and end_positions is not None:
            # positions outside the sequence are ignored
            ignored = start_logits.shape[1]
            start = start_positions.view(-1).clamp(0, ignored)
            end = end_positions.view(-1).clamp(0, ignored)
            loss = (F.cross_entropy(start_logits, start, ignore_index=ignored)
                    + F.cross_entropy(end_logits, end, ignore_index=ignored)) / 2
        res = LEDSeq2SeqQuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                                     **_seq2seq_fields(out))
        return res if return_dict else res.to_tuple()
