"""Where sentences begin and end: the one rule every part of ledviz uses (sentence-level
attention maps in ledviz.analysis, the "sentences" global-attention choice and the embedded
model's answer focus in ledviz.pipeline, a sentence's first word in ledviz.questions).

The rule, as a reader expects it, and no more (no language model, no NLP library):

* A line break ends a sentence: any character ``str.splitlines`` breaks at ("\\n", "\\r",
  "\\u2028", ...). A line without a full stop (a title, a list item) is a sentence of its own.
* A sentence ends after a run of ``.`` ``!`` ``?`` ("Why?!", "Wait..."), with any closing
  quotes or brackets right after it (TERMINATORS, CLOSING), when whitespace or the end of the
  text follows. So "3.5", "1,234.56", "example.com" and "end.Next" do not end a sentence.
* A single ``.`` (nothing closing after it) does not end a sentence after
  - an initial: one capital letter ("J. R. Smith", "U. Bui");
  - letters joined by dots, one letter each: "e.g.", "i.e.", "a.m.", "U.S.";
  - an abbreviation of ABBREVIATIONS ("Dr. Smith", "vs. them", "etc. and more"), or of
    NUMBERED when a digit follows ("No. 5", "Fig. 3"; "the answer was No. Then" ends).
  The word is what stands between the ``.`` and the blank, quote or bracket before it, matched
  as written: case matters ("Dr." is an abbreviation, "dr." is not; "fig." the fruit ends).

Known trade-offs, for a small rule: a sentence that really ends with one of these does not end
there: "He moved to the U.S. Then ...", "... apples, pears etc. The next ...", "... John Smith
Jr. Then ...", "Plan B. Then ..." and "It was I. Then ..." each read as one sentence. "...",
"?", "!" and a closing mark after the "." always end one ("Dr.?", "(Dr.)" would). A quoted
question inside a sentence ends it: '"Why?" asked the board.' is two.

Positions are character offsets of the text (Python str indices). `Sentences` computes a text's
sentences once: their spans, whether a position begins one, the one holding a position.
"""

from __future__ import annotations

import bisect
import re

TERMINATORS = ".!?"
CLOSING = "\"'”’)]}»"  # may follow the terminators and belong to the sentence they end
OPENING = "\"'“‘([{«"  # may come before a sentence's first word (Sentences.begins)
# after a single ".", these (as written) do not end a sentence:
ABBREVIATIONS = frozenset({"Mr", "Mrs", "Ms", "Dr", "Prof", "Rev", "St", "Mt", "Jr", "Sr",  # with names
                           "vs", "etc", "cf", "approx", "ca", "viz"})
NUMBERED = frozenset({"No", "Nos", "Fig", "Figs", "Vol", "p", "pp"})  # only when a digit follows

_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines breaks at
_TERMINATOR_RUN = re.compile(rf"[{re.escape(TERMINATORS)}]+[{re.escape(CLOSING)}]*(?=\s|\Z)")
_LINE_BREAK = re.compile(f"[{_LINE_BREAKS}]")
# the word before a ".": letters (dot-joined parts allowed) after a blank, an opening mark or the text's start
_WORD_BEFORE = re.compile(rf"(?<![^\s{re.escape(OPENING)}])[^\W\d_]+(?:\.[^\W\d_]+)*\Z")
_INITIALS = re.compile(r"[^\W\d_](?:\.[^\W\d_])+")  # e.g / U.S: one letter per part
_LONGEST_WORD = 24  # no abbreviation is longer; the word before a "." is looked for this far back


def _ends_after(text: str, run: re.Match) -> bool:
    """Whether the terminator run `run` (followed by a blank or the end) ends its sentence."""
    if run.group() != "." or run.end() == len(text):
        return True
    dot = run.start()
    word = _WORD_BEFORE.search(text, max(0, dot - _LONGEST_WORD), dot)
    if word is None:
        return True
    w = word.group()
    if (len(w) == 1 and w.isupper()) or w in ABBREVIATIONS or _INITIALS.fullmatch(w):
        return False
    if w in NUMBERED:
        after = text[run.end():run.end() + 8].lstrip()
        return not after[:1].isdigit()
    return True


def sentence_ends(text: str) -> list[int]:
    """Where each sentence of `text` ends (a character offset, after its terminators and closing
    marks, or at the line break), in order; the end of the text is not listed."""
    ends = {m.start() for m in _LINE_BREAK.finditer(text)}
    ends.update(m.end() for m in _TERMINATOR_RUN.finditer(text) if m.end() < len(text) and _ends_after(text, m))
    return sorted(ends)


class Sentences:
    """The sentences of one text, by the module's rule.

    spans: (start, end) per sentence, in order, blanks trimmed (no span is empty; blank lines give
    none). Every character that is not whitespace lies in exactly one span."""

    def __init__(self, text: str):
        if not isinstance(text, str):
            raise TypeError(f"Sentences reads a str, got {type(text).__name__}: decode bytes first")
        self.text = text
        self.spans: list[tuple[int, int]] = []
        start = 0
        for end in [*sentence_ends(text), len(text)]:
            chunk = text[start:end]
            body = chunk.strip()
            if body:
                a = start + len(chunk) - len(chunk.lstrip())
                self.spans.append((a, a + len(body)))
            start = end
        self.starts = [a for a, _ in self.spans]

    def __len__(self) -> int:
        return len(self.spans)

    def index_at(self, pos: int) -> int | None:
        """The sentence holding character `pos`; for a blank between sentences, the next one (the
        last one after the last); None for a text without sentences."""
        if not self.spans:
            return None
        k = bisect.bisect_right(self.starts, pos) - 1
        if k >= 0 and pos < self.spans[k][1]:
            return k
        return min(k + 1, len(self.spans) - 1)

    def begins(self, pos: int) -> bool:
        """Whether the word at `pos` is its sentence's first: only blanks and opening marks (OPENING,
        '"Yes', '(See') stand between the sentence's start and `pos`."""
        k = bisect.bisect_right(self.starts, pos) - 1
        if k < 0 or pos >= self.spans[k][1]:
            return False
        return all(c in OPENING or c.isspace() for c in self.text[self.starts[k]:pos])


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of `text`, blanks trimmed (see the module's rule)."""
    return Sentences(text).spans
