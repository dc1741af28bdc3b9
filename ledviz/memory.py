"""Memory a run will take, the server's budget for it, and a bounded store of kept results.

A run of `ledviz.pipeline.run` keeps every encoder layer's attention in band + global form
(`unfold.SparseAttention`), per-head statistics, and the decoder's cross- and self-attention of
the output; while it runs it also holds one layer's attention in float32, the activations and
the teacher-forced pass's attentions. On LED-base at 16,384 tokens that is gigabytes per run, so
a server that lets thirty users run at once, or keep thirty results, runs out of memory.

- `estimate_run(config, n_tokens, ...)`: the bytes a run keeps (exact for a given output length:
  the same tensors `RunResult.attention_bytes` counts, plus the statistics) and an estimate of
  its peak while running.
- `memory_budget(...)`: bytes a server may spend, from the available memory (psutil when
  installed, else /proc/meminfo) less a margin; `MemoryGuard` splits it between the running
  workers and the kept results, and `check()` refuses a run that would not fit, with a message
  that offers float16 storage, fewer layers, fewer output tokens or a shorter document.
- `ResultStore`: the results every user keeps, bounded per user (`per_owner`) and in bytes
  (`max_bytes`); when full, the least recently used results of anyone are dropped (the owner is
  told when it asks for them).

No Streamlit here.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Hashable, Sequence

import torch

from .errors import InputError
from .text import count

MB = 2**20
GB = 2**30


class MemoryRefused(InputError):
    """A run that would not fit the memory budget: the message says what to change."""


def _dtype_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _fmt(nbytes: float) -> str:
    """Bytes in whole MB below a GB, else GB with one decimal; the unit chosen after rounding (1 GB less
    a few bytes is "1.0 GB", not "1,024 MB")."""
    return f"{nbytes / GB:,.1f} GB" if round(nbytes / MB) >= 1024 else f"{nbytes / MB:,.0f} MB"


@dataclass
class RunEstimate:
    """Bytes of one run: `kept` (what the result holds), `peak` (kept plus what the run holds
    at its fullest while it runs), and the parts they are made of."""

    kept: int
    transient: int
    parts: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def peak(self) -> int:
        return self.kept + self.transient

    def describe(self) -> str:
        s = self.settings
        runs = s.get("runs", 1)
        each = "" if runs == 1 else f"{runs} runs kept together, each "
        return (f"{each}{count(s['layers_kept'], 'encoder layer')} × {count(s['heads'], 'head')} × "
                f"{count(s['n_tokens'], 'token')} × {s['band']:,} window + {count(s['n_global'], 'global column')}, "
                f"{s['dtype']}: "
                f"{_fmt(self.kept)} kept, about {_fmt(self.peak)} while running")

    @classmethod
    def together(cls, runs: Sequence["RunEstimate"]) -> "RunEstimate":
        """Runs made one after the other whose results are all kept (the lab's settings): the kept
        bytes add up, the running peak is the largest single run's (a weights copy is made once).
        The settings are the first run's, with the most global tokens of any and `runs`."""
        if not runs:
            raise InputError("no runs to estimate")
        once = {"encoder_layer_probs", "weights_copy"}  # transient: the largest, not the sum
        keys = {k for r in runs for k in r.parts}
        parts = {k: (max if k in once else sum)(r.parts.get(k, 0) for r in runs) for k in sorted(keys)}
        settings = dict(runs[0].settings, runs=len(runs), n_global=max(r.settings["n_global"] for r in runs))
        return cls(kept=sum(r.kept for r in runs), transient=max(r.transient for r in runs), parts=parts,
                   settings=settings)


def estimate_run(config: Any, n_tokens: int, *, n_global: int = 1, max_new_tokens: int = 64,
                 attention_dtype: torch.dtype = torch.float16, attention_layers: Sequence[int] | None = None,
                 num_beams: int = 1, precision: str = "float32", weights_copy: bool = False,
                 decoder_pack: bool = False, min_new_tokens: int | None = None,
                 num_return_sequences: int = 1) -> RunEstimate:
    """Memory of `pipeline.run` on `n_tokens` tokens with `n_global` global tokens, generating up
    to `max_new_tokens` tokens (the output length; the estimate is exact for the kept part when
    the output has exactly that many tokens after the decoder start).

    Kept, per encoder layer kept (H heads, N tokens, window W, x global tokens, d bytes):
    band H·N·(W+1)·d, global columns H·N·x·d, global rows H·x·N·d, positions x·8, mask N·1,
    statistics 4·H·4; per decoder layer: cross-attention H·T·N·d and
    self-attention H·T·T·d (T output tokens). While running (the largest of the phases): one
    encoder layer's scores and probabilities on the padded length, the hidden states and
    feed-forward activations; during generation the encoder output and the decoding buffers
    (`decoding_nbytes`: the cross-attention keys/values only where they are made; `min_new_tokens`
    and `num_return_sequences` as given to generate); during the final pass the encoder output,
    one decoder layer's cross-attention keys/values and every layer's cross-attention probabilities.

    `precision` is the one the run computes in (pipeline.run's, after device.choose_precision):
    "float32", or "bfloat16", where activations and the probabilities an encoder layer hands over
    take 2 bytes a number, not 4. `weights_copy=True`: the run first makes the model's copy in that
    precision (`LoadedModel.model_in`; kept for later runs), `model_nbytes(config, dtype)` more.
    `decoder_pack=True`: greedy search or sampling first packs the decoder's weights for its fast
    step (`fastdecode.pack_nbytes`; kept beside the model for later runs).
    """
    if n_tokens < 1:
        raise InputError(f"n_tokens must be at least 1, got {n_tokens}")
    if max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be at least 0, got {max_new_tokens}")
    windows = config.attention_windows()
    L_enc, L_dec = config.encoder_layers, config.decoder_layers
    H, Hd = config.encoder_attention_heads, config.decoder_attention_heads
    D = config.d_model
    from .device import dtype_of

    d = _dtype_bytes(attention_dtype)
    a = _dtype_bytes(dtype_of(precision))  # activations, and the probabilities as computed
    N, x, T = int(n_tokens), int(n_global), int(max_new_tokens)
    kept_layers = list(range(L_enc)) if attention_layers is None else sorted({int(i) for i in attention_layers})
    bad = [i for i in kept_layers if not 0 <= i < L_enc]
    if bad:
        raise InputError(f"attention_layers {bad} are not encoder layers (0 to {L_enc - 1})")
    wmax = max(windows)
    n_pad = N + (wmax - N % wmax) % wmax

    parts: dict[str, int] = {}
    parts["encoder_attention"] = sum(H * N * (windows[i] + 1) * d + 2 * H * N * x * d + x * 8 + N
                                     for i in kept_layers)
    parts["head_stats"] = len(kept_layers) * 4 * H * 4
    parts["cross_attention"] = L_dec * Hd * T * N * d
    parts["decoder_attention"] = L_dec * Hd * T * T * d
    kept = sum(parts.values())

    # while running: the largest of an encoder layer, generation and the teacher-forced pass
    layer_probs = H * n_pad * (x + wmax + 1) * a + (H * x * n_pad * a if x else 0)  # as computed
    encoder_layer = 3 * layer_probs + n_pad * (6 * D + 2 * config.encoder_ffn_dim) * a
    parts["encoder_layer_probs"] = layer_probs
    parts["generation"] = N * D * a + (decoding_nbytes(config, N, precision, T, num_beams, min_new_tokens,
                                                       num_return_sequences) if T > 0 else 0)
    # the pass over the output for its attentions (pipeline.run): the encoder output, one layer's cross
    # keys/values at a time, its scores with the padding mask added, every layer's probabilities (the pass's
    # outputs), the logits, in float32 and their log-softmax
    parts["trace"] = (3 * N * D * a + 2 * Hd * T * N * a + L_dec * Hd * T * (N + T) * a
                      + T * config.vocab_size * (a + 8)) if T > 0 else 0
    transient = max(encoder_layer, parts["generation"], parts["trace"])
    if weights_copy:
        parts["weights_copy"] = model_nbytes(config, dtype_of(precision))
        transient += parts["weights_copy"]
    if decoder_pack and T > 0 and num_beams <= 1:
        from .fastdecode import pack_nbytes

        parts["decoder_pack"] = pack_nbytes(config, dtype_of(precision))
        transient += parts["decoder_pack"]
    settings = dict(layers_kept=len(kept_layers), heads=H, n_tokens=N, band=wmax + 1, n_global=x,
                    dtype=str(attention_dtype).replace("torch.", ""), max_new_tokens=T, precision=precision)
    return RunEstimate(kept=kept, transient=transient, parts=parts, settings=settings)


def decoding_nbytes(config: Any, n_tokens: int, precision: str, max_new_tokens: int, num_beams: int = 1,
                    min_new_tokens: int | None = None, num_return_sequences: int = 1) -> int:
    """Bytes generation allocates beside the encoder output for one document of `n_tokens`, at most.

    Greedy search (num_beams <= 1; generate's fast step at inference): `fastdecode.FastDecoder`'s
    buffers -- its self-attention cache, and the cross-attention keys/values only where it may make
    them (`fastdecode.projection_position`: in float32 for an output that is sure to be long, or may
    be long enough to repay them; never in bfloat16 on a CPU with fast bfloat16 products), its
    `min_new_tokens` telling how long it is sure to be; sampling `num_return_sequences` decodes that
    many rows at once (generate's group), each with its own cache. Beam search
    (`generation._DecoderRunner`): the cross-attention keys/values once for all beams, the last
    layer's twice while it is made contiguous, and the beams' self-attention caches, twice while a
    step concatenates them (num_beams rows per document, whatever num_return_sequences, which is
    at most num_beams)."""
    from .device import dtype_of
    from .fastdecode import FastDecoder

    L, D, T = config.decoder_layers, config.d_model, int(max_new_tokens)
    a = _dtype_bytes(dtype_of(precision))
    if num_beams <= 1:
        sure = min(T, max(1, int(min_new_tokens or 0)))  # generate always decodes one position per new token
        return FastDecoder.buffers_nbytes(config, n_tokens, dtype_of(precision), T + 1,
                                          group=max(1, int(num_return_sequences)), sure_positions=sure,
                                          most_positions=T)
    return (L + 1) * 2 * n_tokens * D * a + 2 * num_beams * L * 2 * (T + 1) * D * a


def model_nbytes(config: Any, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of an LEDForConditionalGeneration's weights for `config` in `dtype`: every parameter
    (tied ones once) and floating buffer, counted on a model built on the "meta" device (no memory,
    no weights read), so a server can tell before loading a checkpoint whether it fits. Converted as
    modeling.to_dtype converts (in bfloat16 the encoder's layer norms stay float32)."""
    from .modeling import LEDForConditionalGeneration, to_dtype

    with torch.device("meta"):
        model = to_dtype(LEDForConditionalGeneration(config), dtype)
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


# ---------------------------------------------------------------------------------------------
# the budget
# ---------------------------------------------------------------------------------------------

def available_memory() -> int:
    """Bytes of memory available to new allocations now (psutil, else /proc/meminfo MemAvailable)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    raise InputError("cannot tell how much memory is available (no psutil, no /proc/meminfo): "
                     "set the memory budget explicitly (LEDVIZ_MEMORY_BUDGET_MB)")


def memory_budget(budget_mb: float | None = None, margin: float = 0.15, min_margin_mb: float = 1024) -> int:
    """The bytes a server may spend on runs and results: `budget_mb` if given, else the memory
    available now less a margin (the larger of `margin` of it and `min_margin_mb`)."""
    if budget_mb is not None:
        if budget_mb <= 0:
            raise InputError(f"the memory budget must be positive, got {budget_mb} MB")
        return int(budget_mb * MB)
    avail = available_memory()
    return max(0, int(avail - max(avail * margin, min_margin_mb * MB)))


class MemoryGuard:
    """Splits a budget: half for the results users keep (a ResultStore of that size), the other
    half between the `workers` runs that may run at once. `check(estimate)` refuses a run whose
    peak does not fit one worker's share, or the memory available right now."""

    def __init__(self, budget: int, workers: int = 1, kept_share: float = 0.5, live_check: bool = True):
        if budget <= 0:
            raise InputError(f"the memory budget must be positive, got {budget} bytes")
        self.budget = int(budget)
        self.workers = max(1, int(workers))
        self.kept_bytes = int(self.budget * kept_share)
        self.per_run = (self.budget - self.kept_bytes) // self.workers
        self.live_check = live_check

    def check(self, estimate: RunEstimate, *, can_shrink: dict[str, bool] | None = None,
              offers: Sequence[str] = ()) -> None:
        """MemoryRefused when the run would not fit; the message offers what would shrink it
        (`can_shrink` turns the usual offers off, `offers` adds others, first)."""
        limit = self.per_run
        reason = f"the server allows {_fmt(limit)} per run"
        if self.live_check:
            try:
                now = available_memory()
            except InputError:
                now = None
            if now is not None and now - 256 * MB < min(limit, estimate.peak):
                limit, reason = max(0, now - 256 * MB), f"only {_fmt(now)} of memory is free right now"
        if estimate.peak <= limit and estimate.kept <= self.kept_bytes:
            return
        raise MemoryRefused(self.refusal(estimate, reason, can_shrink, offers))

    def check_load(self, what: str, nbytes: int) -> None:
        """MemoryRefused when loading a model whose weights take `nbytes` (model_nbytes of its config)
        would not fit: while loading, the weights read and the model built from them are held at
        once (twice `nbytes`), against the memory free now (without live checks: the budget)."""
        need = 2 * int(nbytes)
        if self.live_check:
            limit = available_memory() - 256 * MB
            reason = f"only {_fmt(max(0, limit + 256 * MB))} of memory is free right now"
        else:
            limit, reason = self.budget, f"the server's memory budget is {_fmt(self.budget)}"
        if need <= limit:
            return
        raise MemoryRefused(f"Not loading {what}: its weights take {_fmt(nbytes)} (float32), and loading holds "
                            f"them twice ({_fmt(need)}), but {reason}. Choose a smaller model (the embedded demo "
                            "model always fits), or try again when fewer models and runs are in memory.")

    @staticmethod
    def refusal(estimate: RunEstimate, reason: str, can_shrink: dict[str, bool] | None = None,
                extra: Sequence[str] = ()) -> str:
        s = estimate.settings
        offers = list(extra)
        can = dict(dtype=True, layers=True, tokens=True, document=True)
        unknown = set(can_shrink or {}) - set(can)
        if unknown:
            raise InputError(f"unknown can_shrink keys {sorted(unknown)}: use {', '.join(can)}")
        can.update(can_shrink or {})
        if can["dtype"] and s["dtype"] == "float32":
            offers.append("store the attention in float16 (half the memory)")
        if can["layers"] and s["layers_kept"] > 1:
            offers.append("keep the attention of fewer encoder layers (e.g. the last one)")
        if can["tokens"] and s["max_new_tokens"] > 16:
            offers.append("generate fewer tokens")
        if can["document"]:
            offers.append("use a shorter document")
        return (f"This run would not fit in memory: {estimate.describe()}, and {reason}. "
                f"To make it fit: {'; or '.join(offers)}.")


# ---------------------------------------------------------------------------------------------
# kept results
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Handle:
    """What a user keeps instead of a result: ask the store for it with `store.get(handle)`."""

    owner: Hashable
    slot: str
    number: int


class ResultStore:
    """Results of every user, at most `per_owner` per user (the oldest of theirs dropped first) and
    at most `max_bytes` in all (the least recently used of anyone's dropped first). A result
    larger than `max_bytes` alone is refused. Thread-safe."""

    def __init__(self, max_bytes: int, per_owner: int = 3):
        if per_owner < 1:
            raise InputError(f"per_owner must be at least 1, got {per_owner}")
        self.max_bytes = int(max_bytes)
        self.per_owner = int(per_owner)
        self._lock = threading.Lock()
        self._items: OrderedDict[Handle, tuple[Any, int]] = OrderedDict()  # least recently used first
        self._counter = itertools.count(1)
        self.dropped: dict[Handle, str] = {}  # why each dropped handle went, for its owner

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(n for _, n in self._items.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def put(self, owner: Hashable, slot: str, value: Any, nbytes: int) -> Handle:
        """Keep `value` (of `nbytes`) for `owner` under `slot` (e.g. a page): replaces the owner's
        earlier result in that slot; drops older results to stay within the bounds."""
        if nbytes > self.max_bytes:
            raise MemoryRefused(f"this result takes {_fmt(nbytes)}, more than the {_fmt(self.max_bytes)} "
                                "the server keeps for all users' results: use a shorter document or fewer layers")
        with self._lock:
            for h in [h for h in self._items if h.owner == owner and h.slot == slot]:
                del self._items[h]
            mine = [h for h in self._items if h.owner == owner]
            while len(mine) >= self.per_owner:
                old = mine.pop(0)
                del self._items[old]
                self.dropped[old] = f"you keep at most {self.per_owner} results; this one was the oldest"
            total = sum(n for _, n in self._items.values())
            while self._items and total + nbytes > self.max_bytes:
                old, (_, n) = self._items.popitem(last=False)
                total -= n
                self.dropped[old] = ("the server needed its memory for newer runs (it keeps "
                                     f"{_fmt(self.max_bytes)} of results for all users)")
            handle = Handle(owner, slot, next(self._counter))
            self._items[handle] = (value, int(nbytes))
            if len(self.dropped) > 10_000:  # forget the oldest reasons
                for h in list(self.dropped)[:5_000]:
                    del self.dropped[h]
            return handle

    def get(self, handle: Handle | None) -> Any:
        """The kept value, or None when it was dropped (see `why_dropped`)."""
        if handle is None:
            return None
        with self._lock:
            item = self._items.get(handle)
            if item is None:
                return None
            self._items.move_to_end(handle)
            return item[0]

    def why_dropped(self, handle: Handle) -> str | None:
        with self._lock:
            return self.dropped.get(handle)

    def drop_owner(self, owner: Hashable) -> None:
        """Forget every result of `owner`."""
        with self._lock:
            for h in [h for h in self._items if h.owner == owner]:
                del self._items[h]


def run_nbytes(result: Any) -> int:
    """Bytes a kept result holds in tensors (a RunResult's attentions and statistics; for anything
    with an `nbytes` or `attention_bytes`, that)."""
    total = getattr(result, "attention_bytes", None)
    if total is None:
        total = getattr(result, "nbytes", 0)
    stats = getattr(result, "head_stats", None) or {}
    total += sum(t.numel() * t.element_size() for s in stats.values() for t in s.values())
    return int(total)
