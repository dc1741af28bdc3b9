"""Reading a user's question before the model sees it: a shouted question re-cased to sentence
case, and letter slips ("projcet") mended, from what the document and the model's tokenizer
know. No Streamlit and no model here; pipeline.read_question applies it for the app and
ledviz.demo.evaluate alike.

The two word lists it trusts:

* the document's words, with the casing the document gives them inside its sentences ("Rohan",
  "CEO", "budget");
* the tokenizer's whole-word tokens: a byte-level BPE token that stands for a space and letters
  (" budget"), i.e. a word the tokenizer learned whole. Nothing else: no hand-made word list.

A word is mended only when it is in neither list, has at least MIN_SLIP_LETTERS letters, the
tokenizer splits it into at least MIN_SLIP_PIECES pieces (a real word a small vocabulary lacks
mostly takes two: "state" is "st" "ate"; a slip mostly more: "projcet" is "pro" "j" "c" "et"), and
exactly one best known word is one slip away: an inner letter dropped or typed twice, two letters
swapped, or an inner letter hit on a neighbouring key; the first letter is never the slip. Only where
none is, a missed last letter ("revenu", "executiv") in a word of at least MIN_LAST_LETTER_LETTERS letters,
towards a word of the document alone, and never an s, d, r or y ("name" is not read as "named"). A word of the document
is the best; a word only the tokenizer knows is taken only for a word of at least MIN_VOCAB_PIECES
pieces ("funding", three pieces, is not read as "founding"). A capitalized word in the middle of a
question that is not shouted is taken for a name: it is mended only towards a word of the
document ("Lisa" stays "Lisa").

Two narrower readings reach words that rule leaves alone, each only towards a word of the document:

* a three-letter word in neither list whose last two letters, swapped back, give a word that makes
  up at least MIN_SHORT_SHARE of the document's words ("teh" -> "the", "adn" -> "and"): a common
  word typed fast, never a rare one (nor a capitalized word taken for a name);
* a word of at least MIN_SLIP_LETTERS letters in neither list that the tokenizer splits into two
  pieces ("leed": "le" "ed") is read as a word of the document one length-keeping slip away (two
  letters swapped, a neighbouring key, a vowel for another vowel) when that word and a neighbouring
  word of the question, as read, stand side by side in the document, and exactly one such word does
  ("projct leed" -> "project lead", the document writing "project lead"). Its risk: a real word
  the tokenizer splits in two, next to the right neighbour, can be read as its document look-alike
  ("later state" -> "later stage" in a document that writes "later stage").
"""

from __future__ import annotations

import re
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable

from .sentences import Sentences

MIN_SLIP_LETTERS = 4  # shorter words are left alone: one edit turns too many of them into others
MIN_SLIP_PIECES = 3  # a word the tokenizer splits into fewer pieces is left alone
MIN_VOCAB_PIECES = 4  # ... and one of fewer is mended only towards a word of the document
MIN_LAST_LETTER_LETTERS = 5  # a missed last letter is read only in words at least this long
_MISSED_LAST = "abcefghijklmnopqtuvwxz"  # the letters a missed last one may be: not s, d, r, y (endings of words)
MIN_SHORT_SHARE = 0.005  # a 3-letter slip is mended only towards a word at least this share of the document's words
SHOUTED_SHARE = 0.8  # a question whose cased letters are at least this share upper case is shouted
MIN_SHOUTED_LETTERS = 4

_WORD = re.compile(r"[^\W\d_]+")  # a run of letters (any script)


@dataclass(frozen=True)
class Change:
    """One thing read differently: kind "case" (the whole question re-cased; before/after are the
    question) or "spelling" (one word; before/after are the word)."""

    kind: str
    before: str
    after: str

    def describe(self) -> str:
        if self.kind == "case":
            return "written in capitals: read in sentence case, words of the document as it writes them"
        return f"“{self.before}” read as “{self.after}”"


@dataclass(frozen=True)
class ReadQuestion:
    """A question as typed (`asked`), as read (`text`, what the model is given), and what changed."""

    asked: str
    text: str
    changes: tuple[Change, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def describe(self) -> str:
        """The changes in words, joined ("" when nothing changed)."""
        return "; ".join(c.describe() for c in self.changes)


class Vocabulary:
    """The words a tokenizer knows whole, lower-cased -> the casings it knows them in; `pieces(word)`
    counts the tokens the tokenizer splits " word" into (None: not counted, any word may be mended)."""

    def __init__(self, words: Iterable[str], pieces: Callable[[str], int] | None = None):
        self.casings: dict[str, set[str]] = {}
        for w in words:
            self.casings.setdefault(w.lower(), set()).add(w)
        keys = sorted(self.casings)
        # a word that begins a longer known word ("cont" of "contract") may be only a piece of words
        self.prefixes = frozenset(a for a, b in zip(keys, keys[1:]) if b.startswith(a))
        self.pieces = pieces

    def whole(self, word: str) -> bool:
        """`word` is a known word that is not also the beginning of a longer one."""
        return word in self.casings and word not in self.prefixes

    def __contains__(self, word: str) -> bool:
        return word.lower() in self.casings

    def __len__(self) -> int:
        return len(self.casings)

    @classmethod
    def from_tokens(cls, tokens: Iterable[bytes], pieces: Callable[[str], int] | None = None) -> "Vocabulary":
        """From the byte strings of a byte-level BPE's tokens: those that are one space and letters."""
        words = []
        for b in tokens:
            if len(b) > 1 and b[:1] == b" ":
                try:
                    w = b[1:].decode("utf-8")
                except UnicodeDecodeError:
                    continue
                if _WORD.fullmatch(w):
                    words.append(w)
        return cls(words, pieces)


_VOCABULARIES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def tokenizer_vocabulary(tokenizer) -> Vocabulary:
    """The whole-word Vocabulary of a byte-level BPE tokenizer (LEDTokenizerFast and the like), built
    once per tokenizer object. A tokenizer whose tokens are not byte-level text gives few or no words,
    and then only the document's words are trusted."""
    try:
        return _VOCABULARIES[tokenizer]
    except (KeyError, TypeError):
        pass
    from .tokenization import token_bytes

    ref = weakref.ref(tokenizer)  # the cached vocabulary must not keep its tokenizer alive

    def pieces(word: str) -> int:
        return len(ref()(" " + word, add_special_tokens=False)["input_ids"])

    vocab = Vocabulary.from_tokens((token_bytes(t) for t in tokenizer.get_vocab()), pieces)
    try:
        _VOCABULARIES[tokenizer] = vocab
    except TypeError:  # pragma: no cover - an object that takes no weak reference: rebuilt each time
        pass
    return vocab


class DocumentWords:
    """The words of a document, lower-cased -> how the document writes them inside its sentences
    (a name keeps its capital, "CEO" its capitals; a sentence's first word, by ledviz.sentences, and
    the words of a title line, "Annual Report", say nothing of a word's casing), and which words it
    has at all."""

    def __init__(self, text: str):
        inside: dict[str, Counter] = {}
        anywhere: dict[str, Counter] = {}
        self.all: set[str] = set()
        self.counts: Counter = Counter()  # lower-cased word -> how often the document has it
        self.pairs: set[tuple[str, str]] = set()  # two words side by side, only blanks between them
        text = text or ""
        sentences = Sentences(text)
        at = 0
        for line in text.split("\n"):
            words = list(_WORD.finditer(line))
            long = [m.group() for m in words if len(m.group()) >= MIN_SLIP_LETTERS]
            title = bool(long) and all(w[0].isupper() for w in long)
            for m, after in zip(words, words[1:]):
                if not line[m.end():after.start()].strip():
                    self.pairs.add((m.group().lower(), after.group().lower()))
            for m in words:
                w = m.group()
                self.all.add(w.lower())
                self.counts[w.lower()] += 1
                anywhere.setdefault(w.lower(), Counter())[w] += 1
                if not title and not sentences.begins(at + m.start()):
                    inside.setdefault(w.lower(), Counter())[w] += 1
            at += len(line) + 1
        self.casing = {k: _document_form(c) for k, c in inside.items()}
        self.any_casing = {k: _document_form(c) for k, c in anywhere.items()}
        self.total = sum(self.counts.values())

    def share(self, word: str) -> float:
        """The share of the document's words that are `word` (lower case)."""
        return self.counts[word] / self.total if self.total else 0.0

    def __contains__(self, word: str) -> bool:
        return word.lower() in self.all


def _document_form(forms: Counter) -> str:
    """The casing a document gives a word: lower case if it ever writes it so, else its most
    frequent form."""
    lower = [f for f in forms if f.islower()]
    return lower[0] if lower else forms.most_common(1)[0][0]


def is_shouted(question: str) -> bool:
    """All or nearly all of the question's letters are capitals (at least MIN_SHOUTED_LETTERS letters)."""
    cased = [c for c in question if c.isupper() or c.islower()]
    return len(cased) >= MIN_SHOUTED_LETTERS and sum(c.isupper() for c in cased) / len(cased) >= SHOUTED_SHARE


def _casing_of(word: str, doc: DocumentWords, vocab: Vocabulary) -> str:
    """How to write a word read out of a shouted question: as the document writes it inside its
    sentences; else in lower case if the tokenizer knows it so; else as the document writes it
    anywhere (a name only its title has); else in capitals if the tokenizer knows it only so (an
    acronym, "CEO"); else in lower case."""
    key = word.lower()
    if key in doc.casing:
        return doc.casing[key]
    known = vocab.casings.get(key, ())
    if key in known:
        return key
    if key in doc.any_casing:
        return doc.any_casing[key]
    return key.upper() if key.upper() in known and len(key) > 1 else key


def recase(question: str, doc: DocumentWords, vocab: Vocabulary) -> str:
    """Sentence case: every word as the document (or the tokenizer) writes it, the first word
    with a capital."""
    first = True

    def one(m: re.Match) -> str:
        nonlocal first
        w = _casing_of(m.group(), doc, vocab)
        if first:
            first = False
            if w.islower():
                w = w[0].upper() + w[1:]
        return w

    return _WORD.sub(one, question)


_KEY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_KEY_AT = {c: (r, i) for r, row in enumerate(_KEY_ROWS) for i, c in enumerate(row)}


def _keys_next_to(c: str) -> str:
    r, i = _KEY_AT[c]
    return "".join(o for o, (r2, i2) in _KEY_AT.items() if o != c and abs(r2 - r) <= 1 and -1 <= i2 - i + (r2 - r) * 0.5 <= 1)


_NEIGHBOURS = {c: _keys_next_to(c) for c in _KEY_AT}  # made once: _slips_of asks for every inner letter


def _neighbour_keys(c: str) -> str:
    """The letters next to `c` on a QWERTY keyboard (same row, or the row above or below, one step
    either side); a letter off the keyboard (é, ß, ...) has none."""
    return _NEIGHBOURS.get(c, "")


def _slips_of(word: str) -> set[str]:
    """Every word that `word` (lower case) could be one slip away from, its first letter kept and
    its last one still there (people rarely miss those): an inner letter typed too often taken
    out, a missed one put back, a letter swapped with the next one swapped back, or an inner
    letter that hit a neighbouring key changed back."""
    inner = range(1, len(word) - 1)
    out = {word[:i] + word[i + 1:] for i in inner}  # a letter typed once too often
    out |= {word[:i] + word[i + 1] + word[i] + word[i + 2:] for i in inner}  # swapped with the next
    for i in range(1, len(word)):  # a letter missed between word[i - 1] and word[i]
        out |= {word[:i] + c + word[i:] for c in "abcdefghijklmnopqrstuvwxyz"}
    for i in inner:  # a neighbouring key hit instead
        out |= {word[:i] + c + word[i + 1:] for c in _neighbour_keys(word[i])}
    out.discard(word)
    return out


def mend(word: str, doc: DocumentWords, vocab: Vocabulary, *, name_like: bool) -> str | None:
    """The known word a slipped `word` stands for, or None: `word` is in neither list, has at least
    MIN_SLIP_LETTERS letters, and exactly one best known word is one edit away (document words
    first; for a name-like word only document words). Written in `word`'s casing, or the
    document's for a name."""
    key = word.lower()
    if len(word) < MIN_SLIP_LETTERS or key in doc or key in vocab:
        return None
    pieces = vocab.pieces(word) if vocab.pieces is not None else None  # a tokenizer call: once
    if pieces is not None and pieces < MIN_SLIP_PIECES:
        return None
    near = {w for w in _slips_of(key) if len(w) >= MIN_SLIP_LETTERS}
    pool = sorted(w for w in near if w in doc.all)
    if not pool and not name_like and (pieces is None or pieces >= MIN_VOCAB_PIECES):
        pool = sorted(w for w in near if vocab.whole(w))
    if not pool and len(key) >= MIN_LAST_LETTER_LETTERS:
        # none of those: the last letter missed ("revenu", "executiv"), towards a word of the document only, and
        # not an ending that makes another word of a whole one ("name" -> "named", "plan" -> "plans")
        pool = sorted(w for w in (key + c for c in _MISSED_LAST) if w in doc.all)
    if len(pool) != 1:
        return None
    return _written(pool[0], word, doc)


def _written(best: str, word: str, doc: DocumentWords) -> str:
    """The known word `best` (lower case) written for the typed `word`: a name or acronym as the
    document writes it, else in `word`'s casing."""
    form = doc.casing.get(best, best)
    if not form.islower():  # a name or acronym: as the document writes it
        return form
    if word[:1].isupper():
        return best[0].upper() + best[1:] if word[1:].islower() or len(word) == 1 else best.upper()
    return best


def mend_short(word: str, doc: DocumentWords, vocab: Vocabulary) -> str | None:
    """The common word a three-letter `word` stands for with its last two letters swapped ("teh"
    for "the"), or None: `word` is in neither list and the swapped word makes up at least
    MIN_SHORT_SHARE of the document's words."""
    key = word.lower()
    if len(key) != 3 or key in doc or key in vocab:
        return None
    best = key[0] + key[2] + key[1]
    if doc.share(best) < MIN_SHORT_SHARE:
        return None
    return _written(best, word, doc)


_VOWELS = "aeiou"


def _kept_length_slips_of(word: str) -> set[str]:
    """The words `word` (lower case) could be one length-keeping slip away from, its first letter
    kept: two letters after it swapped, an inner letter hit on a neighbouring key, or an inner
    vowel typed as another."""
    inner = range(1, len(word) - 1)
    out = {word[:i] + word[i + 1] + word[i] + word[i + 2:] for i in inner}
    for i in inner:
        c = word[i]
        others = _neighbour_keys(c) + (_VOWELS.replace(c, "") if c in _VOWELS else "")
        out |= {word[:i] + o + word[i + 1:] for o in others}
    out.discard(word)
    return out


def mend_in_phrase(word: str, before: str | None, after: str | None, doc: DocumentWords,
                   vocab: Vocabulary) -> str | None:
    """The word of the document a slipped two-piece `word` stands for, or None: `word` has at least
    MIN_SLIP_LETTERS letters, is in neither list, the tokenizer splits it into two pieces (any
    count when the vocabulary counts none), and exactly one word of the document one length-keeping
    slip away stands in the document right after `before` or right before `after` (the question's
    neighbouring words as read, None where there is none)."""
    key = word.lower()
    if len(key) < MIN_SLIP_LETTERS or key in doc or key in vocab:
        return None
    if vocab.pieces is not None and vocab.pieces(word) != 2:
        return None
    b, a = (before or "").lower(), (after or "").lower()
    pool = [w for w in sorted(_kept_length_slips_of(key))
            if w in doc.all and ((b, w) in doc.pairs or (w, a) in doc.pairs)]
    return _written(pool[0], word, doc) if len(pool) == 1 else None


def read_question(question: str, document: str, vocab: Vocabulary) -> ReadQuestion:
    """The question as the model will be given it: re-cased when shouted, letter slips mended (see the module's docstring). Empty or blank questions come back as they are."""
    if not question or not question.strip():
        return ReadQuestion(question, question)
    doc = DocumentWords(document)
    changes: list[Change] = []
    text = question
    recased = is_shouted(question)
    if recased:
        text = recase(question, doc, vocab)
        if text != question:
            changes.append(Change("case", question, text))
    words = list(_WORD.finditer(text))
    read = [m.group() for m in words]
    mended: dict[int, str] = {}

    def take(i: int, fixed: str | None) -> None:
        if fixed is None:
            return
        if i == 0 and fixed.islower():
            fixed = fixed[0].upper() + fixed[1:]
        mended[i] = read[i] = fixed

    for i, w in enumerate(read):
        name_like = not recased and i > 0 and any(c.isupper() for c in w)
        take(i, mend(w, doc, vocab, name_like=name_like) or (None if name_like else mend_short(w, doc, vocab)))

    def side_by_side(i: int, j: int) -> bool:  # the question's words i < j with only blanks between them
        return not text[words[i].end():words[j].start()].strip()

    for i, w in enumerate(read):  # a two-piece word, next to its neighbours as read
        if i not in mended:
            before = read[i - 1] if i > 0 and side_by_side(i - 1, i) else None
            after = read[i + 1] if i + 1 < len(read) and side_by_side(i, i + 1) else None
            take(i, mend_in_phrase(w, before, after, doc, vocab))

    for i in sorted(mended):
        changes.append(Change("spelling", words[i].group(), mended[i]))
    out, at = [], 0
    for i, m in enumerate(words):
        out += [text[at:m.start()], read[i]]
        at = m.end()
    text = "".join(out) + text[at:]
    return ReadQuestion(question, text, tuple(changes))
