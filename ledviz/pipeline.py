"""One run of LED on a document, as the app shows it: load, tokenize, choose global tokens, encode,
generate, and keep what the views need. No Streamlit here: the pages only render these results.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import resource
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, NamedTuple, Sequence

import torch

from . import device, loading, questions
from .answering import decline_ids
from .errors import CheckpointError, GenerationSettingsError, InputError
from .cache import KeyValues, LayerCache
from .export import AttentionStore
from .config import LEDConfig
from .generation import (MAX_VALUE_TOKENS, _as_hidden, _DecoderRunner, fact_list_constraint, name_run_starts,
                         run_prefix, span_constraint, word_bounds)
from .modeling import LEDForConditionalGeneration, to_dtype
from .questions import ReadQuestion
from .sentences import Sentences
from .tokenization import LEDTokenizerFast, shown_text, token_bytes
from .unfold import SparseAttention

EMBEDDED = "embedded"
GLOBAL_CHOICES = {
    "none": "no global tokens",
    "first": "the first token <s>",
    "question": "the question tokens",
    "sentences": "the first token of every sentence",
    "every_k": "every k-th token",
    "positions": "tokens picked by position",
    "pattern": "tokens whose text matches a pattern",
}


def default_model_dir() -> str:
    """The embedded demo model shipped inside the package (LEDVIZ_MODEL overrides it)."""
    return os.environ.get("LEDVIZ_MODEL") or os.path.join(os.path.dirname(__file__), "demo", "model")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------

@dataclass
class LoadedModel:
    """A model with its tokenizer, where it came from and how long it took to load."""

    model: LEDForConditionalGeneration
    tokenizer: LEDTokenizerFast
    name: str
    source: str  # "embedded", "local" or "hub"
    load_seconds: float
    notes: tuple[str, ...] = ()  # what loading warned about (settings of the checkpoint that are ignored)
    _copies: dict = field(default_factory=dict, repr=False, compare=False)
    _copies_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def model_in(self, precision: str) -> LEDForConditionalGeneration:
        """The model with its weights in `precision` ("float32" or "bfloat16"): the loaded one when it is
        in that dtype already, else a copy made once and kept (for bfloat16: half the float32 weights)."""
        dtype = device.dtype_of(precision)
        if self.model.dtype == dtype:
            return self.model
        with self._copies_lock:
            if precision not in self._copies:
                # normal tensors even when asked inside a run (torch.inference_mode): weights made there keep no
                # version counter, so the decoder's packed weights (fastdecode) could not be kept for them
                with torch.inference_mode(False):
                    copy = to_dtype(LEDForConditionalGeneration(self.model.config), dtype).eval()
                    copy.load_state_dict(self.model.state_dict())
                copy.generation_config = self.model.generation_config
                self._copies[precision] = copy
            return self._copies[precision]

    def has_model_in(self, precision: str) -> bool:
        """Whether `model_in(precision)` is there already (no copy to make first)."""
        return self.model.dtype == device.dtype_of(precision) or precision in self._copies

    @property
    def key(self) -> str:
        """Identifies the checkpoint (for caches and run fingerprints): source, name, and the embedded
        model's folder."""
        folder = default_model_dir() if self.source == EMBEDDED else ""
        return f"{self.source}:{self.name}:{folder}"

    @property
    def config(self):
        return self.model.config

    @property
    def max_tokens(self) -> int:
        """The longest input this model reads (its position table, capped by the tokenizer's limit)."""
        limit = self.model.config.max_encoder_position_embeddings
        tok_limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_limit, int) and 0 < tok_limit < limit:
            limit = tok_limit
        window = max(self.model.config.attention_windows())
        return limit - limit % window if limit % window else limit


def load_model(name_or_path: str | None = None, progress: Callable[[str], None] | None = None,
               torch_dtype: Any = None, *, hub_only: bool = False, **hub_kwargs: Any) -> LoadedModel:
    """Load an LEDForConditionalGeneration and its tokenizer: None/"embedded", a folder, or a Hub id.
    `hub_only=True`: a name is a Hub id, never a local path (nothing under that name is read from
    the disk but the Hub cache), for servers whose users must not reach the server's files."""
    start = time.perf_counter()
    path, source, name = _where(name_or_path, hub_only, hub_kwargs)
    if source == "local" and not hub_kwargs.get("subfolder"):  # the most basic thing missing first
        problem = loading.checkpoint_folder_problem(path)
        if problem is not None:
            raise CheckpointError(problem)
    if progress:
        progress("loading the tokenizer")
    tokenizer = LEDTokenizerFast.from_pretrained(path, **hub_kwargs)
    model = LEDForConditionalGeneration.from_pretrained(path, torch_dtype=torch_dtype, progress=progress, **hub_kwargs)
    model.eval()
    return LoadedModel(model, tokenizer, name, source, time.perf_counter() - start,
                       notes=tuple(getattr(model, "loading_notes", ())))


def _where(name_or_path: str | None, hub_only: bool, hub_kwargs: dict) -> tuple[str, str, str]:
    """(path, source, name) of a checkpoint name as load_model reads it (sets hub_kwargs' hub_only)."""
    if name_or_path in (None, "", EMBEDDED):
        return default_model_dir(), EMBEDDED, EMBEDDED
    if hub_only:
        hub_kwargs["hub_only"] = True
        name = str(name_or_path).strip()
        return name, "hub", name
    path = os.path.expanduser(str(name_or_path).strip())
    return path, "local" if os.path.isdir(path) else "hub", path


def load_config(name_or_path: str | None = None, *, hub_only: bool = False, **hub_kwargs: Any) -> LEDConfig:
    """The config of the checkpoint load_model would load under these arguments, read alone (only
    config.json): to tell a model's size (memory.model_nbytes) before loading its weights."""
    path, source, _ = _where(name_or_path, hub_only, hub_kwargs)
    if source == "local" and not hub_kwargs.get("subfolder") and not os.path.isfile(os.path.join(path, "config.json")):
        raise CheckpointError(loading.checkpoint_folder_problem(path) or f"there is no config.json in {path!r}")
    return LEDConfig.from_pretrained(path, **hub_kwargs)


# ---------------------------------------------------------------------------------------------
# the document
# ---------------------------------------------------------------------------------------------

@dataclass
class Document:
    """A tokenized input: the document (and question), ids, offsets into the text they came from.

    offsets[i] = (start, end) characters of token i in its own text; segment[i] says which text:
    0 the question (QA) or the document, 1 the document in a QA pair, None for special tokens.
    """

    text: str
    question: str | None
    input_ids: torch.Tensor  # (1, N)
    attention_mask: torch.Tensor  # (1, N)
    tokens: list[str]
    offsets: list[tuple[int, int]]
    segment: list[int | None]
    limit: int
    truncated_tokens: int = 0
    kept_chars: int = 0  # characters of the document that reached the model

    @property
    def n_tokens(self) -> int:
        return self.input_ids.shape[1]

    @property
    def document_segment(self) -> int:
        return 1 if self.question else 0

    def token_text_span(self, i: int) -> tuple[int, int] | None:
        """Character span of token i in the *document* text, or None (question or special token)."""
        if self.segment[i] != self.document_segment:
            return None
        return self.offsets[i]

    def text_spans(self) -> list[tuple[int, int] | None]:
        """Per token, its character span in the document text (None for question and special tokens)."""
        return [self.token_text_span(i) for i in range(self.n_tokens)]

    def in_document(self) -> list[bool]:
        """Per token, whether it is a token of the document text (not the question, not special)."""
        return [s == self.document_segment for s in self.segment]

    def token_texts(self) -> list[str]:
        """Each token as it reads in its own text (document or question); special tokens as themselves."""
        out = []
        for i, (s, e) in enumerate(self.offsets):
            seg = self.segment[i]
            source = None if seg is None else (self.question if self.question and seg == 0 else self.text)
            out.append(source[s:e] if source is not None and e > s else self.tokens[i])
        return out

    def document_tokens(self) -> list[int]:
        return [i for i, s in enumerate(self.segment) if s == self.document_segment]

    def question_tokens(self) -> list[int]:
        return [i for i, s in enumerate(self.segment) if self.question and s == 0]

    def truncation_message(self) -> str | None:
        """What was cut to fit the model, in words for the user; None when nothing was."""
        if not self.truncated_tokens:
            return None
        cut = self.text[self.kept_chars:].strip()
        preview = (cut[:80] + "…") if len(cut) > 80 else cut
        message = (f"The model reads at most {self.limit:,} tokens; the last {self.truncated_tokens:,} tokens of the "
                   f"document (from character {self.kept_chars:,} of {len(self.text):,}: “{preview}”) were cut.")
        if word := self.cut_word():  # the preview began mid-word ("lantern ..."), which read as a slip of the app
            read, whole = word
            message += f" The cut falls inside the word “{whole}”: the model read its first part, “{read}”."
        return message

    def cut_word(self) -> tuple[str, str] | None:
        """Where the cut to the model's limit falls inside a word (a word of several tokens): (the part the
        model read, the whole word); None when nothing was cut or the cut falls between words."""
        k = self.kept_chars
        if not self.truncated_tokens or not 0 < k < len(self.text):
            return None
        if not (self.text[k - 1].isalnum() and self.text[k].isalnum()):
            return None
        start, end = k, k
        while start > 0 and self.text[start - 1].isalnum():
            start -= 1
        while end < len(self.text) and self.text[end].isalnum():
            end += 1
        return self.text[start:k], self.text[start:end]


def check_document_text(text: str | None) -> None:
    """Raise InputError for a document with no text (nothing, or only blanks): prepare_document's
    first check, for a page that says so before it has what else prepare_document needs (the QA
    page, before a question is typed)."""
    if text is None or not str(text).strip():
        raise InputError("the document is empty (it has no text): paste a text, upload a text, PDF or HTML file "
                         "that has text in it, or pick a sample document")


def window_words(windows: Sequence[int]) -> str:
    """The encoder's attention window(s) in words: LED's window counts both sides, so "window 64 (32
    tokens each side)"; layers with different windows give the range, "windows 32 to 64 (16 to 32
    tokens each side, by layer)"."""
    lo, hi = min(windows), max(windows)
    if lo == hi:
        return f"window {hi:,} ({hi // 2:,} tokens each side)"
    return f"windows {lo:,} to {hi:,} ({lo // 2:,} to {hi // 2:,} tokens each side, by layer)"


def question_hint(loaded: LoadedModel, text: str | None) -> str:
    """What to type instead of a question the app cannot read, fitting the document: for the embedded
    demo model on one of its kinds of report, a question it was trained on for that kind ("Who is the
    project lead?" for a project report, "Who is the chief executive?" for a company's); for any
    other document or model, a plain hint with no example (a project question on a letter misleads)."""
    if loaded.source == EMBEDDED and text:
        from .demo.data import SCHEMAS, report_kind

        kind = report_kind(text)
        if kind is not None:
            return f"type a question about the document, in words (e.g. “{SCHEMAS[kind].slots[0].questions[0]}”)"
    return "type a question about the document, in words: ask about something it says"


def prepare_document(loaded: LoadedModel, text: str, question: str | None = None,
                     max_tokens: int | None = None) -> Document:
    """Tokenize a document (and a question for QA), truncating the document to the model's limit.

    Text that spells a special token ("<s>", "</s>", "<pad>", "<mask>": an HTML strike-through tag,
    a pasted tokenizer example) is read as plain text, never as the token: a "</s>" in the middle
    of a document would end it for the model, a "<pad>" would read as padding."""
    check_document_text(text)
    if question is not None and not question.strip():
        raise InputError("the question is empty: type a question about the document")
    if question is not None and not any(c.isalnum() for c in question):
        raise InputError(f"the question {question.strip()!r} has no words: {question_hint(loaded, text)}")
    limit = min(max_tokens or loaded.max_tokens, loaded.max_tokens)
    tok = loaded.tokenizer
    if question:  # the document is cut to fit, never the question: it must leave room for a document token
        n_question = len(tok(question, add_special_tokens=False, verbose=False, split_special_tokens=True)
                         ["input_ids"])
        if n_question + tok.num_special_tokens_to_add(pair=True) >= limit:
            raise InputError(f"the question is {n_question:,} tokens long, and the question and the document "
                             f"together must fit in the model's limit of {limit:,} tokens (the document is cut "
                             "to fit, the question is not): shorten the question")
    args = (question, text) if question else (text,)
    enc = tok(*args, truncation="only_second" if question else True, max_length=limit,
              return_offsets_mapping=True, return_tensors="pt", split_special_tokens=True)
    ids = enc["input_ids"]
    if ids.shape[1] > limit:
        raise InputError(f"the question alone is longer than the model's limit of {limit} tokens: shorten it")
    segment = enc.sequence_ids(0)
    offsets = [tuple(o) for o in enc["offset_mapping"][0].tolist()]
    truncated = enc.num_truncated_tokens or 0
    if isinstance(truncated, list):
        truncated = truncated[0]
    doc_seg = 1 if question else 0
    doc_ends = [offsets[i][1] for i, s in enumerate(segment) if s == doc_seg]
    kept = max(doc_ends) if doc_ends else 0
    return Document(text=text, question=question, input_ids=ids, attention_mask=enc["attention_mask"],
                    tokens=tok.convert_ids_to_tokens(ids[0].tolist()), offsets=offsets, segment=list(segment),
                    limit=limit, truncated_tokens=int(truncated), kept_chars=kept if truncated else len(text))


def read_question(tokenizer, question: str, document: str) -> ReadQuestion:
    """A user's question as the model will be given it (ledviz.questions): a shouted question
    re-cased to sentence case, the document's words in the document's casing; a letter slip
    mended when one best word of the document or of the tokenizer's whole words is one slip away.
    `.text` is the question to pass on, `.changes` what was read differently. The one place the
    QA page, the Attention lab (both through pages.common.read_question_input) and
    ledviz.demo.evaluate read questions."""
    if question is None:
        raise InputError("the question is missing: type a question about the document")
    return questions.read_question(question, document or "", questions.tokenizer_vocabulary(tokenizer))


def global_attention_mask(doc: Document, kind: str, *, k: int = 64, positions: list[int] | None = None,
                          pattern: str | None = None) -> torch.Tensor:
    """A (1, N) global-attention mask for one of GLOBAL_CHOICES."""
    n = doc.n_tokens
    mask = torch.zeros(1, n, dtype=torch.long)
    if kind == "none":
        pass
    elif kind == "first":
        mask[0, 0] = 1
    elif kind == "question":
        q = doc.question_tokens()
        if not q:
            raise InputError("'question tokens' needs a question: use the question-answering page, or pick another "
                             "choice")
        mask[0, q] = 1
    elif kind == "sentences":
        mask[0, 0] = 1
        mask[0, sentence_start_tokens(doc)] = 1
    elif kind == "every_k":
        mask[0, ::check_k(k)] = 1
    elif kind == "positions":
        bad = [p for p in positions or [] if not 0 <= p < n]
        if bad:
            raise InputError(f"token positions {bad} are outside the document (0 to {n - 1}): give positions from "
                             f"0 to {n - 1}")
        mask[0, list(positions or [])] = 1
    elif kind == "pattern":
        if not pattern:
            raise InputError("give a pattern (a regular expression matched against each token's text)")
        try:
            rx = re.compile(pattern)
        except re.error as e:
            raise InputError(f"the pattern {pattern!r} is not a valid regular expression ({e}): mend it, or put a "
                             "backslash before a character meant literally (\\( for a bracket)") from None
        for i in doc.document_tokens():
            s, e = doc.offsets[i]
            if rx.search(doc.text[s:e]):
                mask[0, i] = 1
    else:
        raise InputError(f"unknown global-attention choice {kind!r}; choose one of {', '.join(GLOBAL_CHOICES)}")
    return mask


K_MAX = 100_000  # the largest k of "every k-th token" (beyond it, any document the app reads has only its first)
MAX_POSITIONS = 1_000_000  # the most positions a list (ranges written out) may name


def check_k(k: Any) -> int:
    """k of "every k-th token" as an int: a whole number from 1 to K_MAX, else InputError saying so."""
    if isinstance(k, bool) or not isinstance(k, (int, float)) or k != int(k) or not 1 <= k <= K_MAX:
        raise InputError(f"'every k-th token' takes k from 1 to {K_MAX:,} (a whole number), got {k!r}: 1 marks "
                         f"every token, 64 every 64th (0, 64, 128, ...)")
    return int(k)


def every_k_note(k: int, n_tokens: int) -> str:
    """How many tokens "every k-th token" marks in a document of `n_tokens` tokens, and which, in words."""
    marked = len(range(0, n_tokens, k))
    if k == 1:
        return f"all {n_tokens:,} tokens are global (k = 1)"
    if marked == 1:
        return (f"1 of the input's {n_tokens:,} tokens is global: k = {k:,} reaches past its end, so only the "
                "first (0)")
    shown = ", ".join(map(str, range(0, min(n_tokens, 3 * k), k)))
    return (f"{marked:,} of the input's {n_tokens:,} tokens are global, one every {k:,} "
            f"({shown}{', ...' if marked > 3 else ''})")


def format_positions(positions: Sequence[int], sep: str = ", ") -> str:
    """Positions as parse_positions reads them, runs of three or more written as ranges: "0, 10-20"."""
    values = sorted(set(int(p) for p in positions))
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{values[i]}-{values[j]}")
        else:
            parts.extend(str(v) for v in values[i:j + 1])
        i = j + 1
    return sep.join(parts)


def _position_ranges(text: str) -> list[tuple[int, int]]:
    """The (first, last) of each whole number or range typed in `text`, in the order typed;
    InputError naming the part that is wrong (see parse_positions)."""
    ranges: list[tuple[int, int]] = []
    text = re.sub(r"(\d)\s*(-|–|\.\.)\s*(?=\d)", r"\1\2", text)  # "10 - 20" is one range
    for part in re.split(r"[,;\s]+", text.strip()):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:(?:-|–|\.\.)(\d+))?", part)
        if m is None:
            if re.fullmatch(r"-\d+", part):
                raise InputError(f"the position {part!r} is negative: positions count from 0 (the first token)")
            raise InputError(f"{part!r} is not a token position: give whole numbers and ranges separated by "
                             "commas, like '0, 10-20'")
        a = int(m.group(1))
        b = a if m.group(2) is None else int(m.group(2))
        if b < a:
            raise InputError(f"the range {part!r} runs backwards: write it smallest first, '{b}-{a}'")
        ranges.append((a, b))
    return ranges


def parse_positions(text: str) -> list[int]:
    """Token positions typed as a list: whole numbers and ranges ("0, 10-20": 0 and 10 to 20, both
    ends included), separated by commas, semicolons or spaces. Sorted, each once (repeated_positions
    says which were typed more than once). InputError naming the part that is wrong ("x", a
    backwards range "5-2", a negative number)."""
    found: set[int] = set()
    for a, b in _position_ranges(text):
        if b - a + len(found) >= MAX_POSITIONS:
            raise InputError(f"the positions {text.strip()[:40]!r} name more than {MAX_POSITIONS:,} tokens: give "
                             "fewer (positions past the document's end are refused anyway)")
        found.update(range(a, b + 1))
    return sorted(found)


def repeated_positions(text: str) -> list[tuple[int, int, int]]:
    """The positions `text` names more than once, as (first, last, times) runs in order: "0,0,0" is
    [(0, 0, 3)], "0-10, 5-15" is [(5, 10, 2)]. A global token is global once however often it is
    listed, so a caption can say what the list quietly became. (InputError as parse_positions.)"""
    edges: dict[int, int] = {}
    for a, b in _position_ranges(text):
        edges[a] = edges.get(a, 0) + 1
        edges[b + 1] = edges.get(b + 1, 0) - 1
    runs: list[tuple[int, int, int]] = []
    depth, start = 0, 0
    for x in sorted(edges):
        if depth >= 2:
            if runs and runs[-1][1] == start - 1 and runs[-1][2] == depth:  # "1,1,2,2": one run 1-2
                runs[-1] = (runs[-1][0], x - 1, depth)
            else:
                runs.append((start, x - 1, depth))
        depth += edges[x]
        start = x
    return runs


def repeated_positions_note(text: str) -> str | None:
    """What a positions list with repeats became, in words ("0 was listed 3 times: each position is
    one global token however often it is listed"); None when nothing is repeated."""
    runs = repeated_positions(text)
    if not runs:
        return None
    times = {2: "twice"}
    parts = [(f"{a}" if a == b else f"{a}-{b}") + (" was" if a == b else " were") + " listed "
             + times.get(n, f"{n} times") for a, b, n in runs[:3]]
    k = len(runs) - 3
    more = f" (and {k} more {'repeat' if k == 1 else 'repeats'})" if k > 0 else ""
    said = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{said}{more}: each position is one global token however often it is listed."


def sentence_start_tokens(doc: Document) -> list[int]:
    """The document tokens that begin a sentence (ledviz.sentences): for each sentence, the first
    token that reaches its first character (a start only blanks separate from the token before
    counts for the next token). One token is marked once however many sentences it begins."""
    starts = Sentences(doc.text).starts
    out, k, prev_end = [], 0, 0
    for i in doc.document_tokens():
        s, e = doc.offsets[i]
        if e <= s:
            continue
        while k < len(starts) and starts[k] < prev_end:  # inside an earlier token
            k += 1
        if k < len(starts) and starts[k] < e:
            out.append(i)
        prev_end = max(prev_end, e)
    return out


# ---------------------------------------------------------------------------------------------
# a run
# ---------------------------------------------------------------------------------------------

class TextStream:
    """The text each new output token adds, in whole characters: a token is not always whole
    characters (byte-level BPE splits an 'í' over two tokens), so the output so far is decoded
    together and a character still missing bytes (U+FFFD at the end) waits for the next token.
    Special tokens add nothing."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.shown = 0  # characters of the decoded output already returned

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        decoded = shown_text(self.tokenizer, self.ids, skip_special_tokens=True)
        new = decoded[self.shown:]
        self.shown = max(self.shown, len(decoded))
        return new


@dataclass
class RunResult:
    """Everything a page shows about one run; attentions are kept in compact (sparse, float16) form."""

    document: Document
    global_mask: torch.Tensor  # (1, N)
    task: str
    output_ids: list[int]  # generated ids, decoder start token included
    output_tokens: list[str]
    output_text: str
    layers: dict[int, SparseAttention]  # encoder attention per layer (batch 1)
    head_stats: dict[int, dict[str, torch.Tensor]]
    cross_attentions: tuple[torch.Tensor, ...]  # per layer (H, T, N), float16
    decoder_attentions: tuple[torch.Tensor, ...]  # per layer (H, T, T), float16
    token_logprobs: list[float]  # log p(y_t | y_<t) of each generated token
    timings: dict[str, float] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)
    stopped_early: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    # the output ends with its end token; False: it ran to max_new_tokens (or was stopped) unfinished,
    # output_text then without a partial last character (tokenization.shown_text)
    ended: bool = True
    # answer_from_document: the kept answer and how it was chosen (ledviz.answering.KeptAnswer: the best
    # span weighed against the decline, and the margin)
    answer: Any = None
    # values derived from the run once and reused by every redraw (e.g. the faithfulness marks);
    # not an argument, so dataclasses.replace gives a changed copy an empty one
    derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def log_likelihood(self) -> float:
        return float(sum(self.token_logprobs))

    @property
    def global_positions(self) -> list[int]:
        return self.global_mask[0].nonzero().flatten().tolist()

    @property
    def attention_bytes(self) -> int:
        total = sum(sp.nbytes for sp in self.layers.values())
        total += sum(t.numel() * t.element_size() for t in self.cross_attentions + self.decoder_attentions)
        return total


def copy_source(tok, ids: list[int]) -> tuple[list[int], str, list[int]]:
    """The document tokens an answer or summary value may copy: `ids` tokenized again with line
    breaks as spaces, so that a word that begins a paragraph can also be copied in the spaced
    form (" Manaia") in which answers and summary values are written; so can the document's first
    word (the text begins with a space: "CEO: Maren", not "CEO:Maren", for a document that begins
    "Maren Okafor leads ..."). Returns those tokens, the text they were tokenized from (`ids`
    decoded, each line break with the blanks around it one space, and a space before the first
    word), and the byte offsets in that text of the spaces that stand for line breaks."""
    text = tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    if text and not text[0].isspace():
        text = " " + text
    parts, breaks, at, size = [], [], 0, 0
    for m in re.finditer(r"\s*\n\s*", text):
        parts += [text[at:m.start()], " "]
        size += len(parts[-2].encode("utf-8"))
        breaks.append(size)
        size += 1
        at = m.end()
    parts.append(text[at:])
    text = "".join(parts)
    return tok(text, add_special_tokens=False)["input_ids"], text, breaks


class CopyForm(NamedTuple):
    """Tokens an answer may copy, with `words`, where whole words start and end
    (generation.word_bounds, with the name-run end rule), and `run_starts`, where each word's name
    run begins (generation.name_run_starts)."""

    ids: list[int]
    words: tuple[list[bool], list[bool]]
    run_starts: list[int]


class DocumentWords(NamedTuple):
    """A document in the forms answers copy it in. `spaced`: copy_source's (line breaks as
    spaces, so that a word that begins a line is copied as " Manaia", the way answers and summary
    values are written, in the tokenizer's own spelling "ĠMan" + "aia"). `others`: the document's
    tokens as the encoder reads them ("M" + "an" + "aia" after a line break), and the same tokens
    with each line break and the token after it as one spaced token ("ĠM" + "an" + "aia"), the
    spellings a model that copies token for token writes; only those that differ from `spaced`."""

    spaced: CopyForm
    others: tuple[CopyForm, ...] = ()

    def answer_source(self, separator: int) -> tuple[list[int], tuple[list[bool], list[bool]]]:
        """The tokens an answer may copy (every form, with `separator` between two, a token no
        answer contains: the end of sequence) and their word bounds."""
        ids, starts, ends = list(self.spaced.ids), list(self.spaced.words[0]), list(self.spaced.words[1])
        for form in self.others:
            ids += [separator, *form.ids]
            starts += [False, *form.words[0]]
            ends += [False, *form.words[1]]
        return ids, (starts, ends)

    def spaced_form(self, tok, span: Sequence[int]) -> list[int]:
        """`span` in the spaced form, the tokenizer's spelling (" Manaia"), where it is whole words
        of another form only ("ĠM" + "an" + "aia"); any other span as it is."""
        span = list(span)
        if not self.others or run_prefix(self.spaced.ids, span, *self.spaced[1:]) is not None:
            return span
        spaced = tok(" " + tok.decode(span, skip_special_tokens=True).strip(), add_special_tokens=False)["input_ids"]
        return spaced if run_prefix(self.spaced.ids, spaced, *self.spaced[1:]) is not None else span

    def run_prefix(self, span: Sequence[int]) -> list[int]:
        """generation.run_prefix of `span` in the first form it is whole words of: the tokens
        that begin its name run before it, or []."""
        for form in (self.spaced, *self.others):
            prefix = run_prefix(form.ids, span, form.words, form.run_starts)
            if prefix is not None:
                return prefix
        return []


def _common_words(tok) -> frozenset[str]:
    """The tokenizer's lower-case whole words ("in", "the"; from its vocabulary's tokens with a
    leading space): a sentence's first word in this list is no part of a name (name_run_starts)."""
    known = _COMMON.get(tok)
    if known is None or known[0] != len(tok):  # a token added since: read the vocabulary again
        words = (token_bytes(t) for t in tok.get_vocab())
        known = _COMMON[tok] = (len(tok), frozenset(
            w for w in (b[1:].decode("utf-8", "ignore") for b in words if b[:1] == b" ")
            if w.isalpha() and w.islower()))
    return known[1]


_COMMON: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # tokenizer -> (its size, its common words)


def _copy_form(tok, ids: list[int], text: str, breaks: Sequence[int]) -> CopyForm:
    pieces = [token_bytes(piece) for piece in tok.convert_ids_to_tokens(ids)]
    # the name rules need the line breaks, known by byte offset: only where the tokens spell the text exactly
    if b"".join(pieces) != text.encode("utf-8"):
        return CopyForm(ids, word_bounds(pieces), list(range(len(ids))))
    words = word_bounds(pieces, name_runs=True, line_breaks=breaks)
    return CopyForm(ids, words, name_run_starts(pieces, line_breaks=breaks, common_words=_common_words(tok),
                                                starts=words[0]))


def _respaced(tok, ids: list[int]) -> tuple[list[int], str, list[int]]:
    """The document's tokens with each run of line breaks (and blanks around them) and the token
    after it as one token, that token with a space before it ("Ċ" + "M" -> "ĠM") where the
    vocabulary has one; the text they spell and the byte offsets of those spaces (as copy_source)."""
    vocab = tok.get_vocab()
    pieces = tok.convert_ids_to_tokens(ids)
    out, text, breaks, i = [], b"", [], 0
    while i < len(ids):
        j = i
        while (j < len(ids) and token_bytes(pieces[j]).isspace()
               and b"\n" in b"".join(map(token_bytes, pieces[i:j + 1]))):
            j += 1
        if j > i and j < len(ids) and token_bytes(pieces[j])[:1] == b" ":  # "Ċ" + "ĠThe" -> "ĠThe"
            breaks.append(len(text))
            out.append(ids[j])
            text += token_bytes(pieces[j])
            i = j + 1
            continue
        spaced = "Ġ" + pieces[j] if j > i and j < len(ids) and not token_bytes(pieces[j])[:1].isspace() else None
        if spaced is not None and spaced in vocab:
            breaks.append(len(text))
            out.append(vocab[spaced])
            text += token_bytes(spaced)
            i = j + 1
            continue
        out.append(ids[i])
        text += token_bytes(pieces[i])
        i += 1
    return out, text.decode("utf-8", "replace"), breaks


def document_words(tok, ids: list[int]) -> DocumentWords:
    """The copyable forms of a document (`ids`, as given to the encoder) with their word and
    name-run bounds: what document_constraint keeps answers to, and answering.kept_answers
    begins a name's answer at (DocumentWords.run_prefix)."""
    copied, text, breaks = copy_source(tok, ids)
    spaced = _copy_form(tok, copied, text, breaks)
    ids = list(ids)
    own = tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    others, seen = [], {tuple(copied)}
    for form in ((ids, own, ()), _respaced(tok, ids)):
        if tuple(form[0]) not in seen:
            seen.add(tuple(form[0]))
            others.append(_copy_form(tok, *form))
    return DocumentWords(spaced, tuple(others))


_SPACES = b" \t\n\r\x0b\x0c"


def _solid_starts(pieces: Sequence[bytes]) -> list[int]:
    """For each token, how many non-blank bytes come before it: a position that the forms of one
    document (DocumentWords: they differ only in their blanks) share."""
    out, n = [], 0
    for piece in pieces:
        out.append(n)
        n += sum(b not in _SPACES for b in piece)
    return out


class PieceSentences:
    """The sentences (ledviz.sentences) of a document given as its tokens' bytes, each as a range
    [a, b) of non-blank byte counts (_solid_starts: a place every form of the document shares).
    The bytes are decoded once (a byte that is no UTF-8, as at a cut, stays one character:
    surrogateescape) and the sentences found once; `of(j)`, for each answer AttentionFocus
    writes, maps token j's byte to a character and its sentence's span back to bytes."""

    def __init__(self, pieces: Sequence[bytes]):
        self.token_at = list(itertools.accumulate((len(p) for p in pieces), initial=0))  # byte offsets
        self.raw = b"".join(pieces)
        self.text = self.raw.decode("utf-8", "surrogateescape")
        self.one_byte = len(self.text) == len(self.raw)  # each character one byte: offsets are the same
        self.sentences = Sentences(self.text)

    def _char(self, at: int) -> int:
        """The character that byte `at` is part of (a token may begin inside one)."""
        if self.one_byte:
            return at
        while 0 < at < len(self.raw) and self.raw[at] & 0xC0 == 0x80:  # a UTF-8 continuation byte
            at -= 1
        return len(self.raw[:at].decode("utf-8", "surrogateescape"))

    def _solid(self, char: int) -> int:
        """The non-blank bytes before character `char`."""
        end = char if self.one_byte else len(self.text[:char].encode("utf-8", "surrogateescape"))
        return len(self.raw[:end].translate(None, _SPACES))

    def of(self, j: int) -> tuple[int, int]:
        """The sentence that holds token j (a token of blanks: the next sentence, the last one
        after the last), as [a, b) non-blank byte counts; (0, 0) for a text without sentences."""
        k = self.sentences.index_at(self._char(self.token_at[j]))
        if k is None:
            return 0, 0
        a, b = self.sentences.spans[k]
        return self._solid(a), self._solid(b)


class AttentionFocus:
    """generation.Focus from the model's own cross-attention: where the decoder's last layer (its
    heads' mean) attends most among the document's tokens at the step that begins a span, the
    sentence holding that token. A model that copies points there at the value it copies (the
    embedded model's last layer: at a summary value's first token about 9 times in 10, in the
    fact's own sentence 99 times in 100, teacher-forced on validation reports).

    `encoder_outputs` and `attention_mask` are the batch's encoder output and mask, `input_ids`
    (B, N) its inputs, `sources[b]` the document token ids of input b as the encoder read them (one
    contiguous stretch of input_ids[b]), `documents[b]` their document_words: the masks are over
    DocumentWords.answer_source's tokens."""

    def __init__(self, model, tok, encoder_outputs, attention_mask: torch.Tensor | None, input_ids: torch.Tensor,
                 sources: Sequence[Sequence[int]], documents: Sequence[DocumentWords]):
        self.model, self.documents = model, list(documents)
        self.hidden = _as_hidden(encoder_outputs)[0]
        self.mask = attention_mask
        self.sources = [list(map(int, s)) for s in sources]
        self.offsets = [_stretch_at(row, src) for row, src in zip(input_ids.tolist(), self.sources)]
        self.forms = [None] * len(self.sources)  # per input: (own pieces, answer_source's non-blank starts)
        self._sentences: dict[int, PieceSentences] = {}  # per input: its document's sentences
        self.tok = tok
        self._seen: dict[tuple[int, tuple[int, ...]], torch.Tensor | None] = {}
        self._runners: dict = {}  # input -> its generation._DecoderRunner

    def _decode(self, batch_id: int, rows: torch.Tensor, attentions: bool = False, caches=None):
        """The decoder's pass over `rows` (R, T) after the positions `caches` hold (with their new
        caches), every row reading input batch_id's encoder output."""
        b = batch_id
        runner = self._runners.get(b)
        if runner is None:  # one per input: its cross-attention keys and values projected once
            runner = self._runners[b] = _DecoderRunner(self.model, self.hidden[b:b + 1],
                                                       None if self.mask is None else self.mask[b:b + 1])
        with torch.no_grad():
            return runner.forward(rows.to(self.hidden.device), caches, rows.shape[0], output_attentions=attentions)

    def attention(self, batch_id: int, prefix: torch.Tensor) -> torch.Tensor | None:
        """The last decoder layer's cross-attention, its heads' mean, on each document token (sources[batch_id])
        at the step after `prefix`; None when the document was not found in the input."""
        if self.offsets[batch_id] is None:
            return None
        return self._source_attention(batch_id, self._decode(batch_id, prefix.reshape(1, -1), attentions=True))

    def _source_attention(self, batch_id: int, step) -> torch.Tensor:
        """The last decoder layer's cross-attention (heads' mean) at `step`'s last position (a _decode
        with attentions) on each document token (sources[batch_id]; its offset in the input known)."""
        at = self.offsets[batch_id]
        return step.cross_attentions[-1][0, :, -1].float().mean(0)[at: at + len(self.sources[batch_id])]

    def pointed(self, batch_id: int, prefix: torch.Tensor) -> int | None:
        """The document token (an index into sources[batch_id]) the last decoder layer's
        cross-attention weighs most at the step after `prefix` (None: the document is not in the input)."""
        weights = self.attention(batch_id, prefix)
        return None if weights is None else int(weights.argmax())

    def focus(self, batch_id: int, prefix: torch.Tensor) -> torch.Tensor | None:
        j = self.pointed(batch_id, prefix)
        return None if j is None else self.sentence_mask(batch_id, j)

    def __call__(self, batch_id: int, prefix: torch.Tensor) -> torch.Tensor | None:
        key = (batch_id, tuple(int(t) for t in prefix.tolist()))
        if key not in self._seen:
            self._seen[key] = self.focus(batch_id, prefix)
        return self._seen[key]

    def _forms(self, batch_id: int) -> tuple[list[bytes], torch.Tensor]:
        """The bytes of each source token, and where each token of answer_source begins (_solid_starts;
        -1 for the separators between the forms)."""
        if self.forms[batch_id] is None:
            pieces = lambda ids: [token_bytes(p) for p in self.tok.convert_ids_to_tokens(list(ids))]  # noqa: E731
            doc = self.documents[batch_id]
            solid = []
            for k, form in enumerate((doc.spaced, *doc.others)):
                solid += ([-1] if k else []) + _solid_starts(pieces(form.ids))
            self.forms[batch_id] = (pieces(self.sources[batch_id]), torch.tensor(solid))
        return self.forms[batch_id]

    def sentence_mask(self, batch_id: int, j: int) -> torch.Tensor:
        """True on the tokens of answer_source (every form) inside the sentence of source token j."""
        own, solid = self._forms(batch_id)
        if batch_id not in self._sentences:
            self._sentences[batch_id] = PieceSentences(own)
        a, b = self._sentences[batch_id].of(j)
        return (solid >= a) & (solid < b)


class ValueChooser(AttentionFocus):
    """generation.Focus that chooses each summary value whole: at a value's start, the candidates
    are the whole-word values of the document that begin with one of the `first` likeliest first
    tokens (at most `per_token` places each, those the cross-attention weighs most, no two with
    the same following tokens), each written on as the constrained greedy decoding would and
    scored teacher-forced with its stop token; the focus is the place where the chosen one
    begins (choose_value: the model's own first token where a value it begins is whole, that is
    where the model gives the stop token at least exp(`whole`); else the likeliest whole value).
    So a value is not cut where the document does not go on as the model wanted. The 1K sample's
    "Deadline:" was written "13." (the "13" of "13 open items": the model gives " 13" 0.93, then
    the stop token exp(-12), wanting " June"); "10 June 2030." scores -3.7 in all, its stop token 0.

    `stop` is the token that ends a value ("."), `ends` the end-of-sequence ids (the first
    separates the document's forms, as in document_constraint); the other arguments as
    AttentionFocus."""

    def __init__(self, model, tok, encoder_outputs, attention_mask, input_ids, sources, documents, *, stop: int,
                 ends: Sequence[int], first: int = 4, per_token: int = 4,
                 max_value_tokens: int = MAX_VALUE_TOKENS, whole: float = math.log(0.05)):
        for name, value in (("first", first), ("per_token", per_token), ("max_value_tokens", max_value_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GenerationSettingsError(f"ValueChooser: {name} must be a whole number of at least 1, got "
                                              f"{value!r}")
        if not (isinstance(whole, (int, float)) and math.isfinite(whole) and whole <= 0):
            raise GenerationSettingsError(f"ValueChooser: whole is a log-probability, a finite number of 0 or "
                                          f"less (log(0.05) = {math.log(0.05):.2f} by default), got {whole!r}")
        super().__init__(model, tok, encoder_outputs, attention_mask, input_ids, sources, documents)
        self.stop, self.ends = int(stop), [int(t) for t in ends]
        self.first, self.per_token, self.max_value_tokens = first, per_token, max_value_tokens
        self.copyable = [None] * len(self.sources)
        self.whole = whole
        self._own_places: dict[int, torch.Tensor] = {}  # per input: where each source token begins (_solid_starts)

    def _source(self, batch_id: int):
        if self.copyable[batch_id] is None:
            ids, (starts, ends) = self.documents[batch_id].answer_source(self.ends[0])
            self.copyable[batch_id] = (torch.tensor(ids), torch.tensor(starts), torch.tensor(ends))
        return self.copyable[batch_id]

    @torch.no_grad()
    def focus(self, batch_id: int, prefix: torch.Tensor) -> torch.Tensor | None:
        doc, starts, word_ends = self._source(batch_id)
        prefix = prefix.reshape(-1).to(doc.device)
        step = self._decode(batch_id, prefix[None], attentions=True)
        logp = self._logprobs(step.hidden[0, -1])
        cut = {self.stop, *self.ends}
        firsts = [t for t in torch.unique(doc[starts]).tolist() if t not in cut]
        if not firsts:
            return None
        top = sorted(firsts, key=lambda t: -float(logp[t]))[:self.first]
        weight = self._weights(batch_id, step)
        windows, places = [], []
        for t in top:
            seen, kept = set(), 0
            at = (starts & (doc == t)).nonzero().flatten().tolist()
            for i in sorted(at, key=lambda i: -float(weight[i])):
                window = doc[i: i + self.max_value_tokens].tolist()
                window = window[: next((k for k, x in enumerate(window) if x in self.ends), len(window))]
                if tuple(window) in seen:
                    continue
                seen.add(tuple(window))
                windows.append(window)
                places.append(i)
                kept += 1
                if kept == self.per_token:
                    break
        # every window after the prefix's cached positions: (R, longest window), padded after each
        rows = torch.full((len(windows), max(map(len, windows))), int(self.ends[0]), dtype=torch.long)
        for r, w in enumerate(windows):
            rows[r, : len(w)] = torch.tensor(w, dtype=torch.long)
        caches = [LayerCache(KeyValues(*(x.expand(len(windows), -1, -1, -1) for x in c.self_attn)), c.cross_attn)
                  for c in step.caches]
        hidden = self._decode(batch_id, rows, caches=caches).hidden
        # row r's log-probabilities: its first token's from the prefix's last position, the others' from the window
        lp = self._logprobs(torch.cat([step.hidden[0, -1:].expand(len(windows), 1, -1), hidden], dim=1))
        candidates = [(i, w, lp[r, : len(w) + 1], word_ends[i:i + len(w)])
                      for r, (w, i) in enumerate(zip(windows, places))]
        choice = choose_value(candidates, top[0], self.stop, cut, self.max_value_tokens, self.whole)
        if choice is None:
            return None
        mask = torch.zeros(len(doc), dtype=torch.bool)
        mask[choice] = True
        return mask

    def _logprobs(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.model.lm_head(hidden) + self.model.final_logits_bias.to(hidden.dtype).reshape(-1)
        return logits.float().log_softmax(-1)

    def _weights(self, batch_id: int, step) -> torch.Tensor:
        """The last layer's cross-attention (heads' mean) at the step on each token of answer_source,
        read from the encoder token that begins at the same place (non-blank bytes); 0 where none does."""
        doc = self._source(batch_id)[0]
        if self.offsets[batch_id] is None:
            return torch.zeros(len(doc))
        weights = self._source_attention(batch_id, step)
        own, solid = self._forms(batch_id)
        if batch_id not in self._own_places:
            self._own_places[batch_id] = torch.tensor(_solid_starts(own), dtype=torch.long)
        places = self._own_places[batch_id]
        size = int(max(int(places.max()), int(solid.max()))) + 1
        by_place = torch.zeros(size).scatter_reduce(0, places, weights.cpu(), reduce="amax")
        return torch.where(solid >= 0, by_place[solid.clamp(min=0)], torch.zeros(()))


def _written_value(window: Sequence[int], logprobs: torch.Tensor, word_ends: Sequence[bool], stop: int,
                   cut: Collection[int], most: int) -> tuple[float, float | None]:
    """The value a constrained greedy decoding writes from the start of `window` (the document's
    tokens from a word start on), token by token the document's next one or the stop token,
    whichever is likelier, ending only where a word ends (`word_ends`, per window token) and
    after at most `most` tokens: (its log-probability with the stop token, the stop token's
    own), from `logprobs` (len(window) + 1, V: the model's log-probabilities at each step,
    teacher-forced on the window); (-inf, None) where the constraint would end the output
    there instead (the document ends, or goes on with an end token, before a word ends)."""
    total, n = float(logprobs[0, window[0]]), 1
    while True:
        may_stop = bool(word_ends[n - 1])
        go_on = n < len(window) and n < most and window[n] not in cut
        if may_stop and (not go_on or float(logprobs[n, stop]) >= float(logprobs[n, window[n]])):
            return total + float(logprobs[n, stop]), float(logprobs[n, stop])
        if not go_on:
            return -math.inf, None
        total += float(logprobs[n, window[n]])
        n += 1


def choose_value(candidates, own: int, stop: int, cut: Collection[int], most: int, whole: float) -> int | None:
    """ValueChooser's choice among `candidates` ((place, window, logprobs, word_ends) each, as
    _written_value reads them): the place where the chosen value begins, or None for none.

    A value is whole where the model gives its stop token at least exp(`whole`): the model would
    end it there. The model's own first token (`own`) is kept where a value it begins is whole
    (the likeliest of those); else the likeliest whole value of any candidate ("Deadline: 10 June
    2030.", where the model's "13" was the "13" of "13 open items"); else the likeliest value
    begun with its own token (the first token the constraint alone would take), preferring one
    that the constraint would not cut off first."""
    scored = []  # (whole, log-probability, place, begins with the model's own token)
    for place, window, logprobs, ends in candidates:
        total, at_stop = _written_value(window, logprobs, ends, stop, cut, most)
        scored.append((at_stop is not None and at_stop >= whole, total, place, window[0] == own))
    pool = ([c for c in scored if c[3] and c[0]] or [c for c in scored if c[0]]
            or [c for c in scored if c[3] and c[1] > -math.inf] or [c for c in scored if c[3]])
    return max(pool, key=lambda c: c[1])[2] if pool else None


def value_chooser(model, tok, encoder_outputs, attention_mask: torch.Tensor | None, input_ids: torch.Tensor,
                  sources: Sequence[Sequence[int]], documents: Sequence[DocumentWords], eos_token_id) -> ValueChooser:
    """The ValueChooser of fact-list summaries (the demo template's "." ends a value) over a batch:
    document_constraint(..., "facts", focus=...) then chooses each value whole."""
    ends = [int(eos_token_id)] if isinstance(eos_token_id, int) else [int(t) for t in eos_token_id]
    return ValueChooser(model, tok, encoder_outputs, attention_mask, input_ids, sources, documents,
                        stop=_fact_tokens(tok)[2], ends=ends)


def _stretch_at(row: Sequence[int], part: Sequence[int]) -> int | None:
    """Where the contiguous stretch `part` begins in `row` (the first place), or None."""
    n = len(part)
    for i in range(len(row) - n + 1):
        if row[i] == part[0] and list(row[i:i + n]) == list(part):
            return i
    return None


def demo_model_note(loaded: LoadedModel, text: str | None) -> str | None:
    """A note for a document the embedded demo model does not know (ledviz.demo.data.looks_like_report:
    no report title or opening of its training reports), or None (another model, no text, a report)."""
    from .demo.data import looks_like_report

    if loaded.source != EMBEDDED or not text or not text.strip() or looks_like_report(text):
        return None
    return ("The embedded demo model was trained on synthetic project, company and expedition reports only, and "
            "this text does not say it is one: its output on it is likely meaningless, even where every word is "
            "copied from the document.")


def demo_question_note(loaded: LoadedModel) -> str | None:
    """For the embedded demo model's question box: the questions it was trained to answer (the key facts of
    its three kinds of report, ledviz.demo.data.SCHEMAS); None for another model. A stranger asked it about
    anything, and read its "not in the document" or an unrelated span as a fault of the app."""
    if loaded.source != EMBEDDED:
        return None
    from .demo.data import SCHEMAS

    kinds = "; ".join(f"{schema.noun} reports: " + ", ".join(slot.label.lower() if slot.label != "CEO" else "CEO"
                                                            for slot in schema.slots)
                      for schema in SCHEMAS.values())
    return ("The embedded demo model answers questions about the key facts of its kinds of report only ("
            f"{kinds}). Any other question gets “not in the document”, or a passage that does not answer it.")


def demo_global_note(loaded: LoadedModel, doc: Document, global_mask: torch.Tensor) -> str | None:
    """For a QA run of the embedded demo model whose global tokens leave out some of the question's: it was
    trained with global attention on the question, and without it the question cannot reach a fact far away
    (exact answers 89% -> 37%, ledviz/demo/model/README.md). None for another model, a run without a question,
    or one with every question token global."""
    question = doc.question_tokens()
    if loaded.source != EMBEDDED or not question or bool(global_mask[0, question].all()):
        return None
    return ("The embedded demo model was trained with global attention on the question tokens: without it the "
            "question reaches only its window of the document, and the model answers far worse (exact answers "
            "fall from 89% to 37% on its validation questions). Choose “the question tokens” to see it answer as "
            "trained; other choices show what changes.")


def demo_summary_global_note(loaded: LoadedModel, global_mask: torch.Tensor | None) -> str | None:
    """For a summary by the embedded demo model with global tokens besides <s> (position 0): it was trained to
    summarize with <s> alone global and to answer with the question's tokens global, so many global tokens read
    to it as a question and it often declines (the corpus study in the README: 30 reports, all 30 summaries
    under sentence starts and 17 under every 32nd token came out "not in the document"). A teacher comparing
    settings should know that this is the demo model's training, not what global attention does to LED. None
    for another model, or a mask with no global token past position 0."""
    if loaded.source != EMBEDDED or global_mask is None or not bool(global_mask[..., 1:].any()):
        return None
    return ("The embedded demo model was trained to summarize with global attention on <s> alone, and to answer "
            "questions with the question's tokens global: more global tokens read to it like a question. In a study "
            "of 30 of its reports its own summary was “not in the document” for all 30 under sentence starts and "
            "for 17 under every 32nd token; kept to the document's values, it states wrong facts instead. That is "
            "this small model's training, not a property of LED: a model trained with such global tokens uses them.")


def fact_labels() -> list[str]:
    """The labels of the embedded model's fact-list summaries, "Label: value." ("Lead", "CEO",
    "Founded", ...: ledviz.demo.data.SCHEMAS), sorted."""
    from .demo.data import SCHEMAS

    return sorted({s.label for schema in SCHEMAS.values() for s in schema.slots})


def document_constraint(tok, sources: list[list[int]], what: str, eos_token_id, bos_token_id: int | None,
                        documents: "list[DocumentWords] | None" = None, focus: "AttentionFocus | None" = None):
    """A prefix_allowed_tokens_fn that keeps outputs to their documents (`sources[b]`: the
    document token ids of input b, as given to the encoder).

    what="answer": span_constraint, each answer a span of its document or exactly the decline
    answer " not in the document" (ledviz.demo.data.NOT_IN_DOCUMENT). what="span": a span only,
    the decline forbidden (the span that ledviz.answering weighs the decline against), and no span
    beginning with the decline's first token (" not"; a span " not approved" is the decline's
    first word chosen for the fact, and then declined). what="facts":
    fact_list_constraint with the labels of the demo template (ledviz.demo.data.SCHEMAS). Both
    copy from the document in any of its forms (document_words: copy_source's spelling, and a
    line's first word as the encoder reads it), whole words only (generation.word_bounds): an answer
    or value starts where a word of the document starts and ends where it ends ("7,500,000",
    never "7,500"; "John Smith", never "Jo"), and does not end inside a run of capitalized words
    ("Rohan Bennett", never "Rohan", where the document goes on with "Bennett"); a line break
    ends a run ("Lead: Rohan Bennett" on one line, "Site: Velmora" on the next). `documents`:
    document_words of the sources, when the caller has them already. `focus` (a generation.Focus
    over the same sources and documents, as answer_source lays them out): for answers an
    AttentionFocus, so that a first token shared by two words continues into the one in the
    sentence the model looks at ("Sa" of "Salma Bui", not of "San Kampala"); for facts a
    ValueChooser (value_chooser), so that each value is chosen whole (generation.span_constraint,
    fact_list_constraint)."""
    if what not in ("answer", "span", "facts"):
        raise InputError(f"document_constraint keeps an 'answer', a 'span' or 'facts' to the document, not {what!r}")
    lead = [bos_token_id] if bos_token_id is not None else []  # LED outputs start with <s> after the decoder start

    documents = documents if documents is not None else [document_words(tok, src) for src in sources]
    # either form: " Manaia" (spaced) or "M" + "an" + "aia" (as the encoder reads it after a line break)
    end = eos_token_id if isinstance(eos_token_id, int) else list(eos_token_id)[0]
    copyable, words = (list(x) for x in zip(*(d.answer_source(int(end)) for d in documents)))
    if what in ("answer", "span"):  # the weighed span never begins with the decline's first token (" not")
        decline = decline_ids(tok)
        return span_constraint(copyable, eos_token_id, lead=lead, words=words, focus=focus,
                               alternatives=[decline] if what == "answer" else [],
                               not_first=decline[:1] if what == "span" else [])
    spaced, first, stop = _fact_tokens(tok)
    return fact_list_constraint(copyable, spaced, first, stop, eos_token_id, lead=lead, words=words, focus=focus)


def _fact_tokens(tok) -> tuple[list[list[int]], list[list[int]], int]:
    """The token ids of the fact-list labels after a fact (" Lead:") and first ("Lead:"), and of
    the "." that ends a value."""
    labels = fact_labels()
    stop = tok(".", add_special_tokens=False)["input_ids"]
    if len(stop) != 1:  # pragma: no cover - a byte-level BPE always has "." as one token
        raise InputError("facts_from_document needs '.' to be one token in this tokenizer")
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    return [ids(f" {x}:") for x in labels], [ids(f"{x}:") for x in labels], stop[0]


def facts_begun_at_names(tok, ids: Sequence[int], document: DocumentWords, lead: int,
                         max_length: int | None = None) -> list[int]:
    """A fact-list summary as generated under document_constraint(..., "facts") (`ids`: the row,
    its first `lead` tokens the decoder start and <s>), with each value that begins inside a run
    of capitalized words of the document begun where the run begins (DocumentWords.run_prefix,
    the start rule of kept answers: "CEO: Sofía Sánchez." -> "CEO: Carmen Sofía Sánchez."), and
    each value copied in the document's own form ("M" + "an" + "aia", a word that begins a line)
    spelled in the spaced form (" Manaia": "CEO: Manaia Holiton.", not "CEO:Manaia Holiton.").
    A row that is no list of "Label: value." facts, or that would grow longer than `max_length`
    tokens, comes back as it is."""
    spaced, first, stop = _fact_tokens(tok)
    row, out, i = list(ids), list(ids[:lead]), lead
    while i < len(row):
        forms = [f for f in (first if i == lead else spaced) if row[i:i + len(f)] == f]
        if not forms:
            out += row[i:]
            break
        label = max(forms, key=len)
        out += label
        i += len(label)
        j = i
        while j < len(row) and row[j] != stop:
            j += 1
        if j == len(row):  # a value not ended (the row stopped): as written
            out += row[i:]
            break
        value = document.spaced_form(tok, row[i:j])
        out += document.run_prefix(value) + value + [stop]
        i = j + 1
    return row if max_length is not None and len(out) > max_length else out


def _document_source(loaded: LoadedModel, doc: Document, generation: dict, name: str, both: bool = False):
    """(document token ids, eos) for run's answer_from_document / facts_from_document, checked."""
    model = loaded.model
    if both:
        raise InputError("answer_from_document is for answers, facts_from_document for summaries: set one of them")
    if "prefix_allowed_tokens_fn" in generation:
        raise InputError(f"{name} sets prefix_allowed_tokens_fn: give one or the other")
    source = doc.input_ids[0, doc.document_tokens()].tolist()
    if not source:
        raise InputError(f"{name} needs document tokens, and the document is empty")
    eos = _eos(model, generation)
    if eos is None:
        raise InputError(f"{name} needs an end-of-sequence token: this model has no eos_token_id")
    return source, eos


def _eos(model, generation: dict):
    """The end-of-sequence token(s) generation stops at: the run's, the model's generation config's, or its config's."""
    return generation.get("eos_token_id", model.generation_config.get("eos_token_id", model.config.eos_token_id))


def score_tokens(logits: torch.Tensor, ids: torch.Tensor) -> list[float]:
    """log p(y_t | y_<t) of each token after the first: `logits` (1, T - 1, V) from a teacher-forced pass over
    ids[:, :-1], `ids` (1, T). The one place the app and the lab score an output."""
    logp = logits.float().log_softmax(-1)[0]  # (T - 1, V)
    return logp.gather(-1, ids[0, 1:, None]).squeeze(-1).tolist()


@torch.inference_mode()
def run(
    loaded: LoadedModel,
    doc: Document,
    global_mask: torch.Tensor | None = None,
    *,
    task: str = "summarize",
    max_new_tokens: int = 64,
    num_beams: int = 1,
    on_token: Callable[[int, str], Any] | None = None,
    stop_event: threading.Event | None = None,
    attention_dtype: torch.dtype = torch.float16,
    attention_layers: Sequence[int] | None = None,
    progress: Callable[[str, float], None] | None = None,
    answer_from_document: bool = False,
    facts_from_document: bool = False,
    precision: str = "float32",
    **generation: Any,
) -> RunResult:
    """Encode once (keeping every layer's attention, reduced as it comes), generate, then one
    teacher-forced pass for the decoder and cross attentions of the output.

    `answer_from_document=True` constrains generation to a span of the document's tokens
    (generation.span_constraint): for question answering, an answer that is always found,
    token for token, in the document; the model still picks the span. The exact answer
    " not in the document" (ledviz.demo.data.NOT_IN_DOCUMENT, how the embedded model declines a
    question its document does not answer) is allowed too.

    `facts_from_document=True` does the same for summaries written as a list of facts,
    "Label: value." (the embedded model's template, labels from ledviz.demo.data.SCHEMAS):
    generation.fact_list_constraint keeps every value to a span of the document and every
    label to one use, so no value is made up and nothing repeats.

    `on_token(token_id, text)` is called for every generated token with the text it adds to the
    output, in whole characters ("" for a special token, or for a token that ends inside a
    character, whose text comes with the next one).

    `attention_dtype` and `attention_layers` (encoder layer indices; None = all) choose what is
    kept of the encoder's attention: see ledviz.memory.estimate_run for what each costs.

    `precision` "bfloat16" runs the model in bfloat16 (ledviz.device: several times faster on a
    long document where the CPU has AVX-512 BF16 or AMX; attention probabilities within about
    1e-2); on a CPU without it the run uses float32 and says so in settings["precision_note"]."""
    used_precision, precision_note = device.choose_precision(precision)
    model, tok = loaded.model_in(used_precision), loaded.tokenizer
    timings: dict[str, float] = {}
    rss0 = peak_rss_mb()
    gm = global_mask if global_mask is not None else global_attention_mask(
        doc, "first" if task == "summarize" else "question")
    if gm.shape != doc.input_ids.shape:
        raise InputError(f"the global-attention mask has shape {tuple(gm.shape)}, the document "
                         f"{tuple(doc.input_ids.shape)}")

    # encoder, once; its attentions go to a store layer by layer
    if progress:
        progress("encoding the document", 0.05)
    if attention_layers is not None:
        n_layers = model.config.encoder_layers
        attention_layers = sorted({int(i) for i in attention_layers})
        bad = [i for i in attention_layers if not 0 <= i < n_layers]
        if bad or not attention_layers:
            raise InputError(f"attention_layers must name encoder layers 0 to {n_layers - 1}, got {bad or 'none'}")
    store = AttentionStore(gm, doc.attention_mask, layers=attention_layers, dtype=attention_dtype, stats=True)
    t = time.perf_counter()
    # the encoder writes the kept probabilities in attention_dtype itself: no second copy to convert
    enc = model.get_encoder()(doc.input_ids, attention_mask=doc.attention_mask, global_attention_mask=gm,
                              attention_sink=store, attention_layers=attention_layers, attention_dtype=attention_dtype)
    timings["encode_s"] = time.perf_counter() - t

    # generation, streaming tokens to the caller
    if progress:
        progress("generating", 0.3)
    generated: list[int] = []
    text_stream = TextStream(tok)

    def streamer(step: int, token_ids: torch.Tensor) -> bool:
        token = int(token_ids.reshape(-1)[0])
        generated.append(token)
        if on_token is not None:
            on_token(token, text_stream.add(token))
        if progress:
            progress("generating", 0.3 + 0.6 * min(1.0, len(generated) / max(1, max_new_tokens)))
        return not (stop_event is not None and stop_event.is_set())

    answer = None
    if answer_from_document or facts_from_document:
        source, eos = _document_source(
            loaded, doc, generation, "answer_from_document" if answer_from_document else "facts_from_document",
            both=answer_from_document and facts_from_document)
        if facts_from_document:  # each value chosen whole (value_chooser), kept to the document
            words = document_words(tok, source)
            chooser = value_chooser(model, tok, enc, doc.attention_mask, doc.input_ids, [source], [words], eos)
            generation["prefix_allowed_tokens_fn"] = document_constraint(tok, [source], "facts", eos,
                                                                         model.config.bos_token_id, [words],
                                                                         focus=chooser)
    t = time.perf_counter()
    decoding = dict(attention_mask=doc.attention_mask, encoder_outputs=enc, max_new_tokens=max_new_tokens,
                    num_beams=num_beams, streamer=streamer if num_beams == 1 else None, stop_event=stop_event,
                    **generation)
    if answer_from_document:  # a span or the decline, chosen by the model's decline rule (ledviz.answering)
        from .answering import kept_answers

        answer = kept_answers(model, tok, [source], input_ids=doc.input_ids, **decoding)[0]
        out_ids = torch.tensor([answer.ids])
    else:
        out_ids = model.generate(doc.input_ids, global_attention_mask=gm, **decoding)
        if facts_from_document:  # each value begun where its name begins (the start rule)
            out_ids = torch.tensor([facts_begun_at_names(tok, out_ids[0].tolist(), words,
                                                         1 + (model.config.bos_token_id is not None),
                                                         model.config.max_decoder_position_embeddings)])
    timings["generate_s"] = time.perf_counter() - t
    seq = out_ids[0]
    written = seq != model.config.pad_token_id
    seq = seq[: int(written.nonzero().max()) + 1] if written.any() else seq
    seq = seq.unsqueeze(0)

    # one teacher-forced pass: decoder and cross attentions, and the log-likelihood of the output
    if progress:
        progress("tracing the output back to the source", 0.92)
    t = time.perf_counter()
    tf = model(attention_mask=doc.attention_mask, encoder_outputs=enc, decoder_input_ids=seq[:, :-1],
               output_attentions=True, use_cache=False) if seq.shape[1] > 1 else None
    if tf is not None:
        token_logprobs = score_tokens(tf.logits, seq)
        cross = tuple(a[0].to(attention_dtype) for a in tf.cross_attentions)
        dec = tuple(a[0].to(attention_dtype) for a in tf.decoder_attentions)
    else:
        token_logprobs, cross, dec = [], (), ()
    timings["trace_s"] = time.perf_counter() - t
    timings["total_s"] = sum(timings.values())

    ids = seq[0].tolist()
    text = shown_text(tok, ids, skip_special_tokens=True).strip()
    stopped = bool(stop_event is not None and stop_event.is_set())
    eos = _eos(model, generation)
    ends = {eos} if isinstance(eos, int) else set(eos or ())
    result = RunResult(
        document=doc, global_mask=gm, task=task, output_ids=ids,
        output_tokens=tok.convert_ids_to_tokens(ids), output_text=text,
        layers=dict(store.run.layers), head_stats=dict(store.run.stats), cross_attentions=cross,
        decoder_attentions=dec, token_logprobs=token_logprobs, timings=timings,
        memory={"peak_rss_mb": peak_rss_mb(), "rss_growth_mb": max(0.0, peak_rss_mb() - rss0)},
        stopped_early=stopped, answer=answer, ended=len(ids) > 1 and ids[-1] in ends,
        settings=dict(task=task, max_new_tokens=max_new_tokens, num_beams=num_beams,
                      global_positions=gm[0].nonzero().flatten().tolist(), model=loaded.name,
                      answer_from_document=answer_from_document, facts_from_document=facts_from_document,
                      attention_dtype=str(attention_dtype).replace("torch.", ""),
                      attention_layers=attention_layers, precision=used_precision,
                      **({"precision_note": precision_note} if precision_note else {}),
                      **{k: v for k, v in generation.items() if k != "prefix_allowed_tokens_fn"}),
    )
    result.memory["attention_mb"] = result.attention_bytes / 2**20
    if progress:
        progress("done", 1.0)
    return result
