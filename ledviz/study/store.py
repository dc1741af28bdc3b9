"""A study's results folder: written as documents finish, safe to kill, resumed by running again.

    DIR/manifest.json       what the study is (model and weights hash, settings, seed, versions) and its runs
    DIR/documents.parquet   the documents (id, text, question, reference, key facts)
    DIR/rows/part-*.parquet the rows, one file per finished batch of documents

Every file is written to a temporary name and renamed into place, so a file is either whole or
absent: a run killed at any moment loses only the batches in flight, and a rerun skips every
(document, setting) pair already in a part file. A lock keeps two runs from writing one folder.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import platform
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .. import device
from ..errors import InputError
from .corpus import Corpus, Record
from .evaluate import COLUMNS
from .spec import identity_hash

FORMAT = "ledviz-study/1"
MANIFEST = "manifest.json"
MANIFEST_KEYS = ("spec", "documents")  # what reading a study needs of its manifest
SPEC_KEYS = ("settings", "reference", "task")
DOCUMENTS = "documents.parquet"
ROWS = "rows"

_F, _S, _I = pa.float64(), pa.string(), pa.int64()
_TYPES = {"doc_index": _I, "setting_index": _I, "is_reference": pa.bool_(), "n_tokens": _I, "truncated_tokens": _I,
          "global_tokens": _I, "output_tokens": _I, "doc_id": _S, "setting": _S, "setting_spec": _S, "output": _S,
          "error": _S, "worker": _S}
SCHEMA = pa.schema([(c, pa.list_(_F) if c.startswith("layer_") else _TYPES.get(c, _F)) for c in COLUMNS])


def package_versions(*extra: str) -> dict[str, str | None]:
    """Versions of the packages that shape the results (None: not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("ledviz", "torch", "tokenizers", "numpy", "pandas", "pyarrow", "rouge-score", *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if out["ledviz"] is None:
        from .. import __version__

        out["ledviz"] = __version__
    return out


load_average = device.load_average  # (kept here under its old name: studies record it in their manifest)


def machine() -> dict:
    """Which machine a study's times were taken on, and how busy it was: the CPU's model name
    (ledviz.device.cpu_name), its cores, and the 1-minute load average now (None where unknown)."""
    return dict(cpu=device.cpu_name(), cores=os.cpu_count(), load=load_average())


def describe_machine(info: dict | None, load_end: float | None = None) -> str:
    """machine()'s record in words: "<CPU> (2 cores), load average 2.5 at the start, 3.1 at the end"."""
    if not info:
        return "a machine not recorded (a study run before ledviz recorded it)"
    cores = f" ({info['cores']} cores)" if info.get("cores") else ""
    load = "" if info.get("load") is None else f", load average {info['load']:.1f} at the start"
    if load and load_end is not None:
        load += f", {load_end:.1f} at the end"
    return f"{info.get('cpu') or 'an unknown CPU'}{cores}{load}"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _atomic_write(path: Path, write) -> None:
    """write(tmp_path), fsync, then rename over `path`: readers see the old file or the new, never half."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    _atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8"))


def rows_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows as an Arrow table of the study schema (every column, fixed types)."""
    return pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=SCHEMA)


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            a, b = old.get(key), new.get(key)
            if key in ("documents", "weights"):
                a, b = str(a)[:12] + "…", str(b)[:12] + "…"
            out.append(f"{key}: {a!r} in the folder, {b!r} now")
    return out


@dataclass
class ResultsFolder:
    """An open results folder (the lock is held until close())."""

    path: Path
    manifest: dict[str, Any]
    _lock: Any = None

    @classmethod
    def open(cls, path: str | os.PathLike, manifest: dict[str, Any], corpus: Corpus) -> "ResultsFolder":
        """Create the folder for this study, or reopen it; refuse a folder holding another study."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise InputError(f"{path} is a file: give a folder for the results")
        path.mkdir(parents=True, exist_ok=True)
        lock = open(path / ".lock", "a+")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise InputError(f"another run is writing {path} now: wait for it, or give another folder") from None
        try:
            existing = path / MANIFEST
            if existing.exists():
                old = json.loads(existing.read_text(encoding="utf-8"))
                if old.get("study_id") != manifest["study_id"]:
                    diff = _differences(old.get("identity", {}), manifest["identity"])
                    raise InputError(
                        f"{path} holds the results of a different study, and results of two studies are never mixed "
                        f"(it differs in {'; '.join(diff) or 'its format'}): give another folder, or run that study "
                        "again to resume it")
                old.setdefault("runs", []).extend(manifest.get("runs", []))
                manifest = old
            else:
                others = [p.name for p in path.iterdir() if not p.name.startswith(".")]
                if others:
                    raise InputError(f"{path} is not empty ({', '.join(sorted(others)[:3])}…) and holds no study: "
                                     "give an empty or new folder for the results")
                docs = pd.DataFrame([dict(r.__dict__, facts=json.dumps(r.facts) if r.facts else None)
                                     for r in corpus.records])
                _atomic_write(path / DOCUMENTS, lambda p: docs.to_parquet(p, index=False))
            (path / ROWS).mkdir(exist_ok=True)
            for stale in (path / ROWS).glob(".tmp-*"):  # a killed run's half-written part (we hold the lock)
                stale.unlink()
            write_json(existing, manifest)
        except BaseException:
            lock.close()
            raise
        return cls(path, manifest, lock)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> "ResultsFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def done(self) -> set[tuple[int, int]]:
        """The (doc_index, setting_index) pairs already written."""
        rows = read_rows(self.path, columns=["doc_index", "setting_index"])
        return set(zip(rows["doc_index"].tolist(), rows["setting_index"].tolist()))

    def write(self, rows: list[Mapping[str, Any]]) -> Path:
        """One part file with these rows (atomically); returns its path."""
        first = min(int(r["doc_index"]) for r in rows)
        target = self.path / ROWS / f"part-{first:08d}-{uuid.uuid4().hex[:8]}.parquet"
        table = rows_table(rows)
        _atomic_write(target, lambda p: pq.write_table(table, p))
        return target

    def update_manifest(self, **fields: Any) -> None:
        self.manifest.update(fields)
        write_json(self.path / MANIFEST, self.manifest)


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not (p / MANIFEST).is_file():
        raise InputError(f"{p} is not a study results folder (no {MANIFEST}): give the folder a study run wrote")
    afresh = (f"without it the rows cannot be matched to their study: run the study afresh into a new folder "
              f"(python -m ledviz.study run ... --out NEW_FOLDER)")
    try:
        manifest = json.loads((p / MANIFEST).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{p / MANIFEST} is damaged ({getattr(e, 'msg', None) or e.reason}): it cannot be read; "
                         + afresh) from None
    spec = manifest.get("spec") if isinstance(manifest, dict) else None
    lacking = ([] if isinstance(manifest, dict) else ["an object"]) + \
        [k for k in MANIFEST_KEYS if not isinstance(manifest, dict) or k not in manifest] + \
        [f"spec.{k}" for k in SPEC_KEYS if isinstance(spec, dict) and k not in spec]
    if lacking:
        raise InputError(f"{p / MANIFEST} is not a study's manifest (it lacks {', '.join(lacking)}), or it was "
                         "damaged or edited by hand; " + afresh)
    return manifest


def read_rows(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """Every row of a results folder, sorted by document and setting (InputError on duplicates)."""
    parts = sorted((Path(path) / ROWS).glob("part-*.parquet"))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in (columns or COLUMNS)})
    df = pa.concat_tables([_read_part(p, columns) for p in parts]).to_pandas()
    dup = df.duplicated(["doc_index", "setting_index"]) if "setting_index" in df else None
    if dup is not None and dup.any():
        first = df[dup].iloc[0]
        raise InputError(f"{path} has {int(dup.sum())} duplicate rows (first: document {first['doc_index']}, "
                         f"setting {first['setting_index']}): was it written by hand or by two runs at once?")
    return df.sort_values(["doc_index", "setting_index"]).reset_index(drop=True)


def _read_part(part: Path, columns: list[str] | None) -> pa.Table:
    """One part file of rows; InputError naming it and the fix when it is damaged (an interrupted copy, a
    full disk): a run into the same folder writes again only the rows that are missing."""
    try:
        return pq.read_table(part, columns=columns, schema=SCHEMA)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise InputError(f"the row file {part} is damaged ({str(e).splitlines()[0][:160]}): delete it and run the "
                         f"same study command again (python -m ledviz.study run ... --out {part.parent.parent}): it "
                         "redoes only the rows that are missing") from None


def read_documents(path: str | os.PathLike) -> pd.DataFrame:
    """The documents of a results folder (index, id, text, question, reference, facts as JSON)."""
    p = Path(path) / DOCUMENTS
    fix = ("the study's documents are written once, when its folder is made: run the study afresh into a new "
           "folder (python -m ledviz.study run ... --out NEW_FOLDER)")
    if not p.is_file():
        raise InputError(f"{path} has no {DOCUMENTS}: is it a study results folder? If it is, {fix}")
    try:
        docs = pd.read_parquet(p)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise InputError(f"{p} is damaged ({str(e).splitlines()[0][:160]}); {fix}") from None
    missing = [c for c in ("index", "id", "text") if c not in docs.columns]
    if missing:
        raise InputError(f"{p} lacks the columns {', '.join(missing)}: it is not a study's documents; {fix}")
    return docs


def record_of(documents: pd.DataFrame, doc_index: int) -> Record:
    row = documents.loc[documents["index"] == doc_index].iloc[0].to_dict()
    facts = json.loads(row["facts"]) if row.get("facts") else None
    return Record(index=int(row["index"]), id=str(row["id"]), text=row["text"], question=row.get("question"),
                  reference=row.get("reference"), facts=facts)


def new_manifest(spec_dict: dict, identity: dict, model: dict, corpus: Corpus, run: dict) -> dict[str, Any]:
    return dict(format=FORMAT, study_id=identity_hash(identity), identity=identity, spec=spec_dict, model=model,
                documents=len(corpus), skipped=corpus.skipped, seed=spec_dict.get("seed"),
                packages=package_versions(), created=_now(), runs=[dict(run, started=_now())])
