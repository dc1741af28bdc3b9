"""The decoder's inference step for greedy search and sampling, on plain tensors.

`LEDDecoder.step` is the one readable decoder step (every output, masks, head masks, training).
At a long input a greedy step is bound by the bytes it reads: every decoder weight, the lm_head
(50,265 x 768 in LED-base: 154 MB in float32) and every layer's cross-attention keys and values
(4,096 x 768 x 2 per layer at a 4,096-token input). This module computes the same step with the
fewest bytes and operations around them, for generation without per-step outputs:

- the self-attention cache is preallocated for the whole generation (no `torch.cat` per step);
- the self-attention's query/key/value projections are one product (the query scale folded into
  the weights where it is a power of two, as for 64-wide heads: the same numbers);
- in float32 a short generation attends through the encoder output X itself: scores (q W_k) X^T (+ q b_k,
  the same for every key of a row, which softmax ignores) and output (p X) W_v^T + b_v, the same sums as
  q K^T and p V in another order, block by block of X (each block read once), so it skips projecting
  every layer's keys and values (0.38 s at an LED-base 4,096-token input); a generation that is sure to
  be long (min_new_tokens, or no EOS) projects them at the start, one that may be long after
  `FastDecoder.CROSS_AFTER_ROWS` query rows (`projection_position`);
- the cross-attention keys and values are kept transposed, (B, H, hd, N), made straight as W X^T:
  the query-key product then streams rows of N keys, and the probability-value product takes dot
  products of N terms (each 20-45% faster than the (N, hd) layout for one query row here);
- in float32 every product uses the transposed weight (x @ W^T with W^T contiguous, 10-15% faster
  than `F.linear` for one row here); in bfloat16/float16 one row goes through `addmv`, which reads
  the half-size weights at full speed;
- the masks are built once and positions are read from the table;
- greedy search in float32 reads an int8 copy of the lm_head (a quarter of the bytes; `_Int8Screen`,
  or a bfloat16 copy, `_Screen`, where oneDNN's int8 product is missing) to bound every token's
  logit, and scores exactly only the few that can be the pick: the same pick. In bfloat16 the int8
  copy (half the bytes) bounds the float32 sums over the bfloat16 weights, whose argmax is the pick.

The packed weights are kept beside the model (`FastDecoder.pack`, a weak mapping) and rebuilt when a weight changes
(each parameter's version counter and storage are part of the key); weights made under
`torch.inference_mode` keep no version counter, so for them the pack is rebuilt at every call,
without the transposed copies (they take longer to make than they save in a short generation).
In float32 a kept pack holds a transposed copy of the decoder layers' weights and an int8 copy of
the lm_head (about 230 MB for LED-base); in bfloat16 the fused query/key/value weights and the int8
copy; otherwise only the fused weights.

Float32 numerics: the same products as `LEDDecoder.step`, with sums in another order where said above
(the parity tests hold it to transformers' tolerance, 1e-5 of the logits' scale, token for token).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .device import libc_madvise

Tensor = torch.Tensor


@dataclass
class _Linear:
    """One projection y = x W^T + b in the layout its dtype computes fastest."""

    weight: Tensor  # (out, in)
    weight_t: Tensor | None  # (in, out) contiguous, float32 only
    bias: Tensor | None

    @classmethod
    def of(cls, weight: Tensor, bias: Tensor | None, transpose: bool, arena: "_Arena | None" = None) -> "_Linear":
        w = weight.detach()
        b = bias.detach() if bias is not None else None
        if not (transpose and w.dtype == torch.float32):
            return cls(w, None, b)
        return cls(w, arena.take(w.t()) if arena is not None else w.t().contiguous(), b)

    def __call__(self, x: Tensor) -> Tensor:
        """x (M, in) -> (M, out)."""
        if self.weight_t is not None:
            return torch.addmm(self.bias, x, self.weight_t) if self.bias is not None else x @ self.weight_t
        if x.shape[0] == 1 and self.weight.dtype == torch.float32:
            y = torch.mv(self.weight, x[0]) if self.bias is None else torch.addmv(self.bias, self.weight, x[0])
            return y[None]
        return F.linear(x, self.weight, self.bias)


class _Arena:
    """One block of memory for a kept pack's transposed weights, or for the cross-attention keys/values
    (all of them are read at every step), handed out piece by piece. On Linux the block starts at a 2 MB boundary and asks the kernel for 2 MB pages
    (madvise): a greedy step of LED-base streams ~200 MB of them, 1.5% faster here than from 4 KB pages."""

    HUGE = 2 << 20

    def __init__(self, numel: int, dtype: torch.dtype):
        size = torch.empty((), dtype=dtype).element_size()
        self.buf = torch.empty(numel + self.HUGE // size, dtype=dtype)
        self.used = (-self.buf.data_ptr()) % self.HUGE // size  # the first 2 MB boundary
        madvise = libc_madvise()
        if madvise is not None:
            madvise(self.buf.data_ptr() + self.used * size, numel * size // self.HUGE * self.HUGE,
                    14)  # MADV_HUGEPAGE: a hint; without it the pages are 4 KB, the numbers the same

    def take(self, src: Tensor) -> Tensor:
        """A contiguous copy of `src` in the block."""
        return self.empty(src.shape).copy_(src)

    def empty(self, shape: tuple[int, ...]) -> Tensor:
        """An uninitialized contiguous tensor of `shape` in the block."""
        n = math.prod(shape)
        out = self.buf[self.used:self.used + n].view(shape)
        self.used += n
        return out


@dataclass
class _Layer:
    qkv: _Linear  # (3D, D): query (scaled when self_scale is None), key, value of the self-attention
    self_scale: float | None
    self_out: _Linear
    cross_scale: float | None
    cross_q: _Linear  # scaled when cross_scale is None
    cross_k: _Linear
    cross_v: _Linear
    cross_out: _Linear
    fc1: _Linear
    fc2: _Linear
    ln_self: torch.nn.LayerNorm
    ln_cross: torch.nn.LayerNorm
    ln_final: torch.nn.LayerNorm
    activation: object


@dataclass
class _Screen:
    """A bfloat16 copy of a float32 lm_head, to find the few tokens that can be greedy's pick.

    For a row x, the bfloat16 product s~ = bf16(x) . w~ (w~ = bf16(w)) is off from x . w by at most
    |x| |w - w~| + |x - bf16(x)| |w~| (Cauchy-Schwarz) plus its own rounding (the product's result
    in bfloat16: 2^-8 of it) and the accumulation (float32 over D terms, bounded here by 2^-10 |x|
    |w~|, far above its real size). Every token whose bound interval reaches the best lower bound
    is scored again exactly in float32; the others cannot be the argmax. It reads half the bytes
    of the float32 lm_head, which bounds a greedy step at a long input.
    """

    weight: Tensor  # (V, D) bfloat16
    row_error: Tensor  # (V,) |w - w~|
    row_norm: Tensor  # (V,) |w~|

    MAX_CANDIDATES = 4096  # more than this many (a flat distribution): score every token exactly

    @classmethod
    def of(cls, weight: Tensor) -> "_Screen":
        w = weight.detach()
        low = w.to(torch.bfloat16)
        back = low.float()
        return cls(low, (w - back).norm(dim=1), back.norm(dim=1))

    def bounds(self, x: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        """x (R, D) float32 -> approximate logits (R, V) (bias included) and a bound on their error."""
        xl = x.to(torch.bfloat16)
        raw = (torch.mv(self.weight, xl[0])[None] if x.shape[0] == 1 else F.linear(xl, self.weight)).float()
        nx = x.norm(dim=-1, keepdim=True)
        dx = (x - xl.float()).norm(dim=-1, keepdim=True)
        err = nx * self.row_error + (dx + nx * 2.0 ** -10) * self.row_norm + raw.abs() * 2.0 ** -7
        return raw + bias, err


@dataclass
class _Int8Screen:
    """An int8 copy of a float32 lm_head (per-row scales, a quarter of its bytes), to find the few tokens
    that can be greedy's pick, through oneDNN's int8 product (`torch.ops.onednn.qlinear_pointwise`).

    The row x is rounded to x^ = s k (k integers in [-127, 127], one scale s for the step's rows) and each
    weight row w to w^ = c q (q in [-127, 127]); the product sums k . q exactly in 32-bit integers and
    scales it in float32 (a few roundings: 2^-19 of the result bounds them here). The estimate is off from
    x . w by at most |x - x^| |w| + |x^| |w - w^| (Cauchy-Schwarz), both norms known exactly, so every token
    whose interval reaches the best lower bound is scored again in float32, as with `_Screen`. It reads
    half the bytes of the bfloat16 screen, and the int8 product runs 2x faster than bfloat16's `mv` here.
    `of` gives None where the product is missing (a torch without oneDNN) or does not compute what the
    bound assumes (checked once on the weights themselves): the bfloat16 screen serves instead.
    """

    packed: Tensor  # oneDNN's layout of q, (D, V) int8
    scale: Tensor  # (V,) c
    row_error: Tensor  # (V,) |w - c q|, rounded up
    row_norm: Tensor  # (V,) |w|, rounded up

    MAX_CANDIDATES = _Screen.MAX_CANDIDATES
    SLACK = 1.0 + 2.0 ** -16  # the bound's own float32 roundings, folded into its factors
    _ZERO = torch.zeros(1, dtype=torch.long)  # the weights' zero point

    @classmethod
    def of(cls, weight: Tensor) -> "_Int8Screen | None":
        w = weight.detach()
        if w.device.type != "cpu" or not _int8_product():
            return None
        scale = (w.abs().amax(dim=1) / 127).clamp_min(torch.finfo(torch.float32).tiny)
        q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
        error, norm = torch.empty_like(scale), torch.empty_like(scale)
        for i in range(0, w.shape[0], 4096):  # in float64 a block of rows at a time
            wd = w[i:i + 4096].double()
            error[i:i + 4096] = (wd - q[i:i + 4096].double() * scale[i:i + 4096, None].double()).norm(dim=1).float()
            norm[i:i + 4096] = wd.norm(dim=1).float()
        try:
            screen = cls(torch.ops.onednn.qlinear_prepack(q, None), scale, error * cls.SLACK, norm * cls.SLACK)
            # the product must be the integer sum, scaled: check it on the first rows against float64
            g = torch.Generator().manual_seed(0)
            k = torch.randint(-127, 128, (2, w.shape[1]), generator=g).float()
            got = screen._product(k, 0.5)[:, :256].double()
            want = (k.double() * 0.5) @ (q[:256].double() * scale[:256, None].double()).t()
            if not bool(((got - want).abs() <= want.abs() * 2.0 ** -21 + 1e-30).all()):
                return None
        except (RuntimeError, NotImplementedError):
            return None
        return screen

    def _product(self, k: Tensor, s: float) -> Tensor:
        """(s k) w^T for integer-valued k (R, D) in [-127, 127]: float32 (R, V)."""
        xq = (k + 128).to(torch.uint8)
        return torch.ops.onednn.qlinear_pointwise(xq, s, 128, self.packed, self.scale, self._ZERO, None, 1.0, 0,
                                                   torch.float32, "none", [], "")

    def bounds(self, x: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        """x (R, D) float32 -> approximate logits (R, V) (bias included) and a bound on their error."""
        top = x.abs().amax()
        s = float(top / 127)  # a float32 value: exactly the scale the product is given
        if not 0.0 < s < math.inf:  # all zeros (then scale 1 rounds it exactly), or not finite
            s = 1.0
        st = torch.tensor(s, dtype=x.dtype)
        k = torch.round(x / st).clamp_(-127, 127)
        approx = self._product(k, s) + bias
        nx = x.norm(dim=-1, keepdim=True)
        dx = (x - k * st).norm(dim=-1, keepdim=True)
        # |x - s k| with the roundings of s k and of the norm; |s k| <= |x| + |x - s k|
        dx = dx * self.SLACK + (nx + dx) * 2.0 ** -22
        err = torch.addcmul((nx + dx) * self.row_error, dx, self.row_norm)
        err.add_(approx.abs(), alpha=2.0 ** -19).add_(bias.abs(), alpha=2.0 ** -20)
        return approx, err


@dataclass
class _Pack:
    layers: list[_Layer]
    lm_head: _Linear
    screen: "_Int8Screen | _Screen | None" = None  # kept packs only (bfloat16 ones: the int8 screen only)


# each model's pack, beside the model rather than in it: no state dict entry, and a copied or pickled
# model does not carry it; it goes when the model goes
_PACKS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _norm(x: Tensor, ln: torch.nn.LayerNorm) -> Tensor:
    """The LayerNorm module's function, without the module call's overhead (18 calls a step)."""
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


def _int8_product() -> bool:
    """Whether this torch has oneDNN's int8 product (`_Int8Screen`; x86 CPU builds)."""
    return hasattr(torch.ops.onednn, "qlinear_pointwise")


def _power_of_two(x: float) -> bool:
    """Scaling by x is exact (the query scale folded into the weights gives the same numbers)."""
    return x > 0 and math.frexp(x)[0] == 0.5


def _params_key(model) -> tuple | None:
    """What identifies the decoder's weights now: each one's storage and version counter; None when a
    weight is an inference tensor (made under torch.inference_mode), which keeps no version counter."""
    tensors = [*model.get_decoder().parameters(), model.lm_head.weight]
    if any(t.is_inference() for t in tensors):
        return None
    return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)


def pack_nbytes(config, dtype: torch.dtype = torch.float32) -> int:
    """Bytes a kept pack (`FastDecoder.pack`) holds beside a model of `config` whose weights are in
    `dtype`: in float32 the fused query/key/value weights and the scaled cross-attention query (new
    tensors) with their transposed copies, the other projections' transposed copies and the
    lm_head's int8 screen (bfloat16 where oneDNN's int8 product is missing); in another dtype the
    new tensors, and in bfloat16 the int8 screen where that product is there. For the memory guard."""
    D, F, V, L = config.d_model, config.decoder_ffn_dim, config.vocab_size, config.decoder_layers
    size = torch.empty((), dtype=dtype).element_size()
    new = 4 * D * D + 4 * D  # qkv (3D x D) and the scaled cross query (D x D), with their biases
    int8_screen = V * D + 3 * V * 4  # the int8 lm_head, its row scales, errors and norms
    if dtype != torch.float32:
        return L * new * size + (int8_screen if dtype == torch.bfloat16 and _int8_product() else 0)
    transposed = 4 * D * D + D * D + D * D + 2 * D * F  # qkv, self out, cross query, cross out, fc1, fc2
    if _int8_product():
        screen = int8_screen
    else:  # bfloat16 lm_head, row errors and norms
        screen = V * D * 2 + 2 * V * 4
    return L * (new + transposed) * size + screen


def has_pack(model) -> bool:
    """Whether `model` has a kept pack for its current weights (no pack to make before the next run)."""
    cached = _PACKS.get(model)
    return cached is not None and cached[0] == _params_key(model)


def projection_position(break_even: float, group: int, sure: int, most: int) -> int | None:
    """The position (positions already decoded) at whose step the cross-attention keys/values are made,
    or None (never), for a source with `group` query rows a position, when `sure` positions will be
    decoded whatever the tokens (generate's minimum length) and at most `most` can be.

    A query row through the encoder output costs more than one against the keys/values, which cost
    `break_even` rows' worth of that difference to make once. So: made at the start when the rows sure
    to come repay them; otherwise after `break_even` rows through the encoder output (what was spent
    equals what making them costs: at most twice the best choice, whenever generation ends), but only
    if as many rows can still come, as they must to repay them."""
    if break_even == 0 or group * sure >= break_even:
        return 0
    if math.isinf(break_even):
        return None
    first = math.ceil(break_even / group)
    return first if group * (most - first) >= break_even else None


class FastDecoder:
    """Greedy/sampling decoder steps for R = B * group rows against an encoder output (B, N, D).

    `next_logits(ids)` takes the new ids (R, T) (the prompt first, then one token per step) and
    returns float32 logits (R, V) of the last position, as `LEDDecoder.step` + the lm_head would.
    `sure_positions` / `most_positions` (default 0 / max_len): the positions that will be decoded
    whatever the tokens, and at most; they choose when the cross-attention keys/values are made
    (`projection_position`), never the numbers.
    """

    def __init__(self, model, encoder_hidden: Tensor, encoder_mask: Tensor | None, group: int, max_len: int,
                 sure_positions: int = 0, most_positions: int | None = None):
        dec = model.get_decoder()
        self.decoder, self.pack_ = dec, self.pack(model)
        self.dtype = encoder_hidden.dtype
        B, N, D = encoder_hidden.shape
        cfg = model.config
        H = cfg.decoder_attention_heads
        self.B, self.N, self.D, self.H, self.hd, self.group = B, N, D, H, D // H, group
        self.R, self.pos, self.max_len = B * group, 0, max_len
        self.encoder_hidden = encoder_hidden
        # every layer's cross-attention keys and values (B, H, hd, N), made once (_make_cross) at the step
        # that starts at position project_at (None: never; the cross-attention goes through X throughout)
        self.cross: list[tuple[Tensor, Tensor]] | None = None
        self.project_at = projection_position(self.break_even_rows(self.dtype, encoder_hidden.device.type, N), group,
                                              sure_positions, max_len if most_positions is None else most_positions)
        if self.project_at == 0:
            self._make_cross()
        self.cross_mask = None
        if encoder_mask is not None and not bool(encoder_mask.all()):
            self.cross_mask = torch.zeros(B, 1, 1, N, dtype=self.dtype, device=encoder_hidden.device).masked_fill(
                ~encoder_mask.bool()[:, None, None, :], torch.finfo(self.dtype).min)
        shape = (self.R, H, max_len, self.hd)
        self.self_kv = [(encoder_hidden.new_empty(shape), encoder_hidden.new_empty(shape)) for _ in self.pack_.layers]
        self.bias = model.final_logits_bias.detach().to(self.dtype)[0]

    # In float32 the cross-attention can go without its keys/values: for a query row q of head h, with
    # K = X W_k^T + b_k and V = X W_v^T + b_v from the encoder output X, the scores q K^T are (q W_k) X^T + q b_k
    # and the output p V is (p X) W_v^T + b_v (p sums to 1): the same sums in another order, reading X
    # (once a layer without padding, `_attend_x_blocked`) and W_k, W_v instead of K and V, with 12 query columns
    # a product instead of one. That spares their projection of X (0.38 s at an LED-base 4,096-token input,
    # 1 thread here; 0.10 s at 1,024) for more a step (+4-5.5 ms at 4,096 tokens, +3-4 ms at 1,024, reading X
    # twice a layer; +3.6 ms and +4.7 ms, 86 and 17 rows' worth, steps alone, reading it once). Making them costs as much as this many
    # query rows through X at 4,096 tokens and more (measured whole generations here: 72-97), and
    # proportionally fewer at shorter inputs (about 30 at 1,024).
    CROSS_AFTER_ROWS = 80
    CROSS_AFTER_TOKENS = 4096  # the input length CROSS_AFTER_ROWS holds from; shorter inputs scale it down

    @classmethod
    def break_even_rows(cls, dtype: torch.dtype, device_type: str = "cpu", n_src: int | None = None) -> float:
        """Query rows a source attends through X that cost as much as making the keys/values: in float32
        CROSS_AFTER_ROWS, scaled down for inputs shorter than CROSS_AFTER_TOKENS (`n_src`); infinite
        (never made) in bfloat16 on a CPU with fast bfloat16 products, where the products through X
        (12 query rows a step) run faster than one row against the keys and values (25.5 against 27.6 ms
        a step at LED-base/4,096 tokens here); 0 (made at the start) otherwise."""
        if dtype == torch.float32:
            return cls.CROSS_AFTER_ROWS * min(1.0, (n_src or cls.CROSS_AFTER_TOKENS) / cls.CROSS_AFTER_TOKENS)
        if dtype == torch.bfloat16 and device_type == "cpu":
            from .device import fast_bfloat16

            return math.inf if fast_bfloat16() else 0
        return 0

    @classmethod
    def buffers_nbytes(cls, config, n_src: int, dtype: torch.dtype, max_len: int, *, sources: int = 1,
                       group: int = 1, sure_positions: int = 0, most_positions: int | None = None,
                       padded: bool = False, device_type: str = "cpu") -> int:
        """Bytes of the buffers a FastDecoder of these arguments allocates, at most: the self-attention
        cache, the cross-attention keys/values where `projection_position` may make them (CPU: in a
        block 2 MB larger, `_Arena`) and the padding mask; for the memory guard."""
        D, L = config.d_model, config.decoder_layers
        size = torch.empty((), dtype=dtype).element_size()
        total = L * 2 * sources * group * max_len * D * size  # self-attention keys and values
        at = projection_position(cls.break_even_rows(dtype, device_type, n_src), group, sure_positions,
                                 max_len if most_positions is None else most_positions)
        if at is not None:
            total += L * 2 * sources * D * n_src * size + (_Arena.HUGE if device_type == "cpu" else 0)
        if padded:
            total += sources * n_src * size
        return total

    def _make_cross(self) -> None:
        shape = (len(self.pack_.layers), 2, self.B, self.D, self.N)
        if self.encoder_hidden.device.type == "cpu":  # in 2 MB pages, as the weights: every step reads them
            kv = _Arena(math.prod(shape), self.dtype).empty(shape)
        else:
            kv = self.encoder_hidden.new_empty(shape)
        self.cross = [(self._transposed(layer.cross_k, self.encoder_hidden, k),
                       self._transposed(layer.cross_v, self.encoder_hidden, v))
                      for layer, (k, v) in zip(self.pack_.layers, kv)]

    # rows of X a block of `_attend_x_blocked`: 256 x 768 float32 (768 KB) stays in a 2 MB L2 cache between
    # its two products
    X_BLOCK = 256

    def _attend_x(self, q: Tensor, layer: "_Layer") -> Tensor:
        """Queries q (B, H, M, hd) (scaled) -> the cross-attention's output per head (B, H, M, hd), through
        the encoder output X (B, N, D) and the key/value weights. The scores leave out q b_k: it is the
        same for every key of a query row, and softmax ignores a constant added to a row."""
        B, H, M, hd = q.shape
        D, N = self.D, self.N
        w_k = layer.cross_k.weight.view(H, hd, D)  # W_k per head
        w_v = layer.cross_v.weight.view(H, hd, D).transpose(1, 2)  # W_v^T per head, (H, D, hd)
        out = q.new_empty(B, H, M, hd)
        for b, (qb, xb, ob) in enumerate(zip(q, self.encoder_hidden, out)):
            u = torch.bmm(qb, w_k).view(H * M, D)  # q W_k
            y = None
            if self.cross_mask is None and self.dtype == torch.float32:
                y = self._attend_x_blocked(u, xb)
            if y is None:
                s = torch.mm(xb, u.t()).t()  # X (q W_k)^T: X read straight, as p X below
                if self.cross_mask is not None:
                    s = (s.view(H, M, N) + self.cross_mask[b]).view(H * M, N)
                y = torch.mm(s.softmax(dim=-1), xb)  # p X
            torch.bmm(y.view(H, M, D), w_v, out=ob)
        return out.add_(layer.cross_v.bias.view(H, 1, hd))

    def _attend_x_blocked(self, u: Tensor, x: Tensor) -> Tensor | None:
        """softmax(u X^T) X for rows u (R, D) against one source's X (N, D), float32, reading X once: block by
        block, each block's scores then its share of p X while it is in the cache (done in two passes, X
        comes from memory twice, 8-10% slower here at 4,096 tokens). The scores are shifted by the first
        block's row maxima c rather than the whole rows' (exp(s - c) is the same up to a factor per row,
        which the division by the row sums removes); a row whose later scores exceed c by so much that a
        sum overflows (not finite) gives None, and the caller takes the two passes. No mask: a masked
        first block would give no usable shift."""
        R, N, nb = u.shape[0], x.shape[0], self.X_BLOCK
        # every block's exp(s - c) in one buffer (R x block after R x block), summed once at the end
        e_all = u.new_empty(R * N)
        y = neg_shift = None
        for i, xb in enumerate(x.split(nb)):
            e = e_all[i * nb * R:(i * nb + xb.shape[0]) * R].view(R, xb.shape[0])
            if y is None:
                torch.mm(u, xb.t(), out=e)  # (R, block)
                shift = e.amax(dim=1, keepdim=True)
                neg_shift = shift.neg_()
                e.add_(neg_shift).exp_()
                y = torch.mm(e, xb)
            else:
                torch.addmm(neg_shift, u, xb.t(), out=e).exp_()  # s - c in the product
                y.addmm_(e, xb)
        full = N // nb
        total = e_all[:full * nb * R].view(full, R, nb).sum(dim=(0, 2))
        if N > full * nb:
            total += e_all[full * nb * R:].view(R, N - full * nb).sum(dim=1)
        if not math.isfinite(float(y.sum() + total.sum())):
            return None
        return y.div_(total[:, None])

    def _transposed(self, proj: _Linear, encoder_hidden: Tensor, out: Tensor) -> Tensor:
        """The projection of the encoder output per head and transposed, (B, H, hd, N), straight from the
        product W X^T into `out` (B, D, N) (a transposing copy of X W^T costs as much again)."""
        w, b = proj.weight, proj.bias
        for xb, ob in zip(encoder_hidden, out):
            if b is not None:
                torch.addmm(b[:, None], w, xb.t(), out=ob)
            else:
                torch.mm(w, xb.t(), out=ob)
        return out.view(self.B, self.H, self.hd, self.N)

    @staticmethod
    def pack(model) -> _Pack:
        """The model's decoder weights in the step's layout, cached on the model until a weight changes."""
        key = _params_key(model)
        cached = _PACKS.get(model)
        if key is not None and cached is not None and cached[0] == key:
            return cached[1]
        t = key is not None  # transposed copies take a while to make: only for a pack that is kept
        layers, arena = [], None
        dec_layers = model.get_decoder().layers
        if t and model.dtype == torch.float32:  # every transposed copy in one block
            arena = _Arena(sum(m.weight.numel() for layer in dec_layers for m in (
                layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.self_attn.out_proj,
                layer.encoder_attn.q_proj, layer.encoder_attn.out_proj, layer.fc1, layer.fc2)), torch.float32)
        for layer in dec_layers:
            sa, ca = layer.self_attn, layer.encoder_attn
            # a power-of-two scale folds into the weights with the same numbers; another is applied after
            s_fold, s_after = (sa.scaling, None) if _power_of_two(sa.scaling) else (1.0, sa.scaling)
            c_fold, c_after = (ca.scaling, None) if _power_of_two(ca.scaling) else (1.0, ca.scaling)
            qkv_w = torch.cat([sa.q_proj.weight * s_fold, sa.k_proj.weight, sa.v_proj.weight])
            qkv_b = torch.cat([sa.q_proj.bias * s_fold, sa.k_proj.bias, sa.v_proj.bias])
            layers.append(_Layer(
                qkv=_Linear.of(qkv_w, qkv_b, t, arena),
                self_out=_Linear.of(sa.out_proj.weight, sa.out_proj.bias, t, arena),
                self_scale=s_after, cross_scale=c_after,
                cross_q=_Linear.of(ca.q_proj.weight * c_fold, ca.q_proj.bias * c_fold, t, arena),
                cross_k=_Linear(ca.k_proj.weight.detach(), None, ca.k_proj.bias.detach()),
                cross_v=_Linear(ca.v_proj.weight.detach(), None, ca.v_proj.bias.detach()),
                cross_out=_Linear.of(ca.out_proj.weight, ca.out_proj.bias, t, arena),
                fc1=_Linear.of(layer.fc1.weight, layer.fc1.bias, t, arena),
                fc2=_Linear.of(layer.fc2.weight, layer.fc2.bias, t, arena),
                ln_self=layer.self_attn_layer_norm, ln_cross=layer.encoder_attn_layer_norm,
                ln_final=layer.final_layer_norm, activation=layer.activation_fn,
            ))
        # a kept pack screens greedy's pick with an int8 copy of the lm_head (a quarter of float32's bytes, half of
        # bfloat16's); a float32 one without oneDNN's int8 product with a bfloat16 copy
        screen, lm = None, model.lm_head.weight
        if t and lm.dtype == torch.float32:
            screen = _Int8Screen.of(lm) or _Screen.of(lm)
        elif t and lm.dtype == torch.bfloat16:
            screen = _Int8Screen.of(lm.detach().float())
        pack = _Pack(layers, _Linear.of(model.lm_head.weight, None, False), screen)
        if key is not None:  # not kept for inference-tensor weights
            _PACKS[model] = (key, pack)
        else:
            _PACKS.pop(model, None)
        return pack

    def next_logits(self, ids: Tensor) -> Tensor:
        """ids (R, T) after the positions already decoded -> float32 logits (R, V) of the last one."""
        return self._logits(self._hidden(ids))

    def next_greedy(self, ids: Tensor, process) -> Tensor:
        """ids (R, T) -> the greedy pick (R,): argmax of process(logits), where `process` only masks (sets
        scores to -inf, or forces tokens to one value and masks the rest). With a screen, only the
        tokens its bounds leave open are scored exactly; the pick is the same. In bfloat16 the screened
        pick is that of float32 sums over the bfloat16 weights (not of the bfloat16 product's logits,
        rounded to 8 bits: in a near-tie the two can differ)."""
        last = self._hidden(ids)
        screen = self.pack_.screen
        if screen is None:
            return process(self._logits(last)).argmax(dim=-1)
        weight = self.pack_.lm_head.weight
        x, bias = last.float(), self.bias.float()
        approx, err = screen.bounds(x, bias)
        p = process(approx)
        # a masked token (-inf) is below every lower bound unless the whole row is masked; then every
        # token is a candidate, as is right (argmax of all -inf is the first)
        lower = (p - err).amax(dim=-1, keepdim=True)
        open_ = p + err >= lower
        columns = (open_[0] if open_.shape[0] == 1 else open_.any(dim=0)).nonzero().squeeze(1)
        if not 0 < columns.numel() <= screen.MAX_CANDIDATES:  # none: a NaN
            every = self._logits(last) if weight.dtype == torch.float32 else F.linear(x, weight.float(), bias)
            return process(every).argmax(dim=-1)
        exact = torch.full_like(approx, -math.inf)
        exact[:, columns] = torch.addmm(bias.index_select(0, columns), x, weight.index_select(0, columns).float().t())
        # the first of the largest, as argmax (max's indices are the same, in a third of the time here)
        return process(exact).max(dim=-1).indices

    def _logits(self, last: Tensor) -> Tensor:
        lm = self.pack_.lm_head
        return (lm(last) + self.bias).float()

    def _hidden(self, ids: Tensor) -> Tensor:
        """ids (R, T) after the positions already decoded -> the last position's hidden state (R, D)."""
        R, T = ids.shape
        p0, p1 = self.pos, self.pos + T
        if p1 > self.max_len:
            raise RuntimeError(f"decoding past the {self.max_len} positions the cache was made for")
        dec, H, hd, D, dtype = self.decoder, self.H, self.hd, self.D, self.dtype
        x = dec.embed_tokens(ids) + dec.embed_positions.weight[p0:p1].to(dtype)
        x = dec.layernorm_embedding(x).reshape(R * T, D)
        causal = None
        if T > 1:
            allowed = torch.ones(T, p1, dtype=torch.bool, device=ids.device).tril(p0)
            causal = torch.zeros(T, p1, dtype=dtype, device=ids.device).masked_fill(~allowed, torch.finfo(dtype).min)
        B, g = self.B, self.group
        if self.cross is None and self.project_at is not None and p0 >= self.project_at:
            self._make_cross()
        for i, (layer, (sk, sv)) in enumerate(zip(self.pack_.layers, self.self_kv)):
            # causal self-attention against the preallocated cache
            q, k, v = layer.qkv(x).view(R, T, 3, H, hd).permute(2, 0, 3, 1, 4).unbind(0)  # (R, H, T, hd)
            if layer.self_scale is not None:
                q = q * layer.self_scale
            sk[:, :, p0:p1].copy_(k)
            sv[:, :, p0:p1].copy_(v)
            s = q @ sk[:, :, :p1].transpose(-1, -2)
            if causal is not None:
                s = s + causal
            o = s.softmax(dim=-1) @ sv[:, :, :p1]
            x = _norm(x + layer.self_out(o.transpose(1, 2).reshape(R * T, D)), layer.ln_self)
            # cross-attention: the rows of one source folded into one query sequence
            q = layer.cross_q(x)
            if layer.cross_scale is not None:
                q = q * layer.cross_scale
            q = q.view(B, g * T, H, hd).transpose(1, 2)  # (B, H, gT, hd)
            if self.cross is None:
                o = self._attend_x(q, layer)
            else:
                ck, cv = self.cross[i]
                s = q @ ck
                if self.cross_mask is not None:
                    s = s + self.cross_mask
                o = s.softmax(dim=-1) @ cv.transpose(-1, -2)
            o = o.transpose(1, 2).reshape(R * T, D)
            x = _norm(x + layer.cross_out(o), layer.ln_cross)
            x = _norm(x + layer.fc2(layer.activation(layer.fc1(x))), layer.ln_final)
        self.pos = p1
        return x.view(R, T, D)[:, -1]
