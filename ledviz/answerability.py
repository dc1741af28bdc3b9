"""A trained answerability head: whether the document answers the question, from what the frozen
model already computes while ledviz.answering weighs the best span against the decline.

The head is a small classifier (logistic regression, or one hidden layer) on named features
(FEATURES) of one kept answer; it gives the probability that the question is answerable, and
ledviz.answering.kept_answers declines iff that probability is below the head's threshold.

A model has a head when its generation_config.json names the file (``"decline_head":
"answerability.json"``, a file in the model's folder); ``python -m ledviz.demo.train_answerability``
writes the embedded model's. The file is JSON:

    {"format": "ledviz-answerability", "version": 1,
     "features": [names from FEATURES], "mean": [...], "std": [...],
     "layers": [{"weight": [[...]], "bias": [...]}, ...],   # tanh between layers, sigmoid at the end
     "threshold": 0.5, "about": {...}}                     # "about": free-form provenance

A missing or unknown key, an unknown feature, a shape that does not fit the model, or a value that
is not a finite number is an AnswerabilityError naming the file and the key.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from .errors import GenerationSettingsError

FORMAT, VERSION = "ledviz-answerability", 1
KEYS = ("format", "version", "features", "mean", "std", "layers", "threshold", "about")

# name -> (width, what it is); a width of "d_model" is the model's hidden size, "heads" the
# decoder layers times their cross-attention heads
FEATURES: dict[str, tuple[Any, str]] = {
    "margin_first": (1, "log-probability of the decline minus the span's at the first token where they differ"),
    "margin_sum": (1, "sum of the decline's token log-probabilities minus the span's"),
    "margin_mean": (1, "mean per-token log-probability of the decline minus the span's"),
    "span_first": (1, "the span's log-probability at the first token where the answers differ"),
    "decline_first": (1, "the decline's log-probability at that token"),
    "span_mean": (1, "the span's mean token log-probability (its end included)"),
    "span_min": (1, "the span's lowest token log-probability (its end included)"),
    "span_end": (1, "the log-probability of the span's end token"),
    "span_length": (1, "log(1 + the span's number of tokens)"),
    "question_words_found": (1, "share of the question's words (3+ characters, any case) found in the document"),
    "question_words_missing": (1, "log(1 + number of the question's words not found in the document)"),
    "cross_entropy": ("heads", "entropy of each decoder cross-attention head's attention on the document at the "
                               "first answer step (renormalized over the document), over log(document tokens)"),
    "cross_max": ("heads", "largest share of one document token in that attention (renormalized)"),
    "cross_question": ("heads", "attention mass of each cross-attention head on the question tokens "
                                "at the first answer step"),
    "encoder_question": ("d_model", "the encoder's final hidden states of the question tokens, averaged"),
    "encoder_span": ("d_model", "the encoder's final hidden states of the span's tokens where it first occurs "
                                "in the document, averaged"),
    "decoder_first": ("d_model", "the decoder's final hidden state at the first answer step"),
}


class AnswerabilityError(GenerationSettingsError):
    """A bad answerability head file or setting."""


def feature_width(name: str, config) -> int:
    width = FEATURES[name][0]
    if width == "d_model":
        return int(config.d_model)
    if width == "heads":
        return int(config.decoder_layers) * int(config.decoder_attention_heads)
    return int(width)


_WORD = re.compile(r"\w{3,}")


def words(text: str) -> set[str]:
    """The words of a text (3 or more word characters), lower case."""
    return {w.lower() for w in _WORD.findall(text)}


@torch.no_grad()
def first_step(runner, starts: Sequence[Sequence[int]], lead: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The decoder's final hidden state (B, D) and each layer's cross-attention (B, H, N) at the first answer
    step: after the decoder start and <s> (`starts[b]`, `lead` tokens), where the answer's first token is
    predicted. `runner`: a generation._DecoderRunner over the batch's encoder output (one row per source)."""
    ids = torch.tensor([list(s)[:lead] for s in starts], dtype=torch.long, device=runner.encoder_hidden.device)
    step = runner.forward(ids, None, 1, output_attentions=True)
    return step.hidden[:, lead - 1].float(), tuple(a[:, :, lead - 1].float() for a in step.cross_attentions)


def find(seq: Sequence[int], part: Sequence[int]) -> int:
    """Where `part` first occurs in `seq` (-1: nowhere)."""
    n = len(part)
    first = part[0] if n else None
    for i in range(len(seq) - n + 1):
        if seq[i] == first and list(seq[i: i + n]) == list(part):
            return i
    return -1


def features(*, span_ids: Sequence[int], span_logprobs: Sequence[float], decline_ids: Sequence[int],
             decline_logprobs: Sequence[float], question_text: str, document_text: str,
             encoder_question: torch.Tensor, encoder_span: torch.Tensor, decoder_first: torch.Tensor,
             cross: Sequence[torch.Tensor], question_mask: torch.Tensor, input_mask: torch.Tensor
             ) -> dict[str, list[float]]:
    """Every feature of FEATURES for one kept answer (name -> list of floats).

    The log-probabilities are the teacher-forced ones of ledviz.answering (each answer's tokens and
    its end token); `encoder_question` / `encoder_span` (D,) the means of the question tokens' and
    the span's final encoder states; `decoder_first` (D,) and `cross` (per layer (H, N)) from
    first_step; `question_mask` / `input_mask` (N,) booleans: the question's tokens, and the
    input's real (unpadded) tokens."""
    fork = next((i for i, (a, b) in enumerate(zip(span_ids, decline_ids)) if a != b),
                min(len(span_ids), len(decline_ids)))
    s, d = [float(x) for x in span_logprobs], [float(x) for x in decline_logprobs]
    q_words, doc_words = words(question_text), words(document_text)
    found = sum(w in doc_words for w in q_words)
    out = dict(
        margin_first=[d[fork] - s[fork]], margin_sum=[sum(d) - sum(s)], margin_mean=[sum(d) / len(d) - sum(s) / len(s)],
        span_first=[s[fork]], decline_first=[d[fork]], span_mean=[sum(s) / len(s)], span_min=[min(s)],
        span_end=[s[-1]], span_length=[math.log1p(len(span_ids))],
        question_words_found=[found / len(q_words) if q_words else 0.0],
        question_words_missing=[math.log1p(len(q_words) - found)],
    )
    in_doc = (input_mask & ~question_mask).to(torch.float32)
    n_doc = max(2, int(in_doc.sum()))
    ent, top, on_q = [], [], []
    for probs in cross:  # (H, N)
        p = probs.float()
        on_q += (p * question_mask.to(p.device, torch.float32)).sum(-1).tolist()
        doc = p * in_doc.to(p.device)
        doc = doc / doc.sum(-1, keepdim=True).clamp_min(1e-30)
        ent += (-(doc * doc.clamp_min(1e-30).log()).sum(-1) / math.log(n_doc)).tolist()
        top += doc.max(-1).values.tolist()
    out.update(cross_entropy=ent, cross_max=top, cross_question=on_q,
               encoder_question=encoder_question.float().tolist(), encoder_span=encoder_span.float().tolist(),
               decoder_first=decoder_first.float().tolist())
    return out


@dataclass(frozen=True)
class AnswerabilityHead:
    """A loaded head: standardize the named features, apply the layers (tanh between them), and
    a sigmoid: the probability that the document answers the question. Decline iff below
    `threshold`."""

    path: str
    features: tuple[str, ...]
    mean: torch.Tensor = field(repr=False)
    std: torch.Tensor = field(repr=False)
    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...] = field(repr=False)
    threshold: float = 0.5
    about: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def width(self) -> int:
        return int(self.mean.numel())

    @property
    def parameter_count(self) -> int:
        """Its weights and biases (the features' mean and std, fixed numbers, not counted)."""
        return sum(int(w.numel() + b.numel()) for w, b in self.layers)

    def describe(self) -> str:
        """What The model page says of it: the LED network's parameter counts leave it out, yet the QA
        page's decisions are its."""
        return (f"Besides these, an answerability head decides on the Question answering page whether the "
                f"document answers the question: {self.parameter_count:,} parameters in {len(self.layers)} "
                f"layer(s) reading {self.width:,} numbers from the model ({', '.join(self.features)}); it "
                f"declines (“not in the document”) below a probability of {self.threshold:.2f}. It is a separate "
                f"file ({os.path.basename(self.path)}, named by decline_head in generation_config.json), not "
                "counted above.")

    def vector(self, values: dict[str, Sequence[float]]) -> torch.Tensor:
        """The head's input (its features in its order, joined) from a features() dict."""
        missing = [f for f in self.features if f not in values]
        if missing:
            raise AnswerabilityError(f"{self.path}: no value for feature(s) {', '.join(missing)} "
                                     "(ledviz.answerability.features computes every feature of FEATURES)")
        x = torch.tensor([float(v) for f in self.features for v in values[f]], dtype=torch.float64)
        if x.numel() != self.width:
            raise AnswerabilityError(f"{self.path}: the features {', '.join(self.features)} give {x.numel()} values, "
                                     f"the head takes {self.width}: it was made for another model; remake it with "
                                     "python -m ledviz.demo.train_answerability")
        return x

    def probability(self, values: dict[str, Sequence[float]] | torch.Tensor) -> float:
        x = values if isinstance(values, torch.Tensor) else self.vector(values)
        return float(self.probabilities(x[None])[0])

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """P(answerable) for rows of head inputs (R, width)."""
        h = (x.double() - self.mean) / self.std
        for i, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if i < len(self.layers) - 1:
                h = torch.tanh(h)
        return torch.sigmoid(h[:, 0])

    def to_json(self) -> dict:
        return dict(format=FORMAT, version=VERSION, features=list(self.features), mean=self.mean.tolist(),
                    std=self.std.tolist(), layers=[dict(weight=w.tolist(), bias=b.tolist()) for w, b in self.layers],
                    threshold=self.threshold, about=self.about)

    def save(self, path: str | os.PathLike) -> None:
        obj = self.to_json()  # one key a line (the arrays on theirs)
        with open(path, "w", encoding="utf-8") as f:
            f.write("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in obj.items()) + "\n}\n")


def _numbers(path: str, key: str, value, shape: tuple[int, ...]) -> torch.Tensor:
    try:
        t = torch.tensor(value, dtype=torch.float64)
    except (TypeError, ValueError):
        raise AnswerabilityError(f"{path}: {key!r} must be a list of numbers of shape {shape}") from None
    if tuple(t.shape) != shape:
        raise AnswerabilityError(f"{path}: {key!r} has shape {tuple(t.shape)}, expected {shape}; "
                                 "remake the file with python -m ledviz.demo.train_answerability")
    if not torch.isfinite(t).all():
        raise AnswerabilityError(f"{path}: {key!r} holds a value that is not a finite number")
    return t


def from_json(obj: Any, path: str, config=None) -> AnswerabilityHead:
    """A head from its JSON object (see the module's docstring), checked against the model's `config`
    (the widths of the model-sized features) when given."""
    if not isinstance(obj, dict):
        raise AnswerabilityError(f"{path}: must hold a JSON object, not {type(obj).__name__}")
    unknown = sorted(set(obj) - set(KEYS))
    missing = [k for k in KEYS if k not in obj and k != "about"]
    if unknown:
        raise AnswerabilityError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; "
                                 f"the keys are {', '.join(KEYS)}")
    if missing:
        raise AnswerabilityError(f"{path}: missing key(s) {', '.join(map(repr, missing))}; remake the file with "
                                 "python -m ledviz.demo.train_answerability")
    if obj["format"] != FORMAT or obj["version"] != VERSION:
        raise AnswerabilityError(f"{path}: format {obj['format']!r} version {obj['version']!r}; this ledviz reads "
                                 f"{FORMAT!r} version {VERSION}")
    names = obj["features"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise AnswerabilityError(f"{path}: 'features' must be a non-empty list of feature names")
    bad = [n for n in names if n not in FEATURES]
    if bad:
        raise AnswerabilityError(f"{path}: unknown feature(s) {', '.join(map(repr, bad))}; the features are "
                                 f"{', '.join(FEATURES)}")
    if len(set(names)) != len(names):
        raise AnswerabilityError(f"{path}: a feature is named twice in 'features'")
    if config is not None:
        width = sum(feature_width(n, config) for n in names)
    else:
        width = len(obj["mean"]) if isinstance(obj["mean"], list) else -1
    mean = _numbers(path, "mean", obj["mean"], (width,))
    std = _numbers(path, "std", obj["std"], (width,))
    if (std <= 0).any():
        raise AnswerabilityError(f"{path}: 'std' must be positive")
    layers, fan_in = [], width
    if not isinstance(obj["layers"], list) or not obj["layers"]:
        raise AnswerabilityError(f"{path}: 'layers' must be a non-empty list of {{'weight', 'bias'}} objects")
    for i, layer in enumerate(obj["layers"]):
        if not isinstance(layer, dict) or set(layer) != {"weight", "bias"}:
            raise AnswerabilityError(f"{path}: layers[{i}] must be an object with exactly 'weight' and 'bias'")
        out = len(layer["bias"]) if isinstance(layer["bias"], list) else -1
        if i == len(obj["layers"]) - 1 and out != 1:
            raise AnswerabilityError(f"{path}: the last layer must have one output (its 'bias' has {out})")
        w = _numbers(path, f"layers[{i}].weight", layer["weight"], (out, fan_in))
        b = _numbers(path, f"layers[{i}].bias", layer["bias"], (out,))
        layers.append((w, b))
        fan_in = out
    t = obj["threshold"]
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
        raise AnswerabilityError(f"{path}: 'threshold' must be a probability in [0, 1], got {t!r}")
    about = obj.get("about", {})
    if not isinstance(about, dict):
        raise AnswerabilityError(f"{path}: 'about' must be a JSON object")
    return AnswerabilityHead(path, tuple(names), mean, std, tuple(layers), float(t), about)


def load(path: str | os.PathLike, config=None) -> AnswerabilityHead:
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise AnswerabilityError(f"{path}: no such file (the model's generation_config.json names it as "
                                 "decline_head); remove the setting, or make the file with "
                                 "python -m ledviz.demo.train_answerability") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnswerabilityError(f"{path}: not a JSON file ({e}); remake it with "
                                 "python -m ledviz.demo.train_answerability") from None
    return from_json(obj, path, config)


def model_head(model, filename: str) -> AnswerabilityHead:
    """The head file `filename` of a model's folder (its config's name_or_path: a folder, or a Hub id
    through the Hub cache), loaded once per model and file version."""
    from .loading import resolve_file

    if not isinstance(filename, str) or not filename or os.path.basename(filename) != filename:
        raise AnswerabilityError(f"decline_head={filename!r}: must be the name of a file in the model's folder "
                                 "(like 'answerability.json')")
    where = model.config.name_or_path
    path = resolve_file(where, filename, required=False) if where else None
    if path is None:
        raise AnswerabilityError(f"decline_head={filename!r}: the model's folder {where or '(unknown)'!r} has no such "
                                 "file; make it with python -m ledviz.demo.train_answerability, or remove the setting")
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size)
    cached = getattr(model, "_ledviz_answerability", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    head = load(path, model.config)
    object.__setattr__(model, "_ledviz_answerability", (key, head))
    return head
