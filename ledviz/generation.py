"""Generation for LEDForConditionalGeneration: greedy, sampling and beam search, with streaming and attentions.

Read top to bottom: the settings (names, defaults, checks), the logits processors, the decoder
runner (the encoder output is shared by every beam, cross-attention keys/values are computed
once, self-attention keys/values are cached), the greedy/sampling loop, the beam search loop,
and `GenerationMixin.generate`, which ties them together.

The decoding rules follow transformers 4.57 `generate` step by step (processor order, beam
scores `sum_logprobs / generated_len ** length_penalty` where generated_len leaves out the
decoder start token, the early-stopping heuristics, padding of finished rows), so the same
checkpoint gives the same tokens.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Collection, Protocol, Sequence

import torch
import torch.nn.functional as F

from .answering import SETTINGS as answering_settings
from .attention import is_inference
from .cache import KeyValues, LayerCache, reorder
from .errors import CheckpointError, GenerationSettingsError, InputError
from .fastdecode import FastDecoder
from .outputs import ModelOutput

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------

# library defaults (those of transformers' GenerationConfig) of every setting we read
LIBRARY_DEFAULTS: dict[str, Any] = {
    "max_length": 20,
    "max_new_tokens": None,
    "min_length": 0,
    "min_new_tokens": None,
    "num_beams": 1,
    "num_return_sequences": 1,
    "length_penalty": 1.0,
    "early_stopping": False,
    "no_repeat_ngram_size": 0,
    "repetition_penalty": 1.0,
    "do_sample": False,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "bos_token_id": None,
    "eos_token_id": None,
    "pad_token_id": None,
    "decoder_start_token_id": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "output_scores": False,
    "output_logits": False,
    "output_attentions": False,
    "output_hidden_states": False,
    "bad_words_ids": None,
    "remove_invalid_values": False,
    "return_dict_in_generate": False,
    "use_cache": True,  # False recomputes every position each step (same tokens; per-step outputs as transformers')
}
# arguments of one call that are not stored defaults
CALL_OPTIONS = ("seed", "streamer", "stop_event", "encoder_outputs", "prefix_allowed_tokens_fn", "inputs_embeds",
                "head_mask", "decoder_head_mask", "cross_attn_head_mask")
VALID_SETTINGS = tuple(sorted(LIBRARY_DEFAULTS)) + CALL_OPTIONS
# for these, None means "the default" (for the others None means "none": no eos, no top-k, ...)
_NONE_MEANS_DEFAULT = {"max_length", "num_beams", "num_return_sequences", "length_penalty", "early_stopping",
                       "do_sample", "output_scores", "output_logits", "output_attentions", "output_hidden_states",
                       "remove_invalid_values", "return_dict_in_generate", "use_cache"}
# generation keys that checkpoints may carry but ledviz does not implement, with their neutral value
_UNSUPPORTED_NEUTRAL = {"typical_p": 1.0, "encoder_no_repeat_ngram_size": 0, "encoder_repetition_penalty": 1.0,
                        "suppress_tokens": None,
                        "exponential_decay_length_penalty": None, "begin_suppress_tokens": None,
                        "num_beam_groups": 1, "diversity_penalty": 0.0,
                        "min_p": None, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "sequence_bias": None,
                        "renormalize_logits": False, "guidance_scale": None, "max_time": None}
# the other keys transformers 4.57's GenerationConfig writes to or reads from generation_config.json, none
# of which ledviz implements (other decoding strategies, assisted decoding, transformers' cache and compile
# switches), with transformers' defaults: a checkpoint may carry them; a value other than the default is
# warned about (it is ignored), as for _UNSUPPORTED_NEUTRAL
_TRANSFORMERS_ONLY = {"penalty_alpha": None, "dola_layers": None, "constraints": None, "force_words_ids": None,
                      "stop_strings": None, "token_healing": False, "watermarking_config": None,
                      "low_memory": None, "cache_implementation": None, "cache_config": None,
                      "return_legacy_cache": None, "disable_compile": False, "compile_config": None,
                      "prefill_chunk_size": None, "is_assistant": False, "num_assistant_tokens": 20,
                      "num_assistant_tokens_schedule": "constant", "assistant_confidence_threshold": 0.4,
                      "assistant_early_exit": None, "assistant_lookbehind": 10, "target_lookbehind": 10,
                      "prompt_lookup_num_tokens": None, "max_matching_ngram_size": None}
# bookkeeping transformers writes beside the settings: dropped when a file is read
_METADATA_KEYS = ("_from_model_config", "_commit_hash", "_original_object_hash", "transformers_version")
# ledviz's own settings a generation_config.json may carry beside generate's: the answer rule
# (ledviz.answering.SETTINGS, read by answering.decline_rule; generate itself does not take them)
EXTENSION_KEYS = answering_settings
_DEFAULT_MAX_LENGTH = LIBRARY_DEFAULTS["max_length"]


# every key a generation_config.json may hold, sorted (the closest one names a typo's fix); made once
_KNOWN_FILE_KEYS = tuple(sorted({*LIBRARY_DEFAULTS, *_UNSUPPORTED_NEUTRAL, *_TRANSFORMERS_ONLY, *_METADATA_KEYS,
                                 *EXTENSION_KEYS}))
_KNOWN_FILE_KEY_SET = frozenset(_KNOWN_FILE_KEYS)


def _check_known_keys(data: dict[str, Any], source: str, skip_prefix: str | None = None) -> None:
    """A GenerationSettingsError naming every key of `data` that neither transformers' GenerationConfig
    nor ledviz knows (keys starting with `skip_prefix` are left to their own check), `source` and the fix."""
    unknown = sorted(k for k in data if k not in _KNOWN_FILE_KEY_SET
                     and not (skip_prefix and str(k).startswith(skip_prefix)))
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), _KNOWN_FILE_KEYS, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise GenerationSettingsError(
            f"{source} has unknown generation setting(s) {', '.join(hints)}: fix the spelling or remove the key "
            f"(the known keys are transformers' GenerationConfig attributes and ledviz's "
            f"{', '.join(EXTENSION_KEYS)})")


def generation_settings_from_file(data: dict[str, Any], source: str) -> dict[str, Any]:
    """The settings a generation_config.json holds (`data`, read from `source`), transformers' bookkeeping
    dropped. A key that neither transformers' GenerationConfig nor ledviz knows is a GenerationSettingsError
    naming the key, the file and the fix (a typo such as "max_new_token" would otherwise do nothing)."""
    _check_known_keys(data, source)
    return {k: v for k, v in data.items() if k not in _METADATA_KEYS}


class GenerationConfig(dict):
    """A model's generation defaults: a dict of settings that also reads and sets them as attributes, as
    transformers' `model.generation_config.max_new_tokens = 50` does. A name that is no generation setting
    raises AttributeError naming the valid ones; an unset one reads as the library default."""

    def __getattr__(self, name: str) -> Any:
        if name in self:
            return self[name]
        if name in LIBRARY_DEFAULTS:
            return LIBRARY_DEFAULTS[name]
        if name in _UNSUPPORTED_NEUTRAL:
            return _UNSUPPORTED_NEUTRAL[name]
        if name in EXTENSION_KEYS:  # ledviz's own (the answer rule): None when unset
            return None
        raise AttributeError(f"generation_config has no setting {name!r}; the settings are: "
                             f"{', '.join(sorted(LIBRARY_DEFAULTS))}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in LIBRARY_DEFAULTS and name not in _UNSUPPORTED_NEUTRAL and name not in EXTENSION_KEYS:
            close = difflib.get_close_matches(name, list(LIBRARY_DEFAULTS), n=1)
            raise AttributeError(f"{name!r} is no generation setting" + (f" (did you mean {close[0]!r}?)" if close
                                 else "") + f"; the settings are: {', '.join(sorted(LIBRARY_DEFAULTS))}")
        self[name] = value

    def to_dict(self) -> dict[str, Any]:
        return dict(self)


def _defaults_from_model_config(config) -> dict[str, Any]:
    """Generation defaults a config.json carries: its special tokens and any generation keys (legacy Hub configs)."""
    out: dict[str, Any] = {}
    for name in LIBRARY_DEFAULTS:
        if name in ("output_attentions", "output_hidden_states", "use_cache"):  # the forward's switches
            continue
        value = getattr(config, name, None)
        if value is not None:
            out[name] = value
    for name in _UNSUPPORTED_NEUTRAL:
        if name in getattr(config, "extra", {}):
            out[name] = config.extra[name]
    return out


def _warn_unsupported(defaults: dict[str, Any], source: str) -> str | None:
    """Warn about generation keys a checkpoint sets that ledviz does not implement (they are ignored);
    the warning's text, or None (for the app, which shows it: a warning alone reaches only the log)."""
    neutral = {**_UNSUPPORTED_NEUTRAL, **_TRANSFORMERS_ONLY}
    active = {k: v for k, v in defaults.items() if k in neutral and v not in (neutral[k], None)}
    if not active:
        return None
    message = (f"{source} sets generation options that ledviz does not implement and ignores: {active} "
               "(remove them from the file to generate as ledviz does without them, or use transformers "
               "for them)")
    warnings.warn(message, UserWarning, stacklevel=3)
    return message


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class _Plan:
    """Resolved settings of one generate call (the lengths count the decoder start token)."""

    max_length: int
    min_length: int | None
    min_new_tokens: int | None
    num_beams: int
    num_return_sequences: int
    length_penalty: float
    early_stopping: bool | str
    no_repeat_ngram_size: int | None
    repetition_penalty: float | None
    do_sample: bool
    temperature: float | None
    top_k: int | None
    top_p: float | None
    eos: list[int] | None
    pad: int | None
    decoder_start: int
    forced_bos: int | None
    forced_eos: list[int] | None
    output_scores: bool
    output_attentions: bool
    return_dict: bool
    seed: int | None
    streamer: Any
    stop_event: Any
    prompt_len: int = 1
    prefix_allowed: Callable[[int, torch.Tensor], Sequence[int]] | None = None
    bad_words: list[list[int]] | None = None
    remove_invalid: bool = False
    output_logits: bool = False
    output_hidden_states: bool = False
    use_cache: bool = True


def _resolve(model_defaults: dict[str, Any], kwargs: dict[str, Any], vocab_size: int, max_positions: int) -> _Plan:
    """Merge library defaults < checkpoint defaults < call arguments, check them, derive the lengths."""
    unknown = sorted(k for k in kwargs if k not in VALID_SETTINGS)
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, VALID_SETTINGS, n=1)
            if k in _UNSUPPORTED_NEUTRAL or k in _TRANSFORMERS_ONLY:
                hints.append(f"{k!r} (a transformers setting ledviz does not implement)")
            elif k in EXTENSION_KEYS:
                hints.append(f"{k!r} (an answer setting: set it in the model's generation_config.json)")
            else:
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise GenerationSettingsError(
            f"unknown generation setting(s) {', '.join(hints)}; valid settings are: {', '.join(VALID_SETTINGS)}"
        )

    def usable(d: dict) -> dict:
        return {k: v for k, v in d.items() if k in LIBRARY_DEFAULTS and not (v is None and k in _NONE_MEANS_DEFAULT)}

    given = usable(kwargs)
    s = {**LIBRARY_DEFAULTS, **usable(model_defaults), **given}

    def bad(name: str, why: str) -> GenerationSettingsError:
        return GenerationSettingsError(f"generation setting {name}={s.get(name, kwargs.get(name))!r}: {why}")

    # types and ranges
    for name in ("max_length", "num_beams", "num_return_sequences"):
        if not _is_int(s[name]) or s[name] < 1:
            raise bad(name, "must be a positive integer")
    for name in ("min_length", "no_repeat_ngram_size", "min_new_tokens", "top_k"):
        if s[name] is not None and (not _is_int(s[name]) or s[name] < 0):
            raise bad(name, "must be a non-negative integer")
    if s["max_new_tokens"] is not None and (not _is_int(s["max_new_tokens"]) or s["max_new_tokens"] < 1):
        raise bad("max_new_tokens", "must be a positive integer")
    if not _is_number(s["length_penalty"]):
        raise bad("length_penalty", "must be a number (> 0 favours longer sequences, < 0 shorter ones)")
    if not (isinstance(s["early_stopping"], bool) or s["early_stopping"] == "never"):
        raise bad("early_stopping", "must be True, False or 'never'")
    for name in ("do_sample", "output_scores", "output_logits", "output_attentions", "output_hidden_states",
                 "remove_invalid_values", "return_dict_in_generate", "use_cache"):
        if not isinstance(s[name], bool):
            raise bad(name, "must be True or False")
    if s["repetition_penalty"] is not None and (not _is_number(s["repetition_penalty"]) or s["repetition_penalty"] <= 0):
        raise bad("repetition_penalty", "must be a number > 0 (1.0 = no penalty)")
    if s["temperature"] is not None and (not _is_number(s["temperature"]) or s["temperature"] <= 0) \
            and (s["do_sample"] or "temperature" in given):
        raise bad("temperature", "must be > 0 (for greedy decoding use do_sample=False)")
    if s["top_p"] is not None and (not _is_number(s["top_p"]) or not 0 < s["top_p"] <= 1):
        raise bad("top_p", "must be in (0, 1]")
    seed = kwargs.get("seed")
    if seed is not None and not _is_int(seed):
        raise GenerationSettingsError(f"generation setting seed={seed!r}: must be an integer")

    # special tokens: ids in the vocabulary; eos and forced_eos may be lists
    def token_ids(name: str, many: bool) -> list[int] | None:
        v = s[name]
        if v is None:
            return None
        ids = list(v) if many and isinstance(v, (list, tuple)) else [v]
        if not ids or not all(_is_int(t) and 0 <= t < vocab_size for t in ids):
            raise bad(name, f"must be a token id{' (or a list of ids)' if many else ''} in [0, {vocab_size})")
        return ids

    for name in ("bos_token_id", "pad_token_id", "decoder_start_token_id", "forced_bos_token_id"):
        token_ids(name, many=False)
    eos = token_ids("eos_token_id", many=True)
    forced_eos = token_ids("forced_eos_token_id", many=True)
    bad_words = _bad_words_setting(s["bad_words_ids"], vocab_size, eos)
    pad = s["pad_token_id"] if s["pad_token_id"] is not None else (eos[0] if eos else None)
    start = s["decoder_start_token_id"] if s["decoder_start_token_id"] is not None else s["bos_token_id"]
    if start is None:
        raise GenerationSettingsError("set decoder_start_token_id (or bos_token_id): the decoder needs a first token")

    # beams and returned sequences
    beams, nrs = s["num_beams"], s["num_return_sequences"]
    if nrs > 1 and beams == 1 and not s["do_sample"]:
        raise bad("num_return_sequences", "greedy decoding returns one sequence per input: use num_beams > 1 "
                  "(at least num_return_sequences) or do_sample=True")
    if beams > 1 and nrs > beams:
        raise bad("num_return_sequences", f"must be at most num_beams ({beams})")

    # lengths, counting the decoder start token (transformers' rules)
    prompt_len = 1
    max_length = s["max_length"]
    if s["max_new_tokens"] is not None:
        max_length = s["max_new_tokens"] + prompt_len
    elif "max_length" not in given and max_length == _DEFAULT_MAX_LENGTH:
        max_length = _DEFAULT_MAX_LENGTH + prompt_len  # the library default means 20 new tokens
    min_length = s["min_length"]
    if s["min_new_tokens"] is not None:
        min_length = s["min_new_tokens"] + prompt_len
    length_name = "max_new_tokens" if s["max_new_tokens"] is not None else "max_length"
    if max_length <= prompt_len:
        raise bad(length_name, "leaves no room for a new token: max_length counts the decoder start token")
    if max_length > max_positions:
        raise bad(length_name, f"the decoder reads at most {max_positions} tokens "
                  f"(max_decoder_position_embeddings), decoder start token included")
    if min_length is not None and min_length > max_length:
        name = "min_new_tokens" if s["min_new_tokens"] is not None else "min_length"
        raise GenerationSettingsError(
            f"generation setting {name}: the minimum length ({min_length}, decoder start token included) is larger "
            f"than the maximum length ({max_length}): lower it or raise {length_name}"
        )

    # streaming and stopping
    streamer, stop_event = kwargs.get("streamer"), kwargs.get("stop_event")
    if streamer is not None and not (callable(streamer) or (hasattr(streamer, "put") and hasattr(streamer, "end"))):
        raise GenerationSettingsError("streamer must be a callable streamer(step, token_ids) or an object with "
                                      "put(token_ids) and end()")
    if streamer is not None and hasattr(streamer, "put") and beams > 1:
        raise GenerationSettingsError(
            "streamer objects (put/end) need num_beams=1, as in transformers: beams are reordered, so their tokens "
            "cannot be streamed as final text; pass a callable streamer(step, token_ids) to follow the best beam"
        )
    if stop_event is not None and not hasattr(stop_event, "is_set"):
        raise GenerationSettingsError("stop_event must be a threading.Event (or have is_set())")
    prefix_allowed = kwargs.get("prefix_allowed_tokens_fn")
    if prefix_allowed is not None and not callable(prefix_allowed):
        raise GenerationSettingsError("prefix_allowed_tokens_fn must be a callable fn(batch_id, input_ids) returning "
                                      "the token ids allowed next (see span_constraint)")

    return _Plan(
        max_length=max_length, min_length=min_length, min_new_tokens=s["min_new_tokens"], num_beams=beams,
        num_return_sequences=nrs, length_penalty=float(s["length_penalty"]), early_stopping=s["early_stopping"],
        no_repeat_ngram_size=s["no_repeat_ngram_size"], repetition_penalty=s["repetition_penalty"],
        do_sample=s["do_sample"], temperature=s["temperature"], top_k=s["top_k"], top_p=s["top_p"], eos=eos,
        pad=pad, decoder_start=start, forced_bos=s["forced_bos_token_id"], forced_eos=forced_eos,
        output_scores=s["output_scores"], output_attentions=s["output_attentions"],
        return_dict=s["return_dict_in_generate"], seed=seed, streamer=streamer, stop_event=stop_event,
        prompt_len=prompt_len, prefix_allowed=prefix_allowed, bad_words=bad_words,
        remove_invalid=s["remove_invalid_values"], output_logits=s["output_logits"],
        output_hidden_states=s["output_hidden_states"], use_cache=s["use_cache"],
    )


def _bad_words_setting(value: Any, vocab_size: int, eos: list[int] | None) -> list[list[int]] | None:
    """bad_words_ids: a list of non-empty lists of token ids (a lone EOS is dropped, as transformers does)."""
    if value is None:
        return None
    ok = isinstance(value, (list, tuple)) and value and all(
        isinstance(seq, (list, tuple)) and seq and all(_is_int(t) and 0 <= t < vocab_size for t in seq) for seq in value)
    if not ok:
        raise GenerationSettingsError(
            f"generation setting bad_words_ids={value!r}: must be a non-empty list of non-empty lists of token ids "
            f"in [0, {vocab_size}), e.g. tokenizer(words, add_special_tokens=False).input_ids")
    seqs = list(dict.fromkeys(tuple(seq) for seq in value))
    return [list(seq) for seq in seqs if not (eos and len(seq) == 1 and seq[0] in eos)] or None


# ---------------------------------------------------------------------------------------------
# Logits processors: (ids (R, L), scores (R, V)) -> scores, applied in transformers' order
# ---------------------------------------------------------------------------------------------

Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _repetition_penalty(penalty: float) -> Processor:
    """Scores of tokens already in the sequence: divided by the penalty when positive, multiplied when negative."""
    def apply(ids, scores):
        seen = scores.gather(1, ids)
        seen = torch.where(seen < 0, seen * penalty, seen / penalty)
        return scores.scatter(1, ids, seen)
    return apply


def _no_repeat_ngram(n: int) -> Processor:
    """Ban every token that would complete an n-gram already present in the sequence."""
    def apply(ids, scores):
        L = ids.shape[1]
        if L < n:  # no complete n-gram yet
            return scores
        windows = ids.unfold(1, n, 1)  # (R, L - n + 1, n)
        prefix = ids[:, L - n + 1:]  # (R, n - 1): the tokens the next one would extend
        match = (windows[:, :, :-1] == prefix[:, None, :]).all(-1)  # (R, L - n + 1)
        rows, pos = match.nonzero(as_tuple=True)
        out = scores.clone()
        out[rows, windows[rows, pos, -1]] = -math.inf
        return out
    return apply


def _bad_words(sequences: list[list[int]]) -> Processor:
    """Ban a one-token sequence always; a longer one's last token when the row ends with the rest of it."""
    single = sorted({seq[0] for seq in sequences if len(seq) == 1})
    longer = [seq for seq in sequences if len(seq) > 1]

    def apply(ids, scores):
        bias = torch.zeros_like(scores)
        if single:
            bias[:, single] = -math.inf
        for seq in longer:
            if len(seq) > ids.shape[1]:  # longer than what was generated: cannot match yet
                continue
            prefix = torch.tensor(seq[:-1], dtype=ids.dtype, device=ids.device)
            match = (ids[:, -len(prefix):] == prefix).all(dim=1)
            bias[:, seq[-1]] += torch.where(match, -math.inf, 0.0)
        return scores + bias
    return apply


def _remove_invalid(ids, scores):
    """NaN -> 0, +-inf -> the dtype's largest / smallest finite value (transformers' remove_invalid_values)."""
    info = torch.finfo(scores.dtype)
    out = torch.where(scores != scores, 0.0, scores)
    out = torch.where(scores == math.inf, info.max, out)
    return torch.where(scores == -math.inf, info.min, out)


def _eos_blocked_below(length: int, offset: int, eos: list[int]) -> Processor:
    """EOS at -inf while the sequence (minus `offset` leading tokens) is shorter than `length`."""
    index = torch.tensor(eos)

    def apply(ids, scores):
        if ids.shape[-1] - offset < length:
            return scores.index_fill(-1, index.to(scores.device), -math.inf)
        return scores
    return apply


def _force_at(length: int, tokens: list[int]) -> Processor:
    """When the sequence has `length` tokens, only `tokens` are allowed (score 0, all else -inf)."""
    def apply(ids, scores):
        if ids.shape[-1] == length:
            scores = torch.full_like(scores, -math.inf)
            scores[:, tokens] = 0
        return scores
    return apply


def _prefix_allowed(fn: Callable[[int, torch.Tensor], Sequence[int]], beams: int) -> Processor:
    """Only the tokens fn(batch_id, row's ids so far) names are allowed; row r belongs to input r // beams."""
    def apply(ids, scores):
        allowed = torch.zeros_like(scores, dtype=torch.bool)
        for r in range(ids.shape[0]):
            tokens = list(fn(r // beams, ids[r]))
            if not tokens:
                raise GenerationSettingsError(
                    f"prefix_allowed_tokens_fn allowed no token for input {r // beams} after "
                    f"{ids[r].tolist()}: it must allow at least one (an end-of-sequence token, say)")
            allowed[r, tokens] = True
        return scores.masked_fill(~allowed, -math.inf)
    return apply


_SPACE_BYTES = frozenset(b" \t\n\r\x0b\x0c")


def word_bounds(pieces: Sequence[bytes], *, name_runs: bool = False, line_breaks: Sequence[int] = ()
                ) -> tuple[list[bool], list[bool]]:
    """Where a span of whole words may start and end, for a document whose tokens stand for the
    bytes `pieces` (in order; byte-level BPE: tokenization.token_bytes).

    starts[p]: token p begins a word: it begins with whitespace, is the first token, follows
    whitespace, or follows an opening mark that follows whitespace (the "John" of " (John"); a
    token of whitespace alone begins a word only when a word or mark follows it (never the
    document's trailing space, which no word end follows).
    ends[p]: a span may end after token p: the document ends there, or goes on with whitespace,
    or with punctuation that is not glued to a following letter or digit. So "7,500,000." may end
    after "000" but not after "7" or "500", "Anna-Lena" not after "Anna", and "St. Louis" after
    "St", "St." or "Louis". Bytes of multi-byte characters (non-ASCII letters) count as letters.

    name_runs=True: a span may not end after a capitalized word (or an initial such as "K.") that
    a space and another capitalized word follow, for that capitalized word continues the name:
    "Rohan Bennett" not after "Rohan", "Maren K. Okafor" not after "Maren" or "K". A word that ends
    with a full stop (or other punctuation), or a line break, ends the run: "... is Rohan Bennett.
    The budget" may end after "Bennett", and "St. Louis" after "St.". `line_breaks`: byte offsets
    in the joined pieces of spaces that stand for line breaks (a text whose lines were joined
    with spaces, pipeline.copy_source); each ends a run as a line break would.
    """
    text = b"".join(pieces)
    breaks = frozenset(line_breaks)

    def kind(i: int) -> str:  # "s"pace, "w"ord (letter, digit, non-ASCII) or "p"unctuation; "" outside
        if not 0 <= i < len(text):
            return ""
        b = text[i]
        return "s" if b in _SPACE_BYTES else "w" if b >= 0x80 or chr(b).isalnum() else "p"

    starts, ends, pos = [], [], 0
    for piece in pieces:
        a, e = pos, pos + len(piece)
        pos = e
        before = kind(a - 1)
        blank = all(b in _SPACE_BYTES for b in piece)  # only whitespace: a start only before a word or mark
        starts.append(bool(piece) and (kind(e) in ("w", "p") if blank else (
            kind(a) == "s" or before in ("", "s") or (before == "p" and kind(a) == "w" and kind(a - 2) in ("", "s")))))
        after = kind(e)
        ends.append(bool(piece) and kind(e - 1) != "s"
                    and (after in ("", "s") or (after == "p" and kind(e + 1) != "w"))
                    and not (name_runs and _continues_name(text, e, breaks)))
    return starts, ends


_OPENING_MARKS = "([{\"'“‘"


def _continues_name(text: bytes, e: int, breaks: frozenset[int] = frozenset()) -> bool:
    """Whether the word of `text` that holds byte e - 1 is capitalized (or an initial, "K.") and
    runs on, after spaces or tabs (none of them at an offset in `breaks`), into another
    capitalized word: an end at byte e would cut a name. Only the rest of an initial's word may
    follow e ("K" of "K."); any other text after e inside the word (a full stop, a comma) ends the run."""
    w0 = e
    while w0 > 0 and text[w0 - 1] not in _SPACE_BYTES:
        w0 -= 1
    w1 = e
    while w1 < len(text) and text[w1] not in _SPACE_BYTES:
        w1 += 1
    word = text[w0:w1].decode("utf-8", "ignore").lstrip(_OPENING_MARKS)
    initial = len(word) == 2 and word[0].isupper() and word[1] == "."
    if not word or not word[0].isupper() or not (initial or (w1 == e and word[-1].isalpha())):
        return False
    j = w1
    while j < len(text) and text[j] in b" \t":
        if j in breaks:
            return False
        j += 1
    if j == w1 or j >= len(text):
        return False
    following = text[j:j + 4].decode("utf-8", "ignore")  # "Anna Li (CEO)" may end after "Li"
    return bool(following) and following[0].isupper()


def name_run_starts(pieces: Sequence[bytes], *, line_breaks: Sequence[int] = (),
                    common_words: Collection[str] = (), starts: Sequence[bool] | None = None) -> list[int]:
    """Where the name run of each word begins, for a document whose tokens stand for the bytes
    `pieces` (as in word_bounds): first[p] is the token that starts the first word of the run of
    capitalized words that the word starting at token p belongs to, or p itself (p does not start a
    word, or its word begins no run's later word).

    A run is the one word_bounds(name_runs=True) keeps an answer from ending inside: capitalized
    words (or initials such as "K.") separated by spaces or tabs only, each but the last ending
    with a letter ("Noémi Zhou", "Maren K. Okafor", "Bui Kabushiki Kaisha"); a full stop, a
    comma or a line break (an offset in `line_breaks`, or a newline) ends it. A run goes back no
    further than a word that is unlikely to be part of a name, to the word after it:
    - its lower-case form is a word of the document ("In", "The": a sentence's first word);
    - it begins a sentence and its lower-case form is one of `common_words` (a tokenizer's whole
      words: "In June ..." in a document that has no "in");
    - it is in capitals ("CEO Anna Li": "Anna Li");
    - the document also has it on its own, in no run ("June" of "10 June 2030": "In June Rohan
      Bennett" gives "Rohan Bennett").
    `starts`: word_bounds(pieces)[0] where the caller has it (the name rule changes only ends)."""
    text = b"".join(pieces)
    breaks = frozenset(line_breaks)
    starts = word_bounds(pieces)[0] if starts is None else starts
    lower = {w for w in re.findall(r"[^\W\d_][\w'’-]*", text.decode("utf-8", "ignore")) if w[0].islower()}
    own: dict[int, int] = {}  # byte where a word begins -> the last token that starts it (a blank one, then its own)
    words: list[tuple[int, int]] = []  # (byte where it begins, byte after it) of each word, in order
    begins: dict[int, int] = {}  # token that starts a word -> byte where the word begins
    pos = 0
    for p, piece in enumerate(pieces):
        a, pos = pos, pos + len(piece)
        if not starts[p]:
            continue
        while a < len(text) and text[a] in _SPACE_BYTES:
            a += 1  # the word's first byte (after the token's leading space, or in the next token)
        own[a], begins[p] = p, a
        if not words or words[-1][0] != a:
            w1 = a
            while w1 < len(text) and text[w1] not in _SPACE_BYTES:
                w1 += 1
            words.append((a, w1))

    def runs_on(k: int) -> bool:  # word k - 1 runs on into word k
        (_, w1), (a, _) = words[k - 1], words[k]
        gap = text[w1:a]
        # (_continues_name looks at each of the gap's blanks for a line break)
        return bool(gap) and all(b in b" \t" for b in gap) and _continues_name(text, w1, breaks)

    link = [False] + [runs_on(k) for k in range(1, len(words))]
    bare = [text[a:w1].decode("utf-8", "ignore").lstrip(_OPENING_MARKS).rstrip(".,;:!?)]}\"'”’") for a, w1 in words]
    alone = {w for k, w in enumerate(bare) if not link[k] and not (k + 1 < len(words) and link[k + 1])}

    def name_word(k: int) -> bool:
        word = bare[k]
        sentence_start = k == 0 or not link[k] and (
            text[words[k - 1][1] - 1:words[k - 1][1]] in (b".", b"!", b"?", b":")
            or any(b in b"\n\r" for b in text[words[k - 1][1]:words[k][0]])
            or any(i in breaks for i in range(words[k - 1][1], words[k][0])))
        return not (word.lower() in lower or (sentence_start and word.lower() in common_words)
                    or (len(word) > 1 and word.isupper()) or word in alone)

    first = list(range(len(pieces)))
    run = list(range(len(words)))  # word -> the first word of its run
    for k in range(1, len(words)):
        if link[k] and name_word(k - 1):
            run[k] = run[k - 1]
    where = {a: k for k, (a, _) in enumerate(words)}
    for p, a in begins.items():
        k = where[a]
        if run[k] != k:
            first[p] = own[words[run[k]][0]]
    return first


def run_prefix(doc: Sequence[int], span: Sequence[int], words: tuple[Sequence[bool], Sequence[bool]],
               firsts: Sequence[int]) -> list[int] | None:
    """The tokens to put before `span` so that it begins where its name run begins: the words of
    the run before the span's first word, when the span starts inside a run of capitalized words
    (`firsts`: name_run_starts of `doc`). The span's occurrences that count are those where it is
    whole words (starts and ends, word_bounds); if they do not all begin after the same words of
    a run ("Zhou" both in "Noémi Zhou" and on its own), nothing is put before it: []. None when
    the span is no whole words of `doc` (or empty)."""
    n = len(span)
    starts, ends = words
    span = list(span)
    prefixes = {tuple(doc[firsts[i]:i]) for i in range(len(doc) - n + 1)
                if starts[i] and ends[i + n - 1] and list(doc[i:i + n]) == span} if n else set()
    if not prefixes:
        return None
    return list(prefixes.pop()) if len(prefixes) == 1 else []


def _span_continuations(doc: torch.Tensor, span: Sequence[int], words: tuple[torch.Tensor, torch.Tensor] | None
                        ) -> tuple[list[int] | None, bool]:
    """(followers, may_end) of `span` in `doc`: the tokens that extend it to a longer span of
    `doc` (every token of `doc` when `span` is empty), or None when it does not occur; and
    whether an answer may end with it. `words` (starts, ends: booleans per document token, see
    word_bounds) keeps spans to whole words: only the occurrences that start where a word starts
    count, and the span may end only if one of them ends where a word ends."""
    starts_ok = ends_ok = None
    if words is not None:
        starts_ok, ends_ok = words
    if not span:
        return torch.unique(doc if starts_ok is None else doc[starts_ok]).tolist(), False
    n = len(span)
    if n > doc.numel():
        return None, False
    at = (doc.unfold(0, n, 1) == torch.as_tensor(list(span), dtype=doc.dtype)).all(dim=1).nonzero().flatten()
    if starts_ok is not None:
        at = at[starts_ok[at]]
    if at.numel() == 0:
        return None, False
    after = at + n
    may_end = True if ends_ok is None else bool(ends_ok[after - 1].any())
    return torch.unique(doc[after[after < doc.numel()]]).tolist(), may_end


def _word_tensors(words: Sequence[tuple[Sequence[bool], Sequence[bool]]] | None, sources, who: str,
                  focus: "Focus | None" = None):
    """words (one (starts, ends) per source) as boolean tensors, checked against the sources; a
    `focus` narrows word starts, so it needs `words`."""
    if words is None:
        if focus is not None:
            raise GenerationSettingsError(f"{who} was given a focus but no word bounds: a focus narrows where "
                                          "words start, so give words= (word_bounds per source) with it")
        return None
    if len(words) != len(sources):
        raise GenerationSettingsError(f"{who} has {len(sources)} sources but {len(words)} word bounds: "
                                      "give one (starts, ends) per source")
    out = []
    for b, ((st, en), src) in enumerate(zip(words, sources)):
        if not len(st) == len(en) == len(src):
            raise GenerationSettingsError(f"{who}: the word bounds of source {b} have {len(st)} starts and "
                                          f"{len(en)} ends for {len(src)} tokens: give one of each per token")
        out.append((torch.as_tensor(list(st), dtype=torch.bool), torch.as_tensor(list(en), dtype=torch.bool)))
    return out


def _end_ids(eos_token_id: int | Sequence[int], who: str) -> list[int]:
    ends = [int(eos_token_id)] if isinstance(eos_token_id, int) else [int(t) for t in eos_token_id]
    if not ends:
        raise GenerationSettingsError(f"{who} needs an end-of-sequence token id")
    return ends


def _written_after_lead(sources: Sequence[Sequence[int]], who: str, skip: int, lead: Sequence[int]):
    """The shared start of the document constraints: a function (batch_id, ids) -> (document,
    forced, written), where `forced` is the one lead token still to write (or None) and
    `written` the row's tokens after the decoder start and the lead."""
    docs = [torch.as_tensor(list(src), dtype=torch.long) for src in sources]
    lead = [int(t) for t in lead]

    def state(batch_id: int, ids: torch.Tensor) -> tuple[torch.Tensor, list[int] | None, list[int]]:
        if not 0 <= batch_id < len(docs):
            raise GenerationSettingsError(f"{who} has {len(docs)} sources but the batch has an input "
                                          f"{batch_id}: give one source per input")
        written = ids[skip:].tolist()
        if len(written) < len(lead):
            return docs[batch_id], [lead[len(written)]], []
        return docs[batch_id], None, written[len(lead):]
    return state


class Focus(Protocol):
    """Where a model looks as it begins a span: called with (batch_id, the row's tokens before the
    span), it gives a boolean per source token (the constraint's `sources[batch_id]`), True where
    the span may begin (for instance the sentence the decoder's cross-attention points at), or
    None for no restriction. The constraints call it once per row and span start, and may call it
    again for the same span: it should remember its answers."""

    def __call__(self, batch_id: int, prefix: torch.Tensor) -> torch.Tensor | None: ...


def _focused(words: tuple[torch.Tensor, torch.Tensor], inside: torch.Tensor | None, doc: torch.Tensor,
             first: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """`words` (starts, ends) with the starts kept to the tokens `inside` (a Focus's mask), where an
    occurrence of token `first` starts a word there (first=None: where any word starts there);
    else `words` as they are."""
    if inside is None:
        return words
    starts, ends = words
    narrowed = starts & inside
    there = narrowed if first is None else narrowed & (doc == int(first))
    return (narrowed, ends) if bool(there.any()) else words


def span_constraint(sources: Sequence[Sequence[int]], eos_token_id: int | Sequence[int], *, skip: int = 1,
                    lead: Sequence[int] = (), alternatives: Sequence[Sequence[int]] = (),
                    words: Sequence[tuple[Sequence[bool], Sequence[bool]]] | None = None,
                    focus: "Focus | None" = None, not_first: Sequence[int] = ()
                    ) -> Callable[[int, torch.Tensor], list[int]]:
    """A prefix_allowed_tokens_fn that makes each generated answer a span of its source.

    `sources[b]` are the token ids input b may copy from (its document, without the question or
    special tokens). The first `skip` tokens of a row (the decoder start token) are not checked;
    the next ones must be `lead` (for instance `[bos]`); after that a row may only continue with
    a token that extends what it wrote to a longer span of its source, or end (an `eos_token_id`)
    once it has written a non-empty span. A row that has ended, or whose text is no span (it was
    forced elsewhere), may only end. Answers therefore always occur, token for token, in the
    document: the model still chooses which span.

    `alternatives` are whole answers allowed besides the spans (token ids), for instance the
    tokens of the demo model's " not in the document": a row may write one of them exactly and
    end.

    `words` (optional, one (starts, ends) per source: booleans per token, see word_bounds) keeps
    answers to whole words of the document: an answer may only start where a word of the
    document starts and only end where that word ends ("7,500,000", never "7,500"), at any one
    of its occurrences.

    `focus` (optional, with `words`): where the model looks as it begins the answer (see Focus);
    once the answer's first token is written, only its occurrences inside the focus count, where
    the focus has one: a first token shared by two words of the document ("Sa" of "Salma" and of
    "San") continues into the word the model was looking at.

    `not_first`: tokens a span may not begin with (an alternative still may), for instance the
    first token of the decline answer where the span is weighed against the decline: a span
    " not approved" is that answer's first word and then the model's decline, never the fact.
    """
    ends = _end_ids(eos_token_id, "span_constraint")
    state = _written_after_lead(sources, "span_constraint", skip, lead)
    alts = [[int(t) for t in alt] for alt in alternatives if len(alt)]
    blocked = {int(t) for t in not_first}
    bounds = _word_tensors(words, sources, "span_constraint", focus)
    begun = skip + len(lead)  # where the answer begins in a row

    def allowed(batch_id: int, ids: torch.Tensor) -> list[int]:
        doc, forced, span = state(batch_id, ids)
        if forced:
            return forced
        if any(t in ends for t in span):
            return ends
        if span and span[0] in blocked:  # begun as an alternative: no span goes on from it
            followers, may_end = None, False
        else:
            words_b = None if bounds is None else bounds[batch_id]
            if focus is not None and words_b is not None and span:
                words_b = _focused(words_b, focus(batch_id, ids[:begun]), doc, span[0])
            followers, may_end = _span_continuations(doc, span, words_b)
        nxt = set(followers or ())
        if not span:
            nxt -= blocked
        for alt in alts:
            if len(span) < len(alt) and alt[:len(span)] == span:
                nxt.add(alt[len(span)])
            may_end |= alt == span
        if not nxt and not may_end:
            return ends
        return sorted(nxt) + (ends if may_end else [])
    return allowed


# the most tokens a summary value kept to the document may take (fact_list_constraint), and so
# the most a summary value chooser follows a candidate for (pipeline.ValueChooser)
MAX_VALUE_TOKENS = 24


def fact_list_constraint(sources: Sequence[Sequence[int]], labels: Sequence[Sequence[int]],
                         first_labels: Sequence[Sequence[int]], stop_token_id: int,
                         eos_token_id: int | Sequence[int], *, skip: int = 1, lead: Sequence[int] = (),
                         max_value_tokens: int = MAX_VALUE_TOKENS, value_starts: Sequence[int] | None = None,
                         words: Sequence[tuple[Sequence[bool], Sequence[bool]]] | None = None,
                         focus: "Focus | None" = None) -> Callable[[int, torch.Tensor], list[int]]:
    """A prefix_allowed_tokens_fn for summaries written as a list of facts, "Label: value. Label:
    value." (the demo model's template): every value is a span of the document and every label
    is used at most once, so the summary can neither invent a value nor repeat itself.

    `labels` are the token ids of each label as written after a fact ("<space>Lead:"),
    `first_labels` the same labels as written at the start ("Lead:"); `stop_token_id` ends a
    value (the "." token). After `skip` tokens and `lead` (as in span_constraint) a row writes a
    label, then a value: a non-empty span of its source of at most `max_value_tokens` tokens
    ended by the stop token, then either another unused label or the end of the sequence.
    `value_starts` (optional): the token ids a value may begin with, for instance the tokens
    that begin a word, so that a value is not the tail of a longer word of the document.
    `words` (optional, as in span_constraint): each value whole words of the document, starting
    where a word starts and stopped only where that word ends.
    `focus` (optional, with `words`; see Focus): each value begins inside the focus the model has
    as it begins the value (for instance the sentence its cross-attention points at: the fact's
    own sentence), where the focus has a word the value may begin with: "Deadline: 10 June 2030."
    from "The deadline is 10 June 2030.", not "Deadline: 13." from the "13 open items" of the
    sentence before.
    """
    ends = _end_ids(eos_token_id, "fact_list_constraint")
    end_set = set(ends)
    state = _written_after_lead(sources, "fact_list_constraint", skip, lead)
    bounds = _word_tensors(words, sources, "fact_list_constraint", focus)
    if len(labels) != len(first_labels) or not labels:
        raise GenerationSettingsError("fact_list_constraint needs one first-position form per label, and labels")
    labels = [[int(t) for t in x] for x in labels]
    first_labels = [[int(t) for t in x] for x in first_labels]
    stop = int(stop_token_id)
    starts = None if value_starts is None else {int(t) for t in value_starts}
    begun = skip + len(lead)  # where the facts begin in a row

    def allowed(batch_id: int, ids: torch.Tensor) -> list[int]:
        doc, forced, rest = state(batch_id, ids)
        if forced:
            return forced
        used: set[int] = set()
        n_facts, i = 0, 0
        while True:  # walk the facts written so far: label, value, stop
            if i < len(rest) and rest[i] in ends:
                return ends
            forms = first_labels if n_facts == 0 else labels
            cands = [j for j in range(len(forms)) if j not in used]
            part = rest[i:]
            matched = [j for j in cands if part[:len(forms[j])] == forms[j]]
            if not matched:  # inside a label (or at its start): continue one of the unused ones
                if len(part) and part[-1] in ends:
                    return ends
                nxt = {forms[j][len(part)] for j in cands
                       if len(part) < len(forms[j]) and forms[j][:len(part)] == part}
                if not nxt:
                    return ends  # forced elsewhere, or no label left
                return sorted(nxt) + (ends if not part and n_facts else [])
            j = max(matched, key=lambda k: len(forms[k]))
            used.add(j)
            i += len(forms[j])
            value, value_at = [], i
            while i < len(rest) and rest[i] != stop:
                value.append(rest[i])
                i += 1
            if i == len(rest):  # inside the value
                if any(t in end_set for t in value):
                    return ends
                words_b = None if bounds is None else bounds[batch_id]
                if focus is not None and words_b is not None:
                    words_b = _focused(words_b, focus(batch_id, ids[:begun + value_at]), doc,
                                       value[0] if value else None)
                followers, may_end = _span_continuations(doc, value, words_b)
                if followers is None:
                    return ends
                if len(value) >= max_value_tokens:
                    return [stop]
                nxt = set(followers) - {stop} - end_set  # an end token may separate two forms of a source
                if not value and starts is not None:
                    nxt &= starts
                return sorted(nxt) + ([stop] if may_end else []) or ends
            i += 1  # the stop token
            n_facts += 1
    return allowed


def _top_k(k: int, keep: int) -> Processor:
    def apply(ids, scores):
        kk = min(max(k, keep), scores.shape[-1])
        return scores.masked_fill(scores < torch.topk(scores, kk)[0][..., -1:], -math.inf)
    return apply


def _top_p(p: float, keep: int) -> Processor:
    """Keep the smallest set of most likely tokens whose probability reaches p (at least `keep`)."""
    def apply(ids, scores):
        sorted_scores, order = torch.sort(scores, descending=False)
        drop = sorted_scores.softmax(dim=-1).cumsum(dim=-1) <= (1 - p)
        drop[..., -keep:] = False
        return scores.masked_fill(drop.scatter(1, order, drop), -math.inf)
    return apply


def _processors(plan: _Plan) -> list[Processor]:
    procs: list[Processor] = []
    if plan.repetition_penalty is not None and plan.repetition_penalty != 1.0:
        procs.append(_repetition_penalty(float(plan.repetition_penalty)))
    if plan.no_repeat_ngram_size:
        procs.append(_no_repeat_ngram(plan.no_repeat_ngram_size))
    if plan.bad_words:
        procs.append(_bad_words(plan.bad_words))
    if plan.eos is not None and plan.min_length:
        procs.append(_eos_blocked_below(plan.min_length, 0, plan.eos))
    if plan.eos is not None and plan.min_new_tokens:
        procs.append(_eos_blocked_below(plan.min_new_tokens, plan.prompt_len, plan.eos))
    if plan.prefix_allowed is not None:
        procs.append(_prefix_allowed(plan.prefix_allowed, plan.num_beams))
    if plan.forced_bos is not None:
        procs.append(_force_at(1, [plan.forced_bos]))
    if plan.forced_eos is not None:
        procs.append(_force_at(plan.max_length - 1, plan.forced_eos))
    if plan.remove_invalid:
        procs.append(_remove_invalid)
    if plan.do_sample:
        # beams keep one more token than there are EOS ids, so a beam can always go on
        keep = (len(plan.eos) + 1 if plan.eos else 2) if plan.num_beams > 1 else 1
        if plan.temperature is not None and plan.temperature != 1.0:
            t = float(plan.temperature)
            procs.append(lambda ids, scores: scores / t)
        if plan.top_k:
            procs.append(_top_k(plan.top_k, keep))
        if plan.top_p is not None and plan.top_p < 1.0:
            procs.append(_top_p(float(plan.top_p), keep))
    return procs


def _only_masks(plan: _Plan) -> bool:
    """Whether every processor `_processors` makes for this plan only masks: sets scores to -inf, or
    forces tokens (one value, the rest -inf), whatever the other scores are. Greedy's fast pick
    (fastdecode.FastDecoder.next_greedy) relies on it; a new processor that changes scores by their
    values must be named here."""
    changes_values = (plan.repetition_penalty not in (None, 1.0), plan.remove_invalid, plan.do_sample)
    return not any(changes_values)


def _sure_length(plan: _Plan) -> int:
    """The length (decoder start included) every sequence of greedy search or sampling reaches unless
    stopped from outside: without EOS ids, max_length; else EOS is masked below min_length and
    min_new_tokens (`_processors`), and a step always adds a token."""
    if plan.eos is None:
        return plan.max_length
    least = max(plan.prompt_len + 1, plan.min_length or 0, plan.prompt_len + (plan.min_new_tokens or 0))
    return min(least, plan.max_length)


def _apply(procs: list[Processor], ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    for p in procs:
        scores = p(ids, scores)
    return scores


# ---------------------------------------------------------------------------------------------
# The decoder runner: shared encoder output, cross k/v once, self-attention cache
# ---------------------------------------------------------------------------------------------

class _DecoderRunner:
    """Runs the model's decoder for R = B * group rows against an encoder output of B rows, without copying it.

    The rows of one source are consecutive (row r reads source r // group). Cross-attention keys
    and values are computed once per source, (B, H, N, hd), and start every layer's cache; each
    layer's cross-attention is called with the group folded into the query axis, (B, group * T, D),
    so every beam reads the same keys/values (LEDDecoderLayer's cross_group). Each call is one
    `LEDDecoder.step`.
    """

    def __init__(self, model, encoder_hidden: torch.Tensor, encoder_mask: torch.Tensor | None,
                 use_cache: bool = True, head_mask: torch.Tensor | None = None,
                 cross_attn_head_mask: torch.Tensor | None = None):
        self.model = model
        self.use_cache = use_cache  # False: no self-attention cache is handed back, every step reads all positions
        self.head_mask, self.cross_attn_head_mask = head_mask, cross_attn_head_mask
        self.decoder = model.get_decoder()
        self.encoder_hidden = encoder_hidden  # (B, N, D)
        self.encoder_mask = encoder_mask  # (B, N) or None
        self._first_caches = None

    @property
    def first_caches(self) -> list[LayerCache]:
        """Every layer's cache before the first step: the cross-attention keys/values, made at first use
        (the fast step makes its own). Contiguous per head, (B, H, N, hd): every step reads them whole,
        and the products of one query row against a head's keys and values stream them (about 20%
        faster than the strided view of the (B, N, D) projection, with the same numbers)."""
        if self._first_caches is None:
            self._first_caches = []
            for layer in self.decoder.layers:
                kv = layer.encoder_attn.key_values(self.encoder_hidden)
                self._first_caches.append(LayerCache(cross_attn=KeyValues(kv.key.contiguous(), kv.value.contiguous())))
        return self._first_caches

    def forward(self, ids: torch.Tensor, caches: list[LayerCache] | None, group: int, output_attentions: bool = False,
                output_hidden_states: bool = False):
        """ids (R, T) after the positions `caches` hold -> the decoder's step (hidden (R, T, D), new caches,
        per layer self probs (R, H, T, past + T) and cross probs (R, H, T, N) with output_attentions, the
        hidden state before each layer and after the last with output_hidden_states)."""
        R, T = ids.shape
        B = self.encoder_hidden.shape[0]
        if R != B * group:
            raise RuntimeError(f"{R} decoder rows for {B} sources in groups of {group}")
        return self.decoder.step(self.decoder.embed_tokens(ids), self.encoder_hidden, self.encoder_mask,
                                 caches or self.first_caches, head_mask=self.head_mask,
                                 cross_attn_head_mask=self.cross_attn_head_mask, output_attentions=output_attentions,
                                 output_hidden_states=output_hidden_states, cross_group=group)

    def fast(self, group: int, plan: "_Plan", steps: "_StepOutputs | None") -> "FastDecoder | None":
        """The plain-tensor step (ledviz.fastdecode) for greedy search and sampling at inference, or None
        where a step's outputs are asked, head masks are given (the plain step has none) or the model
        is training. It is told how many positions will be decoded (`_sure_length`) and at most."""
        if steps is not None or not is_inference(self.model) or self.head_mask is not None \
                or self.cross_attn_head_mask is not None:
            return None
        # the last token of a sequence is never decoded: a sequence of length n decodes n - 1 positions
        return FastDecoder(self.model, self.encoder_hidden, self.encoder_mask, group, plan.max_length,
                           sure_positions=_sure_length(plan) - 1, most_positions=plan.max_length - 1)

    def next_logits(self, ids: torch.Tensor, caches: list[LayerCache] | None, group: int,
                    steps: "_StepOutputs | None" = None) -> tuple[torch.Tensor, list[LayerCache]]:
        """Float32 logits (R, V) of the last position, and the new caches; `steps` keeps this step's outputs."""
        step = self.forward(ids, caches, group,
                            output_attentions=steps is not None and steps.decoder_attentions is not None,
                            output_hidden_states=steps is not None and steps.decoder_hidden_states is not None)
        h = step.hidden[:, -1:]
        logits = (self.model.lm_head(h) + self.model.final_logits_bias.to(h.dtype))[:, -1].float()
        if steps is not None:
            steps.add(logits, step.self_attentions, step.cross_attentions, step.hidden_states)
        return logits, (step.caches if self.use_cache else None)


@dataclass
class _StepOutputs:
    """What transformers' generate keeps per step when asked (None: not asked): the raw logits (R, V),
    and per layer the decoder self-attentions (R, H, T, past + T), cross-attentions (R, H, T, N) and
    hidden states (R, T, D), T = 1 after the first step. R = the rows decoded at that step (beams:
    the running beams, in that step's order)."""

    logits: list | None = None
    decoder_attentions: list | None = None
    cross_attentions: list | None = None
    decoder_hidden_states: list | None = None

    @classmethod
    def asked(cls, plan: "_Plan") -> "_StepOutputs | None":
        if not plan.return_dict or not (plan.output_logits or plan.output_attentions or plan.output_hidden_states):
            return None
        return cls([] if plan.output_logits else None, [] if plan.output_attentions else None,
                   [] if plan.output_attentions else None, [] if plan.output_hidden_states else None)

    def add(self, logits, self_probs, cross_probs, hidden) -> None:
        if self.logits is not None:
            self.logits.append(logits.clone())
        if self.decoder_attentions is not None:
            self.decoder_attentions.append(self_probs)
            self.cross_attentions.append(cross_probs)
        if self.decoder_hidden_states is not None:
            self.decoder_hidden_states.append(tuple(hidden))


# ---------------------------------------------------------------------------------------------
# Streaming and stopping
# ---------------------------------------------------------------------------------------------

class _Stream:
    """One interface over a callback streamer(step, ids), a put/end streamer object and a stop event."""

    def __init__(self, streamer, stop_event):
        self.streamer, self.stop_event = streamer, stop_event
        self.is_object = streamer is not None and hasattr(streamer, "put")
        self.stopped = False

    def begin(self, prompt: torch.Tensor) -> None:
        if self.is_object:
            self.streamer.put(prompt.cpu())

    def emit(self, step: int, tokens: torch.Tensor) -> None:
        """Hand over one step's tokens; a callback returning False asks to stop."""
        if self.streamer is not None:
            if self.is_object:
                self.streamer.put(tokens.cpu())
            elif self.streamer(step, tokens.cpu()) is False:
                self.stopped = True

    def should_stop(self) -> bool:
        if self.stop_event is not None and self.stop_event.is_set():
            self.stopped = True
        return self.stopped

    def end(self) -> None:
        if self.is_object:
            self.streamer.end()


# ---------------------------------------------------------------------------------------------
# Greedy decoding and sampling
# ---------------------------------------------------------------------------------------------

@dataclass
class _Decoded:
    """What a decoding loop gives: sequences (R, T), decoder start token first; the per-step scores
    (with output_scores); whether a stop_event or the streamer ended it; for beam search the
    sequences' scores (R,) and beam indices (R, T - 1)."""

    sequences: torch.Tensor
    scores: list[torch.Tensor] | None
    stopped: bool
    sequences_scores: torch.Tensor | None = None
    beam_indices: torch.Tensor | None = None


def _greedy_or_sample(runner: _DecoderRunner, plan: _Plan, ids: torch.Tensor, group: int, stream: _Stream,
                      generator: torch.Generator | None, step_outputs: _StepOutputs | None = None):
    """ids (R, 1) -> the sequences (R, T) and the per-step processed scores (with output_scores)."""
    procs = _processors(plan)
    eos = torch.tensor(plan.eos, device=ids.device) if plan.eos is not None else None
    unfinished = torch.ones(ids.shape[0], dtype=torch.long, device=ids.device)
    scores = [] if plan.output_scores else None
    cache = None
    step = 0
    fast = runner.fast(group, plan, step_outputs)
    # greedy without scores, whose processors only mask: the fast step may score only the possible picks
    pick_only = fast is not None and not plan.do_sample and scores is None and _only_masks(plan)
    while not stream.should_stop():
        new_ids = ids if step == 0 else ids[:, -1:]
        if pick_only:
            next_tokens = fast.next_greedy(new_ids, lambda s: _apply(procs, ids, s))
        else:
            if fast is not None:
                logits = fast.next_logits(new_ids)
            else:
                logits, cache = runner.next_logits(ids if cache is None else ids[:, -1:], cache, group, step_outputs)
            next_scores = _apply(procs, ids, logits)
            if scores is not None:
                scores.append(next_scores)
            if plan.do_sample:
                next_tokens = torch.multinomial(next_scores.softmax(dim=-1), 1, generator=generator).squeeze(1)
            else:
                next_tokens = next_scores.argmax(dim=-1)
        if eos is not None:  # finished rows continue with padding
            next_tokens = next_tokens * unfinished + plan.pad * (1 - unfinished)
        ids = torch.cat([ids, next_tokens[:, None]], dim=-1)
        stream.emit(step, next_tokens)
        step += 1
        done = torch.full_like(next_tokens, ids.shape[1] >= plan.max_length, dtype=torch.bool)
        if eos is not None:
            done = done | torch.isin(next_tokens, eos)
        unfinished = unfinished & ~done
        if unfinished.max() == 0:
            return _Decoded(ids, scores, stopped=False)
    return _Decoded(ids, scores, stopped=True)


# ---------------------------------------------------------------------------------------------
# Beam search
# ---------------------------------------------------------------------------------------------

_NEG = -1.0e9  # the score that rules a candidate out (transformers' value)


def _pick(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """t (B, K, ...) at beams index (B, K') -> (B, K', ...)."""
    while index.dim() < t.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(t, index, dim=1)


@dataclass
class _Finished:
    """The best finished hypotheses of every source: (B, num_beams, ...), best first."""

    sequences: torch.Tensor
    scores: torch.Tensor
    beam_indices: torch.Tensor
    done: torch.Tensor  # (B, num_beams) whether the slot holds a finished hypothesis

    def merge(self, seqs, sums, beam_indices, allowed, generated_len, can_improve, plan: _Plan) -> None:
        """Offer candidates (B, K, ...) with log-prob sums; `allowed` (B, K) ones may enter if they beat the worst."""
        scores = sums / (generated_len ** plan.length_penalty)
        full = torch.all(self.done, dim=-1, keepdim=True) & (plan.early_stopping is True)
        scores += full.to(torch.float32) * _NEG
        scores += (~can_improve).to(torch.float32) * _NEG
        scores += (~allowed) * _NEG
        merged_scores = torch.cat((self.scores, scores), dim=1)
        best = torch.topk(merged_scores, k=plan.num_beams)[1]
        self.sequences = _pick(torch.cat((self.sequences, seqs), dim=1), best)
        self.scores = _pick(merged_scores, best)
        self.beam_indices = _pick(torch.cat((self.beam_indices, beam_indices), dim=1), best)
        self.done = _pick(torch.cat((self.done, allowed), dim=1), best)


def _beam_search(runner: _DecoderRunner, plan: _Plan, prompt: torch.Tensor, stream: _Stream,
                 generator: torch.Generator | None, vocab_size: int, step_outputs: _StepOutputs | None = None):
    """prompt (B * num_beams, L0) -> sequences (B * num_return_sequences, T), their scores and beam
    indices, and the per-step log-probabilities (with output_scores)."""
    nb, V, L0, max_len = plan.num_beams, vocab_size, plan.prompt_len, plan.max_length
    B = prompt.shape[0] // nb
    device = prompt.device
    procs = _processors(plan)
    eos = torch.tensor(plan.eos, device=device) if plan.eos is not None else None
    # keep (EOS count + 1) * num_beams candidates, so num_beams can go on even if the best ones end
    keep = max(2, 1 + (len(plan.eos) if plan.eos else 0)) * nb
    top_nb = torch.cat((torch.ones(nb, dtype=torch.bool), torch.zeros(keep - nb, dtype=torch.bool))).to(device)
    # unused positions hold pad (transformers: eos[0] when pad is 0 or unset; -1 without eos)
    fill = (plan.pad or plan.eos[0]) if plan.eos is not None else -1

    running = torch.full((B, nb, max_len), fill, dtype=torch.long, device=device)
    running[:, :, :L0] = prompt.view(B, nb, L0)
    running_scores = torch.zeros((B, nb), dtype=torch.float32, device=device)
    running_scores[:, 1:] = _NEG  # only the first beam's continuations at the first step
    running_beams = torch.full((B, nb, max_len - L0), -1, dtype=torch.int32, device=device)
    running_ended = torch.zeros((B, nb), dtype=torch.bool, device=device)
    finished = _Finished(running.clone(), torch.full((B, nb), _NEG, dtype=torch.float32, device=device),
                         running_beams.clone(), torch.zeros((B, nb), dtype=torch.bool, device=device))
    can_improve = torch.ones((B, 1), dtype=torch.bool, device=device)
    batch_offset = torch.arange(B, device=device).view(-1, 1) * nb
    all_scores = [] if plan.output_scores else None
    cache = None
    cur = L0
    steps = 0
    completed = False
    while not stream.should_stop():
        flat = running[:, :, :cur].reshape(B * nb, cur)
        logits, cache = runner.next_logits(flat if cache is None else flat[:, -1:], cache, nb, step_outputs)
        log_probs = _apply(procs, flat, F.log_softmax(logits, dim=-1))
        if all_scores is not None:
            all_scores.append(log_probs.clone())
        totals = (log_probs.view(B, nb, V) + running_scores[:, :, None]).reshape(B, nb * V)

        # the best `keep` continuations over all beams of a source (or `keep` sampled ones)
        if plan.do_sample:
            top_idx = torch.multinomial(F.softmax(totals, dim=-1), num_samples=keep, generator=generator)
            top_scores = torch.gather(totals, 1, top_idx)
        else:
            top_scores, top_idx = torch.topk(totals, k=keep)
        source_beam = top_idx // V
        top_beams = _pick(running_beams, source_beam)
        top_seqs = _pick(running, source_beam)
        top_seqs[:, :, cur] = top_idx % V
        top_beams[:, :, cur - L0] = (source_beam + batch_offset).to(top_beams.dtype)

        # which continuations end here (EOS or the maximum length)
        ends = torch.full((B, keep), cur + 1 >= max_len, dtype=torch.bool, device=device)
        if eos is not None:
            ends = ends | torch.isin(top_seqs[:, :, cur], eos)

        # the best num_beams that go on
        going = top_scores + ends.to(torch.float32) * _NEG
        nxt = torch.topk(going, k=nb)[1]
        running, running_scores = _pick(top_seqs, nxt), _pick(going, nxt)
        running_beams, running_ended = _pick(top_beams, nxt), _pick(ends, nxt)

        # the ones that end, among the best num_beams, become finished hypotheses if good enough
        finished.merge(top_seqs, top_scores, top_beams, ends & top_nb[None, :], cur + 1 - L0, can_improve, plan)

        cur += 1
        steps += 1
        stream.emit(steps - 1, running[:, 0, cur - 1])

        # could a running beam still beat the worst finished one? (transformers' heuristics)
        if plan.early_stopping == "never" and plan.length_penalty > 0.0:
            best_len = max_len - L0
        else:
            best_len = cur - L0
        best_running = running_scores[:, :1] / (best_len ** plan.length_penalty)
        worst_finished = torch.where(finished.done, torch.min(finished.scores, dim=1, keepdim=True)[0], _NEG)
        can_improve = can_improve & torch.any(best_running > worst_finished, dim=-1, keepdim=True)
        open_beams = ~(torch.all(finished.done) & (plan.early_stopping is True))
        if not (torch.any(can_improve) & open_beams & ~torch.all(ends)):
            completed = True
            break
        if cache is not None:
            cache = reorder(cache, running_beams[..., cur - 1 - L0].reshape(-1).long())

    stopped = stream.stopped and not completed
    if stopped and steps:
        # stopped from outside: the running beams compete as if they ended now
        finished.merge(running, running_scores, running_beams, ~running_ended, cur - L0, can_improve, plan)

    nrs = plan.num_return_sequences
    if not steps:  # stopped before the first token
        seqs = prompt.view(B, nb, L0)[:, :nrs].reshape(B * nrs, L0)
        no_beams = running_beams[:, :nrs, :0].reshape(B * nrs, 0)
        return _Decoded(seqs, all_scores, stopped, torch.zeros(B * nrs, device=device), no_beams)
    seqs = finished.sequences[:, :nrs].reshape(B * nrs, max_len)
    seq_scores = finished.scores[:, :nrs].reshape(B * nrs)
    beam_indices = finished.beam_indices[:, :nrs].reshape(B * nrs, max_len - L0)
    generated = int((beam_indices + 1).bool().sum(dim=1).max())
    return _Decoded(seqs[:, :L0 + generated], all_scores, stopped, seq_scores, beam_indices[:, :generated])


# ---------------------------------------------------------------------------------------------
# Output and the mixin
# ---------------------------------------------------------------------------------------------

@dataclass
class GenerateOutput(ModelOutput):
    """What `generate(..., return_dict_in_generate=True)` returns.

    sequences (B*, T): B* = batch * num_return_sequences, decoder start token first; finished rows
    are padded with pad_token_id. scores: per step, the processed scores (B*, V) (greedy/sampling)
    or log-probabilities (batch * num_beams, V) (beams), with output_scores. logits: per step, the
    raw logits, with output_logits. sequences_scores (B*): the beam scores, sum_logprobs /
    generated_len ** length_penalty.

    In transformers' per-step layout: with output_attentions, decoder_attentions and
    cross_attentions hold one entry per step, each a tuple over layers of (R, H, 1, t + 1) and
    (R, H, 1, N) (the first step (R, H, 1, 1)); with output_hidden_states, decoder_hidden_states
    one entry per step, each a tuple of (R, 1, D) per layer plus the last, and
    encoder_hidden_states the encoder's (B, N, D) per layer plus the last. R = the rows decoded at
    that step (B* for greedy/sampling, batch * num_beams for beams). encoder_attentions
    (B, H, N, x + 2w + 1) and encoder_global_attentions (B, H, N, x) come from the one encoder pass
    (one row per input, not per beam).

    Our own form, for reading the finished sequences: with output_attentions, one teacher-forced
    pass over them gives final_pass_decoder_attentions (per layer (B*, H, T, T)) and
    final_pass_cross_attentions (per layer (B*, H, T, N)): row t is the query at position t, which
    chose token t + 1. stopped: True when a stop_event or the streamer ended generation early.
    """

    sequences: torch.Tensor | None = None
    scores: tuple | None = None
    logits: tuple | None = None
    sequences_scores: torch.Tensor | None = None
    beam_indices: torch.Tensor | None = None
    encoder_attentions: tuple | None = None
    encoder_global_attentions: tuple | None = None
    encoder_hidden_states: tuple | None = None
    decoder_attentions: tuple | None = None
    cross_attentions: tuple | None = None
    decoder_hidden_states: tuple | None = None
    final_pass_decoder_attentions: tuple | None = None
    final_pass_cross_attentions: tuple | None = None
    stopped: bool = False


def _as_hidden(encoder_outputs) -> tuple[torch.Tensor, Any]:
    """The last hidden state (B, N, D) of an encoder output object or tuple, and the object."""
    if isinstance(encoder_outputs, (tuple, list)):
        return encoder_outputs[0], None
    return encoder_outputs.last_hidden_state, encoder_outputs


class GenerationMixin:
    """Adds `generate` to LEDForConditionalGeneration."""

    # ---- generation defaults -------------------------------------------------------------
    @property
    def generation_config(self) -> GenerationConfig:
        """Generation defaults of this model (generation_config.json, else config.json); generate's arguments win.
        Read and set as a dict or by attribute (`model.generation_config.num_beams = 4`)."""
        cfg = self.__dict__.get("_generation_config")
        if cfg is None:
            cfg = self.__dict__["_generation_config"] = GenerationConfig(_defaults_from_model_config(self.config))
        return cfg

    @generation_config.setter
    def generation_config(self, value: dict) -> None:
        if not isinstance(value, dict):
            raise TypeError(f"generation_config must be a dict of generation settings, got {type(value).__name__}")
        # the decline_... keys are answering.decline_rule's to check (it names an unknown one)
        _check_known_keys(value, "the generation config set on the model", skip_prefix="decline")
        self.__dict__["_generation_config"] = GenerationConfig(value)

    def _load_generation_config(self, name_or_path, **hub_kwargs) -> None:
        """Read generation_config.json of a checkpoint if it has one, else take the generation keys of config.json."""
        from .loading import resolve_file

        path = resolve_file(name_or_path, "generation_config.json", required=False, **hub_kwargs)
        self.loading_notes = []  # what loading warned about, for a user who sees no warnings (the app)
        if path is None:
            self.generation_config = _defaults_from_model_config(self.config)
            note = _warn_unsupported(self.generation_config, f"the config.json of {name_or_path!r}")
            self.loading_notes += [note] if note else []
            return
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path} is not valid JSON ({e}): the checkpoint's generation config is corrupted") \
                from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{path} must hold a JSON object, not {type(data).__name__}")
        self.generation_config = generation_settings_from_file(data, str(path))
        note = _warn_unsupported(self.generation_config, str(path))
        self.loading_notes += [note] if note else []

    # ---- generate ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, input_ids=None, attention_mask=None, global_attention_mask=None, **settings):
        """Generate token ids (B*, T) for input_ids (B, N); B* = B * num_return_sequences.

        Settings (defaults: this checkpoint's generation_config.json or config.json, then the library's):
        max_length / max_new_tokens (max_length counts the decoder start token), min_length /
        min_new_tokens, num_beams, num_return_sequences, length_penalty, early_stopping (True, False,
        "never"), no_repeat_ngram_size, repetition_penalty, do_sample with temperature, top_k, top_p
        and seed (a torch.Generator: the same seed gives the same tokens; without a seed the global
        RNG is used, as in transformers), forced_bos_token_id, forced_eos_token_id,
        decoder_start_token_id, bos_token_id, eos_token_id, pad_token_id, bad_words_ids,
        remove_invalid_values, output_scores, output_logits, output_attentions, output_hidden_states,
        return_dict_in_generate (-> GenerateOutput, whose fields say what each holds), and
        prefix_allowed_tokens_fn(batch_id, ids) -> allowed token ids (as in transformers;
        `span_constraint` builds one that keeps answers to spans of the document).

        Streaming and stopping: `streamer` is a callable streamer(step, token_ids) called after each
        step with the new token of every row (beam search: of every input's best running beam,
        which later steps may still replace) -- returning False stops -- or an object with
        put(token_ids)/end() like transformers' streamers (num_beams=1). `stop_event` (a
        threading.Event) stops at the next step. Stopped generation returns what it has: the
        tokens so far, or for beams the best of the finished and running hypotheses.

        `encoder_outputs` (from model.get_encoder()) skips the encoder; give the same attention_mask.
        `inputs_embeds` (B, N, D) replaces input_ids as the encoder's input. `head_mask`,
        `decoder_head_mask`, `cross_attn_head_mask` (layers, heads) go to the encoder, the decoder's
        self-attention and its cross-attention, as in forward. `use_cache=False` recomputes every
        position at each step (the same tokens, slower), so the per-step attentions and hidden states
        cover all positions, as transformers' do.
        """
        plan = _resolve(self.generation_config, settings, self.config.vocab_size,
                        self.config.max_decoder_position_embeddings)
        encoder_outputs = settings.get("encoder_outputs")
        inputs_embeds = settings.get("inputs_embeds")
        device = self.device
        if inputs_embeds is not None and (input_ids is not None or encoder_outputs is not None):
            raise InputError("give one of input_ids, inputs_embeds and encoder_outputs: each is the whole input "
                             "of the encoder")
        if input_ids is None and encoder_outputs is None and inputs_embeds is None:
            # as transformers: the encoder reads one <s> (bos_token_id), the decoder starts as always
            bos = settings.get("bos_token_id", self.generation_config.get("bos_token_id", self.config.bos_token_id))
            if bos is None:
                raise InputError("give input_ids (B, N) or encoder_outputs (or set bos_token_id, which an empty "
                                 "input starts from)")
            input_ids = torch.full((1, 1), int(bos), dtype=torch.long, device=device)

        # 1. the encoder, once for all beams
        if encoder_outputs is None:
            if attention_mask is None and input_ids is not None and plan.pad is not None \
                    and not (plan.eos and plan.pad in plan.eos) and bool((input_ids == plan.pad).any()):
                attention_mask = input_ids.ne(plan.pad).long()  # transformers infers it from the padding
            encoder_outputs = self.get_encoder()(
                input_ids=input_ids, inputs_embeds=inputs_embeds, head_mask=settings.get("head_mask"),
                attention_mask=attention_mask, global_attention_mask=global_attention_mask,
                output_attentions=plan.output_attentions and plan.return_dict,
                output_hidden_states=plan.output_hidden_states and plan.return_dict, return_dict=True,
            )
        hidden, enc_obj = _as_hidden(encoder_outputs)
        B = hidden.shape[0]
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(hidden.shape[:2]):
            raise InputError(
                f"attention_mask has shape {tuple(attention_mask.shape)} but the encoder output has "
                f"{tuple(hidden.shape[:2])}: give one mask value per input token"
            )
        runner = _DecoderRunner(self, hidden, attention_mask, use_cache=plan.use_cache,
                                head_mask=settings.get("decoder_head_mask"),
                                cross_attn_head_mask=settings.get("cross_attn_head_mask"))

        # 2. decode
        group = max(plan.num_beams, plan.num_return_sequences)
        prompt = torch.full((B * group, plan.prompt_len), plan.decoder_start, dtype=torch.long, device=device)
        stream = _Stream(plan.streamer, plan.stop_event)
        generator = None
        if plan.seed is not None:
            generator = torch.Generator(device=device).manual_seed(plan.seed)
        steps = _StepOutputs.asked(plan)
        try:
            stream.begin(prompt)
            if plan.num_beams == 1:
                decoded = _greedy_or_sample(runner, plan, prompt, group, stream, generator, steps)
            else:
                decoded = _beam_search(runner, plan, prompt, stream, generator, self.config.vocab_size, steps)
        finally:
            stream.end()
        if not plan.return_dict:
            return decoded.sequences

        # 3. per-step outputs (transformers' layout), and the attentions of the final sequences from one
        # teacher-forced pass (ours)
        out = GenerateOutput(sequences=decoded.sequences,
                             scores=tuple(decoded.scores) if decoded.scores is not None else None,
                             sequences_scores=decoded.sequences_scores, beam_indices=decoded.beam_indices,
                             stopped=decoded.stopped)
        if steps is not None:
            as_tuple = (lambda v: tuple(v) if v is not None else None)  # noqa: E731
            out.logits, out.decoder_attentions = as_tuple(steps.logits), as_tuple(steps.decoder_attentions)
            out.cross_attentions, out.decoder_hidden_states = as_tuple(steps.cross_attentions), \
                as_tuple(steps.decoder_hidden_states)
        if enc_obj is not None and plan.output_hidden_states:
            out.encoder_hidden_states = getattr(enc_obj, "hidden_states", None)
        if plan.output_attentions:
            rows_per_source = decoded.sequences.shape[0] // B
            final = runner.forward(decoded.sequences, None, rows_per_source, output_attentions=True)
            out.final_pass_decoder_attentions, out.final_pass_cross_attentions = \
                final.self_attentions, final.cross_attentions
            if enc_obj is not None:
                out.encoder_attentions = getattr(enc_obj, "attentions", None)
                out.encoder_global_attentions = getattr(enc_obj, "global_attentions", None)
        return out
