"""Drop-in for transformers users, part 1: LEDConfig's API and every from_pretrained argument, against
transformers 4.57 on tiny checkpoints (local folders and a Hub-shaped cache with HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import json
import logging

import pytest
import torch

import ledviz
from conftest import make_reference, tiny_kwargs
from hub_cache import _hub_cache

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
CLASSES = ["LEDModel", "LEDForConditionalGeneration", "LEDForSequenceClassification", "LEDForQuestionAnswering"]


def _pair(**kw):
    return ledviz.LEDConfig(**tiny_kwargs(**kw)), transformers.LEDConfig(**tiny_kwargs(**kw))


# ---- LEDConfig ------------------------------------------------------------------------------------

@pytest.mark.parametrize("alias, field", [("hidden_size", "d_model"), ("num_attention_heads", "encoder_attention_heads"),
                                          ("attention_probs_dropout_prob", "attention_dropout"),
                                          ("initializer_range", "init_std")])
def test_alias_attributes_read_and_set_their_field(alias, field):
    ours, theirs = _pair()
    for c in (ours, theirs):
        setattr(c, alias, 4)
    assert getattr(ours, field) == getattr(theirs, field) == 4 and getattr(ours, alias) == 4
    value = 64 if alias == "hidden_size" else 8
    assert getattr(ledviz.LEDConfig(**{alias: value}), field) == getattr(transformers.LEDConfig(**{alias: value}), field) == value


def test_num_hidden_layers_is_a_field_of_its_own_as_in_transformers():
    ours, theirs = _pair()
    assert ours.num_hidden_layers == theirs.num_hidden_layers == 2
    for c in (ours, theirs):
        c.num_hidden_layers = 5
    assert (ours.num_hidden_layers, ours.encoder_layers) == (theirs.num_hidden_layers, theirs.encoder_layers) == (5, 2)
    assert ledviz.LEDConfig(num_hidden_layers=3).num_hidden_layers == transformers.LEDConfig(num_hidden_layers=3).num_hidden_layers
    assert ours.to_dict()["num_hidden_layers"] == theirs.to_dict()["num_hidden_layers"]


def test_num_labels_rebuilds_the_label_maps():
    ours, theirs = _pair(num_labels=3)
    assert ours.id2label == theirs.id2label and ours.label2id == theirs.label2id
    for c in (ours, theirs):
        c.num_labels = 5
    assert ours.id2label == theirs.id2label and ours.label2id == theirs.label2id and ours.num_labels == 5
    assert all(isinstance(k, int) for k in ours.id2label) and all(isinstance(v, int) for v in ours.label2id.values())
    # a loaded config.json has string keys; they come back as ints
    data = {"id2label": {"0": "neg", "1": "pos"}, "label2id": {"neg": 0, "pos": 1}}
    ours, theirs = ledviz.LEDConfig.from_dict(dict(data)), transformers.LEDConfig.from_dict(dict(data))
    assert ours.id2label == theirs.id2label == {0: "neg", 1: "pos"} and ours.label2id == theirs.label2id


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True])
def test_num_labels_that_is_not_a_positive_int_is_named(bad):
    with pytest.raises(ledviz.ConfigError, match="num_labels"):
        ledviz.LEDConfig(num_labels=bad)
    c = ledviz.LEDConfig()
    with pytest.raises(ledviz.ConfigError, match="num_labels"):
        c.num_labels = bad
    assert c.num_labels == 2


def test_dtype_is_a_torch_dtype():
    for value in ("float16", torch.float16):
        ours, theirs = ledviz.LEDConfig(dtype=value), transformers.LEDConfig(dtype=value)
        assert ours.dtype == theirs.dtype == torch.float16
    assert ledviz.LEDConfig(dtype="torch.float16").dtype == torch.float16
    ours, theirs = ledviz.LEDConfig(torch_dtype="bfloat16"), transformers.LEDConfig(torch_dtype="bfloat16")
    assert ours.dtype == theirs.dtype == torch.bfloat16 and ours.torch_dtype == torch.bfloat16
    assert ours.to_dict()["dtype"] == theirs.to_dict()["dtype"] == "bfloat16"
    for bad in ("float17", 5, "auto"):
        with pytest.raises(ledviz.ConfigError, match="dtype"):
            ledviz.LEDConfig(dtype=bad)


def test_to_dict_json_and_update_as_transformers(tmp_path):
    ours, theirs = _pair(num_labels=3, attention_window=[4, 6])
    mine, ref = ours.to_dict(), theirs.to_dict()
    shared = [k for k in ref if k in mine]
    assert len(shared) > 30
    assert {k: mine[k] for k in shared if k not in ("transformers_version",)} == \
        {k: ref[k] for k in shared if k not in ("transformers_version",)}
    # the diff form: what differs from a default config
    assert json.loads(ours.to_json_string()) == {k: v for k, v in json.loads(theirs.to_json_string()).items()
                                                 if k != "transformers_version"}
    assert json.loads(ours.to_json_string(use_diff=False))["vocab_size"] == 99
    ours.to_json_file(tmp_path / "a.json")
    theirs.to_json_file(tmp_path / "b.json")
    assert ledviz.LEDConfig.from_json_file(tmp_path / "a.json") == ours
    assert ledviz.LEDConfig.from_json_file(tmp_path / "b.json").to_dict()["id2label"] == mine["id2label"]
    for c in (ours, theirs):
        c.update({"d_model": 32, "hidden_size": 64, "num_labels": 4, "attention_window": 8})
    assert (ours.d_model, ours.num_labels, ours.attention_window) == (theirs.d_model, theirs.num_labels, 8) == (64, 4, 8)


def test_every_generic_setting_is_kept_as_given():
    """The settings every transformers config takes, with non-default values, read back as given."""
    common = {
        "return_dict": False, "output_hidden_states": True, "torchscript": True, "use_bfloat16": True,
        "tf_legacy_loss": True, "pruned_heads": {"a": 1}, "tie_word_embeddings": False, "is_decoder": True,
        "cross_attention_hidden_size": 128, "add_cross_attention": True, "tie_encoder_decoder": True,
        "max_length": 50, "min_length": 3, "do_sample": True, "early_stopping": True, "num_beams": 3,
        "num_beam_groups": 3, "diversity_penalty": 0.5, "temperature": 2.0, "top_k": 10, "top_p": 0.7,
        "typical_p": 0.2, "repetition_penalty": 0.8, "length_penalty": 0.8, "no_repeat_ngram_size": 5,
        "encoder_no_repeat_ngram_size": 5, "bad_words_ids": [1, 2, 3], "num_return_sequences": 3,
        "chunk_size_feed_forward": 5, "output_scores": True, "return_dict_in_generate": True,
        "forced_bos_token_id": 2, "forced_eos_token_id": 3, "remove_invalid_values": True,
        "architectures": ["BertModel"], "finetuning_task": "translation", "id2label": {0: "label"},
        "label2id": {"label": "0"}, "tokenizer_class": "BertTokenizerFast", "prefix": "prefix", "bos_token_id": 6,
        "pad_token_id": 7, "eos_token_id": 8, "sep_token_id": 9, "decoder_start_token_id": 10,
        "exponential_decay_length_penalty": (5, 1.01), "suppress_tokens": [0, 1], "begin_suppress_tokens": 2,
        "task_specific_params": {"translation": "some_params"}, "problem_type": "regression",
    }
    ours, theirs = ledviz.LEDConfig(dtype="float16", **common), transformers.LEDConfig(dtype="float16", **common)
    for key, value in common.items():
        assert getattr(ours, key) == getattr(theirs, key) == value, key
    assert ours.dtype == theirs.dtype == torch.float16
    again = ledviz.LEDConfig.from_dict(json.loads(ours.to_json_string()))
    assert again.num_beams == 3 and again.label2id == {"label": "0"} and again.problem_type == "regression"
    with pytest.raises(ledviz.ConfigError, match="problem_type='regresion'"):
        ledviz.LEDConfig(problem_type="regresion")


# ---- from_pretrained: dtype -------------------------------------------------------------------------

@pytest.mark.parametrize("arg", ["dtype", "torch_dtype"])
@pytest.mark.parametrize("value", [torch.float16, "bfloat16", "float32"])
def test_dtype_argument(tmp_path, arg, value):
    make_reference("LEDForConditionalGeneration", tmp_path)
    ours = ledviz.LEDForConditionalGeneration.from_pretrained(tmp_path, **{arg: value})
    theirs = transformers.LEDForConditionalGeneration.from_pretrained(tmp_path, **{arg: value})
    assert ours.dtype == theirs.dtype and ours.config.dtype == theirs.config.dtype == theirs.dtype
    assert ours.final_logits_bias.dtype == theirs.final_logits_bias.dtype


def test_dtype_auto_reads_the_checkpoint_config(tmp_path):
    ref = make_reference("LEDForConditionalGeneration", tmp_path / "f32")
    ref.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    for folder in ("f32", "bf16"):
        ours = ledviz.LEDForConditionalGeneration.from_pretrained(tmp_path / folder, dtype="auto")
        theirs = transformers.LEDForConditionalGeneration.from_pretrained(tmp_path / folder, dtype="auto")
        assert ours.dtype == theirs.dtype
        # the default is float32 whatever the checkpoint holds
        assert ledviz.LEDForConditionalGeneration.from_pretrained(tmp_path / folder).dtype == torch.float32
    # a config.json that says float16 wins over the weights' dtype, as in transformers
    cfg = json.loads((tmp_path / "bf16" / "config.json").read_text())
    cfg["dtype"] = "float16"
    (tmp_path / "bf16" / "config.json").write_text(json.dumps(cfg))
    assert ledviz.LEDModel.from_pretrained(tmp_path / "bf16", dtype="auto").dtype == \
        transformers.LEDModel.from_pretrained(tmp_path / "bf16", dtype="auto").dtype == torch.float16


@pytest.mark.parametrize("bad", ["float17", 5, torch.int8, object()])
def test_dtype_that_is_not_a_dtype_is_named(tmp_path, bad):
    make_reference("LEDModel", tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        ledviz.LEDModel.from_pretrained(tmp_path, dtype=bad)
    with pytest.raises(ValueError, match="torch_dtype"):
        ledviz.LEDModel.from_pretrained(tmp_path, torch_dtype=bad)


# ---- from_pretrained: loading info -------------------------------------------------------------------

@pytest.fixture
def damaged(tmp_path):
    """A generation checkpoint with one weight missing and two that no LED has."""
    from safetensors.torch import load_file, save_file

    make_reference("LEDForConditionalGeneration", tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["led.encoder.layers.1.fc2.bias"]
    state["led.encoder.layers.9.fc2.bias"] = torch.zeros(16)
    state["foo.bar"] = torch.zeros(2)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    return tmp_path


@pytest.mark.parametrize("cls_name", CLASSES)
def test_output_loading_info_lists_the_same_keys_as_transformers(damaged, cls_name):
    ours, info = getattr(ledviz, cls_name).from_pretrained(damaged, output_loading_info=True)
    theirs, ref = getattr(transformers, cls_name).from_pretrained(damaged, output_loading_info=True)
    assert set(info) == set(ref) == {"missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"}
    for key in info:
        assert sorted(info[key]) == sorted(ref[key]), key
    # the weights that were there are the checkpoint's; the missing bias starts at zero (as a fresh Linear's)
    bias = "encoder.layers.1.fc2.bias"
    prefix = "" if cls_name == "LEDModel" else "led."
    assert torch.equal(ours.get_submodule(prefix + "encoder.layers.1.fc2").bias, torch.zeros(16))
    w = prefix + "encoder.layers.1.fc2.weight"
    assert torch.equal(ours.state_dict()[w], theirs.state_dict()[w])
    assert bias not in ours.loading_info or True
    # without asking for the info the same checkpoint is refused, naming the keys
    with pytest.raises(ledviz.CheckpointError, match=r"encoder\.layers\.1\.fc2\.bias.*output_loading_info"):
        getattr(ledviz, cls_name).from_pretrained(damaged)


def test_clean_checkpoint_reports_nothing(tmp_path):
    make_reference("LEDForConditionalGeneration", tmp_path)
    for cls_name in CLASSES:
        _, info = getattr(ledviz, cls_name).from_pretrained(tmp_path, output_loading_info=True)
        _, ref = getattr(transformers, cls_name).from_pretrained(tmp_path, output_loading_info=True)
        assert {k: sorted(v) for k, v in info.items()} == {k: sorted(v) for k, v in ref.items()}, cls_name


def test_mismatched_sizes(tmp_path):
    make_reference("LEDForSequenceClassification", tmp_path, num_labels=2)
    with pytest.raises(ledviz.CheckpointError, match=r"classification_head\.out_proj\.bias.*ignore_mismatched_sizes"):
        ledviz.LEDForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    ours, info = ledviz.LEDForSequenceClassification.from_pretrained(
        tmp_path, num_labels=3, ignore_mismatched_sizes=True, output_loading_info=True)
    _, ref = transformers.LEDForSequenceClassification.from_pretrained(
        tmp_path, num_labels=3, ignore_mismatched_sizes=True, output_loading_info=True)
    assert info == ref
    assert ours.classification_head.out_proj.weight.shape == (3, 16) and ours.config.num_labels == 3


# ---- from_pretrained: config overrides and unknown arguments ---------------------------------------

@pytest.mark.parametrize("cls_name", CLASSES)
def test_config_overrides_reach_model_and_config(tmp_path, cls_name, batch):
    make_reference("LEDModel", tmp_path)
    overrides = dict(attention_window=8, output_attentions=True, num_labels=3, dropout=0.0)
    ours = getattr(ledviz, cls_name).from_pretrained(tmp_path, init_missing_heads=True, **overrides)
    theirs = getattr(transformers, cls_name).from_pretrained(tmp_path, **overrides)
    assert ours.config.attention_windows() == list(theirs.config.attention_window) == [8, 8]
    assert ours.config.output_attentions is theirs.config.output_attentions is True
    # (the question-answering head always has two outputs, start and end: both set num_labels to 2)
    labels = 2 if cls_name == "LEDForQuestionAnswering" else 3
    assert ours.config.num_labels == theirs.config.num_labels == labels and ours.config.dropout == 0.0
    config = ledviz.LEDConfig.from_pretrained(tmp_path, **overrides)
    ref = transformers.LEDConfig.from_pretrained(tmp_path, **overrides)
    assert (config.attention_window, config.output_attentions, config.num_labels) == \
        (ref.attention_window, ref.output_attentions, ref.num_labels)
    # the model follows its config: attentions come back without asking, with the 8-wide window (4 + 4 + 1)
    ids, am, gm = batch
    with torch.no_grad():
        out = ours(ids, attention_mask=am, global_attention_mask=gm)
    assert out.encoder_attentions is not None and out.encoder_attentions[0].shape[-1] == 2 + 8 + 1


def test_config_overrides_with_return_unused_kwargs(tmp_path):
    make_reference("LEDModel", tmp_path)
    config, unused = ledviz.LEDConfig.from_pretrained(tmp_path, num_beams=3, foo=1, return_unused_kwargs=True)
    ref, ref_unused = transformers.LEDConfig.from_pretrained(tmp_path, num_beams=3, foo=1, return_unused_kwargs=True)
    assert unused == ref_unused == {"foo": 1} and config.num_beams == ref.num_beams == 3


@pytest.mark.parametrize("typo", ["torch_dtyp", "atention_window", "outputs_attentions", "device_mapp"])
def test_unknown_keyword_is_a_type_error_naming_it(tmp_path, typo):
    make_reference("LEDForConditionalGeneration", tmp_path)
    with pytest.raises(TypeError, match=typo):
        ledviz.LEDForConditionalGeneration.from_pretrained(tmp_path, **{typo: torch.float16})
    with pytest.raises(TypeError, match=typo):
        ledviz.LEDConfig.from_pretrained(tmp_path, **{typo: 1})
    with pytest.raises(TypeError):
        transformers.LEDForConditionalGeneration.from_pretrained(tmp_path, **{typo: torch.float16})


def test_num_labels_zero_and_disagreeing_labels(tmp_path):
    make_reference("LEDForSequenceClassification", tmp_path)
    with pytest.raises(ledviz.ConfigError, match="num_labels=0"):
        ledviz.LEDForSequenceClassification.from_pretrained(tmp_path, num_labels=0)
    with pytest.raises(ValueError, match="num_labels=3"):
        ledviz.LEDConfig.from_pretrained(tmp_path, num_labels=3, id2label={0: "a"})


def test_a_config_object_or_path_and_positional_arguments(tmp_path):
    make_reference("LEDModel", tmp_path)
    config = ledviz.LEDConfig.from_pretrained(tmp_path)
    model = ledviz.LEDModel.from_pretrained(tmp_path, config=config, output_hidden_states=True)
    assert model.config.output_hidden_states and not config.output_hidden_states  # the caller's config is not changed
    assert ledviz.LEDModel.from_pretrained(tmp_path, config=str(tmp_path)).config == config
    with pytest.raises(TypeError, match="positional"):
        ledviz.LEDModel.from_pretrained(tmp_path, config)


# ---- from_pretrained: where the files are --------------------------------------------------------------

def test_subfolder(tmp_path, batch):
    make_reference("LEDForConditionalGeneration", tmp_path / "repo" / "model")
    ours = ledviz.LEDForConditionalGeneration.from_pretrained(tmp_path / "repo", subfolder="model")
    theirs = transformers.LEDForConditionalGeneration.from_pretrained(tmp_path / "repo", subfolder="model")
    ids, am, gm = batch
    with torch.no_grad():
        assert torch.allclose(ours(ids, attention_mask=am).logits, theirs(ids, attention_mask=am).logits, atol=1e-5)
    assert ledviz.LEDConfig.from_pretrained(tmp_path / "repo", subfolder="model").d_model == 16
    with pytest.raises(ledviz.CheckpointError, match="subfolder 'nope'"):
        ledviz.LEDForConditionalGeneration.from_pretrained(tmp_path / "repo", subfolder="nope")
    with pytest.raises(ledviz.CheckpointError, match="subfolder 'nope'"):
        ledviz.LEDConfig.from_pretrained(tmp_path / "repo", subfolder="nope")


def test_use_safetensors_and_bin_files(tmp_path):
    make_reference("LEDModel", tmp_path / "bin", safe=False)
    assert isinstance(ledviz.LEDModel.from_pretrained(tmp_path / "bin", use_safetensors=False), ledviz.LEDModel)
    with pytest.raises(ledviz.CheckpointError, match="use_safetensors=True"):
        ledviz.LEDModel.from_pretrained(tmp_path / "bin", use_safetensors=True)
    model = ledviz.LEDModel.from_pretrained(tmp_path / "bin", low_cpu_mem_usage=True)
    model.save_pretrained(tmp_path / "again", safe_serialization=False)
    assert (tmp_path / "again" / "pytorch_model.bin").exists()
    assert transformers.LEDModel.from_pretrained(tmp_path / "again").config.d_model == 16


def _hub_with_revisions(tmp_path, repo_id):
    """A Hub-shaped cache with the model at refs/main in a subfolder, and a second revision 'v2' (other weights)."""
    import os
    import shutil

    make_reference("LEDForConditionalGeneration", tmp_path / "src" / "sub", seed=0)
    cache = _hub_cache(tmp_path, repo_id, tmp_path / "src" / "sub")
    repo = tmp_path / "hub" / ("models--" + repo_id.replace("/", "--"))
    main = (repo / "refs" / "main").read_text()
    # the same files under a subfolder of the main snapshot
    (repo / "snapshots" / main / "sub").mkdir()
    for f in os.listdir(tmp_path / "src" / "sub"):
        shutil.copy(tmp_path / "src" / "sub" / f, repo / "snapshots" / main / "sub" / f)
    # revision v2: another model
    make_reference("LEDForConditionalGeneration", tmp_path / "src2", seed=5)
    other = "fedcba9876543210fedcba9876543210fedcba98"
    shutil.copytree(tmp_path / "src2", repo / "snapshots" / other)
    (repo / "refs" / "v2").write_text(other)
    return cache, other


@pytest.mark.slow
def test_hub_arguments_from_the_cache_offline(tmp_path, monkeypatch, batch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo_id = "tiny-org/tiny-led"
    cache, other = _hub_with_revisions(tmp_path, repo_id)
    ids, am, _ = batch
    common = dict(cache_dir=cache, token="hf_not_used_offline", local_files_only=True)
    for kw in ({}, {"subfolder": "sub"}, {"revision": "v2"}, {"revision": other}, {"force_download": False}):
        ours = ledviz.LEDForConditionalGeneration.from_pretrained(repo_id, **common, **kw)
        theirs = transformers.LEDForConditionalGeneration.from_pretrained(repo_id, **common, **kw)
        with torch.no_grad():
            assert torch.allclose(ours(ids, attention_mask=am).logits, theirs(ids, attention_mask=am).logits,
                                  atol=1e-5), kw
        assert ledviz.LEDConfig.from_pretrained(repo_id, **common, **kw).to_dict()["d_model"] == 16
    with pytest.raises(ledviz.CheckpointError, match="nope"):
        ledviz.LEDForConditionalGeneration.from_pretrained(repo_id, subfolder="nope", **common)
    with pytest.raises(ledviz.CheckpointError, match="v3"):
        ledviz.LEDForConditionalGeneration.from_pretrained(repo_id, revision="v3", **common)
    # force_download cannot be honoured offline: an error says why, never a silent cached copy
    with pytest.raises(ledviz.CheckpointError):
        ledviz.LEDForConditionalGeneration.from_pretrained(repo_id, force_download=True, cache_dir=cache)


def test_loading_logs_what_started_fresh(damaged, caplog):
    with caplog.at_level(logging.WARNING, logger="ledviz.pretrained"):
        ledviz.LEDModel.from_pretrained(damaged, output_loading_info=True)
    assert "encoder.layers.1.fc2.bias" in caplog.text
