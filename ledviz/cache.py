"""The decoder's key/value cache, as named containers.

Inside ledviz each decoder layer keeps a `LayerCache`: its self-attention keys/values, which grow
by one position per generated token, and its cross-attention keys/values over the encoder
output, computed once. At the public boundary (`past_key_values` of the model outputs and
arguments) the cache is transformers' legacy format: per layer (self_k, self_v, cross_k, cross_v).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch

Tensor = torch.Tensor


class KeyValues(NamedTuple):
    """Keys and values of one attention, (B, H, S, hd) each."""

    key: Tensor
    value: Tensor


@dataclass
class LayerCache:
    """What one decoder layer keeps between steps; None where nothing is cached yet."""

    self_attn: KeyValues | None = None  # (R, H, T so far, hd): one row per decoder row
    cross_attn: KeyValues | None = None  # (B, H, N, hd): one row per encoder row

    @classmethod
    def from_legacy(cls, entry: Sequence[Tensor | None]) -> "LayerCache":
        """From transformers' (self_k, self_v[, cross_k, cross_v]) of one layer."""
        self_kv = KeyValues(entry[0], entry[1]) if entry[0] is not None else None
        cross_kv = KeyValues(entry[2], entry[3]) if len(entry) > 2 and entry[2] is not None else None
        return cls(self_kv, cross_kv)

    def to_legacy(self) -> tuple:
        """transformers' (self_k, self_v, cross_k, cross_v) of one layer."""
        return tuple(self.self_attn or (None, None)) + tuple(self.cross_attn or (None, None))


def cached_length(caches: Sequence[LayerCache] | None) -> int:
    """How many decoder positions the cache already holds."""
    if not caches or caches[0].self_attn is None:
        return 0
    return caches[0].self_attn.key.shape[2]


def reorder(caches: Sequence[LayerCache], rows: Tensor) -> list[LayerCache]:
    """The self-attention cache of the decoder rows `rows` (beam search); cross keys/values are per source and never move."""
    return [LayerCache(KeyValues(c.self_attn.key.index_select(0, rows), c.self_attn.value.index_select(0, rows)),
                       c.cross_attn) for c in caches]
