"""Words the app shows, as pure text (no Streamlit, no model): a number with its noun, and a user's or
a document's text made safe to put inside Markdown (`as_typed`).

Why `as_typed` is needed: Streamlit renders st.markdown, st.caption, st.write and the text of
st.info / st.warning / st.error / st.success as Markdown, with GitHub's extensions, LaTeX between
`$`s, `:emoji:` and `:color[...]` directives. A document containing `**`, `_`, `#`, `[x](y)`, `$5 and $6`,
`<b>`, `&copy;` or `:smile:` would be shown formatted, and a URL, "www.example.com" or an e-mail address
would be made a link. `as_typed` backslash-escapes every ASCII punctuation mark Markdown, LaTeX and
Streamlit's directives use, and puts an invisible WORD JOINER (U+2060) where GitHub's autolinking
looks (after "://", between "www" and ".", after "@"): backslashes alone do not stop autolinking
(checked in Chromium against Streamlit 1.67: "www\\.example\\.com" is still a link).

The trade-off: the word joiner is invisible but real. Text copied from such a caption carries it
(a copied URL or e-mail address does not work until it is removed). The document itself, the tokens
and the outputs the app computes on are never changed: only the text shown in Markdown.
"""

from __future__ import annotations

import math
import re

WORD_JOINER = "\u2060"  # zero width, no line break: invisible, but the autolinker no longer sees a link

# ASCII punctuation with a meaning in Markdown (CommonMark + GitHub's extensions), in Streamlit's LaTeX ($)
# and directives (:emoji:, :red[...]), or as an HTML entity (&copy;); CommonMark lets a backslash escape
# each of them. "\\" first, so the backslashes added for the others are not escaped again.
_MARKDOWN_CHARACTERS = "\\`*_{}[]()#+-.!|<>$~&=:"
_LINK_STARTS = re.compile(r"://|(?i:www)(?=\.)|@")
_LEADING_SPACE = re.compile(r"^[ \t]+", re.MULTILINE)


def count(n: int, thing: str) -> str:
    """"1 global token", "2,466 global tokens": a number and a noun, the plural where it is not one."""
    return f"{n:,} {thing}{'' if n == 1 else 's'}"


def token_range(first: int, last: int, noun: str = "token") -> str:
    """Token positions `first` to `last` (both included) in words: "token 5" for one, "tokens 10–20" for several
    (a zoom of one token read "Tokens 5–5")."""
    return f"{noun} {first:,}" if first == last else f"{noun}s {first:,}–{last:,}"


def decimal(x: float, significant: int = 3) -> str:
    """A value as a reader takes it: `significant` digits, never exponent notation, no trailing zeros.

    Python's "g" wrote a small attention weight of a long document as "3.052e-05", and a fixed ".3f"
    wrote a scored cell of 0.0004 as "0.000", which read as no score at all: 0.0000305 and 0.0004 here."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    places = significant - 1 - math.floor(math.log10(abs(x)))
    text = f"{x:,.{max(places, 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def as_typed(text: str) -> str:
    """`text` to put into Markdown (st.markdown, st.caption, st.error ...) so that it shows as typed:
    Markdown's, LaTeX's and Streamlit's special characters escaped, autolinks broken by a U+2060 WORD
    JOINER (see the module's docstring for the trade-off), line breaks kept as line breaks and a line's
    leading spaces kept as no-break spaces (four spaces would start a code block)."""
    text = _LINK_STARTS.sub(lambda m: m.group(0) + WORD_JOINER, str(text))
    for ch in _MARKDOWN_CHARACTERS:
        text = text.replace(ch, "\\" + ch)
    text = _LEADING_SPACE.sub(lambda m: "\u00a0" * len(m.group(0).expandtabs(4)), text)
    return text.replace("\r\n", "\n").replace("\n", "  \n")
