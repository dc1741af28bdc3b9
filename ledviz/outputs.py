"""Output containers of the LED models: dataclasses that also index like tuples and dicts."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

Tensor = torch.Tensor
Tensors = tuple[torch.Tensor, ...]


class ModelOutput:
    """Base of the output dataclasses.

    Fields read as attributes (`out.logits`), by name (`out["logits"]`) or by position over the
    fields that are set (`out[0]`), and `to_tuple()` gives those fields in order.
    """

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def values(self) -> list[Any]:
        return [getattr(self, k) for k in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(self.values())

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


@dataclass
class BaseModelOutputWithPastAndCrossAttentions(ModelOutput):
    """Output of the decoder stack."""

    last_hidden_state: Tensor | None = None
    past_key_values: tuple | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
    cross_attentions: Tensors | None = None


@dataclass
class LEDEncoderBaseModelOutput(ModelOutput):
    """Output of the LED encoder.

    attentions[l]: (batch, heads, seq_len, x + attention_window[l] + 1). Columns [0, x) hold the
    attention to the global tokens in ascending position order (x = the largest number of global
    tokens in the batch), then the window: column x + w + d is the key at offset d from the query
    (w = attention_window[l] // 2, so column x + w is the token itself). Zero for window slots
    outside the sequence, on padding or on global keys, for the whole row of a padding token or
    of a global query, and for global columns past an element's own global count.

    global_attentions[l]: (batch, heads, seq_len, x); entry [b, h, j, c] is the probability that
    global token c attends to key j. Unlike transformers (which returns the padded length and
    fills unused global slots with 1/padded_len), it is trimmed to seq_len and zero in unused
    slots. None when no element has a global token.
    """

    last_hidden_state: Tensor | None = None
    hidden_states: Tensors | None = None
    attentions: Tensors | None = None
    global_attentions: Tensors | None = None


@dataclass
class LEDSeq2SeqModelOutput(ModelOutput):
    """Output of LEDModel: the decoder's last hidden state with everything from the encoder.

    encoder_attentions / encoder_global_attentions follow the layout of
    LEDEncoderBaseModelOutput.attentions / .global_attentions (not seq_len x seq_len).
    """

    last_hidden_state: Tensor | None = None
    past_key_values: tuple | None = None
    decoder_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None
    encoder_global_attentions: Tensors | None = None


@dataclass
class LEDSeq2SeqLMOutput(ModelOutput):
    """Output of LEDForConditionalGeneration: `logits` (batch, target_len, vocab) and the LM loss."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    past_key_values: tuple | None = None
    decoder_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None
    encoder_global_attentions: Tensors | None = None


@dataclass
class LEDSeq2SeqSequenceClassifierOutput(ModelOutput):
    """Output of LEDForSequenceClassification: `logits` (batch, num_labels) and the loss."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    past_key_values: tuple | None = None
    decoder_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None
    encoder_global_attentions: Tensors | None = None


@dataclass
class LEDSeq2SeqQuestionAnsweringModelOutput(ModelOutput):
    """Output of LEDForQuestionAnswering: span `start_logits` / `end_logits` (batch, target_len)."""

    loss: Tensor | None = None
    start_logits: Tensor | None = None
    end_logits: Tensor | None = None
    past_key_values: tuple | None = None
    decoder_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None
    encoder_global_attentions: Tensors | None = None
