"""What defines a study: the settings compared, the reference one, the task, generation and the model.

Settings are the Attention lab's global-attention choices (`ledviz.compare.Setting`), written on
the command line as ``kind`` or ``kind:argument``: ``none``, ``first``, ``question``,
``sentences``, ``every_k:32``, ``positions:0,10,20`` (ranges too: ``positions:0,10-20``), ``pattern:^\\d``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from ..compare import Setting, unique_labels
from ..errors import InputError
from ..pipeline import GLOBAL_CHOICES, check_k, parse_positions

TASKS = ("summarize", "qa")
GENERATION_KEYS = ("max_new_tokens", "num_beams", "answer_from_document")


def parse_setting(value: "str | Setting | Mapping[str, Any]") -> Setting:
    """A Setting from 'kind[:argument]', a dict or a Setting (InputError naming what is wrong)."""
    if not isinstance(value, str):
        return Setting.of(value)
    kind, _, arg = value.strip().partition(":")
    kind = {"every-k": "every_k", "everyk": "every_k"}.get(kind, kind)
    if kind not in GLOBAL_CHOICES:
        raise InputError(f"unknown setting {value!r}: use one of none, first, question, sentences, every_k:K, "
                         "positions:P1,P2,..., pattern:REGEX")
    if kind == "every_k":
        try:
            k = int(arg)
        except ValueError:
            raise InputError(f"setting {value!r}: every_k needs a whole number, as in every_k:32") from None
        try:
            return Setting(kind, k=check_k(k))  # 1 to K_MAX, as the lab takes it
        except InputError as err:
            raise InputError(f"setting {value!r}: {err}") from None
    if kind == "positions":
        try:  # whole numbers and ranges, as the lab takes them: positions:0,10-20
            positions = tuple(parse_positions(arg))
        except InputError as err:
            raise InputError(f"setting {value!r}: {err} (as in positions:0,10-20)") from None
        if not positions:
            raise InputError(f"setting {value!r}: give at least one position, as in positions:0,10,20")
        return Setting(kind, positions=positions)
    if kind == "pattern":
        if not arg:
            raise InputError(f"setting {value!r}: give a regular expression, as in pattern:^\\d")
        import re

        try:
            re.compile(arg)
        except re.error as e:
            raise InputError(f"setting {value!r}: not a valid regular expression ({e})") from None
        return Setting(kind, pattern=arg)
    if arg:
        raise InputError(f"setting {value!r}: {kind} takes no argument")
    return Setting(kind)


def setting_text(s: Setting) -> str:
    """The command-line form of a setting (parse_setting's inverse)."""
    if s.kind == "every_k":
        return f"every_k:{s.k}"
    if s.kind == "positions":
        return "positions:" + ",".join(map(str, s.positions))  # (as written before ranges: studies' identities)
    if s.kind == "pattern":
        return f"pattern:{s.pattern}"
    return s.kind


@dataclass
class StudySpec:
    """Everything that decides a study's rows (how it is run, engine and workers, does not).

    corpus: a file or demo:N; settings: the compared settings (the reference among them);
    model: None / "embedded", a folder or a Hub id; max_tokens: cut documents to this many tokens
    (None: the model's limit); seed: torch's seed before each document (sampling, if any).
    """

    corpus: str
    settings: list[Setting]
    reference: int = 0
    task: str = "summarize"
    model: str | None = None
    max_new_tokens: int = 64
    num_beams: int = 1
    answer_from_document: bool = False
    max_tokens: int | None = None
    seed: int = 0
    text_column: str = "text"
    id_column: str = "id"
    on_error: str = "stop"
    limit: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.settings = [parse_setting(s) for s in self.settings]
        if not self.settings:
            raise InputError("give at least one setting (e.g. --setting first --setting none)")
        texts = [setting_text(s) for s in self.settings]
        twice = sorted({t for t in texts if texts.count(t) > 1})
        if twice:
            raise InputError(f"setting(s) {', '.join(twice)} given twice: each setting once")
        if isinstance(self.reference, str):
            self.reference = self.reference_index(self.reference)
        if not 0 <= int(self.reference) < len(self.settings):
            raise InputError(f"the reference must be one of the settings (0 to {len(self.settings) - 1}), "
                             f"got {self.reference}")
        if self.task not in TASKS:
            raise InputError(f"unknown task {self.task!r}: use summarize or qa")
        if self.task != "qa" and any(s.kind == "question" for s in self.settings):
            raise InputError("the 'question' setting needs questions: run --task qa, or drop that setting")
        if self.max_new_tokens < 1 or self.num_beams < 1:
            raise InputError("max_new_tokens and num_beams must be at least 1")
        if self.max_tokens is not None and self.max_tokens < 16:
            raise InputError(f"max_tokens must be at least 16, got {self.max_tokens}")
        if self.extra:
            raise InputError(f"unknown study options {sorted(self.extra)}")

    def reference_index(self, value: str) -> int:
        """The index of the setting written `value` (its command-line form or label)."""
        for n, s in enumerate(self.settings):
            if value in (setting_text(s), s.label, str(n)):
                return n
        raise InputError(f"the reference {value!r} is not one of the settings {[setting_text(s) for s in self.settings]}")

    @property
    def labels(self) -> list[str]:
        return unique_labels(self.settings)

    @property
    def generation(self) -> dict[str, Any]:
        return dict(max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
                    answer_from_document=self.answer_from_document)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["settings"] = [setting_text(s) for s in self.settings]
        d.pop("extra")
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StudySpec":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def study_identity(spec: StudySpec, corpus_fingerprint: str, weights_hash: str) -> dict[str, Any]:
    """The fields that must agree for two runs to write into one results folder."""
    d = spec.to_dict()
    for how in ("on_error", "limit", "corpus", "text_column", "id_column", "model"):  # documents and weights speak for these
        d.pop(how)
    return dict(d, documents=corpus_fingerprint, weights=weights_hash)


def identity_hash(identity: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

