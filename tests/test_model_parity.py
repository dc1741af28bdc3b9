"""Our LED against transformers 4.57 on tiny random checkpoints: every class, output and attention."""

from __future__ import annotations

import pytest
import torch

import ledviz
from conftest import assert_close, make_reference

CLASSES = ["LEDModel", "LEDForConditionalGeneration", "LEDForSequenceClassification", "LEDForQuestionAnswering"]
WINDOWS = [4, [4, 8], [8, 4, 12]]


def _global_variant(kind: str, global_mask: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor | None:
    g = global_mask.clone()
    if kind == "uneven":  # row 0: two globals, row 1: one
        return g
    if kind == "one_row_none":
        g[1] = 0
        return g
    if kind == "none":
        return None
    if kind == "on_padding":  # a global flag on a padding token: padding wins
        g[1, 11] = 1
        return g
    raise ValueError(kind)


def _valid_global(ref: torch.Tensor, n: int, counts: list[int]) -> list[torch.Tensor]:
    """transformers' global attentions restricted to the real length and each row's own global slots."""
    return [ref[b, :, :n, : counts[b]] for b in range(ref.shape[0])]


def _compare_outputs(ref, ours, n: int, counts: list[int], tag: str):
    for name in ("logits", "start_logits", "end_logits", "last_hidden_state", "encoder_last_hidden_state", "loss"):
        a, b = getattr(ref, name, None), getattr(ours, name, None)
        if a is not None:
            assert b is not None, f"{tag}: {name} missing"
            assert_close(b, a, f"{tag}: {name}")
    for name in ("encoder_hidden_states", "decoder_hidden_states", "decoder_attentions", "cross_attentions",
                 "encoder_attentions"):
        a, b = getattr(ref, name), getattr(ours, name)
        assert b is not None and len(a) == len(b), f"{tag}: {name} has {None if b is None else len(b)} entries"
        for layer, (x, y) in enumerate(zip(a, b)):
            assert_close(y, x, f"{tag}: {name}[{layer}]")
    ref_g, our_g = ref.encoder_global_attentions, ours.encoder_global_attentions
    if max(counts) == 0:
        assert our_g is None and ref_g is None, f"{tag}: global attentions should be None without global tokens"
        return
    for layer, (x, y) in enumerate(zip(ref_g, our_g)):
        assert y.shape[2] == n, f"{tag}: global attentions not trimmed to {n}: {tuple(y.shape)}"
        for b, (xb, yb) in enumerate(zip(_valid_global(x, n, counts), _valid_global(y, n, counts))):
            assert_close(yb, xb, f"{tag}: encoder_global_attentions[{layer}] row {b}")
        for b, c in enumerate(counts):  # unused slots are zero in ours
            assert torch.all(y[b, :, :, c:] == 0), f"{tag}: unused global slots of row {b} are not zero"


@pytest.mark.parametrize("cls_name", CLASSES)
@pytest.mark.parametrize("windows", WINDOWS, ids=str)
@pytest.mark.parametrize("globals_kind", ["uneven", "one_row_none", "none", "on_padding"])
def test_forward_matches_transformers(tmp_path, batch, cls_name, windows, globals_kind):
    layers = 2 if isinstance(windows, int) else len(windows)
    extra = {"num_labels": 3} if cls_name == "LEDForSequenceClassification" else {}
    ref = make_reference(cls_name, tmp_path, attention_window=windows, encoder_layers=layers, **extra)
    ours = getattr(ledviz, cls_name).from_pretrained(tmp_path)
    ids, attention_mask, global_mask = batch
    gm = _global_variant(globals_kind, global_mask, attention_mask)
    kwargs = dict(input_ids=ids, attention_mask=attention_mask, global_attention_mask=gm,
                  output_attentions=True, output_hidden_states=True)
    if cls_name == "LEDForConditionalGeneration":
        kwargs["labels"] = torch.tensor([[5, 6, 7, 2, -100], [8, 9, 2, -100, -100]])
    elif cls_name == "LEDForSequenceClassification":
        ids = ids.clone()
        ids[1, 8] = 7  # one </s> per row, at the end of the real tokens
        ids[1, 5] = 2
        kwargs["input_ids"] = ids
        kwargs["labels"] = torch.tensor([0, 2])
    elif cls_name == "LEDForQuestionAnswering":
        kwargs["start_positions"] = torch.tensor([1, 3])
        kwargs["end_positions"] = torch.tensor([4, 40])  # 40: outside, ignored
    with torch.no_grad():
        a, b = ref(**kwargs), ours(**kwargs)
    keep = attention_mask.bool()
    counts = [0, 0] if gm is None else [int(((gm > 0) & keep)[r].sum()) for r in range(2)]
    _compare_outputs(a, b, ids.shape[1], counts, f"{cls_name} windows={windows} globals={globals_kind}")


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_both_weight_formats_load(tmp_path, batch, safe):
    ref = make_reference("LEDForConditionalGeneration", tmp_path, safe=safe)
    assert (tmp_path / ("model.safetensors" if safe else "pytorch_model.bin")).exists()
    ours = ledviz.LEDForConditionalGeneration.from_pretrained(tmp_path)
    ids, am, gm = batch
    with torch.no_grad():
        assert_close(ours(ids, attention_mask=am, global_attention_mask=gm).logits,
                     ref(ids, attention_mask=am, global_attention_mask=gm).logits, "logits")


def test_base_model_loads_from_generation_checkpoint_and_back(tmp_path, batch):
    """LEDModel reads a checkpoint with the 'led.' prefix, and a task model reads a bare LEDModel one."""
    ref = make_reference("LEDForConditionalGeneration", tmp_path / "gen")
    base = ledviz.LEDModel.from_pretrained(tmp_path / "gen")
    assert "lm_head.weight" in base.loading_info["dropped_heads"] or "final_logits_bias" in base.loading_info["dropped_heads"]
    ids, am, gm = batch
    with torch.no_grad():
        assert_close(base(ids, attention_mask=am, global_attention_mask=gm).last_hidden_state,
                     ref.led(ids, attention_mask=am, global_attention_mask=gm).last_hidden_state, "hidden")
    base.save_pretrained(tmp_path / "bare")
    with pytest.raises(ledviz.CheckpointError, match="init_missing_heads"):
        ledviz.LEDForQuestionAnswering.from_pretrained(tmp_path / "bare")
    qa = ledviz.LEDForQuestionAnswering.from_pretrained(tmp_path / "bare", init_missing_heads=True)
    assert set(qa.loading_info["initialized"]) == {"qa_outputs.weight", "qa_outputs.bias"}
    assert qa.qa_outputs.weight.abs().sum() > 0


def test_transformers_loads_what_we_save(tmp_path, batch):
    import transformers

    make_reference("LEDForConditionalGeneration", tmp_path / "ref")
    ours = ledviz.LEDForConditionalGeneration.from_pretrained(tmp_path / "ref")
    with torch.no_grad():
        ours.final_logits_bias.normal_()  # make sure the bias travels too
    ours.save_pretrained(tmp_path / "ours")
    theirs = transformers.LEDForConditionalGeneration.from_pretrained(tmp_path / "ours").eval()
    ids, am, gm = batch
    with torch.no_grad():
        assert_close(theirs(ids, attention_mask=am, global_attention_mask=gm).logits,
                     ours(ids, attention_mask=am, global_attention_mask=gm).logits, "logits after our save")
    assert theirs.lm_head.weight.data_ptr() == theirs.led.shared.weight.data_ptr()


def test_lm_head_is_tied(tmp_path):
    make_reference("LEDForConditionalGeneration", tmp_path)
    ours = ledviz.LEDForConditionalGeneration.from_pretrained(tmp_path)
    assert ours.lm_head.weight is ours.led.shared.weight
    assert ours.led.encoder.embed_tokens is ours.led.shared and ours.led.decoder.embed_tokens is ours.led.shared


def test_incremental_decoding_with_cache_matches_full_pass(tmp_path, batch):
    make_reference("LEDForConditionalGeneration", tmp_path)
    model = ledviz.LEDForConditionalGeneration.from_pretrained(tmp_path)
    ids, am, gm = batch
    dec = torch.tensor([[2, 0, 7, 9, 11], [2, 0, 5, 6, 8]])
    with torch.no_grad():
        full = model(ids, attention_mask=am, global_attention_mask=gm, decoder_input_ids=dec, use_cache=False).logits
        enc = model.get_encoder()(ids, attention_mask=am, global_attention_mask=gm)
        past, steps = None, []
        for t in range(dec.shape[1]):
            out = model(attention_mask=am, encoder_outputs=enc, decoder_input_ids=dec[:, t : t + 1],
                        past_key_values=past, use_cache=True)
            past = out.past_key_values
            steps.append(out.logits)
    assert_close(torch.cat(steps, dim=1), full, "cached vs full logits")


def test_inputs_embeds_equal_input_ids(tmp_path, batch):
    make_reference("LEDModel", tmp_path)
    model = ledviz.LEDModel.from_pretrained(tmp_path)
    ids, am, gm = batch
    dec = torch.tensor([[2, 0, 7], [2, 0, 5]])
    with torch.no_grad():
        a = model(input_ids=ids, attention_mask=am, global_attention_mask=gm, decoder_input_ids=dec).last_hidden_state
        b = model(inputs_embeds=model.shared(ids), attention_mask=am, global_attention_mask=gm,
                  decoder_inputs_embeds=model.shared(dec)).last_hidden_state
    assert_close(b, a, "inputs_embeds path")


def test_default_decoder_input_is_shifted_input(tmp_path, batch):
    make_reference("LEDModel", tmp_path)
    model = ledviz.LEDModel.from_pretrained(tmp_path)
    ids, am, _ = batch
    shifted = ledviz.shift_tokens_right(ids, 1, 2)
    assert shifted[0, 0] == 2 and torch.equal(shifted[:, 1:], ids[:, :-1])
    with torch.no_grad():
        assert_close(model(ids, attention_mask=am).last_hidden_state,
                     model(ids, attention_mask=am, decoder_input_ids=shifted).last_hidden_state, "shifted default")


def test_encoder_is_callable_alone_and_tuple_outputs(tmp_path, batch):
    make_reference("LEDForConditionalGeneration", tmp_path)
    model = ledviz.LEDForConditionalGeneration.from_pretrained(tmp_path)
    ids, am, gm = batch
    with torch.no_grad():
        enc = model.get_encoder()(ids, attention_mask=am, global_attention_mask=gm, output_attentions=True)
        tup = model.get_encoder()(ids, attention_mask=am, global_attention_mask=gm, output_attentions=True,
                                  return_dict=False)
        full = model(ids, attention_mask=am, global_attention_mask=gm, return_dict=False)
    assert isinstance(enc, ledviz.LEDEncoderBaseModelOutput)
    assert len(tup) == 3 and torch.equal(tup[0], enc.last_hidden_state)
    assert torch.equal(enc["last_hidden_state"], enc[0])
    assert isinstance(full, tuple) and full[0].shape[-1] == model.config.vocab_size
