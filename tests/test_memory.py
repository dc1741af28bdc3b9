"""The memory estimate of a run against the tensors of a real run, the guard, the result store."""

from __future__ import annotations

import pytest
import torch

from ledviz import LEDConfig, pipeline
from ledviz.errors import InputError
from ledviz.memory import (
    GB,
    MB,
    MemoryGuard,
    MemoryRefused,
    ResultStore,
    estimate_run,
    memory_budget,
    model_nbytes,
    run_nbytes,
)


@pytest.fixture(scope="module")
def loaded():
    return pipeline.load_model()  # the embedded demo model (windows 32 and 64: per-layer windows)


@pytest.fixture(scope="module")
def doc(loaded):
    from ledviz.demo.data import sample_documents

    return pipeline.prepare_document(loaded, next(iter(sample_documents().values())))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_kept_estimate_equals_the_tensors_a_run_keeps(loaded, doc, dtype):
    mask = pipeline.global_attention_mask(doc, "sentences")
    x = int(mask.sum())
    assert x > 1
    result = pipeline.run(loaded, doc, mask, max_new_tokens=12, attention_dtype=dtype)
    T = len(result.output_ids) - 1  # output tokens after the decoder start
    est = estimate_run(loaded.config, doc.n_tokens, n_global=x, max_new_tokens=T, attention_dtype=dtype)
    assert est.kept == run_nbytes(result)
    assert est.parts["encoder_attention"] == sum(sp.nbytes for sp in result.layers.values())
    assert est.parts["cross_attention"] == sum(t.numel() * t.element_size() for t in result.cross_attentions)
    assert est.parts["decoder_attention"] == sum(t.numel() * t.element_size() for t in result.decoder_attentions)
    # a longer allowance only adds
    assert estimate_run(loaded.config, doc.n_tokens, n_global=x, max_new_tokens=T + 8, attention_dtype=dtype).kept > est.kept


def test_kept_layers_only_count_those_layers(loaded, doc):
    mask = pipeline.global_attention_mask(doc, "first")
    result = pipeline.run(loaded, doc, mask, max_new_tokens=4, attention_layers=[1])
    assert sorted(result.layers) == [1] and sorted(result.head_stats) == [1]
    T = len(result.output_ids) - 1
    last = estimate_run(loaded.config, doc.n_tokens, n_global=1, max_new_tokens=T, attention_layers=[1])
    assert last.kept == run_nbytes(result)
    assert last.kept < estimate_run(loaded.config, doc.n_tokens, n_global=1, max_new_tokens=T).kept
    with pytest.raises(InputError, match="encoder layers 0 to 1"):
        pipeline.run(loaded, doc, mask, max_new_tokens=4, attention_layers=[2])


def test_the_float32_layer_estimate_covers_what_the_encoder_hands_over(loaded, doc):
    mask = pipeline.global_attention_mask(doc, "sentences")
    sizes = []

    def sink(layer, local, glob):
        sizes.append(local.numel() * 4 + (0 if glob is None else glob.numel() * 4))

    loaded.model.get_encoder()(doc.input_ids, attention_mask=doc.attention_mask, global_attention_mask=mask,
                               attention_sink=sink)
    est = estimate_run(loaded.config, doc.n_tokens, n_global=int(mask.sum()))
    window = max(loaded.config.attention_windows())
    padded = -(-doc.n_tokens // window) * window
    assert max(sizes) <= est.parts["encoder_layer_probs"] <= max(sizes) * padded / doc.n_tokens + 1
    assert est.transient >= 3 * est.parts["encoder_layer_probs"]


def _tensor_bytes(model) -> int:
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def test_bfloat16_estimate_counts_the_weights_copy_and_two_byte_activations(doc):
    """precision="bfloat16": the run first makes the model's bfloat16 copy (kept), and the encoder
    computes its probabilities in bfloat16 (2 bytes, not 4). Both against measured tensors."""
    fresh = pipeline.load_model()  # its own LoadedModel: no bfloat16 copy made yet
    assert not fresh.has_model_in("bfloat16") and fresh.has_model_in("float32")
    mask = pipeline.global_attention_mask(doc, "sentences")
    x = int(mask.sum())
    f32 = estimate_run(fresh.config, doc.n_tokens, n_global=x)
    bf16 = estimate_run(fresh.config, doc.n_tokens, n_global=x, precision="bfloat16", weights_copy=True)
    assert "weights_copy" not in f32.parts and model_nbytes(fresh.config) == _tensor_bytes(fresh.model)
    copy = fresh.model_in("bfloat16")
    assert fresh.has_model_in("bfloat16")
    assert bf16.parts["weights_copy"] == _tensor_bytes(copy) == model_nbytes(fresh.config, torch.bfloat16)
    sizes = []

    def sink(layer, local, glob):
        assert local.dtype == torch.bfloat16
        sizes.append(local.numel() * local.element_size() + (0 if glob is None else glob.numel() * glob.element_size()))

    copy.get_encoder()(doc.input_ids, attention_mask=doc.attention_mask, global_attention_mask=mask,
                       attention_sink=sink)
    window = max(fresh.config.attention_windows())
    padded = -(-doc.n_tokens // window) * window
    assert max(sizes) <= bf16.parts["encoder_layer_probs"] <= max(sizes) * padded / doc.n_tokens + 1
    assert bf16.parts["encoder_layer_probs"] * 2 == f32.parts["encoder_layer_probs"]
    assert bf16.transient >= bf16.parts["weights_copy"] + 3 * bf16.parts["encoder_layer_probs"]
    # what a bfloat16 run keeps is what the estimate says (attention stored in float16 either way)
    result = pipeline.run(fresh, doc, mask, max_new_tokens=6, precision="bfloat16")
    T = len(result.output_ids) - 1
    assert estimate_run(fresh.config, doc.n_tokens, n_global=x, max_new_tokens=T, precision="bfloat16").kept \
        == run_nbytes(result)


def test_server_estimate_follows_the_precision_a_run_will_use(doc):
    from ledviz import device
    from ledviz.serving import Server
    from ledviz.settings import Settings

    fresh = pipeline.load_model()
    mask = pipeline.global_attention_mask(doc, "first")
    server = Server(Settings(), budget=4 * GB)
    try:
        with device.simulated_cpu_flags({"avx512f", "avx512_bf16", "amx_bf16"}):
            est = server.estimate(fresh, doc, mask, precision="bfloat16")
            assert est.settings["precision"] == "bfloat16" and est.parts["weights_copy"] > 0
            fresh.model_in("bfloat16")
            assert "weights_copy" not in server.estimate(fresh, doc, mask, precision="bfloat16").parts
        with device.simulated_cpu_flags({"avx2"}):  # no fast bfloat16: the run uses float32
            est = server.estimate(fresh, doc, mask, precision="bfloat16")
            assert est.settings["precision"] == "float32" and "weights_copy" not in est.parts
    finally:
        server.close()


def test_led_base_at_16k_is_gigabytes():
    cfg = LEDConfig(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                    decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
                    attention_window=1024, max_encoder_position_embeddings=16384)
    est = estimate_run(cfg, 16384, n_global=1, max_new_tokens=64)
    # 6 layers x 12 heads x 16,384 x 1,025 x 2 bytes for the bands alone
    assert est.parts["encoder_attention"] >= 6 * 12 * 16384 * 1025 * 2
    assert 2 * GB < est.kept < 3 * GB
    assert estimate_run(cfg, 16384, attention_dtype=torch.float32).kept > 1.9 * est.kept


def test_guard_refuses_with_the_ways_to_shrink():
    cfg = LEDConfig(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                    decoder_attention_heads=12, attention_window=1024, max_encoder_position_embeddings=16384)
    guard = MemoryGuard(budget=8 * GB, workers=2, live_check=False)
    assert guard.per_run == 2 * GB and guard.kept_bytes == 4 * GB
    big = estimate_run(cfg, 16384, max_new_tokens=64, attention_dtype=torch.float32)
    with pytest.raises(MemoryRefused) as err:
        guard.check(big)
    msg = str(err.value)
    assert "float16" in msg and "fewer encoder layers" in msg and "6 encoder layers × 12 heads × 16,384 tokens" in msg
    assert "+ 1 global column, float32" in msg, msg  # one of each: no plural, and no "(s)"
    assert "2.0 GB per run" in msg
    small = estimate_run(cfg, 2048, max_new_tokens=32, attention_layers=[5])
    guard.check(small)  # fits
    assert small.describe().startswith("1 encoder layer × 12 heads × 2,048 tokens × "), small.describe()



def test_memory_sizes_choose_the_unit_after_rounding():
    """A GB less a few bytes read "1,024 MB" (the unit chosen before rounding)."""
    from ledviz.memory import _fmt

    assert [_fmt(b) for b in (0, 300 * MB, GB - 600_000, GB - 100, GB, 1.55 * GB)] == [
        "0 MB", "300 MB", "1,023 MB", "1.0 GB", "1.0 GB", "1.6 GB"]

def test_budget_from_available_memory_and_explicit():
    assert memory_budget(1000) == 1000 * MB
    assert 0 < memory_budget() < 64 * 1024 * GB
    with pytest.raises(Exception, match="positive"):
        memory_budget(0)


def test_result_store_bounds_per_owner_and_in_bytes():
    store = ResultStore(max_bytes=100, per_owner=2)
    a1 = store.put("a", "summarize", "A1", 30)
    a2 = store.put("a", "qa", "A2", 30)
    a3 = store.put("a", "lab", "A3", 30)  # a's third: its oldest goes
    assert store.get(a1) is None and "at most 2" in store.why_dropped(a1)
    assert store.get(a2) == "A2" and store.get(a3) == "A3"
    a4 = store.put("a", "qa", "A4", 30)  # replaces a's qa result
    assert store.get(a2) is None and store.get(a4) == "A4"
    store.get(a3)  # a3 used most recently: a4 is now the least recently used
    b1 = store.put("b", "summarize", "B1", 50)  # 110 > 100: the least recently used goes
    assert store.get(a4) is None and "needed its memory" in store.why_dropped(a4)
    assert store.get(a3) == "A3" and store.get(b1) == "B1"
    assert store.nbytes <= 100
    with pytest.raises(MemoryRefused, match="more than"):
        store.put("c", "x", "C", 101)
    store.drop_owner("a")
    assert store.get(a3) is None and len(store) == 1


def _pack_new_bytes(model, pack) -> int:
    """Bytes of a fastdecode pack's tensors that are not the model's own parameters."""
    import dataclasses

    own = {p.data_ptr() for p in model.parameters()}
    tensors = []
    for part in [*pack.layers, pack.lm_head, pack.screen]:
        if part is None:
            continue
        for f in dataclasses.fields(part):
            value = getattr(part, f.name)
            if dataclasses.is_dataclass(value):
                tensors += [getattr(value, g.name) for g in dataclasses.fields(value)]
            else:
                tensors.append(value)
    seen, total = set(), 0
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            continue
        # oneDNN's packed int8 lm_head (the int8 screen) has no storage to point at: always a new tensor
        key = t.data_ptr() if t.layout == torch.strided else id(t)
        if key not in own and key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_decoder_pack_bytes_are_those_a_kept_pack_holds(dtype):
    """fastdecode.pack_nbytes against the tensors of a real kept pack (float32: with transposed
    copies and the lm_head's int8 screen; bfloat16: the fused weights only)."""
    from ledviz import LEDForConditionalGeneration, fastdecode

    config = LEDConfig(vocab_size=300, d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
                       decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=40, attention_window=4,
                       max_encoder_position_embeddings=64, max_decoder_position_embeddings=32)
    model = LEDForConditionalGeneration(config).to(dtype).eval()
    assert not fastdecode.has_pack(model)
    pack = fastdecode.FastDecoder.pack(model)
    assert fastdecode.has_pack(model)
    assert fastdecode.pack_nbytes(config, dtype) == _pack_new_bytes(model, pack)
    with torch.no_grad():
        model.lm_head.weight.mul_(2)  # a changed weight: the kept pack no longer fits it
    assert not fastdecode.has_pack(model)


def test_server_estimate_counts_the_decoder_pack_until_it_is_made(doc):
    from ledviz.serving import Server
    from ledviz.settings import Settings

    fresh = pipeline.load_model()
    mask = pipeline.global_attention_mask(doc, "first")
    server = Server(Settings(), budget=4 * GB)
    try:
        before = server.estimate(fresh, doc, mask, precision="float32", max_new_tokens=4)
        assert before.parts["decoder_pack"] > 0 and before.transient >= before.parts["decoder_pack"]
        assert "decoder_pack" not in server.estimate(fresh, doc, mask, num_beams=2, max_new_tokens=4).parts
        pipeline.run(fresh, doc, mask, max_new_tokens=4)  # greedy: packs the decoder once
        assert "decoder_pack" not in server.estimate(fresh, doc, mask, precision="float32", max_new_tokens=4).parts
    finally:
        server.close()


# ---------------------------------------------------------------------------------------------
# generation's buffers: the cross-attention keys/values are counted only where they are made
# ---------------------------------------------------------------------------------------------

def _tiny_generator(dtype=torch.float32):
    from ledviz import LEDForConditionalGeneration

    torch.manual_seed(0)
    config = LEDConfig(vocab_size=120, d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
                       decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=40, attention_window=4,
                       max_encoder_position_embeddings=64, max_decoder_position_embeddings=32)
    return LEDForConditionalGeneration(config).to(dtype).eval()


def _buffer_bytes(fast) -> int:
    """Bytes of the tensors a FastDecoder allocated: its self-attention cache, the block holding the
    cross-attention keys/values (whole: a view's storage) and the padding mask."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                for pair in fast.self_kv + (fast.cross or []) for t in pair}
    return sum(storages.values()) + (0 if fast.cross_mask is None else fast.cross_mask.nbytes)


@pytest.mark.parametrize("sure,most,made", [(5, 12, True), (4, 12, True), (0, 9, False), (0, 10, True)],
                         ids=["sure_long", "one_short_then_midway", "cannot_repay", "midway"])
@pytest.mark.parametrize("padded", [False, True])
def test_fast_decoder_buffers_are_what_the_estimate_counts(monkeypatch, sure, most, made, padded):
    """FastDecoder.buffers_nbytes against the tensors a decoder run to its last position allocated, on
    both sides of the switch (break-even 5 rows: made at the start, after 5 rows, or never)."""
    from ledviz.fastdecode import FastDecoder

    monkeypatch.setattr(FastDecoder, "CROSS_AFTER_ROWS", 5)
    monkeypatch.setattr(FastDecoder, "CROSS_AFTER_TOKENS", 1)  # not scaled down at this tiny input
    model = _tiny_generator()
    hidden = torch.randn(2, 11, 32)
    mask = torch.ones(2, 11, dtype=torch.long)
    if padded:
        mask[1, 7:] = 0
    with torch.no_grad():
        fast = FastDecoder(model, hidden, mask, 1, 16, sure_positions=sure, most_positions=most)
        for _ in range(most):
            fast.next_logits(torch.full((2, 1), 5))
    assert (fast.cross is not None) == made
    assert _buffer_bytes(fast) == FastDecoder.buffers_nbytes(
        model.config, 11, torch.float32, 16, sources=2, sure_positions=sure, most_positions=most, padded=padded)


def test_bfloat16_buffers_have_cross_keys_values_only_without_fast_bfloat16():
    from ledviz.device import simulated_cpu_flags
    from ledviz.fastdecode import FastDecoder

    model = _tiny_generator(torch.bfloat16)
    hidden = torch.randn(1, 11, 32, dtype=torch.bfloat16)
    for flags, made in (({"avx512f", "avx512_bf16"}, False), ({"avx512f"}, True)):
        with simulated_cpu_flags(flags), torch.no_grad():
            fast = FastDecoder(model, hidden, None, 1, 16, sure_positions=15)
            for _ in range(15):
                fast.next_logits(torch.full((1, 1), 5))
            assert (fast.cross is not None) == made
            assert _buffer_bytes(fast) == FastDecoder.buffers_nbytes(model.config, 11, torch.bfloat16, 16,
                                                                     sure_positions=15)


def _fast_decoders_made(monkeypatch) -> list:
    """The FastDecoders generate makes from now on, with a break-even of 3 rows (not scaled down at
    these tiny inputs)."""
    from ledviz.fastdecode import FastDecoder

    monkeypatch.setattr(FastDecoder, "CROSS_AFTER_ROWS", 3)
    monkeypatch.setattr(FastDecoder, "CROSS_AFTER_TOKENS", 1)
    made = []
    real = FastDecoder.__init__

    def spy(self, *args, **kwargs):
        real(self, *args, **kwargs)
        made.append(self)
    monkeypatch.setattr(FastDecoder, "__init__", spy)
    return made


@pytest.mark.parametrize("min_new", [None, 4], ids=["short_not_made", "sure_made"])
def test_greedy_estimate_is_what_generate_allocates(monkeypatch, min_new):
    """memory.decoding_nbytes (the estimate's generation part) against the buffers of the fast decoder
    that generate itself makes; the keys/values (break-even 3 rows) are made only with min_new_tokens=4."""
    from ledviz import memory
    from ledviz.fastdecode import FastDecoder

    made = _fast_decoders_made(monkeypatch)
    model = _tiny_generator()
    ids = torch.randint(3, 120, (1, 13))
    out = model.generate(ids, max_new_tokens=4, min_new_tokens=min_new, num_beams=1)
    (fast,) = made
    assert (fast.cross is not None) == (min_new is not None)
    assert memory.decoding_nbytes(model.config, 13, "float32", 4, min_new_tokens=min_new) == _buffer_bytes(fast)
    est = estimate_run(model.config, 13, max_new_tokens=4, min_new_tokens=min_new)
    assert est.parts["generation"] == 13 * 32 * 4 + _buffer_bytes(fast)
    assert out.shape[1] <= 5


@pytest.mark.parametrize("min_new", [None, 4], ids=["short_not_made", "sure_made"])
def test_sampling_several_sequences_estimate_is_what_generate_allocates(monkeypatch, min_new):
    """Sampling num_return_sequences=3 decodes three rows at once, each with its own self-attention cache:
    memory.decoding_nbytes counted one (an under-count by the factor); now the fast decoder's buffers."""
    from ledviz import memory
    from ledviz.fastdecode import FastDecoder

    made = _fast_decoders_made(monkeypatch)
    model = _tiny_generator()
    ids = torch.randint(3, 120, (1, 13))
    out = model.generate(ids, max_new_tokens=4, min_new_tokens=min_new, do_sample=True, num_return_sequences=3,
                         seed=0)
    (fast,) = made
    assert out.shape[0] == 3 and fast.self_kv[0][0].shape[0] == 3
    counted = memory.decoding_nbytes(model.config, 13, "float32", 4, min_new_tokens=min_new, num_return_sequences=3)
    assert counted == _buffer_bytes(fast)
    assert counted > memory.decoding_nbytes(model.config, 13, "float32", 4, min_new_tokens=min_new)
    est = estimate_run(model.config, 13, max_new_tokens=4, min_new_tokens=min_new, num_return_sequences=3)
    assert est.parts["generation"] == 13 * 32 * 4 + _buffer_bytes(fast)


def test_beam_estimate_covers_the_caches_whatever_num_return_sequences(monkeypatch):
    """Beam search decodes num_beams rows per document however many sequences it returns (at most
    num_beams): the caches generate holds at its last step fit the estimate, twice over for the self-
    attention's concatenation, for num_return_sequences 1 and 3 of 4 beams."""
    from ledviz import memory
    from ledviz.generation import _DecoderRunner

    model = _tiny_generator()
    ids = torch.randint(3, 120, (1, 13))
    for nrs in (1, 3):
        held = []
        real = _DecoderRunner.next_logits

        def spy(self, *args, **kwargs):
            logits, caches = real(self, *args, **kwargs)
            held.append(caches)
            return logits, caches
        monkeypatch.setattr(_DecoderRunner, "next_logits", spy)
        out = model.generate(ids, max_new_tokens=6, num_beams=4, num_return_sequences=nrs, eos_token_id=None)
        monkeypatch.setattr(_DecoderRunner, "next_logits", real)
        last = held[-1]
        assert out.shape == (nrs, 7) and last[0].self_attn.key.shape[0] == 4
        self_bytes = sum(t.nbytes for c in last for t in c.self_attn)
        cross_bytes = sum(t.nbytes for c in last for t in c.cross_attn)
        counted = memory.decoding_nbytes(model.config, 13, "float32", 6, num_beams=4, num_return_sequences=nrs)
        assert cross_bytes + 2 * self_bytes <= counted < 2 * (cross_bytes + 2 * self_bytes)


def test_led_base_generation_counts_cross_keys_values_only_where_made():
    """LED-base at 16,384 tokens, 128 new tokens: float32 greedy whose output may be short attends through
    the encoder output (no keys/values: 6 layers x 2 x 16,384 x 768 x 4 bytes less than counted before);
    with min_new_tokens=128 it makes them; beams keep one copy for all beams."""
    from ledviz import device

    cfg = LEDConfig(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                    decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
                    attention_window=1024, max_encoder_position_embeddings=16384)
    kv = 6 * 2 * 16384 * 768 * 4
    short = estimate_run(cfg, 16384, max_new_tokens=128)
    sure = estimate_run(cfg, 16384, max_new_tokens=128, min_new_tokens=128)
    assert sure.parts["generation"] - short.parts["generation"] == kv + 2 * MB
    assert short.parts["generation"] < kv
    beams = estimate_run(cfg, 16384, max_new_tokens=64, num_beams=4)
    assert kv < beams.parts["generation"] < 2 * kv
    with device.simulated_cpu_flags({"avx512f", "avx512_bf16"}):
        bf16 = estimate_run(cfg, 16384, max_new_tokens=256, min_new_tokens=256, precision="bfloat16")
    assert bf16.parts["generation"] < kv / 4  # bfloat16 on a fast CPU never makes them


@pytest.mark.slow
def test_bfloat16_copy_made_inside_a_run_keeps_its_decoder_pack(doc):
    """The bfloat16 copy a run makes (inside torch.inference_mode) has normal weights, so greedy's packed
    decoder weights are kept for it (and no longer counted by the estimate) as for the float32 model."""
    from ledviz import device
    from ledviz.fastdecode import has_pack

    fresh = pipeline.load_model()
    mask = pipeline.global_attention_mask(doc, "first")
    with device.simulated_cpu_flags({"avx512f", "avx512_bf16"}):
        pipeline.run(fresh, doc, mask, max_new_tokens=3, precision="bfloat16")
    copy = fresh.model_in("bfloat16")
    assert copy.dtype == torch.bfloat16 and not copy.lm_head.weight.is_inference()
    assert has_pack(copy)
