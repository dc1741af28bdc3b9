"""LEDConfig: the architecture and defaults of an LED model, read from and written to config.json."""

from __future__ import annotations

import copy
import json
import os
from typing import Any

from .errors import CheckpointError, ConfigError

# names other projects (and older Hub configs) use for our fields
ATTRIBUTE_ALIASES = {
    "num_hidden_layers": "encoder_layers",
    "hidden_size": "d_model",
    "num_attention_heads": "encoder_attention_heads",
    "attention_probs_dropout_prob": "attention_dropout",
    "initializer_range": "init_std",
}

# keys that belong to the serialization format, never to the config itself
_SKIP_ON_LOAD = {"transformers_version", "_name_or_path", "architectures_auto_map", "torch_dtype_auto"}


class LEDConfig:
    """Configuration of an LED model; the defaults give allenai/led-large-16384's architecture.

    Every documented argument is accepted with its documented default. Keys that a Hub config
    carries but that LED does not use (legacy BART fields such as ``extra_pos_embeddings``) are
    kept in ``extra`` and written back on save, so a round trip loses nothing.
    """

    model_type = "led"

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
        torch_dtype: str | None = None,
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
        self.torch_dtype = torch_dtype
        self.architectures = architectures
        self.problem_type = problem_type
        self.attention_window = attention_window
        # labels: id2label wins, then num_labels, then the default of 2 (as transformers)
        if id2label is not None:
            self.id2label = {int(k): v for k, v in id2label.items()}
        else:
            n = 2 if num_labels is None else int(num_labels)
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
        if label2id is not None:
            self.label2id = {k: int(v) for k, v in label2id.items()}
        else:
            self.label2id = {v: k for k, v in self.id2label.items()}
        # aliases other projects use (num_hidden_layers, hidden_size, ...) set our field
        kwargs = dict(kwargs)
        for old, new in ATTRIBUTE_ALIASES.items():
            if old in kwargs:
                setattr(self, new, kwargs.pop(old))
        # everything else (generation defaults, legacy keys) is kept as is
        self.extra: dict[str, Any] = {k: v for k, v in kwargs.items() if k not in _SKIP_ON_LOAD}
        self.validate()

    # ---- derived ------------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def num_hidden_layers(self) -> int:
        return self.encoder_layers

    @property
    def num_attention_heads(self) -> int:
        return self.encoder_attention_heads

    @property
    def use_return_dict(self) -> bool:
        return self.return_dict

    def attention_windows(self) -> list[int]:
        """The (two-sided, even) attention window of every encoder layer."""
        w = self.attention_window
        return [int(w)] * self.encoder_layers if isinstance(w, int) else [int(v) for v in w]

    def __getattr__(self, name: str) -> Any:
        # generation defaults and legacy keys stored in `extra` read like attributes
        extra = self.__dict__.get("extra")
        if extra is not None and name in extra:
            return extra[name]
        raise AttributeError(f"LEDConfig has no attribute {name!r}")

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
        out = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "extra"}
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out.update(copy.deepcopy(self.extra))
        out["model_type"] = self.model_type
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

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
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> "LEDConfig":
        """Read config.json from a local folder, a config.json file, or a Hub id (cache-aware)."""
        from .loading import resolve_file

        path = resolve_file(name_or_path, "config.json", **kwargs)
        return cls.from_json_file(path)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        os.makedirs(save_directory, exist_ok=True)
        with open(os.path.join(save_directory, "config.json"), "w", encoding="utf-8") as f:
            f.write(self.to_json_string())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LEDConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"LEDConfig {self.to_json_string()}"
