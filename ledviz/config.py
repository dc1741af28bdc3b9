"""LEDConfig: the architecture and defaults of an LED model, read from and written to config.json."""

from __future__ import annotations

import copy
import json
import os
from typing import Any

from .errors import CheckpointError, ConfigError

# names other projects use for our fields (transformers' LEDConfig.attribute_map): reading or
# setting one reads or sets the field. (`num_hidden_layers` is no alias: as in transformers it is a
# field of its own that starts as encoder_layers.)
ATTRIBUTE_MAP = {
    "hidden_size": "d_model",
    "num_attention_heads": "encoder_attention_heads",
    "attention_probs_dropout_prob": "attention_dropout",
    "initializer_range": "init_std",
}

# keys that belong to the serialization format, never to the config itself
_SKIP_ON_LOAD = {"transformers_version", "_name_or_path", "architectures_auto_map", "torch_dtype_auto",
                 "_commit_hash", "attn_implementation", "_attn_implementation_autoset"}

# settings every transformers config has, with their defaults (PretrainedConfig's). The ones LEDConfig
# has no field for are accepted as overrides by from_pretrained and kept in `extra`; to_diff_dict
# leaves out a value equal to both this default and LEDConfig's own, as transformers does.
GENERIC_DEFAULTS: dict[str, Any] = {
    "return_dict": True, "output_hidden_states": False, "output_attentions": False, "torchscript": False,
    "dtype": None, "pruned_heads": {}, "tie_word_embeddings": True, "chunk_size_feed_forward": 0,
    "is_encoder_decoder": False, "is_decoder": False, "cross_attention_hidden_size": None,
    "add_cross_attention": False, "tie_encoder_decoder": False, "architectures": None, "finetuning_task": None,
    "id2label": {0: "LABEL_0", 1: "LABEL_1"}, "label2id": {"LABEL_0": 0, "LABEL_1": 1},
    "task_specific_params": None, "problem_type": None, "tokenizer_class": None, "prefix": None,
    "bos_token_id": None, "pad_token_id": None, "eos_token_id": None, "sep_token_id": None,
    "decoder_start_token_id": None, "max_length": 20, "min_length": 0, "do_sample": False, "early_stopping": False,
    "num_beams": 1, "temperature": 1.0, "top_k": 50, "top_p": 1.0, "typical_p": 1.0, "repetition_penalty": 1.0,
    "length_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0, "bad_words_ids": None,
    "num_return_sequences": 1, "output_scores": False, "return_dict_in_generate": False,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "remove_invalid_values": False,
    "exponential_decay_length_penalty": None, "suppress_tokens": None, "begin_suppress_tokens": None,
    "num_beam_groups": 1, "diversity_penalty": 0.0, "tf_legacy_loss": False, "use_bfloat16": False,
}
GENERIC_SETTINGS = tuple(GENERIC_DEFAULTS)


def as_torch_dtype(value: Any, name: str = "dtype", allow_auto: bool = False) -> Any:
    """A torch.dtype from a dtype, its name ("float16", "torch.float16") or None ("auto" when allowed).

    Anything else raises ConfigError naming `name` and what it accepts."""
    import torch

    if value is None or isinstance(value, torch.dtype) or (allow_auto and value == "auto"):
        return value
    if isinstance(value, str):
        found = getattr(torch, value.replace("torch.", ""), None)
        if isinstance(found, torch.dtype):
            return found
    accepted = "a torch.dtype or its name (torch.float16, \"bfloat16\", ...)" + (" or \"auto\"" if allow_auto else "")
    raise ConfigError(f"{name}={value!r} is not a dtype: give {accepted}")


def _check_num_labels(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"num_labels={value!r}: a classification head needs a positive whole number of labels "
            "(1 for regression, 2 or more for classification)"
        )
    return value


class LEDConfig:
    """Configuration of an LED model; the defaults give allenai/led-large-16384's architecture.

    Every documented argument is accepted with its documented default. Keys that a Hub config
    carries but that LED does not use (legacy BART fields such as ``extra_pos_embeddings``) are
    kept in ``extra`` and written back on save, so a round trip loses nothing.
    """

    model_type = "led"
    # transformers' composite-config API, as its model and generation checks call it: LED has no
    # sub-configs, builds without arguments, and its one attention implementation there is "eager"
    sub_configs: dict[str, type] = {}
    has_no_defaults_at_init = False
    _attn_implementation = "eager"

    def __init__(
        self,
        vocab_size: int = 50265,
        max_encoder_position_embeddings: int = 16384,
        max_decoder_position_embeddings: int = 1024,
        encoder_layers: int = 12,
        encoder_ffn_dim: int = 4096,
        encoder_attention_heads: int = 16,
        decoder_layers: int = 12,
        decoder_ffn_dim: int = 4096,
        decoder_attention_heads: int = 16,
        encoder_layerdrop: float = 0.0,
        decoder_layerdrop: float = 0.0,
        use_cache: bool = True,
        is_encoder_decoder: bool = True,
        activation_function: str = "gelu",
        d_model: int = 1024,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        init_std: float = 0.02,
        decoder_start_token_id: int = 2,
        classifier_dropout: float = 0.0,
        pad_token_id: int = 1,
        bos_token_id: int = 0,
        eos_token_id: int = 2,
        attention_window: int | list[int] = 512,
        # generic settings every checkpoint may carry
        num_labels: int | None = None,
        id2label: dict | None = None,
        label2id: dict | None = None,
        problem_type: str | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        tie_word_embeddings: bool = True,
        torch_dtype: Any = None,
        dtype: Any = None,
        architectures: list[str] | None = None,
        forced_bos_token_id: int | None = None,
        forced_eos_token_id: int | None = None,
        **kwargs: Any,
    ):
        self.vocab_size = vocab_size
        self.max_encoder_position_embeddings = max_encoder_position_embeddings
        self.max_decoder_position_embeddings = max_decoder_position_embeddings
        self.d_model = d_model
        self.encoder_ffn_dim = encoder_ffn_dim
        self.encoder_layers = encoder_layers
        self.encoder_attention_heads = encoder_attention_heads
        self.decoder_ffn_dim = decoder_ffn_dim
        self.decoder_layers = decoder_layers
        self.decoder_attention_heads = decoder_attention_heads
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.activation_function = activation_function
        self.init_std = init_std
        self.encoder_layerdrop = encoder_layerdrop
        self.decoder_layerdrop = decoder_layerdrop
        self.classifier_dropout = classifier_dropout
        self.use_cache = use_cache
        self.is_encoder_decoder = is_encoder_decoder
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.decoder_start_token_id = decoder_start_token_id
        self.forced_bos_token_id = forced_bos_token_id
        self.forced_eos_token_id = forced_eos_token_id
        self.output_attentions = output_attentions
        self.output_hidden_states = output_hidden_states
        self.return_dict = return_dict
        self.tie_word_embeddings = tie_word_embeddings
        # `dtype` wins over its older name `torch_dtype` (both are accepted, as in transformers)
        self.dtype = as_torch_dtype(dtype if dtype is not None else torch_dtype,
                                    "dtype" if dtype is not None else "torch_dtype")
        self.architectures = architectures
        if problem_type not in (None, "regression", "single_label_classification", "multi_label_classification"):
            raise ConfigError(f"problem_type={problem_type!r}: use 'regression', 'single_label_classification' or "
                              "'multi_label_classification' (or None: chosen from num_labels and the labels' type)")
        self.problem_type = problem_type
        self.attention_window = attention_window
        self.num_hidden_layers = encoder_layers
        # labels: id2label wins, then num_labels, then the default of 2 (as transformers); ids are ints
        for name, value in (("id2label", id2label), ("label2id", label2id)):
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{name} must be a dict, got {type(value).__name__}")
        if num_labels is not None:
            _check_num_labels(num_labels)
            if id2label is not None and len(id2label) != num_labels:
                raise ConfigError(f"num_labels={num_labels} does not fit id2label, which has {len(id2label)} labels: "
                                  "give one of them")
        if id2label is not None:
            self.id2label = {int(k): v for k, v in id2label.items()}
        else:
            self._create_id_label_maps(2 if num_labels is None else num_labels)
        if label2id is not None:
            self.label2id = dict(label2id)  # kept as given, as transformers keeps it
        elif id2label is not None:
            self.label2id = {v: k for k, v in self.id2label.items()}
        # aliases other projects use (hidden_size, num_attention_heads, ...) set our field; a
        # num_hidden_layers of its own (a transformers config.json carries it) is kept as given
        kwargs = dict(kwargs)
        for old, new in ATTRIBUTE_MAP.items():
            if old in kwargs:
                setattr(self, new, kwargs.pop(old))
        if "num_hidden_layers" in kwargs:
            self.num_hidden_layers = kwargs.pop("num_hidden_layers")
        # everything else (generation defaults, legacy keys) is kept as is
        self.extra: dict[str, Any] = {k: v for k, v in kwargs.items() if k not in _SKIP_ON_LOAD}
        self.validate()

    # ---- derived and aliased -----------------------------------------------------------
    attribute_map = ATTRIBUTE_MAP

    def __setattr__(self, name: str, value: Any) -> None:
        name = ATTRIBUTE_MAP.get(name, name)
        if name == "dtype":
            value = as_torch_dtype(value)
        object.__setattr__(self, name, value)

    def _create_id_label_maps(self, num_labels: int) -> None:
        self.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        # changing the number of labels rebuilds id2label / label2id (as transformers)
        if _check_num_labels(value) != self.num_labels:
            self._create_id_label_maps(value)

    @property
    def torch_dtype(self) -> Any:
        """The older name of `dtype`."""
        return self.dtype

    @torch_dtype.setter
    def torch_dtype(self, value: Any) -> None:
        self.dtype = as_torch_dtype(value, "torch_dtype")

    @property
    def use_return_dict(self) -> bool:
        return self.return_dict

    @property
    def name_or_path(self) -> str:
        return self.__dict__.get("_name_or_path", "")

    def get_text_config(self, decoder: bool | None = None, encoder: bool | None = None) -> "LEDConfig":
        """The config of the text model: LED's config itself (transformers asks this of composite configs)."""
        return self

    def attention_windows(self) -> list[int]:
        """The (two-sided, even) attention window of every encoder layer."""
        w = self.attention_window
        return [int(w)] * self.encoder_layers if isinstance(w, int) else [int(v) for v in w]

    def __getattr__(self, name: str) -> Any:
        # aliases read their field; generation defaults and legacy keys stored in `extra` read like attributes
        if name in ATTRIBUTE_MAP:
            return getattr(self, ATTRIBUTE_MAP[name])
        extra = self.__dict__.get("extra")
        if extra is not None and name in extra:
            return extra[name]
        raise AttributeError(f"LEDConfig has no attribute {name!r}")

    def knows(self, name: str) -> bool:
        """Whether `name` is a setting of this config (a field, an alias, a generic transformers setting)."""
        if name.startswith("_") or name == "extra":
            return False
        return (name in self.__dict__ or name in ATTRIBUTE_MAP or name in GENERIC_SETTINGS
                or name in self.extra or isinstance(getattr(type(self), name, None), property))

    # ---- checks -------------------------------------------------------------------------
    def validate(self) -> None:
        w = self.attention_window
        if isinstance(w, bool) or not isinstance(w, (int, list, tuple)):
            raise ConfigError(
                f"attention_window must be an int or a list of ints (one per encoder layer), got {w!r}"
            )
        windows = [w] if isinstance(w, int) else list(w)
        if not isinstance(w, int) and len(windows) != self.encoder_layers:
            raise ConfigError(
                f"attention_window has {len(windows)} values but the encoder has {self.encoder_layers} "
                "layers: give one window per layer, or a single int for all"
            )
        for i, v in enumerate(windows):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0 or v % 2:
                where = "" if isinstance(w, int) else f" (layer {i})"
                raise ConfigError(
                    f"attention_window{where} must be a positive even integer, got {v!r}: "
                    "each token sees attention_window // 2 tokens on either side"
                )
        if isinstance(w, tuple):
            self.attention_window = list(w)
        for name in ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads",
                     "decoder_attention_heads", "vocab_size"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.encoder_attention_heads or self.d_model % self.decoder_attention_heads:
            raise ConfigError(
                f"d_model ({self.d_model}) must be divisible by encoder_attention_heads "
                f"({self.encoder_attention_heads}) and decoder_attention_heads ({self.decoder_attention_heads})"
            )

    # ---- (de)serialization ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every setting as a dict (dtype as its name, id2label with int keys, as transformers)."""
        out = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "extra" and not k.startswith("_")}
        out["dtype"] = None if self.dtype is None else str(self.dtype).replace("torch.", "")
        out.update(copy.deepcopy(self.extra))
        out["model_type"] = self.model_type
        return out

    def to_diff_dict(self) -> dict[str, Any]:
        """The settings worth writing, as transformers chooses them: those that are no generic setting,
        or differ from the generic default or from LEDConfig()'s (model_type always)."""
        ours = LEDConfig().to_dict()
        out = {}
        for k, v in self.to_dict().items():
            if k not in GENERIC_DEFAULTS or v != GENERIC_DEFAULTS[k] or v != ours.get(k, v):
                out[k] = v
        out["model_type"] = self.model_type
        return out

    def to_json_string(self, use_diff: bool = True) -> str:
        """JSON of `to_diff_dict()` (or of every setting with use_diff=False), keys sorted."""
        return json.dumps(self.to_diff_dict() if use_diff else self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike, use_diff: bool = True) -> None:
        with open(json_file_path, "w", encoding="utf-8") as f:
            f.write(self.to_json_string(use_diff=use_diff))

    def update(self, config_dict: dict[str, Any]) -> None:
        """Set each key of `config_dict` as an attribute (aliases and num_labels included)."""
        for key, value in config_dict.items():
            setattr(self, key, value)

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> "LEDConfig":
        data = dict(data)
        model_type = data.pop("model_type", "led")
        if model_type != "led":
            raise ConfigError(
                f"this checkpoint's config.json says model_type={model_type!r}, but ledviz only runs LED "
                "models (model_type 'led'): pick an LED checkpoint such as allenai/led-base-16384"
            )
        data.update(overrides)
        return cls(**data)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "LEDConfig":
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise CheckpointError(f"no config.json at {path}: a checkpoint folder needs one") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path} is not valid JSON ({e}); the checkpoint's config is corrupted") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{path} must hold a JSON object, not {type(data).__name__}")
        return cls.from_dict(data)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, return_unused_kwargs: bool = False,
                        **kwargs: Any):
        """Read config.json from a local folder, a config.json file, or a Hub id (cache-aware).

        Hub arguments: subfolder, revision, cache_dir, token, local_files_only, force_download. Any
        other keyword sets that setting after reading (attention_window=8, num_labels=3,
        output_attentions=True, dtype=...), as transformers does. A keyword that is no setting
        raises TypeError naming it, unless return_unused_kwargs=True, which returns
        (config, the unused keywords) instead.
        """
        from .loading import HUB_KWARGS, resolve_file

        hub = {k: kwargs.pop(k) for k in list(kwargs) if k in HUB_KWARGS}
        path = resolve_file(name_or_path, "config.json", **hub)
        config = cls.from_json_file(path)
        config._name_or_path = os.fspath(name_or_path)
        unused = config.apply_overrides(kwargs, strict=not return_unused_kwargs)
        return (config, unused) if return_unused_kwargs else config

    def apply_overrides(self, overrides: dict[str, Any], strict: bool = True,
                        what: str = "LEDConfig.from_pretrained") -> dict[str, Any]:
        """Set every override that is a setting of this config; returns the others (strict: TypeError naming them)."""
        overrides = dict(overrides)
        if "torch_dtype" in overrides:  # the older name of dtype
            value = overrides.pop("torch_dtype")
            overrides.setdefault("dtype", value)
        if "num_labels" in overrides and "id2label" in overrides and overrides["id2label"] is not None \
                and len(overrides["id2label"]) != overrides["num_labels"]:
            raise ConfigError(f"num_labels={overrides['num_labels']} does not fit id2label, which has "
                              f"{len(overrides['id2label'])} labels: give one of them")
        unused = {k: v for k, v in overrides.items() if not self.knows(k)}
        if unused and strict:
            raise TypeError(f"{what} got unexpected keyword argument(s) {', '.join(map(repr, sorted(unused)))}: "
                            "neither a loading option nor a setting of LEDConfig")
        for key, value in overrides.items():
            if key in unused:
                continue
            if key in self.extra:
                self.extra[key] = value
            elif key in GENERIC_SETTINGS and key not in self.__dict__ and \
                    not isinstance(getattr(type(self), key, None), property):
                self.extra[key] = value
            else:
                setattr(self, key, value)
        if overrides.keys() - unused:
            self.validate()
        return unused

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        os.makedirs(save_directory, exist_ok=True)
        self.to_json_file(os.path.join(save_directory, "config.json"), use_diff=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LEDConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"LEDConfig {self.to_json_string()}"
