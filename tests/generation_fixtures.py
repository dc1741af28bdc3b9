"""Tiny generation checkpoints (ours and transformers') and their inputs, shared by the generation test modules."""

from __future__ import annotations

import pytest
import torch

import ledviz
from conftest import make_reference


EOS, PAD, START = 2, 1, 2


VOCAB = 100


TINY_GEN = dict(d_model=32, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                decoder_ffn_dim=64, vocab_size=VOCAB, max_decoder_position_embeddings=64,
                max_encoder_position_embeddings=64, attention_window=[4, 8])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine thread hand-offs cost 10x the work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """transformers' model and ours on one checkpoint whose EOS is likely, so hypotheses end at different steps.

    Strong decoder positions make the next token depend on the step (random decoders otherwise repeat one
    token), and a bias on EOS makes it likely.
    """
    import transformers

    transformers.logging.set_verbosity_error()
    path = tmp_path_factory.mktemp("gen")
    ref = make_reference("LEDForConditionalGeneration", path, seed=1, **TINY_GEN)
    positions = ref.led.decoder.embed_positions.weight
    with torch.no_grad():
        positions.add_(torch.randn(positions.shape, generator=torch.Generator().manual_seed(101)) * 2.0)
        ref.final_logits_bias[0, EOS] += 3.0
    ref.save_pretrained(path)
    return ref, ledviz.LEDForConditionalGeneration.from_pretrained(path), path


@pytest.fixture(scope="module")
def inputs():
    """Two documents of 23 and 15 tokens (the second padded), with different global tokens."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (2, 23), generator=g)
    ids[:, 0] = 0
    ids[1, 14], ids[1, 15:] = EOS, PAD
    attention_mask = (ids != PAD).long()
    global_mask = torch.zeros_like(ids)
    global_mask[:, 0] = 1
    global_mask[0, 7] = 1
    return dict(input_ids=ids, attention_mask=attention_mask, global_attention_mask=global_mask)


def assert_same_tokens(ours: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    assert ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} vs transformers {tuple(ref.shape)}\n" \
                                    f"ours:\n{ours}\ntransformers:\n{ref}"
    rows = [i for i in range(ref.shape[0]) if not torch.equal(ours[i], ref[i])]
    assert not rows, f"{what}: rows {rows} differ\n" + "\n".join(
        f"row {i}: ours {ours[i].tolist()}\n       transformers {ref[i].tolist()}" for i in rows)
