"""One document of a study under every setting: the rows, with metrics and attention statistics.

The work is the lab's (`ledviz.pipeline.run`, `ledviz.compare.score_output`,
`ledviz.compare.layer_distances`) done for many documents: no N x N map is ever built, the
per-layer statistics come from the sparse band + global form (`ledviz.analysis.head_stats`).
`Evaluator` loads the model once and turns records into rows; both engines use it.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections import Counter
from typing import Any, Iterable, Sequence

import torch

from .. import compare
from ..demo.data import exact_match, key_fact_recall, normalize_answer
from ..errors import InputError, LedvizError
from ..pipeline import LoadedModel, load_model, peak_rss_mb, prepare_document, run
from .corpus import Record
from .spec import StudySpec, setting_text

# every column of a row; KEY identifies it, COST varies from run to run (time, memory, where), the
# rest is the result, identical whichever engine computed it
KEY_COLUMNS = ["doc_index", "doc_id", "setting_index"]
RESULT_COLUMNS = [
    "setting", "setting_spec", "is_reference", "n_tokens", "truncated_tokens", "global_tokens",
    "output", "output_tokens", "log_likelihood", "logprob_per_token",
    "reference_output_log_likelihood", "reference_log_likelihood", "reference_logprob_per_token",
    "rouge1", "rouge2", "rougeL", "exact_match", "token_f1", "key_fact_recall",
    "global_mass", "entropy", "attention_distance", "tv_to_reference",
    "layer_global_mass", "layer_entropy", "layer_attention_distance", "layer_tv_to_reference", "error",
]
COST_COLUMNS = ["encode_s", "generate_s", "score_s", "total_s", "peak_rss_mb", "rss_growth_mb", "attention_mb",
                "worker"]
COLUMNS = KEY_COLUMNS + RESULT_COLUMNS + COST_COLUMNS
LAYER_STATS = {"global_mass": "global_mass", "entropy": "entropy", "attention_distance": "mean_distance"}
METRICS = ["rouge1", "rouge2", "rougeL", "exact_match", "token_f1", "key_fact_recall", "log_likelihood",
           "logprob_per_token", "reference_output_log_likelihood", "reference_log_likelihood",
           "reference_logprob_per_token", "global_mass", "entropy", "attention_distance", "tv_to_reference",
           "global_tokens", "total_s"]


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------

def token_f1(prediction: str, answer: str) -> float:
    """F1 of the normalized tokens (bag of words) of a predicted and a true answer (SQuAD's QA F1)."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def rouge_scorer():
    """A rouge-score scorer for ROUGE-1, -2 and -L (F-measure, Porter stemming)."""
    try:
        from rouge_score import rouge_scorer as rs
    except ImportError:
        raise InputError("ROUGE needs the rouge-score package: pip install rouge-score "
                         "(or pip install 'ledviz[study]')") from None
    return rs.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def task_metrics(task: str, output: str, record: Record, scorer) -> dict[str, float | None]:
    """ROUGE against the reference, QA exact match and token F1, key-fact recall (where they apply)."""
    m: dict[str, float | None] = dict(rouge1=None, rouge2=None, rougeL=None, exact_match=None, token_f1=None,
                                      key_fact_recall=None)
    if record.reference:
        scores = scorer.score(record.reference, output)
        m.update({k: float(scores[k].fmeasure) for k in ("rouge1", "rouge2", "rougeL")})
        if task == "qa":
            m["exact_match"] = exact_match(output, record.reference)
            m["token_f1"] = token_f1(output, record.reference)
    if record.facts and task == "summarize":
        m["key_fact_recall"] = key_fact_recall(output, record.facts)
    return m


def weights_hash(loaded: LoadedModel) -> str:
    """sha256 of the model's weights (names, dtypes, shapes and bytes), whatever file they came from."""
    h = hashlib.sha256()
    for name, t in sorted(loaded.model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# one document
# ---------------------------------------------------------------------------------------------

def _per_token(logprobs: Sequence[float]) -> float | None:
    return float(sum(logprobs) / len(logprobs)) if logprobs else None


def _layer_means(stats: dict[int, dict[str, torch.Tensor]], name: str) -> list[float]:
    return [float(stats[layer][name].float().mean()) for layer in sorted(stats)]


def _mean(values: Sequence[float] | None) -> float | None:
    return float(sum(values) / len(values)) if values else None


class Evaluator:
    """Loads the model once; `rows(record, pending)` runs one document under the study's settings.

    expected_weights: refuse to run if the loaded weights differ (a cluster node with other files).
    threads: torch intra-op threads (None: leave torch's default); device: where the model runs
    (None: where it was loaded, the CPU).
    """

    def __init__(self, spec: StudySpec, expected_weights: str | None = None, threads: int | None = None,
                 loaded: LoadedModel | None = None, device: str | None = None):
        if threads:
            torch.set_num_threads(int(threads))
        self.spec = spec
        self.loaded = loaded if loaded is not None else load_model(spec.model)
        self.device = torch.device(device) if device else None
        if self.device is not None:
            self.loaded.model.to(self.device)
        self.weights = weights_hash(self.loaded)
        if expected_weights is not None and self.weights != expected_weights:
            raise InputError(f"the model {spec.model or 'embedded'!r} on {socket.gethostname()} has other weights "
                             f"(sha256 {self.weights[:12]}…) than the study's ({expected_weights[:12]}…): "
                             "every worker must read the same checkpoint")
        self.scorer = rouge_scorer()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def reference_ids(self, text: str) -> list[int]:
        """The corpus reference as decoder ids (decoder start token first), cut to the decoder's length."""
        cfg = self.loaded.config
        limit = cfg.max_decoder_position_embeddings
        ids = self.loaded.tokenizer(text, truncation=True, max_length=limit - 1)["input_ids"]
        return [cfg.decoder_start_token_id, *ids]

    @torch.inference_mode()
    def encode(self, doc, mask):
        """The encoder's output under `mask` (no attention kept), shared by the scoring passes."""
        return self.loaded.model.get_encoder()(doc.input_ids, attention_mask=doc.attention_mask,
                                               global_attention_mask=mask)

    def rows(self, record: Record, pending: Iterable[int] | None = None) -> list[dict[str, Any]]:
        """The rows of `record` for the settings `pending` (indices; None: all), reference first.

        A setting that cannot run on this document (e.g. a position past its end) gives a row with
        its `error` and no metrics; the reference always runs, since every row is compared with it.
        """
        spec, loaded = self.spec, self.loaded
        wanted = sorted(set(range(len(spec.settings)) if pending is None else pending))
        labels = spec.labels
        doc = prepare_document(loaded, record.text, record.question if spec.task == "qa" else None,
                               max_tokens=spec.max_tokens)
        if self.device is not None:
            doc.input_ids, doc.attention_mask = doc.input_ids.to(self.device), doc.attention_mask.to(self.device)
        ref_text_ids = self.reference_ids(record.reference) if record.reference else None
        order = [spec.reference] + [n for n in wanted if n != spec.reference]
        ref_res = None
        rows = []
        for n in order:
            setting = spec.settings[n]
            row: dict[str, Any] = {c: None for c in COLUMNS}
            row.update(doc_index=record.index, doc_id=record.id, setting_index=n, setting=labels[n],
                       setting_spec=setting_text(setting), is_reference=n == spec.reference,
                       n_tokens=doc.n_tokens, truncated_tokens=doc.truncated_tokens, worker=self.worker)
            torch.manual_seed(spec.seed)
            rss0 = peak_rss_mb()
            try:
                mask = setting.mask(doc).to(doc.input_ids.device)
                res = run(loaded, doc, mask, task=spec.task, **spec.generation)
            except LedvizError as err:
                row["error"] = str(err)
                if n in wanted:
                    rows.append(row)
                continue
            t = time.perf_counter()
            scores_ref_output = n != spec.reference and ref_res is not None
            enc = self.encode(doc, mask) if scores_ref_output or ref_text_ids is not None else None
            if n == spec.reference:
                row["reference_output_log_likelihood"] = res.log_likelihood if res.token_logprobs else None
            elif scores_ref_output:
                lp = compare.score_output(loaded, doc, mask, ref_res.output_ids, encoder_outputs=enc)
                row["reference_output_log_likelihood"] = float(sum(lp)) if lp else None
            if ref_text_ids is not None:
                lp = compare.score_output(loaded, doc, mask, ref_text_ids, encoder_outputs=enc)
                row["reference_log_likelihood"] = float(sum(lp)) if lp else None
                row["reference_logprob_per_token"] = _per_token(lp)
            score_s = time.perf_counter() - t
            if n == spec.reference:
                ref_res = res
                tv = [0.0] * len(res.layers)
            elif ref_res is not None:
                table = compare.layer_distances(res, ref_res)
                tv = table.groupby("layer")["tv"].mean().sort_index().tolist()
            else:
                tv = None
            row.update(
                global_tokens=len(res.global_positions), output=res.output_text,
                output_tokens=max(len(res.output_ids) - 1, 0),
                log_likelihood=res.log_likelihood if res.token_logprobs else None,
                logprob_per_token=_per_token(res.token_logprobs),
                # scored as the model wrote it: output_text is for display, without a partial last character
                **task_metrics(spec.task, loaded.tokenizer.decode(res.output_ids, skip_special_tokens=True).strip(),
                               record, self.scorer),
                layer_tv_to_reference=tv, tv_to_reference=_mean(tv),
                encode_s=res.timings.get("encode_s"), generate_s=res.timings.get("generate_s"),
                score_s=score_s + res.timings.get("trace_s", 0.0),
                total_s=res.timings.get("total_s", 0.0) + score_s,
                attention_mb=res.memory.get("attention_mb"), peak_rss_mb=peak_rss_mb(),
                rss_growth_mb=max(0.0, peak_rss_mb() - rss0),
            )
            for col, stat in LAYER_STATS.items():
                per_layer = _layer_means(res.head_stats, stat)
                row[f"layer_{col}"] = per_layer
                row[col] = _mean(per_layer)
            if n in wanted:
                rows.append(row)
        return sorted(rows, key=lambda r: r["setting_index"])
