"""LEDPreTrainedModel: weight initialization, from_pretrained / save_pretrained, training switches."""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Callable

import torch
from torch import nn

from .config import LEDConfig
from .errors import CheckpointError
from .loading import load_state_dict, save_state_dict

# weights of task heads: present in some checkpoints, absent in others
HEAD_PREFIXES = ("lm_head.", "final_logits_bias", "classification_head.", "qa_outputs.")
# weights that share storage with led.shared.weight when embeddings are tied
TIED_TO_SHARED = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")

_construction = threading.local()


def _dtype_from(value: Any, state: dict[str, torch.Tensor]) -> torch.dtype:
    """torch_dtype argument -> a floating dtype ("auto": the checkpoint's own)."""
    if value is None:
        return torch.float32
    if value == "auto":
        floats = [t.dtype for t in state.values() if t.is_floating_point()]
        return floats[0] if floats else torch.float32
    if isinstance(value, str):
        value = getattr(torch, value.replace("torch.", ""), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ValueError(f"torch_dtype must be a floating dtype (float32, float16, bfloat16) or 'auto', got {value!r}")
    return value


class LEDPreTrainedModel(nn.Module):
    """Base of all LED modules that carry a config: init, loading and saving."""

    config_class = LEDConfig
    base_model_prefix = "led"
    supports_gradient_checkpointing = True
    _tied_weights: dict[str, str] = {}

    def __init__(self, config: LEDConfig):
        super().__init__()
        if not isinstance(config, LEDConfig):
            raise TypeError(f"expected an LEDConfig, got {type(config).__name__}")
        self.config = config
        self.loading_info: dict[str, list[str]] = {}
        # weights are initialized once, by the outermost module's post_init
        _construction.depth = getattr(_construction, "depth", 0) + 1

    # ---- initialization ----------------------------------------------------------------
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(0.0, std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(0.0, std)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()

    def post_init(self) -> None:
        _construction.depth = max(getattr(_construction, "depth", 1) - 1, 0)
        if _construction.depth == 0 and not any(p.is_meta for p in self.parameters()):
            self.apply(self._init_weights)

    # ---- conveniences --------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self, only_trainable: bool = False) -> int:
        """Parameter count, tied weights counted once."""
        seen = {id(p): p for p in self.parameters() if p.requires_grad or not only_trainable}
        return sum(p.numel() for p in seen.values())

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recompute each layer's activations in the backward pass to save memory while training."""
        for m in self.modules():
            if hasattr(m, "gradient_checkpointing"):
                m.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        for m in self.modules():
            if hasattr(m, "gradient_checkpointing"):
                m.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(getattr(m, "gradient_checkpointing", False) for m in self.modules())

    def tie_weights(self) -> None:
        """Re-tie shared weights (after loading); subclasses with an LM head override."""

    # ---- loading ---------------------------------------------------------------------------
    def _expected_keys(self) -> dict[str, torch.Size]:
        return {k: v.shape for k, v in self.state_dict(keep_vars=True).items()}

    def _map_checkpoint(self, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Rename checkpoint keys to this module's names (add or drop the 'led.' prefix, fill tied copies).

        Returns the renamed state and the head weights that belong to another class (dropped).
        """
        expected = self._expected_keys()
        ours_prefixed = any(k.startswith("led.") for k in expected)
        theirs_prefixed = any(k.startswith("led.") for k in state)
        renamed: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            if ours_prefixed and not theirs_prefixed and not key.startswith(HEAD_PREFIXES):
                key = "led." + key
            elif not ours_prefixed and theirs_prefixed and key.startswith("led."):
                key = key[len("led."):]
            renamed[key] = value
        base = "led." if ours_prefixed else ""
        shared = base + "shared.weight"
        # fill tied copies from whichever of them the checkpoint has
        tied = [shared] + [base + k for k in TIED_TO_SHARED]
        if self.config.tie_word_embeddings and "lm_head.weight" in expected:
            tied.append("lm_head.weight")
        source = next((renamed[k] for k in tied if k in renamed), None)
        if source is not None:
            for k in tied:
                if k in expected:
                    renamed.setdefault(k, source)
        dropped = [k for k in renamed if k not in expected and k.startswith(HEAD_PREFIXES)]
        for k in dropped:
            del renamed[k]
        return renamed, dropped

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        config: LEDConfig | None = None,
        torch_dtype: Any = None,
        device: str | torch.device | None = None,
        init_missing_heads: bool = False,
        progress: Callable[[str], None] | None = None,
        **hub_kwargs: Any,
    ):
        """Load a checkpoint from a local folder or a Hub id (the Hub cache and HF_HUB_OFFLINE apply).

        Weights come from model.safetensors, a sharded safetensors index, or pytorch_model.bin
        (read with weights_only=True), with or without the 'led.' prefix. Missing or unexpected
        weights raise CheckpointError listing them; a shape mismatch names the key and both
        shapes. Only with `init_missing_heads=True` may a task head that the checkpoint lacks
        (e.g. qa_outputs on a summarization checkpoint) start from random values; those keys are
        listed in `model.loading_info["initialized"]`.
        """
        name = os.fspath(pretrained_model_name_or_path)
        if config is None:
            if progress:
                progress("reading config.json")
            config = LEDConfig.from_pretrained(name, **hub_kwargs)
        state = load_state_dict(name, progress=progress, **hub_kwargs)
        dtype = _dtype_from(torch_dtype, state)
        if progress:
            progress("building the model")
        # build without allocating or initializing weights; the checkpoint's tensors are assigned
        with torch.device("meta"):
            model = cls(config)
        renamed, dropped = model._map_checkpoint(state)
        expected = model._expected_keys()
        missing = sorted(k for k in expected if k not in renamed)
        unexpected = sorted(k for k in renamed if k not in expected)
        initialized: list[str] = []
        if missing and init_missing_heads:
            initialized = [k for k in missing if k.startswith(HEAD_PREFIXES)]
            missing = [k for k in missing if k not in initialized]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing from the checkpoint: {', '.join(missing[:20])}"
                             + (f" (+{len(missing) - 20} more)" if len(missing) > 20 else ""))
            if unexpected:
                parts.append(f"not used by {cls.__name__}: {', '.join(unexpected[:20])}"
                             + (f" (+{len(unexpected) - 20} more)" if len(unexpected) > 20 else ""))
            hint = ""
            if missing and all(k.startswith(HEAD_PREFIXES) for k in missing):
                hint = (" The checkpoint has no weights for this task head; pass init_missing_heads=True to "
                        "start the head from random values (for fine-tuning).")
            raise CheckpointError(
                f"the weights of {name!r} do not fit {cls.__name__} with its config.json: " + "; ".join(parts) + "." + hint
            )
        mismatched = [f"{k!r} has shape {tuple(v.shape)} in the checkpoint but {tuple(expected[k])} in the model"
                      for k, v in sorted(renamed.items()) if tuple(v.shape) != tuple(expected[k])]
        if mismatched:
            raise CheckpointError(
                f"the weights of {name!r} do not fit its config.json: " + "; ".join(mismatched[:10])
                + (f" (+{len(mismatched) - 10} more)" if len(mismatched) > 10 else "")
                + ": the config and the weights come from different models"
            )
        target = torch.device(device) if device is not None else torch.device("cpu")
        renamed = {k: v.to(device=target, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in renamed.items()}
        if initialized:
            # fresh tensors for the heads the checkpoint lacks, then the usual init on them
            for k in initialized:
                renamed[k] = torch.empty(expected[k], device=target, dtype=dtype)
        model.load_state_dict(renamed, strict=True, assign=True)
        model.tie_weights()
        if initialized:
            for prefix in {k.rsplit(".", 1)[0] for k in initialized}:
                module = model.get_submodule(prefix) if prefix != "final_logits_bias" else None
                if module is not None:
                    module.apply(model._init_weights)
                else:
                    model.final_logits_bias.zero_()
        model.loading_info = {"dropped_heads": dropped, "initialized": initialized}
        model.name_or_path = name
        model.eval()
        if hasattr(model, "_load_generation_config"):
            model._load_generation_config(name, **hub_kwargs)
        return model

    def save_pretrained(self, save_directory: str | os.PathLike, **_: Any) -> None:
        """Write config.json and model.safetensors (tied copies stored once), loadable by transformers too."""
        os.makedirs(save_directory, exist_ok=True)
        self.config.architectures = [type(self).__name__]
        self.config.torch_dtype = str(self.dtype).replace("torch.", "")
        self.config.save_pretrained(save_directory)
        state = self.state_dict()
        seen: dict[int, str] = {}
        unique: dict[str, torch.Tensor] = {}
        for key in sorted(state, key=lambda k: (k.endswith(TIED_TO_SHARED) or k == "lm_head.weight", k)):
            ptr = state[key].untyped_storage().data_ptr()
            if ptr in seen:
                continue
            seen[ptr] = key
            unique[key] = state[key]
        save_state_dict(unique, save_directory)
        if hasattr(self, "generation_config") and self.generation_config:
            with open(os.path.join(save_directory, "generation_config.json"), "w", encoding="utf-8") as f:
                json.dump(self.generation_config, f, indent=2, sort_keys=True)
