"""The documents of a study: a JSONL, CSV or Parquet file, or the built-in synthetic corpus.

A file has a text column (``text`` unless told otherwise) and optional ``id``, ``question`` and
``reference`` (a summary or an answer) columns. ``demo:N`` (or ``demo:N:MIN-MAX`` tokens) is the
held-out stream of ledviz's synthetic reports, whose documents also carry their key facts.
Bad input is an InputError naming the file, line or id and the fix; with ``on_error="skip"``
malformed lines and empty texts are skipped and listed instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InputError

ON_ERROR = ("stop", "skip")
DEMO_RE = re.compile(r"^demo:(\d+)(?::(\d+)-(\d+))?$")
DEMO_TOKENS = (500, 4000)


@dataclass(frozen=True)
class Record:
    """One document of the corpus: `index` is its place in the corpus, `id` its unique name."""

    index: int
    id: str
    text: str
    question: str | None = None
    reference: str | None = None
    facts: dict[str, str] | None = None  # key facts (the synthetic corpus only)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, s: str) -> "Record":
        return cls(**json.loads(s))


@dataclass
class Corpus:
    """The records read from a source, and what was skipped (with the reason) when asked to skip."""

    source: str
    records: list[Record]
    skipped: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        """sha256 of the records as read: a resumed study must read the same documents."""
        h = hashlib.sha256()
        for r in self.records:
            h.update(r.to_json().encode())
            h.update(b"\n")
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.records)


def _clean(value: Any) -> str | None:
    """A text cell as str, or None for missing (None, NaN, pandas NA)."""
    if value is None:
        return None
    try:
        if isinstance(value, float) and math.isnan(value):
            return None
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    return value if isinstance(value, str) else str(value)


def demo_corpus(spec: str, task: str) -> Corpus:
    """`demo:N[:MIN-MAX]`: N held-out synthetic reports for `task` (summarize: reference summary
    and key facts; qa: a question and its answer)."""
    from ..demo import data

    m = DEMO_RE.match(spec.strip())
    if not m:
        raise InputError(f"{spec!r} is not a demo corpus: write demo:N (e.g. demo:500) or demo:N:MIN-MAX "
                         f"(document lengths in tokens, e.g. demo:20:300-1000)")
    n = int(m.group(1))
    lo, hi = (int(m.group(2)), int(m.group(3))) if m.group(2) else DEMO_TOKENS
    if n < 1:
        raise InputError(f"the demo corpus needs at least one document, got {spec!r}")
    if not 200 <= lo <= hi:
        raise InputError(f"demo document lengths must satisfy 200 <= MIN <= MAX tokens, got {lo}-{hi}")
    records = []
    for i, ex in enumerate(data.generate_dataset(data.TEST_SEED, n, tasks=(task,), min_tokens=lo, max_tokens=hi)):
        records.append(Record(index=i, id=f"demo-{i}", text=ex.document, question=ex.question,
                              reference=ex.target, facts=dict(ex.facts) if task == "summarize" else None))
    return Corpus(spec, records)


def _rows_jsonl(path: str, on_error: str, skipped: list[str]):
    """(line number, dict) of each non-blank line."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                msg = f"{path}, line {n}: not valid JSON ({e.msg} at column {e.colno})"
                if on_error == "stop":
                    raise InputError(msg + "; fix the line, or pass --on-error skip to leave it out") from None
                skipped.append(msg)
                continue
            if not isinstance(row, dict):
                msg = f"{path}, line {n}: a line must be a JSON object with a text field, got {type(row).__name__}"
                if on_error == "stop":
                    raise InputError(msg + "; fix the line, or pass --on-error skip to leave it out")
                skipped.append(msg)
                continue
            yield n, row


def _rows_table(path: str, kind: str):
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False) if kind == "csv" else pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad file
        raise InputError(f"could not read {path} as {kind.upper()}: {e}") from None
    for n, row in enumerate(df.to_dict("records"), 2 if kind == "csv" else 1):
        yield n, row


def read_corpus(source: str, *, task: str = "summarize", text_column: str = "text", id_column: str = "id",
                on_error: str = "stop", limit: int | None = None) -> Corpus:
    """Read the documents of `source` (a .jsonl/.csv/.parquet file or demo:N) for `task`.

    Empty texts and malformed lines stop the read with an InputError (or, on_error="skip", are
    listed in Corpus.skipped); duplicate ids always stop it, since results are keyed by id.
    Without an id column a document's id is its line (row) number. `limit`: the first documents only.
    """
    if on_error not in ON_ERROR:
        raise InputError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    if str(source).startswith("demo:"):
        corpus = demo_corpus(str(source), task)
        if limit is not None:
            corpus.records = corpus.records[:limit]
        return corpus
    path = os.path.expanduser(str(source))
    if not os.path.isfile(path):
        raise InputError(f"the corpus {source!r} is not a file: give a .jsonl, .csv or .parquet file, or demo:N")
    ext = os.path.splitext(path)[1].lower()
    kinds = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet",
             ".pq": "parquet"}
    if ext not in kinds:
        raise InputError(f"cannot tell the format of {source!r} from its extension {ext or '(none)'}: "
                         "use .jsonl, .csv or .parquet")
    kind = kinds[ext]
    skipped: list[str] = []
    rows = _rows_jsonl(path, on_error, skipped) if kind == "jsonl" else _rows_table(path, kind)
    where = "line" if kind in ("jsonl", "csv") else "row"
    records: list[Record] = []
    seen: dict[str, int] = {}
    for n, row in rows:
        if text_column not in row:
            msg = (f"{path}, {where} {n}: no {text_column!r} column (it has {', '.join(map(repr, row)) or 'none'}); "
                   "name the text column with --text-column")
            if on_error == "stop" or kind != "jsonl":
                raise InputError(msg)
            skipped.append(msg)
            continue
        text = _clean(row.get(text_column))
        raw_id = _clean(row.get(id_column)) if id_column in row else None
        doc_id = raw_id if raw_id not in (None, "") else f"{where}-{n}"
        if text is None or not text.strip():
            msg = f"{path}, {where} {n} (id {doc_id}): the text is empty"
            if on_error == "stop":
                raise InputError(msg + "; remove the document, or pass --on-error skip to leave it out")
            skipped.append(msg)
            continue
        if doc_id in seen:
            raise InputError(f"{path}: the id {doc_id!r} is used twice ({where}s {seen[doc_id]} and {n}); "
                             "ids name the results, so each must be unique")
        seen[doc_id] = n
        question = _clean(row.get("question"))
        reference = _clean(row.get("reference"))
        if task == "qa" and not (question and question.strip()):
            msg = f"{path}, {where} {n} (id {doc_id}): question answering needs a 'question'"
            if on_error == "stop":
                raise InputError(msg + "; add one, run --task summarize, or pass --on-error skip")
            skipped.append(msg)
            continue
        records.append(Record(index=len(records), id=doc_id, text=text,
                              question=question if task == "qa" else None,
                              reference=reference if reference and reference.strip() else None))
        if limit is not None and len(records) >= limit:
            break
    if not records:
        raise InputError(f"{source!r} has no usable documents" + (f" ({len(skipped)} skipped)" if skipped else ""))
    return Corpus(str(source), records, skipped)
