"""Drop-in for transformers users, part 3: the model methods they call (embeddings, resizing,
counting, tying, can_generate) and training (every gradient, dropout in train mode), against
transformers 4.57 on tiny checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ledviz
from conftest import make_reference

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
CLASSES = ["LEDModel", "LEDForConditionalGeneration", "LEDForSequenceClassification", "LEDForQuestionAnswering"]


def _pair(tmp_path, cls_name, **overrides):
    ref = make_reference(cls_name, tmp_path, **overrides)
    return getattr(ledviz, cls_name).from_pretrained(tmp_path), ref


@pytest.mark.parametrize("cls_name", CLASSES)
def test_embedding_accessors(tmp_path, cls_name):
    ours, theirs = _pair(tmp_path, cls_name)
    emb = ours.get_input_embeddings()
    assert isinstance(emb, nn.Embedding) and torch.equal(emb.weight, theirs.get_input_embeddings().weight)
    head, ref_head = ours.get_output_embeddings(), theirs.get_output_embeddings()
    assert (head is None) == (ref_head is None)
    if head is not None:
        assert torch.equal(head.weight, ref_head.weight) and head.weight is emb.weight
    # a new table reaches the encoder and the decoder
    new = nn.Embedding(99, 16, padding_idx=1)
    ours.set_input_embeddings(new)
    assert ours.get_input_embeddings() is new
    assert ours.get_encoder().embed_tokens is new and ours.get_decoder().embed_tokens is new
    if head is None:
        with pytest.raises(AttributeError, match="no output embeddings"):
            ours.set_output_embeddings(nn.Linear(16, 99))
    else:
        out = nn.Linear(16, 99, bias=False)
        ours.set_output_embeddings(out)
        assert ours.get_output_embeddings() is out
    assert ours.get_encoder().get_input_embeddings() is new


@pytest.mark.parametrize("cls_name", CLASSES)
def test_main_input_name_can_generate_num_parameters(tmp_path, cls_name):
    ours, theirs = _pair(tmp_path, cls_name)
    assert ours.main_input_name == theirs.main_input_name == "input_ids"
    assert ours.can_generate() == theirs.can_generate() == (cls_name == "LEDForConditionalGeneration")
    assert getattr(ledviz, cls_name).can_generate() == ours.can_generate()
    for kw in ({}, {"only_trainable": True}, {"exclude_embeddings": True}):
        assert ours.num_parameters(**kw) == theirs.num_parameters(**kw), kw
    for p in ours.get_encoder().parameters():
        p.requires_grad_(False)
    for p in getattr(theirs, "led", theirs).get_encoder().parameters():
        p.requires_grad_(False)
    assert ours.num_parameters(only_trainable=True) == theirs.num_parameters(only_trainable=True)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("mean_resizing", [True, False])
@pytest.mark.parametrize("new_size, multiple", [(110, None), (90, None), (None, 32), (101, 8)])
def test_resize_token_embeddings(tmp_path, tied, mean_resizing, new_size, multiple, batch):
    ours, theirs = _pair(tmp_path, "LEDForConditionalGeneration", tie_word_embeddings=tied)
    with torch.no_grad():
        ours.final_logits_bias.normal_(generator=torch.Generator().manual_seed(3))
        theirs.final_logits_bias.copy_(ours.final_logits_bias)
    emb_before = ours.get_input_embeddings()
    results = []
    for model in (ours, theirs):
        torch.manual_seed(7)  # the new rows are drawn from the global generator, in the same order
        results.append(model.resize_token_embeddings(new_size, pad_to_multiple_of=multiple,
                                                     mean_resizing=mean_resizing))
    emb, ref = results
    expected = ref.weight.shape[0]
    assert emb is emb_before and emb.num_embeddings == expected and emb.padding_idx == ref.padding_idx
    assert torch.equal(emb.weight, ref.weight), "old rows kept and new rows drawn as transformers draws them"
    assert ours.config.vocab_size == theirs.config.vocab_size == expected
    assert torch.equal(ours.final_logits_bias, theirs.final_logits_bias)
    assert torch.equal(ours.lm_head.weight, theirs.lm_head.weight)
    assert (ours.lm_head.weight is emb.weight) == tied
    assert ours.get_encoder().embed_tokens is emb and ours.get_decoder().embed_tokens is emb
    ids, am, gm = batch
    with torch.no_grad():
        a = ours(ids, attention_mask=am, global_attention_mask=gm).logits
        b = theirs(ids, attention_mask=am, global_attention_mask=gm).logits
    assert a.shape[-1] == expected and torch.allclose(a, b, atol=1e-5)


def test_resize_without_arguments_and_bad_sizes(tmp_path):
    ours, _ = _pair(tmp_path, "LEDModel")
    assert ours.resize_token_embeddings() is ours.shared and ours.config.vocab_size == 99
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="new_num_tokens"):
            ours.resize_token_embeddings(bad)


def test_tie_weights_reties_after_replacing_the_table(tmp_path):
    ours, _ = _pair(tmp_path, "LEDForConditionalGeneration")
    ours.set_input_embeddings(nn.Embedding(99, 16, padding_idx=1))
    ours.tie_weights()
    assert ours.lm_head.weight is ours.led.shared.weight


# ---- training ------------------------------------------------------------------------------------

def _labels():
    return torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, -100, -100]])


@pytest.mark.parametrize("cls_name", CLASSES)
def test_every_gradient_matches_transformers(tmp_path, cls_name, batch):
    extra = {"num_labels": 3} if cls_name == "LEDForSequenceClassification" else {}
    ref = make_reference(cls_name, tmp_path, dropout=0.0, attention_dropout=0.0, **extra)
    ours = getattr(ledviz, cls_name).from_pretrained(tmp_path)
    ids, am, gm = batch
    kw = dict(input_ids=ids, attention_mask=am, global_attention_mask=gm)
    if cls_name == "LEDForConditionalGeneration":
        kw["labels"] = _labels()
    elif cls_name == "LEDForSequenceClassification":
        ids = ids.clone()
        ids[1, 8], ids[1, 5] = 7, 2
        kw.update(input_ids=ids, labels=torch.tensor([0, 2]))
    elif cls_name == "LEDForQuestionAnswering":
        kw.update(start_positions=torch.tensor([1, 3]), end_positions=torch.tensor([4, 6]))
    for model in (ours, ref):
        model.train()
        out = model(**kw)
        loss = out.loss if getattr(out, "loss", None) is not None else out.last_hidden_state.pow(2).mean()
        loss.backward()
    theirs = dict(ref.named_parameters())
    mine = dict(ours.named_parameters())
    assert set(theirs) <= set(mine) | {"lm_head.weight"}, set(theirs) - set(mine)
    checked = 0
    for name, p in theirs.items():
        q = mine.get(name, ours.get_output_embeddings().weight if name == "lm_head.weight" else None)
        if p.grad is None:
            assert q.grad is None or not q.grad.any(), f"{name}: a gradient where transformers has none"
            continue
        assert q.grad is not None, f"{name}: no gradient"
        scale = max(1.0, p.grad.abs().max().item())
        diff = (q.grad - p.grad).abs().max().item()
        assert diff <= 2e-5 * scale, f"{name}: gradient differs by {diff:.2e}"
        checked += 1
    assert checked >= len(theirs) - 2


@pytest.mark.slow
@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("which", ["dropout", "attention_dropout", "activation_dropout"])
def test_dropout_in_train_mode_with_or_without_grad(tmp_path, batch, grad, which):
    """Train mode drops out whether or not autograd records, as transformers; eval mode never does.
    Each kind of dropout alone (the others 0), so a path that skipped one of them would show."""
    rates = dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    rates[which] = 0.3
    ref = make_reference("LEDForConditionalGeneration", tmp_path, **rates)
    ours = ledviz.LEDForConditionalGeneration.from_pretrained(tmp_path)
    ids, am, gm = batch
    kw = dict(input_ids=ids, attention_mask=am, global_attention_mask=gm, labels=_labels())
    outputs = {}
    for name, model in (("ours", ours), ("theirs", ref)):
        with torch.set_grad_enabled(grad):
            model.eval()
            plain = model(**kw).logits
            model.train()
            a, b = model(**kw).logits, model(**kw).logits
        outputs[name] = (plain, a, b)
        assert not torch.allclose(a, b), f"{name}: two training passes should differ (dropout)"
        assert not torch.allclose(a, plain), f"{name}: a training pass should differ from eval"
        model.eval()
        with torch.set_grad_enabled(grad):
            assert torch.equal(model(**kw).logits, plain), f"{name}: eval is deterministic"
    # how much dropout changes the logits is alike in both (the same dropout rates in the same places)
    change = {k: (v[1] - v[0]).abs().mean().item() for k, v in outputs.items()}
    assert 0.5 < change["ours"] / change["theirs"] < 2.0, change


def test_dropout_with_dropout_rates_zero_is_eval(tmp_path, batch):
    make_reference("LEDForConditionalGeneration", tmp_path, dropout=0.0, attention_dropout=0.0)
    ours = ledviz.LEDForConditionalGeneration.from_pretrained(tmp_path)
    ids, am, gm = batch
    with torch.no_grad():
        plain = ours(ids, attention_mask=am, global_attention_mask=gm).logits
        ours.train()
        trained = ours(ids, attention_mask=am, global_attention_mask=gm).logits
    assert torch.allclose(plain, trained, atol=1e-5)


def test_from_config_and_attn_implementation(tmp_path):
    make_reference("LEDModel", tmp_path)
    config = ledviz.LEDConfig.from_pretrained(tmp_path)
    model = ledviz.LEDForConditionalGeneration._from_config(config, attn_implementation="eager", dtype=torch.float16)
    assert model.dtype == torch.float16 and model.config is not config
    assert ledviz.LEDModel.from_pretrained(tmp_path, attn_implementation="eager").config.d_model == 16
    for call in (lambda: ledviz.LEDModel._from_config(config, attn_implementation="flex_attention"),
                 lambda: ledviz.LEDModel.from_pretrained(tmp_path, attn_implementation="flash_attention_2")):
        with pytest.raises(ValueError, match="attn_implementation.*'eager'.*'blocked', 'reference'"):
            call()


def test_attn_implementation_picks_ledvizs_own_paths(tmp_path, batch):
    """attn_implementation also takes ledviz's own implementations: every encoder layer of the model
    gets it, and "reference", "blocked" and "eager" compute the same attentions."""
    make_reference("LEDModel", tmp_path)
    ids, am, gm = batch

    def implementations(model):
        return {layer.self_attn.longformer_self_attn.implementation for layer in model.get_encoder().layers}

    outputs = {}
    for name in ("eager", "blocked", "reference"):
        model = ledviz.LEDModel.from_pretrained(tmp_path, attn_implementation=name)
        assert implementations(model) == {"blocked" if name == "eager" else name}
        with torch.no_grad():
            outputs[name] = model(ids, attention_mask=am, global_attention_mask=gm, output_attentions=True)
    for name in ("blocked", "reference"):
        for got, want in zip(outputs[name].encoder_attentions, outputs["eager"].encoder_attentions):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    config = ledviz.LEDConfig.from_pretrained(tmp_path)
    model = ledviz.LEDForQuestionAnswering._from_config(config, attn_implementation="reference")
    assert implementations(model.led) == {"reference"}


def test_encoder_and_decoder_save_and_load_alone(tmp_path, batch):
    """As transformers' own LED tests do: the encoder and the decoder saved and loaded as models of their own."""
    make_reference("LEDModel", tmp_path / "full")
    model = ledviz.LEDModel.from_pretrained(tmp_path / "full")
    ids, am, gm = batch
    with torch.no_grad():
        out = model(ids, attention_mask=am, global_attention_mask=gm)
        model.get_encoder().save_pretrained(tmp_path / "enc")
        encoder = ledviz.LEDEncoder.from_pretrained(tmp_path / "enc")
        assert torch.equal(encoder(ids, attention_mask=am, global_attention_mask=gm)[0], out.encoder_last_hidden_state)
        model.get_decoder().save_pretrained(tmp_path / "dec")
        decoder = ledviz.LEDDecoder.from_pretrained(tmp_path / "dec")
        dec_ids = ledviz.shift_tokens_right(ids, 1, 2)
        again = decoder(input_ids=dec_ids, encoder_hidden_states=out.encoder_last_hidden_state,
                        encoder_attention_mask=am)[0]
    assert torch.equal(again, out.last_hidden_state)


def test_question_answering_keeps_two_named_labels_and_sets_others_to_two():
    import transformers as tf

    for labels in ({0: "start", 1: "end"}, {0: "a", 1: "b", 2: "c"}):
        kw = dict(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                  encoder_ffn_dim=8, decoder_ffn_dim=8, vocab_size=50, attention_window=4, id2label=labels)
        ours = ledviz.LEDForQuestionAnswering(ledviz.LEDConfig(**kw)).config
        theirs = tf.LEDForQuestionAnswering(tf.LEDConfig(**kw)).config
        assert ours.id2label == theirs.id2label and ours.num_labels == theirs.num_labels == 2
        # (label2id follows id2label here; transformers leaves it None: the README's listed difference)
        assert ours.label2id == {v: k for k, v in ours.id2label.items()}
