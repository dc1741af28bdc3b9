"""Config round trips, checkpoints from folders and from a Hub-shaped cache, and every loading error."""

from __future__ import annotations

import json
import time

import pytest
import torch

import ledviz
from conftest import assert_close, make_reference, tiny_kwargs
from hub_cache import _hub_cache  # noqa: F401 (fixtures and helpers shared with other modules)


# ---- config ---------------------------------------------------------------------------------

def test_config_defaults_match_documentation():
    c = ledviz.LEDConfig()
    assert (c.vocab_size, c.d_model, c.encoder_layers, c.decoder_layers) == (50265, 1024, 12, 12)
    assert (c.encoder_attention_heads, c.decoder_attention_heads, c.encoder_ffn_dim, c.decoder_ffn_dim) == (16, 16, 4096, 4096)
    assert (c.max_encoder_position_embeddings, c.max_decoder_position_embeddings) == (16384, 1024)
    assert (c.dropout, c.attention_dropout, c.activation_dropout, c.classifier_dropout) == (0.1, 0.0, 0.0, 0.0)
    assert (c.pad_token_id, c.bos_token_id, c.eos_token_id, c.decoder_start_token_id) == (1, 0, 2, 2)
    assert c.attention_window == 512 and c.attention_windows() == [512] * 12
    assert c.use_cache is True and c.activation_function == "gelu" and c.init_std == 0.02


def test_config_matches_transformers_defaults():
    import transformers

    theirs = transformers.LEDConfig()
    ours = ledviz.LEDConfig()
    for key in ("vocab_size", "d_model", "encoder_layers", "decoder_layers", "encoder_ffn_dim", "decoder_ffn_dim",
                "max_encoder_position_embeddings", "max_decoder_position_embeddings", "dropout", "attention_dropout",
                "activation_dropout", "init_std", "classifier_dropout", "pad_token_id", "bos_token_id", "eos_token_id",
                "decoder_start_token_id", "attention_window", "encoder_layerdrop", "decoder_layerdrop", "num_labels"):
        assert getattr(ours, key) == getattr(theirs, key), key


def test_config_round_trip_keeps_legacy_keys(tmp_path):
    data = tiny_kwargs()
    data.update(model_type="led", extra_pos_embeddings=2, num_beams=4, max_length=512, hidden_size=16,
                num_hidden_layers=2, initializer_range=0.05, attention_probs_dropout_prob=0.2)
    (tmp_path / "config.json").write_text(json.dumps(data))
    c = ledviz.LEDConfig.from_pretrained(tmp_path)
    assert c.init_std == 0.05 and c.attention_dropout == 0.2 and c.hidden_size == 16
    assert c.num_beams == 4 and c.max_length == 512 and c.extra_pos_embeddings == 2
    c.save_pretrained(tmp_path / "out")
    again = ledviz.LEDConfig.from_pretrained(tmp_path / "out")
    assert again == c and again.num_beams == 4


def test_transformers_reads_our_config(tmp_path):
    import transformers

    ledviz.LEDConfig(**tiny_kwargs(attention_window=[4, 6])).save_pretrained(tmp_path)
    theirs = transformers.LEDConfig.from_pretrained(tmp_path)
    assert theirs.attention_window == [4, 6] and theirs.d_model == 16


@pytest.mark.parametrize("window", [0, 3, -2, [4], [4, 5], "8", 7.0])
def test_bad_attention_window_is_named(window):
    with pytest.raises(ledviz.ConfigError, match="attention_window"):
        ledviz.LEDConfig(**tiny_kwargs(attention_window=window))


def test_wrong_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bart", "d_model": 16}))
    with pytest.raises(ledviz.ConfigError, match="model_type='bart'"):
        ledviz.LEDConfig.from_pretrained(tmp_path)


# ---- checkpoint errors ------------------------------------------------------------------------

@pytest.mark.app_install
def test_missing_folder_and_files(tmp_path):
    with pytest.raises(ledviz.CheckpointError, match="there is no config.json in the folder .*: give the folder of "
                                                     "an LED checkpoint"):  # what is wrong, and the fix
        ledviz.LEDModel.from_pretrained(tmp_path)
    ledviz.LEDConfig(**tiny_kwargs()).save_pretrained(tmp_path)
    with pytest.raises(ledviz.CheckpointError, match="no weights found"):
        ledviz.LEDModel.from_pretrained(tmp_path)
    with pytest.raises(ledviz.CheckpointError, match="neither a local folder nor a valid Hub model id"):
        ledviz.LEDModel.from_pretrained(str(tmp_path / "no" / "such" / "dir"))


@pytest.mark.app_install
@pytest.mark.parametrize("name", ["not a valid id!!", "owner/na me", "a--b/model", "-x/model", "x/model.",
                                  "o/" + "n" * 97, "a/b/c"])
def test_invalid_hub_ids_say_what_a_hub_id_looks_like(name):
    from ledviz import pipeline

    with pytest.raises(ledviz.CheckpointError) as err:  # never huggingface_hub's HFValidationError
        pipeline.load_model(name)
    message = str(err.value)
    assert repr(name) in message and "valid Hub model id" in message and "allenai/led-base-16384" in message


@pytest.mark.app_install
def test_valid_hub_id_shapes():
    from ledviz.loading import hub_id_problem

    for name in ["allenai/led-base-16384", "led", "a.b_c-d/e1", "x/y.z"]:
        assert hub_id_problem(name) is None, name


def test_corrupted_config_and_weights(tmp_path):
    make_reference("LEDModel", tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(ledviz.CheckpointError, match="not a readable safetensors file"):
        ledviz.LEDModel.from_pretrained(tmp_path)
    weights.unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a pickle at all")
    with pytest.raises(ledviz.CheckpointError, match="not a readable PyTorch weights file"):
        ledviz.LEDModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{ broken")
    with pytest.raises(ledviz.CheckpointError, match="not valid JSON"):
        ledviz.LEDModel.from_pretrained(tmp_path)


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    make_reference("LEDModel", tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["encoder_ffn_dim"] = 48
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ledviz.CheckpointError, match=r"encoder\.layers\.0\.fc1\.weight. has shape \(32, 16\) in the checkpoint but \(48, 16\)"):
        ledviz.LEDModel.from_pretrained(tmp_path)


def test_missing_and_unexpected_weights_are_listed(tmp_path):
    from safetensors.torch import load_file, save_file

    make_reference("LEDModel", tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["encoder.layers.1.fc2.bias"]
    state["encoder.layers.9.fc2.bias"] = torch.zeros(16)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ledviz.CheckpointError) as err:
        ledviz.LEDModel.from_pretrained(tmp_path)
    assert "encoder.layers.1.fc2.bias" in str(err.value) and "encoder.layers.9.fc2.bias" in str(err.value)


def test_sharded_safetensors(tmp_path, batch):
    from safetensors.torch import load_file, save_file

    ref = make_reference("LEDForConditionalGeneration", tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").unlink()
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    weight_map = {}
    for name, part in shards.items():
        save_file({k: state[k] for k in part}, tmp_path / name, metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    ours = ledviz.LEDForConditionalGeneration.from_pretrained(tmp_path)
    ids, am, gm = batch
    with torch.no_grad():
        assert_close(ours(ids, attention_mask=am, global_attention_mask=gm).logits,
                     ref(ids, attention_mask=am, global_attention_mask=gm).logits, "sharded logits")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_weights(tmp_path, batch, dtype):
    ref = make_reference("LEDForConditionalGeneration", tmp_path)
    ours = ledviz.LEDForConditionalGeneration.from_pretrained(tmp_path, torch_dtype=dtype)
    assert ours.dtype == dtype
    ids, am, gm = batch
    with torch.no_grad():
        out = ours(ids, attention_mask=am, global_attention_mask=gm, output_attentions=True)
        want = ref(ids, attention_mask=am, global_attention_mask=gm).logits
    assert out.logits.dtype == dtype and torch.isfinite(out.logits).all()
    rel = ((out.logits.float() - want).abs().max() / want.abs().max()).item()
    assert rel < 0.05, f"{dtype} logits differ from float32 by {rel:.3f} of their range"
    # saved in reduced precision, read back as "auto"
    ours.save_pretrained(tmp_path / "half")
    again = ledviz.LEDForConditionalGeneration.from_pretrained(tmp_path / "half", torch_dtype="auto")
    assert again.dtype == dtype


# ---- the Hub path ------------------------------------------------------------------------------


def test_loads_a_hub_id_from_the_cache_offline(tmp_path, batch, monkeypatch):
    ref = make_reference("LEDForConditionalGeneration", tmp_path / "src")
    cache = _hub_cache(tmp_path, "tiny-org/tiny-led", tmp_path / "src")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ours = ledviz.LEDForConditionalGeneration.from_pretrained("tiny-org/tiny-led", cache_dir=cache)
    ids, am, gm = batch
    with torch.no_grad():
        assert_close(ours(ids, attention_mask=am, global_attention_mask=gm).logits,
                     ref(ids, attention_mask=am, global_attention_mask=gm).logits, "hub logits")
    assert ledviz.LEDConfig.from_pretrained("tiny-org/tiny-led", cache_dir=cache).d_model == 16


@pytest.mark.app_install
def test_hub_id_not_cached_while_offline_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ledviz.CheckpointError, match="not in the local Hub cache"):
        ledviz.LEDForConditionalGeneration.from_pretrained("allenai/led-base-16384", cache_dir=str(tmp_path))


def _unreachable_hub(monkeypatch):
    """Not offline, but every request fails as a failed name lookup does; returns the list of requests made."""
    import socket

    import requests
    from huggingface_hub import constants

    from ledviz import loading

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(loading, "_reach_seen", {}, raising=False)
    calls = []

    def no_network(self, method, url, *args, **kwargs):
        calls.append((method, url))
        try:
            raise socket.gaierror(-3, "Temporary failure in name resolution")
        except socket.gaierror as e:
            raise requests.ConnectionError(f"Failed to resolve 'huggingface.co' ({e})") from e

    monkeypatch.setattr(requests.Session, "request", no_network)
    return calls


def test_unreachable_hub_fails_fast_after_one_request(tmp_path, monkeypatch):
    # huggingface_hub alone retries 5 times with 1+2+4+8+8 s of waiting before saying anything
    calls = _unreachable_hub(monkeypatch)
    start = time.monotonic()
    with pytest.raises(ledviz.CheckpointError) as err:
        ledviz.LEDForConditionalGeneration.from_pretrained("allenai/led-base-16384", cache_dir=str(tmp_path))
    assert time.monotonic() - start < 3
    assert len(calls) == 1, calls
    msg = str(err.value)
    assert "'allenai/led-base-16384' is not in the local Hub cache" in msg
    assert "name lookup failed" in msg and "HF_HUB_OFFLINE=1" in msg and "local checkpoint folder" in msg


def test_unreachable_hub_still_loads_from_the_cache(tmp_path, batch, monkeypatch):
    ref = make_reference("LEDForConditionalGeneration", tmp_path / "src")
    cache = _hub_cache(tmp_path, "tiny-org/tiny-led", tmp_path / "src")
    calls = _unreachable_hub(monkeypatch)
    start = time.monotonic()
    ours = ledviz.LEDForConditionalGeneration.from_pretrained("tiny-org/tiny-led", cache_dir=cache)
    assert time.monotonic() - start < 3 and len(calls) == 1, calls  # one check for all its files
    ids, am, gm = batch
    with torch.no_grad():
        assert_close(ours(ids, attention_mask=am, global_attention_mask=gm).logits,
                     ref(ids, attention_mask=am, global_attention_mask=gm).logits, "hub logits")


# ---- bad model input ----------------------------------------------------------------------------

def test_input_past_the_position_limit(tmp_path):
    make_reference("LEDModel", tmp_path)
    model = ledviz.LEDModel.from_pretrained(tmp_path)
    with pytest.raises(ledviz.InputError, match="at most 64 tokens"):
        model(torch.ones(1, 70, dtype=torch.long))


def test_mask_shapes_must_match(tmp_path, batch):
    make_reference("LEDModel", tmp_path)
    model = ledviz.LEDModel.from_pretrained(tmp_path)
    ids, am, gm = batch
    with pytest.raises(ledviz.InputError, match="attention_mask has shape"):
        model(ids, attention_mask=am[:, :5])
    with pytest.raises(ledviz.InputError, match="global_attention_mask has shape"):
        model(ids, attention_mask=am, global_attention_mask=gm[:1])
    with pytest.raises(ledviz.InputError, match="empty"):
        model(ids[:, :0])


def test_classification_needs_equal_eos_counts(tmp_path, batch):
    make_reference("LEDForSequenceClassification", tmp_path)
    model = ledviz.LEDForSequenceClassification.from_pretrained(tmp_path)
    ids, am, _ = batch
    ids = ids.clone()
    ids[0, 3] = 2  # row 0 now has two </s>
    with pytest.raises(ledviz.InputError, match="same number of </s>"):
        model(ids, attention_mask=am)


def test_loading_a_checkpoint_does_not_import_torch_dynamo(tmp_path):
    """A model built on the meta device for its checkpoint's weights skips the embeddings' random
    start: torch's normal_ on a meta tensor imports torch._dynamo first, about a second of a fresh
    process's load time (the embedded model loaded in 2.3 s instead of 1.4 s)."""
    import subprocess
    import sys

    make_reference("LEDForConditionalGeneration", tmp_path)
    code = ("import sys, ledviz; m = ledviz.LEDForConditionalGeneration.from_pretrained(sys.argv[1]); "
            "fresh = ledviz.LEDModel(m.config); "  # a model built for training still gets its random start
            "assert fresh.shared.weight.std() > 0 and fresh.shared.weight[m.config.pad_token_id].abs().sum() == 0; "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.app_install
def test_reachability_check_takes_an_httpx_style_session(tmp_path, monkeypatch):
    # huggingface_hub 1.x (what the app's own install takes) hands out an httpx Client: its head() takes
    # no allow_redirects, and its errors are no requests errors. A session of that shape, failing:
    import socket

    from huggingface_hub import constants, utils

    from ledviz import loading

    class TransportError(Exception):  # stands for httpx.TransportError (not an OSError)
        pass

    class Client:
        calls = 0

        def head(self, url, *, timeout=None, follow_redirects=False):
            Client.calls += 1
            try:
                raise socket.gaierror(-3, "Temporary failure in name resolution")
            except socket.gaierror as e:
                raise TransportError("[Errno -3] Temporary failure in name resolution") from e

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(loading, "_reach_seen", {})
    monkeypatch.setattr(utils, "get_session", lambda: Client())
    monkeypatch.setattr(loading, "_transport_errors", lambda: (OSError, TransportError))
    with pytest.raises(ledviz.CheckpointError, match="the name lookup failed"):
        ledviz.LEDForConditionalGeneration.from_pretrained("allenai/led-base-16384", cache_dir=str(tmp_path))
    assert Client.calls == 1
