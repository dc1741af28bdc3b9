"""Uploaded files as document text. Library code: no Streamlit here.

`decode_upload(name, data)` turns an uploaded file's bytes into an `UploadedText` (the text, and
notes for the user such as what an extractor could not read), or raises `InputError` naming the
problem and what to do. Each accepted kind of file has one decoder in `DECODERS`, keyed by the
file name's extension; `UPLOAD_TYPES` (what the uploader offers) is read from it, so a new kind
of file is one decoder function and one entry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from .errors import InputError


@dataclass(frozen=True)
class UploadedText:
    """The text of an uploaded file, and notes on how it was read (shown beside it; may be empty)."""

    name: str
    text: str
    notes: tuple[str, ...] = ()


def _not_readable(name: str) -> InputError:
    return InputError(f"{name!r} is not readable text (not UTF-8; binary content?): save it as UTF-8 "
                      "plain text, or paste the text instead")


def decode_text(name: str, data: bytes) -> UploadedText:
    """Plain text: UTF-16 when it starts with a byte-order mark, else UTF-8 (a BOM is dropped).
    Bytes with NULs in the first 8 KiB and no UTF-16 mark are binary, not text."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return UploadedText(name, data.decode("utf-16"))
        except UnicodeDecodeError:
            raise _not_readable(name) from None
    if b"\x00" in data[:8192]:
        raise _not_readable(name)
    try:
        return UploadedText(name, data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise _not_readable(name) from None


DECODERS: dict[str, Callable[[str, bytes], UploadedText]] = {"txt": decode_text, "md": decode_text}
UPLOAD_TYPES: tuple[str, ...] = tuple(DECODERS)


def decode_upload(name: str, data: bytes) -> UploadedText:
    """The text of an uploaded file, by its extension (case-insensitive); InputError for a kind of
    file that is not accepted or content that cannot be read."""
    ext = os.path.splitext(name)[1].lower().lstrip(".")
    decoder = DECODERS.get(ext)
    if decoder is None:
        kinds = " or ".join(f".{t}" for t in UPLOAD_TYPES)
        raise InputError(f"{name!r} is not a {kinds} file: upload plain text, or paste it")
    return decoder(name, data)
