"""Synthetic long documents for the ledviz demo model: generator, tasks, metrics, vocabulary.

Every document is a structured report (a project, a company or an expedition) built from
templates: a title, numbered sections, paragraphs of varied filler sentences, 4-6 *key facts*
(one sentence each, from a few fixed templates, at random places in the text) and
*distractors* (sentences with other names, places, numbers and dates that are not facts).

Two tasks are defined on a document:

* ``"summarize"``: the target lists the key facts in a fixed order and form,
  e.g. ``"Lead: Maren Okafor. Site: Velmora. Budget: 4,312. Deadline: 14 March 2034."``
* ``"qa"``: a question about one fact; the target is the fact's value, e.g. ``"Maren Okafor"``.
  The model reads the pair ``<s> question </s></s> document </s>`` with global attention on
  the question tokens.

Everything is pure Python and reproducible: each function takes a seed or a
``random.Random`` and never touches the global RNG. Only the vocabulary functions import
``tokenizers`` (lazily).
"""

from __future__ import annotations

import functools
import math
import os
import random
import re
import string
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

__all__ = [
    "TRAIN_SEED", "VALID_SEED", "TEST_SEED", "SAMPLE_SEED", "TASKS", "REPORT_KINDS", "TOKENS_PER_WORD",
    "Example", "Slot", "Schema", "SCHEMAS",
    "make_example", "generate_dataset", "estimate_tokens", "summary_for", "question_for",
    "normalize_answer", "exact_match", "key_fact_recall",
    "sample_examples", "sample_documents", "sample_questions",
    "vocabulary_corpus", "train_vocabulary", "load_tokenizer", "SPECIAL_TOKENS",
]

# Separate seeds: train, validation and held-out test documents never coincide.
TRAIN_SEED = 1_000
VALID_SEED = 2_000
TEST_SEED = 3_000
SAMPLE_SEED = 4_242  # the bundled sample documents of the app

TASKS = ("summarize", "qa")

# BPE tokens per whitespace-separated word, measured on this corpus with the 4,000-token
# vocabulary of `train_vocabulary` (see `estimate_tokens`).
TOKENS_PER_WORD = 1.16

# ---------------------------------------------------------------------------------------------
# Names: combinatorial, syllable-built, so there are thousands of each.
# ---------------------------------------------------------------------------------------------
_FIRST_A = ["Ma", "Ka", "Li", "To", "Se", "Ra", "El", "Jo", "Ni", "Da", "Ve", "Ha", "Mi", "Ta",
            "So", "Be", "Lu", "Ar", "Is", "Fe", "Yo", "Ga"]
_FIRST_B = ["", "ri", "le", "na", "ro", "li", "ve", "mo", "sa", "di"]
_FIRST_C = ["n", "a", "ra", "el", "o", "ia", "us", "en", "is", "ik"]
_LAST_A = ["Ok", "Bren", "Hal", "Vor", "Tam", "Quin", "Ster", "Mal", "Dun", "Fal", "Cor", "Ash",
           "Lind", "Pra", "Ser", "Wex", "Ny", "Gar", "Hol", "Tre"]
_LAST_B = ["a", "o", "e", "i", "u", "ar", "en", "il"]
_LAST_C = ["for", "sen", "ley", "vik", "dott", "man", "ard", "ski", "ton", "berg", "ro", "wen"]
_PLACE_A = ["Vel", "Mor", "Ast", "Bel", "Cal", "Dor", "Esk", "Fen", "Gal", "Har", "Ist", "Kor",
            "Lun", "Nar", "Ost", "Pel", "Riv", "Sol", "Tar", "Ulm", "Var", "Wyn", "Zel", "Bran"]
_PLACE_B = ["a", "e", "i", "o", "en", "ar", "is", "on"]
_PLACE_C = ["mora", "dale", "stad", "holm", "ford", "via", "grad", "port", "wick", "ria", "beck", "mont"]
_ORG_A = ["Kor", "Lum", "Nex", "Aer", "Tri", "Ver", "Quad", "Hel", "Stra", "Opti", "Vela", "Cyr",
          "Mag", "Zen", "Pol", "Ard"]
_ORG_B = ["vane", "tek", "ion", "ora", "ex", "is", "ant", "ium", "ix", "el"]
_ORG_C = ["Industries", "Labs", "Group", "Consortium", "Works", "Partners", "Systems", "Foundation"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_CODENAME_A = ["Blue", "Iron", "Silver", "Red", "Green", "Stone", "North", "Bright", "Quiet", "Swift",
               "Amber", "Cedar"]
_CODENAME_B = ["finch", "leaf", "river", "harbor", "lantern", "crest", "field", "bridge", "falcon",
               "anchor", "meadow", "spark"]


def _person(rng: random.Random) -> str:
    first = rng.choice(_FIRST_A) + rng.choice(_FIRST_B) + rng.choice(_FIRST_C)
    return f"{first} {rng.choice(_LAST_A)}{rng.choice(_LAST_B)}{rng.choice(_LAST_C)}"


def _place(rng: random.Random) -> str:
    return rng.choice(_PLACE_A) + rng.choice(_PLACE_B) + rng.choice(_PLACE_C)


def _org(rng: random.Random) -> str:
    return f"{rng.choice(_ORG_A)}{rng.choice(_ORG_B)} {rng.choice(_ORG_C)}"


def _amount(rng: random.Random) -> str:
    return f"{rng.randint(1_000, 99_999):,}"


def _count(rng: random.Random) -> str:
    return str(rng.randint(5, 60))


def _date(rng: random.Random) -> str:
    return f"{rng.randint(1, 28)} {rng.choice(_MONTHS)} {rng.randint(2025, 2040)}"


def _codename(rng: random.Random) -> str:
    return rng.choice(_CODENAME_A) + rng.choice(_CODENAME_B)


_VALUE_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "person": _person, "place": _place, "org": _org, "amount": _amount, "count": _count, "date": _date,
}

# ---------------------------------------------------------------------------------------------
# Schemas: per report kind, the key-fact slots with their fixed sentence and question templates.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One key fact of a report kind: its value type, summary label and templates."""

    name: str
    value_type: str  # a key of _VALUE_MAKERS
    label: str  # as written in the summary: "Lead: Maren Okafor."
    templates: tuple[str, ...]  # fact sentences; {v} is the value ({year}: a filler year)
    questions: tuple[str, ...]


@dataclass(frozen=True)
class Schema:
    """A report kind: its noun, section headings and slots (in summary order)."""

    kind: str
    noun: str
    headings: tuple[str, ...]
    slots: tuple[Slot, ...]

    def slot(self, name: str) -> Slot:
        return next(s for s in self.slots if s.name == name)


SCHEMAS: dict[str, Schema] = {
    "project": Schema(
        "project", "project",
        ("Overview", "Background", "Progress", "Construction", "Staff", "Finance", "Risks", "Schedule",
         "Outlook", "Notes"),
        (
            Slot("lead", "person", "Lead",
                 ("The project lead is {v}.", "{v} is the project lead.", "The project is led by {v}."),
                 ("Who is the project lead?", "Who leads the project?")),
            Slot("site", "place", "Site",
                 ("The site is located in {v}.", "The project site is in {v}."),
                 ("Where is the site located?", "Where is the project site?")),
            Slot("budget", "amount", "Budget",
                 ("The approved budget is {v} credits.", "The project has an approved budget of {v} credits."),
                 ("What is the approved budget?", "How large is the approved budget?")),
            Slot("deadline", "date", "Deadline",
                 ("The deadline is {v}.", "The final deadline is set for {v}."),
                 ("What is the deadline?", "When is the final deadline?")),
            Slot("partner", "org", "Partner",
                 ("The main partner is {v}.", "{v} is the main partner of the project."),
                 ("Who is the main partner?", "Which organisation is the main partner?")),
            Slot("team", "count", "Team",
                 ("The core team has {v} members.", "There are {v} members in the core team."),
                 ("How many members does the core team have?", "How large is the core team?")),
        ),
    ),
    "company": Schema(
        "company", "company",
        ("Overview", "Markets", "Products", "Operations", "People", "Finance", "Governance", "Risks",
         "Outlook", "Notes"),
        (
            Slot("ceo", "person", "CEO",
                 ("The chief executive is {v}.", "{v} serves as chief executive.",
                  "The company is run by chief executive {v}."),
                 ("Who is the chief executive?", "Who runs the company?")),
            Slot("hq", "place", "Headquarters",
                 ("The headquarters are in {v}.", "The company has its headquarters in {v}."),
                 ("Where are the headquarters?", "In which city are the headquarters?")),
            Slot("revenue", "amount", "Revenue",
                 ("Revenue reached {v} units in {year}.", "Annual revenue reached {v} units."),
                 ("What revenue was reached?", "How much revenue did the company reach?")),
            Slot("founded", "date", "Founded",
                 ("The company was founded on {v}.", "The founding date of the company is {v}."),
                 ("When was the company founded?", "What is the founding date?")),
            Slot("parent", "org", "Parent",
                 ("The parent company is {v}.", "The company is owned by its parent company, {v}."),
                 ("What is the parent company?", "Who owns the company?")),
            Slot("board", "count", "Board",
                 ("The board has {v} members.", "There are {v} members on the board."),
                 ("How many members does the board have?", "How large is the board?")),
        ),
    ),
    "expedition": Schema(
        "expedition", "expedition",
        ("Overview", "Route", "Preparation", "Travel", "Crew", "Supplies", "Weather", "Incidents",
         "Outlook", "Notes"),
        (
            Slot("leader", "person", "Leader",
                 ("The expedition leader is {v}.", "The expedition is led by {v}."),
                 ("Who is the expedition leader?", "Who leads the expedition?")),
            Slot("destination", "place", "Destination",
                 ("The destination is {v}.", "The expedition is bound for {v}."),
                 ("What is the destination?", "Where is the expedition going?")),
            Slot("distance", "amount", "Distance",
                 ("The planned route covers {v} kilometres.", "The route is {v} kilometres long."),
                 ("How long is the route?", "How many kilometres does the route cover?")),
            Slot("departure", "date", "Departure",
                 ("The departure date is {v}.", "The expedition departs on {v}."),
                 ("What is the departure date?", "When does the expedition depart?")),
            Slot("sponsor", "org", "Sponsor",
                 ("The expedition is sponsored by {v}.", "The main sponsor is {v}."),
                 ("Who sponsors the expedition?", "Who is the main sponsor?")),
            Slot("crew", "count", "Crew",
                 ("The crew has {v} members.", "There are {v} members in the crew."),
                 ("How many members does the crew have?", "How large is the crew?")),
        ),
    ),
}
REPORT_KINDS = tuple(SCHEMAS)

# ---------------------------------------------------------------------------------------------
# Filler and distractor templates.
# Placeholders: {thing} {thing2} {adj} {period} {dept} {dept2} {pace} {tone} {state} {season}
# {unit} {weekday} {noun} {n} and kind words ({part} {product} {terrain} {gear} {weather});
# distractors also use {person} {person2} {place} {org} {amount} {date} {year}.
# ---------------------------------------------------------------------------------------------
_WORDS: dict[str, list[str]] = {
    "thing": ["supply schedule", "safety plan", "quarterly figures", "equipment list", "training programme",
              "maintenance log", "travel plan", "communication plan", "risk register", "inventory",
              "data archive", "field notes", "quality checklist", "staff rota", "cost report",
              "procurement file", "handover document", "incident log", "work plan", "status board",
              "vendor list", "audit trail", "meeting minutes", "design notes"],
    "adj": ["minor", "practical", "technical", "routine", "important", "formal", "small", "basic",
            "detailed", "general", "careful", "urgent"],
    "period": ["weekly", "monthly", "quarterly", "morning", "evening", "planning", "midyear", "final"],
    "dept": ["logistics", "finance", "planning", "safety", "operations", "records", "legal", "design",
             "support", "research", "procurement", "training"],
    "pace": ["steady", "slow", "uneven", "strong", "stable", "modest"],
    "tone": ["positive", "mixed", "encouraging", "cautious", "neutral", "favourable"],
    "state": ["good", "fair", "excellent", "acceptable", "poor", "reasonable"],
    "season": ["spring", "summer", "autumn", "winter"],
    "unit": ["week", "month", "quarter", "cycle"],
    "weekday": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
    "part": ["north wing", "access road", "water system", "control room", "storage hall", "bridge deck",
             "data centre", "power line", "main gate", "test rig"],
    "product": ["solar panel", "water filter", "delivery van", "field sensor", "home battery",
                "office chair", "cargo drone", "ceramic valve", "garden tool", "radio set"],
    "terrain": ["river bend", "rocky ridge", "salt flat", "pine forest", "glacier edge", "mountain pass",
                "dry valley", "frozen lake", "sand dune", "coastal cliff"],
    "gear": ["radio", "sled", "water pump", "tent", "stove", "map case", "rope kit", "medical kit"],
    "weather": ["calm and clear", "cold and windy", "wet and foggy", "hot and dry", "mild with light rain"],
}

_FILLER_COMMON = [
    "The team reviewed the {thing} during the {period} meeting.",
    "Progress on the {thing} remained {pace} throughout the {season}.",
    "Several {adj} questions about the {thing} were raised and answered.",
    "The {dept} group updated the {thing} after a short review.",
    "No major problems with the {thing} were reported this {unit}.",
    "Members agreed to revisit the {thing} at a later stage.",
    "A summary of the {thing} was shared with all staff.",
    "The {dept} group asked for more time to finish the {thing}.",
    "Minor delays affected the {thing}, but the schedule held.",
    "Feedback on the {thing} was {tone} overall.",
    "The {thing} was checked twice before approval.",
    "It was noted that the {thing} needs {adj} attention in the coming {unit}.",
    "Work on the {thing} took about {n} days.",
    "The {noun} continued to follow its agreed plan.",
    "Staff completed {n} training sessions on the {thing}.",
    "Records of the {thing} were moved to the shared archive.",
    "The {dept} group and the {dept2} group met to align on the {thing}.",
    "Updates to the {thing} will be published each {unit}.",
    "A short report on the {thing} was circulated on {weekday}.",
    "Everyone was reminded to keep the {thing} up to date.",
    "Discussion of the {thing} ended without any changes.",
    "The {thing} was found to be in {state} condition.",
    "A new version of the {thing} is expected in the {season}.",
    "The {noun} team thanked the {dept} group for its support.",
    "Overall, the {period} results for the {thing} met expectations.",
    "The {thing} and the {thing2} were reviewed together.",
    "Some {adj} changes to the {thing} were approved on {weekday}.",
    "The meeting closed after {n} minutes of discussion.",
    "Questions about the {thing} should go to the {dept} group.",
    "There were {n} open items on the {thing} at the end of the {unit}.",
    "The {dept} group described the {thing} as {state}.",
    "As in earlier reports, the {thing} was kept under review.",
    "A {adj} correction was made to the {thing} on {weekday}.",
    "The {thing} will be discussed again at the next {period} meeting.",
]
_FILLER_KIND = {
    "project": [
        "Construction of the {part} moved ahead as planned.",
        "Testing of the {part} showed {tone} results.",
        "The {part} design was adjusted to reduce costs.",
        "Permits for the {part} were filed with the local office.",
        "Inspectors found the {part} in {state} condition.",
        "Work on the {part} paused for {n} days because of supply issues.",
    ],
    "company": [
        "Sales of the {product} grew at a {pace} rate in the {season}.",
        "The {product} line received {tone} reviews from customers.",
        "Marketing for the {product} focused on new regions.",
        "Demand for the {product} stayed {pace} this {unit}.",
        "A cheaper model of the {product} is planned for the {season}.",
        "Returns of the {product} fell by {n} percent.",
    ],
    "expedition": [
        "The crew crossed a {terrain} in {n} hours.",
        "Weather near the {terrain} was {weather}.",
        "Camp was set up near a {terrain} before dark.",
        "The {gear} was checked every morning.",
        "Fresh water was found near the {terrain}.",
        "The team rested for {n} hours after reaching the {terrain}.",
    ],
}
_DISTRACTOR_COMMON = [
    "{person} from {org} visited the team in {place}.",
    "A letter from {person} was read aloud at the meeting.",
    "{person} presented a short update on the {thing}.",
    "Supplies ordered from {org} arrived on {date}.",
    "The review on {date} was chaired by {person}.",
    "{org} sent {n} observers to {place}.",
    "A consultant, {person}, checked the {thing} in {place}.",
    "Costs for the {thing} came to {amount} credits.",
    "A workshop in {place} drew {n} participants.",
    "{person} and {person2} drafted the notes on the {thing}.",
    "An archive copy of the {thing} was sent to {org} in {place}.",
    "The next review is planned for {date}.",
]
_DISTRACTOR_KIND = {
    "project": [
        "An earlier draft named {person} as a possible lead, but the role went elsewhere.",
        "The first estimate of {amount} credits was later revised.",
        "A survey team visited {place} but found it unsuitable.",
        "{org} offered help but did not become a partner.",
    ],
    "company": [
        "A rival firm, {org}, reported revenue of {amount} units.",
        "{person}, a former director, left the board in {year}.",
        "A small branch office opened in {place}.",
        "Customers in {place} ordered {amount} units of the {product}.",
    ],
    "expedition": [
        "A supply depot was set up in {place}.",
        "{person} joined the crew as a medic for the first week.",
        "An earlier route of {amount} kilometres was rejected.",
        "{org} lent the crew a spare {gear}.",
    ],
}
_OPENINGS = {
    "project": "Project Report: {codename}",
    "company": "Annual Report of {company}",
    "expedition": "Expedition Report: The {codename} Expedition",
}
_INTRO = "This report describes the {noun} for the period ending {date}."
_FIELD_RE = re.compile(r"\{(\w+)\}")

# ---------------------------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------------------------


@dataclass
class Example:
    """One training / evaluation example.

    fact_spans[slot] = (start, end): document[start:end] is that fact's value.
    fact_sentence_spans[slot]: the same for the whole fact sentence.
    """

    task: str
    document: str
    question: str | None
    target: str
    facts: dict[str, str]
    fact_spans: dict[str, tuple[int, int]]
    kind: str = ""
    fact_sentence_spans: dict[str, tuple[int, int]] = field(default_factory=dict)


def estimate_tokens(text: str) -> int:
    """Approximate BPE length of `text` in the demo vocabulary: words x TOKENS_PER_WORD."""
    return round(len(text.split()) * TOKENS_PER_WORD)


def summary_for(kind: str, facts: dict[str, str]) -> str:
    """The summarization target: "Label: value." for every fact, in the schema's slot order."""
    schema = SCHEMAS[kind]
    return " ".join(f"{s.label}: {facts[s.name]}." for s in schema.slots if s.name in facts)


def question_for(kind: str, slot: str, variant: int = 0) -> str:
    """The question asking for `slot` of a `kind` report (variant picks among the templates)."""
    qs = SCHEMAS[kind].slot(slot).questions
    return qs[variant % len(qs)]


class _Filler:
    """Draws placeholder values, never reusing a key-fact value (so each fact is unambiguous)."""

    def __init__(self, rng: random.Random, kind: str, forbidden: set[str]):
        self.rng, self.kind, self.forbidden = rng, kind, forbidden

    def fresh(self, maker: Callable[[random.Random], str]) -> str:
        while True:
            v = maker(self.rng)
            if not any(_overlaps(v, f) for f in self.forbidden):
                return v

    def render(self, template: str) -> str:
        rng, values = self.rng, {}
        for name in _FIELD_RE.findall(template):
            if name in values:
                continue
            base = name.rstrip("2")
            if base in _WORDS:
                pool = [w for w in _WORDS[base] if w not in values.values()]
                values[name] = rng.choice(pool)
            elif base in ("person", "place", "org", "amount", "date"):
                values[name] = self.fresh(_VALUE_MAKERS[base])
            elif name == "n":
                values[name] = self.fresh(lambda r: str(r.randint(2, 90)))
            elif name == "year":
                values[name] = self.fresh(lambda r: str(r.randint(2015, 2040)))
            elif name == "noun":
                values[name] = SCHEMAS[self.kind].noun
            else:
                raise KeyError(f"unknown placeholder {{{name}}} in {template!r}")
        return template.format(**values)

    def filler(self) -> str:
        pool = _FILLER_KIND[self.kind]
        return self.render(self.rng.choice(pool if self.rng.random() < 0.2 else _FILLER_COMMON))

    def distractor(self) -> str:
        pool = _DISTRACTOR_KIND[self.kind]
        return self.render(self.rng.choice(pool if self.rng.random() < 0.4 else _DISTRACTOR_COMMON))


def _as_rng(rng_or_seed: random.Random | int | str) -> random.Random:
    return rng_or_seed if isinstance(rng_or_seed, random.Random) else random.Random(rng_or_seed)


def _count_word(text: str, value: str) -> int:
    """How often `value` occurs in `text` as whole words (4,312 does not count inside 14,312)."""
    return len(re.findall(r"(?<![\w,])" + re.escape(value) + r"(?![\w]|,\d)", text))


def _overlaps(a: str, b: str) -> bool:
    """True if one value occurs inside the other as whole words ("14" and "14 March 2034")."""
    return _count_word(a, b) > 0 or _count_word(b, a) > 0


def make_example(
    rng_or_seed: random.Random | int | str,
    task: str = "summarize",
    target_tokens: int = 1000,
    *,
    kind: str | None = None,
    slot: str | None = None,
    n_facts: int | None = None,
    length_fn: Callable[[str], int] | None = None,
) -> Example:
    """Generate one report of about `target_tokens` tokens (never more) and its `task` target.

    kind: "project" / "company" / "expedition" (random if None); slot: the fact a QA question
    asks about (random if None); n_facts: 4-6 (random if None); length_fn: counts tokens of a
    text (default `estimate_tokens`; pass a tokenizer-based one for exact BPE lengths).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    rng = _as_rng(rng_or_seed)
    length_fn = length_fn or estimate_tokens
    kind = kind or rng.choice(REPORT_KINDS)
    schema = SCHEMAS[kind]
    for _ in range(50):  # retry in the (rare) case a fact value shows up twice
        ex = _build(rng, schema, task, target_tokens, slot, n_facts, length_fn)
        if ex is not None:
            return ex
    raise RuntimeError("could not build a document with unambiguous facts")  # pragma: no cover


def _build(rng, schema: Schema, task, target_tokens, slot, n_facts, length_fn) -> Example | None:
    kind = schema.kind
    k = n_facts or rng.randint(4, 6)
    chosen = sorted(rng.sample(range(len(schema.slots)), k))
    slots = [schema.slots[i] for i in chosen]
    if slot is not None and slot not in {s.name for s in slots}:
        slots = sorted(set(slots[1:]) | {schema.slot(slot)}, key=schema.slots.index)
    facts: dict[str, str] = {}
    for s in slots:
        while True:
            v = _VALUE_MAKERS[s.value_type](rng)
            if not any(_overlaps(v, f) for f in facts.values()):
                facts[s.name] = v
                break
    fill = _Filler(rng, kind, set(facts.values()))
    fact_sentences = {  # {v} is kept out of render(), which fills the other placeholders
        s.name: fill.render(rng.choice(s.templates).replace("{v}", "\x00")).replace("\x00", facts[s.name])
        for s in slots
    }
    title = _OPENINGS[kind].format(codename=_codename(rng), company=fill.fresh(_org))
    intro = fill.render(_INTRO)

    # fillers up to the budget; distractors: about one per 200 tokens
    n_distractors = max(2, round(target_tokens / 200))
    specials = [(name, sent) for name, sent in fact_sentences.items()]
    specials += [(None, fill.distractor()) for _ in range(n_distractors)]
    overhead = length_fn(title) + length_fn(intro) + sum(length_fn(s) for _, s in specials)
    fillers: list[str] = []
    total = overhead + 2 * math.ceil(len(specials) / 12)  # headings
    while total < target_tokens:
        sent = fill.filler()
        fillers.append(sent)
        total += length_fn(sent) + (2 if len(fillers) % 12 == 0 else 0)

    while True:
        text, sent_spans = _layout(rng, schema, title, intro, fillers, specials)
        n = length_fn(text)
        if n <= target_tokens or not fillers:
            break
        drop = max(1, math.ceil((n - target_tokens) / 12))
        del fillers[-drop:]

    fact_spans, fact_sentence_spans = {}, {}
    for name, value in facts.items():
        if _count_word(text, value) != 1:
            return None
        s0, s1 = sent_spans[name]
        v0 = text.index(value, s0, s1)
        fact_spans[name] = (v0, v0 + len(value))
        fact_sentence_spans[name] = (s0, s1)

    if task == "qa":
        asked = slot or rng.choice(sorted(facts))
        s = schema.slot(asked)
        question, target = rng.choice(s.questions), facts[asked]
    else:
        question, target = None, summary_for(kind, facts)
    return Example(task, text, question, target, facts, fact_spans, kind, fact_sentence_spans)


def _layout(rng, schema, title, intro, fillers, specials) -> tuple[str, dict[str, tuple[int, int]]]:
    """Insert the fact and distractor sentences at random places, then cut into sections."""
    seq: list[tuple[str | None, str]] = [(None, s) for s in fillers]
    for item in specials:
        seq.insert(rng.randint(0, len(seq)), item)
    seq.insert(0, (None, intro))
    paragraphs: list[list[tuple[str | None, str]]] = []
    i = 0
    while i < len(seq):
        size = rng.randint(3, 7)
        paragraphs.append(seq[i:i + size])
        i += size
    headings = list(schema.headings[1:])
    rng.shuffle(headings)
    headings.insert(0, schema.headings[0])

    parts: list[str] = []
    pos = 0
    spans: dict[str, tuple[int, int]] = {}

    def emit(s: str) -> None:
        nonlocal pos
        parts.append(s)
        pos += len(s)

    emit(title)
    p, section = 0, 0
    while p < len(paragraphs):
        emit("\n\n")
        emit(headings[section % len(headings)])
        for para in paragraphs[p:p + rng.randint(2, 4)]:
            emit("\n")
            for j, (name, sent) in enumerate(para):
                if j:
                    emit(" ")
                if name is not None:
                    spans[name] = (pos, pos + len(sent))
                emit(sent)
            p += 1
        section += 1
    return "".join(parts), spans


def _example_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"ledviz-demo/{seed}/{index}")


def generate_dataset(
    seed: int,
    n: int,
    tasks: Sequence[str] = TASKS,
    min_tokens: int = 500,
    max_tokens: int = 4000,
    *,
    length_fn: Callable[[str], int] | None = None,
    start: int = 0,
) -> Iterator[Example]:
    """Yield examples start..start+n-1 of the stream `seed`; each is reproducible on its own.

    Lengths are drawn log-uniformly so that documents land in [min_tokens, max_tokens]
    (measured by `length_fn`, default `estimate_tokens`); tasks are drawn uniformly.
    """
    if min_tokens > max_tokens:
        raise ValueError(f"min_tokens ({min_tokens}) must be <= max_tokens ({max_tokens})")
    lo = min(min_tokens + 40, max_tokens)  # documents end at most one sentence short of target
    for i in range(start, start + n):
        rng = _example_rng(seed, i)
        target = round(math.exp(rng.uniform(math.log(lo), math.log(max_tokens))))
        yield make_example(rng, rng.choice(list(tasks)), target, length_fn=length_fn)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
_PUNCT = set(string.punctuation) | {"\u2013", "\u2014", "\u2018", "\u2019", "\u201c", "\u201d"}


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def exact_match(prediction: str, answer: str) -> float:
    """1.0 if prediction and answer are equal after `normalize_answer`, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(answer))


def key_fact_recall(summary: str, facts: dict[str, str] | Iterable[str]) -> float:
    """Fraction of the fact values found (as whole words, normalized) in `summary`."""
    values = list(facts.values()) if isinstance(facts, dict) else list(facts)
    if not values:
        return 1.0
    hay = f" {normalize_answer(summary)} "
    return sum(f" {normalize_answer(v)} " in hay for v in values) / len(values)


# ---------------------------------------------------------------------------------------------
# Bundled samples for the app
# ---------------------------------------------------------------------------------------------
_SAMPLES = [  # title, kind, target tokens
    ("Project report (about 1K tokens)", "project", 1000),
    ("Company report (about 2.5K tokens)", "company", 2500),
    ("Expedition report (about 4K tokens)", "expedition", 3950),
]


@functools.lru_cache(maxsize=1)
def _samples() -> tuple[tuple[str, Example], ...]:
    out = []
    for i, (title, kind, tokens) in enumerate(_SAMPLES):
        rng = _example_rng(SAMPLE_SEED, i)
        out.append((title, make_example(rng, "summarize", tokens, kind=kind, n_facts=6)))
    return tuple(out)


def sample_examples() -> dict[str, Example]:
    """The app's fixed sample documents as summarize examples (with facts and spans)."""
    return {title: ex for title, ex in _samples()}


def sample_documents() -> dict[str, str]:
    """The app's fixed sample documents: title -> text (about 1K, 2.5K and 4K tokens)."""
    return {title: ex.document for title, ex in _samples()}


def sample_questions() -> dict[str, list[str]]:
    """Suggested questions for each sample document (one per key fact; see sample_examples)."""
    return {
        title: [question_for(ex.kind, name) for name in ex.facts]
        for title, ex in _samples()
    }


# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0..3; "<mask>" is the last id


def vocabulary_corpus(n_docs: int, seed: int = TRAIN_SEED, min_tokens: int = 500,
                      max_tokens: int = 4000) -> Iterator[str]:
    """Texts to train the vocabulary on: documents, questions, summaries and all templates."""
    templates = [
        text for schema in SCHEMAS.values() for s in schema.slots
        for text in (*s.questions, *s.templates, f"{s.label}: Maren Okafor.")
    ]
    for _ in range(50):  # frequent enough to be merged into whole-word tokens even in a tiny corpus
        yield from templates
    for ex in generate_dataset(seed, n_docs, ("summarize",), min_tokens, max_tokens):
        yield ex.document
        yield ex.target
        yield " ".join(question_for(ex.kind, name, v) for name in ex.facts for v in (0, 1))


def train_vocabulary(save_dir: str | os.PathLike | None, vocab_size: int = 4000, n_docs: int = 1000,
                     seed: int = TRAIN_SEED, min_tokens: int = 500, max_tokens: int = 4000):
    """Train the byte-level BPE vocabulary of the demo on `n_docs` generated documents: an
    LEDTokenizerFast (<s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=last id), saved to `save_dir` if given."""
    from ledviz.tokenization import train_bpe_tokenizer

    texts = vocabulary_corpus(n_docs, seed, min_tokens, max_tokens)
    return train_bpe_tokenizer(texts, vocab_size, save_dir=None if save_dir is None else str(save_dir))


def load_tokenizer(path: str | os.PathLike):
    """Load the demo vocabulary saved by `train_vocabulary`."""
    from ledviz.tokenization import LEDTokenizerFast

    return LEDTokenizerFast.from_pretrained(str(path))
