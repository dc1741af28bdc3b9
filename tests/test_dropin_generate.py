"""Drop-in for transformers users, part 4: generate as they call it (no input, bad_words_ids,
remove_invalid_values, per-step scores/logits/attentions/hidden states, sampling from the global
seed), against transformers 4.57 on the tiny checkpoint of test_generation."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from conftest import assert_close
from generation_fixtures import assert_same_tokens, inputs, models, one_thread  # noqa: F401 (fixtures)

CASES = {
    "greedy": dict(max_new_tokens=8),
    "sampling": dict(do_sample=True, top_k=10, num_return_sequences=2, max_new_tokens=8),
    "beams": dict(num_beams=3, num_return_sequences=2, max_new_tokens=8),
    "beam_sample": dict(do_sample=True, num_beams=3, max_new_tokens=6),
}


def _generate(model, inputs, seed=None, **kw):
    if seed is not None:
        torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.generate(**inputs, **kw)


def _same_tensors(ours, theirs, what):
    assert (ours is None) == (theirs is None), f"{what}: {type(ours)} vs {type(theirs)}"
    if theirs is None:
        return
    if isinstance(theirs, (tuple, list)):
        assert len(ours) == len(theirs), f"{what}: {len(ours)} entries vs {len(theirs)}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            _same_tensors(a, b, f"{what}[{i}]")
        return
    assert ours.shape == theirs.shape, f"{what}: shape {tuple(ours.shape)} vs {tuple(theirs.shape)}"
    if ours.is_floating_point():  # -inf (banned tokens) in the same places, the rest close
        assert torch.equal(torch.isinf(ours), torch.isinf(theirs)), f"{what}: -inf in other places"
        finite = torch.isfinite(theirs)
        ours, theirs = ours[finite], theirs[finite]
    assert_close(ours, theirs, what, tol=1e-4)


@pytest.mark.parametrize("case", CASES)
def test_per_step_outputs_in_transformers_layout(models, inputs, case):
    ref, ours, _ = models
    kw = dict(return_dict_in_generate=True, output_scores=True, output_logits=True, output_attentions=True,
              output_hidden_states=True, **CASES[case])
    theirs = _generate(ref, inputs, seed=5, **kw)
    mine = _generate(ours, inputs, seed=5, **kw)
    assert_same_tokens(mine.sequences, theirs.sequences, case)
    for field in ("scores", "logits", "decoder_attentions", "cross_attentions", "decoder_hidden_states",
                  "encoder_attentions", "encoder_hidden_states", "sequences_scores", "beam_indices"):
        _same_tensors(getattr(mine, field), getattr(theirs, field, None), f"{case}: {field}")
    # the first step reads the decoder start token only: (R, H, 1, 1); a later one (R, H, 1, t + 1)
    assert mine.decoder_attentions[0][0].shape[-2:] == (1, 1)
    assert mine.decoder_attentions[3][0].shape[-2:] == (1, 4)
    # our own form: one pass over the finished sequences
    T = mine.sequences.shape[1]
    assert mine.final_pass_decoder_attentions[0].shape[-2:] == (T, T)


def test_without_input_ids_starts_from_the_decoder_start(models):
    ref, ours, _ = models
    for kw in (dict(max_new_tokens=6), dict(max_new_tokens=6, num_beams=2)):
        assert_same_tokens(_generate(ours, {}, **kw), _generate(ref, {}, **kw), str(kw))
    out = _generate(ours, {}, max_new_tokens=4, return_dict_in_generate=True, output_scores=True)
    assert out.sequences.shape[0] == 1 and out.sequences[0, 0] == ours.config.decoder_start_token_id


@pytest.mark.parametrize("case", ["greedy", "beams", "sampling"])
def test_bad_words_ids(models, inputs, case):
    ref, ours, _ = models
    plain = _generate(ours, inputs, seed=3, **CASES[case])
    row = plain[0, 1:].tolist()
    bad = [[row[0]], [row[2], row[3]], [row[1], row[2], row[4]], [2]]  # a lone EOS is not banned, as transformers
    kw = dict(bad_words_ids=bad, **CASES[case])
    mine, theirs = _generate(ours, inputs, seed=3, **kw), _generate(ref, inputs, seed=3, **kw)
    assert_same_tokens(mine, theirs, case)
    assert not torch.equal(mine, plain) and row[0] not in mine[:, 1:].tolist()[0]


@pytest.mark.parametrize("bad", [[], [[]], [5], [[5, "x"]], [[1000]], "5"])
def test_bad_words_ids_that_are_not_token_lists_are_named(models, inputs, bad):
    from ledviz import GenerationSettingsError

    _, ours, _ = models
    with pytest.raises(GenerationSettingsError, match="bad_words_ids"):
        ours.generate(**inputs, bad_words_ids=bad, max_new_tokens=3)


def test_remove_invalid_values(models, inputs):
    ref, ours, _ = models
    ref, ours = copy.deepcopy(ref), copy.deepcopy(ours)
    for model in (ref, ours):  # an infinite and an undefined logit, as a broken head would give
        with torch.no_grad():
            model.final_logits_bias[0, 7] = float("inf")
            model.final_logits_bias[0, 9] = float("-inf")
    for case in ("greedy", "beams"):
        kw = dict(remove_invalid_values=True, return_dict_in_generate=True, output_scores=True, **CASES[case])
        mine, theirs = _generate(ours, inputs, **kw), _generate(ref, inputs, **kw)
        assert_same_tokens(mine.sequences, theirs.sequences, case)
        for a, b in zip(mine.scores, theirs.scores):
            assert torch.equal(torch.isfinite(a), torch.isfinite(b)) and torch.isfinite(a).any()
            assert torch.allclose(a[torch.isfinite(a)], b[torch.isfinite(b)], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", ["sampling", "beam_sample"])
def test_sampling_from_the_global_seed_matches_transformers(models, inputs, case):
    """transformers' encoder draws one number per layer from the global generator (LayerDrop's, in eval
    mode too); ours draws the same, so the same global seed gives the same tokens."""
    ref, ours, _ = models
    mine, theirs = _generate(ours, inputs, seed=11, **CASES[case]), _generate(ref, inputs, seed=11, **CASES[case])
    assert_same_tokens(mine, theirs, case)
    torch.manual_seed(11)
    ours.get_encoder()(**inputs)
    after_ours = torch.rand(3)
    torch.manual_seed(11)
    ref.get_encoder()(**inputs)
    assert torch.equal(after_ours, torch.rand(3)), "the encoder leaves the global generator where transformers' does"
