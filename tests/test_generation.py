"""Generation against transformers 4.57 `generate` on tiny random checkpoints: the same tokens, scores and attentions."""

from __future__ import annotations

import json
import shutil
import threading
import warnings

import pytest
import torch

import ledviz
from conftest import assert_close, tiny_kwargs
from ledviz import GenerationSettingsError
from ledviz.cache import reorder
from ledviz.generation import VALID_SETTINGS, _DecoderRunner
from generation_fixtures import EOS, PAD, START, VOCAB, TINY_GEN, models, inputs, one_thread, assert_same_tokens  # noqa: F401 (fixtures and helpers shared with other modules)


def both(models, inputs, **settings):
    """(ours, transformers) generate outputs, as dicts with scores."""
    ref, ours, _ = models
    kw = dict(return_dict_in_generate=True, output_scores=True, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ref.generate(**inputs, **kw)
    return ours.generate(**inputs, **kw), theirs


def ends_at(seqs: torch.Tensor) -> list[int]:
    """Length of every row up to and including its first EOS after the start token (the full row if none)."""
    out = []
    for row in seqs.tolist():
        out.append(next((i + 1 for i, t in enumerate(row) if i > 0 and t == EOS), len(row)))
    return out


GREEDY_CASES = {
    "library_defaults": {},
    "max_new_tokens": dict(max_new_tokens=15),
    "max_length": dict(max_length=9),
    "min_length": dict(max_new_tokens=12, min_length=8),
    "min_new_tokens": dict(max_new_tokens=12, min_new_tokens=6),
    "no_repeat_ngram": dict(max_new_tokens=20, no_repeat_ngram_size=2),
    "no_repeat_unigram": dict(max_new_tokens=20, no_repeat_ngram_size=1, eos_token_id=None),
    "repetition_penalty": dict(max_new_tokens=12, repetition_penalty=1.8),
    "forced_bos_eos": dict(max_length=10, forced_bos_token_id=0, forced_eos_token_id=EOS),
    "no_eos": dict(max_new_tokens=8, eos_token_id=None),
    "two_eos": dict(max_new_tokens=12, eos_token_id=[EOS, 55]),
    "pad_zero": dict(max_new_tokens=12, pad_token_id=0),
    "start_token": dict(max_new_tokens=10, decoder_start_token_id=0),
}


@pytest.mark.parametrize("case", GREEDY_CASES)
def test_greedy_matches_transformers(models, inputs, case):
    ours, ref = both(models, inputs, **GREEDY_CASES[case])
    assert_same_tokens(ours.sequences, ref.sequences, case)
    assert len(ours.scores) == len(ref.scores)
    for step, (a, b) in enumerate(zip(ours.scores, ref.scores)):
        finite = torch.isfinite(b)
        assert torch.equal(finite, torch.isfinite(a)), f"{case}: step {step}: -inf at other tokens"
        assert_close(a[finite], b[finite], f"{case}: scores of step {step}", tol=1e-4)


BEAM_CASES = {
    f"lp{lp}_early{early}": dict(num_beams=3, max_new_tokens=12, length_penalty=lp, early_stopping=early)
    for lp in (0.5, 1.0, 2.0) for early in (True, False, "never")
}
BEAM_CASES.update({
    "negative_lp_never": dict(num_beams=3, max_new_tokens=12, length_penalty=-0.5, early_stopping="never"),
    "no_repeat_ngram": dict(num_beams=4, max_new_tokens=14, no_repeat_ngram_size=2),
    "min_length": dict(num_beams=3, max_new_tokens=12, min_length=7),
    "min_new_tokens": dict(num_beams=3, max_new_tokens=12, min_new_tokens=4, early_stopping=True),
    "forced_bos_eos": dict(num_beams=3, max_length=10, forced_bos_token_id=0, forced_eos_token_id=EOS),
    "return_3_of_4": dict(num_beams=4, num_return_sequences=3, max_new_tokens=12, length_penalty=2.0),
    "return_all": dict(num_beams=2, num_return_sequences=2, max_new_tokens=12, early_stopping=True),
    "two_eos": dict(num_beams=3, max_new_tokens=12, eos_token_id=[EOS, 55]),
    "no_eos": dict(num_beams=3, max_new_tokens=6, eos_token_id=None),
    "pad_zero": dict(num_beams=3, max_new_tokens=12, pad_token_id=0),
    "repetition_penalty": dict(num_beams=3, max_new_tokens=12, repetition_penalty=1.3),
    "library_max_length": dict(num_beams=2),
})


@pytest.mark.parametrize("case", BEAM_CASES)
def test_beam_search_matches_transformers(models, inputs, case):
    ours, ref = both(models, inputs, **BEAM_CASES[case])
    assert_same_tokens(ours.sequences, ref.sequences, case)
    assert_close(ours.sequences_scores, ref.sequences_scores, f"{case}: sequences_scores", tol=1e-4)
    assert len(ours.scores) == len(ref.scores), f"{case}: {len(ours.scores)} steps vs {len(ref.scores)}"
    assert torch.equal(ours.beam_indices, ref.beam_indices.to(ours.beam_indices.dtype)), f"{case}: beam_indices"


def test_beams_end_at_different_steps(models, inputs):
    """The checkpoint makes EOS likely: finished hypotheses of different lengths, padded, and searches that the
    early-stopping rules end before max_length (so those code paths run, and are compared above)."""
    ours, ref = both(models, inputs, num_beams=4, num_return_sequences=4, max_new_tokens=12, early_stopping="never")
    assert_same_tokens(ours.sequences, ref.sequences, "4 of 4 beams")
    lengths = ends_at(ours.sequences)
    T = ours.sequences.shape[1]
    assert len(set(lengths)) > 1 and min(lengths) < T, f"hypotheses should end at different steps: {lengths}"
    for row, n in zip(ours.sequences, lengths):
        assert torch.all(row[n:] == PAD), f"finished hypotheses are padded with pad_token_id: {row.tolist()}"
    steps = {}
    for early in (True, False, "never"):
        out, theirs = both(models, inputs, num_beams=3, max_new_tokens=12, length_penalty=0.5, early_stopping=early)
        assert len(out.scores) == len(theirs.scores)
        steps[early] = len(out.scores)
    # early_stopping=True ends first, then the heuristic of False, then "never" (which bounds with max_length)
    assert steps[True] < steps[False] < steps["never"] < 12, steps


# ---- sampling ----------------------------------------------------------------------------------

SAMPLING = {
    "plain": dict(do_sample=True, max_new_tokens=12),
    "warped": dict(do_sample=True, top_k=5, top_p=0.8, temperature=0.7, num_return_sequences=3, max_new_tokens=12),
    "beam_sample": dict(do_sample=True, num_beams=3, top_k=10, num_return_sequences=2, max_new_tokens=10),
}


@pytest.mark.parametrize("case", SAMPLING)
def test_sampling_is_reproducible(models, inputs, case):
    _, ours, _ = models
    a = ours.generate(**inputs, seed=7, **SAMPLING[case])
    b = ours.generate(**inputs, seed=7, **SAMPLING[case])
    c = ours.generate(**inputs, seed=8, **SAMPLING[case])
    assert torch.equal(a, b), "the same seed must give the same tokens"
    assert not torch.equal(a, c), "another seed should give other tokens"
    for out in (a, c):
        assert out.dtype == torch.long and int(out.min()) >= 0 and int(out.max()) < VOCAB
        assert torch.all(out[:, 0] == START)


@pytest.mark.parametrize("case", SAMPLING)
def test_sampling_matches_transformers_under_the_same_seed(models, inputs, case):
    """Our seeded generator draws as transformers' global RNG does (given the encoder output, whose pass in
    transformers also draws from the global RNG)."""
    ref, ours, _ = models
    enc = ref.get_encoder()(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                            global_attention_mask=inputs["global_attention_mask"])
    torch.manual_seed(11)
    theirs = ref.generate(encoder_outputs=enc, attention_mask=inputs["attention_mask"], **SAMPLING[case])
    assert_same_tokens(ours.generate(**inputs, seed=11, **SAMPLING[case]), theirs, case)


# ---- streaming and stopping ----------------------------------------------------------------------

def test_callback_streamer_sees_every_token(models, inputs):
    _, ours, _ = models
    seen = []
    out = ours.generate(**inputs, max_new_tokens=10, streamer=lambda step, ids: seen.append((step, ids)))
    assert [s for s, _ in seen] == list(range(out.shape[1] - 1))
    assert torch.equal(torch.stack([ids for _, ids in seen], dim=1), out[:, 1:])


def test_object_streamer_like_transformers(models, inputs):
    """put() gets the decoder start ids, then each step's tokens; end() once."""
    _, ours, _ = models

    class Recorder:
        def __init__(self):
            self.puts, self.ended = [], 0

        def put(self, value):
            self.puts.append(value)

        def end(self):
            self.ended += 1

    rec = Recorder()
    out = ours.generate(**inputs, max_new_tokens=10, streamer=rec)
    assert rec.ended == 1
    assert torch.equal(rec.puts[0], out[:, :1])
    assert torch.equal(torch.stack(rec.puts[1:], dim=1), out[:, 1:])


def test_callback_returning_false_stops(models, inputs):
    _, ours, _ = models
    full = ours.generate(**inputs, max_new_tokens=12, eos_token_id=None)
    out = ours.generate(**inputs, max_new_tokens=12, eos_token_id=None, return_dict_in_generate=True,
                        streamer=lambda step, ids: step < 3)
    assert out.stopped
    assert torch.equal(out.sequences, full[:, :5]), "stopped after the 4th token, returning what it had"


def test_stop_event_stops_greedy_and_beams(models, inputs):
    _, ours, _ = models
    for settings in (dict(), dict(num_beams=3, num_return_sequences=2)):
        event = threading.Event()

        def hook(step, ids):
            if step == 2:
                event.set()

        out = ours.generate(**inputs, max_new_tokens=12, eos_token_id=None, stop_event=event, streamer=hook,
                            return_dict_in_generate=True, **settings)
        assert out.stopped, settings
        assert out.sequences.shape == (2 * settings.get("num_return_sequences", 1), 4), settings
        assert torch.all(out.sequences[:, 0] == START)
        if "num_beams" in settings:  # the running beams were scored as finished
            assert torch.all(out.sequences_scores > -1e8)
            assert torch.equal(out.beam_indices >= 0, torch.ones_like(out.beam_indices, dtype=torch.bool))


def test_stop_before_start_and_a_finished_run_is_not_stopped(models, inputs):
    _, ours, _ = models
    event = threading.Event()
    event.set()
    out = ours.generate(**inputs, stop_event=event, return_dict_in_generate=True)
    assert out.stopped and torch.equal(out.sequences, torch.full((2, 1), START))
    out = ours.generate(**inputs, max_new_tokens=4, stop_event=threading.Event(), return_dict_in_generate=True)
    assert not out.stopped


def test_beam_streamer_follows_the_best_running_beam(models, inputs):
    _, ours, _ = models
    seen = []
    out = ours.generate(**inputs, num_beams=3, max_new_tokens=8, streamer=lambda s, ids: seen.append(ids))
    assert len(seen) >= 1 and all(t.shape == (2,) for t in seen)
    assert len(seen) <= out.shape[1] - 1 + 1


def test_object_streamer_is_ended_on_error(models, inputs):
    _, ours, _ = models
    ended = []

    class Failing:
        def put(self, value):
            if value.dim() == 1:
                raise RuntimeError("display went away")

        def end(self):
            ended.append(True)

    with pytest.raises(RuntimeError, match="display went away"):
        ours.generate(**inputs, max_new_tokens=4, streamer=Failing())
    assert ended == [True]


# ---- attentions, one encoder pass, shared cross-attention keys/values ---------------------------------

@pytest.mark.parametrize("settings", [dict(max_new_tokens=9), dict(num_beams=3, num_return_sequences=2, max_new_tokens=9),
                                      dict(do_sample=True, num_return_sequences=2, seed=0, max_new_tokens=9)],
                         ids=["greedy", "beams", "sampling"])
def test_attentions_equal_a_forward_pass_on_the_final_sequences(models, inputs, settings):
    _, ours, _ = models
    out = ours.generate(**inputs, return_dict_in_generate=True, output_attentions=True, **settings)
    seqs = out.sequences
    per = seqs.shape[0] // 2
    rep = {k: v.repeat_interleave(per, dim=0) for k, v in inputs.items()}
    direct = ours(**rep, decoder_input_ids=seqs, output_attentions=True)
    B, T, N, H = seqs.shape[0], seqs.shape[1], inputs["input_ids"].shape[1], 4
    assert len(out.final_pass_decoder_attentions) == len(out.final_pass_cross_attentions) == 2
    for layer in range(2):
        assert out.final_pass_decoder_attentions[layer].shape == (B, H, T, T)
        assert out.final_pass_cross_attentions[layer].shape == (B, H, T, N)
        assert_close(out.final_pass_decoder_attentions[layer], direct.decoder_attentions[layer],
                     f"decoder_attentions[{layer}]")
        assert_close(out.final_pass_cross_attentions[layer], direct.cross_attentions[layer],
                     f"cross_attentions[{layer}]")
    enc = ours.get_encoder()(**inputs, output_attentions=True)
    for layer in range(2):
        assert_close(out.encoder_attentions[layer], enc.attentions[layer], f"encoder_attentions[{layer}]")
        assert_close(out.encoder_global_attentions[layer], enc.global_attentions[layer], f"global[{layer}]")


def test_encoder_runs_once_and_cross_keys_are_computed_once_per_document(models, inputs):
    _, ours, _ = models
    calls = {"encoder": 0, "cross_k": []}
    hooks = [ours.get_encoder().register_forward_hook(lambda *a: calls.__setitem__("encoder", calls["encoder"] + 1))]
    for layer in ours.get_decoder().layers:
        hooks.append(layer.encoder_attn.k_proj.register_forward_hook(
            lambda mod, args, out: calls["cross_k"].append(tuple(args[0].shape))))
    try:
        ours.generate(**inputs, num_beams=4, num_return_sequences=2, max_new_tokens=10, output_attentions=True,
                      return_dict_in_generate=True)
    finally:
        for h in hooks:
            h.remove()
    assert calls["encoder"] == 1
    # once per layer, on the 2 documents (not on 2 x 4 beams), and not again for the attentions pass
    assert calls["cross_k"] == [(2, 23, 32)] * 2


def test_runner_matches_the_public_forward_with_beams(models, inputs):
    """The decoder runner (beams folded onto one copy of the encoder output) gives the logits of model(...)."""
    _, ours, _ = models
    enc = ours.get_encoder()(**inputs)
    runner = _DecoderRunner(ours, enc.last_hidden_state, inputs["attention_mask"])
    beams = 3
    seqs = torch.randint(3, VOCAB, (2 * beams, 5), generator=torch.Generator().manual_seed(3))
    seqs[:, 0] = START
    rep = {k: v.repeat_interleave(beams, dim=0) for k, v in inputs.items()}
    with torch.no_grad():
        direct = ours(**rep, decoder_input_ids=seqs).logits  # (6, 5, V)
        cache = None
        for t in range(seqs.shape[1]):
            logits, cache = runner.next_logits(seqs[:, t:t + 1], cache, beams)
            assert_close(logits, direct[:, t], f"logits of step {t}")
        # reordering the cache is the same as running the reordered rows
        order = torch.tensor([2, 2, 0, 5, 3, 3])
        logits, _ = runner.next_logits(seqs[order, -1:], reorder(cache, order), beams)
        full = ours(**rep, decoder_input_ids=torch.cat([seqs[order], seqs[order, -1:]], dim=1)).logits
        assert_close(logits, full[:, -1], "logits after reordering")


def test_given_encoder_output_and_inferred_attention_mask(models, inputs):
    """encoder_outputs skips the encoder; without attention_mask, padding is inferred from pad_token_id as transformers does."""
    ref, ours, _ = models
    enc = ours.get_encoder()(**inputs)
    a = ours.generate(encoder_outputs=enc, attention_mask=inputs["attention_mask"], num_beams=2, max_new_tokens=8)
    b = ours.generate(**inputs, num_beams=2, max_new_tokens=8)
    assert torch.equal(a, b)
    kw = dict(input_ids=inputs["input_ids"], global_attention_mask=inputs["global_attention_mask"], max_new_tokens=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ref.generate(**kw)
    assert_same_tokens(ours.generate(**kw), theirs, "inferred attention mask")


# ---- settings: defaults from the checkpoint, errors ----------------------------------------------------

def _copy_checkpoint(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_defaults_from_generation_config_json(models, inputs, tmp_path):
    import transformers

    _, _, path = models
    ck = _copy_checkpoint(path, tmp_path / "ck")
    gen = json.loads((ck / "generation_config.json").read_text())
    gen.update(num_beams=3, length_penalty=2.0, no_repeat_ngram_size=2, max_length=12, early_stopping=True)
    (ck / "generation_config.json").write_text(json.dumps(gen))
    ref = transformers.LEDForConditionalGeneration.from_pretrained(ck).eval()
    ours = ledviz.LEDForConditionalGeneration.from_pretrained(ck)
    assert ours.generation_config["num_beams"] == 3 and "transformers_version" not in ours.generation_config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for settings in (dict(), dict(num_beams=1), dict(max_new_tokens=5)):
            assert_same_tokens(ours.generate(**inputs, **settings), ref.generate(**inputs, **settings), str(settings))
    # written back by save_pretrained, and read again
    ours.save_pretrained(tmp_path / "saved")
    again = ledviz.LEDForConditionalGeneration.from_pretrained(tmp_path / "saved")
    assert again.generation_config == ours.generation_config


def test_defaults_from_config_json_without_generation_config(models, inputs, tmp_path):
    import transformers

    _, _, path = models
    ck = _copy_checkpoint(path, tmp_path / "ck")
    (ck / "generation_config.json").unlink()
    cfg = json.loads((ck / "config.json").read_text())
    cfg.update(num_beams=2, no_repeat_ngram_size=3, max_length=11, min_length=4)
    (ck / "config.json").write_text(json.dumps(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = transformers.LEDForConditionalGeneration.from_pretrained(ck).eval()
        theirs = ref.generate(**inputs)
    ours = ledviz.LEDForConditionalGeneration.from_pretrained(ck)
    assert ours.generation_config["num_beams"] == 2 and ours.generation_config["eos_token_id"] == EOS
    assert_same_tokens(ours.generate(**inputs), theirs, "config.json defaults")


def test_unsupported_checkpoint_options_warn(models, tmp_path):
    _, _, path = models
    ck = _copy_checkpoint(path, tmp_path / "ck")
    (ck / "generation_config.json").write_text(json.dumps({"decoder_start_token_id": 2, "typical_p": 0.5}))
    with pytest.warns(UserWarning, match="typical_p"):
        ledviz.LEDForConditionalGeneration.from_pretrained(ck)


@pytest.mark.parametrize("key, hint", [("max_new_token", "did you mean 'max_new_tokens'"),
                                       ("decline_marign", "did you mean 'decline_margin'"),
                                       ("_max_length", "did you mean 'max_length'")])
def test_an_unknown_key_in_generation_config_json_is_an_error_naming_it(models, tmp_path, key, hint):
    """A typo in generation_config.json did nothing (the key was dropped); it is an error naming the key,
    the file and the fix."""
    _, _, path = models
    ck = _copy_checkpoint(path, tmp_path / "ck")
    gen = json.loads((ck / "generation_config.json").read_text())
    (ck / "generation_config.json").write_text(json.dumps({**gen, key: 30}))
    with pytest.raises(GenerationSettingsError) as caught:
        ledviz.LEDForConditionalGeneration.from_pretrained(ck)
    said = str(caught.value)
    assert repr(key) in said and hint in said and str(ck / "generation_config.json") in said
    assert "fix the spelling or remove the key" in said


def test_every_key_transformers_generation_config_writes_loads(models, tmp_path):
    """generation_config.json as transformers' GenerationConfig writes it (save_pretrained's changed keys,
    every attribute, and from a model config with "_from_model_config") loads without error or warning."""
    import transformers

    ref, _, path = models
    full = transformers.GenerationConfig(max_new_tokens=7, num_beams=2)
    written = {
        "save_pretrained": full,
        "from_model_config": transformers.GenerationConfig.from_model_config(ref.config),
    }
    for name, cfg in written.items():
        ck = _copy_checkpoint(path, tmp_path / name)
        cfg.save_pretrained(ck)
        on_disk = json.loads((ck / "generation_config.json").read_text())
        assert "transformers_version" in on_disk
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model = ledviz.LEDForConditionalGeneration.from_pretrained(ck)
        assert "transformers_version" not in model.generation_config and "_from_model_config" not in \
            model.generation_config, name
    # every attribute, defaults included (to_dict), is known
    ck = _copy_checkpoint(path, tmp_path / "every")
    every = full.to_dict()
    (ck / "generation_config.json").write_text(json.dumps(every))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = ledviz.LEDForConditionalGeneration.from_pretrained(ck)
    assert model.generation_config["max_new_tokens"] == 7 and model.generation_config["num_beams"] == 2
    assert set(every) - set(model.generation_config) == {"transformers_version", "_from_model_config"}


def test_generate_and_the_config_setter_name_an_unknown_or_unimplemented_setting(models, inputs):
    """(A typo's did-you-mean: test_unknown_setting_lists_the_valid_ones.)"""
    _, ours, _ = models
    with pytest.raises(GenerationSettingsError, match="'typical_p' \\(a transformers setting ledviz does not "):
        ours.generate(**inputs, typical_p=0.5, max_new_tokens=3)
    with pytest.raises(GenerationSettingsError, match="'decline_margin' \\(an answer setting"):
        ours.generate(**inputs, decline_margin=1.0, max_new_tokens=3)
    with pytest.raises(GenerationSettingsError, match="'max_new_token' \\(did you mean 'max_new_tokens'\\?\\)"):
        ours.generation_config = {**ours.generation_config, "max_new_token": 3}
    assert "max_new_token" not in ours.generation_config
    # ledviz's own keys read and set as attributes too (None when unset), as the settings are
    config = ours.generation_config
    assert config.decline_margin is None
    config.decline_margin = 2.5
    assert config["decline_margin"] == 2.5
    del config["decline_margin"]


def test_a_model_built_from_a_config_takes_its_tokens():
    model = ledviz.LEDForConditionalGeneration(ledviz.LEDConfig(**tiny_kwargs(**TINY_GEN))).eval()
    assert model.generation_config == {"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
                                       "decoder_start_token_id": 2}
    out = model.generate(torch.tensor([[0, 5, 6, 2]]), max_new_tokens=3, eos_token_id=None)
    assert out.shape == (1, 4) and out[0, 0] == 2


class _PutEnd:
    def put(self, value):
        pass

    def end(self):
        pass


BAD_SETTINGS = [
    (dict(num_beam=3), "num_beam"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
    (dict(num_return_sequences=2), "num_return_sequences"),
    (dict(min_length=30, max_length=10), "min_length"),
    (dict(min_new_tokens=20, max_new_tokens=5), "min_new_tokens"),
    (dict(do_sample=True, temperature=0.0), "temperature"),
    (dict(temperature=-1.0), "temperature"),
    (dict(do_sample=True, top_p=0.0), "top_p"),
    (dict(do_sample=True, top_p=1.5), "top_p"),
    (dict(do_sample=True, top_k=-1), "top_k"),
    (dict(early_stopping="sometimes"), "early_stopping"),
    (dict(early_stopping=1), "early_stopping"),
    (dict(max_length=1), "max_length"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(max_new_tokens=64), "max_new_tokens"),
    (dict(eos_token_id=VOCAB), "eos_token_id"),
    (dict(forced_bos_token_id=-1), "forced_bos_token_id"),
    (dict(num_beams=0), "num_beams"),
    (dict(length_penalty="long"), "length_penalty"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(no_repeat_ngram_size=-2), "no_repeat_ngram_size"),
    (dict(streamer=object()), "streamer"),
    (dict(streamer=_PutEnd(), num_beams=2), "streamer"),
    (dict(stop_event="stop"), "stop_event"),
    (dict(seed="a"), "seed"),
    (dict(prefix_allowed_tokens_fn=[1, 2]), "prefix_allowed_tokens_fn"),
    (dict(decoder_start_token_id=None, bos_token_id=None), "decoder_start_token_id"),
]


def _sources(inputs) -> list[list[int]]:
    """Each input's tokens between <s> and its first </s>: what span_constraint lets it copy."""
    out = []
    for row in inputs["input_ids"].tolist():
        out.append(row[1: row.index(EOS) if EOS in row else len(row)])
    return out


def _is_span(part: list[int], whole: list[int]) -> bool:
    return any(whole[i: i + len(part)] == part for i in range(len(whole) - len(part) + 1))


@pytest.mark.parametrize("settings", [dict(max_new_tokens=10), dict(max_new_tokens=10, num_beams=3, num_return_sequences=2),
                                      dict(max_new_tokens=10, min_new_tokens=4)],
                         ids=["greedy", "beams", "min_new_tokens"])
def test_prefix_allowed_tokens_fn_matches_transformers_and_span_constraint_copies(models, inputs, settings):
    from ledviz.generation import span_constraint

    sources = _sources(inputs)
    calls = []

    def fn(batch_id, ids):
        calls.append(batch_id)
        return span_constraint(sources, EOS, lead=[0])(batch_id, ids)

    ours, ref = both(models, inputs, prefix_allowed_tokens_fn=fn, **settings)
    assert_same_tokens(ours.sequences, ref.sequences, f"constrained {settings}")
    for step, (a, b) in enumerate(zip(ours.scores, ref.scores)):
        finite = torch.isfinite(b)
        assert torch.equal(finite, torch.isfinite(a)), f"step {step}: -inf at other tokens"
    rows_per_input = ours.sequences.shape[0] // len(sources)
    assert set(calls) == {0, 1}  # every input's rows asked the function with their own batch id
    for r, row in enumerate(ours.sequences.tolist()):
        assert row[1] == 0, "the lead token comes first"
        answer = row[2: row.index(EOS, 2) if EOS in row[2:] else len(row)]
        assert answer and _is_span(answer, sources[r // rows_per_input]), f"row {r}: {answer} is no span"
    free, _ = both(models, inputs, **settings)
    assert not torch.equal(free.sequences, ours.sequences), "the constraint changed nothing: the test shows nothing"


def test_span_constraint_allows_exactly_the_continuations_of_a_span():
    from ledviz.generation import span_constraint

    allowed = span_constraint([[5, 6, 7, 5, 8], [9]], eos_token_id=[2, 4], lead=[0])
    ask = lambda *ids: allowed(0, torch.tensor([2, *ids]))  # noqa: E731 - 2 is the decoder start token
    assert ask() == [0]  # the lead token first
    assert sorted(ask(0)) == [5, 6, 7, 8]  # any token of the document starts an answer; no empty answer
    assert ask(0, 5) == [6, 8, 2, 4]  # "5" occurs twice: either continuation, or the end
    assert ask(0, 5, 6, 7, 5) == [8, 2, 4]
    assert ask(0, 5, 8) == [2, 4]  # the document's last tokens can only end
    assert ask(0, 3) == [2, 4] and ask(0, 5, 2) == [2, 4] and ask(0, 5, 2, 1) == [2, 4]  # no span / ended
    assert allowed(1, torch.tensor([2, 0, 9])) == [2, 4]
    with pytest.raises(GenerationSettingsError, match="one source per input"):
        allowed(2, torch.tensor([2]))


def test_span_constraint_also_allows_whole_alternative_answers():
    from ledviz.generation import span_constraint

    allowed = span_constraint([[5, 6, 7, 5, 8]], eos_token_id=2, lead=[0], alternatives=[[30, 31, 6], [5, 40]])
    ask = lambda *ids: allowed(0, torch.tensor([2, *ids]))  # noqa: E731
    assert ask(0) == [5, 6, 7, 8, 30]  # a span's first token, or the first token of an alternative
    assert ask(0, 30) == [31] and ask(0, 30, 31) == [6]  # inside an alternative: only its next token
    assert ask(0, 30, 31, 6) == [2]  # a whole alternative may end
    assert ask(0, 5) == [6, 8, 40, 2]  # "5" is a span (may end) and the start of an alternative
    assert ask(0, 5, 40) == [2] and ask(0, 30, 6) == [2]  # off both paths: only the end
    plain = span_constraint([[5, 6, 7, 5, 8]], eos_token_id=2, lead=[0])
    assert plain(0, torch.tensor([2, 0])) == [5, 6, 7, 8]  # no alternatives: as before


def test_span_constraint_keeps_blocked_tokens_from_beginning_a_span_only():
    from ledviz.generation import span_constraint

    # 30 is blocked as a span's first token: it may still continue a span, and begin an alternative
    allowed = span_constraint([[30, 6, 7, 5, 30, 8]], eos_token_id=2, lead=[0], not_first=[30],
                              alternatives=[[30, 31]])
    ask = lambda *ids: allowed(0, torch.tensor([2, *ids]))  # noqa: E731
    assert ask(0) == [5, 6, 7, 8, 30]  # 30 only as the alternative's first token
    assert ask(0, 30) == [31]  # no span continues from it: only the alternative
    assert ask(0, 5) == [30, 2] and ask(0, 5, 30) == [8, 2]  # inside a span it is an ordinary token
    spans = span_constraint([[30, 6, 7, 5, 30, 8]], eos_token_id=2, lead=[0], not_first=[30])
    assert spans(0, torch.tensor([2, 0])) == [5, 6, 7, 8]
    assert spans(0, torch.tensor([2, 0, 30])) == [2]  # forced there anyway: no span, only the end
    plain = span_constraint([[30, 6, 7, 5, 30, 8]], eos_token_id=2, lead=[0])
    assert plain(0, torch.tensor([2, 0])) == [5, 6, 7, 8, 30]  # nothing blocked: as before


def test_fact_list_constraint_keeps_values_to_spans_and_labels_to_one_use():
    from ledviz.generation import fact_list_constraint

    # labels "Lead:" = [10, 11] (first: [12, 11]) and "Site:" = [14, 11] (first: [15, 11]); "." = 13
    doc = [20, 21, 13, 22, 23, 24, 13, 25]
    allowed = fact_list_constraint([doc], labels=[[10, 11], [14, 11]], first_labels=[[12, 11], [15, 11]],
                                   stop_token_id=13, eos_token_id=2, lead=[0], max_value_tokens=2,
                                   value_starts=[20, 22, 25])
    ask = lambda *ids: allowed(0, torch.tensor([2, *ids]))  # noqa: E731
    assert ask() == [0] and ask(0) == [12, 15]  # a label in its first form; no empty summary
    assert ask(0, 12) == [11]
    assert ask(0, 12, 11) == [20, 22, 25]  # a value begins a word of the document
    assert ask(0, 12, 11, 20) == [21, 13]  # continue the span, or end the value
    assert ask(0, 12, 11, 22, 23) == [13]  # at most max_value_tokens tokens
    assert ask(0, 12, 11, 20, 21, 13) == [14, 2]  # the unused label (spaced form), or the end
    assert ask(0, 12, 11, 20, 21, 13, 14, 11, 25, 13) == [2]  # every label used: only the end
    assert ask(0, 12, 11, 20, 20) == [2]  # "20 20" is no span of the document (forced there): end
    assert ask(0, 12, 11, 20, 13, 10) == [2]  # "Lead" again: not allowed, so a forced row only ends
    assert ask(0, 12, 11, 20, 13, 2) == [2]
    with pytest.raises(GenerationSettingsError, match="one source per input"):
        allowed(1, torch.tensor([2]))
    with pytest.raises(GenerationSettingsError, match="first-position form"):
        fact_list_constraint([doc], [[10, 11]], [], 13, 2)


# " The budget is 7,500,000. John Smith met Jo in St. Louis." as hand-made tokens (id: bytes);
# "John" is " Jo" + "hn", so " Jo" is both a whole word and the start of a longer one
_WORDS_DOC = [(10, b" The"), (11, b" budget"), (12, b" is"), (13, b" 7"), (14, b","), (15, b"500"), (14, b","),
              (16, b"000"), (17, b"."), (21, b" Jo"), (25, b"hn"), (19, b" Smith"), (20, b" met"), (21, b" Jo"),
              (22, b" in"), (23, b" St"), (17, b"."), (24, b" Louis"), (17, b".")]


def test_word_bounds_mark_where_whole_words_start_and_end():
    from ledviz.generation import word_bounds

    starts, ends = word_bounds([b for _, b in _WORDS_DOC])
    words = [b.decode() for _, b in _WORDS_DOC]
    assert [w for w, s in zip(words, starts) if s] == [" The", " budget", " is", " 7", " Jo", " Smith", " met",
                                                       " Jo", " in", " St", " Louis"]
    # a number with thousands separators ends only after its last group (or its full stop), never
    # after "7" or "500"; "St" may end before ". Louis" (a full stop not glued to a letter), and so may "St."
    assert [w for w, e in zip(words, ends) if e] == [" The", " budget", " is", "000", ".", "hn", " Smith", " met",
                                                     " Jo", " in", " St", ".", " Louis", "."]
    starts, ends = word_bounds([b" (", b"Jo", b"hn", b")", b" O", b"'", b"Brien", b"-", b"Lee", b" ", b"\xc3",
                                b"\xa9", b"mi", b".", b" "])
    assert starts == [True, True, False, False, True, False, False, False, False, True, True, False, False, False,
                      False]  # the trailing space starts nothing (no word end would follow it)
    assert ends == [False, False, True, True, False, False, False, False, True, False, False, False, True, True,
                    False]


def test_span_constraint_keeps_answers_to_whole_words_at_any_occurrence():
    from ledviz.generation import span_constraint, word_bounds

    doc = [t for t, _ in _WORDS_DOC]
    words = [word_bounds([b for _, b in _WORDS_DOC])]
    allowed = span_constraint([doc], eos_token_id=2, lead=[0], alternatives=[[30, 31]], words=words)
    ask = lambda *ids: allowed(0, torch.tensor([2, *ids]))  # noqa: E731 - 2 is the decoder start token
    assert ask(0) == [10, 11, 12, 13, 19, 20, 21, 22, 23, 24, 30]  # word starts only (no "500", ",", "hn")
    assert ask(0, 13, 14, 15) == [14]  # " 7,500" may not end: the number goes on
    assert ask(0, 13, 14, 15, 14, 16) == [17, 2]  # " 7,500,000" may end (or take its full stop)
    assert ask(0, 15) == [2]  # "500" starts no word: forced there, a row only ends
    assert ask(0, 21) == [22, 25, 2]  # " Jo" ends a word at its second occurrence
    assert ask(0, 21, 25) == [19, 2] and ask(0, 21, 25, 19) == [20, 2]  # "John", "John Smith"
    assert ask(0, 23) == [17, 2] and ask(0, 23, 17) == [24, 2]  # "St", "St." and "St. Louis"
    assert ask(0, 30) == [31] and ask(0, 30, 31) == [2]  # the alternative answer as before
    # one occurrence only, inside a longer word: " Jo" of " John" may not end
    only_john = [t for t, _ in _WORDS_DOC[:13]]
    fn = span_constraint([only_john], eos_token_id=2, lead=[0], words=[word_bounds([b for _, b in _WORDS_DOC[:13]])])
    assert fn(0, torch.tensor([2, 0, 21])) == [25]
    assert span_constraint([doc], eos_token_id=2, lead=[0])(0, torch.tensor([2, 0, 13, 14, 15])) == [14, 2]  # no words
    with pytest.raises(GenerationSettingsError, match="one of each per token"):
        span_constraint([doc], 2, words=[(words[0][0][:3], words[0][1])])
    with pytest.raises(GenerationSettingsError, match="one \\(starts, ends\\) per source"):
        span_constraint([doc, doc], 2, words=words)


def test_fact_list_constraint_ends_values_where_words_end():
    from ledviz.generation import fact_list_constraint, word_bounds

    doc = [t for t, _ in _WORDS_DOC]
    allowed = fact_list_constraint([doc], labels=[[40, 41]], first_labels=[[42, 41]], stop_token_id=17,
                                   eos_token_id=2, lead=[0], words=[word_bounds([b for _, b in _WORDS_DOC])])
    ask = lambda *ids: allowed(0, torch.tensor([2, *ids]))  # noqa: E731
    assert ask(0, 42, 41) == [10, 11, 12, 13, 19, 20, 21, 22, 23, 24]  # values start where words start
    assert ask(0, 42, 41, 13, 14, 15) == [14]  # no stop inside "7,500,000"
    assert ask(0, 42, 41, 13, 14, 15, 14, 16) == [17]  # the stop after its last group
    assert ask(0, 42, 41, 21, 25, 19) == [20, 17]  # "John Smith." (or on)
    # two forms of a source, an end token between them (pipeline.DocumentWords.answer_source): a value at the
    # end of the first form stops there; it neither ends the summary nor runs on into the second form
    first = word_bounds([b for _, b in _WORDS_DOC[:-1]])  # "... St. Louis", without its full stop
    second = word_bounds([b for _, b in _WORDS_DOC])
    twice = fact_list_constraint([doc[:-1] + [2] + doc], labels=[[40, 41]], first_labels=[[42, 41]],
                                 stop_token_id=17, eos_token_id=2, lead=[0],
                                 words=[([*first[0], False, *second[0]], [*first[1], False, *second[1]])])
    assert twice(0, torch.tensor([2, 0, 42, 41, 24])) == [17]  # " Louis" then ".", not the end token


# " The chief is Salma Bui. Visit San Kampala." as hand-made tokens: " Sa" begins both "Salma" and "San"
_SHARED_DOC = [(10, b" The"), (11, b" chief"), (12, b" is"), (30, b" Sa"), (31, b"lma"), (32, b" Bui"), (17, b"."),
               (13, b" Visit"), (30, b" Sa"), (33, b"n"), (34, b" Kampala"), (17, b".")]


class _RecordedFocus:
    """A generation.Focus that marks the given document positions, recording the prefixes it is asked about."""

    def __init__(self, n: int, positions):
        self.mask = torch.zeros(n, dtype=torch.bool)
        self.mask[list(positions)] = True
        self.asked = []

    def __call__(self, batch_id, prefix):
        self.asked.append((batch_id, prefix.tolist()))
        return self.mask


def test_span_constraint_focus_continues_a_shared_first_token_into_the_word_looked_at():
    from ledviz.generation import span_constraint, word_bounds

    doc = [t for t, _ in _SHARED_DOC]
    words = [word_bounds([b for _, b in _SHARED_DOC])]
    plain = span_constraint([doc], eos_token_id=2, lead=[0], words=words)
    assert plain(0, torch.tensor([2, 0, 30])) == [31, 33]  # " Sa": "Salma" or "San"
    first = _RecordedFocus(len(doc), range(0, 7))  # the model looks at "The chief is Salma Bui."
    allowed = span_constraint([doc], eos_token_id=2, lead=[0], words=words, focus=first)
    ask = lambda *ids: allowed(0, torch.tensor([2, *ids]))  # noqa: E731
    assert ask(0) == plain(0, torch.tensor([2, 0]))  # the first token is the model's own choice, as before
    assert ask(0, 30) == [31] and ask(0, 30, 31) == [32, 2] and ask(0, 30, 31, 32) == [17, 2]  # "Salma Bui"
    assert ask(0, 34) == [17, 2]  # " Kampala" is not in the focus: its occurrences elsewhere count, as before
    assert {tuple(p) for _, p in first.asked} == {(2, 0)}  # asked with the row's tokens before the answer
    second = span_constraint([doc], eos_token_id=2, lead=[0], words=words,
                             focus=_RecordedFocus(len(doc), range(7, 12)))  # "Visit San Kampala."
    assert second(0, torch.tensor([2, 0, 30])) == [33]
    unsure = span_constraint([doc], eos_token_id=2, lead=[0], words=words, focus=lambda b, p: None)
    assert unsure(0, torch.tensor([2, 0, 30])) == [31, 33]  # no focus: every occurrence


def test_a_focus_without_word_bounds_is_an_error_not_ignored():
    from ledviz.generation import GenerationSettingsError, fact_list_constraint, span_constraint

    doc = [t for t, _ in _SHARED_DOC]
    focus = _RecordedFocus(len(doc), range(0, 7))
    with pytest.raises(GenerationSettingsError, match="span_constraint was given a focus but no word bounds"):
        span_constraint([doc], eos_token_id=2, lead=[0], focus=focus)
    with pytest.raises(GenerationSettingsError, match="fact_list_constraint was given a focus but no word bounds"):
        fact_list_constraint([doc], labels=[[40, 41]], first_labels=[[42, 41]], stop_token_id=17, eos_token_id=2,
                             lead=[0], focus=focus)


def test_fact_list_constraint_focus_begins_each_value_where_the_model_looks():
    from ledviz.generation import fact_list_constraint, word_bounds

    doc = [t for t, _ in _SHARED_DOC]
    words = [word_bounds([b for _, b in _SHARED_DOC])]
    focus = _RecordedFocus(len(doc), [8])  # the " Sa" of " San"
    allowed = fact_list_constraint([doc], labels=[[40, 41], [43, 41]], first_labels=[[42, 41], [44, 41]],
                                   stop_token_id=17, eos_token_id=2, lead=[0], words=words, focus=focus)
    ask = lambda *ids: allowed(0, torch.tensor([2, *ids]))  # noqa: E731
    assert ask(0, 42, 41) == [30]  # the value begins where the focus is
    assert ask(0, 42, 41, 30) == [33] and ask(0, 42, 41, 30, 33) == [34, 17]  # and goes on from there: "San ..."
    assert focus.asked[-1] == (0, [2, 0, 42, 41])  # asked with the row's tokens before the value
    assert ask(0, 42, 41, 30, 33, 34, 17, 43, 41) == [30]  # the next value: asked again, at its own start
    assert focus.asked[-1] == (0, [2, 0, 42, 41, 30, 33, 34, 17, 43, 41])
    nowhere = fact_list_constraint([doc], labels=[[40, 41]], first_labels=[[42, 41]], stop_token_id=17,
                                   eos_token_id=2, lead=[0], words=words, focus=_RecordedFocus(len(doc), [4, 9]))
    assert nowhere(0, torch.tensor([2, 0, 42, 41])) == [10, 11, 12, 13, 30, 32, 34]  # no word starts there: as before


# " The lead is Rohan Bennett. Maren K. Okafor met Rohan in St. Louis." as hand-made tokens: the
# first " Rohan" runs on into " Bennett", the second ends before " in"
_NAMES_DOC = [(10, b" The"), (11, b" lead"), (12, b" is"), (13, b" Rohan"), (14, b" Ben"), (15, b"nett"), (17, b"."),
              (18, b" Maren"), (19, b" K"), (17, b"."), (20, b" Okafor"), (21, b" met"), (13, b" Rohan"), (22, b" in"),
              (23, b" St"), (17, b"."), (24, b" Louis"), (17, b".")]


def test_name_runs_keep_a_name_whole_where_the_document_goes_on_with_it():
    from ledviz.generation import span_constraint, word_bounds

    pieces = [b for _, b in _NAMES_DOC]
    words = [b.decode() for b in pieces]
    _, plain = word_bounds(pieces)
    _, names = word_bounds(pieces, name_runs=True)
    # without the rule any whole word may end a span; with it not " Rohan" before " Bennett", nor " Maren" or
    # the initial " K." before " Okafor"; " Rohan" before " in", "Bennett" before its full stop and " St"
    # before ". Louis" still may (a full stop that is not an initial ends the run)
    assert [w for w, e in zip(words, plain) if e] == [" The", " lead", " is", " Rohan", "nett", ".", " Maren", " K",
                                                     ".", " Okafor", " met", " Rohan", " in", " St", ".", " Louis",
                                                     "."]
    assert [w for w, e in zip(words, names) if e] == [" The", " lead", " is", "nett", ".", " Okafor", " met",
                                                     " Rohan", " in", " St", ".", " Louis", "."]
    # a colon or a line break ends a run, and so does a bracket ("Ana Li (CEO)"); non-ASCII capitals count
    assert word_bounds([b"Lead", b":", b" Ana", b"\n", b"Li", b" (", b"CEO", b")", b" \xc3\x85s", b" \xc3\x98ye"],
                       name_runs=True)[1] == [True, True, True, False, True, False, True, True, False, True]
    # a space that stands for a line break (pipeline.copy_source joins lines) ends a run: "Bennett" at the end of
    # its line may end before "Site:" on the next
    listed = [b"Lead:", b" Rohan", b" Bennett", b" Site:", b" Velmora"]
    assert word_bounds(listed, name_runs=True)[1][2] is False
    assert word_bounds(listed, name_runs=True, line_breaks=[len(b"Lead: Rohan Bennett")])[1][2] is True
    first = [t for t, _ in _NAMES_DOC[:12]]  # " Rohan" only as " Rohan Bennett"
    allowed = span_constraint([first], eos_token_id=2, lead=[0], alternatives=[[30, 31]],
                              words=[word_bounds(pieces[:12], name_runs=True)])
    ask = lambda *ids: allowed(0, torch.tensor([2, *ids]))  # noqa: E731 - 2 is the decoder start token
    assert ask(0, 13) == [14]  # " Rohan" may not end: the name goes on
    assert ask(0, 13, 14, 15) == [17, 2]  # " Rohan Bennett" may
    assert ask(0, 18, 19) == [17] and ask(0, 18, 19, 17) == [20] and ask(0, 18, 19, 17, 20) == [21, 2]
    assert 30 in ask(0) and ask(0, 30) == [31] and ask(0, 30, 31) == [2]  # "not in the document" as before
    everywhere = span_constraint([[t for t, _ in _NAMES_DOC]], eos_token_id=2, lead=[0],
                                 words=[word_bounds(pieces, name_runs=True)])
    assert everywhere(0, torch.tensor([2, 0, 13])) == [14, 22, 2]  # the second " Rohan" ends before " in"


# " In June Rohan Bennett met Noémi Zhou. Zhou and Bui Ltd signed in Pécs. In the end" as hand-made tokens:
# "Noémi" is " No" + "é" + "mi" (non-ASCII bytes inside a word), the sentence's "In" is a word the
# document also has in lower case ("in")
_RUNS_DOC = [(10, b" In"), (11, b" June"), (12, b" Rohan"), (13, b" Ben"), (14, b"nett"), (15, b" met"), (16, b" No"),
             (17, "é".encode()), (18, b"mi"), (19, b" Zhou"), (20, b"."), (19, b" Zhou"), (21, b" and"), (22, b" Bui"),
             (23, b" Ltd"), (24, b" signed"), (25, b" in"), (26, b" P"), (27, "é".encode()), (28, b"cs"), (20, b"."),
             (10, b" In"), (29, b" the"), (30, b" end")]


def test_name_run_starts_go_back_to_a_run_s_first_name_word():
    from ledviz.generation import name_run_starts, word_bounds

    pieces = [b for _, b in _RUNS_DOC]
    first = name_run_starts(pieces)
    starts, _ = word_bounds(pieces)
    words = [b.decode("utf-8", "replace") for b in pieces]
    runs = {words[p]: words[first[p]] for p in range(len(pieces)) if starts[p] and first[p] != p}
    # "Rohan" and "Bennett" go back to "June", never to the sentence's "In" ("in" is a word of the document);
    # "Zhou" after "Noémi" to " No" (the accented letter is inside the word, not a boundary); "Ltd" to "Bui"
    assert runs == {" Rohan": " June", " Ben": " June", " Zhou": " No", " Ltd": " Bui"}
    assert first[11] == 11  # the second " Zhou" follows a full stop: it begins its run
    # a line break, a comma or a lower-case word ends a run; an initial ("K.") does not
    assert name_run_starts([b"Lead:", b" Ana", b"\n", b"Li", b",", b" Bo", b" Wu", b" K", b".", b" Okafor"]) == [
        0, 1, 2, 3, 4, 5, 5, 5, 8, 5]
    assert name_run_starts([b"Ana", b" Li", b" Site", b" Ve"], line_breaks=[len(b"Ana Li")]) == [0, 0, 2, 2]
    # words unlikely to begin a name: a sentence's first word that the tokenizer knows in lower case (the document
    # has no "in" here), a word in capitals, a word the document also has on its own ("June" of "4 June")
    short = [b"In", b" June", b" Rohan", b" Bennett", b" won", b"."]
    assert name_run_starts(short) == [0, 0, 0, 0, 4, 5]  # with no common words known: the whole run
    assert name_run_starts(short, common_words={"in", "won"}) == [0, 1, 1, 1, 4, 5]
    assert name_run_starts(short + [b" By", b" 4", b" June", b" it", b" ended", b"."]) == [
        0, 0, 2, 2, 4, 5, 6, 7, 8, 9, 10, 11]
    assert name_run_starts([b" Velmora", b" CEO", b" Anna", b" Li"]) == [0, 0, 2, 2]
    assert name_run_starts([b" Rohan", b" Bennett", b" ran", b".", b" Rohan", b" Bennett"]) == [0, 0, 2, 3, 4, 4]


def test_run_prefix_begins_a_span_where_its_name_begins():
    from ledviz.generation import name_run_starts, run_prefix, word_bounds

    doc, pieces = [t for t, _ in _RUNS_DOC], [b for _, b in _RUNS_DOC]
    words, first = word_bounds(pieces, name_runs=True), name_run_starts(pieces)
    prefix = lambda *span: run_prefix(doc, span, words, first)  # noqa: E731
    assert prefix(13, 14) == [11, 12]  # "Bennett" -> "June Rohan Bennett" (not "In June ...")
    assert prefix(12, 13, 14) == [11]  # a span begun mid-run, on a known first name, goes back as well
    assert prefix(11, 12, 13, 14) == []  # a span that begins its run: nothing to put before it
    assert prefix(23) == [22]  # "Ltd" -> "Bui Ltd"
    assert prefix(10) == [] and prefix(15) == []  # "In", "met": no run before them
    # " Zhou" is whole words twice: once after "Noémi", once on its own after a full stop: no single name to begin
    assert prefix(19) == []
    only = _RUNS_DOC[:11]  # "... met Noémi Zhou." only: " Zhou" -> "Noémi Zhou", the accented name kept whole
    assert run_prefix([t for t, _ in only], [19], word_bounds([b for _, b in only], name_runs=True),
                      name_run_starts([b for _, b in only])) == [16, 17, 18]
    assert prefix() is None and prefix(99) is None  # an empty span, or one not whole words of the document


def test_long_digit_groups_and_decimals_stay_whole_words():
    from ledviz.generation import span_constraint, word_bounds

    # " 7,500,000 and 1.2 million or 120,000,000." as hand-made tokens
    toks = [(10, b" 7"), (11, b","), (12, b"500"), (11, b","), (13, b"000"), (14, b" and"), (15, b" 1"), (16, b"."),
            (17, b"2"), (18, b" million"), (19, b" or"), (20, b" 120"), (11, b","), (13, b"000"), (11, b","), (13, b"000"),
            (16, b".")]
    doc, pieces = [t for t, _ in toks], [b for _, b in toks]
    allowed = span_constraint([doc], eos_token_id=2, lead=[0], words=[word_bounds(pieces, name_runs=True)])
    ask = lambda *ids: allowed(0, torch.tensor([2, 0, *ids]))  # noqa: E731
    assert ask(10, 11, 12) == [11] and ask(10, 11, 12, 11, 13) == [14, 2]  # "7,500" never ends; "7,500,000" may
    assert ask(15) == [16] and ask(15, 16, 17) == [18, 2]  # "1" never ends before ".2"; "1.2" and "1.2 million" may
    assert ask(20, 11, 13) == [11] and ask(20, 11, 13, 11, 13) == [16, 2]


def test_a_prefix_function_that_allows_nothing_is_named(models, inputs):
    _, ours, _ = models
    with pytest.raises(GenerationSettingsError, match="prefix_allowed_tokens_fn allowed no token for input 0"):
        ours.generate(**inputs, max_new_tokens=3, prefix_allowed_tokens_fn=lambda b, ids: [])


@pytest.mark.parametrize("settings,name", BAD_SETTINGS, ids=[n + str(i) for i, (_, n) in enumerate(BAD_SETTINGS)])
def test_bad_settings_name_the_setting(models, inputs, settings, name):
    _, ours, _ = models
    with pytest.raises(GenerationSettingsError, match=name) as err:
        ours.generate(**inputs, **settings)
    assert isinstance(err.value, ValueError)


def test_unknown_setting_lists_the_valid_ones(models, inputs):
    _, ours, _ = models
    with pytest.raises(GenerationSettingsError) as err:
        ours.generate(**inputs, num_beam=3, max_tokens=5)
    msg = str(err.value)
    assert "'max_tokens'" in msg and "'num_beam'" in msg and "did you mean 'num_beams'" in msg
    assert all(name in msg for name in VALID_SETTINGS)


def test_input_problems_are_input_errors(models, inputs):
    _, ours, _ = models
    enc = ours.get_encoder()(**inputs)
    with pytest.raises(ledviz.InputError, match="attention_mask"):
        ours.generate(encoder_outputs=enc, attention_mask=inputs["attention_mask"][:, :5])
    with pytest.raises(ledviz.InputError, match="input_ids"):  # (without a bos_token_id to start an empty input)
        ours.generate(max_new_tokens=3, bos_token_id=None)
