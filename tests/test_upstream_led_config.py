"""transformers' ConfigTester (tests/test_configuration_common.py, 4.57.6), as LED's model test runs
it (`ConfigTester(self, config_class=LEDConfig)`, then `run_common_tests()`), ported and run on
ledviz.LEDConfig, each check next to transformers.LEDConfig doing the same.

Upstream checks with no keyword arguments; each check here also runs with the settings of LED's
model tester (a tiny model) so that the round trips carry values that differ from the defaults."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch

from ledviz.config import LEDConfig
from ledviz.errors import ConfigError

transformers = pytest.importorskip("transformers", reason="transformers (test-only reference) is not installed")
Theirs = transformers.LEDConfig

# LEDModelTester's config (tests/models/led/test_modeling_led.py): the settings a tiny model uses
TINY = dict(vocab_size=99, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=4, decoder_ffn_dim=4, dropout=0.1, attention_dropout=0.1,
            max_encoder_position_embeddings=32, max_decoder_position_embeddings=32, eos_token_id=2,
            pad_token_id=1, bos_token_id=0, attention_window=4)

# every setting transformers' PretrainedConfig has, each with a value other than its default (upstream's
# config_common_kwargs, with values of our own)
COMMON_KWARGS = {
    "return_dict": False, "output_hidden_states": True, "output_attentions": True, "torchscript": True,
    "dtype": "float16", "use_bfloat16": True, "tf_legacy_loss": True, "pruned_heads": {"a": 1},
    "tie_word_embeddings": False, "is_decoder": True, "cross_attention_hidden_size": 128,
    "add_cross_attention": True, "tie_encoder_decoder": True, "max_length": 50, "min_length": 3,
    "do_sample": True, "early_stopping": True, "num_beams": 3, "num_beam_groups": 3, "diversity_penalty": 0.5,
    "temperature": 2.0, "top_k": 10, "top_p": 0.7, "typical_p": 0.2, "repetition_penalty": 0.8,
    "length_penalty": 0.8, "no_repeat_ngram_size": 5, "encoder_no_repeat_ngram_size": 5,
    "bad_words_ids": [1, 2, 3], "num_return_sequences": 3, "chunk_size_feed_forward": 5, "output_scores": True,
    "return_dict_in_generate": True, "forced_bos_token_id": 2, "forced_eos_token_id": 3,
    "remove_invalid_values": True, "architectures": ["BertModel"], "finetuning_task": "translation",
    "id2label": {0: "label"}, "label2id": {"label": "0"}, "tokenizer_class": "BertTokenizerFast",
    "prefix": "prefix", "bos_token_id": 6, "pad_token_id": 7, "eos_token_id": 8, "sep_token_id": 9,
    "decoder_start_token_id": 10, "exponential_decay_length_penalty": (5, 1.01), "suppress_tokens": [0, 1],
    "begin_suppress_tokens": 2, "task_specific_params": {"translation": "some_params"},
    "problem_type": "regression",
}

SETTINGS = [pytest.param({}, id="upstream"), pytest.param(TINY, id="tiny")]


def _comparable(d: dict) -> dict:
    """A to_dict() without what only says which library wrote it."""
    return {k: v for k, v in d.items() if k not in ("transformers_version",)}


def test_common_kwargs_cover_every_generic_setting():
    """COMMON_KWARGS names every setting transformers' PretrainedConfig keeps (as upstream checks its list)."""
    internal = {"is_encoder_decoder", "_name_or_path", "_commit_hash", "_attn_implementation_internal",
                "transformers_version"}
    kept = {k.replace("_output_attentions", "output_attentions") for k in transformers.PretrainedConfig().__dict__}
    assert kept - internal == set(COMMON_KWARGS)


@pytest.mark.parametrize("inputs", SETTINGS)
def test_config_common_properties(inputs):
    props = ["hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size"]
    for cls in (LEDConfig, Theirs):
        config = cls(**inputs)
        for prop in props:
            assert hasattr(config, prop), prop
        for value, name in enumerate(props):  # settable
            setattr(config, name, value)
            assert getattr(config, name) == value, name
    # as constructor arguments; hidden_size=0 is a deliberate difference: LEDConfig checks its sizes
    for value, name in enumerate(props):
        assert getattr(Theirs(**{name: value}), name) == value
        if value == 0:
            with pytest.raises(ConfigError, match=name.replace("hidden_size", "d_model")):
                LEDConfig(**{name: value})
        else:
            assert getattr(LEDConfig(**{name: value}), name) == value
    # the aliases read and set the same fields in both
    config, ref = LEDConfig(**inputs), Theirs(**inputs)
    assert [getattr(config, p) for p in props] == [getattr(ref, p) for p in props]


@pytest.mark.parametrize("inputs", SETTINGS)
def test_config_to_json_string(inputs):
    ours, theirs = json.loads(LEDConfig(**inputs).to_json_string()), json.loads(Theirs(**inputs).to_json_string())
    for key, value in inputs.items():
        assert ours[key] == value == theirs[key]
    # every key transformers writes, ledviz writes with the same value
    assert {k: ours.get(k) for k in _comparable(theirs)} == _comparable(theirs)


@pytest.mark.parametrize("inputs", SETTINGS)
def test_config_to_json_file(inputs, tmp_path):
    for cls in (LEDConfig, Theirs):
        first = cls(**inputs)
        path = os.path.join(tmp_path, f"{cls.__module__}.json")
        first.to_json_file(path)
        assert cls.from_json_file(path).to_dict() == first.to_dict()
    # each reads the other's file to the same settings
    LEDConfig(**inputs).to_json_file(tmp_path / "ours.json")
    Theirs(**inputs).to_json_file(tmp_path / "theirs.json")
    assert LEDConfig.from_json_file(tmp_path / "theirs.json") == LEDConfig(**inputs)
    ref = _comparable(Theirs.from_json_file(str(tmp_path / "ours.json")).to_dict())
    assert ref == _comparable(Theirs(**inputs).to_dict())


@pytest.mark.parametrize("inputs", SETTINGS)
def test_config_from_and_save_pretrained(inputs, tmp_path):
    for cls in (LEDConfig, Theirs):
        first = cls(**inputs)
        folder = tmp_path / cls.__module__
        first.save_pretrained(folder)
        assert cls.from_pretrained(folder).to_dict() == first.to_dict()
        with pytest.raises(OSError):
            cls.from_pretrained(f".{folder}")


@pytest.mark.parametrize("inputs", SETTINGS)
def test_config_from_and_save_pretrained_subfolder(inputs, tmp_path):
    for cls in (LEDConfig, Theirs):
        first = cls(**inputs)
        first.save_pretrained(tmp_path / cls.__module__ / "test")
        assert cls.from_pretrained(tmp_path / cls.__module__, subfolder="test").to_dict() == first.to_dict()


def test_config_from_and_save_pretrained_composite():
    """Upstream loads each sub-config on its own; LED has none (sub_configs is empty in both)."""
    assert LEDConfig().sub_configs == Theirs().sub_configs == {}


def test_config_from_pretrained_custom_kwargs():
    """Upstream checks composite configs only: it returns when get_text_config() is the config itself."""
    for cls in (LEDConfig, Theirs):
        config = cls(**TINY)
        assert config.get_text_config() is config


@pytest.mark.parametrize("inputs", SETTINGS)
def test_config_with_num_labels(inputs):
    for cls in (LEDConfig, Theirs):
        config = cls(**inputs, num_labels=5)
        assert len(config.id2label) == 5 and len(config.label2id) == 5
        config.num_labels = 3
        assert len(config.id2label) == 3 and len(config.label2id) == 3
    assert LEDConfig(num_labels=5).id2label == Theirs(num_labels=5).id2label


def test_config_can_be_init_without_params():
    assert LEDConfig.has_no_defaults_at_init is Theirs.has_no_defaults_at_init is False
    assert LEDConfig() is not None
    ours, theirs = LEDConfig().to_dict(), _comparable(Theirs().to_dict())
    shared = (ours.keys() & theirs.keys()) - {"_name_or_path"}
    assert len(shared) > 30 and {k: ours[k] for k in shared} == {k: theirs[k] for k in shared}


def test_config_arguments_init():
    ours, theirs = LEDConfig(**copy.deepcopy(COMMON_KWARGS)), Theirs(**copy.deepcopy(COMMON_KWARGS))
    wrong = []
    for key, value in COMMON_KWARGS.items():
        expected = torch.float16 if key == "dtype" else value
        for name, config in (("ledviz", ours), ("transformers", theirs)):
            if getattr(config, key) != expected:
                wrong.append((name, key, getattr(config, key), expected))
    assert not wrong, wrong
    # torch_dtype, the older name, too
    assert LEDConfig(torch_dtype="float16").dtype == Theirs(torch_dtype="float16").dtype == torch.float16
