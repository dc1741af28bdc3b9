"""The plain-tensor decoder step (ledviz.fastdecode) against `LEDDecoder.step` + the lm_head, the readable
step whose tokens tests/test_generation.py checks against transformers."""

from __future__ import annotations

import math

import pytest
import torch

import ledviz
from conftest import assert_close, perturb
from ledviz.fastdecode import FastDecoder, projection_position
from ledviz.generation import _DecoderRunner
from generation_fixtures import assert_same_tokens, inputs, models  # noqa: F401 (fixtures)


@pytest.fixture(autouse=True)
def unscaled_break_even(monkeypatch):
    """The tiny inputs here (11-23 tokens) would scale CROSS_AFTER_ROWS down to a fraction of a row: keep
    it as set, so each test chooses the side of the switch it runs on."""
    monkeypatch.setattr(FastDecoder, "CROSS_AFTER_TOKENS", 1)


def tiny(heads: int = 4, d_model: int = 32, dtype=torch.float32):
    torch.manual_seed(0)
    cfg = ledviz.LEDConfig(d_model=d_model, encoder_layers=1, decoder_layers=2, encoder_attention_heads=heads,
                           decoder_attention_heads=heads, encoder_ffn_dim=48, decoder_ffn_dim=48, vocab_size=90,
                           max_encoder_position_embeddings=64, max_decoder_position_embeddings=32,
                           attention_window=4)
    model = ledviz.LEDForConditionalGeneration(cfg).eval()
    perturb(model, scale=0.2)
    with torch.no_grad():
        model.final_logits_bias.normal_()
    return model.to(dtype)


def encoder_side(dtype=torch.float32):
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(2, 11, 32, generator=g).to(dtype)
    mask = torch.ones(2, 11, dtype=torch.long)
    mask[1, 7:] = 0  # the second source is padded
    return hidden, mask


def reference_logits(model, hidden, mask, group, steps):
    """Logits of each call from the readable step (the generate loop's fallback)."""
    runner = _DecoderRunner(model, hidden, mask)
    out, caches = [], None
    for ids in steps:
        logits, caches = runner.next_logits(ids, caches, group)
        out.append(logits)
    return out


def fast_logits(model, hidden, mask, group, steps, max_len=16):
    fast = FastDecoder(model, hidden, mask, group, max_len)
    return [fast.next_logits(ids) for ids in steps]


def token_steps(rows: int, prompt: int = 2, n: int = 4):
    """A prompt of `prompt` positions, then one new token per step."""
    g = torch.Generator().manual_seed(5)
    return [torch.randint(3, 90, (rows, prompt), generator=g)] + \
        [torch.randint(3, 90, (rows, 1), generator=g) for _ in range(n)]


@pytest.mark.parametrize("heads,d_model", [(4, 32), (2, 32)], ids=["head_dim_8_scale_after", "head_dim_16_scale_folded"])
@pytest.mark.parametrize("group", [1, 3])
@pytest.mark.parametrize("cross_after", [None, 3, 0], ids=["through_x", "cross_made_midway", "cross_made_first"])
def test_fast_step_matches_the_readable_step(monkeypatch, heads, d_model, group, cross_after):
    """Within transformers' parity tolerance, whether the cross-attention goes through the encoder output
    (the first query rows in float32), through the keys/values made midway, or made from the start."""
    if cross_after is not None:
        monkeypatch.setattr(FastDecoder, "CROSS_AFTER_ROWS", cross_after)
    model = tiny(heads, d_model)
    hidden, mask = encoder_side()
    steps = token_steps(2 * group)
    with torch.no_grad():
        ref = reference_logits(model, hidden, mask, group, steps)
        ours = fast_logits(model, hidden, mask, group, steps)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert_close(a, b, f"step {i}", tol=1e-5)


@pytest.mark.parametrize("sources", [1, 2])  # one row a step takes the projections' one-row products
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fast_step_half_precision_within_tolerance(dtype, sources):
    model32 = tiny()
    model = tiny(dtype=dtype)
    hidden, mask = encoder_side()
    hidden, mask = hidden[:sources], mask[:sources]
    steps = token_steps(sources)
    with torch.no_grad():
        ref = reference_logits(model32, hidden, mask, 1, steps)
        ours = fast_logits(model, hidden.to(dtype), mask, 1, steps)
        same_dtype = reference_logits(model, hidden.to(dtype), mask, 1, steps)
    for i, (a, b, c) in enumerate(zip(ours, ref, same_dtype)):
        assert a.dtype == torch.float32
        assert_close(a, b, f"step {i} against float32", tol=5e-2)
        assert_close(a, c, f"step {i} against the readable step in {dtype}", tol=2e-2)


def test_pack_is_kept_and_rebuilt_when_a_weight_changes():
    model = tiny()
    with torch.no_grad():
        first = FastDecoder.pack(model)
        assert FastDecoder.pack(model) is first
        # a kept float32 pack holds the transposed copies and the lm_head's int8 screen
        assert first.layers[0].fc1.weight_t is not None and first.screen is not None
        model.get_decoder().layers[0].fc1.weight.mul_(2.0)
        second = FastDecoder.pack(model)
    assert second is not first
    assert torch.equal(second.layers[0].fc1.weight_t, model.get_decoder().layers[0].fc1.weight.t())
    # the packed step follows the changed weight
    hidden, mask = encoder_side()
    steps = token_steps(2)
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(fast_logits(model, hidden, mask, 1, steps),
                                       reference_logits(model, hidden, mask, 1, steps))):
            assert_close(a, b, f"step {i} after the change", tol=1e-5)


def test_pack_is_not_copied_with_the_model():
    import copy
    import gc
    import weakref

    from ledviz import fastdecode

    model = tiny()
    with torch.no_grad():
        FastDecoder.pack(model)
    twin = copy.deepcopy(model)
    assert model in fastdecode._PACKS and twin not in fastdecode._PACKS
    assert "_ledviz_fast_pack" not in model.__dict__ and not any("fast" in k for k in model.state_dict())
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None  # the pack does not keep its model alive


def test_inference_tensor_weights_are_packed_per_call():
    with torch.inference_mode():
        model = tiny()
        a, b = FastDecoder.pack(model), FastDecoder.pack(model)
    assert a is not b and a.layers[0].fc1.weight_t is None and a.screen is None


def test_cross_keys_values_are_made_after_enough_query_rows(monkeypatch):
    """float32: through the encoder output until CROSS_AFTER_ROWS query rows a source, then made once;
    other dtypes make them at the start."""
    monkeypatch.setattr(FastDecoder, "CROSS_AFTER_ROWS", 4)
    model = tiny()
    hidden, mask = encoder_side()
    with torch.no_grad():
        fast = FastDecoder(model, hidden, mask, 2, 16)
        seen = []
        for ids in token_steps(4, prompt=1, n=4):  # 2 rows a source each call
            fast.next_logits(ids)
            seen.append(fast.cross is not None)
        assert seen == [False, False, True, True, True]


@pytest.mark.parametrize("b,group,sure,most,want", [
    (8, 1, 8, 40, 0),  # the rows sure to come repay the keys/values: made at the start
    (8, 1, 7, 40, 8),  # one row short: after 8 rows through X (ski rental)
    (8, 2, 4, 40, 0), (8, 2, 3, 40, 4),  # two rows a position
    (8, 1, 0, 16, 8),  # after 8 rows, 8 more can still come: made
    (8, 1, 0, 15, None),  # only 7 more can come: they cannot repay it, never made
    (7, 2, 0, 8, 4), (7, 2, 0, 7, None),  # ceil(7 / 2) = 4 positions; 2 * (7 - 4) = 6 < 7 rows left
    (0, 1, 0, 5, 0), (math.inf, 3, 100, 100, None),  # made from the start / never (bfloat16 on fast CPUs)
])
def test_projection_position_both_sides_of_each_switch(b, group, sure, most, want):
    assert projection_position(b, group, sure, most) == want


def test_break_even_scales_down_below_its_input_length(monkeypatch):
    monkeypatch.setattr(FastDecoder, "CROSS_AFTER_TOKENS", 4096)
    rows = FastDecoder.CROSS_AFTER_ROWS
    assert FastDecoder.break_even_rows(torch.float32, "cpu", 1024) == rows / 4
    assert FastDecoder.break_even_rows(torch.float32, "cpu", 4096) == rows
    assert FastDecoder.break_even_rows(torch.float32, "cpu", 16384) == rows
    assert FastDecoder.break_even_rows(torch.float16, "cpu", 4096) == 0
    # 64 sure rows at 1,024 tokens repay the keys/values (made at the start); at 4,096 they cannot (never)
    assert projection_position(FastDecoder.break_even_rows(torch.float32, "cpu", 1024), 1, 64, 64) == 0
    assert projection_position(FastDecoder.break_even_rows(torch.float32, "cpu", 4096), 1, 64, 64) is None


@pytest.mark.parametrize("sure,made_at", [(4, 0), (3, 4), (0, 4)])
def test_cross_keys_values_made_when_the_sure_positions_repay_them(monkeypatch, sure, made_at):
    """At the start when `sure_positions` rows will come (4 x 1 row >= 4); one short, after 4 rows
    through X; the logits are the readable step's either way."""
    monkeypatch.setattr(FastDecoder, "CROSS_AFTER_ROWS", 4)
    made = []
    real = FastDecoder._make_cross
    monkeypatch.setattr(FastDecoder, "_make_cross", lambda self: made.append(self.pos) or real(self))
    model = tiny()
    hidden, mask = encoder_side()
    steps = token_steps(2, prompt=1, n=7)
    with torch.no_grad():
        fast = FastDecoder(model, hidden, mask, 1, 16, sure_positions=sure)
        ours = [fast.next_logits(ids) for ids in steps]
        ref = reference_logits(model, hidden, mask, 1, steps)
    assert made == [made_at]  # the position whose step made them
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert_close(a, b, f"step {i}", tol=1e-5)


@pytest.mark.parametrize("case,made_at", [
    (dict(max_new_tokens=12, min_new_tokens=6), 0),  # 6 sure rows >= 6: at the start
    (dict(max_new_tokens=12, min_new_tokens=5), 6),  # one short: after 6 rows, 6 more can come
    (dict(max_new_tokens=11), None),  # after 6 rows only 4 more can: never
    (dict(max_new_tokens=6, eos_token_id=None), 0),  # without EOS every row runs to max_new_tokens
], ids=["sure_enough", "sure_one_short", "cannot_repay", "no_eos"])
def test_greedy_tokens_on_both_sides_of_the_switch(monkeypatch, models, inputs, case, made_at):
    """generate tells the fast step the sure and the largest output length; the keys/values are made at
    the position the rule says, and the tokens are transformers' on every side of it."""
    import warnings

    monkeypatch.setattr(FastDecoder, "CROSS_AFTER_ROWS", 6)
    made = []
    real = FastDecoder._make_cross
    monkeypatch.setattr(FastDecoder, "_make_cross", lambda self: made.append(self.pos) or real(self))
    ref, ours, _ = models
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ref.generate(**inputs, **case)
    assert_same_tokens(ours.generate(**inputs, **case), theirs, str(case))
    assert made == ([] if made_at is None else [made_at])


@pytest.fixture
def blocked_results(monkeypatch):
    """What each `_attend_x_blocked` call returned (None: the two passes took over)."""
    taken = []
    real = FastDecoder._attend_x_blocked
    monkeypatch.setattr(FastDecoder, "_attend_x_blocked", lambda self, u, x: taken.append(real(self, u, x))
                        or taken[-1])
    return taken


@pytest.mark.parametrize("block", [4, 11, 256], ids=["blocks_and_a_remainder", "blocks_exactly", "one_block"])
def test_unpadded_sources_attend_through_x_block_by_block(monkeypatch, blocked_results, block):
    """Without padding float32 reads X once a layer, block by block (`_attend_x_blocked`, scores shifted by the
    first block's maxima): within the parity tolerance of the readable step, whatever the block size."""
    monkeypatch.setattr(FastDecoder, "X_BLOCK", block)
    model = tiny()
    hidden, _ = encoder_side()
    mask = torch.ones(2, 11, dtype=torch.long)
    steps = token_steps(4)
    with torch.no_grad():
        ref = reference_logits(model, hidden, mask, 2, steps)
        ours = fast_logits(model, hidden, mask, 2, steps)
    assert blocked_results and all(y is not None for y in blocked_results)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert_close(a, b, f"step {i}", tol=1e-5)


def test_blocked_attention_shift_and_overflow():
    """The first block's maxima as the shift: a later block far above it (e^60) still gives softmax(u X^T) X;
    so far above that a sum overflows, None (the caller's two passes take over)."""
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(7)
    u, x = torch.randn(3, 16, generator=g), torch.randn(10, 16, generator=g)
    x[7] = u[1] * (60.0 / float(u[1] @ u[1]))  # row 1 scores 60 on key 7 (third block of 4)
    want = torch.softmax(u @ x.t(), dim=-1) @ x
    got = FastDecoder._attend_x_blocked(SimpleNamespace(X_BLOCK=4), u, x)
    assert_close(got, want, "shifted by the first block's maxima", tol=1e-6)
    x[7] = u[1] * (500.0 / float(u[1] @ u[1]))  # e^500 overflows float32
    assert FastDecoder._attend_x_blocked(SimpleNamespace(X_BLOCK=4), u, x) is None


def test_unpadded_greedy_tokens_through_x_blocks(monkeypatch, blocked_results, models, inputs):
    """transformers' tokens for one unpadded document attended through X in blocks of 5 of its 23 tokens."""
    import warnings

    monkeypatch.setattr(FastDecoder, "X_BLOCK", 5)
    ref, ours, _ = models
    one = {k: v[:1] for k, v in inputs.items()}
    assert bool(one["attention_mask"].all())
    case = dict(max_new_tokens=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ref.generate(**one, **case)
    assert_same_tokens(ours.generate(**one, **case), theirs, str(case))
    assert blocked_results and all(y is not None for y in blocked_results)


def test_half_precision_cross_keys_values(monkeypatch):
    """bfloat16 on a CPU with fast bfloat16 products attends through the encoder output throughout (its
    12-row products beat one row against the keys); without them, and in float16, the keys/values are
    made at the start."""
    from ledviz.device import simulated_cpu_flags

    monkeypatch.setattr(FastDecoder, "CROSS_AFTER_ROWS", 4)  # float32 would have made them
    hidden, mask = encoder_side()
    with torch.no_grad():
        with simulated_cpu_flags({"avx512f", "avx512_bf16"}):
            fast = FastDecoder(tiny(dtype=torch.bfloat16), hidden.bfloat16(), mask, 1, 16)
            for ids in token_steps(2, n=10):
                fast.next_logits(ids)
            assert fast.cross is None
        with simulated_cpu_flags({"avx512f"}):
            assert FastDecoder(tiny(dtype=torch.bfloat16), hidden.bfloat16(), mask, 1, 16).cross is not None
        assert FastDecoder(tiny(dtype=torch.float16), hidden.half(), mask, 1, 16).cross is not None


def test_decoding_past_the_cache_is_refused():
    model = tiny()
    hidden, mask = encoder_side()
    with torch.no_grad():
        fast = FastDecoder(model, hidden, mask, 1, 3)
        fast.next_logits(torch.full((2, 2), 5))
        fast.next_logits(torch.full((2, 1), 5))
        with pytest.raises(RuntimeError, match="3 positions"):
            fast.next_logits(torch.full((2, 1), 5))


def test_generate_takes_the_fast_step_only_at_inference(monkeypatch):
    model = tiny()
    calls = []
    real = FastDecoder._hidden
    monkeypatch.setattr(FastDecoder, "_hidden", lambda self, ids: calls.append(1) or real(self, ids))
    ids = torch.randint(3, 90, (1, 9))
    out = model.generate(ids, max_new_tokens=4, min_new_tokens=4, num_beams=1)
    assert len(calls) == 4
    # asked for per-step attentions, or in training mode: the readable step
    calls.clear()
    steps = model.generate(ids, max_new_tokens=4, min_new_tokens=4, num_beams=1, return_dict_in_generate=True,
                           output_attentions=True)
    assert not calls and torch.equal(steps.sequences, out)
    model.train()
    model.config.dropout = model.config.attention_dropout = model.config.activation_dropout = 0.0
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, num_beams=1)
    assert not calls


# ---------------------------------------------------------------------------------------------
# greedy's screened pick (an int8 or bfloat16 copy of the lm_head bounds every logit)
# ---------------------------------------------------------------------------------------------

def _screen_class(name):
    from ledviz import fastdecode

    return getattr(fastdecode, name)


@pytest.mark.parametrize("kind", ["_Int8Screen", "_Screen"])
def test_screen_bounds_hold(kind):
    """|estimate - exact logit| <= the bound, for every token, at several scales (rows of very different
    sizes, an outlier feature in x, an all-zero row)."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(3000, 64, generator=g) * torch.logspace(-3, 1, 3000)[:, None]
    W[7] = 0.0
    screen = _screen_class(kind).of(W)
    assert screen is not None, "oneDNN's int8 product is part of torch's x86 CPU build"
    bias = torch.randn(3000, generator=g)
    for scale in (0.0, 1e-3, 1.0, 30.0, 1e3):
        x = torch.randn(3, 64, generator=g) * scale
        x[1, 5] *= 40.0
        x[2] = 0.0
        approx, err = screen.bounds(x, bias)
        exact = (x.double() @ W.double().t() + bias.double())
        assert ((approx.double() - exact).abs() <= err.double()).all(), f"scale {scale}"
        assert scale == 0 or (err[:2, W.norm(dim=1) > 0] > 0).all()


def test_int8_screen_falls_back_when_its_product_is_not_the_integer_sum(monkeypatch):
    """The int8 screen checks the product once against float64 and gives way to the bfloat16 one."""
    from ledviz import fastdecode

    real = fastdecode._Int8Screen._product
    monkeypatch.setattr(fastdecode._Int8Screen, "_product", lambda self, k, s: real(self, k, s) * (1 + 1e-4))
    assert fastdecode._Int8Screen.of(torch.randn(300, 16)) is None
    model = tiny()
    with torch.no_grad():
        assert type(FastDecoder.pack(model).screen) is fastdecode._Screen


def _procs():
    def mask_some(s):
        s = s.clone()
        s[:, 5:40] = -float("inf")
        return s

    def force_three(s):  # three forced tokens tie at 0: the first wins
        out = torch.full_like(s, -float("inf"))
        out[:, [70, 12, 44]] = 0
        return out
    return {"none": lambda s: s, "mask": mask_some, "force": force_three}


@pytest.mark.parametrize("kind", ["_Int8Screen", "_Screen"])
@pytest.mark.parametrize("proc", ["none", "mask", "force"])
@pytest.mark.parametrize("max_candidates", [None, 0], ids=["screened", "too_many_candidates"])
def test_screened_pick_equals_argmax(monkeypatch, kind, proc, max_candidates):
    from ledviz import fastdecode

    screen = _screen_class(kind)
    if kind == "_Screen":  # the fallback where oneDNN's int8 product is missing
        monkeypatch.setattr(fastdecode._Int8Screen, "of", classmethod(lambda cls, w: None))
    if max_candidates is not None:
        monkeypatch.setattr(screen, "MAX_CANDIDATES", max_candidates)
    model = tiny()
    hidden, mask = encoder_side()
    process = _procs()[proc]
    with torch.no_grad():
        a = FastDecoder(model, hidden, mask, 2, 16)
        b = FastDecoder(model, hidden, mask, 2, 16)
        assert type(a.pack_.screen) is screen
        for ids in token_steps(4, n=6):
            picked = a.next_greedy(ids, process)
            assert torch.equal(picked, process(b.next_logits(ids)).argmax(dim=-1))


def test_greedy_without_scores_matches_transformers(models, inputs):
    """The screened pick (no scores asked) gives transformers' tokens, with masking processors on."""
    import warnings

    ref, ours, _ = models
    for case in (dict(max_new_tokens=15), dict(max_new_tokens=12, min_new_tokens=6),
                 dict(max_new_tokens=20, no_repeat_ngram_size=2),
                 dict(max_length=10, forced_bos_token_id=0, forced_eos_token_id=2), dict(max_new_tokens=12,
                                                                                         bad_words_ids=[[7], [9, 11]])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = ref.generate(**inputs, **case)
        assert_same_tokens(ours.generate(**inputs, **case), theirs, str(case))


@pytest.mark.parametrize("proc", ["none", "mask", "force"])
@pytest.mark.parametrize("max_candidates", [None, 0], ids=["screened", "too_many_candidates"])
def test_bfloat16_screened_pick_is_the_float32_sums_argmax(monkeypatch, proc, max_candidates):
    """A kept bfloat16 pack screens with an int8 copy of the lm_head too; the pick is the argmax of float32
    sums over the bfloat16 weights, screened or not."""
    import torch.nn.functional as F

    from ledviz import fastdecode

    if max_candidates is not None:
        monkeypatch.setattr(fastdecode._Int8Screen, "MAX_CANDIDATES", max_candidates)
    model = tiny(dtype=torch.bfloat16)
    hidden, mask = encoder_side(torch.bfloat16)
    process = _procs()[proc]
    weight, bias = model.lm_head.weight.float(), model.final_logits_bias[0].float()
    with torch.no_grad():
        a = FastDecoder(model, hidden, mask, 1, 16)
        b = FastDecoder(model, hidden, mask, 1, 16)
        assert type(a.pack_.screen) is fastdecode._Int8Screen
        for ids in token_steps(2, n=6):
            picked = a.next_greedy(ids, process)
            want = process(F.linear(b._hidden(ids).float(), weight, bias)).argmax(dim=-1)
            assert torch.equal(picked, want)
