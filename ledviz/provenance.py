"""Where an output came from: the output token by token, the passages (sentences) of the document
that hold the most of some attention, where an answer's text occurs in the document, and where
the question tokens looked. Library code: no Streamlit here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from . import analysis
from .pipeline import Document, RunResult, fact_labels
from .tokenization import shown_pieces

Passage = tuple[tuple[int, int], float, str]  # (character span, share of the attention, text)


def output_pieces(result: RunResult, tokenizer=None) -> list[str]:
    """The generated tokens (after the decoder start token) as text pieces (with `tokenizer` when
    given, in whole characters: a character split over tokens is the piece of the token that
    completes it, the others "" (tokenization.shown_pieces); else the run's token strings)."""
    ids = result.output_ids[1:]
    if tokenizer is not None:
        return shown_pieces(tokenizer, ids)
    return list(result.output_tokens[1:])


def output_steps(result: RunResult, special_ids: Sequence[int] = ()) -> list[int]:
    """The output positions k (from 1) of the generated tokens that are not special tokens."""
    special = set(special_ids)
    return [k for k, t in enumerate(result.output_ids[1:], start=1) if t not in special]


def sentence_groups(doc: Document) -> analysis.TokenGroups:
    """The document's sentences as groups of its tokens (question and special tokens in none)."""
    offsets = [s if s is not None else (0, 0) for s in doc.text_spans()]
    return analysis.token_groups(doc.text, offsets, "sentence", special="drop")


def top_passages(groups: analysis.TokenGroups, weights, k: int = 3) -> list[Passage]:
    """The k groups (e.g. sentences) holding the most of `weights` (N,), largest first, each with its
    share of the weight the groups hold; groups holding nothing are left out."""
    if groups.num_groups == 0:
        return []
    idx = groups.index
    keep = idx >= 0
    w = torch.as_tensor(np.asarray(weights), dtype=torch.float32)
    mass = torch.zeros(groups.num_groups).index_add_(0, idx[keep], w[keep])
    total = float(mass.sum()) or 1.0
    order = torch.argsort(mass, descending=True)[:k].tolist()
    return [(groups.spans[g], float(mass[g]) / total, groups.labels[g]) for g in order if mass[g] > 0]


def answer_spans(text: str, answer: str) -> list[tuple[int, int]]:
    """Where the answer occurs in the text: case-insensitive, any whitespace between its words, a
    final full stop of the answer ignored."""
    words = answer.strip().rstrip(".").split()
    if not words:
        return []
    pattern = r"\s+".join(re.escape(w) for w in words)
    return [m.span() for m in re.finditer(pattern, text, flags=re.IGNORECASE)]


@dataclass
class AnswerSource:
    """Where an answer came from: the mean cross-attention of its tokens over the input (N,), the
    passages holding most of it, where the answer's text occurs, and what the first occurrence is."""

    weights: np.ndarray
    passages: list[Passage]
    matches: list[tuple[int, int]] = field(default_factory=list)
    match_tokens: tuple[int, int] | None = None  # first and last token of the first match, if the model read it
    in_top_passage: bool = False  # the first match starts in the passage with the most attention


def declined(result: RunResult) -> bool:
    """Whether a question-answering run's answer is the decline, "not in the document" (how the
    embedded model says its document does not answer the question; span-kept answers allow it),
    matched as the demo evaluation counts a decline (data.exact_match), so the page and the
    model card agree on what a decline is."""
    from .demo.data import NOT_IN_DOCUMENT, exact_match

    return result.task == "qa" and bool(exact_match(result.output_text, NOT_IN_DOCUMENT))


def answer_source(result: RunResult, cross: np.ndarray, special_ids: Sequence[int] = (),
                  groups: analysis.TokenGroups | None = None, k: int = 3) -> AnswerSource | None:
    """The provenance of a run's answer from its cross-attention map `cross` (T, N); None when the
    answer has no tokens other than special ones."""
    steps = [s - 1 for s in output_steps(result, special_ids)]
    if not steps:
        return None
    doc = result.document
    weights = cross[steps].mean(0)
    top = top_passages(groups if groups is not None else sentence_groups(doc), weights, k)
    matches = answer_spans(doc.text, result.output_text)
    source = AnswerSource(weights, top, matches)
    if matches:
        s, e = matches[0]
        inside = [i for i, sp in enumerate(doc.text_spans()) if sp is not None and sp[0] < e and sp[1] > s]
        source.match_tokens = (inside[0], inside[-1]) if inside else None
        source.in_top_passage = bool(top) and top[0][0][0] <= s < top[0][0][1]
    return source


def question_attention(result: RunResult, rows: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    """Where the question tokens looked, from their attention rows (one (N,) row per question token):
    the mean row with everything outside the document text set to 0, and the share (0 to 1) of the
    rows' total that lands on the document. For attention rows averaged over heads and layers (each
    sums to 1) that is the share of the question tokens' attention; rows combined by max do not sum
    to 1, so pass mean rows for a share."""
    weights = np.mean(np.asarray(rows, dtype=np.float32), axis=0)
    on_doc = np.where(result.document.in_document(), weights, np.float32(0.0))
    total = float(weights.sum())
    return on_doc, float(on_doc.sum()) / total if total > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# faithfulness: words and numbers of an output that the document does not contain
# ---------------------------------------------------------------------------------------------

STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing down during each either few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just may me might more most must my myself
neither no nor not of off on once only or other our ours ourselves out over own per same shall she should so some
such than that the their theirs them themselves then there these they this those through to too under until up
upon us very was we were what when where which while who whom whose why will with would yet you your yours
yourself yourselves
""".split())

_NUMBER = r"\d+(?:[,\u202f\u00a0]\d{3})*(?:\.\d+)?"  # 4,312 / 4\u202f312 / 3.5 / 2034
_TOKEN = re.compile(rf"(?P<number>{_NUMBER})|(?P<word>[^\W\d_]+(?:['’\-][^\W\d_]+)*)")


@dataclass(frozen=True)
class Unsupported:
    """A word or number of an output that does not occur in the document: its character span in the
    output, its text, and its kind ('word' or 'number')."""

    start: int
    end: int
    text: str
    kind: str


def _fold(word: str) -> str:
    """A word for matching: case-folded, accents removed, a possessive 's dropped."""
    import unicodedata

    word = unicodedata.normalize("NFKD", word.casefold())
    word = "".join(ch for ch in word if not unicodedata.combining(ch)).replace("’", "'")
    return word[:-2] if word.endswith("'s") else word


def _digits(number: str) -> str:
    """A number as written, its thousands separators (comma, no-break and narrow spaces) dropped."""
    return re.sub(r"[,\u202f\u00a0]", "", number)


def _number_value(text: str) -> float:
    """A number's value with its thousands separators ignored."""
    return float(_digits(text))


def _variants(word: str) -> set[str]:
    """A folded word and its singular/plural neighbour ('fact' ~ 'facts', 'city' ~ 'cities')."""
    out = {word}
    if word.endswith("ies") and len(word) > 4:
        out.add(word[:-3] + "y")
    elif word.endswith("es") and len(word) > 3:
        out |= {word[:-2], word[:-1]}
    elif word.endswith("s") and len(word) > 3:
        out.add(word[:-1])
    out.add(word + "s")
    return out


def label_spans(output: str, labels: Sequence[str]) -> list[tuple[int, int]]:
    """Character spans of the fact-list labels of `output` ("Lead: Maren Okafor. Budget: 4,312."):
    one of `labels`, written exactly, at the start of the output or of a sentence, and followed by
    a colon. The same word elsewhere ("the Lead", "Lead was") is not a label."""
    if not labels:
        return []
    names = "|".join(re.escape(x) for x in sorted(labels, key=len, reverse=True))
    return [m.span(1) for m in re.finditer(rf"(?:^|(?<=[.!?\n]))\s*({names})\s*:", output)]


def unsupported_words(output: str, document: str, stopwords: frozenset[str] = STOPWORDS,
                      labels: Sequence[str] | None = None, open_end: bool = False) -> list[Unsupported]:
    """The words and numbers of `output` (a summary, a free answer) that do not occur in `document`.

    Words match case-insensitively, without accents, ignoring a possessive 's and singular/plural
    ('facts' is supported by 'fact'); stopwords (STOPWORDS) are never flagged. Numbers match by
    value, so '4312', '4,312' and '4\u202f312' are one number, and '14' is not supported by '140' or by
    '14,000'. Hyphenated words match as a whole or by their parts.

    The labels of a fact list ("CEO: ..., Founded: ...") are its format, not claims about the
    document: a word of `labels` (default: the embedded model's, pipeline.fact_labels()) in a
    label's place (`label_spans`) is never flagged; the same word anywhere else is checked.

    open_end=True: the output stopped before it ended (a cancel, the token limit), so its last
    word or number, where nothing follows it, may be cut short ("Isri" of "Isrius"): it is checked
    as the start of a document word or number (`open_last_word`)."""
    labels = fact_labels() if labels is None else labels
    exempt = label_spans(output, labels)
    doc_words: set[str] = set()
    doc_numbers: set[float] = set()
    doc_digits: set[str] = set()  # numbers as written, separators dropped: what a cut number may begin
    for m in _TOKEN.finditer(document):
        if m.group("number"):
            doc_numbers.add(_number_value(m.group("number")))
            doc_digits.add(_digits(m.group("number")))
        else:
            word = _fold(m.group("word"))
            doc_words.add(word)
            doc_words.update(re.split(r"['\-]", word))
    marks = []
    for m in _TOKEN.finditer(output):
        if open_end and m.end() == len(output):  # the last word, perhaps cut: does a document word begin so?
            cut = _digits(m.group()) if m.group("number") else _fold(m.group())
            # a label cut before its colon ("... Destination"), in a label's place, is the format too
            at_label = not output[:m.start()].strip() or output[:m.start()].rstrip()[-1] in ".!?\n"
            known = doc_digits if m.group("number") else doc_words | ({_fold(x) for x in labels} if at_label else set())
            if not any(w.startswith(cut) for w in known):
                marks.append(Unsupported(m.start(), m.end(), m.group(), "number" if m.group("number") else "word"))
            continue
        if m.group("number"):
            if _number_value(m.group("number")) not in doc_numbers:
                marks.append(Unsupported(m.start(), m.end(), m.group(), "number"))
            continue
        word = _fold(m.group("word"))
        if word in stopwords or len(word) < 2 or any(a <= m.start() and m.end() <= b for a, b in exempt):
            continue
        parts = [p for p in re.split(r"['\-]", word) if p and p not in stopwords]
        if _variants(word) & doc_words or (len(parts) > 1 and all(_variants(p) & doc_words for p in parts)):
            continue
        marks.append(Unsupported(m.start(), m.end(), m.group(), "word"))
    return marks


def run_unsupported_words(result: RunResult) -> list[Unsupported]:
    """`unsupported_words` of a run's output against the part of its document the model read (a
    word only in the cut-off part was not there for the model). Computed once per run (every
    redraw of a page shows it; a 100,000-character document takes tens of milliseconds)."""
    doc = result.document
    key = ("unsupported_words", result.output_text, doc.kept_chars, result.ended)
    if key not in result.derived:
        result.derived[key] = unsupported_words(result.output_text, doc.text[: doc.kept_chars or len(doc.text)],
                                                open_end=not result.ended)
    return result.derived[key]


def distinct_marks(marks: Sequence[Unsupported]) -> list[tuple[str, int]]:
    """The marked words as a list names them: each text once, in the order of its first mark, with how many times
    it is marked ("Not in the document: “Revenue”, “Revenue”" read as two different words)."""
    seen: dict[str, int] = {}
    for mark in marks:
        seen[mark.text] = seen.get(mark.text, 0) + 1
    return list(seen.items())


def open_last_word(result: RunResult) -> str | None:
    """The output's last word (or number) where the run stopped before it ended (cancelled, or at
    its token limit) and nothing follows the word, so that it may be cut short ("Isri" of
    "Isrius"); None otherwise. run_unsupported_words checks it as the start of a word."""
    text = result.output_text
    last = None if result.ended else next(reversed(list(_TOKEN.finditer(text))), None)
    return last.group() if last is not None and last.end() == len(text) else None


def piece_spans(text: str, pieces: Sequence[str]) -> list[tuple[int, int] | None]:
    """Where each output piece (a token's text, from `output_pieces`) lies in the decoded output
    `text`: (start, end), or None for a piece not found in order (special tokens, blanks)."""
    spans: list[tuple[int, int] | None] = []
    pos = 0
    for piece in pieces:
        core = piece.strip()
        at = text.find(core, pos) if core else -1
        if at < 0 or text[pos:at].strip():  # not next in the text (a special token's text, ...)
            spans.append(None)
            continue
        spans.append((at, at + len(core)))
        pos = at + len(core)
    return spans


def flagged_steps(text: str, pieces: Sequence[str], marks: Sequence[Unsupported]) -> dict[int, str]:
    """The output steps k (from 1, as in `output_steps`) whose token is part of an unsupported word
    or number, each with that word: so the app can show where the model looked while writing it."""
    out = {}
    for k, span in enumerate(piece_spans(text, pieces), start=1):
        if span is None:
            continue
        for mark in marks:
            if span[0] < mark.end and mark.start < span[1]:
                out[k] = mark.text
                break
    return out
