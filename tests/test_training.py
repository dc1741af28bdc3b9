"""Training our LED: dropout, gradients everywhere, gradient checkpointing, the loss going down."""

from __future__ import annotations

import torch

import ledviz
from conftest import tiny_kwargs


def _model(**overrides) -> ledviz.LEDForConditionalGeneration:
    torch.manual_seed(0)
    return ledviz.LEDForConditionalGeneration(ledviz.LEDConfig(**tiny_kwargs(**overrides)))


def _inputs(batch):
    ids, am, gm = batch
    labels = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, -100, -100]])
    return dict(input_ids=ids, attention_mask=am, global_attention_mask=gm, labels=labels)


def test_dropout_only_in_train_mode(batch):
    model = _model()
    kw = _inputs(batch)
    model.train()
    a, b = model(**kw).logits, model(**kw).logits
    assert not torch.allclose(a, b), "dropout should make two training passes differ"
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**kw).logits, model(**kw).logits)


def test_gradients_reach_every_weight(batch):
    model = _model(dropout=0.0, attention_dropout=0.0)
    model.train()
    model(**_inputs(batch)).loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    # the decoder's position rows past the target length and unused vocabulary rows may get none;
    # every weight matrix must
    no_grad = [n for n in no_grad if not n.endswith(("embed_positions.weight", "shared.weight"))]
    assert not no_grad, f"no gradient reached {no_grad}"


def test_gradient_checkpointing_gives_the_same_gradients(batch):
    model = _model(dropout=0.0, attention_dropout=0.0)
    model.train()
    model(**_inputs(batch)).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    model(**_inputs(batch)).loss.backward()
    for n, p in model.named_parameters():
        if n in plain:
            d = (p.grad - plain[n]).abs().max().item()
            assert d < 1e-5, f"{n}: gradient differs by {d:.2e} with checkpointing"


def test_a_few_steps_lower_the_loss(batch):
    model = _model()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    kw = _inputs(batch)
    losses = []
    for _ in range(40):
        loss = model(**kw).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], f"loss went {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_bfloat16_training_step(batch):
    model = _model().to(torch.bfloat16)
    model.train()
    loss = model(**_inputs(batch)).loss
    loss.backward()
    assert torch.isfinite(loss) and model.lm_head.weight.grad.dtype == torch.bfloat16
