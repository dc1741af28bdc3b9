"""A compiled CPU kernel, built on first use where a C++ compiler is found (`fused_band.cpp`, beside this file).

The blocked inference attention (attention.py) turns each chunk's band scores into probabilities
with several PyTorch passes over memory: mask, softmax, head weight, and a copy of the window
slots into the kept probabilities in their own dtype. The kernel does all of it in one pass per
row while the row is in cache, and gives each row's statistics on the way (for a sink that asks:
`AttentionStore.row_statistics`). With bfloat16 weights this chain was the largest cost after the
matrix products.

    band_kernel()          # the softmax pass (ctypes function), or None: no compiler, failed build, off
    bf16_head_kernel()     # bfloat16: a head's whole band (products on AMX, else AVX-512 BF16, else MKL), or None
    f32_head_kernel()      # float32: a head's whole band (MKL's sgemm_), block by block in cache, or None
    product_float32()      # a bfloat16 product with its float32 result (the global rows' scores)
    residual_layer_norm()  # the float32 residual stream's sum and layer norm in one pass
    bias_gelu()            # bfloat16: the feed-forward's bias and GELU in one pass after a product without the bias
    linear_gelu()          # bfloat16: the feed-forward's product, bias and GELU as one oneDNN product (PyTorch's)
    head_sum()             # the views' sums over heads in one pass
    kernel_status()        # in words: "compiled with g++ (cached in ...)" or why not

On first use the source is compiled with the system's C++ compiler (`$CXX`, else g++, c++ or
clang++), tuned for this CPU (-march=native), about a second, into a cache directory
(`$LEDVIZ_KERNEL_CACHE`, else ~/.cache/ledviz/kernels); the file name holds a hash of the
source, the compiler, its flags and this CPU's flags, so a cache shared by different machines
never loads a library built for another CPU. Where there is no compiler, the build fails or the
cache cannot be written, ledviz keeps its PyTorch operations (the same numbers, slower) and
`kernel_status()` says why. `LEDVIZ_FUSED_KERNEL=off` (or `set_enabled(False)`) turns the kernel
off; "auto" (the default) uses it when it builds. Models in bfloat16 also run their band products
inside the kernel (`bf16_head_kernel`), where PyTorch has MKL: on the CPU's matrix unit (AMX), else with
AVX-512 BF16's dot products, where the CPU has them and the shapes fit, else through MKL's bfloat16 product
in PyTorch's library; float32 models likewise through MKL's sgemm_ (`f32_head_kernel`).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import itertools
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, NamedTuple

import torch

from .errors import InputError

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("fused_band.cpp")
FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-shared", "-fPIC"]
INTERFACE_VERSION = 9  # ledviz_band_version() of the source this module calls
SETTINGS = ("auto", "off")  # "auto": the kernel where it builds; "off": PyTorch operations only
DTYPE_CODES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}

_enabled: bool | None = None  # None: from LEDVIZ_FUSED_KERNEL


def _setting() -> str:
    value = os.environ.get("LEDVIZ_FUSED_KERNEL", "auto").strip().lower() or "auto"
    if value not in SETTINGS:
        raise InputError(f"LEDVIZ_FUSED_KERNEL={value!r} is not a setting: use one of {', '.join(SETTINGS)}")
    return value


def enabled() -> bool:
    """Whether the kernel is to be used when it builds (set_enabled, else LEDVIZ_FUSED_KERNEL)."""
    return _setting() != "off" if _enabled is None else _enabled


def set_enabled(value: bool | None) -> None:
    """Use the kernel (True), never (False), or as LEDVIZ_FUSED_KERNEL says (None)."""
    global _enabled
    _enabled = value


@contextlib.contextmanager
def kernel_enabled(value: bool) -> Iterator[None]:
    """Within the block, the kernel is used (when it builds) or not: for tests and benchmarks."""
    global _enabled
    before, _enabled = _enabled, value
    try:
        yield
    finally:
        _enabled = before


class _NoCompiler(Exception):
    """CXX names a compiler that is not there: said, not replaced by another one."""


def _compiler() -> str | None:
    chosen = os.environ.get("CXX", "").strip()
    if chosen:
        found = shutil.which(chosen)
        if found is None:
            raise _NoCompiler(f"not built: CXX={chosen!r} is not a program on PATH (fix CXX, or unset it "
                              f"to use g++, c++ or clang++)")
        return found
    for name in ("g++", "c++", "clang++"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _cache_dir() -> Path:
    root = os.environ.get("LEDVIZ_KERNEL_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "ledviz" / "kernels"


def _cpu_signature() -> str:
    from . import device

    return " ".join(sorted(device.cpu_flags()))


def _compiler_version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


class _Build:
    """The outcome of building and loading the kernel once: the function, or why there is none."""

    def __init__(self):
        self.function = None
        self.status = ""
        try:
            self.function, self.status = self._load()
        except Exception as exc:  # noqa: BLE001 - any failure leaves the PyTorch operations in use
            self.status = f"not used: {type(exc).__name__}: {exc}"
        if self.function is None:
            logger.info("ledviz's fused band kernel is %s; the PyTorch operations are used instead", self.status)

    @staticmethod
    def _load():
        try:
            cxx = _compiler()
        except _NoCompiler as exc:
            return None, str(exc)
        if cxx is None:
            return None, "not built: no C++ compiler found (set CXX, or install g++)"
        source = SOURCE.read_bytes()
        key = hashlib.sha256(b"\0".join([source, cxx.encode(), _compiler_version(cxx).encode(),
                                         " ".join(FLAGS).encode(), _cpu_signature().encode()])).hexdigest()[:20]
        cache = _cache_dir()
        target = cache / f"fused_band-{key}.so"
        if not target.exists():
            cache.mkdir(parents=True, exist_ok=True)
            # built under a temporary name and renamed: a concurrent build or reader never sees half a file
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
            os.close(fd)
            try:
                done = subprocess.run([cxx, *FLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True,
                                      timeout=300)
                if done.returncode != 0:
                    return None, f"not built: {Path(cxx).name} failed: {done.stderr.strip()[-500:]}"
                os.replace(tmp, target)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        lib = ctypes.CDLL(str(target))
        if lib.ledviz_band_version() != INTERFACE_VERSION:
            return None, f"not used: {target} has interface {lib.ledviz_band_version()}, expected {INTERFACE_VERSION}"
        i64, ptr, i32, f32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int, ctypes.c_float
        softmax = lib.ledviz_band_softmax
        softmax.argtypes = [ptr, i32, i64, i64, i64, i64, i64, i64, ptr, ptr, ptr, f32, ptr, i32, i64, i64, ptr, ptr,
                            i64]
        softmax.restype = i32
        head = lib.ledviz_band_attention_bf16
        head.argtypes = [ptr, ptr, i64, ptr, ptr, i64, ptr, ptr, i64, i64, i64, i64, i64, i64, ptr, ptr, ptr, f32, ptr,
                         i32, i64, i64, ptr, ptr, i64, ptr, i64, i64, i32, i32]
        head.restype = i32
        head_f32 = lib.ledviz_band_attention_f32
        head_f32.argtypes, head_f32.restype = head.argtypes[:-1], i32
        norm = lib.ledviz_residual_layer_norm
        norm.argtypes = [ptr, ptr, i64, i64, ptr, i32, ptr, ptr, ptr, f32, ptr]
        norm.restype = i32
        head_sum = lib.ledviz_head_sum
        head_sum.argtypes = [ptr, i64, i64, ptr, i32, i64, i64, i64, i64, ptr, i64, i64, i64]
        head_sum.restype = i32
        bias_gelu = lib.ledviz_bias_gelu_bf16
        bias_gelu.argtypes, bias_gelu.restype = [ptr, i64, i64, ptr], i32
        amx_shape, amx_ready = lib.ledviz_amx_shape, lib.ledviz_amx_ready
        amx_shape.argtypes, amx_shape.restype = [i64, i64, i64], i32
        amx_ready.argtypes, amx_ready.restype = [], i32
        dpbf16_ready = lib.ledviz_dpbf16_ready
        dpbf16_ready.argtypes, dpbf16_ready.restype = [], i32
        return (_Functions(softmax, head, head_f32, norm, head_sum, bias_gelu, amx_shape, bool(amx_ready()),
                           bool(dpbf16_ready())),
                f"compiled with {Path(cxx).name} (cached in {cache})")


class _Functions:
    """The kernel's entry points (see fused_band.cpp)."""

    def __init__(self, softmax, head_bf16, head_f32, residual_layer_norm, head_sum, bias_gelu, amx_shape,
                 amx_ready: bool, dpbf16_ready: bool):
        self.softmax, self.head_bf16, self.head_f32, self.residual_layer_norm = softmax, head_bf16, head_f32, \
            residual_layer_norm
        self.head_sum, self.bias_gelu, self.amx_shape, self.amx_ready = head_sum, bias_gelu, amx_shape, amx_ready
        self.dpbf16_ready = dpbf16_ready  # AVX-512 BF16's dot products compiled in (the CPU has them)


def _functions() -> "_Functions | None":
    """The kernel's entry points where it is turned on and built here, else None."""
    return _build().function if enabled() else None


def call(function, *arguments, what: str = "fused band kernel") -> None:
    """Call an entry point of fused_band.cpp; a non-zero return (arguments it refused) is an error."""
    rc = function(*arguments)
    if rc:
        raise RuntimeError(f"ledviz's {what} refused its arguments (code {rc})")


def head_sum(t: torch.Tensor, heads: list[int], out: torch.Tensor) -> bool:
    """out (B, R, C) float32 += the sum of t[:, h] (t: (B, H, R, C)) over `heads`, in one pass over blocks
    of rows that stay in cache (a float16 or bfloat16 t is converted as it is read). False (nothing
    done) where the kernel is not in use or the layout does not fit: the caller uses PyTorch operations."""
    functions = _functions()
    if functions is None or t.device.type != "cpu" or t.dtype not in DTYPE_CODES or out.dtype != torch.float32:
        return False
    B, H, R, C = t.shape
    if out.shape != (B, R, C) or t.stride(3) != 1 or out.stride(2) != 1 or not heads:
        return False
    # the kernel trusts these: every pointer below covers what it reads or writes
    assert all(0 <= h < H for h in heads)
    index = torch.tensor(heads, dtype=torch.int64)
    call(functions.head_sum, out.data_ptr(), out.stride(0), out.stride(1), t.data_ptr(), DTYPE_CODES[t.dtype],
         t.stride(0), t.stride(1), t.stride(2), B, index.data_ptr(), len(heads), R, C, what="head-sum kernel")
    return True


def residual_layer_norm(inp: torch.Tensor, out: torch.Tensor, add: torch.Tensor | None, add_bias: torch.Tensor | None,
                        norm: torch.nn.LayerNorm, narrow: torch.Tensor | None = None) -> bool:
    """out (rows, d) float32 = norm(inp + add + add_bias) in one pass per row (out may be inp), and
    narrow (rows, d) bfloat16 = out when given. False (nothing done) where the kernel is not in use:
    the caller computes it with PyTorch operations."""
    functions = _functions()
    if functions is None:
        return False
    rows, d = inp.shape
    f32 = torch.float32
    weight, bias = norm.weight.detach().to(f32).contiguous(), norm.bias.detach().to(f32).contiguous()
    add_bias = add_bias.detach().to(f32).contiguous() if add_bias is not None else None
    # the kernel trusts these: every pointer below covers what it reads or writes
    assert inp.dtype == out.dtype == f32 and inp.is_contiguous() and out.is_contiguous() and out.shape == (rows, d)
    assert norm.normalized_shape == (d,) and weight.numel() == bias.numel() == d
    assert add is None or (add.shape == (rows, d) and add.is_contiguous() and add.dtype in DTYPE_CODES)
    assert add_bias is None or add_bias.numel() == d
    assert narrow is None or (narrow.shape == (rows, d) and narrow.is_contiguous() and narrow.dtype == torch.bfloat16)
    call(functions.residual_layer_norm,
         inp.data_ptr(), out.data_ptr(), rows, d, None if add is None else add.data_ptr(),
         DTYPE_CODES[add.dtype] if add is not None else 0, None if add_bias is None else add_bias.data_ptr(),
         weight.data_ptr(), bias.data_ptr(), float(norm.eps), None if narrow is None else narrow.data_ptr(),
         what="residual layer norm kernel")
    return True


def bias_gelu_takes(t: torch.Tensor) -> bool:
    """Whether bias_gelu runs on t: the kernel is in use and t is a contiguous bfloat16 matrix on the CPU."""
    return (_functions() is not None and t.device.type == "cpu" and t.dtype == torch.bfloat16 and t.dim() == 2
            and t.is_contiguous())


def bias_gelu(t: torch.Tensor, bias: torch.Tensor) -> bool:
    """t (rows, cols) bfloat16 <- GELU(t + bias) (erf form), in place, in one pass: each sum in float32, rounded
    once (the erf from a fitted rational, within 4e-7: PyTorch's bfloat16 GELU but for a step in a few values).
    False (nothing done) where bias_gelu_takes(t) is not so: the caller adds the bias and applies PyTorch's GELU."""
    if not bias_gelu_takes(t):
        return False
    rows, cols = t.shape
    bias = bias.detach().to(torch.float32).contiguous()
    # the kernel trusts these: every pointer below covers what it reads or writes
    assert bias.shape == (cols,)
    call(_functions().bias_gelu, t.data_ptr(), rows, cols, bias.data_ptr(), what="bias and GELU kernel")
    return True


@functools.lru_cache(maxsize=1)
def _onednn_linear():
    """PyTorch's oneDNN linear with a fused elementwise epilogue (torch.ops.mkldnn._linear_pointwise) where this
    build has it and the CPU runs oneDNN's bfloat16 products, else None."""
    try:
        if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            return None
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


def linear_gelu_takes(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether linear_gelu runs on x and weight: use_onednn_gelu, PyTorch's oneDNN linear is there, and both
    are bfloat16 matrices on the CPU (x with unit column stride)."""
    return (use_onednn_gelu and _onednn_linear() is not None and x.device.type == weight.device.type == "cpu"
            and x.dtype == weight.dtype == torch.bfloat16 and x.dim() == weight.dim() == 2 and x.stride(1) == 1)


# linear_gelu's callers keep each result under this size: glibc's malloc serves blocks up to 32 MB from memory
# it reuses once one such block was freed, larger ones from fresh pages each time (about 0.12 s of page faults per
# 16,384-token bfloat16 encoder with 33 MB slices)
LINEAR_GELU_MAX_BYTES = 24 << 20


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """GELU(x @ weight.T + bias) (erf form) for bfloat16 x (rows, in) and weight (out, in), as one oneDNN product
    whose epilogue adds the bias to the float32 sums and applies the GELU before the one rounding to bfloat16
    (the product, the bias and the GELU in one pass, where the product then the bias_gelu kernel round twice
    and read the (rows, out) result again: 4,096 x 768 x 3,072, 1 thread, 18.7 ms against 23.5 ms, and closer to
    float64). A new tensor; None (nothing done) where linear_gelu_takes is not so."""
    if not linear_gelu_takes(x, weight):
        return None
    return _onednn_linear()(x, weight, bias, "gelu", [], "none")


@functools.lru_cache(maxsize=None)
def _torch_symbol(name: str) -> int | None:
    """The address of a function inside PyTorch's CPU library (MKL's, where PyTorch is built with it), or None."""
    try:
        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"), mode=ctypes.RTLD_GLOBAL)
        return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
    except (OSError, AttributeError):
        return None


def _mkl_gemm_bf16() -> int | None:
    """The address of MKL's cblas_gemm_bf16bf16f32 inside PyTorch's CPU library, or None (a build without MKL)."""
    return _torch_symbol("cblas_gemm_bf16bf16f32")


def _mkl_sgemm() -> int | None:
    """The address of MKL's sgemm_ (Fortran interface) inside PyTorch's CPU library, or None (a build without it)."""
    return _torch_symbol("sgemm_")


@functools.lru_cache(maxsize=1)
def _mkl_gemm_bf16_function():
    """MKL's cblas_gemm_bf16bf16f32 as a Python-callable function, or None (a build without MKL)."""
    address = _mkl_gemm_bf16()
    if not address:
        return None
    i32, ptr, f32 = ctypes.c_int, ctypes.c_void_p, ctypes.c_float
    return ctypes.CFUNCTYPE(None, i32, i32, i32, i32, i32, i32, f32, ptr, i32, ptr, i32, f32, ptr, i32)(address)


def _operand(t: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """A matrix as MKL's product reads it: (the tensor, transposed or not, its leading dimension)."""
    if t.stride(1) == 1 and t.stride(0) >= max(1, t.shape[1]):
        return t, 111, t.stride(0)  # CblasNoTrans
    if t.stride(0) == 1 and t.stride(1) >= max(1, t.shape[0]):
        return t, 112, t.stride(1)  # CblasTrans
    t = t.contiguous()
    return t, 111, max(1, t.shape[1])


def product_float32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (..., m, k) @ b (..., k, n) for bfloat16 a and b on the CPU, the result in float32 (m, n) as accumulated,
    not rounded to bfloat16 as PyTorch's bfloat16 product returns it: through MKL's bfloat16 product where
    PyTorch has it (and use_mkl_products), else both operands converted to float32 first (the same exact
    products, slower). The leading dimensions are batch dimensions, as in torch.matmul (no broadcasting)."""
    assert a.dtype == b.dtype == torch.bfloat16 and a.device.type == b.device.type == "cpu"
    assert a.shape[:-2] == b.shape[:-2] and a.shape[-1] == b.shape[-2]
    gemm = _mkl_gemm_bf16_function() if use_mkl_products else None
    if gemm is None:
        return a.float() @ b.float()
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    out = torch.empty(a.shape[:-1] + (n,), dtype=torch.float32)
    if out.numel() == 0:
        return out
    if k == 0:
        return out.zero_()
    for index in itertools.product(*map(range, a.shape[:-2])):  # views, never a copy of a whole operand
        ai, ta, lda = _operand(a[index])
        bi, tb, ldb = _operand(b[index])
        gemm(101, ta, tb, m, n, k, 1.0, ai.data_ptr(), lda, bi.data_ptr(), ldb, 0.0, out[index].data_ptr(), n)
    return out


@functools.lru_cache(maxsize=1)
def _build() -> _Build:
    return _Build()


def band_kernel():
    """The compiled `ledviz_band_softmax`, or None: turned off, or it could not be built here."""
    functions = _functions()
    return functions.softmax if functions is not None else None


# where ledviz_band_attention_bf16's band products run (its `unit` argument)
UNIT_MKL, UNIT_AMX, UNIT_DPBF16 = 0, 1, 2
UNIT_NAMES = {UNIT_MKL: "MKL", UNIT_AMX: "the matrix unit (AMX)", UNIT_DPBF16: "AVX-512 BF16 dot products"}


class HeadKernel(NamedTuple):
    """What bf16_head_kernel (or f32_head_kernel) gives: the entry point, MKL's product, the unit that takes the
    products of the shapes it fits (packed_shape), and the dtype."""

    function: object  # ledviz_band_attention_bf16
    gemm: int  # the address of MKL's cblas_gemm_bf16bf16f32
    packed_shape: object | None  # ledviz_amx_shape(head size, block rows, w) where `unit` is used, else None
    dtype: torch.dtype = torch.bfloat16  # what it computes in
    unit: int = UNIT_MKL  # UNIT_AMX or UNIT_DPBF16 for the shapes packed_shape takes

    def products(self, hd: int, c: int, w: int) -> tuple[int | None, int]:
        """The products' arguments for these shapes: (None, the unit inside the kernel) or (MKL's product, 0)."""
        if self.packed_shape is not None and self.packed_shape(hd, c, w):
            return None, self.unit
        return self.gemm, UNIT_MKL


def bf16_head_kernel() -> HeadKernel | None:
    """The bfloat16 models' whole-head kernel (`ledviz_band_attention_bf16`), or None: the kernel is off or not
    built, or PyTorch has no MKL (then bfloat16 takes band_kernel with PyTorch's products). Its band products
    run on the CPU's matrix unit (AMX) where the build and the system allow it and the shapes fit (use_amx),
    else with AVX-512 BF16's dot products where the CPU has them and the shapes fit (use_dpbf16), else on
    MKL's bfloat16 product (which runs at about float32's speed on AMD's CPUs: measured on an AMD EPYC, 30-80
    GFLOP/s on one core against 70-180 for PyTorch's bfloat16 product)."""
    if not use_mkl_products:
        return None
    functions = _functions()
    if functions is None:
        return None
    gemm = _mkl_gemm_bf16()
    if not gemm:
        return None
    if use_amx and functions.amx_ready:
        return HeadKernel(functions.head_bf16, gemm, functions.amx_shape, unit=UNIT_AMX)
    if use_dpbf16 and functions.dpbf16_ready:
        return HeadKernel(functions.head_bf16, gemm, functions.amx_shape, unit=UNIT_DPBF16)
    return HeadKernel(functions.head_bf16, gemm, None)


def f32_head_kernel() -> HeadKernel | None:
    """The float32 models' whole-head kernel (`ledviz_band_attention_f32`: MKL's sgemm_ products, the softmax on
    each block while it is in cache, the output rows written in place), or None: the kernel is off or not built,
    PyTorch has no MKL, or use_f32_head is off (then float32 takes band_kernel with PyTorch's batched products)."""
    if not (use_mkl_products and use_f32_head):
        return None
    functions = _functions()
    sgemm = _mkl_sgemm()
    if functions is None or not sgemm:
        return None
    return HeadKernel(functions.head_f32, sgemm, None, torch.float32)


# bfloat16 models take MKL's bfloat16 products inside the kernel where PyTorch has MKL (tests turn it off)
use_mkl_products = True
# float32 models take the whole-head kernel with MKL's sgemm_ likewise (tests and benchmarks turn it off)
use_f32_head = True
# bfloat16 feed-forwards take oneDNN's product with the bias and GELU in its epilogue where PyTorch has it
# (linear_gelu; tests turn it off to reach the bias_gelu kernel)
use_onednn_gelu = True
# ... and the matrix unit's (AMX) products instead, written in fused_band.cpp, where they can run (tests turn it
# off): the keys and values packed once per head and chunk instead of MKL's repacking on every block
use_amx = True
# ... else AVX-512 BF16's dot products on the same packed keys and values, where the CPU has them (tests turn it
# off); the float32 scores as the matrix unit's
use_dpbf16 = True
# ... and keep MKL's float32 scores (float32_scores), or read them rounded to bfloat16 as PyTorch's
# bfloat16 product gives them (False: the PyTorch fallback's probabilities). Float32 scores are as fast
# and closer to a float32 run: over 16 validation reports of the embedded model, the largest
# difference of a probability from float32 was above 1e-2 on 6 of them, against 13 with rounded scores.
float32_scores = True


def kernel_status() -> str:
    """In words: whether the fused band kernel is in use, and if not, why; and where bfloat16's band products run."""
    if not enabled():
        return "off (LEDVIZ_FUSED_KERNEL=off or set_enabled(False)): PyTorch operations"
    build = _build()
    if build.function is None:
        return build.status
    head = bf16_head_kernel()
    products = UNIT_NAMES[head.unit] if head is not None else "PyTorch"
    return f"{build.status}; bfloat16 band products on {products}"


def reset() -> None:
    """Forget the build, so that the next use builds (or looks up) the kernel again (tests)."""
    _build.cache_clear()
