"""LEDPreTrainedModel: weight initialization, from_pretrained / save_pretrained, training switches."""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import threading
from typing import Any, Callable

import torch
from torch import nn

from .attention import ATTENTION_IMPLEMENTATIONS
from .config import LEDConfig, as_torch_dtype
from .errors import CheckpointError, ConfigError, WeightShapeError
from .loading import load_state_dict, save_state_dict

# weights of task heads: present in some checkpoints, absent in others
HEAD_PREFIXES = ("lm_head.", "final_logits_bias", "classification_head.", "qa_outputs.")
# weights that share storage with led.shared.weight when embeddings are tied
TIED_TO_SHARED = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")

_construction = threading.local()
logger = logging.getLogger(__name__)


def _attention_choice(value: str | None) -> str | None:
    """`attn_implementation` of from_pretrained/_from_config: None or "eager" (transformers' name for
    LED's only implementation; ledviz computes the same attention on its default path, "blocked"),
    or one of ledviz's own implementations (ATTENTION_IMPLEMENTATIONS), returned to be applied."""
    if value in (None, "eager"):
        return None
    if value in ATTENTION_IMPLEMENTATIONS:
        return value
    raise ValueError(f"attn_implementation={value!r} is not an attention implementation of LED: use 'eager' "
                     f"(transformers' name; ledviz's default path computes it) or one of ledviz's own, "
                     f"{', '.join(repr(n) for n in ATTENTION_IMPLEMENTATIONS)} (see set_attention_implementation)")


def _use_attention(model: nn.Module, choice: str | None) -> None:
    """Apply an implementation chosen by `_attention_choice` to every encoder in `model`."""
    if choice is not None:
        for module in model.modules():
            if hasattr(module, "set_attention_implementation"):
                module.set_attention_implementation(choice)


_EMBEDDINGS = ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")
_POSITIONS = re.compile(r"(encoder|decoder)\.embed_positions\.weight")
_FFN = re.compile(r"(encoder|decoder)\.layers\.\d+\.fc1\.weight")
_LAYER = re.compile(r"(encoder|decoder)\.layers\.(\d+)\.")


def config_mismatches(config: Any, state: dict[str, torch.Tensor]) -> list[str]:
    """Every config.json field that the weights in `state` contradict, one line each, by key:
    "vocab_size: 4010 in config.json, 4000 in the weights". Read from the tensors' shapes (token and
    position tables, feed-forward widths) and the layers present; [] when they agree. Keys may carry
    the 'led.' prefix or not (as checkpoints save them)."""
    seen: dict[str, set[int]] = {}

    def note(field: str, value: int) -> None:
        seen.setdefault(field, set()).add(int(value))

    for full, tensor in state.items():
        key = full[len("led."):] if full.startswith("led.") else full
        shape = tuple(tensor.shape)
        if key in _EMBEDDINGS and len(shape) == 2:
            note("vocab_size", shape[0])
            note("d_model", shape[1])
        elif key == "final_logits_bias" and shape:
            note("vocab_size", shape[-1])
        elif (m := _POSITIONS.fullmatch(key)) and len(shape) == 2:
            note(f"max_{m.group(1)}_position_embeddings", shape[0])
            note("d_model", shape[1])
        elif (m := _FFN.fullmatch(key)) and len(shape) == 2:
            note(f"{m.group(1)}_ffn_dim", shape[0])
            note("d_model", shape[1])
        if m := _LAYER.match(key):  # the layer count: the highest index present, plus one
            field = f"{m.group(1)}_layers"
            seen[field] = {max(int(m.group(2)) + 1, *seen.get(field, {0}))}
    lines = []
    for field in sorted(seen):
        want = getattr(config, field, None)
        found = sorted(seen[field])
        if want is None or found == [want]:
            continue
        lines.append(f"{field}: {want} in config.json, {' or '.join(map(str, found))} in the weights")
    return lines


def _mismatch_note(config: Any, state: dict[str, torch.Tensor]) -> str:
    """The start of a loading error whose weights do not fit: the config fields they contradict, or ''."""
    lines = config_mismatches(config, state)
    if not lines:
        return ""
    return (f"the checkpoint's config.json does not fit its weights ({len(lines)} field{'s' if len(lines) > 1 else ''}"
            ": " + "; ".join(lines) + "): use the config.json saved with these weights. In detail: ")


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
        if _construction.depth == 0 and self.config.extra.pop("gradient_checkpointing", False):
            # transformers' older switch: a config saying gradient_checkpointing=True turns it on once
            self.gradient_checkpointing_enable()

    # ---- conveniences --------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Parameter count, tied weights counted once; without the embedding tables (tokens and
        positions) with exclude_embeddings=True, as transformers counts."""
        skip = set()
        if exclude_embeddings:
            skip = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        seen = {id(p): p for p in self.parameters() if (p.requires_grad or not only_trainable) and id(p) not in skip}
        return sum(p.numel() for p in seen.values())

    # ---- embeddings (transformers' names) ------------------------------------------------------
    main_input_name = "input_ids"
    name_or_path = ""  # the checkpoint a model was read from (from_pretrained sets it)

    @property
    def base_model(self) -> nn.Module:
        """The bare LEDModel inside a task model (transformers' `base_model`); an LEDModel, encoder or decoder
        is its own."""
        prefix = self.base_model_prefix
        return getattr(self, prefix, self) if prefix else self

    @classmethod
    def can_generate(cls) -> bool:
        """Whether this class has `generate` (LEDForConditionalGeneration)."""
        return callable(getattr(cls, "generate", None))

    def _embedding_owner(self) -> nn.Module:
        """The module that holds `shared` (LEDModel), or this encoder/decoder itself."""
        base = getattr(self, "led", self)
        return base

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding table (shared by the encoder and the decoder)."""
        base = self._embedding_owner()
        return base.shared if hasattr(base, "shared") else self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        """Use `value` as the token embedding table of the encoder and the decoder."""
        base = self._embedding_owner()
        if hasattr(base, "shared"):
            base.shared = value
            base.encoder.embed_tokens = value
            base.decoder.embed_tokens = value
        else:
            self.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear | None:
        """The language-modeling head (None for classes without one)."""
        return getattr(self, "lm_head", None)

    def set_output_embeddings(self, value: nn.Linear) -> None:
        if not hasattr(self, "lm_head"):
            raise AttributeError(f"{type(self).__name__} has no output embeddings (no language-modeling head): only "
                                 "LEDForConditionalGeneration has one")
        self.lm_head = value

    def get_decoder(self):
        return self._embedding_owner().decoder

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """Grow or shrink the vocabulary to `new_num_tokens` (rounded up to `pad_to_multiple_of`).

        As transformers: the embedding module stays the same object with a new table; old rows are
        kept, new rows start from a normal distribution with the old rows' mean and covariance
        (mean_resizing=True, scaled by 1e-9) or from the usual init; an untied language-modeling
        head is resized the same way, final_logits_bias grows with zeros, config.vocab_size follows
        and the tied weights stay tied. Returns the embedding module."""
        emb = self.get_input_embeddings()
        if new_num_tokens is None and pad_to_multiple_of is None:
            return emb
        for name, value in (("new_num_tokens", new_num_tokens), ("pad_to_multiple_of", pad_to_multiple_of)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"resize_token_embeddings: {name}={value!r} must be a positive integer")
        old_n, dim = emb.weight.shape
        new_n = old_n if new_num_tokens is None else new_num_tokens
        if pad_to_multiple_of is not None:
            new_n = -(-new_n // pad_to_multiple_of) * pad_to_multiple_of
        if new_n != old_n:
            weight = emb.weight
            fresh = nn.Embedding(new_n, dim, device=weight.device, dtype=weight.dtype)
            self._init_added_rows(fresh, weight, old_n, new_n, mean_resizing)
            n = min(old_n, new_n)
            fresh.weight.data[:n] = weight.data[:n]
            weight.data = fresh.weight.data
            emb.num_embeddings = new_n
            if emb.padding_idx is not None and emb.padding_idx > new_n - 1:
                emb.padding_idx = None
            head = self.get_output_embeddings()
            if head is not None and not self.config.tie_word_embeddings:
                new_head = nn.Linear(head.in_features, new_n, bias=head.bias is not None,
                                     device=head.weight.device, dtype=head.weight.dtype)
                self._init_added_rows(new_head, head.weight, old_n, new_n, mean_resizing)
                new_head.weight.data[:n] = head.weight.data[:n]
                if head.bias is not None:
                    new_head.bias.data[:n] = head.bias.data[:n]
                self.set_output_embeddings(new_head)
            bias = getattr(self, "final_logits_bias", None)
            if isinstance(bias, torch.Tensor):
                grown = torch.zeros((1, new_n), dtype=bias.dtype, device=bias.device)
                grown[:, :n] = bias[:, :n]
                self.register_buffer("final_logits_bias", grown)
        self.config.vocab_size = new_n
        self.tie_weights()
        return emb

    def _init_added_rows(self, module: nn.Module, old: torch.Tensor, old_n: int, new_n: int, mean_resizing: bool) -> None:
        """Rows past `old_n` of a resized table: sampled near the old rows' mean, or the usual init."""
        if new_n <= old_n:
            return
        if not mean_resizing:
            self._init_weights(module)
            return
        rows = old.data.to(torch.float32)
        mean = rows.mean(dim=0)
        centered = rows - mean
        covariance = 1e-9 * (centered.T @ centered / old_n)
        added = new_n - old_n
        if torch.distributions.constraints.positive_definite.check(covariance).all():
            sample = torch.distributions.MultivariateNormal(mean, covariance_matrix=covariance).sample((added,))
        else:  # a degenerate table: the mean itself
            sample = mean[None, :].repeat(added, 1)
        module.weight.data[old_n:] = sample.to(module.weight.dtype)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recompute each layer's activations in the backward pass to save memory while training.

        `gradient_checkpointing_kwargs` go to torch.utils.checkpoint.checkpoint, as in transformers; the one it
        takes here is `use_reentrant` (default False)."""
        kwargs = dict(gradient_checkpointing_kwargs or {})
        unknown = sorted(set(kwargs) - {"use_reentrant"})
        if unknown:
            raise TypeError(f"gradient_checkpointing_kwargs: unknown argument(s) {unknown}; the one LED's layers "
                            "pass on to torch.utils.checkpoint is use_reentrant")
        kwargs.setdefault("use_reentrant", False)
        for m in self.modules():
            if hasattr(m, "gradient_checkpointing"):
                m.gradient_checkpointing = True
                m.checkpoint_kwargs = kwargs

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
        pretrained_model_name_or_path: str | os.PathLike | None,
        *model_args: Any,
        config: LEDConfig | str | os.PathLike | None = None,
        dtype: Any = None,
        torch_dtype: Any = None,
        device: str | torch.device | None = None,
        init_missing_heads: bool = False,
        output_loading_info: bool = False,
        ignore_mismatched_sizes: bool = False,
        use_safetensors: bool | None = None,
        low_cpu_mem_usage: bool | None = None,
        attn_implementation: str | None = None,
        progress: Callable[[str], None] | None = None,
        state_dict: dict[str, torch.Tensor] | None = None,
        subfolder: str = "",
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
        hub_only: bool = False,
        **kwargs: Any,
    ):
        """Load a checkpoint from a local folder or a Hub id (the Hub cache and HF_HUB_OFFLINE apply).

        Weights come from model.safetensors, a sharded safetensors index, or pytorch_model.bin
        (read with weights_only=True), with or without the 'led.' prefix.

        The arguments are transformers': `dtype` (or its older name `torch_dtype`): a floating
        torch.dtype, its name, or "auto" (the checkpoint's own: config.json's dtype, else its
        weights'); default float32. `subfolder` is a folder inside the checkpoint; `revision`,
        `cache_dir`, `token`, `local_files_only`, `force_download` choose what is fetched for a Hub
        id (a local folder has no revisions: there they change nothing, as in transformers). `hub_only=True`
        (ledviz's own): the name is a Hub id, and nothing on the local disk is read under that name
        (pipeline.load_model's, for a server). `use_safetensors` True/False reads only safetensors / only pytorch_model.bin.
        `low_cpu_mem_usage` is accepted and changes nothing: the model is always built without
        allocating weights before the checkpoint's are assigned. `attn_implementation` may be "eager"
        (LED's only one in transformers; ledviz's default path computes it), or one of ledviz's
        own, ATTENTION_IMPLEMENTATIONS (see LEDEncoder.set_attention_implementation).
        `state_dict` gives the weights themselves instead of the checkpoint's files; with
        `pretrained_model_name_or_path=None` it needs `config=` (as in transformers). Any other keyword sets that
        setting of the config before the model is built (attention_window=8, num_labels=3,
        output_attentions=True); one that is no setting raises TypeError naming it.

        Missing or unexpected weights raise CheckpointError listing them, and a shape mismatch
        (WeightShapeError, also a RuntimeError as in transformers) names the key and both shapes -- unless the caller asks to see them: with
        `output_loading_info=True` the model is returned with a dict of "missing_keys" (started
        from fresh values), "unexpected_keys" (not used), "mismatched_keys" and "error_msgs", as in
        transformers; `ignore_mismatched_sizes=True` starts mismatched weights from fresh values
        (listed in "mismatched_keys") instead of raising. `init_missing_heads=True` lets only a
        task head that the checkpoint lacks (e.g. qa_outputs on a summarization checkpoint) start
        from fresh values. The lists are also kept in `model.loading_info`.
        """
        if model_args:
            raise TypeError(f"{cls.__name__}.from_pretrained takes one positional argument (the checkpoint), "
                            f"got {1 + len(model_args)}: pass the others by name")
        attention = _attention_choice(attn_implementation)
        if pretrained_model_name_or_path is None and (state_dict is None or config is None):
            raise TypeError(f"{cls.__name__}.from_pretrained(None, ...) builds the model from weights in memory: "
                            "give both config= and state_dict= (or give a checkpoint folder or Hub id)")
        name = "<state_dict>" if pretrained_model_name_or_path is None else os.fspath(pretrained_model_name_or_path)
        hub = dict(subfolder=subfolder, revision=revision, cache_dir=cache_dir, token=token,
                   local_files_only=local_files_only, force_download=force_download, hub_only=hub_only)
        what = f"{cls.__name__}.from_pretrained"
        if dtype is not None and torch_dtype is not None and as_torch_dtype(dtype, "dtype", True) != \
                as_torch_dtype(torch_dtype, "torch_dtype", True):
            raise ConfigError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree: give dtype only "
                              "(torch_dtype is its older name)")
        dtype_name = "dtype" if dtype is not None or torch_dtype is None else "torch_dtype"
        wanted = as_torch_dtype(dtype if dtype is not None else torch_dtype, dtype_name, allow_auto=True)
        if isinstance(wanted, torch.dtype) and not wanted.is_floating_point:
            raise ConfigError(f"{dtype_name}={wanted} is not a floating dtype: the weights can be loaded as "
                              "float32, float16 or bfloat16 (or \"auto\", the checkpoint's own)")
        if isinstance(config, (str, os.PathLike)):
            config = LEDConfig.from_pretrained(config, **hub)
        elif config is None:
            if progress:
                progress("reading config.json")
            config = LEDConfig.from_pretrained(name, **hub)
        elif isinstance(config, LEDConfig):
            config = copy.deepcopy(config)
        else:
            raise TypeError(f"config must be an LEDConfig (or a path to one), got {type(config).__name__}")
        config.apply_overrides(kwargs, what=what)
        if state_dict is not None:  # the weights themselves, instead of the checkpoint's files (as transformers)
            if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
                raise TypeError("state_dict must be a dict of tensors (as model.state_dict() gives)")
            state = dict(state_dict)
        else:
            state = load_state_dict(name, progress=progress, use_safetensors=use_safetensors, **hub)
        if wanted == "auto":
            wanted = config.dtype if config.dtype is not None else next(
                (t.dtype for t in state.values() if t.is_floating_point()), torch.float32)
        dtype = wanted if wanted is not None else torch.float32
        if progress:
            progress("building the model")
        # build without allocating or initializing weights; the checkpoint's tensors are assigned
        with torch.device("meta"):
            model = cls(config)
        renamed, dropped = model._map_checkpoint(state)
        expected = model._expected_keys()
        missing = sorted(k for k in expected if k not in renamed)
        unexpected = sorted(k for k in renamed if k not in expected)
        # unused keys are reported without the 'led.' prefix that only the mapping added, as transformers does
        as_saved = {k: k[len("led."):] if k.startswith("led.") and k not in state else k for k in unexpected}
        lenient = output_loading_info
        fresh: list[str] = []  # keys that start from fresh values
        if missing and (init_missing_heads or lenient):
            fresh = [k for k in missing if lenient or k.startswith(HEAD_PREFIXES)]
            missing = [k for k in missing if k not in fresh]
        if lenient:
            for k in unexpected:
                del renamed[k]
        if missing or (unexpected and not lenient):
            parts = []
            if missing:
                parts.append(f"missing from the checkpoint: {', '.join(missing[:20])}"
                             + (f" (+{len(missing) - 20} more)" if len(missing) > 20 else ""))
            if unexpected:
                parts.append(f"not used by {cls.__name__}: {', '.join(as_saved[k] for k in unexpected[:20])}"
                             + (f" (+{len(unexpected) - 20} more)" if len(unexpected) > 20 else ""))
            hint = ""
            if missing and all(k.startswith(HEAD_PREFIXES) for k in missing):
                hint = (" The checkpoint has no weights for this task head; pass init_missing_heads=True to "
                        "start the head from random values (for fine-tuning).")
            raise CheckpointError(
                _mismatch_note(config, renamed) +
                f"the weights of {name!r} do not fit {cls.__name__} with its config.json: " + "; ".join(parts) + "."
                + hint + " (output_loading_info=True loads what fits and lists the rest.)"
            )
        mismatched = sorted(k for k, v in renamed.items() if tuple(v.shape) != tuple(expected[k]))
        if mismatched and not ignore_mismatched_sizes:
            shown = [f"{k!r} has shape {tuple(renamed[k].shape)} in the checkpoint but {tuple(expected[k])} in the model"
                     for k in mismatched]
            note = _mismatch_note(config, renamed)
            most = 3 if note else 10  # the fields named, a few tensors are detail enough
            raise WeightShapeError(
                note + f"the weights of {name!r} do not fit its config.json: " + "; ".join(shown[:most])
                + (f" (+{len(shown) - most} more)" if len(shown) > most else "")
                + ": the config and the weights come from different models (ignore_mismatched_sizes=True starts "
                "those weights from fresh values)"
            )
        target = torch.device(device) if device is not None else torch.device("cpu")
        renamed = {k: v.to(device=target, dtype=dtype if v.is_floating_point() else v.dtype)
                   for k, v in renamed.items() if k not in mismatched}
        for k in fresh + mismatched:
            renamed[k] = model._fresh_tensor(k, expected[k], target, dtype)
        model.load_state_dict(renamed, strict=True, assign=True)
        model.tie_weights()
        config.dtype = dtype
        # what transformers reports: final_logits_bias (zeros when absent) is never listed as missing
        info = {
            "missing_keys": sorted(k for k in fresh if k != "final_logits_bias"),
            "unexpected_keys": sorted({as_saved[k] for k in unexpected} | set(dropped)),
            "mismatched_keys": mismatched,
            "error_msgs": [],
        }
        if info["missing_keys"] or info["mismatched_keys"]:
            logger.warning("%s from %r: weights started from fresh values: %s", cls.__name__, name,
                           info["missing_keys"] + info["mismatched_keys"])
        model.loading_info = {"dropped_heads": dropped, "initialized": fresh, **info}
        model.name_or_path = name
        model.eval()
        _use_attention(model, attention)
        if hasattr(model, "_load_generation_config") and pretrained_model_name_or_path is not None:
            model._load_generation_config(name, **hub)
        return (model, info) if output_loading_info else model

    @classmethod
    def _from_config(cls, config: LEDConfig, *, dtype: Any = None, torch_dtype: Any = None,
                     attn_implementation: str | None = None):
        """A freshly initialized model of a copy of `config` (transformers' name), in `dtype` if given."""
        attention = _attention_choice(attn_implementation)
        wanted = as_torch_dtype(dtype if dtype is not None else torch_dtype, "dtype")
        model = cls(copy.deepcopy(config))
        _use_attention(model, attention)
        return model.to(wanted) if wanted is not None else model

    def _fresh_tensor(self, key: str, shape: torch.Size, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """A freshly initialized value for the weight `key` (as _init_weights and the layers' defaults would)."""
        owner, _, leaf = key.rpartition(".")
        module = self.get_submodule(owner) if owner else self
        out = torch.zeros(shape, device=device, dtype=dtype)
        std = self.config.init_std
        if isinstance(module, nn.LayerNorm) and leaf == "weight":
            out.fill_(1.0)
        elif isinstance(module, (nn.Linear, nn.Embedding)) and leaf == "weight":
            out.normal_(0.0, std)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                out[module.padding_idx] = 0
        return out

    def save_pretrained(self, save_directory: str | os.PathLike, safe_serialization: bool = True,
                        is_main_process: bool = True) -> None:
        """Write config.json and model.safetensors (tied copies stored once), loadable by transformers too.

        safe_serialization=False writes pytorch_model.bin instead; is_main_process=False writes nothing
        (as in transformers, for the other processes of a distributed run)."""
        if not is_main_process:
            return
        os.makedirs(save_directory, exist_ok=True)
        self.config.architectures = [type(self).__name__]
        self.config.dtype = self.dtype
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
        save_state_dict(unique, save_directory, safe=safe_serialization)
        if hasattr(self, "generation_config") and self.generation_config:
            with open(os.path.join(save_directory, "generation_config.json"), "w", encoding="utf-8") as f:
                json.dump(self.generation_config, f, indent=2, sort_keys=True)
