"""Uploaded files as document text. Library code: no Streamlit here.

`decode_upload(name, data)` turns an uploaded file's bytes into an `UploadedText` (the text, and
notes for the user such as which encoding was guessed or what an extractor could not read), or
raises `InputError` naming the problem and what to do. Each accepted kind of file has one decoder
in `DECODERS`, keyed by the file name's extension; `UPLOAD_TYPES` (what the uploader offers) is
read from it, so a new kind of file is one decoder function and one entry.

- Plain text (.txt, .md): the encoding is detected (`detect_encoding`): a byte-order mark, then
  UTF-16 without a mark (NUL bytes at every other position), then UTF-8, then charset-normalizer
  when it is installed (it comes with requests), else Windows-1252 / Latin-1; a guess is said in a
  note.
- PDF (.pdf): the text layer through pypdf, page by page; the page count and every page that gave
  no text or failed are said in notes; an encrypted or damaged file is an InputError.
- HTML (.html, .htm): the text through the standard library's html.parser, without scripts,
  styles and other non-text elements, with a paragraph break after each block element.
"""

from __future__ import annotations

import codecs
import io
import os
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Callable

from .errors import InputError


@dataclass(frozen=True)
class UploadedText:
    """The text of an uploaded file, notes on how it was read (e.g. the encoding guessed, a PDF's
    page count) and warnings on what could not be read (pages with no text); both may be empty."""

    name: str
    text: str
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def _not_readable(name: str) -> InputError:
    return InputError(f"{name!r} is not readable text (binary content, or an encoding that could not be "
                      "recognised): save it as UTF-8 plain text, or paste the text instead")


# ---------------------------------------------------------------------------------------------
# plain text: which encoding
# ---------------------------------------------------------------------------------------------

_BOMS = [  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
]
_SAMPLE = 65536  # bytes looked at by the heuristics


def _utf16_without_bom(data: bytes) -> str | None:
    """'utf-16-le' / 'utf-16-be' when the bytes look like UTF-16 text without a byte-order mark:
    mostly ASCII-range text has a NUL in every other byte, on one side only."""
    sample = data[:_SAMPLE]
    if len(sample) < 4 or len(data) % 2:
        return None
    even, odd = sample[0::2], sample[1::2]
    zeros_even, zeros_odd = even.count(0) / len(even), odd.count(0) / len(odd)
    if zeros_odd > 0.4 and zeros_even < 0.05:
        return "utf-16-le"
    if zeros_even > 0.4 and zeros_odd < 0.05:
        return "utf-16-be"
    return None


def _looks_like_text(text: str) -> bool:
    """Few control characters other than tab, new lines and form feed (binary decoded as Latin-1 has many)."""
    sample = text[:_SAMPLE]
    if not sample:
        return True
    controls = sum(1 for ch in sample if (ord(ch) < 32 and ch not in "\t\n\r\f") or 0x7F <= ord(ch) < 0xA0)
    return controls / len(sample) < 0.02


def detect_encoding(data: bytes) -> tuple[str, str | None]:
    """(encoding, note) for text bytes; the note (None when the encoding is certain: a byte-order
    mark, or valid UTF-8) says what was guessed. InputError-free: raises LookupError when the bytes
    are not text in any encoding tried."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding, None
    utf16 = _utf16_without_bom(data)
    if utf16 is not None:
        return utf16, f"Read as {utf16.upper()} (no byte-order mark; recognised from its NUL bytes)."
    if b"\x00" in data[:_SAMPLE]:
        raise LookupError("NUL bytes: binary content")
    try:
        data.decode("utf-8")
        return "utf-8", None
    except UnicodeDecodeError:
        pass
    try:
        import charset_normalizer
    except ImportError:
        charset_normalizer = None
    if charset_normalizer is not None:
        matches = [m for m in charset_normalizer.from_bytes(data[:_SAMPLE * 4]) if m.encoding not in ("utf_8", "ascii")]
        if matches:
            # the least garbled readings; of those Windows-1252 when it is one of them (a few accented
            # letters in English or French text read equally well in a dozen code pages, and cp1252 is
            # what such files nearly always are)
            least = min(m.chaos for m in matches)
            best = [m for m in matches if m.chaos <= least + 0.01]
            western = any("cp1252" in m.could_be_from_charset for m in best)
            encoding = "cp1252" if western else best[0].encoding
            return encoding, (f"Not UTF-8: read as {'Windows-1252' if western else encoding} (detected by "
                              "charset-normalizer; if letters look wrong, save the file as UTF-8).")
    encoding = "cp1252"
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        encoding = "latin-1"
    return encoding, (f"Not UTF-8: read as {'Windows-1252' if encoding == 'cp1252' else 'Latin-1'} "
                      "(a guess; if letters look wrong, save the file as UTF-8).")


def decode_text(name: str, data: bytes) -> UploadedText:
    """Plain text in any common encoding (see `detect_encoding`); a byte-order mark is dropped.
    Binary content (NUL bytes that are not UTF-16, or many control characters) is refused."""
    try:
        encoding, note = detect_encoding(data)
        text = data.decode(encoding)
    except (LookupError, UnicodeDecodeError):
        raise _not_readable(name) from None
    text = text.lstrip("\ufeff")
    if not _looks_like_text(text):
        raise _not_readable(name)
    return UploadedText(name, text, (note,) if note else ())


# ---------------------------------------------------------------------------------------------
# PDF
# ---------------------------------------------------------------------------------------------

def _page_list(pages: list[int]) -> str:
    """1-based page numbers as '3' / '3, 5 and 9' / '3, 5, 9 and 12 more'."""
    shown = [str(p + 1) for p in pages[:8]]
    if len(pages) > 8:
        return ", ".join(shown) + f" and {len(pages) - 8:,} more"
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def decode_pdf(name: str, data: bytes) -> UploadedText:
    """The text layer of a PDF, pages separated by blank lines, with notes: the page count, pages
    with no text (scanned images need OCR, which this does not do), pages that failed."""
    try:
        import pypdf
    except ImportError:
        raise InputError(f"{name!r} is a PDF, and reading PDFs needs the pypdf package: pip install pypdf "
                         "(or paste the text instead)") from None
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
        if encrypted and not reader.decrypt(""):
            raise InputError(f"{name!r} is an encrypted PDF that needs a password: save an unprotected "
                             "copy, or paste the text instead")
        pages = list(reader.pages)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - pypdf raises many kinds on a damaged file
        raise InputError(f"{name!r} is not a readable PDF ({type(err).__name__}: {err}): check the file, "
                         "or paste the text instead") from None
    if not pages:
        raise InputError(f"{name!r} has no pages")
    texts, empty, failed = [], [], []
    for i, page in enumerate(pages):
        try:
            text = page.extract_text() or ""
        except Exception:  # noqa: BLE001 - a broken page is reported, the others are kept
            failed.append(i)
            continue
        text = text.strip()
        if text:
            texts.append(text)
        else:
            empty.append(i)
    notes = (f"PDF: {len(pages):,} page{'s' if len(pages) != 1 else ''}, text read from "
             f"{len(texts):,}" + (" (the password-free encryption was opened)" if encrypted else "") + ".",)
    warnings = []
    if empty:
        warnings.append(f"No text on page{'s' if len(empty) > 1 else ''} {_page_list(empty)}: probably scanned "
                     "images (this app does not run OCR), or empty pages.")
    if failed:
        warnings.append(f"Page{'s' if len(failed) > 1 else ''} {_page_list(failed)} could not be read and "
                     f"{'are' if len(failed) > 1 else 'is'} left out.")
    if not texts:
        raise InputError(f"{name!r} has no text layer on any of its {len(pages):,} page(s) (a scan?): "
                         "run OCR on it first, or paste the text instead")
    return UploadedText(name, "\n\n".join(texts), notes, tuple(warnings))


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

_SKIP = {"script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object", "canvas", "select"}
_BLOCKS = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section",
           "article", "header", "footer", "blockquote", "pre", "hr", "dd", "dt", "dl", "figure", "figcaption",
           "main", "nav", "aside", "title", "body", "form", "address"}


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs) -> None:
        if tag in _SKIP:
            self.skip += 1
        elif tag in _BLOCKS:
            self.parts.append("\n\n")

    def handle_startendtag(self, tag, attrs) -> None:
        if tag in _BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data) -> None:
        if not self.skip:
            self.parts.append(data)


def html_text(html: str) -> str:
    """The readable text of an HTML page: scripts, styles and other non-text elements dropped, runs
    of spaces joined, one blank line between blocks (paragraphs, headings, list items, ...)."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    paragraphs = [re.sub(r"\s+", " ", p).strip() for p in "".join(parser.parts).split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


def decode_html(name: str, data: bytes) -> UploadedText:
    """An HTML file's text (`html_text`), its encoding detected as for plain text (a <meta charset>
    is honoured when it names a known encoding)."""
    meta = re.search(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", data[:4096], re.IGNORECASE)
    text = None
    if meta is not None and not data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode(meta.group(1).decode("ascii"))
        except (LookupError, UnicodeDecodeError):
            text = None
    notes: tuple[str, ...] = ()
    if text is None:
        page = decode_text(name, data)
        text, notes = page.text, page.notes
    body = html_text(text)
    if not body:
        raise InputError(f"{name!r} has no readable text outside its tags and scripts: paste the text instead")
    return UploadedText(name, body, notes)


DECODERS: dict[str, Callable[[str, bytes], UploadedText]] = {
    "txt": decode_text, "md": decode_text, "pdf": decode_pdf, "html": decode_html, "htm": decode_html,
}
UPLOAD_TYPES: tuple[str, ...] = tuple(DECODERS)

# documents a user is likely to drop that ledviz does not read: the uploader takes them too, so that the message
# says what they are and what to do (refused by the uploader, a .docx showed a red mark and, on hover only,
# "application/vnd.openxmlformats-officedocument.wordprocessingml.document files are not allowed")
UNREAD_TYPES = {"docx": "a Word document", "doc": "a Word document", "odt": "an OpenDocument text",
                "rtf": "a rich-text (RTF) file", "pages": "a Pages document", "epub": "an e-book (EPUB)"}
UPLOADER_TYPES: tuple[str, ...] = UPLOAD_TYPES + tuple(UNREAD_TYPES)  # what the uploader takes


def decode_upload(name: str, data: bytes) -> UploadedText:
    """The text of an uploaded file, by its extension (case-insensitive); InputError for a kind of
    file that is not accepted or content that cannot be read."""
    ext = os.path.splitext(name)[1].lower().lstrip(".")
    decoder = DECODERS.get(ext)
    if decoder is None and ext in UNREAD_TYPES:
        raise InputError(f"{name!r} is {UNREAD_TYPES[ext]}, which ledviz does not read: save it as PDF or plain text "
                         "(File › Save as, or Export) and upload that, or paste its text")
    if decoder is None:
        kinds = ", ".join(f".{t}" for t in UPLOAD_TYPES[:-1]) + f" or .{UPLOAD_TYPES[-1]}"
        raise InputError(f"{name!r} is not a {kinds} file: upload one of those, or paste the text")
    return decoder(name, data)
