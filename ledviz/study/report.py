"""A study's results as evidence: per-setting means with 95% bootstrap intervals, paired differences
against the reference setting, figures, and a self-contained HTML report.

Intervals are percentile bootstrap intervals over documents (resampling documents with
replacement, `n_boot` times, a fixed seed); paired differences resample the per-document
differences, so each document is compared with itself under the reference setting.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import InputError
from ..loading import did_you_mean
from ..plots import wrap_title
from ..text import count
from .evaluate import METRICS
from .store import describe_machine, read_documents, read_manifest, read_rows, record_of

N_BOOT = 2000
LEVEL = 0.95
LAYER_COLUMNS = {"layer_global_mass": "share of attention on global tokens",
                 "layer_entropy": "entropy (nats)",
                 "layer_attention_distance": "mean attention distance (tokens)",
                 "layer_tv_to_reference": "total variation to the reference"}
METRIC_NAMES = {
    "rouge1": "ROUGE-1 F", "rouge2": "ROUGE-2 F", "rougeL": "ROUGE-L F", "exact_match": "QA exact match",
    "token_f1": "QA token F1", "key_fact_recall": "key-fact recall", "log_likelihood": "own output log-lik.",
    "logprob_per_token": "own output log p / token",
    "reference_output_log_likelihood": "reference setting's output log-lik.",
    "reference_log_likelihood": "corpus reference log-lik.", "reference_logprob_per_token": "corpus reference log p / token",
    "global_mass": "share of attention on global tokens", "entropy": "attention entropy (nats)",
    "attention_distance": "mean attention distance (tokens)", "tv_to_reference": "total variation to the reference",
    "global_tokens": "global tokens", "total_s": "seconds per document and setting",
}
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728", "#8c564b", "#e377c2", "#7f7f7f"]


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------

def bootstrap_interval(values: Sequence[float], n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL
                       ) -> tuple[float, float, float]:
    """(mean, low, high): the mean of `values` and its percentile bootstrap interval.

    Draws `n_boot` resamples of len(values) indices with numpy's default_rng(seed).integers, takes
    each resample's mean and the (1 - level)/2 and (1 + level)/2 quantiles (numpy's linear method).
    NaN values are dropped; no values give NaNs; one value gives (v, v, v).
    """
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return (float("nan"),) * 3
    mean = float(v.mean())
    if v.size == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return mean, float(lo), float(hi)


def available_metrics(rows: pd.DataFrame, metrics: Sequence[str] | None = None) -> list[str]:
    """The metrics (default METRICS) with at least one value in `rows`."""
    return [m for m in (metrics or METRICS) if m in rows and pd.to_numeric(rows[m], errors="coerce").notna().any()]


def summary_table(rows: pd.DataFrame, metrics: Sequence[str] | None = None, n_boot: int = N_BOOT, seed: int = 0
                  ) -> pd.DataFrame:
    """Per setting and metric: n (documents with a value), mean, low and high of the 95% interval."""
    out = []
    for (idx, setting), group in rows.groupby(["setting_index", "setting"], sort=True):
        for m in available_metrics(rows, metrics):
            vals = pd.to_numeric(group[m], errors="coerce").to_numpy(dtype=float)
            mean, lo, hi = bootstrap_interval(vals, n_boot, seed)
            out.append(dict(setting_index=int(idx), setting=setting, metric=m, n=int(np.sum(~np.isnan(vals))),
                            mean=mean, low=lo, high=hi))
    return pd.DataFrame(out, columns=["setting_index", "setting", "metric", "n", "mean", "low", "high"])


def paired_differences(rows: pd.DataFrame, reference: int, metrics: Sequence[str] | None = None,
                       n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Per setting (but the reference) and metric: mean of (setting - reference) over the documents
    where both have a value, with its 95% bootstrap interval; `excludes_zero` when the interval does."""
    ref = rows[rows["setting_index"] == reference].set_index("doc_index")
    out = []
    for (idx, setting), group in rows.groupby(["setting_index", "setting"], sort=True):
        if idx == reference:
            continue
        g = group.set_index("doc_index")
        for m in available_metrics(rows, metrics):
            if m in ("tv_to_reference",):  # already a comparison with the reference
                continue
            a = pd.to_numeric(g[m], errors="coerce")
            b = pd.to_numeric(ref[m], errors="coerce").reindex(a.index)
            d = (a - b).dropna().to_numpy(dtype=float)
            mean, lo, hi = bootstrap_interval(d, n_boot, seed)
            out.append(dict(setting_index=int(idx), setting=setting, metric=m, n=int(d.size), mean_difference=mean,
                            low=lo, high=hi, excludes_zero=bool(d.size > 1 and (lo > 0 or hi < 0))))
    return pd.DataFrame(out, columns=["setting_index", "setting", "metric", "n", "mean_difference", "low", "high",
                                      "excludes_zero"])


def wide(table: pd.DataFrame, value: str = "mean") -> pd.DataFrame:
    """A summary or difference table as setting x metric cells 'mean [low, high]'."""
    if table.empty:
        return pd.DataFrame()
    cell = table.apply(lambda r: f"{r[value]:.3f} [{r['low']:.3f}, {r['high']:.3f}]" if r["n"] else "–", axis=1)
    t = table.assign(cell=cell).pivot_table(index=["setting_index", "setting"], columns="metric", values="cell",
                                            aggfunc="first", sort=False)
    order = [m for m in METRICS if m in t.columns]
    t = t[order].rename(columns=lambda m: METRIC_NAMES.get(m, m)).reset_index(level=0, drop=True)
    t.columns.name = None
    return t


# ---------------------------------------------------------------------------------------------
# a loaded study
# ---------------------------------------------------------------------------------------------

@dataclass
class Study:
    """A results folder read back: rows, documents, manifest, and the tables and figures made of them."""

    path: Path
    manifest: dict[str, Any]
    rows: pd.DataFrame
    documents: pd.DataFrame
    n_boot: int = N_BOOT

    @property
    def reference(self) -> int:
        return int(self.manifest["spec"]["reference"])

    @property
    def task(self) -> str:
        return self.manifest["spec"]["task"]

    @property
    def settings(self) -> list[str]:
        return list(self.manifest["spec"]["settings"])

    @property
    def labels(self) -> list[str]:
        got = self.rows.drop_duplicates("setting_index").set_index("setting_index")["setting"].to_dict()
        return [got.get(n, s) for n, s in enumerate(self.settings)]

    @property
    def complete(self) -> bool:
        return len(self.rows) == self.manifest["documents"] * len(self.settings)

    def summary(self) -> pd.DataFrame:
        return summary_table(self.rows, n_boot=self.n_boot)

    def differences(self) -> pd.DataFrame:
        return paired_differences(self.rows, self.reference, n_boot=self.n_boot)

    def primary_metric(self) -> str:
        """The task metric the figures lead with."""
        order = (["token_f1", "exact_match", "rougeL"] if self.task == "qa"
                 else ["rougeL", "key_fact_recall", "rouge1"]) + ["reference_output_log_likelihood"]
        have = available_metrics(self.rows)
        return next((m for m in order if m in have), have[0] if have else "global_tokens")

    def record(self, doc_index: int):
        return record_of(self.documents, doc_index)

    def status(self) -> str:
        m = self.manifest
        done = len(self.rows)
        total = m["documents"] * len(self.settings)
        return (f"{count(m['documents'], 'document')} × {count(len(self.settings), 'setting')}: {done} of {total} rows "
                f"({'complete' if done == total else 'in progress or stopped: run the study again to finish'}); "
                f"model {m['model']['name']} (weights sha256 {m['model']['weights_sha256'][:12]}…), "
                f"task {self.task}, reference {self.labels[self.reference]}; times taken on " + self.machines())

    def machines(self) -> str:
        """Where each run of the study was timed and how busy the machine was (store.machine); a
        study run before that was recorded says so."""
        runs = self.manifest.get("runs") or [{}]
        said = [describe_machine(r.get("machine"), r.get("load_end")) + (
            f" ({r.get('engine')}, {count(r.get('workers'), 'worker')} × {count(r.get('threads'), 'thread')})"
            if r.get("machine") else "")
            for r in runs]
        return "; ".join(dict.fromkeys(said))


def load_study(path: str | os.PathLike, n_boot: int = N_BOOT) -> Study:
    """Read a results folder (InputError when it is not one)."""
    p = Path(os.path.expanduser(str(path)))
    if not p.exists():  # a typo, or a path on the user's own machine: the server reads its own disk
        hint = did_you_mean(str(path), hub=False)
        raise InputError(f"There is no folder {path} on the server: the path is read on the server's disk; give "
                         "the results folder a study run wrote (python -m ledviz.study run ... --out FOLDER)"
                         + (f"; {hint}" if hint else ""))
    if not p.is_dir():
        raise InputError(f"{path} is a file, not a folder: give the results folder of a study")
    manifest = read_manifest(p)
    return Study(p, manifest, read_rows(p), read_documents(p), n_boot)


# ---------------------------------------------------------------------------------------------
# figures (plotly; the app draws the same ones)
# ---------------------------------------------------------------------------------------------

def _esc(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _color(n: int) -> str:
    return COLORS[n % len(COLORS)]


def _titles(names: Sequence[str], width: int = 22) -> list[str]:
    """Subplot titles broken into lines of about `width` characters: four panels side by side at 1300 px ran
    their one-line titles into each other ("reference setting's output log-lik.total variation to ...")."""
    return [wrap_title(_esc(name), width) for name in names]


def _grid(n: int, titles: list[str], stacked: bool, **kwargs):
    """n panels side by side, or (stacked) one under another for a narrow screen: the figure, and where
    panel c (from 1) is, as add_trace's row= and col=."""
    n = max(1, n)
    fig = make_subplots(rows=n if stacked else 1, cols=1 if stacked else n, subplot_titles=titles,
                        vertical_spacing=0.5 / n if stacked else None, **kwargs)
    return fig, (lambda c: dict(row=c, col=1) if stacked else dict(row=1, col=c))


def _title(text: str, stacked: bool) -> str:
    """A figure's title, escaped; stacked (a narrow screen), broken into lines of about 40 characters."""
    return _titles([text], 40)[0] if stacked else _esc(text)


def _height(one_row: int, n: int, stacked: bool) -> int:
    """A figure's height: one row of panels, or n stacked panels of about 280 px each."""
    return max(one_row, 120 + 280 * n) if stacked else one_row


def distribution_figure(study: Study, metrics: Sequence[str] | None = None, stacked: bool = False) -> go.Figure:
    """Box plots (with every document as a point) of each metric, per setting."""
    rows = study.rows
    metrics = [m for m in (metrics or [study.primary_metric(), "reference_output_log_likelihood", "tv_to_reference",
                                       "total_s"]) if m in available_metrics(rows)]
    metrics = list(dict.fromkeys(metrics))
    fig, at = _grid(len(metrics), _titles([METRIC_NAMES.get(m, m) for m in metrics]), stacked)
    for c, m in enumerate(metrics, 1):
        for n, label in enumerate(study.labels):
            g = rows[rows["setting_index"] == n]
            fig.add_trace(go.Box(y=g[m], name=_esc(label), marker_color=_color(n), boxpoints="all", jitter=0.4,
                                 pointpos=0, showlegend=c == 1, legendgroup=str(n), text=g["doc_id"],
                                 hovertemplate="%{text}: %{y:.3f}<extra></extra>"), **at(c))
    fig.update_layout(title=_title("Metric distributions over documents (each point a document)", stacked),
                      height=_height(380, len(metrics), stacked),
                      margin=dict(l=10, r=10, t=90, b=10), legend=dict(orientation="h", y=-0.12))
    fig.update_xaxes(showticklabels=False)
    return fig


def layer_figure(study: Study, stacked: bool = False) -> go.Figure:
    """Per-layer attention statistics: mean over documents per setting, with 95% bootstrap intervals."""
    cols = [c for c in LAYER_COLUMNS if c in study.rows and study.rows[c].notna().any()]
    fig, at = _grid(len(cols), _titles([LAYER_COLUMNS[c] for c in cols]), stacked)
    for c, col in enumerate(cols, 1):
        for n, label in enumerate(study.labels):
            vals = [v for v in study.rows.loc[study.rows["setting_index"] == n, col] if v is not None and len(v)]
            if not vals:
                continue
            arr = np.array([np.asarray(v, dtype=float) for v in vals])  # (docs, layers)
            stats = [bootstrap_interval(arr[:, layer], study.n_boot) for layer in range(arr.shape[1])]
            mean = [s[0] for s in stats]
            fig.add_trace(go.Scatter(
                x=list(range(arr.shape[1])), y=mean, name=_esc(label), mode="lines+markers", line_color=_color(n),
                error_y=dict(type="data", symmetric=False, array=[s[2] - s[0] for s in stats],
                             arrayminus=[s[0] - s[1] for s in stats]),
                showlegend=c == 1, legendgroup=str(n)), **at(c))
        fig.update_xaxes(title_text="encoder layer", dtick=1, **at(c))
    fig.update_layout(title=_title("Encoder attention per layer (mean over documents, 95% interval)", stacked),
                      height=_height(360, len(cols), stacked),
                      margin=dict(l=10, r=10, t=90, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def cost_figure(study: Study, metric: str | None = None, stacked: bool = False) -> go.Figure:
    """The task metric and the time per document against the number of global tokens (each point a document)."""
    metric = metric or study.primary_metric()
    rows = study.rows
    fig, at = _grid(2, _titles([f"{METRIC_NAMES.get(metric, metric)} vs. global tokens",
                                "seconds per document vs. global tokens"], 30), stacked)
    for n, label in enumerate(study.labels):
        g = rows[rows["setting_index"] == n]
        hover = "%{text}<br>%{x} global tokens<br>%{y:.3f}<extra>" + _esc(label) + "</extra>"
        size = 6 + 14 * (g["total_s"] / max(float(rows["total_s"].max() or 1), 1e-9)).fillna(0)
        fig.add_trace(go.Scatter(x=g["global_tokens"], y=g[metric], mode="markers", name=_esc(label),
                                 marker=dict(color=_color(n), size=size, opacity=0.7), text=g["doc_id"],
                                 hovertemplate=hover, legendgroup=str(n)), **at(1))
        fig.add_trace(go.Scatter(x=g["global_tokens"], y=g["total_s"], mode="markers", name=_esc(label),
                                 marker=dict(color=_color(n), size=8, opacity=0.7), text=g["doc_id"],
                                 hovertemplate=hover, legendgroup=str(n), showlegend=False), **at(2))
    fig.update_xaxes(title_text="global tokens")
    fig.update_yaxes(title_text=METRIC_NAMES.get(metric, metric), **at(1))
    fig.update_yaxes(title_text="seconds", **at(2))
    fig.update_layout(title=_title("What global tokens cost and buy (marker size: time)", stacked), height=_height(380, 2, stacked),
                      margin=dict(l=10, r=10, t=90, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def difference_figure(study: Study, metrics: Sequence[str] | None = None, stacked: bool = False) -> go.Figure:
    """Paired differences against the reference with their 95% intervals."""
    diff = study.differences()
    metrics = list(metrics or dict.fromkeys([study.primary_metric(), "reference_output_log_likelihood", "total_s"]))
    diff = diff[diff["metric"].isin(metrics)]
    fig, at = _grid(len(metrics), _titles([METRIC_NAMES.get(m, m) for m in metrics]), stacked)
    for c, m in enumerate(metrics, 1):
        d = diff[diff["metric"] == m]
        fig.add_trace(go.Scatter(
            x=d["mean_difference"], y=[_esc(s) for s in d["setting"]], mode="markers",
            marker=dict(size=10, color=[_color(int(i)) for i in d["setting_index"]]),
            error_x=dict(type="data", symmetric=False, array=d["high"] - d["mean_difference"],
                         arrayminus=d["mean_difference"] - d["low"]),
            showlegend=False, hovertemplate="%{y}: %{x:.3f}<extra></extra>"), **at(c))
        fig.add_vline(x=0, line_dash="dot", line_color="gray", **at(c))
    ref = study.labels[study.reference]
    fig.update_layout(title=_title(f"Paired difference vs. the reference ({ref}), 95% interval", stacked),
                      height=_height(300, len(metrics), stacked),
                      margin=dict(l=10, r=10, t=90, b=10))
    return fig


def figures(study: Study, stacked: bool = False) -> dict[str, go.Figure]:
    """The study's figures; `stacked`: each figure's panels one under another (for a narrow screen)."""
    return {"distributions": distribution_figure(study, stacked=stacked),
            "differences": difference_figure(study, stacked=stacked),
            "layers": layer_figure(study, stacked=stacked), "cost": cost_figure(study, stacked=stacked)}


# ---------------------------------------------------------------------------------------------
# the HTML report
# ---------------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.meta{color:#555;font-size:13px}h1{font-size:22px}h2{font-size:17px;margin-top:28px}"""


def report_html(study: Study) -> str:
    """The whole report as one HTML page (plotly.js inlined once: it opens offline)."""
    m = study.manifest
    spec = m["spec"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>ledviz study {m['study_id']}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Global-attention study {html.escape(m['study_id'])}</h1>",
             f"<p class='meta'>{html.escape(study.status())}.<br>corpus {html.escape(str(spec['corpus']))}; "
             f"settings {html.escape(', '.join(study.labels))}; generation: max {spec['max_new_tokens']} new tokens, "
             f"{count(spec['num_beams'], 'beam')}; seed {spec['seed']}; packages "
             f"{html.escape(', '.join(f'{k} {v}' for k, v in m['packages'].items() if v))}. Intervals: 95% percentile "
             f"bootstrap over documents ({study.n_boot} resamples). Report made "
             f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC.</p>"]
    if study.rows.empty:
        parts.append("<p>No rows yet: run the study.</p></body></html>")
        return "".join(parts)
    parts.append("<h2>Per setting: mean [95% interval]</h2>")
    parts.append(wide(study.summary()).T.to_html(escape=True))
    parts.append(f"<h2>Paired differences vs. the reference ({html.escape(study.labels[study.reference])}): "
                 "mean [95% interval]</h2>")
    diff = wide(study.differences(), "mean_difference")
    parts.append(diff.T.to_html(escape=True) if not diff.empty else "<p>One setting only: nothing to compare.</p>")
    parts.append("<h2>Figures</h2>")
    for n, (name, fig) in enumerate(figures(study).items()):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=n == 0, div_id=f"fig-{name}"))
    parts.append("</body></html>")
    return "".join(parts)


def write_report(path: str | os.PathLike, out: str | os.PathLike | None = None, n_boot: int = N_BOOT) -> Path:
    """Write the HTML report of the results folder `path` (default: path/report.html); returns its path."""
    study = load_study(path, n_boot)
    target = Path(out) if out else study.path / "report.html"
    target.write_text(report_html(study), encoding="utf-8")
    return target
