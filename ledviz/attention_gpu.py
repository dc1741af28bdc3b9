"""The encoder's Longformer attention as blocked dense attention, for a GPU (implementation "sdpa").

`attention.py` computes the band for the CPU: head by head, in place, in reused scratch. On a GPU
the fastest kernels are dense attention over many small matrices at once, so this path lays the
band out for them:

- queries in blocks of c rows; block j reads the key span [jc - w, jc + c + w), and every block
  also reads the x global keys (local projections), placed before its span: one key set of
  x + c + 2w per block (rounded up to a multiple of 16 by masked columns, which fused kernels
  read in aligned rows), (B * nb, H, xg + c + 2w, hd);
- one additive mask per block, shared by the heads: what lies outside each row's window, padding,
  global and out-of-sequence keys in the span, unused global slots;
- without attention probabilities: `torch.nn.functional.scaled_dot_product_attention` over all
  blocks (on CUDA its fused kernels never write the scores); the global keys sit in the same
  softmax row as the band, so their columns are joined through the row's log-sum-exp inside the
  kernel, not by a second pass;
- with attention probabilities: the same blocks as explicit products, a chunk of blocks at a time,
  softmax in float32, and the band read off the blocks' diagonals straight into LED's layout
  (B, H, L, x + 2w + 1), global columns first (no second copy of the probabilities);
- the rows of global queries: `attention._global_rows`, shared with the reference.

The math is the reference's (`attention.reference_attention`) and runs on any device: it is
selected for CUDA at inference (`LEDEncoderSelfAttention.forward`), and on the CPU only when asked
(`set_attention_implementation("sdpa")`), which is how tests/test_attention_gpu.py checks it
against the reference. It is differentiable (dropout included), so it also trains.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .attention import GlobalLayout, _block_spans, _diagonals, _gather_positions, _global_rows, _round_up, pad_seq

Tensor = torch.Tensor

# the explicit-probabilities path scores about this many bytes of (block row x key) entries at once
PROBS_CHUNK_BYTES = 256 << 20


def gpu_block(w: int) -> int:
    """Query rows per block on a GPU: 256 for LED's windows (w = 512: 80% of each block's keys are in
    some row's window, and the kernels get whole tiles), at least 16 for tiny test windows."""
    return min(256, max(16, w))


# a block's key set (global columns, then its span) takes a multiple of this many columns: fused attention
# kernels read the mask in aligned rows (the extra global columns are masked)
KEY_COLUMNS_ALIGN = 16


def _global_columns(x: int, span: int) -> int:
    """Columns the x global keys take before a block's span of `span` keys (x, rounded up so that the
    whole key set is aligned; 0 without global tokens)."""
    return _round_up(x + span, KEY_COLUMNS_ALIGN) - span if x else 0


def _block_mask(layout: GlobalLayout, w: int, c: int, length: int, dtype: torch.dtype) -> Tensor:
    """Additive mask (B * nb, 1, c, xg + c + 2w) of every block (xg: `_global_columns`): 0 where a row may
    attend, the dtype's minimum elsewhere."""
    B, L = layout.is_padding.shape
    nb = length // c
    span = c + 2 * w
    # keys a window may hold, over the span of each block (out-of-sequence positions dropped)
    key_ok = F.pad((~layout.dropped_keys).to(torch.uint8), (w, w + length - L), value=0)  # (B, L' + 2w)
    key_ok = key_ok.unfold(1, span, c).bool()  # (B, nb, c + 2w)
    rows = torch.arange(c, device=key_ok.device)[:, None]
    cols = torch.arange(span, device=key_ok.device)[None, :]
    in_window = (cols >= rows) & (cols <= rows + 2 * w)  # column s of row i is key i + s - w of the block
    allowed = in_window[None, None] & key_ok[:, :, None, :]  # (B, nb, c, c + 2w)
    x = layout.num_global
    if x:
        valid = F.pad(layout.global_valid, (0, _global_columns(x, span) - x), value=False)
        allowed = torch.cat([valid[:, None, None, :].expand(B, nb, c, valid.shape[1]), allowed], dim=-1)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.view(B * nb, 1, c, allowed.shape[-1])


def _block_keys(t: Tensor, glob: Tensor | None, w: int, c: int, length: int) -> Tensor:
    """(B, H, L, hd) keys or values, with the global ones (B, H, x, hd) -> (B * nb, H, xg + c + 2w, hd):
    each block's global keys (zero in the xg - x aligning columns) then its span, written once."""
    B, H, _, hd = t.shape
    spans = _block_spans(t, w, c, length)  # (B, H, nb, c + 2w, hd), a view
    nb, x = spans.shape[2], glob.shape[2] if glob is not None else 0
    xg = _global_columns(x, c + 2 * w)
    out = t.new_empty(B, nb, H, xg + c + 2 * w, hd)
    if x:
        out[:, :, :, :x] = glob[:, None]
        out[:, :, :, x:xg] = 0
    out[:, :, :, xg:] = spans.transpose(1, 2)
    return out.view(B * nb, H, xg + c + 2 * w, hd)


def sdpa_attention(
    attn, hidden_states: Tensor, layout: GlobalLayout, layer_head_mask: Tensor | None,
    output_attentions: bool, probs_dtype: torch.dtype | None,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """`reference_attention`'s results by blocked dense attention: output (B, L, D), and with
    output_attentions the local probabilities (B, H, L, x + 2w + 1) and global ones (B, H, x, L)."""
    B, L, D = hidden_states.shape
    H, hd = attn.num_heads, attn.head_dim
    w, x = attn.one_sided_attn_window_size, layout.num_global
    c = attn.block_size or gpu_block(w)
    Lb = _round_up(L, c)
    nb = Lb // c
    dtype = hidden_states.dtype
    q = attn.heads(attn.query(hidden_states)) / math.sqrt(hd)  # (B, H, L, hd)
    k = attn.heads(attn.key(hidden_states))
    v = attn.heads(attn.value(hidden_states))
    k_glob = _gather_positions(k, layout.global_index) if x else None
    v_glob = _gather_positions(v, layout.global_index) if x else None
    keys, values = _block_keys(k, k_glob, w, c, Lb), _block_keys(v, v_glob, w, c, Lb)
    q_blocks = pad_seq(q, 0, Lb - L).view(B, H, nb, c, hd).transpose(1, 2).reshape(B * nb, H, c, hd)
    mask = _block_mask(layout, w, c, Lb, dtype)  # (B * nb, 1, c, S)
    dropout = attn.dropout if attn.training else 0.0

    probs_out = None
    if not output_attentions:
        out = F.scaled_dot_product_attention(q_blocks, keys, values, attn_mask=mask, dropout_p=dropout, scale=1.0)
    else:
        # explicit products a chunk of blocks (of one sequence) at a time, written straight into LED's layout
        S, xg = keys.shape[2], keys.shape[2] - (c + 2 * w)
        cols = x + 2 * w + 1
        step = max(1, PROBS_CHUNK_BYTES // (H * c * S * 4))
        out = q_blocks.new_empty(B * nb, H, c, hd)
        probs_out = q_blocks.new_empty(B, H, Lb, cols, dtype=probs_dtype or dtype)
        for b in range(B):
            for j0 in range(0, nb, step):
                j1 = min(nb, j0 + step)
                sl = slice(b * nb + j0, b * nb + j1)
                scores = q_blocks[sl] @ keys[sl].transpose(-1, -2) + mask[sl]  # (n, H, c, S)
                probs = scores.softmax(dim=-1, dtype=torch.float32)
                if layer_head_mask is not None:
                    probs = layer_head_mask.view(1, -1, 1, 1) * probs
                probs = F.dropout(probs.to(dtype), p=dropout, training=attn.training)
                out[sl] = probs @ values[sl]
                dest = probs_out[b, :, j0 * c: j1 * c].view(H, j1 - j0, c, cols).transpose(0, 1)  # (n, H, c, cols)
                dest[..., :x] = probs[..., :x]
                dest[..., x:] = _diagonals(probs[..., xg:], w)
        probs_out = probs_out[:, :, :L] if Lb == L else probs_out[:, :, :L].contiguous()
        # padding rows attend nowhere; rows of global queries are the global probabilities' business
        probs_out.masked_fill_((layout.is_padding | layout.is_global)[:, None, :, None], 0.0)
    out = out.view(B, nb, H, c, hd).transpose(1, 2).reshape(B, H, Lb, hd)[:, :, :L]
    if layer_head_mask is not None and not output_attentions:
        out = out * layer_head_mask.view(1, -1, 1, 1).to(dtype)
    out = out.masked_fill(layout.is_padding[:, None, :, None], 0.0)

    global_probs = None
    if x:
        out, global_probs = _global_rows(attn, hidden_states, out, layout, layer_head_mask)
    out = out.transpose(1, 2).reshape(B, L, D)
    if not output_attentions:
        return out, None, None
    return out, probs_out.to(probs_dtype or probs_out.dtype), global_probs
