"""The tiny LED of transformers' own LED model tests, rebuilt for ledviz, and what the upstream checks share.

transformers' `tests/models/led/test_modeling_led.py` runs its model and generation checks on one tiny LED
(13 documents of 11 tokens, 2 layers of 4 heads of width 16, window 4, dropout 0.1) with the last token
global. `UpstreamTinyLED` gives the same sizes, with seeded inputs (upstream draws them from a global
`random`), for both libraries; `twin` builds transformers' model and ours on the same weights, so a check
that needs known numbers compares with transformers 4.57.6 on the spot.

The test modules `test_upstream_led_modeling.py` and `test_upstream_led_generation.py` hold the checks.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch

import ledviz
from generation_fixtures import one_thread  # noqa: F401  (autouse: test modules import it from here)

# the four classes transformers' LED test module runs every common check on, in its order
MODEL_CLASSES = ("LEDModel", "LEDForConditionalGeneration", "LEDForSequenceClassification", "LEDForQuestionAnswering")
GENERATIVE_CLASSES = ("LEDForConditionalGeneration",)


def ours(name: str):
    return getattr(ledviz, name)


def theirs(name: str):
    import transformers

    transformers.logging.set_verbosity_error()
    return getattr(transformers, name)


@dataclass
class UpstreamTinyLED:
    """The sizes of transformers' LEDModelTester (batch 13 × 11 tokens, window 4, dropout 0.1)."""

    batch_size: int = 13
    seq_length: int = 11
    vocab_size: int = 99
    hidden_size: int = 16
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 4
    dropout: float = 0.1
    max_position_embeddings: int = 32  # upstream passes it; LED keeps it as a plain extra setting
    eos_token_id: int = 2
    pad_token_id: int = 1
    bos_token_id: int = 0
    attention_window: int = 4
    is_training: bool = True

    @property
    def encoder_seq_length(self) -> int:
        return self.seq_length

    @property
    def encoder_key_length(self) -> int:
        """Band width of the encoder attentions: window + 1 slots, plus one global token."""
        return self.attention_window + 2

    def config_kwargs(self, **overrides) -> dict:
        kw = dict(
            vocab_size=self.vocab_size, d_model=self.hidden_size, encoder_layers=self.num_hidden_layers,
            decoder_layers=self.num_hidden_layers, encoder_attention_heads=self.num_attention_heads,
            decoder_attention_heads=self.num_attention_heads, encoder_ffn_dim=self.intermediate_size,
            decoder_ffn_dim=self.intermediate_size, dropout=self.dropout, attention_dropout=self.dropout,
            max_position_embeddings=self.max_position_embeddings, eos_token_id=self.eos_token_id,
            bos_token_id=self.bos_token_id, pad_token_id=self.pad_token_id, attention_window=self.attention_window,
        )
        kw.update(overrides)
        return kw

    def config(self, lib: str = "ours", **overrides):
        cls = ours("LEDConfig") if lib == "ours" else theirs("LEDConfig")
        return cls(**self.config_kwargs(**overrides))

    def ids(self, shape, high: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, high, tuple(shape), generator=generator)

    def inputs(self, seed: int = 0, batch_size: int | None = None) -> dict:
        """Upstream's `prepare_config_and_inputs`: documents ending in EOS, random decoder ids, masks from the
        pad id, all-ones head masks."""
        g = torch.Generator().manual_seed(seed)
        b = batch_size or self.batch_size
        input_ids = self.ids((b, self.seq_length), self.vocab_size, g).clamp(3)
        input_ids[:, -1] = self.eos_token_id
        decoder_input_ids = self.ids((b, self.seq_length), self.vocab_size, g)
        layers, heads = self.num_hidden_layers, self.num_attention_heads
        return dict(
            input_ids=input_ids,
            decoder_input_ids=decoder_input_ids,
            attention_mask=input_ids.ne(self.pad_token_id),
            decoder_attention_mask=decoder_input_ids.ne(self.pad_token_id),
            head_mask=torch.ones(layers, heads),
            decoder_head_mask=torch.ones(layers, heads),
            cross_attn_head_mask=torch.ones(layers, heads),
        )

    def common_inputs(self, seed: int = 0, batch_size: int | None = None) -> dict:
        """Upstream's `prepare_config_and_inputs_for_common`: the last token is global."""
        inputs = self.inputs(seed, batch_size)
        global_attention_mask = torch.zeros_like(inputs["input_ids"])
        global_attention_mask[:, -1] = 1
        inputs["global_attention_mask"] = global_attention_mask
        return inputs

    def generate_inputs(self, seed: int = 0, batch_size: int = 2) -> dict:
        """Upstream's `prepare_config_and_inputs_for_generate` with LED's override: two documents, no head masks,
        no decoder inputs, no global mask."""
        inputs = self.common_inputs(seed)
        drop = {"head_mask", "decoder_head_mask", "cross_attn_head_mask", "decoder_input_ids",
                "decoder_attention_mask", "global_attention_mask"}
        return {k: v[:batch_size] for k, v in inputs.items() if k not in drop}

    def generate_config_kwargs(self, **overrides) -> dict:
        """The generation checks' config: no EOS (so every call runs to its length), no forced EOS."""
        return self.config_kwargs(eos_token_id=None, forced_eos_token_id=None, **overrides)

    def for_class(self, inputs: dict, cls_name: str, labels: bool = False) -> dict:
        """Upstream's `_prepare_for_class`: a deep copy, with the labels of the class's task when asked."""
        inputs = copy.deepcopy(inputs)
        if labels:
            b = inputs["input_ids"].shape[0]
            if cls_name == "LEDForQuestionAnswering":
                inputs["start_positions"] = torch.zeros(b, dtype=torch.long)
                inputs["end_positions"] = torch.zeros(b, dtype=torch.long)
            elif cls_name == "LEDForSequenceClassification":
                inputs["labels"] = torch.zeros(b, dtype=torch.long)
            elif cls_name == "LEDForConditionalGeneration":
                inputs["labels"] = torch.zeros(b, self.seq_length, dtype=torch.long)
        return inputs


TINY = UpstreamTinyLED()


def twin(cls_name: str, path, *, seed: int = 0, **overrides):
    """transformers' `cls_name` and ours on the same random weights (saved by transformers, read by us), in eval mode."""
    torch.manual_seed(seed)
    ref = theirs(cls_name)(TINY.config("theirs", **overrides)).eval()
    ref.save_pretrained(os.fspath(path))
    mine = ours(cls_name).from_pretrained(os.fspath(path)).eval()
    return ref, mine


def fresh(cls_name: str, seed: int = 0, **overrides):
    """Our `cls_name` built from a config, as upstream's checks build theirs (random weights, train mode)."""
    torch.manual_seed(seed)
    return ours(cls_name)(TINY.config(**overrides))


def tensors_of(obj) -> list[torch.Tensor]:
    """Every tensor inside a model output, tuple or nest of them, in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if obj is None:
        return []
    if hasattr(obj, "to_tuple"):
        obj = obj.to_tuple()
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in tensors_of(item)]
    return []


def assert_close(a: torch.Tensor, b: torch.Tensor, what: str, atol: float = 1e-5) -> None:
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    a = torch.nan_to_num(a.float(), nan=0.0, neginf=0.0, posinf=0.0)
    b = torch.nan_to_num(b.float(), nan=0.0, neginf=0.0, posinf=0.0)
    diff = (a - b).abs().max().item() if a.numel() else 0.0
    assert diff <= atol, f"{what}: max difference {diff:.3e} (tolerance {atol:.0e})"
