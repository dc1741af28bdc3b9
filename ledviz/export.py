"""Capture a run's attention compactly and write it out: `AttentionStore` (the encoder's attention sink),
`AttentionRun` (what a run keeps), `.npz` and Parquet files with the run's metadata as JSON, and
bertviz's `head_view` format for short sequences.

A full LED-large run at 16,384 tokens is 12.9 GB of fp32 probabilities. The store keeps the
band + global form in float16/bfloat16 on the CPU (6.5 GB), or only what its reducers compute
on the fly (a K x K overview and per-head statistics per layer: a few hundred MB), so it fits
beside the model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import re
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from . import analysis
from .errors import InputError
from .unfold import SparseAttention, sparse_from_outputs
from .uploads import UPLOAD_TYPES

Tensor = torch.Tensor
FORMAT_VERSION = 1
METADATA_KEY = b"ledviz.metadata"
_SPARSE_FIELDS = ("band", "global_cols", "global_rows", "global_positions", "attention_mask")


def run_metadata(
    model_name: str | None = None,
    attention_window: int | Sequence[int] | None = None,
    global_attention_mask: Tensor | None = None,
    attention_mask: Tensor | None = None,
    text: str | Sequence[str] | None = None,
    offsets: Any = None,
    **extra: Any,
) -> dict:
    """JSON-ready description of a run: model, windows, global positions per element, text and offsets."""
    meta: dict[str, Any] = {"model_name": model_name}
    if attention_window is not None:
        meta["attention_window"] = [int(w) for w in np.atleast_1d(attention_window)]
    if global_attention_mask is not None:
        gm = global_attention_mask > 0
        if attention_mask is not None:
            gm = gm & (attention_mask > 0)
        meta["global_positions"] = [row.nonzero(as_tuple=True)[0].tolist() for row in gm]
    if text is not None:
        meta["text"] = text
    if offsets is not None:
        meta["offsets"] = torch.as_tensor(offsets).tolist()
    meta.update(extra)
    json.dumps(meta)  # fail here, not at save time, if something is not JSON
    return meta


# ---------------------------------------------------------------------------------------------
# what a run keeps
# ---------------------------------------------------------------------------------------------

@dataclass
class AttentionRun:
    """A run's attention: sparse layers, overviews (B, H, K, K), per-head statistics ({name: (B, H)}), metadata."""

    layers: dict[int, SparseAttention] = field(default_factory=dict)
    overviews: dict[int, Tensor] = field(default_factory=dict)
    stats: dict[int, dict[str, Tensor]] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @classmethod
    def from_outputs(cls, outputs: Any, global_attention_mask: Tensor | None = None, attention_mask: Tensor | None = None,
                     *, dtype: torch.dtype | None = torch.float16, metadata: dict | None = None) -> "AttentionRun":
        """Keep every encoder layer of a model output (ours or transformers') in sparse form."""
        layers = sparse_from_outputs(outputs, global_attention_mask, attention_mask, dtype=dtype)
        return cls(layers={sp.layer: sp for sp in layers}, metadata=dict(metadata or {}))

    def sparse_layers(self) -> list[SparseAttention]:
        """The kept sparse layers in layer order."""
        return [self.layers[k] for k in sorted(self.layers)]

    def stats_table(self) -> pd.DataFrame:
        """Per-head statistics as a tidy table (layer, batch, head, statistics)."""
        return analysis.stats_table(dict(sorted(self.stats.items())))

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors held."""
        total = sum(sp.nbytes for sp in self.layers.values())
        total += sum(t.numel() * t.element_size() for t in self.overviews.values())
        total += sum(t.numel() * t.element_size() for s in self.stats.values() for t in s.values())
        return total


# ---------------------------------------------------------------------------------------------
# the attention sink
# ---------------------------------------------------------------------------------------------

class AttentionStore:
    """Attention sink for the encoder: `model(..., attention_sink=store)` calls `store(layer, local, global)`.

    Built with the masks the model is run with. For each chosen layer it can keep the sparse form
    (`keep_sparse`, in `dtype` on `device`), a binned overview of every head (`overview_bins`) and
    per-head statistics (`stats`); `reducers` adds named callables `f(SparseAttention) -> Any`
    whose results land in `store.extras[layer][name]`. Everything is computed as the layer
    arrives, so only one layer's full-precision probabilities exist at a time.
    """

    def __init__(
        self,
        global_attention_mask: Tensor | None = None,
        attention_mask: Tensor | None = None,
        *,
        layers: Sequence[int] | None = None,
        dtype: torch.dtype = torch.float16,
        device: torch.device | str = "cpu",
        keep_sparse: bool = True,
        overview_bins: int | None = None,
        overview_reduce: str = "sum",
        stats: bool = False,
        reducers: Mapping[str, Callable[[SparseAttention], Any]] | None = None,
        metadata: dict | None = None,
    ):
        """Masks of the run the store will receive, and what to keep (see the class docstring)."""
        if dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise InputError(f"dtype must be float16, bfloat16 or float32, got {dtype}")
        self.global_attention_mask = global_attention_mask
        self.attention_mask = attention_mask
        self.layer_filter = None if layers is None else set(layers)
        self.dtype, self.device = dtype, device
        self.keep_sparse, self.overview_bins, self.overview_reduce = keep_sparse, overview_bins, overview_reduce
        self.compute_stats = stats
        self.reducers = dict(reducers or {})
        self.run = AttentionRun(metadata=dict(metadata or {}))
        self.extras: dict[int, dict[str, Any]] = {}
        self._row_stats: dict[int, Tensor] = {}  # layer -> (B, H, N, 4), from the encoder's fused kernel

    @property
    def wants_row_statistics(self) -> bool:
        """Whether the encoder should hand over per-row statistics (`row_statistics`) when its kernel computes them."""
        return self.compute_stats

    def row_statistics(self, layer_index: int, row_stats: Tensor) -> None:
        """Receive one layer's per-row statistics (B, H, N, 4) (analysis.head_stats' `row_stats`), before
        the layer's probabilities: its head statistics are then computed without reading the band again."""
        if self.layer_filter is None or layer_index in self.layer_filter:
            self._row_stats[layer_index] = row_stats

    def __call__(self, layer_index: int, local_probs: Tensor, global_probs: Tensor | None) -> None:
        """Receive one encoder layer: local (B, H, N, x + 2w + 1), global (B, H, N, x) or None."""
        if self.layer_filter is not None and layer_index not in self.layer_filter:
            return
        with torch.no_grad():
            gm, am = self.global_attention_mask, self.attention_mask
            dev = local_probs.device
            # reduce from the probabilities as the model made them, store in the chosen dtype
            reduces = self.overview_bins is not None or self.compute_stats or bool(self.reducers)
            sp = SparseAttention.from_layer(
                local_probs.detach(), None if global_probs is None else global_probs.detach(),
                None if gm is None else gm.to(dev), None if am is None else am.to(dev),
                layer=layer_index, dtype=None if reduces else self.dtype,
            )
            if self.overview_bins is not None:
                maps = [analysis.overview(sp, self.overview_bins, self.overview_reduce, batch=b) for b in range(sp.batch_size)]
                self.run.overviews[layer_index] = torch.stack(maps).to(self.device)
            row_stats = self._row_stats.pop(layer_index, None)
            if self.compute_stats:
                stats = analysis.head_stats(sp, row_stats=None if row_stats is None else row_stats.to(dev))
                self.run.stats[layer_index] = {k: v.to(self.device) for k, v in stats.items()}
            if self.reducers:
                self.extras[layer_index] = {name: f(sp) for name, f in self.reducers.items()}
            if self.keep_sparse:
                self.run.layers[layer_index] = sp.to(dtype=self.dtype, device=self.device)

    def clear(self) -> None:
        """Forget everything received (keeps the masks and options)."""
        self.run = AttentionRun(metadata=self.run.metadata)
        self.extras = {}

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors held."""
        return self.run.nbytes


def _as_run(run: AttentionRun | AttentionStore) -> AttentionRun:
    """The AttentionRun of a run or a store."""
    return run.run if isinstance(run, AttentionStore) else run


# ---------------------------------------------------------------------------------------------
# .npz
# ---------------------------------------------------------------------------------------------

def _to_numpy(t: Tensor) -> tuple[np.ndarray, str]:
    """Tensor -> (array, torch dtype name); bfloat16 travels as its uint16 bits."""
    t = t.detach().cpu()
    name = str(t.dtype).replace("torch.", "")
    if t.dtype == torch.bfloat16:
        return t.view(torch.uint16).numpy(), name
    return t.numpy(), name


def _from_numpy(a: np.ndarray, name: str) -> Tensor:
    """Inverse of `_to_numpy`."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.view(torch.bfloat16) if name == "bfloat16" else t


def save_npz(path: str | Path, run: AttentionRun | AttentionStore, metadata: dict | None = None,
             compressed: bool = True) -> Path:
    """Write the run's sparse layers, overviews and statistics to `path` (.npz), metadata as JSON inside."""
    run = _as_run(run)
    arrays: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    layer_info = {}

    def put(key: str, t: Tensor) -> None:
        """Add tensor `t` under `key`, remembering its dtype."""
        arrays[key], dtypes[key] = _to_numpy(t)

    for l, sp in run.layers.items():
        for name in _SPARSE_FIELDS:
            put(f"layer{l}.{name}", getattr(sp, name))
        layer_info[str(l)] = {"window": sp.window}
    for l, t in run.overviews.items():
        put(f"overview{l}", t)
    for l, stats in run.stats.items():
        for name, t in stats.items():
            put(f"stats{l}.{name}", t)
    manifest = {"format_version": FORMAT_VERSION, "dtypes": dtypes, "layers": layer_info,
                "metadata": {**run.metadata, **(metadata or {})}}
    arrays["manifest_json"] = np.array(json.dumps(manifest))
    path = Path(path)
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def load_npz(path: str | Path) -> AttentionRun:
    """Read a file written by `save_npz` back into an AttentionRun (no pickle involved)."""
    with np.load(path, allow_pickle=False) as data:
        manifest = json.loads(str(data["manifest_json"]))
        if manifest.get("format_version") != FORMAT_VERSION:
            raise InputError(f"{path} has format version {manifest.get('format_version')}, expected {FORMAT_VERSION}")
        dtypes = manifest["dtypes"]
        get = lambda key: _from_numpy(data[key], dtypes[key])  # noqa: E731
        run = AttentionRun(metadata=manifest["metadata"])
        for l in manifest["layers"]:
            fields = {name: get(f"layer{l}.{name}") for name in _SPARSE_FIELDS}
            run.layers[int(l)] = SparseAttention(**fields, layer=int(l))
        for key in dtypes:
            if key.startswith("overview"):
                run.overviews[int(key[len("overview"):])] = get(key)
            elif key.startswith("stats"):
                layer, name = key[len("stats"):].split(".", 1)
                run.stats.setdefault(int(layer), {})[name] = get(key)
    return run


# ---------------------------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------------------------

def _pyarrow():
    """Import pyarrow and pyarrow.parquet, or say how to get them."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as err:
        raise ImportError(
            "Parquet export needs pyarrow, which is not installed: `pip install pyarrow` "
            "(or use save_npz, which needs only numpy)"
        ) from err
    return pyarrow, pyarrow.parquet


def run_tables(run: AttentionRun | AttentionStore, include_entries: bool = False) -> dict[str, pd.DataFrame]:
    """The run as tidy tables: head_stats, overviews (non-zero blocks), and optionally every sparse entry.

    overviews: layer, batch, head, row_bin, col_bin, value. entries: layer, batch, head, query,
    key, value (one row per structural slot: for short sequences).
    """
    run = _as_run(run)
    tables = {"head_stats": run.stats_table()}
    frames = []
    for l, t in sorted(run.overviews.items()):
        b, h, r, c = t.nonzero(as_tuple=True)
        frames.append(pd.DataFrame({"layer": l, "batch": b.numpy(), "head": h.numpy(), "row_bin": r.numpy(),
                                    "col_bin": c.numpy(), "value": t[b, h, r, c].float().numpy()}))
    cols = ["layer", "batch", "head", "row_bin", "col_bin", "value"]
    tables["overviews"] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    if include_entries:
        frames = []
        for l, sp in sorted(run.layers.items()):
            for b in range(sp.batch_size):
                q, k, v = sp.entries(b)
                H = v.shape[0]
                frames.append(pd.DataFrame({
                    "layer": l, "batch": b, "head": np.repeat(np.arange(H), q.numel()),
                    "query": np.tile(q.cpu().numpy(), H), "key": np.tile(k.cpu().numpy(), H),
                    "value": v.reshape(-1).cpu().numpy(),
                }))
        cols = ["layer", "batch", "head", "query", "key", "value"]
        tables["entries"] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    return tables


def save_parquet(directory: str | Path, run: AttentionRun | AttentionStore, metadata: dict | None = None,
                 include_entries: bool = False) -> dict[str, Path]:
    """Write `run_tables` as `<name>.parquet` files in `directory`, each carrying the metadata JSON.

    The metadata also records the overview shapes, so `overview_from_table` can rebuild them.
    """
    pa, pq = _pyarrow()
    run = _as_run(run)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {**run.metadata, **(metadata or {}), "format_version": FORMAT_VERSION,
            "overview_shapes": {str(l): list(t.shape) for l, t in run.overviews.items()}}
    paths = {}
    for name, df in run_tables(run, include_entries).items():
        table = pa.Table.from_pandas(df, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: json.dumps(meta).encode()})
        paths[name] = directory / f"{name}.parquet"
        pq.write_table(table, paths[name])
    return paths


def load_parquet(directory: str | Path) -> tuple[dict[str, pd.DataFrame], dict]:
    """Read the tables written by `save_parquet`: ({name: DataFrame}, metadata)."""
    _, pq = _pyarrow()
    tables, meta = {}, {}
    for path in sorted(Path(directory).glob("*.parquet")):
        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(METADATA_KEY)
        if raw is not None:
            meta = json.loads(raw)
        tables[path.stem] = table.to_pandas()
    if not tables:
        raise InputError(f"no .parquet files in {directory}")
    return tables, meta


def overview_from_table(df: pd.DataFrame, layer: int, shape: Sequence[int]) -> Tensor:
    """Rebuild one layer's (B, H, K, K) overview from the `overviews` table."""
    out = torch.zeros(tuple(shape), dtype=torch.float32)
    part = df[df["layer"] == layer]
    idx = [torch.tensor(part[c].to_numpy(), dtype=torch.long) for c in ("batch", "head", "row_bin", "col_bin")]
    out[idx[0], idx[1], idx[2], idx[3]] = torch.tensor(part["value"].to_numpy(), dtype=torch.float32)
    return out


# ---------------------------------------------------------------------------------------------
# bertviz
# ---------------------------------------------------------------------------------------------

def to_bertviz(
    attn: SparseAttention | Sequence[SparseAttention] | AttentionRun | AttentionStore,
    batch: int = 0,
    max_tokens: int = 512,
    trim_padding: bool = True,
) -> tuple[Tensor, ...]:
    """bertviz `head_view(attention=...)` input: one (1, H, n, n) float32 map per layer of one element.

    Padding is cut off (n = number of non-padding tokens, which must be at the start as with
    right padding); pass the matching `tokens[:n]` to bertviz. Refuses more than `max_tokens`.
    """
    if isinstance(attn, (AttentionRun, AttentionStore)):
        layers = _as_run(attn).sparse_layers()
    else:
        layers = [attn] if isinstance(attn, SparseAttention) else list(attn)
    if not layers:
        raise InputError("no sparse layer to convert: keep them (AttentionStore(keep_sparse=True))")
    out = []
    for sp in layers:
        n = int(sp.attention_mask[batch].sum()) if trim_padding else sp.seq_len
        if n > max_tokens:
            raise InputError(f"{n} tokens is too many for bertviz (max_tokens={max_tokens}); use ledviz.analysis views")
        out.append(analysis.zoom(sp, (0, n), (0, n), batch=batch)[None])  # (1, H, n, n)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# a pipeline run as files (the app's downloads)
# ---------------------------------------------------------------------------------------------

def _run_settings(result: Any) -> dict:
    return {k: v for k, v in result.settings.items() if k != "fingerprint"}


_TASK_WORDS = {"summarize": "summary", "qa": "qa"}  # a task as it reads in a file name
_NAME_PART_MAX = 40  # characters of the document's part of a file name
_KNOWN_SUFFIXES = (".json", ".npz", "-parquet.zip")


def _slug(text: str) -> str:
    """`text` in file-name-safe characters: ASCII letters (lower case), digits and single hyphens;
    accents dropped (é -> e), everything else a hyphen; at most _NAME_PART_MAX characters, cut at a hyphen."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > _NAME_PART_MAX:
        cut = slug[:_NAME_PART_MAX + 1]
        slug = (cut.rsplit("-", 1)[0] if "-" in cut else cut[:_NAME_PART_MAX]).strip("-")
    return slug


def run_file_name(result: Any, suffix: str) -> str:
    """The download name of a pipeline.RunResult's export: ledviz-<task>-<document>-<run><suffix>, e.g.
    "ledviz-summary-annual-report-2023-3fa9c2d1.json".

    <document> is the document's label (settings["document"]: a sample's title, an uploaded file's name
    without its extension, "pasted text") in safe characters (`_slug`), "document" when none is left;
    <run> the first 8 characters of the run's id (the same run gives the same name, two runs of one
    document two names), or of a digest of the document and output where the run has no id.
    `suffix`: one of ".json", ".npz", "-parquet.zip"."""
    if suffix not in _KNOWN_SUFFIXES:
        raise ValueError(f"suffix must be one of {_KNOWN_SUFFIXES}, got {suffix!r}")
    return _run_stem(result) + suffix


def figure_file_stem(result: Any, figure: str) -> str:
    """The download name, without its extension, of a figure of a pipeline.RunResult:
    ledviz-<task>-<document>-<run>-<figure> (the run's part as in run_file_name), e.g.
    "ledviz-summary-annual-report-2023-3fa9c2d1-attention-overview"; the page adds .html, .png or .svg."""
    part = _slug(figure)
    if not part:
        raise ValueError(f"figure must name the figure in letters or digits, got {figure!r}")
    return f"{_run_stem(result)}-{part}"


def _run_stem(result: Any) -> str:
    """ledviz-<task>-<document>-<run> of a run (run_file_name says how each part is made)."""
    task = _TASK_WORDS.get(result.task) or _slug(str(result.task)) or "run"
    label = str(result.settings.get("document") or "")
    stem, ext = os.path.splitext(label)
    if ext[1:].lower() in UPLOAD_TYPES and stem.strip():
        label = stem  # an uploaded file's name: its extension is not the document's name
    document = _slug(label) or "document"
    run = re.sub(r"[^a-z0-9]", "", str(result.settings.get("run_id") or "").lower())[:8]
    if not run:
        digest = hashlib.sha256(result.document.text.encode())
        digest.update(json.dumps([int(i) for i in result.output_ids]).encode())
        run = digest.hexdigest()[:8]
    return f"ledviz-{task}-{document}-{run}"


def run_settings_json(result: Any, view: Any = None) -> str:
    """A pipeline.RunResult's settings, the view shown (a views.View or None), the document's size,
    the output, timings and memory, as indented JSON."""
    doc = result.document
    data = {
        "settings": _run_settings(result),
        "view": None if view is None else {"layer": view.layer, "heads": view.heads, "reduce": view.reduce},
        "document": {"characters": len(doc.text), "tokens": doc.n_tokens, "truncated_tokens": doc.truncated_tokens,
                     "question": doc.question},
        "output": result.output_text,
        "timings": result.timings,
        "memory": result.memory,
        "stopped_early": result.stopped_early,
    }
    return json.dumps(data, indent=2, default=str)


def attention_run(result: Any) -> AttentionRun:
    """A pipeline.RunResult as an AttentionRun: its encoder layers and per-head statistics, with the
    model, windows, global positions, text, offsets, question, output and settings as metadata."""
    doc = result.document
    meta = run_metadata(
        model_name=str(result.settings.get("model")),
        attention_window=[2 * result.layers[k].window for k in sorted(result.layers)],
        global_attention_mask=result.global_mask, attention_mask=doc.attention_mask, text=doc.text,
        offsets=doc.offsets, question=doc.question, output_text=result.output_text,
        settings=_run_settings(result))
    return AttentionRun(layers=dict(result.layers), stats=dict(result.head_stats),
                        metadata=json.loads(json.dumps(meta)))


def run_npz_bytes(result: Any) -> bytes:
    """The .npz file of `attention_run(result)` (read it back with load_npz)."""
    with tempfile.TemporaryDirectory() as tmp:
        return save_npz(Path(tmp) / "run.npz", attention_run(result)).read_bytes()


def run_parquet_zip(result: Any, bins: int = 256) -> bytes:
    """A zip of the run's Parquet tables (save_parquet, with `bins`-bin overviews of every head) and
    its global-token statistics (global_tokens.parquet). Needs pyarrow."""
    run = attention_run(result)
    for l, sp in run.layers.items():
        run.overviews[l] = torch.stack([analysis.overview(sp, bins)])  # (1, H, K, K) for the table
    buf = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp:
        paths = list(save_parquet(tmp, run).values())
        stats = pd.concat([analysis.global_token_stats(sp) for sp in run.sparse_layers()], ignore_index=True)
        paths.append(Path(tmp) / "global_tokens.parquet")
        stats.to_parquet(paths[-1], index=False)
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for p in paths:
                z.write(p, arcname=Path(p).name)
    return buf.getvalue()


def parquet_available() -> bool:
    """Whether Parquet files can be written here (they need the pyarrow package)."""
    return importlib.util.find_spec("pyarrow") is not None
