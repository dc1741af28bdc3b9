"""The blocked (fast) band attention against the reference path: outputs and every probability."""

from __future__ import annotations

import pytest
import torch

import ledviz
from ledviz.modeling import to_dtype
from conftest import assert_close, encoder_batch, max_diff, perturb, tiny_kwargs


def _pair(windows, block_size=None):
    torch.manual_seed(0)
    cfg = ledviz.LEDConfig(**tiny_kwargs(attention_window=windows, encoder_layers=len(windows),
                                         max_encoder_position_embeddings=256, dropout=0.0, attention_dropout=0.0))
    model = ledviz.LEDModel(cfg).eval()
    perturb(model)
    return model


@pytest.mark.parametrize("windows", [[2, 4], [4, 8], [6, 10], [16, 16], [2, 6, 10]], ids=str)
@pytest.mark.parametrize("N", [1, 7, 16, 33, 80])
@pytest.mark.parametrize("globals_pad", [((0, 0), (0, 0)), ((1, 0), (0, 3)), ((3, 1), (2, 0)), ((9, 5), (0, 4))], ids=str)
def test_blocked_equals_reference(windows, N, globals_pad):
    n_global, pad = globals_pad
    pad = tuple(min(p, N - 1) for p in pad)
    n_global = tuple(min(g, N) for g in n_global)
    model = _pair(windows)
    ids, am, gm = encoder_batch(2, N, n_global, pad)
    outs = {}
    for impl, block in (("reference", None), ("blocked", None), ("blocked", 3)):
        model.encoder.set_attention_implementation(impl, block)
        with torch.no_grad():
            outs[(impl, block)] = model.encoder(ids, attention_mask=am, global_attention_mask=gm, output_attentions=True)
    ref = outs[("reference", None)]
    for key in (("blocked", None), ("blocked", 3)):
        out = outs[key]
        assert_close(out.last_hidden_state, ref.last_hidden_state, f"{key} hidden")
        for layer, (a, b) in enumerate(zip(out.attentions, ref.attentions)):
            assert_close(a, b, f"{key} local attentions[{layer}]")
        if ref.global_attentions is None:
            assert out.global_attentions is None
        else:
            for layer, (a, b) in enumerate(zip(out.global_attentions, ref.global_attentions)):
                assert_close(a, b, f"{key} global attentions[{layer}]")


def test_attention_options_keep_what_is_asked(batch):
    model = _pair([4, 8])
    ids, am, gm = batch
    seen = []
    with torch.no_grad():
        full = model.encoder(ids, attention_mask=am, global_attention_mask=gm, output_attentions=True)
        some = model.encoder(ids, attention_mask=am, global_attention_mask=gm, output_attentions=True,
                             attention_layers=[1], attention_dtype=torch.float16,
                             attention_sink=lambda l, loc, glob: seen.append((l, loc.shape, glob.shape)))
    assert some.attentions[0] is None and some.attentions[1].dtype == torch.float16
    assert_close(some.attentions[1].float(), full.attentions[1], "float16 attentions", tol=1e-3)
    assert seen == [(1, full.attentions[1].shape, full.global_attentions[1].shape)]
    assert torch.equal(some.last_hidden_state, full.last_hidden_state)


@pytest.mark.parametrize("chunk_bytes", [1, 3000, 1 << 30], ids=["block-by-block", "a-few-blocks", "all-blocks"])
@pytest.mark.parametrize("globals_pad", [((0, 0), (0, 0)), ((2, 0), (0, 5)), ((4, 7), (9, 0))], ids=str)
def test_chunks_of_query_blocks_equal_reference(monkeypatch, chunk_bytes, globals_pad):
    """The inference path scores a few query blocks at a time; any chunking gives the same numbers."""
    from ledviz import attention

    monkeypatch.setattr(attention, "INFERENCE_CHUNK_BYTES", chunk_bytes)
    n_global, pad = globals_pad
    model = _pair([4, 8, 6])
    ids, am, gm = encoder_batch(2, 53, n_global, pad)
    outs = {}
    for impl, block in (("reference", None), ("blocked", 3), ("blocked", 5)):
        model.encoder.set_attention_implementation(impl, block)
        # the reference runs with autograd (the training code path, feed-forward in one piece)
        with torch.set_grad_enabled(impl == "reference"):
            outs[(impl, block)] = model.encoder(ids, attention_mask=am, global_attention_mask=gm, output_attentions=True)
    ref = outs[("reference", None)]
    assert ref.last_hidden_state.requires_grad
    for key in (("blocked", 3), ("blocked", 5)):
        out = outs[key]
        assert_close(out.last_hidden_state, ref.last_hidden_state, f"{key} hidden")
        for layer, (a, b) in enumerate(zip(out.attentions, ref.attentions)):
            assert_close(a, b, f"{key} local attentions[{layer}]")
        for layer, (a, b) in enumerate(zip(out.global_attentions or (), ref.global_attentions or ())):
            assert_close(a, b, f"{key} global attentions[{layer}]")


@pytest.mark.parametrize("n_global", [0, 1, 3])
def test_single_row_equals_reference(n_global):
    """Batch of one, a length that leaves the last query block partial; same numbers."""
    model = _pair([4, 8])
    ids, am, gm = encoder_batch(1, 29, (n_global,), (0,))
    outs = {}
    for impl in ("reference", "blocked"):
        model.encoder.set_attention_implementation(impl)
        with torch.no_grad():
            outs[impl] = model.encoder(ids, attention_mask=am, global_attention_mask=gm, output_attentions=True)
    for layer, (a, b) in enumerate(zip(outs["blocked"].attentions, outs["reference"].attentions)):
        assert_close(a, b, f"local attentions[{layer}]")
    assert_close(outs["blocked"].last_hidden_state, outs["reference"].last_hidden_state, "hidden")


def test_inference_path_keeps_every_hidden_state():
    """The inference path writes projections, layer norms and the feed-forward over the layer's own
    tensors: the hidden states handed back (every layer's input) must stay those of the autograd path."""
    model = _pair([4, 8, 6])
    ids, am, gm = encoder_batch(2, 37, (2, 1), (0, 5))
    with torch.no_grad():
        fast = model.encoder(ids, attention_mask=am, global_attention_mask=gm, output_hidden_states=True,
                             output_attentions=True)
    ref = model.encoder(ids, attention_mask=am, global_attention_mask=gm, output_hidden_states=True,
                        output_attentions=True)  # parameters require grad: the autograd path
    assert ref.last_hidden_state.requires_grad
    assert len(fast.hidden_states) == len(ref.hidden_states) == 4
    for i, (a, b) in enumerate(zip(fast.hidden_states, ref.hidden_states)):
        assert_close(a, b.detach(), f"hidden_states[{i}]")
    for i, (a, b) in enumerate(zip(fast.attentions, ref.attentions)):
        assert_close(a, b.detach(), f"attentions[{i}]")


@pytest.mark.parametrize("mode", ["batched", "per_block"])
def test_span_products_batched_or_per_block_equal_reference(monkeypatch, mode):
    """The products against the overlapping key/value spans, batched (float32 on the CPU) or one per
    block (bfloat16/float16 on the CPU), give the reference's numbers."""
    from ledviz import attention

    monkeypatch.setattr(attention, "SPAN_PRODUCTS", mode)
    model = _pair([4, 8])
    ids, am, gm = encoder_batch(2, 41, (2, 0), (0, 5))
    outs = {}
    for impl in ("reference", "blocked"):
        model.encoder.set_attention_implementation(impl, 4)
        with torch.no_grad():
            outs[impl] = model.encoder(ids, attention_mask=am, global_attention_mask=gm, output_attentions=True)
    ref, out = outs["reference"], outs["blocked"]
    assert_close(out.last_hidden_state, ref.last_hidden_state, f"{mode} hidden")
    for layer, (a, b) in enumerate(zip(out.attentions, ref.attentions)):
        assert_close(a, b, f"{mode} local attentions[{layer}]")
    for layer, (a, b) in enumerate(zip(out.global_attentions, ref.global_attentions)):
        assert_close(a, b, f"{mode} global attentions[{layer}]")


def test_span_products_choice():
    """float32 on the CPU takes the batched product; bfloat16 and float16 one product per block (no copy of the spans)."""
    from ledviz.attention import _batched_spans

    assert _batched_spans(torch.empty(1))
    assert not _batched_spans(torch.empty(1, dtype=torch.bfloat16))
    assert not _batched_spans(torch.empty(1, dtype=torch.float16))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_inference_path_in_half_precision(dtype):
    """bfloat16 (the CPU's fast path) and float16: the same code stays close to float32. Every
    attention probability within 1e-2 in float16; bfloat16's 8-bit mantissa rounds this tiny
    model's deliberately large scores (about 1e-2 already in the reference path), so 1.5e-2 there
    (benchmarks/precision.py measures the trained model's difference). The model converted as the app
    converts it (modeling.to_dtype: the encoder's layer norms stay float32 in a bfloat16 model)."""
    tol = 1.5e-2 if dtype == torch.bfloat16 else 1e-2
    model = _pair([4, 8])
    ids, am, gm = encoder_batch(2, 29, (1, 3), (0, 4))
    with torch.no_grad():
        ref = model.encoder(ids, attention_mask=am, global_attention_mask=gm, output_attentions=True)
        half = to_dtype(model, dtype).encoder(ids, attention_mask=am, global_attention_mask=gm,
                                              output_attentions=True)
    assert half.last_hidden_state.dtype == dtype and half.attentions[0].dtype == dtype
    assert_close(half.last_hidden_state.float(), ref.last_hidden_state, "hidden", tol=0.1)
    for a, b in zip(half.attentions, ref.attentions):
        assert_close(a.float(), b, "local attentions", tol=tol)
    for a, b in zip(half.global_attentions, ref.global_attentions):
        assert_close(a.float(), b, "global attentions", tol=tol)


def test_train_mode_under_no_grad_keeps_attention_dropout(monkeypatch):
    """Train mode is train mode with or without gradients: the inference path is not taken, and the
    attention dropout acts as in the reference (same masks under the same seed)."""
    from ledviz import attention

    taken = []
    fast = attention.blocked_inference_attention
    monkeypatch.setattr(attention, "blocked_inference_attention", lambda *a: taken.append(1) or fast(*a))
    torch.manual_seed(0)
    cfg = ledviz.LEDConfig(**tiny_kwargs(attention_window=[4, 8], max_encoder_position_embeddings=256,
                                         dropout=0.0, activation_dropout=0.0, attention_dropout=0.3))
    model = ledviz.LEDModel(cfg).train()
    perturb(model)
    ids, am, gm = encoder_batch(2, 29, (2, 1), (0, 4))
    outs = {}
    for impl in ("reference", "blocked"):
        model.encoder.set_attention_implementation(impl)
        torch.manual_seed(5)
        with torch.no_grad():
            outs[impl] = model.encoder(ids, attention_mask=am, global_attention_mask=gm, output_attentions=True)
    assert not taken, "the inference path ran on a model in train mode"
    assert_close(outs["blocked"].last_hidden_state, outs["reference"].last_hidden_state, "hidden")
    for layer, (a, b) in enumerate(zip(outs["blocked"].attentions, outs["reference"].attentions)):
        assert_close(a, b, f"local attentions[{layer}]")
    # the dropout did act: in eval mode (the inference path) the output differs
    with torch.no_grad():
        plain = model.eval().encoder(ids, attention_mask=am, global_attention_mask=gm)
    assert taken
    assert max_diff(plain.last_hidden_state, outs["reference"].last_hidden_state) > 1e-2
