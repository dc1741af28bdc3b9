"""The compiled band kernel (ledviz/fused.py, fused_band.cpp) against the PyTorch operations it replaces, and its fallback."""

from __future__ import annotations

import pytest
import torch

import ledviz
from conftest import assert_close, encoder_batch, perturb, tiny_kwargs
from ledviz import attention, fused
from ledviz.errors import InputError

needs_kernel = pytest.mark.skipif(fused.band_kernel() is None, reason=f"fused kernel: {fused.kernel_status()}")


# Two bfloat16 paths (kernel and PyTorch operations) round in different places (the kernel once from float32;
# with float32_scores its scores are not rounded at all), and a second layer reads the first one's outputs: on
# the sharp random model of _model a single probability can differ by up to 2e-2 (over eight sequence lengths,
# before and after the embeddings were summed in float32: 0.4e-2 to 2.2e-2, whichever path is nearer float32),
# while their mean differences from a float32 run are the same (5e-4); an error of the kernel moves many by far
# more, so the tests check the mean difference too
BFLOAT16_PATHS_TOL = 2.5e-2


def _model(windows, dtype=torch.float32):
    torch.manual_seed(0)
    cfg = ledviz.LEDConfig(**tiny_kwargs(attention_window=windows, encoder_layers=len(windows),
                                         max_encoder_position_embeddings=256, dropout=0.0, attention_dropout=0.0))
    model = ledviz.LEDModel(cfg).eval()
    perturb(model)
    return model.to(dtype)


def _encode(model, batch, use_kernel: bool, **kw):
    ids, am, gm = batch
    with fused.kernel_enabled(use_kernel), torch.no_grad():
        return model.encoder(ids, attention_mask=am, global_attention_mask=gm, output_attentions=True, **kw)


@needs_kernel
@pytest.mark.parametrize("windows", [[2, 4], [6, 10], [16, 16]], ids=str)
@pytest.mark.parametrize("N", [1, 7, 33, 80])
@pytest.mark.parametrize("globals_pad", [((0, 0), (0, 0)), ((1, 0), (0, 3)), ((9, 5), (0, 4))], ids=str)
def test_kernel_equals_torch_operations_float32(windows, N, globals_pad):
    """float32: the kernel's probabilities and outputs are the PyTorch path's to float32 rounding,
    with padding, global tokens (used and unused slots), partial blocks and a head mask."""
    n_global, pad = globals_pad
    pad = tuple(min(p, N - 1) for p in pad)
    n_global = tuple(min(g, N) for g in n_global)
    model = _model(windows)
    batch = encoder_batch(2, N, n_global, pad)
    head_mask = torch.tensor([[1.0, 0.5], [0.0, 1.0]])[: len(windows)] if len(windows) == 2 else None
    for block in (None, 3):
        model.encoder.set_attention_implementation("blocked", block)
        ref = _encode(model, batch, False, head_mask=head_mask)
        out = _encode(model, batch, True, head_mask=head_mask)
        assert_close(out.last_hidden_state, ref.last_hidden_state, "hidden")
        for a, b in zip(out.attentions, ref.attentions):
            assert_close(a, b, "local attentions")
            assert ((a == 0) == (b == 0)).all(), "masked entries are exact zeros in both"
        for a, b in zip(out.global_attentions or (), ref.global_attentions or ()):
            assert_close(a, b, "global attentions")


@needs_kernel
@pytest.mark.parametrize("dtype,mkl,f32_scores", [(torch.bfloat16, False, False), (torch.bfloat16, True, False),
                                                  (torch.bfloat16, True, True), (torch.float16, False, False)],
                         ids=["bfloat16", "bfloat16-mkl", "bfloat16-mkl-float32-scores", "float16"])
@pytest.mark.parametrize("kept", [None, torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_kernel_in_half_precision(dtype, mkl, f32_scores, kept, monkeypatch):
    """bfloat16 and float16 models, probabilities kept in each dtype: the kernel (rounding once from
    float32) against the PyTorch path (rounding in the model's dtype, then converting); with `mkl`,
    bfloat16's whole head in the kernel (MKL's products; scores rounded to bfloat16, or float32)."""
    if mkl and fused._mkl_gemm_bf16() is None:
        pytest.skip("PyTorch has no MKL here")
    monkeypatch.setattr(fused, "use_mkl_products", mkl)
    monkeypatch.setattr(fused, "float32_scores", f32_scores)
    taken = []
    whole = attention._fused_head
    monkeypatch.setattr(attention, "_fused_head", lambda *a: taken.append(1) or whole(*a))
    model = _model([4, 8], dtype)
    batch = encoder_batch(2, 29, (1, 3), (0, 4))
    ref = _encode(model, batch, False, attention_dtype=kept)
    out = _encode(model, batch, True, attention_dtype=kept)
    assert bool(taken) == mkl
    assert out.attentions[0].dtype == (kept or dtype)
    assert_close(out.last_hidden_state.float(), ref.last_hidden_state.float(), "hidden", tol=5e-2)
    tol = BFLOAT16_PATHS_TOL if dtype == torch.bfloat16 else 1e-2
    for a, b in zip(out.attentions, ref.attentions):
        assert_close(a.float(), b.float(), "local attentions", tol=tol)
        assert (a.float() - b.float()).abs().mean() < 1e-3, "local attentions: mean difference"


def _unit_ready(unit: int) -> bool:
    """Whether the kernel runs the bfloat16 band's products on `unit` here (and PyTorch has MKL for the rest)."""
    functions = fused._functions()
    if functions is None or fused._mkl_gemm_bf16() is None:
        return False
    return functions.amx_ready if unit == fused.UNIT_AMX else functions.dpbf16_ready


@needs_kernel
@pytest.mark.parametrize("unit", [
    pytest.param(fused.UNIT_AMX, id="amx", marks=pytest.mark.skipif(
        not _unit_ready(fused.UNIT_AMX), reason="no AMX here (or no MKL in PyTorch)")),
    pytest.param(fused.UNIT_DPBF16, id="avx512-bf16", marks=pytest.mark.skipif(
        not _unit_ready(fused.UNIT_DPBF16), reason="no AVX-512 BF16 here (or no MKL in PyTorch)")),
])
@pytest.mark.parametrize("kept", [None, torch.float32], ids=str)
def test_bfloat16_band_on_packed_products(unit, kept, monkeypatch):
    """Shapes the packed products take (head size 32, w 16 and 32, blocks of 32 rows), on the matrix unit (AMX)
    or with AVX-512 BF16's dot products: they give MKL's and the PyTorch path's probabilities and outputs to
    bfloat16 rounding, with padding, used and unused global slots, a head mask and a partial last block; a
    shape they do not take goes to MKL."""
    torch.manual_seed(0)
    monkeypatch.setattr(fused, "use_amx", unit == fused.UNIT_AMX)  # AVX-512 BF16 is taken where AMX is not
    name = fused.UNIT_NAMES[unit]
    cfg = ledviz.LEDConfig(**tiny_kwargs(d_model=64, encoder_attention_heads=2, encoder_ffn_dim=64,
                                         attention_window=[32, 64], max_encoder_position_embeddings=512,
                                         dropout=0.0, attention_dropout=0.0))
    model = ledviz.LEDModel(cfg).eval()
    perturb(model, scale=0.1)
    model = model.to(torch.bfloat16)
    batch = encoder_batch(2, 150, (1, 3), (0, 40))
    head_mask = torch.tensor([[1.0, 0.5], [0.0, 1.0]])
    products = []
    whole = attention._fused_head
    monkeypatch.setattr(attention, "_fused_head",
                        lambda head, chunk, h, kv, *a: products.append(head.products(kv.shape[-1], 32, 16)) or
                        whole(head, chunk, h, kv, *a))
    packed = _encode(model, batch, True, head_mask=head_mask, attention_dtype=kept)
    assert products and all(p == (None, unit) for p in products), f"{name}'s products were taken"
    assert fused.kernel_status().endswith(f"bfloat16 band products on {name}")
    monkeypatch.setattr(fused, "use_amx", False)
    monkeypatch.setattr(fused, "use_dpbf16", False)
    assert fused.kernel_status().endswith("bfloat16 band products on MKL")
    mkl = _encode(model, batch, True, head_mask=head_mask, attention_dtype=kept)
    assert products[-1] == (fused._mkl_gemm_bf16(), fused.UNIT_MKL)
    ref = _encode(model, batch, False, head_mask=head_mask, attention_dtype=kept)
    # against MKL's products (the same sums, perhaps in another order): close; against PyTorch's path, to
    # bfloat16 rounding
    for other, tol in ((mkl, 1e-2), (ref, 5e-2)):
        assert_close(packed.last_hidden_state.float(), other.last_hidden_state.float(), "hidden", tol=tol)
        for a, b in zip(packed.attentions, other.attentions):
            assert a.dtype == (kept or torch.bfloat16)
            assert_close(a.float(), b.float(), "local attentions", tol=tol / 5)
            assert ((a == 0) == (b == 0)).all(), "masked entries are exact zeros in both"
        for a, b in zip(packed.global_attentions, other.global_attentions):
            assert_close(a.float(), b.float(), "global attentions", tol=tol / 5)
    assert fused.bf16_head_kernel().products(32, 32, 8) == (fused._mkl_gemm_bf16(), fused.UNIT_MKL)
    monkeypatch.setattr(fused, "use_amx", unit == fused.UNIT_AMX)
    monkeypatch.setattr(fused, "use_dpbf16", True)
    assert fused.bf16_head_kernel().products(32, 32, 8) == (fused._mkl_gemm_bf16(), fused.UNIT_MKL)  # w 8
    assert fused.bf16_head_kernel().products(32, 64, 16) == (None, unit)


def test_without_a_compiler_the_torch_operations_run(monkeypatch, tmp_path):
    """No C++ compiler: no kernel, a status that says why, and the encoder gives the PyTorch path's numbers."""
    monkeypatch.setenv("LEDVIZ_KERNEL_CACHE", str(tmp_path))
    monkeypatch.delenv("LEDVIZ_FUSED_KERNEL", raising=False)  # the status names the missing compiler, not the switch
    monkeypatch.setattr(fused, "_compiler", lambda: None)
    fused.reset()
    try:
        assert fused.band_kernel() is None
        assert "no C++ compiler" in fused.kernel_status()
        calls = []
        monkeypatch.setattr(attention, "_fused_probabilities", lambda *a: calls.append(a))
        model = _model([4, 8])
        out = _encode(model, encoder_batch(2, 29, (1, 3), (0, 4)), True)
        assert not calls and out.attentions[0].shape[-1] == 3 + 5  # 3 global columns, 2w + 1 slots
        assert not list(tmp_path.iterdir())
    finally:
        fused.reset()


def test_a_failed_build_falls_back_with_the_compiler_message(monkeypatch, tmp_path):
    """A compiler that fails: no kernel, the status quotes it, nothing half-written is left in the cache."""
    script = tmp_path / "broken-cxx"
    script.write_text("#!/bin/sh\necho 'broken compiler here' >&2\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setenv("LEDVIZ_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fused, "_compiler", lambda: str(script))
    fused.reset()
    try:
        assert fused.band_kernel() is None
        assert "broken compiler here" in fused.kernel_status()
        assert not list((tmp_path / "cache").iterdir())
    finally:
        fused.reset()


def test_the_setting_turns_it_off_and_rejects_unknown_values(monkeypatch):
    monkeypatch.setenv("LEDVIZ_FUSED_KERNEL", "off")
    assert fused.band_kernel() is None and fused.bf16_head_kernel() is None
    assert fused.kernel_status().startswith("off")
    monkeypatch.setenv("LEDVIZ_FUSED_KERNEL", "fast")
    with pytest.raises(InputError, match="LEDVIZ_FUSED_KERNEL='fast'.*auto, off"):
        fused.enabled()
    with fused.kernel_enabled(False):  # an explicit choice wins over the environment
        assert not fused.enabled()


@needs_kernel
def test_a_cached_build_is_reused(monkeypatch, tmp_path):
    """The second load finds the library the first one built (same source, compiler and CPU): no second build."""
    monkeypatch.setenv("LEDVIZ_KERNEL_CACHE", str(tmp_path))
    fused.reset()
    try:
        assert fused.band_kernel() is not None
        built = list(tmp_path.iterdir())
        assert len(built) == 1 and built[0].suffix == ".so"
        fused.reset()
        real_run = fused.subprocess.run
        monkeypatch.setattr(fused.subprocess, "run", lambda cmd, **kw: pytest.fail(f"built again: {cmd}")
                            if "-o" in cmd else real_run(cmd, **kw))
        assert fused.band_kernel() is not None
    finally:
        fused.reset()


@needs_kernel
@pytest.mark.parametrize("dtype,store_dtype,tol", [(torch.float32, torch.float32, 1e-4),
                                                   (torch.bfloat16, torch.float16, 1e-2)], ids=["float32", "bfloat16"])
def test_head_statistics_from_the_kernel(dtype, store_dtype, tol):
    """The store's per-head statistics from the kernel's per-row statistics equal those read off the kept
    probabilities (PyTorch path), with padding, several global tokens and a layer left out."""
    from ledviz.export import AttentionStore

    model = _model([4, 8, 6], dtype)
    ids, am, gm = encoder_batch(2, 37, (2, 1), (0, 5))
    stats = {}
    for use_kernel in (False, True):
        store = AttentionStore(gm, am, layers=[0, 2], dtype=store_dtype, stats=True)
        seen = []
        real = store.row_statistics
        store.row_statistics = lambda layer, rows: seen.append(layer) or real(layer, rows)
        with fused.kernel_enabled(use_kernel), torch.no_grad():
            model.encoder(ids, attention_mask=am, global_attention_mask=gm, attention_sink=store,
                          attention_layers=[0, 2])
        assert seen == ([0, 2] if use_kernel else [])
        stats[use_kernel] = store.run.stats
    assert sorted(stats[True]) == [0, 2]
    for layer in (0, 2):
        for name, ref in stats[False][layer].items():
            got = stats[True][layer][name]
            assert got.shape == ref.shape == (2, 2)
            assert ((got - ref).abs() <= tol * ref.abs().clamp(min=1)).all(), (layer, name, got, ref)


@needs_kernel
@pytest.mark.parametrize("add_dtype", [None, torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_residual_layer_norm_kernel(add_dtype):
    """out = LayerNorm(in + add + bias) in one pass, in place or not, with its bfloat16 copy: PyTorch's numbers."""
    g = torch.Generator().manual_seed(0)
    inp = torch.randn(37, 48, generator=g) * 3
    add = None if add_dtype is None else torch.randn(37, 48, generator=g).to(add_dtype)
    bias = torch.randn(48, generator=g)
    norm = torch.nn.LayerNorm(48)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(48, generator=g))
        norm.bias.copy_(torch.randn(48, generator=g))
        want = norm(inp + (0 if add is None else add.float()) + bias)
    out, narrow = torch.empty_like(inp), torch.empty(37, 48, dtype=torch.bfloat16)
    assert fused.residual_layer_norm(inp, out, add, bias, norm, narrow)
    assert_close(out, want, "layer norm")
    assert torch.equal(narrow, out.to(torch.bfloat16))
    with torch.no_grad():
        want = norm(inp + (0 if add is None else add.float()))
    assert fused.residual_layer_norm(inp, inp, add, None, norm)  # in place, no bias
    assert_close(inp, want, "in place")
    with fused.kernel_enabled(False):
        assert not fused.residual_layer_norm(inp, out, add, bias, norm)


@needs_kernel
def test_bias_gelu_kernel():
    """GELU(t + bias) in place in one pass: PyTorch's float32 GELU rounded to bfloat16, within one bfloat16 step
    (the kernel's erf is a fitted rational); NaN stays NaN, large inputs give x and 0; other tensors are refused."""
    g = torch.Generator().manual_seed(0)
    t = (torch.randn(37, 51, generator=g) * 3).to(torch.bfloat16)  # 51 columns: the vectors and the scalar tail
    t[0, :6] = torch.tensor([float("nan"), 40.0, -40.0, 0.0, -5.5, 5.5])
    bias = torch.randn(51, generator=g)
    bias[:6] = 0.0
    x = t.double() + bias.double()
    want = torch.nn.functional.gelu(x)
    got = t.clone()
    assert fused.bias_gelu(got, bias)
    assert torch.isnan(got[0, 0]) and got[0, 1].item() == 40.0 and got[0, 2].item() == 0.0 and got[0, 3].item() == 0.0
    ok = ~torch.isnan(want)
    # half a bfloat16 step of rounding, plus the erf's 4e-7 (absolute) times x / 2, plus float32 sums
    bound = want.abs() * 2.0**-8 + 4e-7 * x.abs() + 1e-6 * want.abs()
    assert ((got.double() - want).abs()[ok] <= bound[ok]).all()
    assert not fused.bias_gelu(t.float(), bias) and not fused.bias_gelu(t.t(), bias[:37])
    with fused.kernel_enabled(False):
        assert not fused.bias_gelu_takes(t) and not fused.bias_gelu(t, bias)


@needs_kernel
def test_the_bfloat16_feed_forward_takes_the_bias_gelu_kernel(monkeypatch):
    """A bfloat16 encoder's feed-forward (without oneDNN's fused product) runs its bias and GELU in the kernel
    (with it on), else PyTorch's; the outputs agree to bfloat16 rounding."""
    monkeypatch.setattr(fused, "use_onednn_gelu", False)
    calls = []
    real = fused.bias_gelu
    monkeypatch.setattr(fused, "bias_gelu", lambda t, b: calls.append(t.shape) or real(t, b))
    model = _model([4, 8], torch.bfloat16)
    batch = encoder_batch(2, 29, (1, 3), (0, 4))
    ref = _encode(model, batch, False)
    assert not calls
    out = _encode(model, batch, True)
    assert len(calls) == 2  # one slice per layer
    assert_close(out.last_hidden_state.float(), ref.last_hidden_state.float(), "hidden", tol=3e-2)


def test_linear_gelu_is_the_product_with_bias_and_gelu():
    """fused.linear_gelu: GELU(x W^T + b) in bfloat16 within a bfloat16 step of float64's (one rounding, so at
    least as close as the product-then-bias_gelu path); refused (None) for float32, for a transposed x, or with
    use_onednn_gelu off. Skipped where PyTorch has no oneDNN bfloat16 linear."""
    if fused._onednn_linear() is None:
        pytest.skip("PyTorch's oneDNN bfloat16 linear is not available here")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(67, 40, generator=g).to(torch.bfloat16)
    weight = (torch.randn(53, 40, generator=g) / 6).to(torch.bfloat16)
    bias = (torch.randn(53, generator=g) / 3).to(torch.bfloat16)
    want = torch.nn.functional.gelu(x.double() @ weight.double().t() + bias.double())
    got = fused.linear_gelu(x, weight, bias)
    assert got.dtype == torch.bfloat16 and got.shape == (67, 53)
    # half a bfloat16 step of the one rounding, plus oneDNN's float32 erf and sums
    assert ((got.double() - want).abs() <= want.abs() * 2.0**-8 + 1e-5).all()
    assert fused.linear_gelu(x.float(), weight.float(), bias.float()) is None
    assert fused.linear_gelu(x.t().contiguous().t(), weight, bias) is None
    fused.use_onednn_gelu = False
    try:
        assert fused.linear_gelu(x, weight, bias) is None
    finally:
        fused.use_onednn_gelu = True


def test_the_bfloat16_feed_forward_takes_onednn_linear_gelu(monkeypatch):
    """A bfloat16 encoder's feed-forward runs fc1 as fused.linear_gelu where PyTorch has it (one call a slice
    per layer); the outputs agree with the path without it (product, then the bias and GELU) to bfloat16 rounding."""
    if fused._onednn_linear() is None:
        pytest.skip("PyTorch's oneDNN bfloat16 linear is not available here")
    calls = []
    real = fused.linear_gelu

    def spy(x, w, b):  # the calls that ran the product (None: it does not take these)
        out = real(x, w, b)
        if out is not None:
            calls.append(x.shape)
        return out

    monkeypatch.setattr(fused, "linear_gelu", spy)
    model = _model([4, 8], torch.bfloat16)
    batch = encoder_batch(2, 29, (1, 3), (0, 4))
    monkeypatch.setattr(fused, "use_onednn_gelu", False)
    ref = _encode(model, batch, True)
    assert not calls
    monkeypatch.setattr(fused, "use_onednn_gelu", True)
    out = _encode(model, batch, True)
    assert len(calls) == 2  # one slice per layer
    assert_close(out.last_hidden_state.float(), ref.last_hidden_state.float(), "hidden", tol=3e-2)
    # results kept under LINEAR_GELU_MAX_BYTES: more slices, the same numbers to bfloat16 rounding (here equal)
    calls.clear()
    row_bytes = model.config.encoder_ffn_dim * 2
    monkeypatch.setattr(fused, "LINEAR_GELU_MAX_BYTES", 7 * row_bytes)
    sliced = _encode(model, batch, True)
    assert calls and all(shape[0] <= 7 for shape in calls) and len(calls) > 2
    assert_close(sliced.last_hidden_state.float(), out.last_hidden_state.float(), "sliced", tol=1e-2)


@needs_kernel
@pytest.mark.parametrize("kept", [None, torch.float16], ids=str)
def test_float32_whole_head_in_the_kernel(kept, monkeypatch):
    """float32: a head's whole band in the kernel (MKL's sgemm_, the softmax on each block while it is in cache,
    the output rows written in place) gives the PyTorch path's and the softmax-only kernel's (use_f32_head off)
    probabilities and outputs to float32 rounding, with padding, used and unused global slots, a head mask, a
    partial last block and blocks of 3 rows."""
    if fused._mkl_sgemm() is None:
        pytest.skip("PyTorch has no MKL here")
    taken = []
    whole = attention._fused_head
    monkeypatch.setattr(attention, "_fused_head", lambda *a: taken.append(a[0].dtype) or whole(*a))
    model = _model([6, 10])
    batch = encoder_batch(2, 47, (9, 1), (0, 5))
    head_mask = torch.tensor([[1.0, 0.5], [0.0, 1.0]])
    tol = 1e-5 if kept is None else 1e-3  # float16: the same float32 value may round to a neighbouring step
    for block in (None, 3):
        model.encoder.set_attention_implementation("blocked", block)
        ref = _encode(model, batch, False, head_mask=head_mask, attention_dtype=kept)
        monkeypatch.setattr(fused, "use_f32_head", False)
        softmax_only = _encode(model, batch, True, head_mask=head_mask, attention_dtype=kept)
        assert not taken
        monkeypatch.setattr(fused, "use_f32_head", True)
        out = _encode(model, batch, True, head_mask=head_mask, attention_dtype=kept)
        assert taken and set(taken) == {torch.float32}
        taken.clear()
        for other in (ref, softmax_only):
            assert_close(out.last_hidden_state, other.last_hidden_state, "hidden")
            for a, b in zip(out.attentions, other.attentions):
                assert a.dtype == (kept or torch.float32)
                assert_close(a.float(), b.float(), "local attentions", tol=tol)
                assert ((a == 0) == (b == 0)).all(), "masked entries are exact zeros in both"
            for a, b in zip(out.global_attentions, other.global_attentions):
                assert_close(a.float(), b.float(), "global attentions", tol=tol)


def test_bfloat16_encoder_with_and_without_the_kernel():
    """The bfloat16 encoder's tail (float32 stream) and band give the same outputs to bfloat16 rounding either way."""
    model = _model([4, 8], torch.bfloat16)
    batch = encoder_batch(2, 29, (1, 3), (0, 4))
    ref, out = _encode(model, batch, False), _encode(model, batch, True)
    assert_close(out.last_hidden_state.float(), ref.last_hidden_state.float(), "hidden", tol=3e-2)
    for a, b in zip(out.attentions, ref.attentions):
        assert_close(a.float(), b.float(), "local attentions", tol=BFLOAT16_PATHS_TOL)
        assert (a.float() - b.float()).abs().mean() < 1e-3, "local attentions: mean difference"


@pytest.mark.parametrize("use_kernel", [True, False], ids=["kernel", "torch"])
def test_the_next_layer_takes_the_stream_copy_its_predecessor_wrote(use_kernel, monkeypatch):
    """bfloat16 encoder, float32 stream: each layer after the first reads the bfloat16 copy of its input that the
    previous layer's last layer norm wrote (no conversion of its own), and with the kernel the first one reads
    the copy the embeddings' layer norm wrote, with the same outputs as converting."""
    from ledviz import modeling

    model = _model([4, 8, 4], torch.bfloat16)
    batch = encoder_batch(2, 29, (1, 3), (0, 4))
    taken = []
    narrow = modeling._narrow_stream

    def spy(stream, dtype, layout):
        mirror = layout.narrow_stream
        out = narrow(stream, dtype, layout)
        taken.append(mirror is not None and out.data_ptr() == mirror[1].data_ptr())
        return out

    monkeypatch.setattr(modeling, "_narrow_stream", spy)
    for hidden_states in (False, True):
        taken.clear()
        out = _encode(model, batch, use_kernel, output_hidden_states=hidden_states)
        assert taken == [use_kernel, True, True]
        monkeypatch.setattr(modeling, "_narrow_stream", lambda stream, dtype, layout: stream.to(dtype))
        ref = _encode(model, batch, use_kernel, output_hidden_states=hidden_states)
        monkeypatch.setattr(modeling, "_narrow_stream", spy)
        assert torch.equal(out.last_hidden_state, ref.last_hidden_state)
        assert all(torch.equal(a, b) for a, b in zip(out.attentions, ref.attentions))


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("cols", [9, 300])
def test_head_sum_kernel(dtype, cols):
    """Summing chosen heads of (B, H, R, C) into a strided float32 view (the aggregate's band with a narrower
    window centred in it): PyTorch's sum, head after head (the same additions in the same order, so the
    same floats), rows wide enough for the kernel's vector stretches (300: two of 128 and a tail) or not
    (9: the tail only); other cases fall back."""
    g = torch.Generator().manual_seed(0)
    t = torch.rand(2, 5, 70, cols, generator=g).to(dtype)
    band = torch.rand(2, 1, 70, cols + 4, generator=g)
    want = band.clone()
    for h in (0, 3, 4):
        want[:, 0, :, 2:cols + 2] += t[:, h].float()
    assert fused.head_sum(t, [0, 3, 4], band[:, 0, :, 2:cols + 2])
    assert torch.equal(band, want)
    assert not fused.head_sum(t.transpose(2, 3), [0], band[:, 0, :9, :9])  # columns not contiguous
    with fused.kernel_enabled(False):
        assert not fused.head_sum(t, [0], band[:, 0, :, 2:cols + 2])


def test_the_kernel_variables_are_not_unknown_settings():
    """The app stops on an unknown LEDVIZ_ variable; the kernel's two are known (and not deployment settings)."""
    from ledviz.settings import Settings

    Settings.from_sources(environ={"LEDVIZ_FUSED_KERNEL": "off", "LEDVIZ_KERNEL_CACHE": "/tmp/kernels"}, secrets={})


def test_large_outputs_are_mapped_in_one_call(monkeypatch):
    """fresh_output asks for a large output's pages in one madvise call over its page-aligned span (and not for
    small ones); where madvise is missing it is a plain torch.empty."""
    calls = []
    monkeypatch.setattr(attention, "_madvise", lambda: lambda start, length, advice: calls.append((start, length, advice)))
    big = attention.fresh_output((2, 3, attention.POPULATE_MIN_BYTES // 6), torch.float16, torch.device("cpu"))
    assert big.shape == (2, 3, attention.POPULATE_MIN_BYTES // 6) and big.dtype == torch.float16
    (start, length, advice), = calls
    assert advice == 23 and start % 4096 == 0 and length % 4096 == 0
    assert big.data_ptr() <= start and start + length <= big.data_ptr() + big.numel() * 2
    attention.fresh_output((10, 10), torch.float32, torch.device("cpu"))
    assert len(calls) == 1
    monkeypatch.setattr(attention, "_madvise", lambda: None)
    assert attention.fresh_output((2, 3, attention.POPULATE_MIN_BYTES // 6), torch.float16,
                                  torch.device("cpu")).shape[-1] == attention.POPULATE_MIN_BYTES // 6


def test_a_cxx_that_is_not_there_is_said_not_replaced(monkeypatch, tmp_path):
    """CXX naming no program: the kernel is not built with another compiler behind the user's back;
    the status names CXX and the fix, and the PyTorch operations are used."""
    monkeypatch.setenv("LEDVIZ_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-ledviz")
    fused.reset()
    try:
        assert fused.band_kernel() is None
        status = fused.kernel_status()
        assert "CXX='no-such-compiler-ledviz'" in status and "unset it" in status
        assert not list(tmp_path.iterdir())
    finally:
        fused.reset()
