"""transformers' LED model checks (LEDModelTest: ModelTesterMixin and LED's own), ported to ledviz.

Each test names the upstream check it ports. Upstream runs a check on four classes built from a tiny config
with random weights; so do these, and where a check can compare with numbers, they compare with
transformers 4.57.6 on the same weights (`twin`). Checks of transformers machinery outside LED's API
(torch.fx, torchscript, accelerate, DeepSpeed, PEFT, SDPA/flash attention, pipelines) are listed as skips at
the end of this module, with the reason; the README's "Deliberate differences" lists them too.
"""

from __future__ import annotations

import copy
import inspect
import os
import warnings
from collections import defaultdict

import pytest
import torch
from torch import nn

import ledviz
from upstream_model_checks import (  # noqa: F401  (one_thread is an autouse fixture)
    GENERATIVE_CLASSES, MODEL_CLASSES, TINY, assert_close, fresh, one_thread, ours, tensors_of, theirs, twin,
)

WITH_HEAD = [c for c in MODEL_CLASSES if c != "LEDModel"]


def _eval(model):
    return model.eval()


# ---- sizes ------------------------------------------------------------------------------------------

def test_num_layers_and_model_are_small():
    """test_num_layers_is_small, test_model_is_small: the tiny model has 2 layers and < 1M parameters."""
    assert TINY.num_hidden_layers <= 2
    for name in MODEL_CLASSES:
        n = fresh(name).num_parameters()
        assert n < 1_000_000, f"{name}: {n} parameters"


# ---- saving and loading --------------------------------------------------------------------------------

@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_save_load(tmp_path, cls_name):
    """test_save_load: the first output survives save_pretrained/from_pretrained twice; config.json is written,
    generation_config.json exactly when the class can generate."""
    inputs = TINY.common_inputs()
    model = _eval(fresh(cls_name))
    with torch.no_grad():
        first = model(**TINY.for_class(inputs, cls_name))[0]
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").exists()
    assert model.can_generate() == (tmp_path / "generation_config.json").exists()
    again = _eval(ours(cls_name).from_pretrained(tmp_path))
    with torch.no_grad():
        second = again(**TINY.for_class(inputs, cls_name))[0]
    again.save_pretrained(tmp_path)
    ours(cls_name).from_pretrained(tmp_path)
    assert_close(first, second, f"{cls_name} after a round trip")


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_save_load_strict(tmp_path, cls_name):
    """LED's test_save_load_strict: nothing is missing when a model reloads its own files."""
    fresh(cls_name).save_pretrained(tmp_path)
    _, info = ours(cls_name).from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == []


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_from_pretrained_without_checkpoint(cls_name):
    """test_from_pretrained_no_checkpoint: from_pretrained(None, config=, state_dict=) builds the model from a
    state dict in memory."""
    model = fresh(cls_name)
    again = ours(cls_name).from_pretrained(None, config=copy.deepcopy(model.config), state_dict=model.state_dict())
    for (k1, p1), (k2, p2) in zip(model.named_parameters(), again.named_parameters()):
        assert k1 == k2 and torch.equal(p1, p2), k1
    with pytest.raises(TypeError, match="config= and state_dict="):
        ours(cls_name).from_pretrained(None, state_dict=model.state_dict())


def test_state_dict_replaces_the_checkpoint_weights(tmp_path):
    """from_pretrained(folder, state_dict=...) reads the folder's config and takes the given weights, as in
    transformers."""
    fresh("LEDForConditionalGeneration", seed=1).save_pretrained(tmp_path)
    other = fresh("LEDForConditionalGeneration", seed=2)
    model = ours("LEDForConditionalGeneration").from_pretrained(tmp_path, state_dict=other.state_dict())
    for (k, p1), (_, p2) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(p1, p2), k


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_saved_keys_are_transformers_keys(tmp_path, cls_name):
    """test_save_load_keys_to_ignore_on_save: LED ignores no key on save (transformers' class has no
    `_keys_to_ignore_on_save`), so our file holds the keys transformers' file holds, and loads back strictly."""
    from safetensors.torch import load_file

    ref, mine = twin(cls_name, tmp_path / "ref")
    assert getattr(ref, "_keys_to_ignore_on_save", None) is None
    mine.save_pretrained(tmp_path / "ours")
    saved = load_file(os.fspath(tmp_path / "ours" / "model.safetensors"))
    theirs_saved = load_file(os.fspath(tmp_path / "ref" / "model.safetensors"))
    assert sorted(saved) == sorted(theirs_saved)
    result = mine.load_state_dict(saved, strict=False)
    assert not result.unexpected_keys
    assert set(result.missing_keys) <= {"lm_head.weight", "led.encoder.embed_tokens.weight",
                                        "led.decoder.embed_tokens.weight", "encoder.embed_tokens.weight",
                                        "decoder.embed_tokens.weight"}


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_torch_save_load_of_the_state_dict(tmp_path, cls_name):
    """test_torch_save_load: the state dict survives torch.save in both zip formats."""
    state = fresh(cls_name).state_dict()
    path = tmp_path / "pytorch_model.bin"
    for zipfile in (True, False):
        torch.save(state, path, _use_new_zipfile_serialization=zipfile)
        loaded = torch.load(path, weights_only=True)
        for key, value in state.items():
            assert torch.equal(value, loaded[key]), key


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_can_use_safetensors(tmp_path, cls_name):
    """test_can_use_safetensors: a safetensors round trip keeps every tensor, misses nothing and keeps the
    shared tensors shared."""
    model = fresh(cls_name)
    model.save_pretrained(tmp_path, safe_serialization=True)
    again, info = ours(cls_name).from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == []
    reloaded = again.state_dict()
    for k, v in model.state_dict().items():
        assert k in reloaded, k
        assert torch.equal(v, reloaded[k]), k
    groups = defaultdict(list)
    for k, v in model.state_dict().items():
        groups[v.data_ptr()].append(k)
    for names in (g for g in groups.values() if len(g) > 1):
        assert len({reloaded[k].data_ptr() for k in names}) == 1, f"{names} no longer share one tensor"


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_load_save_without_tied_weights(tmp_path, cls_name):
    """test_load_save_without_tied_weights: with tie_word_embeddings=False every tensor round-trips."""
    model = fresh(cls_name, tie_word_embeddings=False)
    model.save_pretrained(tmp_path)
    again, info = ours(cls_name).from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == []
    reloaded = again.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, reloaded[k]), k
    if cls_name == "LEDForConditionalGeneration":
        assert again.lm_head.weight.data_ptr() != again.led.shared.weight.data_ptr()


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_tied_weight_groups_are_transformers_groups(tmp_path, cls_name):
    """test_tied_weights_keys: the tensors shared inside the model are the ones transformers shares."""
    ref, mine = twin(cls_name, tmp_path)

    def shared_groups(model):
        groups = defaultdict(list)
        for k, v in model.state_dict().items():
            groups[v.untyped_storage().data_ptr()].append(k)
        return sorted(sorted(g) for g in groups.values() if len(g) > 1)

    assert shared_groups(mine) == shared_groups(ref)


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_reload_from_a_file_without_weights_names_every_missing_one(tmp_path, cls_name):
    """test_model_weights_reload_no_missing_tied_weights: from a file holding none of the weights,
    output_loading_info names every parameter missing (a tied copy may stand for its group) and the stray key
    unexpected -- transformers' lists exactly."""
    from safetensors.torch import save_file

    ref, _ = twin(cls_name, tmp_path)
    save_file({"tensor": torch.tensor([1, 2])}, os.fspath(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    model, info = ours(cls_name).from_pretrained(tmp_path, output_loading_info=True)
    _, ref_info = theirs(cls_name).from_pretrained(tmp_path, output_loading_info=True)
    assert sorted(info["missing_keys"]) == sorted(ref_info["missing_keys"])
    assert info["unexpected_keys"] == ref_info["unexpected_keys"] == ["tensor"]
    names = set(dict(model.named_parameters())) | set(dict(model.named_buffers()))
    missing = set(info["missing_keys"])
    groups = defaultdict(set)
    for k, v in model.state_dict().items():
        groups[v.untyped_storage().data_ptr()].add(k)
    extra = missing - names
    for group in groups.values():
        if group - extra:
            extra -= group
    assert extra == set()
    assert names - missing <= {"final_logits_bias"}  # transformers ignores it when missing (zeros)


@pytest.mark.parametrize("cls_name", ["LEDForSequenceClassification", "LEDForQuestionAnswering"])
def test_head_class_from_base_model_reports_missing_head(tmp_path, cls_name):
    """test_correct_missing_keys (off for LED upstream, run here): a head class read from a bare LEDModel's files
    reports its head weights missing. (LEDForConditionalGeneration has none to report: its head is tied to the
    embeddings and final_logits_bias is ignored when missing, so upstream passes over it too.)"""
    model = fresh(cls_name)
    assert model.base_model is model.led and model.led.base_model is model.led
    model.base_model.save_pretrained(tmp_path)
    _, info = ours(cls_name).from_pretrained(tmp_path, output_loading_info=True)
    assert len(info["missing_keys"]) > 0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "auto", torch.float16, torch.bfloat16,
                                   torch.float32])
def test_torch_dtype_and_dtype_agree(tmp_path, dtype):
    """test_bc_torch_dtype: torch_dtype= and dtype= load the same weights in the same dtype."""
    for cls_name in MODEL_CLASSES:
        path = tmp_path / cls_name
        fresh(cls_name).save_pretrained(path)
        a = ours(cls_name).from_pretrained(path, torch_dtype=dtype)
        b = ours(cls_name).from_pretrained(path, dtype=dtype)
        for (k1, v1), (k2, v2) in zip(a.named_parameters(), b.named_parameters()):
            assert k1 == k2 and v1.dtype == v2.dtype and torch.equal(v1, v2), k1


def test_loading_under_a_meta_device_context_gives_real_weights(tmp_path):
    """test_cannot_load_with_meta_device_context_manager -- a deliberate difference: transformers refuses to load
    inside `with torch.device("meta")` (RuntimeError); ours builds on meta anyway and assigns the checkpoint's
    tensors, so the model it returns holds the real weights on the CPU."""
    inputs = TINY.common_inputs()
    for cls_name in MODEL_CLASSES:
        fresh(cls_name).save_pretrained(tmp_path / cls_name)
        plain = ours(cls_name).from_pretrained(tmp_path / cls_name)
        with torch.device("meta"):
            model = ours(cls_name).from_pretrained(tmp_path / cls_name)
        assert not any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))
        with torch.no_grad():
            assert_close(model(**inputs)[0], plain(**inputs)[0], cls_name, atol=0)


def test_can_be_initialized_on_meta():
    """test_can_be_initialized_on_meta."""
    for cls_name in MODEL_CLASSES:
        with torch.device("meta"):
            model = ours(cls_name)(TINY.config())
        assert all(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("cls_name", ["LEDForSequenceClassification"])
def test_load_with_mismatched_shapes(tmp_path, cls_name):
    """test_load_with_mismatched_shapes, test_can_load_ignoring_mismatched_shapes: other label counts or vocab
    sizes are refused unless ignore_mismatched_sizes=True, which starts the mismatched weights afresh and keeps
    every other weight."""
    model = fresh(cls_name, num_labels=3)
    model.save_pretrained(tmp_path)
    # a RuntimeError, as upstream asserts (ours: WeightShapeError, a CheckpointError too, naming the weight)
    with pytest.raises(RuntimeError, match="classification_head.out_proj"):
        ours(cls_name).from_pretrained(tmp_path, num_labels=42)
    with pytest.raises(ledviz.WeightShapeError, match="shared"):
        ours("LEDModel").from_pretrained(tmp_path, vocab_size=10)
    new, info = ours(cls_name).from_pretrained(tmp_path, num_labels=42, ignore_mismatched_sizes=True,
                                               output_loading_info=True)
    assert info["mismatched_keys"] == ["classification_head.out_proj.bias", "classification_head.out_proj.weight"]
    logits = _eval(new)(**TINY.for_class(TINY.common_inputs(), cls_name)).logits
    assert logits.shape[1] == 42
    for (k1, v1), (k2, v2) in zip(new.named_parameters(), model.named_parameters()):
        assert k1 == k2
        if k1.startswith("classification_head.out_proj"):
            assert v2.shape[0] == 3 and abs(v1.mean().item()) <= 0.1
        else:
            assert torch.equal(v1, v2), k1
    base = ours("LEDModel").from_pretrained(tmp_path, vocab_size=10, ignore_mismatched_sizes=True)
    ids = torch.randint(0, 10, (2, 8), generator=torch.Generator().manual_seed(0))
    base(ids, decoder_input_ids=ids)


# ---- forward outputs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_determinism(cls_name):
    """test_determinism: two eval passes give the same first output."""
    model = _eval(fresh(cls_name))
    inputs = TINY.for_class(TINY.common_inputs(), cls_name)
    with torch.no_grad():
        assert_close(model(**inputs)[0], model(**inputs)[0], cls_name, atol=1e-5)


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_matches_transformers_on_the_upstream_inputs(tmp_path, cls_name):
    """The upstream checks' inputs (13 × 11, last token global, head masks of ones) give transformers' outputs,
    every tensor of the output (global attentions compared on their documented N columns)."""
    ref, mine = twin(cls_name, tmp_path)
    inputs = TINY.for_class(TINY.common_inputs(), cls_name, labels=True)
    with torch.no_grad():
        theirs_out = ref(**inputs, output_attentions=True, output_hidden_states=True)
        ours_out = mine(**inputs, output_attentions=True, output_hidden_states=True)
    assert list(ours_out.keys()) == [k for k in theirs_out.keys()]
    for key in ours_out.keys():
        if key == "past_key_values":
            continue
        for i, (a, b) in enumerate(zip(tensors_of(ours_out[key]), tensors_of(theirs_out[key]))):
            if key == "encoder_global_attentions":
                # documented: ours are trimmed to the N input rows and the number of global tokens
                b = b[..., : a.shape[-2], : a.shape[-1]]
            assert_close(a, b, f"{cls_name}.{key}[{i}]", atol=1e-5)


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_batching_equivalence(cls_name):
    """test_batching_equivalence: the first row of a batch equals that row alone, in every float output."""
    config = TINY.config(output_hidden_states=True)
    torch.manual_seed(0)
    model = ours(cls_name)(config).eval()
    batched = TINY.for_class(TINY.common_inputs(), cls_name)
    single = {k: (v[:1] if isinstance(v, torch.Tensor) and v.shape[0] == TINY.batch_size else v)
              for k, v in batched.items()}
    with torch.no_grad():
        out_b, out_1 = model(**batched), model(**single)
    for key in out_b.keys():
        for a, b in zip(tensors_of(out_b[key]), tensors_of(out_1[key])):
            if not torch.is_floating_point(a) or a.dim() == 0:
                continue
            row = a[tuple(slice(0, n) for n in b.shape)]
            assert torch.isfinite(row).all() and torch.isfinite(b).all(), key
            torch.testing.assert_close(row, b, atol=1e-5, rtol=1e-5, msg=lambda m: f"{cls_name}.{key}: {m}")


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_model_outputs_equivalence(cls_name):
    """test_model_outputs_equivalence: return_dict=False gives the dict output's tuple, with labels, hidden
    states and attentions asked or not."""
    model = _eval(fresh(cls_name))
    inputs = TINY.common_inputs()
    for labels in (False, True):
        for extra in ({}, {"output_hidden_states": True}, {"output_attentions": True},
                      {"output_hidden_states": True, "output_attentions": True}):
            args = TINY.for_class(inputs, cls_name, labels=labels)
            with torch.no_grad():
                as_tuple = model(**args, return_dict=False, **extra)
                as_dict = model(**args, return_dict=True, **extra).to_tuple()
            assert isinstance(as_tuple, tuple)
            a, b = tensors_of(as_tuple), tensors_of(as_dict)
            assert len(a) == len(b), f"{cls_name} {extra}: {len(a)} vs {len(b)} tensors"
            for x, y in zip(a, b):
                assert_close(x, y, f"{cls_name} {extra}")


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_attention_outputs(cls_name):
    """LED's test_attention_outputs: asked by argument or by config, the encoder attentions are (heads, N,
    window + 2) with one global token, the decoder and cross attentions (heads, T, T); the output has 6 fields
    (+1 for QA's two logits, +1 for past_key_values)."""
    inputs = TINY.common_inputs()
    for by_config in (False, True):
        config = TINY.config(output_attentions=by_config)
        torch.manual_seed(0)
        model = ours(cls_name)(config).eval()
        args = TINY.for_class(inputs, cls_name)
        with torch.no_grad():
            out = model(**args, **({} if by_config else {"output_attentions": True}))
        heads, n, t = TINY.num_attention_heads, TINY.encoder_seq_length, TINY.seq_length
        assert len(out.encoder_attentions) == TINY.num_hidden_layers
        assert list(out.encoder_attentions[0].shape[-3:]) == [heads, n, TINY.encoder_key_length]
        expected = 6 + (cls_name == "LEDForQuestionAnswering") + ("past_key_values" in out)
        assert len(out) == expected, f"{cls_name}: {len(out)} fields {list(out.keys())}"
        for name in ("decoder_attentions", "cross_attentions"):
            att = getattr(out, name)
            assert isinstance(att, (list, tuple)) and len(att) == TINY.num_hidden_layers
            assert list(att[0].shape[-3:]) == [heads, t, t], name


def test_global_attention():
    """LED's test_global_attention: with two global tokens the global attentions have 2 columns."""
    torch.manual_seed(0)
    model = ours("LEDModel")(TINY.config()).eval()
    model.config.output_attentions = True
    inputs = TINY.common_inputs()
    g = torch.Generator().manual_seed(3)
    attention_mask = torch.randint(0, 2, inputs["input_ids"].shape, generator=g)
    global_mask = torch.zeros_like(attention_mask)
    attention_mask[:, 2:4] = 1
    global_mask[:, 2:4] = 1
    inputs.update(attention_mask=attention_mask, global_attention_mask=global_mask)
    out = model(**inputs)
    assert out.encoder_global_attentions is not None
    assert tuple(out.encoder_global_attentions[0].shape) == (TINY.batch_size, TINY.num_attention_heads,
                                                             TINY.encoder_seq_length, 2)


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_hidden_states_output(cls_name):
    """test_hidden_states_output: layers + 1 encoder and decoder hidden states of (N, D) and (T, D), asked by
    argument or by config."""
    inputs = TINY.common_inputs()
    for by_config in (False, True):
        torch.manual_seed(0)
        model = ours(cls_name)(TINY.config(output_hidden_states=by_config)).eval()
        with torch.no_grad():
            out = model(**TINY.for_class(inputs, cls_name), **({} if by_config else {"output_hidden_states": True}))
        for states, length in ((out.encoder_hidden_states, TINY.encoder_seq_length),
                               (out.decoder_hidden_states, TINY.seq_length)):
            assert isinstance(states, (list, tuple)) and len(states) == TINY.num_hidden_layers + 1
            assert list(states[0].shape[-2:]) == [length, TINY.hidden_size]


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_retain_grad_of_hidden_states_and_attentions(cls_name):
    """test_retain_grad_hidden_states_attentions, skipped upstream for LED ("Longformer cannot keep gradients in
    attentions or hidden states": the encoder returns states trimmed from its window padding, which nothing
    downstream reads). Ours returns the states themselves when the input needs no padding (12 tokens, window 4),
    and then they keep their gradient, as the decoder's attentions and cross-attentions do; with padding
    (upstream's 11 tokens) the encoder's are trimmed copies, as in transformers. The encoder's attentions are
    left out: what it returns is a copy with unused slots zeroed (the documented difference), not the
    probabilities the layer multiplies."""
    torch.manual_seed(0)
    model = ours(cls_name)(TINY.config(output_hidden_states=True, output_attentions=True))
    inputs = TINY.for_class(TINY.common_inputs(), cls_name)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, TINY.vocab_size, (TINY.batch_size, 12), generator=g)
    ids[:, -1] = TINY.eos_token_id
    global_mask = torch.zeros_like(ids)
    global_mask[:, -1] = 1
    inputs.update(input_ids=ids, attention_mask=torch.ones_like(ids), global_attention_mask=global_mask)
    inputs.pop("decoder_input_ids"), inputs.pop("decoder_attention_mask")  # the shifted input instead
    out = model(**inputs)
    names = ["encoder_hidden_states", "decoder_hidden_states", "decoder_attentions", "cross_attentions"]
    kept = [getattr(out, name)[0] for name in names]
    for t in kept:
        t.retain_grad()
    out[0].flatten()[0].backward(retain_graph=True)
    for name, t in zip(names, kept):
        assert t.grad is not None, name


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_feed_forward_chunking(cls_name):
    """test_feed_forward_chunking: chunk_size_feed_forward (which LED does not use) changes no output."""
    inputs = TINY.for_class(TINY.common_inputs(), cls_name)
    outs = []
    for chunk in (0, 1):
        torch.manual_seed(0)
        model = ours(cls_name)(TINY.config(chunk_size_feed_forward=chunk)).eval()
        with torch.no_grad():
            outs.append(model(**inputs)[0])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_head_masking(cls_name):
    """test_headmasking: a head mask that zeroes head 0 of layer 0 and all but the last head of the last layer
    zeroes exactly those attentions (encoder, decoder, cross), and the mask gets a gradient."""
    config = TINY.config(output_hidden_states=True, init_std=1e-10)
    torch.manual_seed(0)
    model = ours(cls_name)(config).eval()
    head_mask = torch.ones(TINY.num_hidden_layers, TINY.num_attention_heads)
    head_mask[0, 0] = 0
    head_mask[-1, :-1] = 0
    head_mask.requires_grad_(True)
    inputs = TINY.for_class(TINY.common_inputs(), cls_name)
    inputs.update(head_mask=head_mask, decoder_head_mask=head_mask, cross_attn_head_mask=head_mask)
    out = model(**inputs, output_attentions=True, return_dict=True)
    sum(t.sum() for t in out[0]).sum().backward()
    assert head_mask.grad is not None and len(head_mask.grad) == TINY.num_hidden_layers
    for name in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
        att = [torch.nan_to_num(t, nan=0.0) for t in getattr(out, name)]
        assert att[0][..., 0, :, :].sum().item() == pytest.approx(0.0, abs=1e-6), name
        assert att[0][..., -1, :, :].sum().item() != 0.0, name
        assert att[-1][..., -2, :, :].sum().item() == pytest.approx(0.0, abs=1e-6), name
        assert att[-1][..., -1, :, :].sum().item() != 0.0, name


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_head_masking_matches_transformers(tmp_path, cls_name):
    """Head masks of zeros and fractions give transformers' outputs on the same weights."""
    ref, mine = twin(cls_name, tmp_path)
    g = torch.Generator().manual_seed(5)
    inputs = TINY.for_class(TINY.common_inputs(), cls_name)
    for name in ("head_mask", "decoder_head_mask", "cross_attn_head_mask"):
        inputs[name] = torch.rand(TINY.num_hidden_layers, TINY.num_attention_heads, generator=g).round()
    inputs["head_mask"][0, 1] = 0.5
    with torch.no_grad():
        a, b = mine(**inputs, output_attentions=True), ref(**inputs, output_attentions=True)
    assert_close(a[0], b[0], cls_name)
    for name in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
        for x, y in zip(getattr(a, name), getattr(b, name)):
            assert_close(x, y, f"{cls_name}.{name}")


# ---- inputs --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls_name", ["LEDModel", "LEDForConditionalGeneration", "LEDForQuestionAnswering"])
def test_inputs_embeds(cls_name):
    """LED's test_inputs_embeds: inputs_embeds and decoder_inputs_embeds instead of ids (not for sequence
    classification, which pools at the </s> ids)."""
    model = _eval(fresh(cls_name))
    inputs = TINY.for_class(TINY.common_inputs(), cls_name)
    wte = model.get_input_embeddings()
    inputs["inputs_embeds"] = wte(inputs.pop("input_ids"))
    inputs["decoder_inputs_embeds"] = wte(inputs.pop("decoder_input_ids"))
    with torch.no_grad():
        model(**inputs)[0]


def test_sequence_classification_without_input_ids_is_refused():
    """The reason upstream leaves LEDForSequenceClassification out of test_inputs_embeds: it needs the ids to
    find </s>; ours says so."""
    model = _eval(fresh("LEDForSequenceClassification"))
    inputs = TINY.common_inputs()
    inputs["inputs_embeds"] = model.get_input_embeddings()(inputs.pop("input_ids"))
    with pytest.raises(ledviz.InputError, match="input_ids"):
        model(**inputs)


def test_inputs_embeds_matches_input_ids():
    """test_inputs_embeds_matches_input_ids (LEDModel): embeddings give the ids' output exactly."""
    model = _eval(fresh("LEDModel"))
    inputs = TINY.common_inputs()
    enc, dec = inputs.pop("input_ids"), inputs.pop("decoder_input_ids")
    enc[enc == TINY.pad_token_id] = TINY.pad_token_id + 1
    dec[dec == TINY.pad_token_id] = TINY.pad_token_id + 1
    wte = model.get_input_embeddings()
    with torch.no_grad():
        by_ids = model(input_ids=enc, decoder_input_ids=dec, **inputs)[0]
        by_embeds = model(inputs_embeds=wte(enc), decoder_inputs_embeds=wte(dec), **inputs)[0]
    torch.testing.assert_close(by_embeds, by_ids)


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_main_input_name_is_the_first_forward_argument(cls_name):
    """test_model_main_input_name."""
    first = list(inspect.signature(ours(cls_name).forward).parameters)[1]
    assert ours(cls_name).main_input_name == first == "input_ids"


@pytest.mark.parametrize("cls_name", MODEL_CLASSES + ("LEDDecoder",))
def test_forward_signature_is_transformers(cls_name):
    """The forward arguments, in order, are transformers' (a positional call means the same in both)."""
    from transformers.models.led import modeling_led

    mine = list(inspect.signature(ours(cls_name).forward).parameters)
    ref = list(inspect.signature(getattr(modeling_led, cls_name).forward).parameters)
    assert mine == ref


def test_encoder_signature_is_transformers_then_ours():
    """LEDEncoder.forward takes transformers' arguments in their order, then ours (attention_sink,
    attention_layers, attention_dtype: what the app keeps of each layer)."""
    from transformers.models.led import modeling_led

    mine = list(inspect.signature(ledviz.LEDEncoder.forward).parameters)
    ref = list(inspect.signature(modeling_led.LEDEncoder.forward).parameters)
    assert mine == ref + ["attention_sink", "attention_layers", "attention_dtype"]


@pytest.mark.parametrize("cls_name", ["LEDModel", "LEDForConditionalGeneration"])
def test_cache_position(tmp_path, cls_name):
    """transformers' cache_position: the positions after the cache are accepted (and change nothing); others are
    refused with the positions expected."""
    ref, mine = twin(cls_name, tmp_path)
    inputs = TINY.common_inputs()
    with torch.no_grad():
        first = mine(**inputs, use_cache=True)
        past = first.past_key_values
        step = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                    decoder_input_ids=inputs["decoder_input_ids"][:, :1], past_key_values=past)
        a = mine(**step, cache_position=torch.arange(TINY.seq_length, TINY.seq_length + 1))[0]
        b = mine(**step)[0]
        assert torch.equal(a, b)
        assert torch.equal(mine(**inputs, cache_position=torch.arange(TINY.seq_length))[0], first[0])
        with pytest.raises(ledviz.InputError, match="cache_position"):
            mine(**step, cache_position=torch.tensor([3]))


# ---- embeddings -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_model_get_set_embeddings(cls_name):
    """test_model_get_set_embeddings."""
    model = fresh(cls_name)
    assert isinstance(model.get_input_embeddings(), nn.Embedding)
    table = nn.Embedding(10, 10)
    model.set_input_embeddings(table)
    assert model.get_input_embeddings() is table
    head = model.get_output_embeddings()
    assert head is None or isinstance(head, nn.Linear)


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_resize_tokens_embeddings(cls_name):
    """test_resize_tokens_embeddings: growing by 10 and shrinking by 15 resize every table, keep the old rows,
    add rows near the old mean, keep the model running; pad_to_multiple_of rounds up and must be an integer;
    a vocabulary smaller than the width grows too."""
    inputs = TINY.common_inputs()
    model = fresh(cls_name)
    v = model.config.get_text_config().vocab_size
    emb = model.resize_token_embeddings(v)
    kind, cloned = type(emb), emb.weight.clone()
    emb = model.resize_token_embeddings(v + 10)
    assert model.config.vocab_size == v + 10 and emb.weight.shape[0] == v + 10 and type(emb) is kind
    torch.testing.assert_close(emb.weight[:-10].mean(0), emb.weight[-10:].mean(0), rtol=1e-3, atol=1e-3)
    model(**TINY.for_class(inputs, cls_name))
    emb = model.resize_token_embeddings(v - 15)
    assert model.config.vocab_size == v - 15 and emb.weight.shape[0] == v - 15
    inputs["input_ids"].clamp_(max=v - 16)
    inputs["decoder_input_ids"].clamp_(max=v - 16)
    model(**TINY.for_class(inputs, cls_name))
    assert torch.equal(cloned[: v - 15], emb.weight)

    model = fresh(cls_name)
    model.resize_token_embeddings(v + 10, pad_to_multiple_of=1)
    assert model.config.vocab_size == v + 10
    emb = model.resize_token_embeddings(v, pad_to_multiple_of=64)
    assert emb.weight.shape[0] % 64 == 0 and model.config.vocab_size == emb.weight.shape[0]
    assert model.resize_token_embeddings(128, pad_to_multiple_of=64).weight.shape[0] == 128
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        model.resize_token_embeddings(v, pad_to_multiple_of=1.3)

    model = fresh(cls_name, vocab_size=4, pad_token_id=3)
    emb = model.resize_token_embeddings(14)
    assert model.config.vocab_size == 14 and emb.weight.shape[0] == 14
    torch.testing.assert_close(emb.weight[:-10].mean(0), emb.weight[-10:].mean(0), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_resize_embeddings_untied(cls_name):
    """test_resize_embeddings_untied: an untied head grows and shrinks with the vocabulary."""
    inputs = TINY.common_inputs()
    model = fresh(cls_name, tie_word_embeddings=False)
    head = model.get_output_embeddings()
    if head is None:
        return
    v = model.config.vocab_size
    model.resize_token_embeddings(v + 10)
    head = model.get_output_embeddings()
    assert model.config.vocab_size == v + 10 and head.weight.shape[0] == v + 10
    assert head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    model(**TINY.for_class(inputs, cls_name))
    torch.testing.assert_close(head.weight[:-10].mean(0), head.weight[-10:].mean(0), rtol=1e-3, atol=1e-3)
    model.resize_token_embeddings(v - 15)
    assert model.get_output_embeddings().weight.shape[0] == v - 15
    inputs["input_ids"].clamp_(max=v - 16)
    inputs["decoder_input_ids"].clamp_(max=v - 16)
    model(**TINY.for_class(inputs, cls_name))


@pytest.mark.parametrize("cls_name", MODEL_CLASSES)
def test_tie_model_weights(cls_name):
    """test_tie_model_weights (a torchscript check upstream, off for LED, run here): resizing keeps the number of
    parameters, so the head stays tied."""
    model = fresh(cls_name)
    before = len(list(model.parameters()))
    model.resize_token_embeddings(model.config.vocab_size + 10)
    assert len(list(model.parameters())) == before
    if model.get_output_embeddings() is not None:
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


# ---- training --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls_name", WITH_HEAD)
def test_training(cls_name):
    """test_training: in train mode the task loss backpropagates."""
    model = fresh(cls_name).train()
    loss = model(**TINY.for_class(TINY.common_inputs(), cls_name, labels=True)).loss
    loss.backward()
    assert loss.requires_grad and torch.isfinite(loss)


@pytest.mark.parametrize("cls_name", WITH_HEAD)
@pytest.mark.parametrize("kwargs", [None, {"use_reentrant": True}, {"use_reentrant": False}])
def test_training_gradient_checkpointing(cls_name, kwargs):
    """test_training_gradient_checkpointing (and the use_reentrant variants): every parameter gets a gradient."""
    model = fresh(cls_name, use_cache=False)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model(**TINY.for_class(TINY.common_inputs(), cls_name, labels=True)).loss.backward()
    optimizer.step()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} has no gradient"


@pytest.mark.parametrize("cls_name", WITH_HEAD)
def test_gradient_checkpointing_gives_the_same_gradients(cls_name):
    """Checkpointed layers give the gradients of the plain pass (dropout off)."""
    inputs = TINY.for_class(TINY.common_inputs(), cls_name, labels=True)
    grads = []
    for checkpointing in (False, True):
        model = fresh(cls_name, dropout=0.0, attention_dropout=0.0, classifier_dropout=0.0)
        if checkpointing:
            model.gradient_checkpointing_enable()
        model.train()
        model(**inputs).loss.backward()
        grads.append({k: p.grad for k, p in model.named_parameters()})
    for k in grads[0]:
        assert_close(grads[1][k], grads[0][k], k, atol=1e-6)


def test_gradient_checkpointing_enable_disable_and_config():
    """test_gradient_checkpointing_enable_disable, test_gradient_checkpointing_backward_compatibility."""
    for cls_name in MODEL_CLASSES:
        model = fresh(cls_name)
        assert not model.is_gradient_checkpointing
        model.gradient_checkpointing_enable()
        assert model.is_gradient_checkpointing
        assert all(m.gradient_checkpointing for m in model.modules() if hasattr(m, "gradient_checkpointing"))
        model.gradient_checkpointing_disable()
        assert not model.is_gradient_checkpointing
        assert not any(m.gradient_checkpointing for m in model.modules() if hasattr(m, "gradient_checkpointing"))
        assert fresh(cls_name, gradient_checkpointing=True).is_gradient_checkpointing
    with pytest.raises(TypeError, match="preserve_rng"):
        fresh("LEDModel").gradient_checkpointing_enable(gradient_checkpointing_kwargs={"preserve_rng": True})


def test_problem_types():
    """test_problem_types: multi-label, single-label and regression losses backpropagate without a broadcasting
    warning."""
    inputs = TINY.common_inputs()
    for title, num_labels, dtype in (("multi_label_classification", 2, torch.float),
                                     ("single_label_classification", 1, torch.long), ("regression", 1, torch.float)):
        model = fresh("LEDForSequenceClassification", problem_type=title, num_labels=num_labels).train()
        args = TINY.for_class(inputs, "LEDForSequenceClassification", labels=True)
        if num_labels > 1:
            args["labels"] = args["labels"].unsqueeze(1).repeat(1, num_labels)
        args["labels"] = args["labels"].to(dtype)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss = model(**args).loss
        assert not [w for w in caught if "target size that is different" in str(w.message)], title
        loss.backward()


# ---- LED's own -------------------------------------------------------------------------------------------

def test_decoder_model_past_with_large_inputs():
    """LED's test_decoder_model_past_with_large_inputs: the decoder alone, continued by 3 tokens from its cache,
    gives the uncached pass's last 3 positions."""
    torch.manual_seed(0)
    decoder = ours("LEDModel")(TINY.config()).get_decoder().eval()
    inputs = TINY.inputs()
    ids, mask = inputs["input_ids"], inputs["attention_mask"].long()
    out = decoder(ids, attention_mask=mask, head_mask=inputs["head_mask"], use_cache=True)
    output, past = out.to_tuple()[:2]
    g = torch.Generator().manual_seed(4)
    next_tokens = torch.randint(0, TINY.vocab_size, (TINY.batch_size, 3), generator=g)
    next_mask = torch.randint(0, 2, (TINY.batch_size, 3), generator=g)
    all_ids, all_mask = torch.cat([ids, next_tokens], -1), torch.cat([mask, next_mask], -1)
    no_past = decoder(all_ids, attention_mask=all_mask)["last_hidden_state"]
    with_past = decoder(next_tokens, attention_mask=all_mask, past_key_values=past)["last_hidden_state"]
    assert with_past.shape[1] == 3
    torch.testing.assert_close(with_past, no_past[:, -3:], atol=1e-2, rtol=0)


def test_encoder_decoder_model_standalone(tmp_path):
    """LED's test_encoder_decoder_model_standalone: the encoder and the decoder saved and loaded alone give the
    full model's states."""
    torch.manual_seed(0)
    model = ours("LEDModel")(TINY.config()).eval()
    inputs = TINY.common_inputs()
    out = model(**inputs)
    model.get_encoder().save_pretrained(tmp_path / "enc")
    encoder = ledviz.LEDEncoder.from_pretrained(tmp_path / "enc")
    enc_state = encoder(inputs["input_ids"], attention_mask=inputs["attention_mask"],
                        global_attention_mask=inputs["global_attention_mask"])[0]
    assert (enc_state - out.encoder_last_hidden_state).abs().max().item() < 1e-3
    model.get_decoder().save_pretrained(tmp_path / "dec")
    decoder = ledviz.LEDDecoder.from_pretrained(tmp_path / "dec")
    dec_state = decoder(input_ids=inputs["decoder_input_ids"], attention_mask=inputs["decoder_attention_mask"],
                        encoder_hidden_states=out.encoder_last_hidden_state,
                        encoder_attention_mask=inputs["attention_mask"])[0]
    assert (dec_state - out.last_hidden_state).abs().max().item() < 1e-3


def test_generate_in_float16():
    """LED's test_generate_fp16: a half-precision model generates, greedy and with sampled beams."""
    inputs = TINY.inputs()
    torch.manual_seed(0)
    model = ours("LEDForConditionalGeneration")(TINY.config()).eval().half()
    ids = inputs["input_ids"][:2]
    model.generate(ids, attention_mask=ids.ne(1).long(), max_new_tokens=3)
    model.generate(ids, num_beams=4, do_sample=True, early_stopping=False, num_return_sequences=3, max_new_tokens=3)


def test_config_attn_implementation_setter(tmp_path):
    """test_config_attn_implementation_setter: config._attn_implementation can be set and read back (LEDConfig
    has no sub-configs to follow it). A model accepts LED's one implementation in transformers, "eager",
    and ledviz's own ("blocked", "reference", "sdpa": a deliberate difference, transformers refuses
    "sdpa" for LED); another is refused by name."""
    config = TINY.config()
    assert config._attn_implementation == "eager" and config.sub_configs == {} and config.get_text_config() is config
    for name in ("eager", "sdpa"):
        config._attn_implementation = name
        assert config._attn_implementation == name
    assert "_attn_implementation" not in config.to_dict()
    fresh("LEDModel").save_pretrained(tmp_path)
    ours("LEDModel").from_pretrained(tmp_path, attn_implementation="eager")
    ours("LEDModel")._from_config(TINY.config(), attn_implementation="eager")
    model = ours("LEDModel").from_pretrained(tmp_path, attn_implementation="sdpa")
    assert {layer.self_attn.longformer_self_attn.implementation for layer in model.get_encoder().layers} == {"sdpa"}
    with pytest.raises(ValueError, match="flash_attention_2"):
        ours("LEDModel").from_pretrained(tmp_path, attn_implementation="flash_attention_2")


def test_the_generative_classes_have_generate():
    """test_generation_tester_mixin_inheritance, test_inherits_generation_mixin: exactly
    LEDForConditionalGeneration can generate, through GenerationMixin."""
    assert tuple(c for c in MODEL_CLASSES if ours(c).can_generate()) == GENERATIVE_CLASSES
    assert "GenerationMixin" in str(ours("LEDForConditionalGeneration").__bases__)


# ---- upstream checks that do not apply -------------------------------------------------------------------

NOT_APPLICABLE = {
    "test_torchscript_simple / _output_attentions / _output_hidden_state":
        "torchscript tracing (off for LED upstream too)",
    "test_torch_fx / test_torch_fx_output_loss": "torch.fx symbolic tracing (LED is not fx-compatible upstream)",
    "test_head_pruning / _save_load_from_pretrained / _save_load_from_config_init / _integration":
        "head pruning (test_pruning=False for LED upstream)",
    "test_resize_position_vector_embeddings": "resizing position embeddings (off for LED upstream)",
    "test_resize_tokens_embeddings_with_deepspeed (+multi-gpu), test_resize_embeddings_untied_with_deepspeed "
    "(+multi-gpu)": "DeepSpeed ZeRO-3",
    "test_peft_gradient_checkpointing_enable_disable": "PEFT adapters",
    "test_can_init_all_missing_weights": "patches PreTrainedModel._initialize_weights (transformers' lazy init)",
    "test_keep_in_fp32_modules": "LED has no _keep_in_fp32_modules (skipped upstream too)",
    "test_multi_gpu_data_parallel_forward / test_model_parallelization / test_model_parallel_equal_results / "
    "test_model_parallelism": "several GPUs, accelerate device maps",
    "test_disk_offload_bin / test_disk_offload_safetensors / test_cpu_offload": "accelerate offloading",
    "test_flash_attn_* / test_flash_attn_kernels_* / test_eager_matches_sdpa_inference / test_sdpa_can_dispatch_* "
    "/ test_sdpa_can_compile_dynamic / test_flex_attention_with_grads / test_attn_implementation_composite_models "
    "/ test_can_set_attention_dynamically(_composite_model)":
        "SDPA/flash/flex attention back-ends (LED supports only eager upstream)",
    "test_sliding_window_mask": "the `sliding_window` setting of decoder-only models (LED has none; skipped "
                                "upstream)",
    "test_torch_compile_for_training / test_torch_export": "torch.compile / torch.export (GPU, slow)",
    "test_can_load_with_device_context_manager / test_can_load_with_global_device_set": "an accelerator",
    "test_internal_model_config_and_subconfig_are_same": "composite configs (LEDConfig has no sub-configs)",
    "PipelineTesterMixin (all)": "transformers pipelines",
    "LEDModelIntegrationTests (3)": "the allenai/led-* Hub weights (no network); the numbers are covered by "
                                    "test_model_parity.py on tiny weights",
}


@pytest.mark.parametrize("check", sorted(NOT_APPLICABLE))
def test_not_applicable(check):
    pytest.skip(f"{check}: not ported, it tests {NOT_APPLICABLE[check]}")
