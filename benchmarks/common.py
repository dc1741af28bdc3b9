"""Helpers shared by the benchmarks: an LED-base-shaped model in both implementations, timing, memory."""

from __future__ import annotations

import os
import tempfile
import threading
import time

import torch


LED_BASE = dict(
    vocab_size=50265, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
    decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, attention_window=1024,
    max_encoder_position_embeddings=16384, max_decoder_position_embeddings=1024, dropout=0.1,
)


def led_base_pair(cls_name: str = "LEDForConditionalGeneration", **overrides):
    """(transformers model, our model) with the same random weights, both in eval mode."""
    import transformers

    import ledviz

    torch.manual_seed(0)
    theirs = getattr(transformers, cls_name)(transformers.LEDConfig(**{**LED_BASE, **overrides})).eval()
    with tempfile.TemporaryDirectory() as d:
        theirs.save_pretrained(d)
        ours = getattr(ledviz, cls_name).from_pretrained(d)
    return theirs, ours


def rss_bytes() -> int:
    """Resident memory of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _status_bytes(field: str) -> int | None:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-resident-memory mark (VmHWM) to the current level (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_bytes("VmHWM") is not None
    except OSError:
        return False


class PeakMemory:
    """Peak resident memory above the level at entry.

    On Linux the kernel keeps the exact peak (VmHWM), reset at entry: nothing runs beside the
    measured code. Elsewhere a thread samples the resident memory every few milliseconds; such a
    thread takes a core from time to time, which slows code made of many short parallel
    operations more than code made of a few long ones, so timings should not be taken with it.
    """

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = None

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes() - self.base)
            time.sleep(self.interval)

    def __enter__(self):
        self.base = rss_bytes()
        if not _reset_peak():
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is None:
            self.peak = max(self.peak, _status_bytes("VmHWM") - self.base)
        else:
            self._stop.set()
            self._thread.join()
        self.peak = max(self.peak, rss_bytes() - self.base)


def timed(fn, repeats: int = 1):
    """(best seconds, result) of `repeats` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        result = None  # the previous result must not count towards the next run's memory
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def table(rows: list[dict], columns: list[str]) -> str:
    """A plain Markdown table."""
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
    return "\n".join(out)


def sample_text(loaded, tokens: int) -> str:
    """The demo's sample documents repeated and cut to exactly `tokens` tokens (special tokens
    included) for `loaded` (a pipeline.LoadedModel)."""
    from ledviz import pipeline
    from ledviz.demo.data import sample_documents

    text = "\n\n".join(sample_documents().values())
    while True:
        doc = pipeline.prepare_document(loaded, text)
        if doc.n_tokens >= tokens or doc.truncated_tokens:
            break
        text += "\n\n" + text
    if tokens > loaded.max_tokens:
        raise SystemExit(f"the model reads at most {loaded.max_tokens} tokens; ask for fewer")
    text = text[: doc.offsets[tokens - 2][1]]  # keep tokens - 2 document tokens, then <s> ... </s>
    n = pipeline.prepare_document(loaded, text).n_tokens
    assert n == tokens, (n, tokens)
    return text
