"""Where an output came from: the output token by token, the passages (sentences) of the document
that hold the most of some attention, where an answer's text occurs in the document, and where
the question tokens looked. Library code: no Streamlit here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from . import analysis
from .pipeline import Document, RunResult

Passage = tuple[tuple[int, int], float, str]  # (character span, share of the attention, text)


def output_pieces(result: RunResult, tokenizer=None) -> list[str]:
    """The generated tokens (after the decoder start token) as text pieces (decoded one by one
    with `tokenizer` when given, else the run's token strings)."""
    ids = result.output_ids[1:]
    if tokenizer is not None:
        return [tokenizer.decode([t]) for t in ids]
    return list(result.output_tokens[1:])


def output_steps(result: RunResult, special_ids: Sequence[int] = ()) -> list[int]:
    """The output positions k (from 1) of the generated tokens that are not special tokens."""
    special = set(special_ids)
    return [k for k, t in enumerate(result.output_ids[1:], start=1) if t not in special]


def sentence_groups(doc: Document) -> analysis.TokenGroups:
    """The document's sentences as groups of its tokens (question and special tokens in none)."""
    offsets = [s if s is not None else (0, 0) for s in doc.text_spans()]
    return analysis.token_groups(doc.text, offsets, "sentence", special="drop")


def top_passages(groups: analysis.TokenGroups, weights, k: int = 3) -> list[Passage]:
    """The k groups (e.g. sentences) holding the most of `weights` (N,), largest first, each with its
    share of the weight the groups hold; groups holding nothing are left out."""
    if groups.num_groups == 0:
        return []
    idx = groups.index
    keep = idx >= 0
    w = torch.as_tensor(np.asarray(weights), dtype=torch.float32)
    mass = torch.zeros(groups.num_groups).index_add_(0, idx[keep], w[keep])
    total = float(mass.sum()) or 1.0
    order = torch.argsort(mass, descending=True)[:k].tolist()
    return [(groups.spans[g], float(mass[g]) / total, groups.labels[g]) for g in order if mass[g] > 0]


def answer_spans(text: str, answer: str) -> list[tuple[int, int]]:
    """Where the answer occurs in the text: case-insensitive, any whitespace between its words, a
    final full stop of the answer ignored."""
    words = answer.strip().rstrip(".").split()
    if not words:
        return []
    pattern = r"\s+".join(re.escape(w) for w in words)
    return [m.span() for m in re.finditer(pattern, text, flags=re.IGNORECASE)]


@dataclass
class AnswerSource:
    """Where an answer came from: the mean cross-attention of its tokens over the input (N,), the
    passages holding most of it, where the answer's text occurs, and what the first occurrence is."""

    weights: np.ndarray
    passages: list[Passage]
    matches: list[tuple[int, int]] = field(default_factory=list)
    match_tokens: tuple[int, int] | None = None  # first and last token of the first match, if the model read it
    in_top_passage: bool = False  # the first match starts in the passage with the most attention


def answer_source(result: RunResult, cross: np.ndarray, special_ids: Sequence[int] = (),
                  groups: analysis.TokenGroups | None = None, k: int = 3) -> AnswerSource | None:
    """The provenance of a run's answer from its cross-attention map `cross` (T, N); None when the
    answer has no tokens other than special ones."""
    steps = [s - 1 for s in output_steps(result, special_ids)]
    if not steps:
        return None
    doc = result.document
    weights = cross[steps].mean(0)
    top = top_passages(groups if groups is not None else sentence_groups(doc), weights, k)
    matches = answer_spans(doc.text, result.output_text)
    source = AnswerSource(weights, top, matches)
    if matches:
        s, e = matches[0]
        inside = [i for i, sp in enumerate(doc.text_spans()) if sp is not None and sp[0] < e and sp[1] > s]
        source.match_tokens = (inside[0], inside[-1]) if inside else None
        source.in_top_passage = bool(top) and top[0][0][0] <= s < top[0][0][1]
    return source


def question_attention(result: RunResult, rows: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    """Where the question tokens looked, from their attention rows (one (N,) row per question token):
    the mean row with everything outside the document text set to 0, and the share of the
    question tokens' attention that lands on the document."""
    weights = np.mean(np.asarray(rows, dtype=np.float32), axis=0)
    on_doc = np.where(result.document.in_document(), weights, np.float32(0.0))
    return on_doc, float(on_doc.sum())
