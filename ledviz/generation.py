"""Generation for LEDForConditionalGeneration (being written: greedy, beam search, sampling)."""

from __future__ import annotations


class GenerationMixin:
    """Adds `generate` to LEDForConditionalGeneration."""

    generation_config: dict = {}

    def _load_generation_config(self, name_or_path, **hub_kwargs):
        self.generation_config = {}

    def generate(self, input_ids=None, attention_mask=None, global_attention_mask=None, **settings):
        raise NotImplementedError("generation is not written yet")
