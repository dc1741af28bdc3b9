"""The GPU path's attention (ledviz/attention_gpu.py, implementation "sdpa") against the reference, on the CPU:
the same math runs on any device, so it is checked here where no GPU is."""

from __future__ import annotations

import pytest
import torch

import ledviz
from conftest import assert_close, encoder_batch, perturb, tiny_kwargs


def _model(windows, heads=2, dtype=torch.float32):
    torch.manual_seed(0)
    cfg = ledviz.LEDConfig(**tiny_kwargs(attention_window=windows, encoder_layers=len(windows),
                                         encoder_attention_heads=heads, max_encoder_position_embeddings=256,
                                         dropout=0.0, attention_dropout=0.0))
    model = ledviz.LEDModel(cfg).eval()
    perturb(model)
    return model.to(dtype)


def _encode(model, impl, block, batch, **kw):
    model.encoder.set_attention_implementation(impl, block)
    ids, am, gm = batch
    return model.encoder(ids, attention_mask=am, global_attention_mask=gm, **kw)


def _assert_same(out, ref, what, tol=1e-5, attentions=True):
    assert_close(out.last_hidden_state.float(), ref.last_hidden_state.float(), f"{what} hidden", tol=tol)
    if not attentions:
        return
    for layer, (a, b) in enumerate(zip(out.attentions, ref.attentions)):
        assert_close(a.float(), b.float(), f"{what} local attentions[{layer}]", tol=tol)
    if ref.global_attentions is None:
        assert out.global_attentions is None
    else:
        for layer, (a, b) in enumerate(zip(out.global_attentions, ref.global_attentions)):
            assert_close(a.float(), b.float(), f"{what} global attentions[{layer}]", tol=tol)


@pytest.mark.parametrize("windows", [[2, 4], [6, 10], [16, 16]], ids=str)
@pytest.mark.parametrize("N", [1, 33, 80])
@pytest.mark.parametrize("globals_pad", [((0, 0), (0, 0)), ((1, 0), (0, 3)), ((3, 1), (2, 0)), ((9, 5), (0, 4))],
                         ids=str)
@pytest.mark.parametrize("block", [None, 3], ids=["gpu_block", "block_3"])
def test_sdpa_equals_reference(windows, N, globals_pad, block):
    n_global, pad = globals_pad
    batch = encoder_batch(2, N, tuple(min(g, N) for g in n_global), tuple(min(p, N - 1) for p in pad))
    model = _model(windows)
    with torch.no_grad():
        ref = _encode(model, "reference", None, batch, output_attentions=True)
        with_probs = _encode(model, "sdpa", block, batch, output_attentions=True)
        fast = _encode(model, "sdpa", block, batch)  # the fused path, no probabilities
    _assert_same(with_probs, ref, "sdpa with attentions")
    _assert_same(fast, ref, "sdpa without attentions", attentions=False)
    assert fast.attentions is None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_sdpa_half_precision_within_tolerance(batch, dtype):
    model32, model = _model([4, 8]), _model([4, 8], dtype=dtype)
    with torch.no_grad():
        ref = _encode(model32, "reference", None, batch, output_attentions=True)
        ours = _encode(model, "sdpa", None, batch, output_attentions=True)
        same_dtype = _encode(model, "reference", None, batch, output_attentions=True)
        fast = _encode(model, "sdpa", None, batch)
    assert ours.attentions[0].dtype == dtype
    # attention probabilities within 1e-2 of float32 (the bound), hidden states within half precision
    for a, b in zip(ours.attentions, ref.attentions):
        assert (a.float() - b).abs().max() <= 1e-2
    for a, b in zip(ours.global_attentions, ref.global_attentions):
        assert (a.float() - b).abs().max() <= 1e-2
    _assert_same(ours, same_dtype, f"{dtype} against the reference in {dtype}", tol=3e-2)
    assert_close(fast.last_hidden_state.float(), ours.last_hidden_state.float(), "fused against explicit", tol=3e-2)


def test_sdpa_head_mask_and_chunks(monkeypatch, batch):
    """A head mask scales each head; any chunking of the explicit path gives the same numbers."""
    import ledviz.attention_gpu as gpu

    model = _model([4, 8], heads=4)
    head_mask = torch.tensor([[1.0, 0.0, 0.5, 1.0], [0.0, 1.0, 1.0, 0.25]])
    with torch.no_grad():
        ref = _encode(model, "reference", None, batch, output_attentions=True, head_mask=head_mask)
        fast = _encode(model, "sdpa", None, batch, head_mask=head_mask)
        monkeypatch.setattr(gpu, "PROBS_CHUNK_BYTES", 1)  # one block at a time
        chunked = _encode(model, "sdpa", None, batch, output_attentions=True, head_mask=head_mask)
    _assert_same(chunked, ref, "one block at a time, head mask")
    _assert_same(fast, ref, "fused, head mask", attentions=False)


def test_sdpa_gradients_equal_reference(batch):
    model = _model([4, 8]).train()
    ids, am, gm = batch
    grads = {}
    for impl in ("reference", "sdpa"):
        model.zero_grad()
        model.encoder.set_attention_implementation(impl)
        out = model.encoder(ids, attention_mask=am, global_attention_mask=gm).last_hidden_state
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        grads[impl] = {n: p.grad.clone() for n, p in model.encoder.named_parameters() if p.grad is not None}
    assert grads["sdpa"].keys() == grads["reference"].keys()
    for name, g in grads["reference"].items():
        assert_close(grads["sdpa"][name], g, f"gradient of {name}", tol=1e-4)


def test_dispatch_by_device(monkeypatch, batch):
    """"blocked" runs the CPU inference path on the CPU and the GPU path on CUDA (simulated: the dispatch
    reads only the tensor's device); "sdpa" forces the GPU path anywhere."""
    import ledviz.attention_gpu as gpu

    calls = []
    real = gpu.sdpa_attention
    monkeypatch.setattr(gpu, "sdpa_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = _model([4, 8])
    with torch.no_grad():
        _encode(model, "blocked", None, batch)
        assert not calls
        _encode(model, "sdpa", None, batch)
        assert len(calls) == 2  # one per layer
        monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
        calls.clear()
        _encode(model, "blocked", None, batch)
        assert len(calls) == 2


def test_unknown_implementation_is_named():
    model = _model([4])
    with pytest.raises(ValueError, match="'flash'.*blocked.*reference.*sdpa|sdpa.*'flash'"):
        model.encoder.set_attention_implementation("flash")


def test_sdpa_keeps_what_the_attention_options_ask(batch):
    """attention_layers, attention_dtype and attention_sink work on the GPU path as on the others."""
    model = _model([4, 8])
    seen = []
    with torch.no_grad():
        full = _encode(model, "reference", None, batch, output_attentions=True)
        some = _encode(model, "sdpa", None, batch, output_attentions=True, attention_layers=[1],
                       attention_dtype=torch.float16,
                       attention_sink=lambda l, loc, glob: seen.append((l, loc.shape, glob.shape)))
    assert some.attentions[0] is None and some.attentions[1].dtype == torch.float16
    assert_close(some.attentions[1].float(), full.attentions[1], "float16 attentions", tol=1e-3)
    assert seen == [(1, full.attentions[1].shape, full.global_attentions[1].shape)]
    assert_close(some.last_hidden_state, full.last_hidden_state, "hidden")
