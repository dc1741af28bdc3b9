"""Unfold LED / Longformer encoder attention: from the band + global layout to maps a person can read.

The encoder returns, per layer l (see `LEDEncoderBaseModelOutput`):

- `local` (B, H, N, x + 2w + 1), w = attention_window[l] // 2. Columns [0, x) hold the attention
  of each query to the global tokens in ascending position order (x = the largest global count
  in the batch); column x + w + d holds the key at offset d from the query.
- `global` (B, H, N, x) or None: entry [b, h, j, c] is the probability that global token c
  attends to key j. transformers returns it un-trimmed (length L_pad) with unused slots filled
  with 1/L_pad; ledviz trims it and zeros them. Both are accepted here.

`SparseAttention` keeps one layer in that shape (memory ~ N x (2w + 1 + 2x)) and answers rows,
columns, COO/CSR and (for small N only) the dense (B, H, N, N) map. `to_dense` is the one-call
dense form. The masks decide everything structural: a token is *valid* where
`attention_mask > 0` and *global* where it is valid and `global_attention_mask > 0` (padding
wins over global, and transformers' -1 padding of the global mask reads as "not global").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any, Sequence

import torch

from .attention import global_positions, window_slots
from .errors import InputError

Tensor = torch.Tensor

# the largest sequence length `SparseAttention.to_dense` builds an N x N map for, unless told otherwise
DENSE_MAX_SEQ_LEN = 4096


# ---------------------------------------------------------------------------------------------
# masks and positions
# ---------------------------------------------------------------------------------------------

def merge_masks(
    global_attention_mask: Tensor | None, attention_mask: Tensor | None, batch: int, seq_len: int, device=None
) -> tuple[Tensor, Tensor]:
    """(valid, is_global), both (B, N) bool: valid = not padding; global = valid and marked global."""
    valid = torch.ones(batch, seq_len, dtype=torch.bool, device=device)
    if attention_mask is not None:
        _check_mask("attention_mask", attention_mask, batch, seq_len)
        valid = attention_mask.to(device) > 0
    is_global = torch.zeros_like(valid)
    if global_attention_mask is not None:
        _check_mask("global_attention_mask", global_attention_mask, batch, seq_len)
        is_global = (global_attention_mask.to(device) > 0) & valid
    return valid, is_global


def _check_mask(name: str, mask: Tensor, batch: int, seq_len: int) -> None:
    """Raise InputError unless `mask` is (batch, seq_len)."""
    if tuple(mask.shape) != (batch, seq_len):
        raise InputError(
            f"{name} has shape {tuple(mask.shape)} but the attentions are for (batch, seq_len) = "
            f"{(batch, seq_len)}: pass the masks the model was run with"
        )


def band_mask(valid: Tensor, is_global: Tensor, w: int, rows: tuple[int, int] | None = None) -> Tensor:
    """(B, R, 2w+1) bool: window slots that can hold attention (valid non-global query and key, inside the sequence).

    `rows` = (start, stop) builds only those queries (R = stop - start; default all N).
    """
    r0, r1 = rows if rows is not None else (0, valid.shape[1])
    local = valid & ~is_global  # (B, N)
    return window_slots(local, w, rows=(r0, r1)) & local[:, r0:r1, None]


# ---------------------------------------------------------------------------------------------
# the sparse form
# ---------------------------------------------------------------------------------------------

@dataclass
class SparseAttention:
    """One encoder layer's attention in band + global form.

    band: (B, H, N, 2w+1), [b, h, i, w + d] = attention of query i to key i + d (non-global queries).
    global_cols: (B, H, N, x), [b, h, i, c] = attention of non-global query i to global token c.
    global_rows: (B, H, x, N), [b, h, c, j] = attention of global token c to key j.
    global_positions: (B, x) long, position of global token c (ascending), -1 in unused slots.
    attention_mask: (B, N) bool, True for non-padding tokens.
    layer: the encoder layer this came from, when known.

    Values may be stored in float16/bfloat16; every method computes in float32.
    Structural zeros (padding rows/keys, slots outside the sequence, global keys inside the band,
    rows of global queries in band/global_cols, unused global slots) are zero in storage.
    """

    band: Tensor
    global_cols: Tensor
    global_rows: Tensor
    global_positions: Tensor
    attention_mask: Tensor
    layer: int | None = None

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_layer(
        cls,
        local_attn: Tensor,
        global_attn: Tensor | None,
        global_attention_mask: Tensor | None = None,
        attention_mask: Tensor | None = None,
        *,
        layer: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> "SparseAttention":
        """Build from one layer of model output (ours, or transformers' LED / Longformer).

        local_attn (B, H, N, x + 2w + 1); global_attn (B, H, >=N, x) or None; masks (B, N) as given
        to the model. `dtype` / `device` choose the storage (default: those of local_attn).
        """
        if local_attn.dim() != 4:
            raise InputError(f"local attention must be (batch, heads, seq_len, x + window + 1), got {tuple(local_attn.shape)}")
        B, H, N, width = local_attn.shape
        valid, is_global = merge_masks(global_attention_mask, attention_mask, B, N, local_attn.device)
        positions = global_positions(is_global)  # (B, x)
        x = positions.shape[1]
        span = width - x  # 2w + 1
        if span < 1 or span % 2 == 0:
            raise InputError(
                f"local attention has {width} columns, which with {x} global token(s) leaves {span} "
                "window columns (must be odd, 2w+1): the global_attention_mask / attention_mask do not "
                "belong to this output"
            )
        used = positions >= 0  # (B, x)
        global_cols = local_attn[..., :x] * used[:, None, None, :]
        if x == 0:
            if global_attn is not None and global_attn.shape[-1] > 0:
                raise InputError(
                    f"the output has global attention for {global_attn.shape[-1]} global token(s) but the masks "
                    "give none: the global_attention_mask / attention_mask do not belong to this output"
                )
            global_rows = local_attn.new_zeros(B, H, 0, N)
        else:
            if global_attn is None or global_attn.shape[-1] != x or global_attn.shape[2] < N:
                got = None if global_attn is None else tuple(global_attn.shape)
                raise InputError(
                    f"the masks give {x} global token(s) per element, but the global attention is {got}; "
                    f"expected (batch, heads, >= {N}, {x})"
                )
            # trim transformers' padded length; zero junk in unused slots and on padding keys
            rows = global_attn[:, :, :N, :].transpose(2, 3)  # (B, H, x, N)
            global_rows = rows * (used[:, None, :, None] & valid[:, None, None, :])
        dtype = dtype or local_attn.dtype
        device = device or local_attn.device
        store = lambda t: t.to(device=device, dtype=dtype).contiguous()  # noqa: E731
        band = local_attn[..., x:].to(device=device, dtype=dtype)
        return cls(
            # where no conversion was needed the band stays a view of the output (rows x + 2w + 1
            # apart): no copy of the largest tensor
            band=band if band.stride(-1) == 1 else band.contiguous(),
            global_cols=store(global_cols),
            global_rows=store(global_rows),
            global_positions=positions.to(device),
            attention_mask=valid.to(device),
            layer=layer,
        )

    # ---- shape and bookkeeping -----------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """B."""
        return self.band.shape[0]

    @property
    def num_heads(self) -> int:
        """H."""
        return self.band.shape[1]

    @property
    def seq_len(self) -> int:
        """N."""
        return self.band.shape[2]

    @property
    def window(self) -> int:
        """One-sided window w (the layer's attention_window // 2)."""
        return (self.band.shape[3] - 1) // 2

    @property
    def num_global(self) -> int:
        """x, the number of global slots."""
        return self.global_positions.shape[1]

    @property
    def global_used(self) -> Tensor:
        """(B, x) bool: which global slots hold a token."""
        return self.global_positions >= 0

    @property
    def is_global(self) -> Tensor:
        """(B, N) bool: global tokens."""
        out = torch.zeros_like(self.attention_mask)
        b, c = self.global_used.nonzero(as_tuple=True)
        out[b, self.global_positions[b, c]] = True
        return out

    @property
    def global_slot(self) -> Tensor:
        """(B, N) long: the slot c of each global token, -1 elsewhere."""
        out = torch.full(self.attention_mask.shape, -1, dtype=torch.long, device=self.band.device)
        b, c = self.global_used.nonzero(as_tuple=True)
        out[b, self.global_positions[b, c]] = c
        return out

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensors."""
        return sum(t.numel() * t.element_size() for t in (self.band, self.global_cols, self.global_rows,
                                                           self.global_positions, self.attention_mask))

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "SparseAttention":
        """Copy with the probabilities in `dtype` and everything on `device`."""
        conv = lambda t: t.to(device=device or t.device, dtype=dtype or t.dtype)  # noqa: E731
        return replace(
            self, band=conv(self.band), global_cols=conv(self.global_cols), global_rows=conv(self.global_rows),
            global_positions=self.global_positions.to(device or self.band.device),
            attention_mask=self.attention_mask.to(device or self.band.device),
        )

    def select(self, batch: int | Sequence[int] | None = None, heads: int | Sequence[int] | None = None) -> "SparseAttention":
        """Restrict to some batch elements and/or heads; an int keeps its dimension and gives a view (no copy)."""
        def pick(idx):
            """An int as a one-wide slice (a view), a sequence as an index tensor."""
            if isinstance(idx, int):
                return slice(idx, idx + 1)
            return torch.tensor(list(idx), dtype=torch.long, device=self.band.device)

        out = self
        if batch is not None:
            b = pick(batch)
            out = replace(out, band=out.band[b], global_cols=out.global_cols[b], global_rows=out.global_rows[b],
                          global_positions=out.global_positions[b], attention_mask=out.attention_mask[b])
            # drop global slots no selected element uses
            x = int(out.global_used.sum(1).max()) if out.batch_size else 0
            out = replace(out, global_cols=out.global_cols[..., :x], global_rows=out.global_rows[:, :, :x],
                          global_positions=out.global_positions[:, :x])
        if heads is not None:
            h = pick(heads)
            out = replace(out, band=out.band[:, h], global_cols=out.global_cols[:, h], global_rows=out.global_rows[:, h])
        return out

    # ---- reading it ------------------------------------------------------------------------------
    def to_dense(self, max_seq_len: int = DENSE_MAX_SEQ_LEN) -> Tensor:
        """(B, H, N, N) float32: row i is query i's distribution over keys. Only for small N."""
        B, H, N, _ = self.band.shape
        if N > max_seq_len:
            raise InputError(
                f"a dense map of {N} tokens has {N * N:,} entries per head; use the sparse views in "
                f"ledviz.analysis (overview, zoom, row/col) or raise max_seq_len (now {max_seq_len})"
            )
        w = self.window
        out = torch.zeros(B, H, N, N, dtype=torch.float32, device=self.band.device)
        for k in range(-min(w, N - 1), min(w, N - 1) + 1):
            # diagonal k holds query i -> key i + k for the rows where the key exists
            rows = slice(max(0, -k), N - max(0, k))
            out.diagonal(offset=k, dim1=2, dim2=3).add_(self.band[:, :, rows, w + k].float())
        b, c = self.global_used.nonzero(as_tuple=True)
        pos = self.global_positions[b, c]
        out[b, :, :, pos] += self.global_cols[b, :, :, c].float()  # (K, H, N)
        out[b, :, pos, :] = self.global_rows[b, :, c, :].float()  # rows of global queries
        return out

    def row(self, i: int) -> Tensor:
        """(B, H, N) float32: where query i looks."""
        B, H, N, _ = self.band.shape
        w = self.window
        out = torch.zeros(B, H, N, dtype=torch.float32, device=self.band.device)
        lo, hi = max(0, i - w), min(N, i + w + 1)
        out[..., lo:hi] = self.band[:, :, i, lo - i + w: hi - i + w].float()
        b, c = self.global_used.nonzero(as_tuple=True)
        out[b, :, self.global_positions[b, c]] += self.global_cols[b, :, i, c].float()
        # elements where i is a global token: its row comes from global_rows
        slot = self.global_slot[:, i]  # (B,)
        gb = (slot >= 0).nonzero(as_tuple=True)[0]
        out[gb] = self.global_rows[gb, :, slot[gb], :].float()
        return out

    def col(self, j: int) -> Tensor:
        """(B, H, N) float32: who looks at key j (entry i = attention of query i to j)."""
        B, H, N, _ = self.band.shape
        w = self.window
        out = torch.zeros(B, H, N, dtype=torch.float32, device=self.band.device)
        lo, hi = max(0, j - w), min(N, j + w + 1)
        queries = torch.arange(lo, hi, device=self.band.device)
        out[..., lo:hi] = self.band[:, :, queries, j - queries + w].float()
        # elements where j is a global token: every non-global query's global column
        slot = self.global_slot[:, j]  # (B,)
        gb = (slot >= 0).nonzero(as_tuple=True)[0]
        out[gb] += self.global_cols[gb, :, :, slot[gb]].float()
        # global queries' attention to j
        b, c = self.global_used.nonzero(as_tuple=True)
        out[b, :, self.global_positions[b, c]] += self.global_rows[b, :, c, j].float()
        return out

    def row_sums(self) -> Tensor:
        """(B, H, N) float32: total attention of each query (1 for valid rows, 0 for padding)."""
        sums = self.band.float().sum(-1) + self.global_cols.float().sum(-1)
        b, c = self.global_used.nonzero(as_tuple=True)
        sums[b, :, self.global_positions[b, c]] += self.global_rows[b, :, c, :].float().sum(-1)
        return sums

    def entries(self, batch: int, rows: tuple[int, int] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Structural entries of one element: (query (nnz,), key (nnz,), values (H, nnz) float32).

        `rows` = (start, stop) limits the queries (for chunked iteration over long documents).
        Entries are every slot that can hold attention, so a value may be exactly zero.
        """
        N, w = self.seq_len, self.window
        r0, r1 = rows if rows is not None else (0, N)
        valid, is_global = self.attention_mask[batch], self.is_global[batch]
        # band: slots of queries r0..r1
        mask = band_mask(valid[None], is_global[None], w, rows=(r0, r1))[0]  # (R, 2w+1)
        qi, s = mask.nonzero(as_tuple=True)
        q_band, k_band = qi + r0, qi + r0 + s - w
        v_band = self.band[batch][:, q_band, s].float()
        # global columns of the non-global valid queries in range
        used = self.global_used[batch].nonzero(as_tuple=True)[0]
        pos = self.global_positions[batch, used]
        local_q = (torch.arange(r0, r1, device=valid.device)[(valid & ~is_global)[r0:r1]])
        q_gc = local_q.repeat_interleave(len(used))
        c_gc = used.repeat(len(local_q))
        v_gc = self.global_cols[batch][:, q_gc, c_gc].float()
        k_gc = self.global_positions[batch, c_gc]
        # global rows whose query is in range
        in_range = (pos >= r0) & (pos < r1)
        keys = valid.nonzero(as_tuple=True)[0]
        g_slots = used[in_range]
        q_gr = self.global_positions[batch, g_slots].repeat_interleave(len(keys))
        k_gr = keys.repeat(len(g_slots))
        v_gr = self.global_rows[batch][:, g_slots][:, :, keys].reshape(self.num_heads, -1).float()
        return (torch.cat([q_band, q_gc, q_gr]), torch.cat([k_band, k_gc, k_gr]), torch.cat([v_band, v_gc, v_gr], dim=1))

    def to_torch_sparse(self, layout: str = "coo", batch: int | None = None, head: int | None = None) -> Tensor:
        """torch sparse tensor of the map: COO (B, H, N, N), or with batch and head given, 2-D COO/CSR (N, N).

        Holds every structural slot (see `entries`); the index costs 8 bytes per entry and
        dimension, so prefer the band form for whole long documents.
        """
        if layout not in ("coo", "csr"):
            raise InputError(f"layout must be 'coo' or 'csr', got {layout!r}")
        if (batch is None) != (head is None):
            raise InputError("give both batch and head (a 2-D map) or neither (the whole (B, H, N, N) map)")
        N = self.seq_len
        if batch is not None:
            q, k, v = self.entries(batch)
            mat = torch.sparse_coo_tensor(torch.stack([q, k]), v[head], (N, N), check_invariants=False).coalesce()
            if layout == "coo":
                return mat
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                return mat.to_sparse_csr()
        if layout == "csr":
            raise InputError("CSR needs a 2-D map: pass batch and head")
        parts_idx, parts_val = [], []
        H = self.num_heads
        for b in range(self.batch_size):
            q, k, v = self.entries(b)
            nnz = q.numel()
            heads = torch.arange(H, device=q.device).repeat_interleave(nnz)
            parts_idx.append(torch.stack([torch.full_like(heads, b), heads, q.repeat(H), k.repeat(H)]))
            parts_val.append(v.reshape(-1))
        size = (self.batch_size, H, N, N)
        return torch.sparse_coo_tensor(torch.cat(parts_idx, 1), torch.cat(parts_val), size, check_invariants=False).coalesce()


# ---------------------------------------------------------------------------------------------
# whole outputs
# ---------------------------------------------------------------------------------------------

def to_dense(
    local_attn: Tensor,
    global_attn: Tensor | None,
    global_attention_mask: Tensor | None,
    attention_mask: Tensor | None = None,
) -> Tensor:
    """(B, H, N, N) float32 dense map of one layer's output (ours or transformers'); only for small N."""
    return SparseAttention.from_layer(local_attn, global_attn, global_attention_mask, attention_mask,
                                      dtype=torch.float32).to_dense()


def _field(outputs: Any, *names: str) -> Any:
    """The first of `names` that `outputs` holds (attribute or key), else None."""
    for name in names:
        value = getattr(outputs, name, None)
        if value is None and isinstance(outputs, dict):
            value = outputs.get(name)
        if value is not None:
            return value
    return None


def sparse_from_outputs(
    outputs: Any,
    global_attention_mask: Tensor | None = None,
    attention_mask: Tensor | None = None,
    *,
    layers: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> list[SparseAttention]:
    """One SparseAttention per kept encoder layer of a model output.

    Reads `encoder_attentions` / `encoder_global_attentions` (LED seq2seq outputs) or
    `attentions` / `global_attentions` (LED encoder, Longformer). Layers the model did not keep
    (None) and layers not in `layers` are skipped.
    """
    local = _field(outputs, "encoder_attentions", "attentions")
    if local is None:
        raise InputError("the output holds no encoder attentions: run the model with output_attentions=True")
    glob = _field(outputs, "encoder_global_attentions", "global_attentions")
    result = []
    for idx, loc in enumerate(local):
        if loc is None or (layers is not None and idx not in layers):
            continue
        g = glob[idx] if glob is not None else None
        result.append(SparseAttention.from_layer(loc, g, global_attention_mask, attention_mask,
                                                 layer=idx, dtype=dtype, device=device))
    return result


def sparse_nbytes(num_layers: int, num_heads: int, seq_len: int, attention_window: int, num_global: int,
                  dtype: torch.dtype = torch.float16, batch: int = 1) -> int:
    """Bytes the band + global form of a run takes (probabilities only)."""
    per_row = attention_window + 1 + 2 * num_global
    return num_layers * batch * num_heads * seq_len * per_row * torch.empty(0, dtype=dtype).element_size()


# ---------------------------------------------------------------------------------------------
# synthetic attention (benchmarks, demos and tests)
# ---------------------------------------------------------------------------------------------

def synthetic_attention(
    num_heads: int,
    attention_window: int,
    attention_mask: Tensor,
    global_attention_mask: Tensor | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    scale: float = 2.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Random, row-normalized attention in the encoder's output layout (ours: trimmed, zero unused slots).

    Scores are Gaussian with std `scale`, softmaxed over the slots the layout allows, one head at a
    time (so a long document needs little beyond the result). Returns (local, global or None).
    """
    B, N = attention_mask.shape
    w = attention_window // 2
    valid, is_global = merge_masks(global_attention_mask, attention_mask, B, N, attention_mask.device)
    positions = global_positions(is_global)
    x = positions.shape[1]
    used = positions >= 0
    local_q = valid & ~is_global  # (B, N)
    allowed = torch.cat([used[:, None, :] & local_q[:, :, None], band_mask(valid, is_global, w)], dim=-1)  # (B, N, x+2w+1)
    local = torch.zeros(B, num_heads, N, x + 2 * w + 1, dtype=dtype)
    glob = torch.zeros(B, num_heads, N, x, dtype=dtype) if x else None
    for h in range(num_heads):
        scores = torch.randn(B, N, x + 2 * w + 1, generator=generator) * scale
        local[:, h] = scores.masked_fill(~allowed, float("-inf")).softmax(-1).nan_to_num(0.0).to(dtype)
        if x:
            g = (torch.randn(B, x, N, generator=generator) * scale).masked_fill(~valid[:, None, :], float("-inf"))
            g = g.softmax(-1).nan_to_num(0.0) * used[:, :, None]
            glob[:, h] = g.transpose(1, 2).to(dtype)
    return local, glob
