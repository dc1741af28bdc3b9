"""LED tokenizers: byte-level BPE with RoBERTa-style special tokens, on the `tokenizers` library.

`LEDTokenizerFast` and `LEDTokenizer` share one implementation and return the same ids, masks
and offsets as transformers' classes of the same names. Where those two differ from each other,
each of ours follows its namesake:

- `truncation="longest_first"` on a pair with an odd token budget: the fast tokenizer gives the
  spare token to the longer text (the second on a tie), the slow one to the first text;
- a text too short for `only_first`/`only_second`: fast raises (InputError here), slow logs an
  error and leaves the input untruncated; `only_second` on a single text: fast raises, slow
  ignores it;
- `max_length` below the special-token count: fast leaves the input as it is, slow empties the
  texts of a pair (and leaves a single text as it is);
- `add_prefix_space=True`: slow adds one space in front of the text, fast one in front of every
  piece between special tokens;
- `errors` (the UTF-8 error handler of decode): slow follows it, fast always replaces;
- `tokens()`: fast shows an added token as written in the text (" <mask>"), slow as in the
  vocabulary ("<mask>").

Differences from transformers, on purpose, are listed in one place: the README's "Deliberate
differences from transformers" (global_attention_mask padded with 0, ids outside the vocabulary
an InputError, model_max_length 16384 for the "no limit" placeholder). Every encoding also says
what truncation cut (`enc.num_truncated_tokens`) and how far an untruncated input runs past
`model_max_length` (`enc.num_tokens_over_limit`).
"""

from __future__ import annotations

import codecs
import inspect
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from .errors import CheckpointError, InputError

logger = logging.getLogger(__name__)

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"

# transformers' order of the special-token attributes (all_special_tokens follows it)
SPECIAL_TOKEN_ATTRIBUTES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# the LED vocabulary starts with these ids 0..3; "<mask>" is the last id
LED_LEADING_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")
MASK_TOKEN = "<mask>"

LED_MODEL_MAX_LENGTH = 16384
# transformers writes int(1e30) to mean "no limit"; anything this large is treated as unset
_NO_LIMIT = int(1e20)

# transformers' clean_up_tokenization: spaces removed before punctuation and English contractions
_CLEAN_UP_REPLACEMENTS = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
    (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)

# pad values per key when padding a batch
_PAD_VALUES = {
    "attention_mask": 0,
    "token_type_ids": 0,
    "special_tokens_mask": 1,
    "global_attention_mask": 0,  # transformers pads with -1; both mean "local attention"
    "offset_mapping": (0, 0),
}

_TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")
_HUB_KWARGS = ("subfolder", "revision", "cache_dir", "token", "local_files_only", "force_download", "progress",
               "hub_only")


def clean_up_tokenization(text: str) -> str:
    """Remove the spaces a word-level tokenizer leaves before punctuation and contractions."""
    for old, new in _CLEAN_UP_REPLACEMENTS:
        text = text.replace(old, new)
    return text


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    # printable latin-1 bytes map to themselves, the rest to code points from 256 upwards
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_BYTE_OF_CHAR = {c: b for b, c in bytes_to_unicode().items()}


def token_bytes(token: str) -> bytes:
    """The bytes a byte-level BPE token stands for ("Ġ7" -> b" 7"); an added token that is not
    byte-level text, as its UTF-8."""
    if all(c in _BYTE_OF_CHAR for c in token):
        return bytes(_BYTE_OF_CHAR[c] for c in token)
    return token.encode("utf-8")


def partial_tail(data: bytes) -> int:
    """How many bytes at the end of `data` begin a UTF-8 character whose last bytes are missing (0 to
    3): a byte-level token can end inside a character ("本" is three bytes, often two tokens)."""
    for back in range(1, min(3, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:  # a continuation byte: the character began further back
            continue
        need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
        return back if need > back else 0
    return 0


def ends_inside_character(tok, ids: Sequence[int]) -> bool:
    """Whether the text of `ids` (special tokens left out) ends inside a character: its last
    byte-level token holds only the first bytes of one, the rest never written (an output cut at
    its token limit)."""
    tokens = tok.convert_ids_to_tokens(list(ids), skip_special_tokens=True)
    return partial_tail(b"".join(token_bytes(t) for t in tokens if t is not None)) > 0


def shown_text(tok, ids: Sequence[int], **decode: Any) -> str:
    """`tok.decode(ids, **decode)` for display: without the U+FFFD that an unfinished last character
    decodes to (ends_inside_character). Only what is shown: a scored text is decoded as it is."""
    text = tok.decode(list(ids), **decode)
    if text.endswith("\ufffd") and ends_inside_character(tok, ids):
        text = text[:-1]
    return text


def broken_characters(tokens: Sequence[str | None]) -> int:
    """How many places of the text of byte-level `tokens` (tok.convert_ids_to_tokens) are bytes that
    form no character, which decoding shows as U+FFFD: a model free to write any byte-level token can
    begin a character and go on with a token that does not finish it. An unfinished last character
    (partial_tail, left out of shown_text) and a U+FFFD written whole are not counted."""
    data = b"".join(token_bytes(t) for t in tokens if t is not None)
    data = data[: len(data) - partial_tail(data)]
    return data.decode("utf-8", errors="replace").count("\ufffd") - data.count("\ufffd".encode())


def broken_note(tokens: Sequence[str | None]) -> str | None:
    """What a reader is told where the output holds broken_characters (None where it holds none)."""
    n = broken_characters(tokens)
    if not n:
        return None
    places = "1 place" if n == 1 else f"{n:,} places"
    return (f"“\ufffd” marks {places} where the model wrote bytes that form no character (it writes text as "
            "byte-level pieces, and began a character it did not finish); the output is shown as written.")


def shown_pieces(tok, ids: Sequence[int]) -> list[str]:
    """The text each of `ids` adds to the shown text, in whole characters: a character split over
    tokens belongs to the token that completes it, and a token that completes none adds "" (decoding
    each token alone would show U+FFFD for each part). One pass over the tokens' bytes."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return [decoder.decode(token_bytes(t)) for t in tok.convert_ids_to_tokens(list(ids))]


class InputTypeError(InputError, TypeError):
    """An input of the wrong kind (None where a text belongs): an InputError, and a TypeError as in transformers."""


class CharSpan(NamedTuple):
    """Characters [start, end) of the input text."""

    start: int
    end: int


class TokenSpan(NamedTuple):
    """Tokens [start, end) of an encoded sequence."""

    start: int
    end: int


# ---- BatchEncoding -------------------------------------------------------------------------

@dataclass
class _Row:
    """One encoded sequence (after truncation and special tokens, before padding)."""

    input_ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    word_ids: list[int | None]
    sequence_ids: list[int | None]
    special_tokens_mask: list[int]
    num_truncated: int = 0
    over_limit: int = 0
    attention_mask: list[int] = field(default_factory=list)
    overflowing: list[int] = field(default_factory=list)  # the slow tokenizer's overflowing_tokens
    num_truncated_reported: int = 0  # its num_truncated_tokens: total length - max_length

    def pad(self, length: int, side: str, pad_id: int, pad_token: str) -> None:
        """Pad every per-token list in place to `length` on `side`."""
        n = length - len(self.input_ids)
        self.attention_mask = [1] * len(self.input_ids)
        if n <= 0:
            return
        fills = {
            "input_ids": pad_id, "tokens": pad_token, "offsets": (0, 0), "word_ids": None,
            "sequence_ids": None, "special_tokens_mask": 1, "attention_mask": 0,
        }
        for name, value in fills.items():
            seq = getattr(self, name)
            setattr(self, name, seq + [value] * n if side == "right" else [value] * n + seq)


class BatchEncoding(dict):
    """What the tokenizer returns: a dict (`enc["input_ids"]`) that also reads as attributes
    (`enc.input_ids`), moves its tensors with `.to(device)`, and keeps per-token information
    (`tokens()`, `word_ids()`, `sequence_ids()`, `char_to_token()`).

    `num_truncated_tokens`: tokens truncation removed, per sequence (an int for a single text).
    `num_tokens_over_limit`: tokens beyond `model_max_length`, per sequence, in what is returned.
    """

    def __init__(self, data: Mapping[str, Any] | None = None, *, rows: list[_Row] | None = None,
                 is_batched: bool = True, tensor_type: str | None = None):
        super().__init__(data or {})
        self._rows = rows
        self.is_batched = is_batched
        # per-sequence truncation report; single texts get plain ints
        truncated = [r.num_truncated for r in rows] if rows is not None else None
        over = [r.over_limit for r in rows] if rows is not None else None
        self.num_truncated_tokens = truncated if is_batched or truncated is None else truncated[0]
        self.num_tokens_over_limit = over if is_batched or over is None else over[0]
        if tensor_type is not None:
            self.convert_to_tensors(tensor_type)  # the data is batched already

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: expose the keys as attributes
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getstate__(self) -> dict:
        return {"data": dict(self), "attrs": self.__dict__}

    def __setstate__(self, state: dict) -> None:
        self.update(state["data"])
        self.__dict__.update(state["attrs"])

    @property
    def was_truncated(self) -> bool:
        """Whether truncation removed any token from any sequence."""
        n = self.num_truncated_tokens
        return bool(n) and (any(n) if isinstance(n, list) else n > 0)

    def convert_to_tensors(self, tensor_type: str) -> BatchEncoding:
        """Turn every (batched) value into a tensor ("pt": torch, "np": numpy), in place."""
        if tensor_type not in ("pt", "np"):
            raise InputError(f"return_tensors={tensor_type!r} is not supported: use 'pt', 'np' or None")
        for key, value in list(self.items()):
            lengths = {len(v) for v in value if isinstance(v, (list, tuple))}
            if len(lengths) > 1:
                raise InputError(
                    f"cannot stack sequences of different lengths {sorted(lengths)} into one tensor "
                    f"({key!r}): pass padding=True (or padding='max_length') with return_tensors"
                )
            if tensor_type == "pt":
                import torch

                self[key] = torch.tensor(value, dtype=torch.long)
            else:
                import numpy as np

                self[key] = np.asarray(value, dtype=np.int64)
        return self

    def to(self, device: Any) -> BatchEncoding:
        """Move every torch tensor to `device` (in place); returns self."""
        for key, value in self.items():
            if hasattr(value, "to") and callable(value.to):
                self[key] = value.to(device)
        return self

    # ---- per-token information (encodings made by a tokenizer only) ------------------------
    def _row(self, index: int) -> _Row:
        if self._rows is None:
            raise InputError("token information is only kept on encodings made by calling the tokenizer")
        return self._rows[index]

    def tokens(self, batch_index: int = 0) -> list[str]:
        """The token strings of one sequence (padding included)."""
        return list(self._row(batch_index).tokens)

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """The word index of each token (None for special and padding tokens)."""
        return list(self._row(batch_index).word_ids)

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """0 for tokens of the first text, 1 for the second, None for special/padding tokens."""
        return list(self._row(batch_index).sequence_ids)

    def words(self, batch_index: int = 0) -> list[int | None]:
        """transformers' older name of word_ids()."""
        return self.word_ids(batch_index)

    def _token_index(self, batch_or_token_index: int, token_index: int | None) -> tuple[_Row, int]:
        """The row and the (non-negative) token index of transformers' (batch, token) / (token) forms."""
        batch_index, token = (0, batch_or_token_index) if token_index is None else (batch_or_token_index, token_index)
        row = self._row(batch_index)
        return row, token + len(row.input_ids) if token < 0 else token

    def char_to_token(self, batch_or_char_index: int, char_index: int | None = None,
                      sequence_index: int = 0) -> int | None:
        """Index of the token that covers a character of the input text (None if none does)."""
        batch_index, char = (0, batch_or_char_index) if char_index is None else (batch_or_char_index, char_index)
        row = self._row(batch_index)
        for i, ((start, end), seq) in enumerate(zip(row.offsets, row.sequence_ids)):
            if seq == sequence_index and start <= char < end:
                return i
        return None

    def char_to_word(self, batch_or_char_index: int, char_index: int | None = None,
                     sequence_index: int = 0) -> int | None:
        """Index of the word that holds a character of the input text (None if none does)."""
        batch_index = 0 if char_index is None else batch_or_char_index
        token = self.char_to_token(batch_or_char_index, char_index, sequence_index)
        return None if token is None else self._row(batch_index).word_ids[token]

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None) -> CharSpan | None:
        """The characters a token covers in its own text (None for special and padding tokens)."""
        row, token = self._token_index(batch_or_token_index, token_index)
        if row.sequence_ids[token] is None:
            return None
        return CharSpan(*row.offsets[token])

    def token_to_word(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        """The word index of a token (None for special and padding tokens)."""
        row, token = self._token_index(batch_or_token_index, token_index)
        return row.word_ids[token]

    def token_to_sequence(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        """0 or 1: which text of a pair a token belongs to (None for special and padding tokens)."""
        row, token = self._token_index(batch_or_token_index, token_index)
        return row.sequence_ids[token]

    def _word_tokens(self, batch_or_word_index: int, word_index: int | None,
                     sequence_index: int) -> tuple[_Row, list[int]]:
        batch_index, word = (0, batch_or_word_index) if word_index is None else (batch_or_word_index, word_index)
        row = self._row(batch_index)
        return row, [i for i, (w, s) in enumerate(zip(row.word_ids, row.sequence_ids))
                     if w == word and s == sequence_index]

    def word_to_tokens(self, batch_or_word_index: int, word_index: int | None = None,
                       sequence_index: int = 0) -> TokenSpan | None:
        """The tokens [start, end) of a word (None when the word has no token)."""
        _, tokens = self._word_tokens(batch_or_word_index, word_index, sequence_index)
        return TokenSpan(tokens[0], tokens[-1] + 1) if tokens else None

    def word_to_chars(self, batch_or_word_index: int, word_index: int | None = None,
                      sequence_index: int = 0) -> CharSpan | None:
        """The characters [start, end) of a word in its text (None when the word has no token)."""
        row, tokens = self._word_tokens(batch_or_word_index, word_index, sequence_index)
        return CharSpan(row.offsets[tokens[0]][0], row.offsets[tokens[-1]][1]) if tokens else None


# ---- input helpers -----------------------------------------------------------------------

def _as_id_list(ids: Any, what: str = "token ids") -> list[int]:
    """A flat list of ints from an int, a list, a tuple, a torch tensor or a numpy array."""
    if hasattr(ids, "tolist"):  # torch / numpy
        ids = ids.tolist()
    if isinstance(ids, int):
        return [ids]
    if not isinstance(ids, (list, tuple)):
        raise InputError(f"{what} must be a list of ints or a 1-D tensor, got {type(ids).__name__}")
    if any(isinstance(i, (list, tuple)) for i in ids):
        raise InputError(f"{what} must be one sequence (1-D); use batch_decode for a batch")
    return [int(i) for i in ids]


def _token_content(value: Any) -> str | None:
    """The text of a special token given as a string, an AddedToken or a saved dict."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return value.get("content")
    return getattr(value, "content", str(value))


def _read_json(path: str | None) -> dict:
    """A JSON file as a dict ({} when path is None)."""
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None


def _padding_strategy(padding: Any) -> str | None:
    """None, 'longest' or 'max_length' from transformers' padding argument."""
    if padding is False or padding is None or padding == "do_not_pad":
        return None
    if padding is True or padding == "longest":
        return "longest"
    if padding == "max_length":
        return "max_length"
    raise InputError(f"padding={padding!r}: use True/'longest', 'max_length', or False/'do_not_pad'")


def _truncation_strategy(truncation: Any) -> str | None:
    """None or one of _TRUNCATION_STRATEGIES from transformers' truncation argument."""
    if truncation is None or truncation is False or truncation == "do_not_truncate":
        return None
    if truncation is True:
        return "longest_first"
    if truncation in _TRUNCATION_STRATEGIES:
        return truncation
    raise InputError(f"truncation={truncation!r}: use True/'longest_first', 'only_first', 'only_second' or False")


def _round_up(length: int, multiple: int | None) -> int:
    """`length` rounded up to a multiple of `multiple` (unchanged when multiple is None)."""
    if multiple and length % multiple:
        return (length // multiple + 1) * multiple
    return length


# ---- the tokenizer -----------------------------------------------------------------------

class LEDTokenizerFast:
    """LED's byte-level BPE tokenizer (`<s> A </s>`, `<s> A </s></s> B </s>`), backed by `tokenizers`.

    Build it from `vocab_file` + `merges_file`, from a `tokenizer_file` (tokenizer.json), or with
    `from_pretrained(folder_or_hub_id)`. Calling it returns a BatchEncoding with `input_ids` and
    `attention_mask` like transformers' LEDTokenizerFast.
    """

    model_input_names = ["input_ids", "attention_mask"]
    is_fast = True
    # how truncation behaves at its edges: the `tokenizers` way (True) or transformers' Python way
    _backend_truncation = True
    # add_prefix_space as one space in front of the whole text (slow) or of every piece (fast)
    _prefix_space_per_text = False
    # which files from_pretrained reads first
    _prefer_tokenizer_file = True

    def __init__(
        self,
        vocab_file: str | None = None,
        merges_file: str | None = None,
        tokenizer_file: str | None = None,
        errors: str = "replace",
        bos_token: str = "<s>",
        eos_token: str = "</s>",
        sep_token: str = "</s>",
        cls_token: str = "<s>",
        unk_token: str = "<unk>",
        pad_token: str = "<pad>",
        mask_token: str = "<mask>",
        add_prefix_space: bool = False,
        trim_offsets: bool = True,
        model_max_length: int = LED_MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces: bool = False,
        padding_side: str = "right",
        truncation_side: str = "right",
        additional_special_tokens: Sequence[Any] | None = None,
        split_special_tokens: bool = False,
        *,
        tokenizer_object: Tokenizer | None = None,
        name_or_path: str = "",
    ):
        # what it was built with (transformers' `init_kwargs`): every constructor argument
        self.init_kwargs = dict(
            vocab_file=vocab_file, merges_file=merges_file, tokenizer_file=tokenizer_file, errors=errors,
            bos_token=_token_content(bos_token), eos_token=_token_content(eos_token),
            sep_token=_token_content(sep_token), cls_token=_token_content(cls_token),
            unk_token=_token_content(unk_token), pad_token=_token_content(pad_token),
            mask_token=_token_content(mask_token), add_prefix_space=add_prefix_space, trim_offsets=trim_offsets,
            model_max_length=model_max_length, clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            padding_side=padding_side, truncation_side=truncation_side, name_or_path=name_or_path,
            additional_special_tokens=[_token_content(t) for t in additional_special_tokens or []] or None,
            split_special_tokens=split_special_tokens, tokenizer_object=tokenizer_object,
        )
        self.init_inputs: tuple = ()  # transformers' positional constructor arguments (none here)
        # settings
        self.errors = errors
        self.add_prefix_space = bool(add_prefix_space)
        self.trim_offsets = bool(trim_offsets)
        self.model_max_length = int(model_max_length)
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        # encode special tokens written in the text as plain text (by default: they are special tokens)
        self.split_special_tokens = bool(split_special_tokens)
        self.name_or_path = name_or_path
        # warnings given once per tokenizer, as transformers does (assign {} to have them again)
        self.deprecation_warnings: dict[str, bool] = {}
        for side, name in ((padding_side, "padding_side"), (truncation_side, "truncation_side")):
            if side not in ("right", "left"):
                raise InputError(f"{name} must be 'right' or 'left', got {side!r}")

        # special tokens (strings; AddedToken objects are accepted and read for their text)
        self.bos_token = _token_content(bos_token)
        self.eos_token = _token_content(eos_token)
        self.sep_token = _token_content(sep_token)
        self.cls_token = _token_content(cls_token)
        self.unk_token = _token_content(unk_token)
        self.pad_token = _token_content(pad_token)
        self.mask_token = _token_content(mask_token)

        # the backend: a copy of a given Tokenizer, tokenizer.json, or vocab.json + merges.txt
        self._backend = self._build_backend(vocab_file, merges_file, tokenizer_file, tokenizer_object)
        self._register_special_tokens(dict(bos_token=bos_token, eos_token=eos_token, sep_token=sep_token,
                                           cls_token=cls_token, unk_token=unk_token, pad_token=pad_token,
                                           mask_token=mask_token))
        self._set_post_processor()
        # the ids the backend's post-processor puts around a text (a fast tokenizer keeps them even
        # when cls_token/sep_token change later, as transformers' does)
        self._template_ids = (self._token_id(self.cls_token), self._token_id(self.sep_token))
        self._additional_special_tokens: list[str] = []
        self._extra_unset = False  # additional_special_tokens was set to None
        if additional_special_tokens:
            self.add_special_tokens({"additional_special_tokens": list(additional_special_tokens)})
        self._overflow_backend: Tokenizer | None = None
        self._split_encoder: Tokenizer | None = None  # the encoder for split_special_tokens=True
        self._overflow_lock = threading.Lock()
        # the slow tokenizer adds its prefix space in Python, so it encodes with one that adds none, and
        # it keeps BPE pieces missing from the vocabulary (tokenize() shows them, their id is <unk>'s, as
        # in transformers; the `tokenizers` BPE of LEDTokenizerFast drops them)
        self._encoder = self._backend if self.is_fast else self._slow_encoder()

    def __getstate__(self) -> dict:
        # (pickle: for DataLoader workers and datasets.map; the lock and the overflow copy are rebuilt)
        state = dict(self.__dict__)
        state.pop("_overflow_lock", None)
        state["_overflow_backend"] = state["_split_encoder"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._overflow_lock = threading.Lock()

    # ---- construction --------------------------------------------------------------------
    def _slow_encoder(self) -> Tokenizer:
        """A copy of the backend for LEDTokenizer: no prefix space of its own, and every byte symbol in
        its BPE vocabulary (at ids after every real and added one; rebuilt when tokens are added), so
        that no piece is lost or replaced before `_slow_ids` looks it up in the real vocabulary."""
        encoder = Tokenizer.from_str(self._backend.to_str())
        if isinstance(encoder.pre_tokenizer, pre_tokenizers.ByteLevel) or self.add_prefix_space:
            encoder.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        if isinstance(encoder.model, models.BPE):
            model = json.loads(encoder.to_str())["model"]
            vocab = dict(model["vocab"])
            missing = [c for c in bytes_to_unicode().values() if c not in vocab]
            if missing:
                base = max(self._backend.get_vocab(with_added_tokens=True).values()) + 1
                vocab.update({c: base + i for i, c in enumerate(missing)})
                merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
                encoder.model = models.BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                                           end_of_word_suffix="", fuse_unk=False)
        return encoder

    def _slow_ids(self, ids: list[int], pieces: list[str], encoder: Tokenizer) -> tuple[list[int | None], list[str]]:
        """LEDTokenizer's ids and tokens from its encoder's: an added token by its content, a BPE piece
        by its vocabulary id, or <unk>'s id when the vocabulary lacks it."""
        added = {i: t.content for i, t in encoder.get_added_tokens_decoder().items()}
        unk = self.unk_token_id
        out_ids, out_tokens = [], []
        for i, piece in zip(ids, pieces):
            token = added.get(i, piece)
            found = self._backend.token_to_id(token)
            out_ids.append(found if found is not None else unk)
            out_tokens.append(token)
        return out_ids, out_tokens

    def _build_backend(self, vocab_file, merges_file, tokenizer_file, tokenizer_object) -> Tokenizer:
        """The `tokenizers.Tokenizer` this class runs on, with LED's pipeline."""
        # a tokenizer.json (or an in-memory Tokenizer) keeps its own pipeline, updated to our flags
        use_file = tokenizer_file is not None and (vocab_file is None or self._prefer_tokenizer_file)
        if tokenizer_object is not None or use_file:
            if tokenizer_object is not None:
                backend = Tokenizer.from_str(tokenizer_object.to_str())
            else:
                try:
                    backend = Tokenizer.from_file(os.fspath(tokenizer_file))
                except Exception as e:  # tokenizers raises plain Exceptions
                    raise CheckpointError(f"cannot read the tokenizer file {tokenizer_file}: {e}") from None
            self._update_pipeline_flags(backend)
            return backend
        if vocab_file is None or merges_file is None:
            raise CheckpointError("an LED tokenizer needs vocab_file and merges_file, or tokenizer_file")
        # vocab.json + merges.txt: the pipeline transformers builds for LED (RoBERTa's)
        try:
            bpe = models.BPE.from_file(os.fspath(vocab_file), os.fspath(merges_file), dropout=None,
                                       continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
        except Exception as e:
            raise CheckpointError(f"cannot read the vocabulary {vocab_file} / {merges_file}: {e}") from None
        backend = Tokenizer(bpe)
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=self.add_prefix_space)
        backend.decoder = decoders.ByteLevel()
        return backend

    def _set_post_processor(self) -> None:
        """RoBERTa's `<s> A </s></s> B </s>` around the texts, for a backend built from vocab files
        (after the special tokens are registered: a vocab.json may lack them)."""
        if self._backend.post_processor is not None:
            return
        cls_id, sep_id = self._token_id(self.cls_token), self._token_id(self.sep_token)
        if cls_id is None or sep_id is None:
            raise CheckpointError("an LED tokenizer needs a cls_token and a sep_token")
        self._backend.post_processor = processors.RobertaProcessing(
            (self.sep_token, sep_id), (self.cls_token, cls_id),  # positional: tokenizers 0.23 renamed the keywords
            trim_offsets=self.trim_offsets, add_prefix_space=self.add_prefix_space,
        )

    def _update_pipeline_flags(self, backend: Tokenizer) -> None:
        """Set add_prefix_space/trim_offsets in a loaded pipeline, as transformers does."""
        pre = json.loads(backend.pre_tokenizer.__getstate__()) if backend.pre_tokenizer is not None else {}
        if pre.get("type") == "ByteLevel" and pre.get("add_prefix_space") != self.add_prefix_space:
            pre.pop("type")
            pre["add_prefix_space"] = self.add_prefix_space
            backend.pre_tokenizer = pre_tokenizers.ByteLevel(**pre)
        post = json.loads(backend.post_processor.__getstate__()) if backend.post_processor is not None else {}
        if post.get("type") == "RobertaProcessing" and (
            post.get("add_prefix_space") != self.add_prefix_space or post.get("trim_offsets") != self.trim_offsets
        ):
            backend.post_processor = processors.RobertaProcessing(
                tuple(post["sep"]), tuple(post["cls"]),
                trim_offsets=self.trim_offsets, add_prefix_space=self.add_prefix_space,
            )

    def _register_special_tokens(self, given: Mapping[str, Any]) -> None:
        """Make the special tokens added tokens of the backend (`<mask>` eats the space before it); one
        given as an AddedToken keeps its flags."""
        known = {t.content for t in self._backend.get_added_tokens_decoder().values()}
        new: list[AddedToken] = []
        for attr in SPECIAL_TOKEN_ATTRIBUTES:
            content = getattr(self, attr)
            if content is None or content in known:
                continue
            if isinstance(given.get(attr), AddedToken):
                token = given[attr]
            else:
                token = AddedToken(content, lstrip=attr == "mask_token", rstrip=False, normalized=True, special=True)
            new.append(token)
            known.add(content)
        if new:
            self._backend.add_special_tokens(new)

    # ---- loading and saving --------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> LEDTokenizerFast:
        """Load from a folder, or a Hub id (through the Hub cache), holding tokenizer.json or
        vocab.json + merges.txt; tokenizer_config.json and special_tokens_map.json are read when
        present. Keyword arguments are constructor arguments (model_max_length=...) or Hub
        arguments (revision, cache_dir, token, local_files_only, force_download)."""
        from .loading import resolve_file

        name = os.fspath(name_or_path)
        # split the keyword arguments into constructor and Hub arguments
        init_params = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = set(kwargs) - init_params - set(_HUB_KWARGS) - {"from_slow"}
        if unknown:
            raise TypeError(f"from_pretrained got unexpected arguments {sorted(unknown)}")
        hub = {k: v for k, v in kwargs.items() if k in _HUB_KWARGS}
        user = {k: v for k, v in kwargs.items() if k in init_params}
        # files the caller names replace those of the folder; from_slow: vocab.json + merges.txt, not tokenizer.json
        given = {k: user.pop(k) for k in ("vocab_file", "merges_file", "tokenizer_file") if user.get(k) is not None}
        prefer_tokenizer_file = cls._prefer_tokenizer_file and not kwargs.get("from_slow", False)

        def find(filename: str) -> str | None:
            return resolve_file(name, filename, required=False, **hub)

        # settings from tokenizer_config.json, then special_tokens_map.json, then the caller
        config = _read_json(find(CONFIG_FILE))
        special_map = _read_json(find(SPECIAL_TOKENS_FILE))
        init: dict[str, Any] = {}
        for key in ("model_max_length", "add_prefix_space", "trim_offsets", "errors",
                    "clean_up_tokenization_spaces", "padding_side", "truncation_side", "split_special_tokens"):
            if config.get(key) is not None:
                init[key] = config[key]
        if init.get("model_max_length", 0) > _NO_LIMIT:
            del init["model_max_length"]  # transformers' "no limit" placeholder: keep LED's 16384
        # special tokens keep the flags they were saved with (special_tokens_map.json, or the entry of
        # tokenizer_config.json's added_tokens_decoder with their text)
        saved_flags = {e.get("content"): e for e in (config.get("added_tokens_decoder") or {}).values()
                       if isinstance(e, Mapping)}
        for attr in SPECIAL_TOKEN_ATTRIBUTES:
            value = special_map.get(attr, config.get(attr))
            content = _token_content(value)
            if content is None:
                continue
            entry = value if isinstance(value, Mapping) else saved_flags.get(content)
            init[attr] = content if entry is None else AddedToken(
                content, lstrip=bool(entry.get("lstrip")), rstrip=bool(entry.get("rstrip")),
                single_word=bool(entry.get("single_word")), normalized=bool(entry.get("normalized", True)),
                special=True)
        extra_special = special_map.get("additional_special_tokens", config.get("additional_special_tokens")) or []
        extra_special = [_token_content(t) for t in extra_special]
        init.update(user)
        extra_special = init.pop("additional_special_tokens", None) or extra_special

        # the vocabulary: tokenizer.json, or vocab.json + merges.txt (this class's preferred first)
        tokenizer_file = vocab_file = merges_file = None
        if prefer_tokenizer_file:
            tokenizer_file = given.get("tokenizer_file") or find(TOKENIZER_FILE)
        if tokenizer_file is None:
            vocab_file = given.get("vocab_file") or find(VOCAB_FILE)
            merges_file = given.get("merges_file") or find(MERGES_FILE)
            if (vocab_file is None or merges_file is None) and not prefer_tokenizer_file:
                tokenizer_file = given.get("tokenizer_file") or find(TOKENIZER_FILE)
        if tokenizer_file is not None:
            vocab_file = merges_file = None
        elif vocab_file is None or merges_file is None:
            present = [f for f, p in ((VOCAB_FILE, vocab_file), (MERGES_FILE, merges_file)) if p]
            where = (f"the folder {name!r}" if not hub.get("hub_only") and os.path.isdir(name)
                     else f"the Hub repo {name!r}")
            raise CheckpointError(
                f"no LED tokenizer in {where}: expected {TOKENIZER_FILE}, or both {VOCAB_FILE} and "
                f"{MERGES_FILE} (found: {', '.join(present) or 'none of them'})"
            )
        tokenizer = cls(vocab_file, merges_file, tokenizer_file, name_or_path=name, **init)
        # tokens added to a tokenizer saved without tokenizer.json live in tokenizer_config.json (they
        # keep their ids: restored before the additional special tokens are looked up)
        tokenizer._restore_added_tokens(config.get("added_tokens_decoder") or {})
        if extra_special:
            tokenizer.add_special_tokens({"additional_special_tokens": list(extra_special)})
            tokenizer.init_kwargs["additional_special_tokens"] = list(extra_special)
        return tokenizer

    def _restore_added_tokens(self, saved: Mapping[str, Any]) -> None:
        """Add, in id order, the saved added tokens the backend does not know yet."""
        for _, entry in sorted(((int(i), e) for i, e in saved.items()), key=lambda x: x[0]):
            if not isinstance(entry, Mapping) or self._backend.token_to_id(entry.get("content", "")) is not None:
                continue
            token = AddedToken(entry["content"], lstrip=bool(entry.get("lstrip")), rstrip=bool(entry.get("rstrip")),
                               single_word=bool(entry.get("single_word")),
                               normalized=bool(entry.get("normalized", not entry.get("special"))),
                               special=bool(entry.get("special")))
            self._add_to_backends([token], special=bool(entry.get("special")))

    def save_vocabulary(self, save_directory: str | os.PathLike, filename_prefix: str | None = None) -> tuple[str, str]:
        """Write vocab.json and merges.txt (named `{prefix}-vocab.json` with a prefix)."""
        os.makedirs(save_directory, exist_ok=True)
        files = self._backend.model.save(os.fspath(save_directory), filename_prefix)
        vocab_path = next(f for f in files if f.endswith(VOCAB_FILE))
        merges_path = next(f for f in files if f.endswith(MERGES_FILE))
        return vocab_path, merges_path

    def save_pretrained(self, save_directory: str | os.PathLike, legacy_format: bool | None = None,
                        filename_prefix: str | None = None) -> tuple[str, ...]:
        """Write the tokenizer to a folder transformers' LEDTokenizer(Fast) loads too; returns the
        file paths as transformers does.

        tokenizer_config.json and special_tokens_map.json always; vocab.json, merges.txt and
        added_tokens.json (tokens beyond the BPE vocabulary, when any) unless legacy_format=False;
        tokenizer.json (LEDTokenizerFast only) unless legacy_format=True. `filename_prefix` goes in
        front of every file name ("{prefix}-vocab.json")."""
        if legacy_format is False and not self.is_fast:
            raise InputError("legacy_format=False writes only tokenizer.json, which LEDTokenizer does not use: "
                             "save with LEDTokenizerFast, or leave legacy_format unset")
        save_directory = os.fspath(save_directory)
        os.makedirs(save_directory, exist_ok=True)

        def path_of(filename: str) -> str:
            return os.path.join(save_directory, f"{filename_prefix}-{filename}" if filename_prefix else filename)

        # special tokens with their flags (transformers reads lstrip of <mask> from here)
        added = {i: t for i, t in self._backend.get_added_tokens_decoder().items()}
        flags = {t.content: {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized,
                             "rstrip": t.rstrip, "single_word": t.single_word} for t in added.values()}
        special_map = {attr: flags.get(getattr(self, attr), {"content": getattr(self, attr)})
                       for attr in SPECIAL_TOKEN_ATTRIBUTES if getattr(self, attr) is not None}
        if self._additional_special_tokens:
            special_map["additional_special_tokens"] = [flags.get(t, {"content": t})
                                                        for t in self._additional_special_tokens]
        config = {
            "tokenizer_class": "LEDTokenizer",
            "model_max_length": self.model_max_length,
            "add_prefix_space": self.add_prefix_space,
            "trim_offsets": self.trim_offsets,
            "errors": self.errors,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "split_special_tokens": self.split_special_tokens,
            **{attr: getattr(self, attr) for attr in SPECIAL_TOKEN_ATTRIBUTES if getattr(self, attr) is not None},
            "additional_special_tokens": list(self._additional_special_tokens),
            "added_tokens_decoder": {str(i): {**flags[t.content], "special": t.special}
                                     for i, t in sorted(added.items())},
        }
        paths = []
        beyond = {t.content: i for i, t in sorted(added.items()) if i >= self.vocab_size}
        files = [(CONFIG_FILE, config), (SPECIAL_TOKENS_FILE, special_map)]
        if legacy_format is not False:
            files.append((ADDED_TOKENS_FILE, beyond))
        for filename, data in files:
            path = path_of(filename)
            if filename != ADDED_TOKENS_FILE or data:  # (transformers names added_tokens.json even when unwritten)
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(data, f, indent=2, ensure_ascii=False)
                    f.write("\n")
            paths.append(path)
        if legacy_format is not False:
            # the slow-format vocabulary, before added_tokens.json in the returned order
            paths[2:2] = self.save_vocabulary(save_directory, filename_prefix)
        if self.is_fast and legacy_format is not True:
            paths.append(path_of(TOKENIZER_FILE))
            self._backend.save(paths[-1])
        return tuple(paths)

    # ---- vocabulary ----------------------------------------------------------------------
    @property
    def backend_tokenizer(self) -> Tokenizer:
        """The underlying `tokenizers.Tokenizer`."""
        return self._backend

    @property
    def vocab_size(self) -> int:
        """Size of the BPE vocabulary, without added tokens."""
        return self._backend.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        """Token -> id, added tokens included."""
        return dict(sorted(self._backend.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1]))

    def convert_tokens_to_ids(self, tokens: str | Sequence[str] | None) -> int | list[int] | None:
        """Id of a token (the unk id when unknown), or ids of a list of tokens."""
        if tokens is None:
            return None
        if isinstance(tokens, str):
            token_id = self._backend.token_to_id(tokens)
            return token_id if token_id is not None else self.unk_token_id
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: Any, skip_special_tokens: bool = False) -> str | list[str] | None:
        """Token of an id (None when out of range), or tokens of a list/tensor of ids."""
        if isinstance(ids, int) or (hasattr(ids, "ndim") and ids.ndim == 0):
            return self._backend.id_to_token(int(ids))
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._backend.id_to_token(i) for i in _as_id_list(ids) if i not in skip]

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """The text of a sequence of tokens ("Ġ" back to a space, bytes back to UTF-8)."""
        return self._tokens_to_text(list(tokens))

    def _tokens_to_text(self, tokens: list[str]) -> str:
        """Byte-level tokens to text, with `self.errors` as the UTF-8 error handler (fast: always replace)."""
        data = b"".join(token_bytes(token) for token in tokens)
        return data.decode("utf-8", errors="replace" if self.is_fast else self.errors)

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False,
                 **kwargs: Any) -> list[str]:
        """The BPE tokens of a text (byte-level: a leading space shows as 'Ġ'). Keyword arguments are
        those of calling the tokenizer (split_special_tokens, add_prefix_space for LEDTokenizer, ...)."""
        if text is None:
            raise InputTypeError("tokenize takes a text; got None")
        return self(text, pair, add_special_tokens=add_special_tokens, return_attention_mask=False, **kwargs).tokens()

    # ---- special tokens ------------------------------------------------------------------
    def _token_id(self, token: str | None) -> int | None:
        return None if token is None else self._backend.token_to_id(token)

    def _id_to_known_token(self, token_id: Any) -> str:
        """The token of an id, which must be in the vocabulary."""
        token = self._backend.id_to_token(int(token_id))
        if token is None:
            raise InputError(f"id {token_id} is not in the vocabulary (0..{len(self) - 1})")
        return token

    @staticmethod
    def _id_property(attr: str, doc: str) -> property:
        """`<attr>_id`: the id of a special token; setting it sets the token to that id's (None unsets it)."""
        def get(self) -> int | None:
            return self._token_id(getattr(self, attr))

        def set_(self, value: Any) -> None:
            setattr(self, attr, None if value is None else self._id_to_known_token(value))

        return property(get, set_, doc=doc)

    bos_token_id = _id_property("bos_token", "Id of `<s>`.")
    eos_token_id = _id_property("eos_token", "Id of `</s>`.")
    sep_token_id = _id_property("sep_token", "Id of the separator `</s>`.")
    cls_token_id = _id_property("cls_token", "Id of the first token `<s>`.")
    unk_token_id = _id_property("unk_token", "Id of `<unk>`.")
    pad_token_id = _id_property("pad_token", "Id of `<pad>`.")
    mask_token_id = _id_property("mask_token", "Id of `<mask>`.")
    del _id_property

    @property
    def additional_special_tokens(self) -> list[str] | None:
        """Special tokens besides the seven named ones (added with add_special_tokens); None after
        `tokenizer.additional_special_tokens = None`, as in transformers."""
        return None if self._extra_unset else list(self._additional_special_tokens)

    @additional_special_tokens.setter
    def additional_special_tokens(self, tokens: Sequence[Any] | None) -> None:
        # (as in transformers, this names tokens special without adding them: add_special_tokens adds them)
        self._extra_unset = tokens is None
        self._additional_special_tokens = ([] if tokens is None
                                           else list(dict.fromkeys(_token_content(t) for t in tokens)))

    @property
    def additional_special_tokens_ids(self) -> list[int]:
        return [self._token_id(t) for t in self._additional_special_tokens]

    @additional_special_tokens_ids.setter
    def additional_special_tokens_ids(self, ids: Sequence[int]) -> None:
        self.additional_special_tokens = [self._id_to_known_token(i) for i in ids]

    @property
    def pad_token_type_id(self) -> int:
        """LED has no token types: always 0."""
        return 0

    @property
    def max_len_single_sentence(self) -> int:
        """The most text tokens one sequence can hold (model_max_length less `<s>` and `</s>`)."""
        return self.model_max_length - self.num_special_tokens_to_add(pair=False)

    @property
    def max_len_sentences_pair(self) -> int:
        """The most text tokens a pair can hold (model_max_length less the four special tokens)."""
        return self.model_max_length - self.num_special_tokens_to_add(pair=True)

    @property
    def special_tokens_map(self) -> dict[str, Any]:
        """Attribute name -> special token text (and "additional_special_tokens" -> their list, when any)."""
        out: dict[str, Any] = {a: getattr(self, a) for a in SPECIAL_TOKEN_ATTRIBUTES if getattr(self, a) is not None}
        if self._additional_special_tokens:
            out["additional_special_tokens"] = list(self._additional_special_tokens)
        return out

    @property
    def all_special_tokens(self) -> list[str]:
        """The distinct special tokens, in transformers' order (bos, eos, unk, sep, pad, cls, mask, additional)."""
        named = [getattr(self, a) for a in SPECIAL_TOKEN_ATTRIBUTES if getattr(self, a) is not None]
        return list(dict.fromkeys(named + self._additional_special_tokens))

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        """Id -> AddedToken (with its lstrip/rstrip/normalized/special flags) of every added token."""
        return dict(sorted(self._backend.get_added_tokens_decoder().items()))

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        """Added token text -> id."""
        return {t.content: i for i, t in self.added_tokens_decoder.items()}

    def get_added_vocab(self) -> dict[str, int]:
        """Added token -> id (the special tokens outside the BPE merges included), as transformers."""
        return {t.content: i for i, t in sorted(self._backend.get_added_tokens_decoder().items())}

    def _add_to_backends(self, tokens: list[AddedToken], special: bool) -> int:
        """Add tokens to the backend (and the slow tokenizer's encoder copy); returns how many are new."""
        before = len(self)
        (self._backend.add_special_tokens if special else self._backend.add_tokens)(tokens)
        if hasattr(self, "_encoder") and self._encoder is not self._backend:
            self._encoder = self._slow_encoder()
        self._overflow_backend = self._split_encoder = None
        return len(self) - before

    def add_tokens(self, new_tokens: str | AddedToken | Sequence[str | AddedToken],
                   special_tokens: bool = False) -> int:
        """Add tokens to the vocabulary (new ids after the last one); returns how many were new.

        A token is never split and keeps its id; resize the model's embeddings to len(tokenizer)
        (model.resize_token_embeddings) before using them."""
        if isinstance(new_tokens, (str, AddedToken)):
            new_tokens = [new_tokens]
        tokens = []
        for t in new_tokens:
            if isinstance(t, str):
                if not t:
                    continue  # nothing to add (transformers counts it as 0 new tokens too)
                t = AddedToken(t, lstrip=False, rstrip=False, normalized=not special_tokens, special=special_tokens)
            elif not isinstance(t, AddedToken):
                raise InputError(f"add_tokens takes strings or tokenizers.AddedToken, got {type(t).__name__}")
            tokens.append(t)
        return self._add_to_backends(tokens, special=special_tokens)

    def add_special_tokens(self, special_tokens_dict: Mapping[str, Any],
                           replace_additional_special_tokens: bool = True) -> int:
        """Set special tokens ({"cls_token": "<cls>", "additional_special_tokens": ["<q>"]}) and add
        those the vocabulary lacks; returns how many tokens were new. Additional special tokens
        replace the earlier list (or extend it with replace_additional_special_tokens=False)."""
        allowed = SPECIAL_TOKEN_ATTRIBUTES + ("additional_special_tokens",)
        unknown = [k for k in special_tokens_dict if k not in allowed]
        if unknown:
            raise InputError(f"add_special_tokens: {unknown} are no special-token names; use {list(allowed)}")
        added = 0
        for key, value in special_tokens_dict.items():
            if key == "additional_special_tokens":
                if isinstance(value, (str, AddedToken)) or not isinstance(value, (list, tuple)):
                    raise InputError("additional_special_tokens must be a list of tokens")
                contents = [_token_content(v) for v in value]
                added += self.add_tokens([v if isinstance(v, AddedToken) else c for v, c in zip(value, contents)],
                                         special_tokens=True)
                self._extra_unset = False
                if replace_additional_special_tokens:
                    self._additional_special_tokens = list(dict.fromkeys(contents))
                else:
                    self._additional_special_tokens = list(dict.fromkeys(self._additional_special_tokens + contents))
            else:
                content = _token_content(value)
                if not isinstance(content, str) or not content:
                    raise InputError(f"add_special_tokens: {key} must be a token (a non-empty string)")
                added += self.add_tokens([value], special_tokens=True)
                setattr(self, key, content)
        return added

    @property
    def all_special_ids(self) -> list[int]:
        """Ids of `all_special_tokens`."""
        return [self._token_id(t) for t in self.all_special_tokens]

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """2 for one text (`<s> A </s>`), 4 for a pair (`<s> A </s></s> B </s>`)."""
        return 4 if pair else 2

    def build_inputs_with_special_tokens(self, token_ids_0: list[int],
                                         token_ids_1: list[int] | None = None) -> list[int]:
        """`<s> A </s>` or `<s> A </s></s> B </s>`."""
        cls, sep = [self.cls_token_id], [self.sep_token_id]
        if token_ids_1 is None:
            return cls + list(token_ids_0) + sep
        return cls + list(token_ids_0) + sep + sep + list(token_ids_1) + sep

    def get_special_tokens_mask(self, token_ids_0: list[int], token_ids_1: list[int] | None = None,
                                already_has_special_tokens: bool = False) -> list[int]:
        """1 for special tokens, 0 for text tokens: of the sequence that
        `build_inputs_with_special_tokens` would build, or of ids that already hold them."""
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise InputError("give one sequence when it is already formatted with special tokens")
            special = set(self.all_special_ids)
            return [1 if i in special else 0 for i in token_ids_0]
        if token_ids_1 is None:
            return [1] + [0] * len(token_ids_0) + [1]
        return [1] + [0] * len(token_ids_0) + [1, 1] + [0] * len(token_ids_1) + [1]

    def create_token_type_ids_from_sequences(self, token_ids_0: list[int],
                                             token_ids_1: list[int] | None = None) -> list[int]:
        """LED has no token types: zeros, as long as the sequence with special tokens."""
        return [0] * len(self.build_inputs_with_special_tokens(token_ids_0, token_ids_1))

    # ---- encoding ------------------------------------------------------------------------
    def __call__(
        self,
        text: str | Sequence[str] | Sequence[tuple[str, str]] | None = None,
        text_pair: str | Sequence[str] | None = None,
        text_target: str | Sequence[str] | None = None,
        text_pair_target: str | Sequence[str] | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        split_special_tokens: bool | None = None,
        add_prefix_space: bool | None = None,
    ) -> BatchEncoding:
        """Encode a text, a pair (question, context), or a batch (list) of either.

        Arguments mean what they mean in transformers. `truncation=None` with a `max_length` and
        no padding truncates 'longest_first', as transformers does. `text_target` (and
        `text_pair_target`) are encoded with the same settings and returned as "labels" (alone:
        as the encoding itself). `return_overflowing_tokens` with `stride`: the fast tokenizer
        returns every window of a long input as a row of its own, overlapping by `stride` tokens,
        with "overflow_to_sample_mapping" (row -> input); the slow one returns the cut tokens
        (plus `stride` tokens before them) as "overflowing_tokens" and "num_truncated_tokens".

        `is_split_into_words=True`: a text is a list of words (a batch: a list of such lists), each
        encoded as if a space stood before it; `word_ids()` numbers the words. As in transformers,
        LEDTokenizerFast needs `add_prefix_space=True` for it; LEDTokenizer puts the space in front
        of every word either way.

        `split_special_tokens=True` (default: the tokenizer's setting) reads special tokens written in
        the text ("<mask>") as plain text. `add_prefix_space` for one call: LEDTokenizer only, as in
        transformers (LEDTokenizerFast takes it when built).
        """
        if add_prefix_space is not None and self.is_fast:
            raise TypeError(f"{type(self).__name__} takes add_prefix_space when it is built "
                            "(from_pretrained(..., add_prefix_space=True)), not per call")
        options = dict(add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
                       max_length=max_length, stride=stride, is_split_into_words=is_split_into_words,
                       pad_to_multiple_of=pad_to_multiple_of,
                       padding_side=padding_side, return_tensors=return_tensors,
                       return_token_type_ids=return_token_type_ids, return_attention_mask=return_attention_mask,
                       return_overflowing_tokens=return_overflowing_tokens,
                       return_special_tokens_mask=return_special_tokens_mask,
                       return_offsets_mapping=return_offsets_mapping, return_length=return_length, verbose=verbose,
                       split_special_tokens=self.split_special_tokens if split_special_tokens is None
                       else bool(split_special_tokens),
                       add_prefix_space=self.add_prefix_space if add_prefix_space is None else bool(add_prefix_space))
        if text is None and text_target is None:
            raise InputTypeError("give text (or text_target) to encode; got None")
        if text_pair is not None and text is None:
            raise InputError("text_pair needs text")
        if text_pair_target is not None and text_target is None:
            raise InputError("text_pair_target needs text_target")
        encoding = self._encode_call(text, text_pair, **options) if text is not None else None
        if text_target is None:
            return encoding
        target = self._encode_call(text_target, text_pair_target, **options)
        if encoding is None:
            return target
        encoding["labels"] = target["input_ids"]
        return encoding

    def encode_plus(self, text: str | Sequence[str], text_pair: str | Sequence[str] | None = None,
                    **kwargs: Any) -> BatchEncoding:
        """One text or pair -> its encoding (transformers' older name for calling the tokenizer)."""
        if kwargs.get("is_split_into_words"):
            one = isinstance(text, (list, tuple)) and all(isinstance(w, str) for w in text)
        else:
            one = isinstance(text, str) and (text_pair is None or isinstance(text_pair, str))
        if not one:
            raise InputTypeError("encode_plus takes one text (and one text_pair); use batch_encode_plus for a batch")
        return self(text, text_pair, **kwargs)

    def batch_encode_plus(self, batch_text_or_text_pairs: Sequence[str] | Sequence[tuple[str, str]],
                          **kwargs: Any) -> BatchEncoding:
        """A batch of texts or (text, text_pair) pairs -> their encoding (transformers' older name)."""
        if isinstance(batch_text_or_text_pairs, str) or not isinstance(batch_text_or_text_pairs, (list, tuple)):
            raise InputTypeError("batch_encode_plus takes a list of texts or of (text, text_pair) pairs")
        if kwargs.get("is_split_into_words") and batch_text_or_text_pairs and \
                all(isinstance(w, str) for w in batch_text_or_text_pairs):
            raise InputError("batch_encode_plus with is_split_into_words=True takes a list of word lists")
        return self(list(batch_text_or_text_pairs), **kwargs)

    def prepare_seq2seq_batch(self, src_texts: Sequence[str], tgt_texts: Sequence[str] | None = None,
                              max_length: int | None = None, max_target_length: int | None = None,
                              padding: bool | str = "longest", return_tensors: str | None = None,
                              truncation: bool | str = True, **kwargs: Any) -> BatchEncoding:
        """Documents (and summaries, as "labels") padded and truncated to max_length (targets to
        max_target_length, by default max_length; both by default model_max_length).

        transformers' deprecated form of `tokenizer(src_texts, text_target=tgt_texts, ...)`. Other keyword
        arguments go to the call; mBART's src_lang/tgt_lang, which transformers ignores, raise TypeError."""
        import warnings

        warnings.warn("prepare_seq2seq_batch is deprecated in transformers; call the tokenizer with "
                      "text_target=... instead", FutureWarning, stacklevel=2)
        if max_length is None:
            max_length = self.model_max_length
        inputs = self(src_texts, add_special_tokens=True, return_tensors=return_tensors, max_length=max_length,
                      padding=padding, truncation=truncation, **kwargs)
        if tgt_texts is None:
            return inputs
        labels = self(tgt_texts, add_special_tokens=True, return_tensors=return_tensors, padding=padding,
                      max_length=max_target_length if max_target_length is not None else max_length,
                      truncation=truncation, **kwargs)
        inputs["labels"] = labels["input_ids"]
        return inputs

    def prepare_for_model(
        self,
        ids: Sequence[int],
        pair_ids: Sequence[int] | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        prepend_batch_axis: bool = False,
    ) -> BatchEncoding:
        """Token ids (and a pair's) -> an encoding, as calling the tokenizer on their text would give:
        special tokens, truncation, padding. Truncation follows transformers' Python rules for both
        classes (as transformers' prepare_for_model does), overflow as "overflowing_tokens"."""
        if return_offsets_mapping:
            raise InputError("prepare_for_model works on ids, which have no character offsets: "
                             "call the tokenizer on the text for return_offsets_mapping")
        segments = []
        for seq in (ids, pair_ids) if pair_ids is not None else (ids,):
            seq = _as_id_list(seq, "prepare_for_model ids")
            segments.append({"ids": seq, "tokens": [self._backend.id_to_token(i) for i in seq],
                             "offsets": [(0, 0)] * len(seq), "word_ids": [None] * len(seq)})
        pad, trunc, max_length = self._strategies(padding, truncation, max_length, pad_to_multiple_of, verbose)
        self._check_stride(stride)
        if return_overflowing_tokens and trunc == "longest_first" and pair_ids is not None:
            raise InputError(_NO_PAIR_OVERFLOW)
        rows = [self._segments_to_row(segments, add_special_tokens, trunc, max_length, stride, python_rules=True)]
        return self._encoding_from_rows(
            rows, is_batched=False, pad=pad, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side, return_tensors=return_tensors, return_token_type_ids=return_token_type_ids,
            return_attention_mask=return_attention_mask, return_overflowing_tokens=return_overflowing_tokens,
            return_special_tokens_mask=return_special_tokens_mask, return_offsets_mapping=False,
            return_length=return_length, verbose=verbose, python_style=True,
            batch_axis=prepend_batch_axis)

    @staticmethod
    def _check_stride(stride: Any) -> None:
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 0:
            raise InputError(f"stride={stride!r}: give the number of tokens windows overlap (a whole number >= 0)")

    def _encode_call(self, text, text_pair, *, add_special_tokens, padding, truncation, max_length, stride,
                     is_split_into_words, pad_to_multiple_of, padding_side, return_tensors, return_token_type_ids,
                     return_attention_mask, return_overflowing_tokens, return_special_tokens_mask,
                     return_offsets_mapping, return_length, verbose, split_special_tokens,
                     add_prefix_space) -> BatchEncoding:
        # inputs as a list of str / (str, str) (word lists when split into words), and whether the caller gave a batch
        words = bool(is_split_into_words)
        if words and self.is_fast and not self.add_prefix_space:
            raise InputError(f"You need to instantiate {type(self).__name__} with add_prefix_space=True to use it "
                             "with pretokenized inputs (is_split_into_words=True)")
        inputs, is_batched = (self._normalize_word_inputs if words else self._normalize_inputs)(text, text_pair)

        # padding/truncation strategies and the lengths they work to
        pad, trunc, max_length = self._strategies(padding, truncation, max_length, pad_to_multiple_of, verbose)
        self._check_stride(stride)

        # encode, truncate and add special tokens, one row per sequence (per window, fast with overflow)
        sample_of = None
        if return_overflowing_tokens and self.is_fast and trunc is not None and max_length is not None:
            rows, sample_of = self._overflow_rows(inputs, add_special_tokens, trunc, max_length, stride, words,
                                                  split_special_tokens)
            is_batched = True
        else:
            if return_overflowing_tokens and trunc == "longest_first" and any(isinstance(x, tuple) for x in inputs):
                raise InputError(_NO_PAIR_OVERFLOW)
            rows = self._encode_rows(inputs, add_special_tokens, trunc, max_length, stride, words,
                                     split_special_tokens, add_prefix_space)
        return self._encoding_from_rows(
            rows, is_batched=is_batched, pad=pad, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side, return_tensors=return_tensors, return_token_type_ids=return_token_type_ids,
            return_attention_mask=return_attention_mask, return_overflowing_tokens=return_overflowing_tokens,
            return_special_tokens_mask=return_special_tokens_mask, return_offsets_mapping=return_offsets_mapping,
            return_length=return_length, verbose=verbose, python_style=not self.is_fast, sample_of=sample_of,
            batch_axis=is_batched or return_tensors is not None)

    def _encoding_from_rows(self, rows: list[_Row], *, is_batched, pad, max_length, pad_to_multiple_of, padding_side,
                            return_tensors, return_token_type_ids, return_attention_mask, return_overflowing_tokens,
                            return_special_tokens_mask, return_offsets_mapping, return_length, verbose,
                            python_style: bool, batch_axis: bool, sample_of: list[int] | None = None) -> BatchEncoding:
        """Pad the rows and gather the requested outputs into a BatchEncoding (`batch_axis`: keep the
        outer list of a single sequence, as transformers does for tensors)."""
        side = padding_side or self.padding_side
        target = self._padded_length([len(r.input_ids) for r in rows], pad, max_length, pad_to_multiple_of)
        for row in rows:
            row.pad(target or 0, side, self.pad_token_id, self.pad_token)

        # report sequences longer than the model takes (transformers warns the same way, once)
        over = max((r.over_limit for r in rows), default=0)
        too_long = "sequence-length-is-longer-than-the-specified-maximum"
        if verbose and over and not self.deprecation_warnings.get(too_long):
            self.deprecation_warnings[too_long] = True
            logger.warning(
                "Token indices sequence length is longer than the specified maximum sequence length for this "
                f"model ({self.model_max_length + over} > {self.model_max_length}). Running this sequence "
                "through the model will result in indexing errors"
            )

        # the requested outputs
        data: dict[str, list] = {}
        if return_overflowing_tokens and python_style:
            data["overflowing_tokens"] = [r.overflowing for r in rows]
            data["num_truncated_tokens"] = [r.num_truncated_reported for r in rows]
        data["input_ids"] = [r.input_ids for r in rows]
        if return_token_type_ids:
            data["token_type_ids"] = [[0] * len(r.input_ids) for r in rows]
        if return_attention_mask is None or return_attention_mask:
            data["attention_mask"] = [r.attention_mask for r in rows]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [r.special_tokens_mask for r in rows]
        if return_offsets_mapping:
            data["offset_mapping"] = [r.offsets for r in rows]
        if return_length:
            data["length"] = [len(r.input_ids) for r in rows]
        if sample_of is not None:
            data["overflow_to_sample_mapping"] = sample_of
        if not batch_axis:
            # (transformers' fast tokenizer leaves a per-sequence number, such as length, as a list)
            data = {k: v[0] if python_style or isinstance(v[0], list) else v for k, v in data.items()}
        return BatchEncoding(data, rows=rows, is_batched=is_batched, tensor_type=return_tensors)

    def encode(self, text: str | Sequence[str], text_pair: str | Sequence[str] | None = None, **kwargs: Any) -> Any:
        """The input ids of one text or pair (a list, or a (1, L) tensor with return_tensors)."""
        if text is None:
            raise InputTypeError("encode takes a text; got None")
        return self(text, text_pair, **kwargs)["input_ids"]

    def _normalize_inputs(self, text: Any, text_pair: Any) -> tuple[list[str | tuple[str, str]], bool]:
        """A list of str / (str, str) inputs, and whether the call was batched."""
        def is_pair(x: Any) -> bool:
            return isinstance(x, (tuple, list)) and len(x) == 2 and all(isinstance(s, str) for s in x)

        if isinstance(text, str):
            if text_pair is not None and not isinstance(text_pair, str):
                raise InputError("text is one string, so text_pair must be one string too")
            return [text if text_pair is None else (text, text_pair)], False
        if not isinstance(text, (list, tuple)):
            raise InputTypeError(
                "text must be a string, a list of strings, or a list of (text, text_pair) pairs; "
                f"got {type(text).__name__}"
            )
        if text_pair is not None:
            if not isinstance(text_pair, (list, tuple)) or len(text_pair) != len(text):
                raise InputError("text_pair must be a list as long as text when text is a list")
            items: list[Any] = list(zip(text, text_pair))
        else:
            items = [tuple(t) if is_pair(t) else t for t in text]
        for i, item in enumerate(items):
            if not (isinstance(item, str) or is_pair(item)):
                raise InputError(f"batch item {i} is {item!r}: expected a string or a (text, text_pair) pair"
                                 + ("; a list of words needs is_split_into_words=True"
                                    if isinstance(item, (list, tuple)) else ""))
        return items, True

    @staticmethod
    def _normalize_word_inputs(text: Any, text_pair: Any) -> tuple[list[list[str] | tuple[list[str], list[str]]], bool]:
        """Word-list inputs (is_split_into_words): a list of word lists / (word list, word list) pairs,
        and whether the call was batched (text is a list of word lists)."""
        def is_words(x: Any) -> bool:
            return isinstance(x, (list, tuple)) and all(isinstance(w, str) for w in x)

        def check(x: Any, what: str) -> list[str]:
            if not is_words(x):
                raise InputTypeError(f"with is_split_into_words=True, {what} must be a list of words (strings); "
                                     f"got {x!r:.80}")
            return list(x)

        if not isinstance(text, (list, tuple)):
            raise InputTypeError(f"with is_split_into_words=True, text must be a list of words or a batch of word "
                                 f"lists; got {type(text).__name__}")
        if is_words(text):  # one sequence
            first = check(text, "text")
            return [first if text_pair is None else (first, check(text_pair, "text_pair"))], False
        if text_pair is not None:
            if not isinstance(text_pair, (list, tuple)) or len(text_pair) != len(text):
                raise InputError("text_pair must be a batch as long as text when text is a batch")
            return [(check(a, f"text[{i}]"), check(b, f"text_pair[{i}]"))
                    for i, (a, b) in enumerate(zip(text, text_pair))], True
        items: list[Any] = []
        for i, item in enumerate(text):
            if isinstance(item, (list, tuple)) and item and isinstance(item[0], (list, tuple)):
                if len(item) != 2:
                    raise InputError(f"batch item {i}: a pair of word lists has two lists, got {len(item)}")
                items.append((check(item[0], f"text[{i}][0]"), check(item[1], f"text[{i}][1]")))
            else:
                items.append(check(item, f"text[{i}]"))
        return items, True

    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of, verbose):
        """transformers' rules turning padding/truncation/max_length into strategies and a length."""
        # a max_length with neither padding nor truncation set means "truncate longest_first"
        if max_length is not None and padding is False and truncation is None:
            if verbose and not self.deprecation_warnings.get("Truncation-not-explicitly-activated"):
                self.deprecation_warnings["Truncation-not-explicitly-activated"] = True
                logger.warning("max_length is given without truncation=...: truncating 'longest_first'; "
                               "pass truncation=True to say so")
            truncation = "longest_first"
        pad, trunc = _padding_strategy(padding), _truncation_strategy(truncation)
        # padding to / truncating at "max_length" without one uses the model's limit
        if max_length is None and (pad == "max_length" or trunc is not None):
            if self.model_max_length > _NO_LIMIT:
                pad = None if pad == "max_length" else pad
                trunc = None
            else:
                max_length = self.model_max_length
        if trunc and pad and pad_to_multiple_of and max_length is not None and max_length % pad_to_multiple_of:
            raise InputError(
                f"Truncation and padding are both activated but truncation length ({max_length}) is not a "
                f"multiple of pad_to_multiple_of ({pad_to_multiple_of})."
            )
        return pad, trunc, max_length

    def _overflow_rows(self, inputs: list, add_special_tokens: bool, trunc: str, max_length: int,
                       stride: int, words: bool = False, split: bool = False) -> tuple[list[_Row], list[int]]:
        """Every window of every input as `tokenizers` cuts them (transformers' fast tokenizer), and
        the input each row comes from."""
        with self._overflow_lock:
            if self._overflow_backend is None:
                self._overflow_backend = Tokenizer.from_str(self._backend.to_str())
            backend = self._overflow_backend
            backend.encode_special_tokens = split
            try:
                backend.enable_truncation(max_length, stride=stride, strategy=trunc, direction=self.truncation_side)
                encodings = backend.encode_batch(inputs, is_pretokenized=words, add_special_tokens=add_special_tokens)
            except BaseException as e:  # tokenizers raises plain Exceptions, or panics (a BaseException)
                if isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                    raise
                raise InputError(f"cannot cut the input into windows of max_length={max_length} with "
                                 f"stride={stride} ({e}): the stride must be smaller than the room left for text") \
                    from None
            finally:
                backend.no_truncation()
        rows, sample_of = [], []
        for i, first in enumerate(encodings):
            for enc in [first, *first.overflowing]:
                row = _Row(list(enc.ids), list(enc.tokens), list(enc.offsets), list(enc.word_ids),
                           list(enc.sequence_ids), list(enc.special_tokens_mask))
                row.over_limit = max(len(row.input_ids) - self.model_max_length, 0)
                rows.append(row)
                sample_of.append(i)
        return rows, sample_of

    def _encoder_for(self, split: bool) -> Tokenizer:
        """The encoder to use: the usual one, or (split_special_tokens) one that reads special tokens
        written in the text as plain text. As in transformers, the fast tokenizer still matches the
        added tokens that are not special; the slow one matches no added token at all."""
        if not split:
            return self._encoder
        if self._split_encoder is None:
            if self.is_fast:
                encoder = Tokenizer.from_str(self._encoder.to_str())
                encoder.encode_special_tokens = True
            else:
                state = json.loads(self._encoder.to_str())
                state["added_tokens"] = []
                encoder = Tokenizer.from_str(json.dumps(state))
            self._split_encoder = encoder
        return self._split_encoder

    def _encode_rows(self, inputs: list, add_special_tokens: bool, trunc: str | None,
                     max_length: int | None, stride: int = 0, words: bool = False,
                     split: bool = False, add_prefix_space: bool | None = None) -> list[_Row]:
        """Tokenize every input, truncate it, and add the special tokens."""
        # the slow tokenizer puts its prefix space in front of each text (each word, when split into
        # words) itself; its offsets move back by it. shifts: per input, per text, an int or one per word
        def prefixed(t: str) -> str:
            return " " + t if t and not t[0].isspace() else t

        shifts: list[tuple] = [(0, 0)] * len(inputs)
        texts_of = [(x,) if not isinstance(x, tuple) else x for x in inputs]
        if self._prefix_space_per_text and words:
            shifts = [tuple([int(prefixed(w) != w) for w in t] for t in texts) for texts in texts_of]
            texts_of = [tuple([prefixed(w) for w in t] for t in texts) for texts in texts_of]
        elif self._prefix_space_per_text and (self.add_prefix_space if add_prefix_space is None else add_prefix_space):
            shifts = [tuple(int(prefixed(t) != t) for t in texts) for texts in texts_of]
            texts_of = [tuple(prefixed(t) for t in texts) for texts in texts_of]
        inputs = [texts[0] if len(texts) == 1 else texts for texts in texts_of]
        encoder = self._encoder_for(split)
        encodings = encoder.encode_batch(inputs, is_pretokenized=words, add_special_tokens=False)

        # the fast tokenizer shows an added token as it was written (" <mask>"), the slow one as in the vocabulary
        rows = []
        for item, enc, shift_of in zip(inputs, encodings, shifts):
            # read each field of the encoding once (every access copies it out of Rust)
            ids, offsets, word_ids, tokens = enc.ids, enc.offsets, enc.word_ids, enc.tokens
            if not self.is_fast:
                ids, tokens = self._slow_ids(ids, tokens, encoder)
            # split it into the tokens of the first and of the second text (they follow each other)
            pair = isinstance(item, tuple)
            n_first = enc.sequence_ids.count(0) if pair else len(ids)
            bounds = [(0, n_first), (n_first, len(ids))] if pair else [(0, len(ids))]
            segments = []
            for (start, end), shift in zip(bounds, shift_of):
                moved = [shift if isinstance(shift, int) else (0 if w is None else shift[w])
                         for w in word_ids[start:end]]
                segments.append({
                    "ids": ids[start:end],
                    "tokens": tokens[start:end],
                    "offsets": [(max(a - m, 0), max(b - m, 0)) for (a, b), m in zip(offsets[start:end], moved)],
                    "word_ids": word_ids[start:end],
                })
            rows.append(self._segments_to_row(segments, add_special_tokens, trunc, max_length, stride))
        return rows

    def _segments_to_row(self, segments: list[dict], add_special_tokens: bool, trunc: str | None,
                         max_length: int | None, stride: int, python_rules: bool = False) -> _Row:
        """Truncate the text segments of one input and put the special tokens around them.

        The cut tokens (and `stride` before them) are what transformers' Python truncation reports
        as overflowing (nothing for a pair cut 'longest_first')."""
        pair = len(segments) > 1
        n_special = self.num_special_tokens_to_add(pair) if add_special_tokens else 0
        lengths = [len(s["ids"]) for s in segments]
        keep = self._kept_lengths(lengths, trunc, max_length, n_special, python_rules)
        overflowing: list[int] = []
        for s, k, n in zip(segments, keep, lengths):
            if k < n:
                if not (pair and trunc == "longest_first"):
                    window = min(n, stride + n - k)
                    overflowing = s["ids"][n - window:] if self.truncation_side == "right" else s["ids"][:window]
                cut = slice(0, k) if self.truncation_side == "right" else slice(n - k, n)
                for key in s:
                    s[key] = s[key][cut]
        row = self._assemble(segments, add_special_tokens, sum(lengths) - sum(keep))
        row.overflowing = overflowing
        row.num_truncated_reported = (sum(lengths) + n_special - max_length) if trunc and max_length else 0
        return row

    def _kept_lengths(self, lengths: list[int], trunc: str | None, max_length: int | None,
                      n_special: int, python_rules: bool = False) -> list[int]:
        """How many tokens of each text truncation keeps (`python_rules`: transformers' Python rules
        whatever the class)."""
        total = sum(lengths) + n_special
        if trunc is None or max_length is None or total <= max_length:
            return list(lengths)
        to_remove = total - max_length
        n1, n2 = lengths[0], (lengths[1] if len(lengths) > 1 else None)
        if self._backend_truncation and not python_rules:
            keep = _truncate_like_tokenizers(n1, n2, trunc, max_length - n_special, to_remove)
        else:
            keep = _truncate_like_transformers(n1, n2, trunc, to_remove)
        return [k for k in keep if k is not None]

    def _assemble(self, segments: list[dict], add_special_tokens: bool, num_truncated: int) -> _Row:
        """One row from its text segments, with `<s> A </s>` / `<s> A </s></s> B </s>` around them."""
        row = _Row([], [], [], [], [], [], num_truncated=num_truncated)

        def put(ids, tokens, offsets, word_ids, seq_id, special):
            row.input_ids += ids
            row.tokens += tokens
            row.offsets += offsets
            row.word_ids += word_ids
            row.sequence_ids += [seq_id] * len(ids)
            row.special_tokens_mask += [int(special)] * len(ids)

        def put_special(token: str, token_id: int):
            put([token_id], [token], [(0, 0)], [None], None, True)

        cls_id, sep_id = self._template_ids if self.is_fast else (self.cls_token_id, self.sep_token_id)
        cls_token, sep_token = self._backend.id_to_token(cls_id), self._backend.id_to_token(sep_id)
        for s, segment in enumerate(segments):
            if add_special_tokens:
                if s == 0:
                    put_special(cls_token, cls_id)
                else:  # `</s></s>` between the two texts
                    put_special(sep_token, sep_id)
            put(segment["ids"], segment["tokens"], segment["offsets"], segment["word_ids"], s, False)
            if add_special_tokens:
                put_special(sep_token, sep_id)
        row.over_limit = max(len(row.input_ids) - self.model_max_length, 0)
        return row

    # ---- padding -------------------------------------------------------------------------
    @staticmethod
    def _padded_length(lengths: list[int], pad: str | None, max_length: int | None,
                       pad_to_multiple_of: int | None) -> int | None:
        """The length a batch is padded to (None: no padding)."""
        if pad is None or not lengths:
            return None
        target = max(lengths) if pad == "longest" or max_length is None else max_length
        return _round_up(target, pad_to_multiple_of)

    def pad(
        self,
        encoded_inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
    ) -> BatchEncoding:
        """Pad encodings (a list of dicts, or a dict of lists) to one length.

        Pads input_ids with `<pad>`, attention_mask/token_type_ids with 0, special_tokens_mask
        with 1, offset_mapping with (0, 0) and `global_attention_mask` with 0 (transformers: -1;
        LED reads both as local attention). Other keys are left as they are.
        """
        if self.is_fast and not self.deprecation_warnings.get("Asking-to-pad-a-fast-tokenizer"):
            self.deprecation_warnings["Asking-to-pad-a-fast-tokenizer"] = True
            logger.warning(f"You're using a {type(self).__name__} tokenizer. Please note that with a fast tokenizer, "
                           "using the `__call__` method is faster than using a method to encode the text followed "
                           "by a call to the `pad` method to get a padded encoding.")
        # the main input: model_input_names[0]
        main = self.model_input_names[0]
        # a dict of per-sequence lists (batched) from whatever was given
        if isinstance(encoded_inputs, Mapping):
            batch = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in encoded_inputs.items()}
            if main not in batch:
                raise InputError(f"pad() needs {main}; got keys {sorted(batch)}")
            is_batched = bool(batch[main]) and isinstance(batch[main][0], (list, tuple))
            if not is_batched:
                batch = {k: [v] for k, v in batch.items()}
        elif isinstance(encoded_inputs, Sequence) and all(isinstance(e, Mapping) for e in encoded_inputs):
            if not encoded_inputs or any(main not in e for e in encoded_inputs):
                raise InputError(f"pad() needs a non-empty list of encodings that all have {main}")
            keys = list(encoded_inputs[0].keys())
            batch = {k: [e[k].tolist() if hasattr(e[k], "tolist") else e[k] for e in encoded_inputs] for k in keys}
            is_batched = True
        else:
            raise InputError("pad() takes a dict of lists (e.g. a BatchEncoding) or a list of such dicts")
        batch = {k: [list(row) for row in v] if k in _PAD_VALUES or k == main else v for k, v in batch.items()}

        # the attention mask is made when missing
        if (return_attention_mask is None or return_attention_mask) and "attention_mask" not in batch:
            batch["attention_mask"] = [[1] * len(ids) for ids in batch[main]]

        # the target length
        pad = _padding_strategy(padding)
        if pad == "max_length" and max_length is None:
            max_length = self.model_max_length
        target = self._padded_length([len(ids) for ids in batch[main]], pad, max_length, pad_to_multiple_of)

        # pad each known per-token key
        side = padding_side or self.padding_side
        if target is not None:
            fills = {main: self.pad_token_id, **_PAD_VALUES}
            for key, value in fills.items():
                if key not in batch:
                    continue
                for i, row in enumerate(batch[key]):
                    n = target - len(row)
                    if n > 0:
                        batch[key][i] = row + [value] * n if side == "right" else [value] * n + row
        if return_attention_mask is False:
            batch.pop("attention_mask", None)
        if not is_batched and return_tensors is None:
            batch = {k: v[0] for k, v in batch.items()}
        return BatchEncoding(batch, is_batched=is_batched, tensor_type=return_tensors)

    def pad_global_attention_mask(self, masks: Any, length: int | None = None,
                                  pad_to_multiple_of: int | None = None, padding_side: str | None = None) -> Any:
        """Pad global attention masks (lists, or a (B, L) tensor) with 0 to `length` (default:
        the longest), rounded up to `pad_to_multiple_of`; returns the same kind it was given."""
        tensor = masks if hasattr(masks, "tolist") and hasattr(masks, "dim") else None
        rows = masks.tolist() if hasattr(masks, "tolist") else [list(m) for m in masks]
        single = bool(rows) and not isinstance(rows[0], list)
        rows = [rows] if single else rows
        target = _round_up(length if length is not None else max((len(r) for r in rows), default=0), pad_to_multiple_of)
        side = padding_side or self.padding_side
        padded = [r + [0] * (target - len(r)) if side == "right" else [0] * (target - len(r)) + r for r in rows]
        padded = padded[0] if single else padded
        if tensor is not None:
            import torch

            return torch.tensor(padded, dtype=tensor.dtype, device=tensor.device)
        return padded

    # ---- decoding ------------------------------------------------------------------------
    def decode(self, token_ids: Any, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None, spaces_between_special_tokens: bool = True) -> str:
        """The text of a sequence of ids (a list, an int, or a 1-D tensor/array).

        The slow tokenizer, like transformers', writes tokens added with add_tokens (and added
        special tokens) as words of their own, separated by spaces (spaces_between_special_tokens)."""
        ids = _as_id_list(token_ids)
        # ids must be in the vocabulary (e.g. -100 label padding is not)
        size = len(self)
        bad = [i for i in ids if not 0 <= i < size]
        if bad:
            raise InputError(f"cannot decode ids outside the vocabulary (0..{size - 1}): {bad[:10]}")
        # transformers' fast tokenizer always replaces bad UTF-8; the slow one follows `errors`
        loose = self._loose_added_tokens() if not self.is_fast else set()
        if loose:
            text = self._decode_pieces(ids, skip_special_tokens, loose, spaces_between_special_tokens)
        elif self.errors == "replace" or self.is_fast:
            text = self._backend.decode(ids, skip_special_tokens=skip_special_tokens)
        else:
            text = self._decode_bytes(ids, skip_special_tokens)
        clean = clean_up_tokenization_spaces
        if clean is None:
            clean = self.clean_up_tokenization_spaces
        return clean_up_tokenization(text) if clean else text

    def _loose_added_tokens(self) -> set[str]:
        """Added tokens the slow tokenizer decodes as words of their own: those added with add_tokens,
        and additional special tokens outside the BPE vocabulary."""
        named = {getattr(self, a) for a in SPECIAL_TOKEN_ATTRIBUTES}
        added = {t.content for t in self._backend.get_added_tokens_decoder().values()}
        loose = added - named - set(self._additional_special_tokens)
        return loose | {t for t in self._additional_special_tokens if self._token_id(t) >= self.vocab_size}

    def _decode_pieces(self, ids: list[int], skip_special_tokens: bool, loose: set[str], spaces: bool) -> str:
        """transformers' slow decode: runs of BPE tokens decoded together, added tokens as they are."""
        special = set(self.all_special_ids)
        pieces, run = [], []

        def flush() -> None:
            if run:
                pieces.append(self._decode_bytes(list(run), False) if self.errors != "replace"
                              else self._backend.decode(list(run), skip_special_tokens=False))
                run.clear()

        for i in ids:
            if skip_special_tokens and i in special:
                continue
            token = self._backend.id_to_token(i)
            if token in loose:
                flush()
                pieces.append(token)
            else:
                run.append(i)
        flush()
        return (" " if spaces else "").join(pieces)

    def _decode_bytes(self, ids: list[int], skip_special_tokens: bool) -> str:
        """Decode with `self.errors` as the UTF-8 error handler (the backend always replaces)."""
        return self._tokens_to_text(self.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens))

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None,
                     spaces_between_special_tokens: bool = True) -> list[str]:
        """`decode` for each sequence of a batch (a list of lists, or a 2-D tensor/array)."""
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self.decode(s, skip_special_tokens, clean_up_tokenization_spaces, spaces_between_special_tokens)
                for s in sequences]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
                f"model_max_length={self.model_max_length}, add_prefix_space={self.add_prefix_space}, "
                f"padding_side={self.padding_side!r})")


class LEDTokenizer(LEDTokenizerFast):
    """LED tokenizer that matches transformers' (Python) LEDTokenizer.

    Same implementation as LEDTokenizerFast; it differs only where transformers' two classes
    do (see the module docstring): truncation at its edges and add_prefix_space.
    """

    is_fast = False
    _backend_truncation = False
    _prefix_space_per_text = True
    _prefer_tokenizer_file = False


# ---- truncation rules ----------------------------------------------------------------------

def _truncate_like_tokenizers(n1: int, n2: int | None, strategy: str, budget: int,
                              to_remove: int) -> tuple[int, int | None]:
    """Kept lengths as the `tokenizers` library truncates (transformers' fast tokenizers)."""
    # a max_length below the special-token count leaves the input as it is
    if budget < 0:
        return n1, n2
    # no room at all empties every text, whatever the strategy
    if budget == 0:
        return 0, (None if n2 is None else 0)
    if n2 is None:
        if strategy == "only_second":
            raise InputError("truncation='only_second' needs a text pair; this input is a single text")
        if strategy == "only_first" and n1 <= to_remove:
            raise InputError(_too_short("first", n1, to_remove))
        return min(n1, budget), None
    if strategy == "longest_first":
        # the shorter text keeps all it can up to half the budget, the longer one the rest
        short, long_ = min(n1, n2), max(n1, n2)
        long_keep = short if short > budget else max(short, budget - short)
        short_keep = short
        if short_keep + long_keep > budget:
            short_keep, long_keep = budget // 2, budget - budget // 2
        short_keep, long_keep = min(short_keep, short), min(long_keep, long_)
        return (short_keep, long_keep) if n1 <= n2 else (long_keep, short_keep)
    # only_first / only_second: cut the one text, which must be long enough
    which, n = ("first", n1) if strategy == "only_first" else ("second", n2)
    if n <= to_remove:
        raise InputError(_too_short(which, n, to_remove))
    return (n1 - to_remove, n2) if strategy == "only_first" else (n1, n2 - to_remove)


def _truncate_like_transformers(n1: int, n2: int | None, strategy: str, to_remove: int) -> tuple[int, int | None]:
    """Kept lengths as transformers' Python tokenizers truncate (errors are logged, not raised)."""
    if strategy == "only_first" or (strategy == "longest_first" and n2 is None):
        if n1 > to_remove:
            return n1 - to_remove, n2
        logger.error(_too_short("first", n1, to_remove))
        return n1, n2
    if strategy == "longest_first":
        # first make the longer text as short as the other, then cut both, the first less
        first_remove = min(abs(n1 - n2), to_remove)
        second_remove = to_remove - first_remove
        if n1 > n2:
            r1, r2 = first_remove + second_remove // 2, second_remove - second_remove // 2
        else:
            r1, r2 = second_remove // 2, first_remove + second_remove - second_remove // 2
        return max(n1 - r1, 0), max(n2 - r2, 0)
    # only_second: ignored for a single text; the second text must be long enough
    if n2 is None:
        return n1, n2
    if n2 > to_remove:
        return n1, n2 - to_remove
    logger.error(_too_short("second", n2, to_remove))
    return n1, n2


_NO_PAIR_OVERFLOW = ("Not possible to return overflowing tokens for pair of sequences with the `longest_first`: "
                     "use truncation='only_first' or 'only_second' (LEDTokenizerFast returns the windows of both)")


def _too_short(which: str, length: int, to_remove: int) -> str:
    """The message for a text too short to truncate by the needed amount."""
    return (f"truncation must remove {to_remove} tokens but the {which} text has only {length}: "
            "use another truncation strategy (e.g. 'longest_first') or a larger max_length")


# ---- training ----------------------------------------------------------------------------

def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, save_dir: str | os.PathLike | None = None,
                        min_frequency: int = 2, model_max_length: int = LED_MODEL_MAX_LENGTH) -> LEDTokenizerFast:
    """Train a byte-level BPE vocabulary with LED's layout of special tokens.

    `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, then the 256 byte symbols and the learnt merges,
    and `<mask>` as the last id (`vocab_size - 1` when the corpus is large enough to fill the
    vocabulary). Saves the tokenizer to `save_dir` when given.
    """
    # the vocabulary needs room for the byte alphabet and the five special tokens
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + len(LED_LEADING_TOKENS) + 1:
        raise InputError(f"vocab_size must be at least {len(alphabet) + len(LED_LEADING_TOKENS) + 1} "
                         f"(256 byte symbols and 5 special tokens), got {vocab_size}")

    # train everything but <mask> with a RoBERTa-style pre-tokenizer
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, min_frequency=min_frequency,
                                  special_tokens=list(LED_LEADING_TOKENS), initial_alphabet=alphabet,
                                  show_progress=False)
    backend.train_from_iterator(texts, trainer)

    # <mask> goes into the BPE vocabulary itself, after every learnt token
    model = json.loads(backend.to_str())["model"]
    vocab = dict(model["vocab"])
    vocab[MASK_TOKEN] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    bpe = models.BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                     end_of_word_suffix="", fuse_unk=False)

    # the LED pipeline around it
    full = Tokenizer(bpe)
    full.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    full.decoder = decoders.ByteLevel()
    full.post_processor = processors.RobertaProcessing(("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]),
                                                       trim_offsets=True, add_prefix_space=False)
    tokenizer = LEDTokenizerFast(tokenizer_object=full, model_max_length=model_max_length)
    if save_dir is not None:
        tokenizer.save_pretrained(save_dir)
        tokenizer.name_or_path = os.fspath(save_dir)
    return tokenizer


__all__ = ["BatchEncoding", "LEDTokenizer", "LEDTokenizerFast", "clean_up_tokenization", "train_bpe_tokenizer"]
