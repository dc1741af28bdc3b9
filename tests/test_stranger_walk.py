"""What a stranger's walk through the Model, Lab and Corpus study pages found: loading messages (a config
that does not fit the weights, a damaged Hub cache, a typo'd Hub id or folder), global-attention inputs
(every k, position ranges), the lab's settings file and timing note, and a damaged study folder."""

from __future__ import annotations

import json
import os

import pytest
import torch

import ledviz
from conftest import make_reference
from hub_cache import _hub_cache
from ledviz import loading
from ledviz.pretrained import config_mismatches


# ---- loading ----------------------------------------------------------------------------------------

def test_config_mismatches_lists_every_field_by_key():
    cfg = ledviz.LEDConfig(vocab_size=50, d_model=16, encoder_layers=2, decoder_layers=1, encoder_ffn_dim=32,
                           decoder_ffn_dim=32, max_encoder_position_embeddings=64, max_decoder_position_embeddings=32,
                           encoder_attention_heads=2, decoder_attention_heads=2, attention_window=4)
    state = {"led.shared.weight": torch.zeros(40, 16), "final_logits_bias": torch.zeros(1, 40),
             "led.encoder.embed_positions.weight": torch.zeros(128, 16),
             "led.encoder.layers.0.fc1.weight": torch.zeros(24, 16),
             "led.encoder.layers.2.fc1.weight": torch.zeros(24, 16),
             "led.decoder.layers.0.fc1.weight": torch.zeros(32, 16)}
    lines = config_mismatches(cfg, state)
    assert lines == ["encoder_ffn_dim: 32 in config.json, 24 in the weights",
                     "encoder_layers: 2 in config.json, 3 in the weights",
                     "max_encoder_position_embeddings: 64 in config.json, 128 in the weights",
                     "vocab_size: 50 in config.json, 40 in the weights"]
    fitting = {"led.shared.weight": torch.zeros(50, 16), "led.encoder.layers.1.fc1.weight": torch.zeros(32, 16)}
    assert config_mismatches(cfg, fitting) == []


def test_a_config_that_does_not_fit_names_its_fields(tmp_path):
    make_reference("LEDForConditionalGeneration", tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["vocab_size"] += 10
    cfg["encoder_ffn_dim"] *= 2
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ledviz.CheckpointError) as err:
        ledviz.LEDForConditionalGeneration.from_pretrained(str(tmp_path / "ck"))
    message = str(err.value)
    assert message.startswith("config.json does not fit the weights (2 fields: ")
    assert f"vocab_size: {cfg['vocab_size']} in config.json, {cfg['vocab_size'] - 10} in the weights" in message
    assert f"encoder_ffn_dim: {cfg['encoder_ffn_dim']} in config.json" in message


def test_a_damaged_hub_cache_names_the_folder_to_delete(tmp_path, monkeypatch):
    make_reference("LEDForConditionalGeneration", tmp_path / "src")
    cache = _hub_cache(tmp_path, "tiny-org/tiny-led", tmp_path / "src")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = next((tmp_path / "hub").rglob("model.safetensors"))
    os.truncate(os.path.realpath(snapshot), 100)  # an interrupted download
    with pytest.raises(ledviz.CheckpointError) as err:
        ledviz.LEDForConditionalGeneration.from_pretrained("tiny-org/tiny-led", cache_dir=cache)
    folder = os.path.join(cache, "models--tiny-org--tiny-led")
    assert f"delete the folder {folder} and load the model again" in str(err.value)
    assert loading.hub_cache_folder(str(snapshot)) == folder
    assert loading.hub_cache_folder(str(tmp_path / "src" / "model.safetensors")) is None


def test_a_typo_gets_close_names_among_cached_repos_and_sibling_folders(tmp_path, monkeypatch):
    make_reference("LEDForConditionalGeneration", tmp_path / "src")
    cache = _hub_cache(tmp_path, "tiny-org/tiny-led", tmp_path / "src")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert loading.cached_repos(cache) == ["tiny-org/tiny-led"]
    with pytest.raises(ledviz.CheckpointError, match=r"did you mean 'tiny-org/tiny-led'\?"):
        ledviz.LEDConfig.from_pretrained("tiny-org/tiny-lde", cache_dir=cache)
    with pytest.raises(ledviz.CheckpointError) as err:  # nothing close: no suggestion
        ledviz.LEDConfig.from_pretrained("someone/else", cache_dir=cache)
    assert "did you mean" not in str(err.value)
    (tmp_path / "checkpoints" / "led-demo").mkdir(parents=True)
    typo = str(tmp_path / "checkpoints" / "led-dmeo") + "?"  # a path that is no Hub id either
    with pytest.raises(ledviz.CheckpointError, match="did you mean .*led-demo'"):
        ledviz.LEDConfig.from_pretrained(typo, cache_dir=cache)
    assert loading.did_you_mean(str(tmp_path / "checkpoints" / "led-demo2"), hub=False) == \
        f"did you mean {str(tmp_path / 'checkpoints' / 'led-demo')!r}?"
    assert loading.did_you_mean(str(tmp_path / "nowhere" / "x")) is None
