"""Uploaded files as text (ledviz.uploads): encodings of plain text, PDFs (made in the test with a
hand-written minimal PDF, and encrypted by pypdf), HTML; and what cannot be read is refused with a
message naming the file."""

from __future__ import annotations

import codecs

import pytest

from ledviz.errors import InputError
from ledviz.uploads import UPLOAD_TYPES, UPLOADER_TYPES, UploadedText, decode_upload, detect_encoding, html_text


def make_pdf(pages: list[str | None]) -> bytes:
    """A minimal valid PDF: one page per item, with that text (Helvetica) or no content at all (None)."""
    objects: list[bytes] = []  # object k + 1
    kids = []
    font = 3 + 2 * len(pages)
    for n, text in enumerate(pages):
        page, content = 3 + 2 * n, 4 + 2 * n
        kids.append(f"{page} 0 R")
        lines = [] if text is None else text.split("\n")
        ops = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(
            "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj T*" for line in lines
        ) + " ET" if lines else ""
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content} 0 R "
                       f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode())
        objects.append(f"<< /Length {len(ops)} >>\nstream\n{ops}\nendstream".encode())
    body = [b"<< /Type /Catalog /Pages 2 0 R >>",
            f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(pages)} >>".encode(), *objects,
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for k, obj in enumerate(body, start=1):
        offsets.append(len(out))
        out += f"{k} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(body) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(body) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# plain text
# ---------------------------------------------------------------------------------------------

def test_upload_types():
    assert set(UPLOAD_TYPES) == {"txt", "md", "pdf", "html", "htm"}


def test_utf8_and_marked_unicode_read_without_a_note():
    assert decode_upload("a.txt", "héllo".encode()) == UploadedText("a.txt", "héllo")
    assert decode_upload("a.md", b"\xef\xbb\xbf# title").text == "# title"  # UTF-8 with a BOM: the BOM goes
    assert decode_upload("a.TXT", "hi ✓".encode("utf-16")).text == "hi ✓"  # BOM'd UTF-16, either order
    assert decode_upload("a.txt", codecs.BOM_UTF16_BE + "be".encode("utf-16-be")).text == "be"
    assert decode_upload("a.txt", "32 ✓".encode("utf-32")).text == "32 ✓"
    assert decode_upload("notes.md", b"").text == ""  # empty is text (the page says it is empty)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_mark_is_recognised(encoding):
    text = "The budget of Velmora is 4,312 crowns; the lead is Maren Okafor.\n" * 3
    page = decode_upload("a.txt", text.encode(encoding))
    assert page.text == text
    assert encoding.upper() in page.notes[0]


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_latin1_and_windows_text_are_read_with_a_note(encoding):
    text = "Café crème à la française, naïve façade; prix 12,50 € ou 3½ livres. " * 4
    if encoding == "latin-1":
        text = text.replace("€", "EUR")  # not in Latin-1
    page = decode_upload("menu.txt", text.encode(encoding))
    assert page.text == text
    assert len(page.notes) == 1 and "Not UTF-8" in page.notes[0]


def test_detected_encodings():
    pytest.importorskip("charset_normalizer")
    english = ("Project Bluefinch report. The site is Vélmora, near the café. The budget is 4,312. " * 5)
    page = decode_upload("a.txt", english.encode("latin-1"))  # a few accents in English: not mac_latin2
    assert page.text == english and "Windows-1252" in page.notes[0]
    russian = "Привет, мир! Это проверка кодировки текста. " * 5
    page = decode_upload("a.txt", russian.encode("cp1251"))
    assert page.text == russian and "cp1251" in page.notes[0]


def test_without_charset_normalizer_windows_1252_is_the_fallback(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "charset_normalizer", None)  # import fails
    encoding, note = detect_encoding("Crème brûlée".encode("latin-1"))
    assert encoding == "cp1252" and "Windows-1252" in note and "a guess" in note


@pytest.mark.parametrize("name,data,says", [
    ("README", b"plain", "not a .txt, .md, .pdf, .html or .htm file"),
    ("a.xlsx", b"PK\x03\x04", "not a .txt"),
    ("a.txt", b"\x00\x01\x02binary", "not readable text"),
    ("a.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "not readable text"),
    ("a.txt", bytes(range(1, 32)) * 20, "not readable text"),  # control characters, no NUL
    ("a.txt", b"\xff\xfe\x00\xd8", "not readable text"),  # a UTF-16 BOM, then an unpaired surrogate
])
def test_what_cannot_be_read_is_refused(name, data, says):
    with pytest.raises(InputError, match=says) as err:
        decode_upload(name, data)
    assert repr(name) in str(err.value)


@pytest.mark.parametrize("name, kind", [("report.docx", "a Word document"), ("Report.DOC", "a Word document"),
                                        ("notes.odt", "an OpenDocument text"), ("a.rtf", "a rich-text (RTF) file")])
def test_a_word_document_is_taken_and_refused_with_the_fix(name, kind):
    """The uploader refused a .docx itself: a red mark on the file and, on hover only, "application/vnd.openxmlformats-
    officedocument.wordprocessingml.document files are not allowed". It now takes such files, and the message
    says what the file is and how to get its text in."""
    assert name.rsplit(".", 1)[1].lower() in UPLOADER_TYPES
    assert set(UPLOAD_TYPES) <= set(UPLOADER_TYPES)
    with pytest.raises(InputError) as err:
        decode_upload(name, b"PK\x03\x04" + bytes(200))
    assert str(err.value) == (f"{name!r} is {kind}, which ledviz does not read: save it as PDF or plain text "
                              "(File › Save as, or Export) and upload that, or paste its text")



# ---------------------------------------------------------------------------------------------
# PDF
# ---------------------------------------------------------------------------------------------

def test_pdf_text_page_count_and_empty_pages():
    pytest.importorskip("pypdf")
    data = make_pdf(["Project Bluefinch report.\nThe lead is Maren Okafor.", None, "The budget is 4,312."])
    page = decode_upload("report.PDF", data)
    assert "Project Bluefinch report." in page.text and "Maren Okafor" in page.text
    assert page.text.index("Okafor") < page.text.index("4,312")
    assert "\n\n" in page.text  # pages are paragraphs
    assert page.notes == ("PDF: 3 pages, text read from 2.",)
    assert len(page.warnings) == 1 and "No text on page 2" in page.warnings[0] and "OCR" in page.warnings[0]


def test_pdf_with_no_text_layer_is_refused():
    pytest.importorskip("pypdf")
    with pytest.raises(InputError, match="no text layer on any of its 2 page"):
        decode_upload("scan.pdf", make_pdf([None, None]))


def test_encrypted_pdf():
    pypdf = pytest.importorskip("pypdf")
    import io

    def encrypted(password: str) -> bytes:
        writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf(["Secret budget 4,312."]))))
        writer.encrypt(user_password=password, owner_password="owner", algorithm="RC4-128")
        buf = io.BytesIO()
        writer.write(buf)
        return buf.getvalue()

    with pytest.raises(InputError, match="encrypted PDF that needs a password"):
        decode_upload("locked.pdf", encrypted("pw"))
    page = decode_upload("open.pdf", encrypted(""))  # encrypted with an empty user password: readable
    assert "Secret budget" in page.text and "encryption was opened" in page.notes[0]


@pytest.mark.parametrize("data", [b"%PDF-1.4", b"not a pdf at all", make_pdf(["ok"])[:60]])
def test_damaged_pdf_is_refused(data):
    pytest.importorskip("pypdf")
    with pytest.raises(InputError, match="'bad.pdf' (is not a readable PDF|has no)"):
        decode_upload("bad.pdf", data)


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

PAGE = """<!doctype html><html><head><title>Report</title><style>p { color: red }</style>
<script>var budget = "9,999";</script></head>
<body><h1>Project   Bluefinch</h1><p>The lead is <b>Maren</b> Okafor &amp; the site is Velmora.</p>
<ul><li>Budget: 4,312</li><li>Deadline: 14 March</li></ul><noscript>enable JS</noscript>
<p>Caf&eacute; line<br>next line</p></body></html>"""


def test_html_text_keeps_text_and_paragraphs_drops_scripts():
    text = html_text(PAGE)
    assert text.split("\n\n") == ["Project Bluefinch", "The lead is Maren Okafor & the site is Velmora.",
                                  "Budget: 4,312", "Deadline: 14 March", "Café line", "next line"]
    assert "9,999" not in text and "color" not in text and "enable JS" not in text and "Report" not in text


def test_html_upload_encodings():
    assert decode_upload("page.html", PAGE.encode()).text.startswith("Project Bluefinch")
    latin = PAGE.replace("<head>", '<head><meta charset="iso-8859-1">').replace("&eacute;", "é")
    page = decode_upload("page.htm", latin.encode("latin-1"))
    assert "Café line" in page.text and page.notes == ()  # the declared charset: no guess
    with pytest.raises(InputError, match="no readable text"):
        decode_upload("empty.html", b"<html><script>x()</script></html>")
