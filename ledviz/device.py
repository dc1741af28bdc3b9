"""What this machine's CPU computes fast: is bfloat16 worth choosing over float32?

A CPU with AVX-512 BF16 (and more so AMX) multiplies bfloat16 matrices several times faster
than float32 ones, so a long document is encoded much faster in bfloat16, with attention
probabilities within about 1e-2 of float32's. Without those instructions, PyTorch emulates
bfloat16 through float32 conversions, slower than float32 itself: there float32 stays.

    cpu_capability()         # CpuCapability(fast_bfloat16=True, detail="AVX-512 BF16 and AMX instructions (PyTorch's CPU kernels: AVX512)")
    choose_precision("bfloat16")   # ('bfloat16', None), or ('float32', 'this CPU has no ...')

Tests simulate a CPU without the instructions by passing `flags` (the set of /proc/cpuinfo
flags) or with `simulated_cpu_flags(...)`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import sys
from dataclasses import dataclass
from typing import Iterator

import torch

PRECISIONS = ("float32", "bfloat16")
# documents at least this long are where bfloat16 pays on a CPU that has it (the encoder's
# products dominate); shorter ones run in well under a second either way
LONG_DOCUMENT_TOKENS = 2048

# /proc/cpuinfo flags that make bfloat16 products fast, and how to name them
_BF16_FLAGS = {"avx512_bf16": "AVX-512 BF16", "amx_bf16": "AMX"}

_simulated: frozenset[str] | None = None


@dataclass(frozen=True)
class CpuCapability:
    """Whether bfloat16 is fast here, and the evidence in words."""

    fast_bfloat16: bool
    detail: str


def read_first_processor(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """The fields of the first processor in a cpuinfo file ("model name", "flags", ...); empty where
    there is none (e.g. not Linux). The one reader of /proc/cpuinfo: the flags (cpu_capability) and
    the CPU's name (cpu_name, which a corpus study records) come from it."""
    fields: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    if fields:  # the blank line after the first processor's block
                        break
                    continue
                name, colon, value = line.partition(":")
                if colon:
                    fields.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    return fields


@functools.lru_cache(maxsize=1)
def _first_processor() -> dict[str, str]:
    return read_first_processor()


def _proc_cpu_flags() -> frozenset[str]:
    """The flags of the first processor in /proc/cpuinfo (empty where there is none, e.g. not Linux)."""
    return frozenset(_first_processor().get("flags", "").split())


def cpu_name() -> str | None:
    """The CPU's model name (/proc/cpuinfo, else what `platform` knows), None where unknown."""
    return _first_processor().get("model name") or platform.processor() or platform.machine() or None


def load_average() -> float | None:
    """The 1-minute load average now, rounded to 0.01 (None where the system does not say)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def timing_note(load_start: float | None, load_end: float | None = None, cores: int | None = None,
                cpu: str | None = None) -> str:
    """Under a table of run times: which machine took them and how busy it was, so that a figure is not
    read as the model's speed alone ("times on AMD EPYC (2 cores) with load average 1.9 at the start,
    2.3 at the end: the machine was busy ..."). Loads as load_average() gave them (None: unknown)."""
    cores = cores or os.cpu_count()
    cpu = cpu or cpu_name() or "this machine"
    where = f"Times taken on {cpu}" + (f" ({cores} cores)" if cores else "")
    loads = [x for x in (load_start, load_end) if x is not None]
    if not loads:
        return where + "; its load is not known, so other work on it may have slowed them."
    said = f"load average {load_start:.1f} at the start" if load_start is not None else "load average"
    if load_end is not None:
        said += f", {load_end:.1f} at the end" if load_start is not None else f" {load_end:.1f} at the end"
    busiest = max(loads)
    if cores and busiest >= 0.75 * cores:
        verdict = (f": the machine was busy (load {busiest:.1f} on {cores} cores), so these times are "
                   "slower than on an idle machine; compare the settings of one comparison with each other, "
                   "not with times taken at another moment")
    else:
        verdict = ": the machine was mostly idle, so the times are close to its own speed"
    return f"{where}, {said}{verdict}."


def cpu_flags() -> frozenset[str]:
    """This CPU's flags (or the simulated ones)."""
    return _simulated if _simulated is not None else _proc_cpu_flags()


@contextlib.contextmanager
def simulated_cpu_flags(flags) -> Iterator[None]:
    """Within the block, the CPU is taken to have exactly `flags` (for tests: e.g. a CPU without bfloat16)."""
    global _simulated
    before, _simulated = _simulated, frozenset(flags)
    try:
        yield
    finally:
        _simulated = before


def _torch_capability() -> str:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - older or unusual builds: the flags decide alone
        return "unknown"


def cpu_capability(flags=None) -> CpuCapability:
    """Whether this CPU multiplies bfloat16 fast: it has AVX-512 BF16 or AMX (`flags`: the CPU's flags,
    default /proc/cpuinfo's, for tests), and torch's kernels use AVX-512."""
    simulated = flags is not None or _simulated is not None
    flags = cpu_flags() if flags is None else frozenset(flags)
    have = [name for flag, name in _BF16_FLAGS.items() if flag in flags]
    # in words a reader of the Model page follows: the instructions, then what PyTorch's own kernels use
    kernels = "a simulated CPU" if simulated else f"PyTorch's CPU kernels: {_torch_capability()}"
    if not have:
        return CpuCapability(False, f"no AVX-512 BF16 or AMX instructions ({kernels})")
    return CpuCapability(True, f"{' and '.join(have)} instructions ({kernels})")


def fast_bfloat16(flags=None) -> bool:
    """True when bfloat16 products are fast on this CPU (see cpu_capability)."""
    return cpu_capability(flags).fast_bfloat16


def choose_precision(requested: str, flags=None) -> tuple[str, str | None]:
    """The precision a run uses for `requested` ("float32" or "bfloat16"), and why it differs, if it does.

    bfloat16 on a CPU without fast bfloat16 falls back to float32 (it would be slower there), with
    a message saying so.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested == "bfloat16":
        cap = cpu_capability(flags)
        if not cap.fast_bfloat16:
            return "float32", (f"bfloat16 was asked for, but this CPU has {cap.detail}: bfloat16 would be "
                               f"slower than float32 here, so the run used float32")
    return requested, None


def dtype_of(precision: str) -> torch.dtype:
    """"float32" -> torch.float32, "bfloat16" -> torch.bfloat16."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return getattr(torch, precision)


@functools.lru_cache(maxsize=1)
def libc_madvise():
    """libc's madvise(address, length, advice), or None where there is none (not Linux): the hints
    ledviz gives the memory of its large buffers (attention.fresh_output, fastdecode's weight block).
    A refused hint changes nothing."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn
