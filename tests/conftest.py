"""Shared test helpers: tiny LED checkpoints made inside the tests (by transformers, the reference, or by
ledviz with a tokenizer), comparisons with the max difference in the message, a padded batch."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test reaches the network
torch.set_num_threads(min(2, torch.get_num_threads()))

TINY = dict(
    vocab_size=99,
    d_model=16,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=32,
    decoder_ffn_dim=32,
    max_encoder_position_embeddings=64,
    max_decoder_position_embeddings=32,
    attention_window=[4, 8],
    dropout=0.1,
    attention_dropout=0.1,
)


def tiny_kwargs(**overrides):
    """Config keywords of a tiny LED; overrides win."""
    kw = dict(TINY)
    kw.update(overrides)
    return kw


def perturb(model: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> None:
    """Add noise to every weight so the attention is far from uniform and mistakes show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def make_reference(cls_name: str, path, *, safe: bool = True, seed: int = 0, **overrides):
    """A transformers LED model with random weights, saved to `path`; returns it in eval mode."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.LEDConfig(**tiny_kwargs(**overrides))
    model = getattr(transformers, cls_name)(config).eval()
    perturb(model, seed)
    model.save_pretrained(path, safe_serialization=safe)
    return model


# a tiny generation checkpoint with a tokenizer, for what needs text in and text out
TINY_CHECKPOINT = dict(
    d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
    encoder_ffn_dim=64, decoder_ffn_dim=64, max_encoder_position_embeddings=1024,
    max_decoder_position_embeddings=64, attention_window=[16, 32], dropout=0.0, attention_dropout=0.0,
)


def make_checkpoint(path, *, vocab_size: int = 600, n_docs: int = 6, seed: int = 7, init_std: float = 0.2,
                    **overrides) -> str:
    """Save a random-weight ledviz LEDForConditionalGeneration and a BPE tokenizer trained on demo documents."""
    from ledviz import LEDConfig, LEDForConditionalGeneration
    from ledviz.demo.data import generate_dataset
    from ledviz.tokenization import train_bpe_tokenizer

    path = os.fspath(path)
    texts = [ex.document for ex in generate_dataset(seed, n_docs, max_tokens=1500)]
    tokenizer = train_bpe_tokenizer(texts, vocab_size=vocab_size)
    config = LEDConfig(vocab_size=len(tokenizer), init_std=init_std, **{**TINY_CHECKPOINT, **overrides})
    torch.manual_seed(seed)
    model = LEDForConditionalGeneration(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def encoder_batch(B: int, N: int, n_global, pad):
    """Random ids (B, N) with their attention mask (row b's last pad[b] tokens padding) and global mask
    (n_global[b] random global tokens in row b), seeded by the shape."""
    g = torch.Generator().manual_seed(N * 31 + sum(n_global))
    ids = torch.randint(3, 99, (B, N), generator=g)
    am = torch.ones(B, N, dtype=torch.long)
    gm = torch.zeros(B, N, dtype=torch.long)
    for b in range(B):
        if pad[b]:
            am[b, N - pad[b]:] = 0
        if n_global[b]:
            pos = torch.randperm(N, generator=g)[: n_global[b]]
            gm[b, pos] = 1
    return ids, am, gm


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item() if a.numel() else 0.0


def assert_close(a, b, what: str, tol: float = 1e-5):
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    d = max_diff(a, b)
    scale = max(1.0, b.float().abs().max().item()) if b.numel() else 1.0
    assert d <= tol * scale, f"{what}: max difference {d:.3e} (tolerance {tol * scale:.1e})"


@pytest.fixture
def batch():
    """Two rows: the second padded after 9 tokens; row 0 has 2 global tokens, row 1 has 1."""
    g = torch.Generator().manual_seed(1)
    B, N = 2, 13
    ids = torch.randint(3, 99, (B, N), generator=g)
    ids[:, 0] = 0
    ids[0, -1] = 2
    ids[1, 8] = 2
    ids[1, 9:] = 1
    attention_mask = torch.ones(B, N, dtype=torch.long)
    attention_mask[1, 9:] = 0
    global_mask = torch.zeros(B, N, dtype=torch.long)
    global_mask[0, [0, 5]] = 1
    global_mask[1, 2] = 1
    return ids, attention_mask, global_mask
