"""The global-attention lab: one document under several global-attention choices, side by side.

For every setting: the generated output and its log-likelihood, the log-likelihood of one common
reference output (the reference setting's) so the numbers are comparable, time and memory, and
how far its attention maps are from the reference's. Map distances are computed from the sparse
band + global form (never an N x N map): per query the total variation 0.5 * sum_j |a_ij - b_ij|,
averaged over tokens. No Streamlit here: `pages/lab.py` only renders what this computes.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch

from . import analysis, device
from .errors import InputError
from .export import AttentionStore
from .runqueue import Stopped
from .pipeline import GLOBAL_CHOICES, Document, format_positions, LoadedModel, RunResult, peak_rss_mb, global_attention_mask, run, score_tokens
from .unfold import SparseAttention

Tensor = torch.Tensor
MAX_SETTINGS = 4
SUMMARY_COLUMNS = [
    "setting", "global_tokens", "output", "output_tokens", "log_likelihood", "logprob_per_token",
    "reference_log_likelihood", "reference_logprob_per_token", "mean_tv_vs_reference",
    "encode_s", "generate_s", "score_s", "total_s", "scores_mb", "attention_mb", "rss_growth_mb",
]


# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One global-attention choice: kind is a key of GLOBAL_CHOICES; k, positions, pattern as it needs."""

    kind: str
    k: int = 64
    positions: tuple[int, ...] = ()
    pattern: str | None = None

    @classmethod
    def of(cls, value: "Setting | Mapping[str, Any]") -> "Setting":
        """A Setting from itself or a dict(kind=..., k=..., positions=..., pattern=...)."""
        if isinstance(value, Setting):
            return value
        if not isinstance(value, Mapping) or "kind" not in value:
            raise InputError(f"a setting is a dict with a 'kind' ({', '.join(GLOBAL_CHOICES)}), got {value!r}")
        unknown = set(value) - {"kind", "k", "positions", "pattern"}
        if unknown:
            raise InputError(f"unknown setting keys {sorted(unknown)}: use kind, k, positions, pattern")
        kind = value["kind"]
        if kind not in GLOBAL_CHOICES:
            raise InputError(f"unknown global-attention choice {kind!r}; choose one of {', '.join(GLOBAL_CHOICES)}")
        k = value.get("k")
        positions = value.get("positions") or ()
        try:
            positions = tuple(int(p) for p in positions)
        except (TypeError, ValueError):
            raise InputError(f"positions must be whole numbers, got {value.get('positions')!r}") from None
        return cls(kind=kind, k=64 if k is None else int(k), positions=positions, pattern=value.get("pattern"))

    @property
    def label(self) -> str:
        """A short name for tables and legends."""
        if self.kind == "every_k":
            return "every token" if self.k == 1 else f"every {_ordinal(self.k)}"
        if self.kind == "positions":
            shown = format_positions(self.positions, ",")
            return f"positions {shown if len(shown) <= 24 else shown[:shown.rfind(',', 0, 24)] + '…'}"
        if self.kind == "pattern":
            return f"pattern /{self.pattern}/"
        return {"none": "none", "first": "first <s>", "question": "question", "sentences": "sentence starts"}[self.kind]

    def mask(self, doc: Document) -> Tensor:
        """The (1, N) global-attention mask of this setting on `doc` (InputError for bad input)."""
        return global_attention_mask(doc, self.kind, k=self.k, positions=list(self.positions), pattern=self.pattern)


# ---------------------------------------------------------------------------------------------
# the lab's settings as a file: exported, and read back (or a Summarize / QA run's settings file)
# ---------------------------------------------------------------------------------------------

LAB_FILE_FORMAT = "ledviz-lab-settings/1"
MAX_SETTINGS_FILE = 1_000_000  # bytes: a settings file is a few hundred (the uploader would take 200 MB)
LAB_FILE_KEYS = ("format", "task", "question", "reference", "max_new_tokens", "generate", "settings")
SETTING_FILE_KEYS = ("kind", "global_k", "positions", "pattern")
RUN_GLOBAL_KEYS = ("global_tokens", "global_k", "global_positions", "global_pattern")  # in a run's settings


def setting_fields(setting: Setting) -> dict[str, Any]:
    """A setting as the settings file writes it: its kind and what that kind needs (global_k, positions as
    typed, pattern)."""
    out: dict[str, Any] = {"kind": setting.kind}
    if setting.kind == "every_k":
        out["global_k"] = setting.k
    elif setting.kind == "positions":
        out["positions"] = format_positions(setting.positions)
    elif setting.kind == "pattern":
        out["pattern"] = setting.pattern
    return out


def lab_settings_json(*, task: str, settings: Sequence[Setting], reference: int, max_new_tokens: int,
                      generate: bool, question: str | None = None) -> str:
    """The lab's settings as indented JSON (read back by read_lab_settings)."""
    return json.dumps(dict(format=LAB_FILE_FORMAT, task=task, question=question or None, reference=int(reference),
                           max_new_tokens=int(max_new_tokens), generate=bool(generate),
                           settings=[setting_fields(s) for s in settings]), indent=2)


def _unknown(keys, known: Sequence[str], where: str) -> None:
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise InputError(f"{where} has unknown key{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(repr(str(k)) for k in unknown)}: the keys are {', '.join(known)}")


def _setting_from_file(value: Any, where: str) -> Setting:
    from .pipeline import check_k, parse_positions

    if not isinstance(value, Mapping):
        raise InputError(f"{where} must be an object like {{\"kind\": \"every_k\", \"global_k\": 64}}, got {value!r}"[:300])
    _unknown(value, SETTING_FILE_KEYS, where)
    kind = value.get("kind")
    if kind not in GLOBAL_CHOICES:
        raise InputError(f"{where} has the kind {kind!r}: use one of {', '.join(GLOBAL_CHOICES)}")
    try:
        if kind == "every_k":
            return Setting(kind, k=check_k(value.get("global_k", 64)))
        if kind == "positions":
            raw = value.get("positions", "")
            raw = ", ".join(map(str, raw)) if isinstance(raw, list) else str(raw)
            positions = parse_positions(raw)
            if not positions:
                raise InputError("give at least one position")
            return Setting(kind, positions=tuple(positions))
        if kind == "pattern":
            pattern = value.get("pattern")
            if not isinstance(pattern, str) or not pattern:
                raise InputError("give the pattern as a non-empty text (a regular expression)")
            return Setting(kind, pattern=pattern)
    except InputError as err:
        raise InputError(f"{where}: {err}") from None
    return Setting(kind)


def read_lab_settings(data: bytes | str, name: str = "the settings file") -> dict[str, Any]:
    """The lab's settings from a file lab_settings_json wrote, or from a Summarize / Question answering run's
    settings file (its Export tab's "Settings (JSON)": one setting, its global_tokens with global_k,
    global_positions or global_pattern). Returns dict(task, question, reference, max_new_tokens, generate,
    settings: list of Setting) with None for what the file does not say; InputError naming what is wrong
    (unknown keys by name, a wrong value, not JSON)."""
    if len(data) > MAX_SETTINGS_FILE:
        raise InputError(f"{name} is {len(data):,} bytes: a settings file is a few hundred; give the file the lab's "
                         "'Download the settings' wrote")
    try:
        obj = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{name} is not JSON ({e}): give a file the lab's 'Download the settings' wrote") from None
    if not isinstance(obj, dict):
        raise InputError(f"{name} holds {type(obj).__name__}, not an object of settings")
    if "format" not in obj and isinstance(obj.get("settings"), dict):  # a run's settings file
        run = obj["settings"]
        if "global_tokens" not in run:
            raise InputError(f"{name} is a run's settings file without global_tokens: export it again from a "
                             "run of this version")
        kind = run["global_tokens"]
        fields = {"kind": kind, "global_k": run.get("global_k"), "positions": run.get("global_positions"),
                  "pattern": run.get("global_pattern")}
        setting = _setting_from_file({k: v for k, v in fields.items() if v is not None}, f"{name}'s global_tokens")
        task = run.get("task") if run.get("task") in ("summarize", "qa") else None
        question = (obj.get("document") or {}).get("question") if isinstance(obj.get("document"), dict) else None
        return dict(task=task, question=question, reference=None, max_new_tokens=run.get("max_new_tokens"),
                    generate=None, settings=[setting])
    _unknown(obj, LAB_FILE_KEYS, name)
    if obj.get("format") != LAB_FILE_FORMAT:
        raise InputError(f"{name} has the format {obj.get('format')!r}, not {LAB_FILE_FORMAT!r}: give a file the "
                         "lab's 'Download the settings' wrote")
    task = obj.get("task", "summarize")
    if task not in ("summarize", "qa"):
        raise InputError(f"{name} has the task {task!r}: use 'summarize' or 'qa'")
    raw = obj.get("settings")
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_SETTINGS:
        raise InputError(f"{name} needs 'settings': a list of 2 to {MAX_SETTINGS} settings")
    settings = [_setting_from_file(v, f"setting {n + 1} of {name}") for n, v in enumerate(raw)]
    on_question = [n + 1 for n, st in enumerate(settings) if st.kind == "question"]
    if on_question and task != "qa":
        raise InputError(f"setting {on_question[0]} of {name} is on the question's tokens, but the task is {task!r}: "
                         "that choice needs the task 'qa'")
    reference = obj.get("reference", 0)
    if isinstance(reference, bool) or not isinstance(reference, int) or not 0 <= reference < len(settings):
        raise InputError(f"{name} has the reference {reference!r}: give the index of one of its settings, "
                         f"0 to {len(settings) - 1}")
    most = obj.get("max_new_tokens", 64)
    if isinstance(most, bool) or not isinstance(most, int) or most < 1:
        raise InputError(f"{name} has max_new_tokens {most!r}: give a whole number of 1 or more")
    generate = obj.get("generate", True)
    if not isinstance(generate, bool):
        raise InputError(f"{name} has generate {generate!r}: give true or false")
    question = obj.get("question")
    if question is not None and not isinstance(question, str):
        raise InputError(f"{name} has the question {question!r}: give a text, or null")
    return dict(task=task, question=question, reference=reference, max_new_tokens=most, generate=generate,
                settings=settings)


def _ordinal(n: int) -> str:
    """2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 22nd, 64th, 101st."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def unique_labels(settings: Sequence[Setting]) -> list[str]:
    """Labels, numbered where two settings would read the same."""
    labels = [s.label for s in settings]
    return [f"{lab} ({n + 1})" if labels.count(lab) > 1 else lab for n, lab in enumerate(labels)]


# ---------------------------------------------------------------------------------------------
# encoding and scoring
# ---------------------------------------------------------------------------------------------

@torch.inference_mode()
def encode(loaded: LoadedModel, doc: Document, global_mask: Tensor, attention_dtype: torch.dtype = torch.float16
           ) -> tuple[dict[int, SparseAttention], Any, float]:
    """Run the encoder once: (sparse attention per layer, encoder output, seconds)."""
    store = AttentionStore(global_mask, doc.attention_mask, dtype=attention_dtype)
    t = time.perf_counter()
    enc = loaded.model.get_encoder()(doc.input_ids, attention_mask=doc.attention_mask,
                                     global_attention_mask=global_mask, attention_sink=store)
    return dict(store.run.layers), enc, time.perf_counter() - t


@torch.inference_mode()
def score_output(loaded: LoadedModel, doc: Document, global_mask: Tensor, output_ids: Sequence[int],
                 encoder_outputs: Any = None) -> list[float]:
    """log p(y_t | y_<t, document) of each token of `output_ids` (decoder start token first) under a setting."""
    ids = torch.as_tensor(list(output_ids), dtype=torch.long, device=doc.input_ids.device)[None]
    if ids.shape[1] < 2:
        return []
    model = loaded.model
    if encoder_outputs is None:
        encoder_outputs = model.get_encoder()(doc.input_ids, attention_mask=doc.attention_mask,
                                              global_attention_mask=global_mask)
    out = model(attention_mask=doc.attention_mask, encoder_outputs=encoder_outputs, decoder_input_ids=ids[:, :-1],
                use_cache=False)
    return score_tokens(out.logits, ids)


# ---------------------------------------------------------------------------------------------
# distances between attention maps, from the sparse form
# ---------------------------------------------------------------------------------------------

def _layers_of(run_or_layers: Any) -> Mapping[int, SparseAttention]:
    """The per-layer sparse attention of a RunResult, SettingResult or {layer: SparseAttention}."""
    layers = getattr(run_or_layers, "layers", run_or_layers)
    if not isinstance(layers, Mapping):
        raise InputError(f"expected a run (with .layers) or a {{layer: SparseAttention}} mapping, got {type(run_or_layers).__name__}")
    return layers


def _check_pair(a: SparseAttention, b: SparseAttention) -> None:
    """Raise InputError unless a and b are the same layer shape on the same document."""
    if a.band.shape != b.band.shape or a.batch_size != 1:
        raise InputError(
            f"attention maps of different shapes {tuple(a.band.shape)} and {tuple(b.band.shape)} cannot be "
            "compared: both runs must read the same document with the same model (batch of one)"
        )
    if not torch.equal(a.attention_mask, b.attention_mask):
        raise InputError("the two runs have different padding: compare runs of the same document")


def _canonical_rows(sp: SparseAttention, keys: Tensor) -> Tensor:
    """(H, N, 2w+1+g) float32: every non-global query's row over its window and the keys `keys` (g,), sorted.

    A key of `keys` inside query i's window is always held in the window slot (LED stores a
    *global* key there in a global column instead), so two runs with different global tokens put
    the same (i, j) in the same place and rows compare entry by entry.
    """
    H, N, W = sp.band.shape[1:]
    w, g = sp.window, keys.numel()
    band = sp.band[0].float().permute(1, 2, 0).clone()  # (N, 2w+1, H)
    extra = band.new_zeros(N, g, H)
    used = sp.global_used[0].nonzero().flatten()
    if len(used):
        slot = torch.searchsorted(keys, sp.global_positions[0, used])
        extra[:, slot] = sp.global_cols[0][:, :, used].float().permute(1, 2, 0)
    if g:
        off = torch.arange(-w, w + 1)
        rows = keys[:, None] - off[None, :]  # (g, 2w+1): queries whose window holds key p at offset `off`
        inside = (rows >= 0) & (rows < N)
        r = rows[inside]
        u = torch.arange(g)[:, None].expand(g, W)[inside]
        s = (w + off)[None, :].expand(g, W)[inside]
        band.index_put_((r, s), extra[r, u], accumulate=True)
        extra[r, u] = 0.0
    return torch.cat([band, extra], dim=1).permute(2, 0, 1)  # (H, N, 2w+1+g)


def _full_rows(sp: SparseAttention, rows: Tensor) -> Tensor:
    """(H, R, N) float32: the whole rows of the queries `rows` (R,) of batch element 0."""
    H, N, W = sp.band.shape[1:]
    w = sp.window
    out = torch.zeros(H, rows.numel(), N + 2 * w)  # keys shifted by w, so the window never falls off
    idx = (rows[:, None] + torch.arange(W)[None, :]).expand(H, -1, -1)  # (H, R, 2w+1): key i + s - w, shifted
    out.scatter_(2, idx, sp.band[0][:, rows].float())
    out = out[..., w: w + N]
    used = sp.global_used[0].nonzero().flatten()
    if len(used):
        out[:, :, sp.global_positions[0, used]] += sp.global_cols[0][:, rows][:, :, used].float()
        slot = sp.global_slot[0, rows]  # (R,): a global query's row comes from global_rows
        mine = (slot >= 0).nonzero().flatten()
        out[:, mine] = sp.global_rows[0][:, slot[mine]].float()
    return out


def row_distances(a: SparseAttention, b: SparseAttention) -> Tensor:
    """(H, N) total variation 0.5 * sum_j |a_ij - b_ij| between the two maps' rows (0 on padding)."""
    _check_pair(a, b)
    ga = a.global_positions[0][a.global_used[0]]
    gb = b.global_positions[0][b.global_used[0]]
    keys = torch.unique(torch.cat([ga, gb]))  # sorted
    tv = 0.5 * (_canonical_rows(a, keys) - _canonical_rows(b, keys)).abs().sum(-1)  # (H, N)
    # a global query's row spans the whole document: compare those rows in full
    if keys.numel():
        tv[:, keys] = 0.5 * (_full_rows(a, keys) - _full_rows(b, keys)).abs().sum(-1)
    return tv * a.attention_mask[0].float()


def mean_distance(a: SparseAttention, b: SparseAttention, head: int | None = None) -> float:
    """Mean over tokens (and over heads when head is None) of the row total variation, in [0, 1]."""
    tv = row_distances(a, b)
    tv = tv if head is None else tv[head: head + 1]
    n = max(int(a.attention_mask[0].sum()), 1)
    return float(tv.sum(-1).mean() / n)


def layer_distances(run_a: Any, run_b: Any) -> pd.DataFrame:
    """Tidy (layer, head, tv) table: mean row total variation per head of every layer both runs kept."""
    la, lb = _layers_of(run_a), _layers_of(run_b)
    rows = []
    for layer in sorted(set(la) & set(lb)):
        tv = row_distances(la[layer], lb[layer])
        n = max(int(la[layer].attention_mask[0].sum()), 1)
        for h, v in enumerate((tv.sum(-1) / n).tolist()):
            rows.append(dict(layer=layer, head=h, tv=v))
    return pd.DataFrame(rows, columns=["layer", "head", "tv"])


@dataclass
class AttentionDifference:
    """Where two runs' maps differ, for some layers and heads (their mean).

    binned (K, K): run_a - run_b of the mean attention a query of bin r pays to the keys of bin c;
    binned_a / binned_b: the two maps; edges: bin k covers tokens [edges[k], edges[k + 1]);
    per_token (N,): row total variation (mean over the heads and layers); mean_tv: its mean over tokens.
    """

    layers: list[int]
    heads: list[int] | None  # None: every head
    binned: Tensor
    edges: list[int]
    per_token: Tensor
    mean_tv: float
    binned_a: Tensor
    binned_b: Tensor


def _as_list(value: int | Sequence[int] | None) -> list[int] | None:
    return None if value is None else [int(value)] if isinstance(value, int) else [int(v) for v in value]


def attention_difference(run_a: Any, run_b: Any, layer: int | Sequence[int] | None = None,
                         head: int | Sequence[int] | None = None, bins: int = 64) -> AttentionDifference:
    """Binned difference map and per-token distance between two runs of one document.

    layer / head: one, several (their mean) or None (all). Rows are compared per head, then averaged.
    """
    la, lb = _layers_of(run_a), _layers_of(run_b)
    layers = _as_list(layer) or sorted(set(la) & set(lb))
    missing = [l for l in layers if l not in la or l not in lb]
    if missing or not layers:
        raise InputError(f"layers {missing or layers} were not kept by both runs (they have {sorted(la)} and {sorted(lb)})")
    first = la[layers[0]]
    heads = _as_list(head)
    if heads is not None and (not heads or not all(0 <= h < first.num_heads for h in heads)):
        raise InputError(f"heads must be between 0 and {first.num_heads - 1}, got {heads}")
    N = first.seq_len
    edges = analysis.bin_edges(N, bins)
    sizes = torch.tensor([e1 - e0 for e0, e1 in zip(edges[:-1], edges[1:])], dtype=torch.float32)
    pick = slice(None) if heads is None else heads

    def binned(sp: SparseAttention) -> Tensor:
        ov = analysis.overview(sp, bins, "sum") / sizes[None, :, None]  # (H, K, K): mean row mass per block
        return ov[pick].mean(0)

    ba = torch.stack([binned(la[l]) for l in layers]).mean(0)
    bb = torch.stack([binned(lb[l]) for l in layers]).mean(0)
    per_token = torch.stack([row_distances(la[l], lb[l])[pick].mean(0) for l in layers]).mean(0)  # (N,)
    n = max(int(first.attention_mask[0].sum()), 1)
    return AttentionDifference(layers, heads, ba - bb, edges, per_token, float(per_token.sum() / n), ba, bb)


# ---------------------------------------------------------------------------------------------
# the comparison
# ---------------------------------------------------------------------------------------------

@dataclass
class SettingResult:
    """One setting's run: its mask, attention per layer, output and scores, time and memory."""

    setting: Setting
    label: str
    global_mask: Tensor  # (1, N)
    layers: dict[int, SparseAttention]
    run: RunResult | None = None  # None when nothing was generated
    reference_logprobs: list[float] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)

    @property
    def global_positions(self) -> list[int]:
        return self.global_mask[0].nonzero().flatten().tolist()

    @property
    def output_text(self) -> str:
        return self.run.output_text if self.run is not None else ""

    @property
    def output_ids(self) -> list[int]:
        return self.run.output_ids if self.run is not None else []

    @property
    def log_likelihood(self) -> float | None:
        return self.run.log_likelihood if self.run is not None and self.run.token_logprobs else None

    @property
    def reference_log_likelihood(self) -> float | None:
        return float(sum(self.reference_logprobs)) if self.reference_logprobs else None


@dataclass
class Comparison:
    """The results of `compare_settings`, in the order of the settings; `reference` indexes the reference one."""

    document: Document
    task: str
    results: list[SettingResult]
    reference: int
    distances: pd.DataFrame  # (setting, layer, head, tv) against the reference
    summary: pd.DataFrame  # one row per setting, SUMMARY_COLUMNS
    generated: bool
    load: tuple[float | None, float | None] = (None, None)  # the machine's load average at the start and end

    def timing_note(self) -> str:
        """Which machine took the times, and how busy it was (device.timing_note)."""
        return device.timing_note(*self.load)

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.results]

    def layer_table(self) -> pd.DataFrame:
        """(layer x setting) mean over heads of the row distance to the reference."""
        if self.distances.empty:
            return pd.DataFrame()
        return self.distances.groupby(["layer", "setting"], sort=False)["tv"].mean().unstack("setting")[self.labels]

    def difference(self, a: int, b: int, layer: int | Sequence[int] | None = None,
                   head: int | Sequence[int] | None = None, bins: int = 64) -> AttentionDifference:
        """`attention_difference` between settings a and b (indices)."""
        for idx in (a, b):
            if not 0 <= idx < len(self.results):
                raise InputError(f"setting index {idx} is out of range (0 to {len(self.results) - 1})")
        return attention_difference(self.results[a], self.results[b], layer, head, bins)


def scores_mb(layers: Mapping[int, SparseAttention]) -> float:
    """MB of float32 probabilities the encoder computes for these layers: H x N x (2w + 1 + 2x) each."""
    total = sum(sp.num_heads * sp.seq_len * (2 * sp.window + 1 + 2 * int(sp.global_used[0].sum())) for sp in layers.values())
    return total * 4 / 2**20


def _per_token(logprobs: Sequence[float]) -> float | None:
    return float(sum(logprobs) / len(logprobs)) if logprobs else None


def compare_settings(
    loaded: LoadedModel,
    doc: Document,
    settings: Sequence[Setting | Mapping[str, Any]],
    *,
    task: str = "summarize",
    max_new_tokens: int = 32,
    reference: int = 0,
    generate: bool = True,
    warmup: bool = True,
    progress: Callable[[str, float], None] | None = None,
    stop_event: threading.Event | None = None,
    **generation: Any,
) -> Comparison:
    """Run `doc` under 2 to 4 global-attention settings and compare them with the reference setting.

    generate=True: each setting generates its output (`ledviz.pipeline.run`); then the reference
    setting's output is scored under every setting. generate=False: encoder only (attention maps,
    encoding time and memory; no outputs or likelihoods). warmup: one untimed encoder pass first, so
    the first setting's time is comparable. Bad settings raise InputError before any work is done.
    `stop_event` (set by a Cancel) ends the comparison at the next step, generation included, with
    runqueue.Stopped: a comparison with some settings missing would compare nothing.
    """
    parsed = [Setting.of(s) for s in settings]
    if not 1 <= len(parsed) <= MAX_SETTINGS:
        raise InputError(f"compare 1 to {MAX_SETTINGS} settings, got {len(parsed)}")
    if not 0 <= reference < len(parsed):
        raise InputError(f"the reference setting must be one of 0 to {len(parsed) - 1}, got {reference}")
    masks = [s.mask(doc) for s in parsed]  # every input error shows before the model runs
    labels = unique_labels(parsed)
    results: list[SettingResult] = []
    steps = len(parsed) * (2 if generate else 1)

    def check_stop() -> None:
        if stop_event is not None and stop_event.is_set():
            raise Stopped("the comparison stopped before it finished, so there is nothing to show")

    def report(what: str, step: int) -> None:
        check_stop()
        if progress:
            progress(what, min(1.0, step / steps))

    load_start = device.load_average()
    if warmup:  # the first pass pays one-off costs (allocator, kernels): keep them out of the timings
        report("warming up", 0)
        encode(loaded, doc, masks[0])
    for n, (setting, mask, label) in enumerate(zip(parsed, masks, labels)):
        report(f"{label}: {'encoding and generating' if generate else 'encoding'}", n)
        rss0 = peak_rss_mb()
        if generate:
            res = run(loaded, doc, mask, task=task, max_new_tokens=max_new_tokens, stop_event=stop_event, **generation)
            item = SettingResult(setting, label, mask, res.layers, res, timings=dict(res.timings),
                                 memory=dict(res.memory))
        else:
            layers, _, seconds = encode(loaded, doc, mask)
            att_mb = sum(sp.nbytes for sp in layers.values()) / 2**20
            item = SettingResult(setting, label, mask, layers, None, timings={"encode_s": seconds, "total_s": seconds},
                                 memory={"attention_mb": att_mb})
        item.memory["rss_growth_mb"] = max(0.0, peak_rss_mb() - rss0)
        results.append(item)

    # the reference output, scored under every setting
    check_stop()  # (a Cancel during the last setting's run ends here)
    ref_ids = results[reference].output_ids
    if generate and len(ref_ids) > 1:
        for n, item in enumerate(results):
            report(f"{item.label}: scoring the reference output", len(parsed) + n)
            t = time.perf_counter()
            item.reference_logprobs = score_output(loaded, doc, item.global_mask, ref_ids)
            item.timings["score_s"] = time.perf_counter() - t

    # attention maps against the reference
    ref = results[reference]
    parts = []
    for item in results:
        table = layer_distances(item, ref)
        table.insert(0, "setting", item.label)
        parts.append(table)
    distances = pd.concat(parts, ignore_index=True)
    summary = pd.DataFrame([
        dict(
            setting=item.label,
            global_tokens=len(item.global_positions),
            output=item.output_text if generate else None,
            output_tokens=max(len(item.output_ids) - 1, 0) if generate else None,
            log_likelihood=item.log_likelihood,
            logprob_per_token=_per_token(item.run.token_logprobs) if item.run is not None else None,
            reference_log_likelihood=item.reference_log_likelihood,
            reference_logprob_per_token=_per_token(item.reference_logprobs),
            mean_tv_vs_reference=float(distances.loc[distances.setting == item.label, "tv"].mean()),
            encode_s=item.timings.get("encode_s"),
            generate_s=item.timings.get("generate_s"),
            score_s=item.timings.get("score_s"),
            total_s=item.timings.get("total_s"),
            scores_mb=scores_mb(item.layers),
            attention_mb=item.memory.get("attention_mb"),
            rss_growth_mb=item.memory.get("rss_growth_mb"),
        )
        for item in results
    ], columns=SUMMARY_COLUMNS)
    report("done", steps)
    return Comparison(doc, task, results, reference, distances, summary, generate,
                      load=(load_start, device.load_average()))
