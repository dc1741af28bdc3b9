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
    "Example", "Slot", "Schema", "SCHEMAS", "Variety", "Wordings", "WORDINGS", "QUESTION_FAMILIES",
    "NOT_IN_DOCUMENT", "ask",
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


# a report naming itself ("Project Report: ...", "Annual Report of ...", "Project Bluefinch report."), and one
# opening as _INTRO does ("This report describes the project ..."); group 1 is the kind ("annual": a company's)
_NAMED_REPORT = re.compile(rf"\b({'|'.join([*_OPENINGS, 'annual'])})\b(?:[ \t]+[\w'’-]+){{0,2}}[ \t]+report\b", re.I)
_INTRO_REPORT = re.compile(rf"\bThis report describes the ({'|'.join(_OPENINGS)})\b", re.I)


def looks_like_report(text: str) -> bool:
    """Whether `text` says it is a report of the kinds the embedded model was trained on: it names
    itself one ("Project Report: ...", "Annual Report of ...", "Expedition Report: ...", as
    _OPENINGS; "Project Bluefinch report.") or opens as they do (_INTRO: "This report describes
    the project ..."). A text with neither (an article, a letter) is not what the model knows,
    whatever it writes about it."""
    return report_kind(text) is not None


def report_kind(text: str) -> str | None:
    """The kind of report (a key of SCHEMAS) `text` says it is, as looks_like_report reads it ("Annual
    report" is a company's); the first named when it names several; None for a text that is none."""
    found = [m for m in (_NAMED_REPORT.search(text), _INTRO_REPORT.search(text)) if m is not None]
    if not found:
        return None
    kind = min(found, key=lambda m: m.start()).group(1).lower()
    return "company" if kind == "annual" else kind


# ---------------------------------------------------------------------------------------------
# Variety: many wordings per question and per fact sentence, wide value ranges, questions the
# report does not answer. Off by default (the plain stream above is unchanged); pass a
# `Variety` to make_example / generate_dataset. In every list below the LAST entry is held
# out: it never appears with `Variety(held_out=False)` (training), only with held_out=True.
# ---------------------------------------------------------------------------------------------
NOT_IN_DOCUMENT = "not in the document"  # the answer to a question the report does not answer

# question wording families: the training mix draws all of them; evaluation asks one at a time
QUESTION_FAMILIES = ("suggested", "lower", "upper", "synonyms", "keyword", "imperative", "declarative",
                     "typos")


@dataclass(frozen=True)
class Wordings:
    """How else a slot is asked about and stated: noun phrases (keyword, imperative and
    declarative questions, stated facts), the question word, the value's unit, and whole
    paraphrased questions. The last noun and the last synonym are held out."""

    nouns: tuple[str, ...]
    wh: str
    unit: str
    synonyms: tuple[str, ...]


def _w(nouns: str, wh: str, unit: str, *synonyms: str) -> Wordings:
    return Wordings(tuple(n.strip() for n in nouns.split("|")), wh, unit, synonyms)


WORDINGS: dict[tuple[str, str], Wordings] = {
    ("project", "lead"): _w("project lead|project leader|lead of the project|head of the project|project manager",
                            "who", "{v}", "Who heads the project?", "Who is in charge of the project?",
                            "Who manages the project?", "Who runs the project?", "Who is leading the project?"),
    ("project", "site"): _w("project site|site|site location|location of the site|site of the project", "where",
                            "{v}", "Where is the project based?", "Where does the project take place?",
                            "In which place is the site?", "What is the site's location?",
                            "Where will the work happen?"),
    ("project", "budget"): _w("approved budget|budget|project budget|amount of the budget|funding|spending limit", "what",
                              "{v} credits", "How much money was approved?", "What funding does the project have?",
                              "How big is the budget?", "How much is the budget?", "What amount was budgeted?"),
    ("project", "deadline"): _w("deadline|final deadline|due date|project deadline|completion date", "when", "{v}",
                                "When is the project due?", "By when must the project be finished?",
                                "When does the project have to be done?", "What is the due date?",
                                "When must the work be completed?"),
    ("project", "partner"): _w("main partner|partner|partner organisation|project partner|principal partner", "who",
                               "{v}", "Which organisation is the partner?", "Who is the project's partner?",
                               "Which company partners with the project?", "Who does the project work with?",
                               "Which firm is the main partner?"),
    ("project", "team"): _w("core team size|size of the core team|team size|number of team members|"
                            "headcount of the core team", "what", "{v} members",
                            "How many people are in the core team?", "How big is the core team?",
                            "How many people work in the core team?", "What is the size of the core team?",
                            "How many staff are on the core team?"),
    ("company", "ceo"): _w("chief executive|CEO|chief executive officer|head of the company|company head", "who",
                           "{v}", "Who heads the company?", "Who leads the company?", "Who is the CEO?",
                           "Who is the boss of the company?", "Who manages the company?"),
    ("company", "hq"): _w("headquarters|head office|company headquarters|location of the headquarters|main office",
                          "where", "{v}", "Where is the company based?", "Where is the head office?",
                          "Where is the company headquartered?", "In which city is the company based?",
                          "Where does the company have its head office?"),
    ("company", "revenue"): _w("revenue|annual revenue|company revenue|total revenue|yearly revenue", "what",
                               "{v} units", "How much did the company earn?", "What was the annual revenue?",
                               "How large was the revenue?", "What revenue did the company report?",
                               "How much revenue was reported?"),
    ("company", "founded"): _w("founding date|date of founding|foundation date|founding day|"
                               "date the company was founded", "when", "{v}", "When was the company established?",
                               "When was the company started?", "On what date was the company founded?",
                               "When did the company begin?", "When was the firm set up?"),
    ("company", "parent"): _w("parent company|owner of the company|parent|parent firm|owning company", "what", "{v}",
                              "Which company owns the company?", "Who is the parent company?",
                              "Which firm is the parent?", "Who is the owner of the company?",
                              "Which group owns the company?"),
    ("company", "board"): _w("board size|size of the board|number of board members|board membership|"
                             "count of board members", "what", "{v} members", "How many people are on the board?",
                             "How big is the board?", "How many directors sit on the board?",
                             "What is the size of the board?", "How many seats does the board have?"),
    ("expedition", "leader"): _w("expedition leader|leader|leader of the expedition|head of the expedition|"
                                 "expedition head", "who", "{v}", "Who heads the expedition?",
                                 "Who is in charge of the expedition?", "Who is leading the expedition?",
                                 "Who commands the expedition?", "Who guides the expedition?"),
    ("expedition", "destination"): _w("destination|expedition destination|goal of the expedition|final destination|"
                                      "end point", "where", "{v}", "Where is the expedition headed?",
                                      "Where does the expedition go?", "What place is the expedition bound for?",
                                      "Where will the expedition end?", "Where is the crew travelling to?"),
    ("expedition", "distance"): _w("route length|distance|length of the route|planned distance|route distance",
                                   "what", "{v} kilometres", "How far is the route?",
                                   "How far will the expedition travel?", "What distance does the route cover?",
                                   "How many kilometres is the route?", "How far does the crew go?"),
    ("expedition", "departure"): _w("departure date|date of departure|departure|start date|leaving date", "when",
                                    "{v}", "When does the expedition leave?", "When does the expedition start?",
                                    "On what date does the expedition depart?", "When will the crew set off?",
                                    "When does the journey begin?"),
    ("expedition", "sponsor"): _w("main sponsor|sponsor|expedition sponsor|sponsor of the expedition|chief sponsor",
                                  "who", "{v}", "Which organisation sponsors the expedition?",
                                  "Who pays for the expedition?", "Who funds the expedition?",
                                  "Who is the expedition's sponsor?", "Which company backs the expedition?"),
    ("expedition", "crew"): _w("crew size|size of the crew|number of crew members|crew count|headcount of the crew",
                               "what", "{v} members", "How many people are in the crew?", "How big is the crew?",
                               "How many crew members are there?", "What is the size of the crew?",
                               "How many people travel with the expedition?"),
}
# question frames ({n}: a noun phrase, {wh}: the question word); the last of each is held out
_KEYWORD_FRAMES = ("{n}?", "{n}", "the {n}?", "{N}?", "{n} please?")
_IMPERATIVE_FRAMES = ("Name the {n}.", "Tell me the {n}.", "Give the {n}.", "State the {n}.",
                      "Please give the {n}.", "Find the {n}.", "Identify the {n}.")
_DECLARATIVE_FRAMES = ("The {n} is {wh}?", "So the {n} is {wh}?", "And the {n} is {wh}?", "The {n}: {wh}?",
                       "The {n} would be {wh}?")
# fact sentences beside each slot's own templates ({n}: the slot's main noun, {V}: value with unit)
_SENTENCE_FRAMES = ("According to the records, the {n} is {V}.", "For the record, the {n} is {V}.",
                    "It was confirmed that the {n} is {V}.", "As agreed earlier, the {n} is {V}.",
                    "Records show that the {n} is {V}.", "The report lists {V} as the {n}.")
# questions no report answers; the last three are held out
_OFF_TOPIC = ("What is the capital of France?", "Who wrote Hamlet?", "How tall is Mount Everest?",
              "What is the speed of light?", "Who painted the Mona Lisa?", "When did the Second World War end?",
              "What is the boiling point of water?", "How many legs does a spider have?",
              "What is the largest ocean?", "Who discovered penicillin?", "What time is it?",
              "What is the population of Tokyo?", "Which planet is closest to the sun?",
              "What is the weather like tomorrow?", "Who won the last World Cup?",
              "What colour is the sky?", "How old is the universe?", "Who invented the telephone?")
_KIND_WORDS = {"project": ("project", "core team"), "company": ("company", "board", "ceo", "chief executive"),
               "expedition": ("expedition", "crew")}
_TRAIN_MIX = (("suggested", 0.3), ("synonyms", 0.2), ("keyword", 0.15), ("imperative", 0.15),
              ("declarative", 0.2))
# Variety(hard=True): more of the wordings the model answered worst (keyword, imperative, upper
# case, letter slips), and of the questions a report does not answer about its own kind
_HARD_MIX = (("suggested", 0.15), ("synonyms", 0.15), ("keyword", 0.25), ("imperative", 0.25),
             ("declarative", 0.2))
# (mix, chance of lower case, of upper case, of letter slips, of an unanswerable question asking
# for a slot of the report's own kind, of one asking for another kind's slot)
_QUESTION_MIX = {False: (_TRAIN_MIX, 0.12, 0.08, 0.15, 0.5, 0.25), True: (_HARD_MIX, 0.12, 0.22, 0.25, 0.65, 0.2)}


# Variety(robust=True), training only: more wordings than the lists above (never drawn for
# validation or evaluation, which keep the lists above), and noise on the question (see _roughen),
# so that a question still works when it has words the model never saw tied to a slot. No entry
# here uses a word that only the held-out wordings have (tested): the held-out family measures
# wordings with unseen words, so their words stay out of training.
_EXTRA_WORDINGS: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {
    ("project", "lead"): (("project head", "person in charge of the project", "leader of the project", "lead"),
                          ("Who is the project lead?", "Who directs the project?", "Who oversees the project?",
                           "Who is responsible for the project?")),
    ("project", "site"): (("project location", "location", "place of the project", "work site"),
                          ("Where is the project?", "Where is the project located?",
                           "At which place is the site?")),
    ("project", "budget"): (("total budget", "money approved", "approved amount", "project funding"),
                            ("What is the budget?", "How much funding was approved?",
                             "What is the total budget?")),
    ("project", "deadline"): (("target date", "finish date", "date due", "deadline date"),
                              ("When is the deadline?", "When is the project due to finish?",
                               "By what date is the project due?")),
    ("project", "partner"): (("partner company", "partner firm", "key partner", "partnering organisation"),
                             ("Who is the partner?", "Which organisation works with the project?",
                              "Who partners with the project?")),
    ("project", "team"): (("core team members", "members of the core team", "people in the core team",
                           "core team"),
                          ("How many members are in the core team?", "How many people does the core team have?",
                           "What size is the core team?")),
    ("company", "ceo"): (("chief", "top executive", "company chief", "executive head"),
                         ("Who is the company's chief executive?", "Who directs the company?",
                          "Who is in charge of the company?")),
    ("company", "hq"): (("company base", "base", "home office", "company office"),
                        ("Where is the headquarters?", "Where is the company located?",
                         "In which place is the company based?")),
    ("company", "revenue"): (("income", "earnings", "sales revenue", "revenue figure"),
                             ("What is the revenue?", "What were the company's earnings?",
                              "How much income did the company report?")),
    ("company", "founded"): (("founding", "date founded", "establishment date", "start of the company"),
                             ("When was the company created?", "What date was the company founded?",
                              "When was the company formed?")),
    ("company", "parent"): (("parent organisation", "owner", "parent business", "owner firm"),
                            ("What company owns the company?", "Which is the parent company?",
                             "Who is the parent?")),
    ("company", "board"): (("members of the board", "board members", "directors on the board", "board count"),
                           ("How many board members are there?", "How large is the board?",
                            "How many directors does the board have?")),
    ("expedition", "leader"): (("expedition chief", "chief of the expedition", "expedition commander",
                                "person in charge of the expedition"),
                               ("Who is the leader?", "Who runs the expedition?", "Who is the expedition leader?")),
    ("expedition", "destination"): (("target", "expedition target", "arrival place", "place of arrival"),
                                    ("Where is the expedition going?", "What is the destination?",
                                     "Where does the crew go?")),
    ("expedition", "distance"): (("route", "total distance", "length", "kilometres of the route"),
                                 ("How long is the route?", "What is the route length?",
                                  "How many kilometres does the expedition cover?")),
    ("expedition", "departure"): (("day of departure", "departure day", "start of the expedition",
                                   "setting-off date"),
                                  ("When does the crew leave?", "What is the departure date?",
                                   "When does the expedition set off?")),
    ("expedition", "sponsor"): (("funder", "backer", "expedition funder", "sponsoring organisation"),
                                ("Who sponsors the expedition?", "Who is the main sponsor?",
                                 "Which organisation funds the expedition?")),
    ("expedition", "crew"): (("crew members", "members of the crew", "people in the crew", "crew number"),
                             ("How many people are on the crew?", "How large is the crew?",
                              "How many members does the crew have?")),
}
_EXTRA_FRAMES = {
    "keyword": ("{n}??", "and the {n}?", "what about the {n}?", "{n}, thanks", "{N}."),
    "imperative": ("Show the {n}.", "Report the {n}.", "Check the {n}.", "Give me the {n}.",
                   "Tell me about the {n}.", "Write down the {n}.", "List the {n}."),
    "declarative": ("The {n} was {wh}?", "Then the {n} is {wh}?", "The {n}, {wh}?", "Remind me, the {n} is {wh}?",
                    "Our {n} is {wh}?"),
}
# general words for question noise: no word tied to a slot, a report kind or a question word
_NOISE_WORDS = ("quickly", "again", "exactly", "currently", "really", "now", "here", "also", "still", "just",
                "actually", "briefly", "today", "officially", "overall", "roughly", "kindly", "simply",
                "current", "official", "recorded", "stated", "agreed", "listed", "given", "latest",
                "known", "exact", "right", "correct", "noted", "confirmed", "written", "formal", "usual",
                "hello", "hi", "ok", "well", "so", "hmm", "sorry", "thanks", "quick", "question", "look",
                "remember", "check", "tell", "need", "want", "know", "see", "note", "mention", "our", "this",
                "that", "some", "any", "their", "its", "my", "your", "in", "of", "for", "on", "about", "from",
                "with", "by", "report", "document", "text", "records", "file", "notes", "summary", "page",
                "review", "meeting", "week", "month", "plan", "item", "detail", "fact", "answer")
_NOISE_OPENINGS = ("Quick question:", "One more thing:", "Just checking:", "In this report,",
                   "From the document:", "Hello,", "OK,", "Sorry,", "Out of interest,", "By the way,",
                   "According to the report,", "Looking at the text,", "Hi there,", "Well,")
_NOISE_CLOSINGS = ("thanks", "in the report", "in this document", "again", "exactly", "if known", "as stated",
                   "for the notes", "right now", "for me", "according to the text", "as written")


def _roughen(rng: random.Random, question: str) -> str:
    """Training noise on a question: general words inserted at random places, an opening or a
    closing phrase, or one word dropped, so that unfamiliar or missing words around the words
    that name the slot do not change the answer."""
    words = question.split(" ")
    end = words[-1][-1] if words[-1] and words[-1][-1] in "?.!" else ""
    if end:
        words[-1] = words[-1][:-1]
    op = rng.random()
    if op < 0.4:  # one to three general words anywhere
        for _ in range(rng.choice((1, 1, 2, 3))):
            words.insert(rng.randint(0, len(words)), rng.choice(_NOISE_WORDS))
    elif op < 0.6:
        first = words[0]
        words[0] = first[0].lower() + first[1:] if first[:2] != first[:2].upper() else first
        words = rng.choice(_NOISE_OPENINGS).split(" ") + words
    elif op < 0.8:
        words += rng.choice(_NOISE_CLOSINGS).split(" ")
    elif len(words) > 2:  # drop one word, never the last (usually the noun)
        del words[rng.randrange(len(words) - 1)]
    text = " ".join(w for w in words if w)
    text = text[0].upper() + text[1:] if question[:1].isupper() else text
    return text + end


def _train_part(items: Sequence, held_out: bool) -> Sequence:
    """All but the last item for training wordings; only the last for held-out ones."""
    return items[-1:] if held_out else items[:-1]


def _typo(rng: random.Random, text: str) -> str:
    """One or two letter slips (swap, drop, double, neighbour) in words of 4+ letters."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if sum(c.isalpha() for c in w) >= 4]
    if not candidates:
        return text
    for i in rng.sample(candidates, min(len(candidates), rng.choice((1, 1, 2)))):
        w = words[i]
        letters = [j for j, c in enumerate(w) if c.isalpha()]
        j = rng.choice(letters[1:-1] or letters)
        op = rng.randrange(4)
        if op == 0 and j + 1 < len(w) and w[j + 1].isalpha() and w[j + 1] != w[j]:
            w = w[:j] + w[j + 1] + w[j] + w[j + 2:]
        elif op == 1:
            w = w[:j] + w[j + 1:]
        elif op == 2:
            w = w[:j] + w[j] + w[j:]
        else:
            keys = "qwertyuiopasdfghjklzxcvbnm"
            k = keys.find(w[j].lower())
            new = keys[(k + rng.choice((-1, 1))) % len(keys)] if k >= 0 else w[j]
            w = w[:j] + (new.upper() if w[j].isupper() else new) + w[j + 1:]
        words[i] = w
    return " ".join(words)


def ask(rng: random.Random, kind: str, slot: str, family: str, held_out: bool = False,
        extra: bool = False) -> str:
    """A question about `slot` of a `kind` report in wording `family` (see QUESTION_FAMILIES).

    held_out=False draws only training wordings; True only the held-out ones (the last noun,
    synonym and frame of each list), for every family except "suggested", "lower" and "upper",
    which are the suggested questions themselves (lower- or upper-cased). extra (training only,
    not with held_out): also the wordings of _EXTRA_WORDINGS and _EXTRA_FRAMES."""
    if extra and held_out:
        raise ValueError("extra wordings are for training: not with held_out=True")
    s, w = SCHEMAS[kind].slot(slot), WORDINGS[(kind, slot)]
    if family in ("suggested", "lower", "upper"):
        q = rng.choice(s.questions)
        return q.lower() if family == "lower" else q.upper() if family == "upper" else q
    if family == "typos":
        base = rng.choice(("suggested", "synonyms", "keyword", "imperative", "declarative"))
        return _typo(rng, ask(rng, kind, slot, base, held_out, extra))
    extra_nouns, extra_synonyms = _EXTRA_WORDINGS[(kind, slot)] if extra else ((), ())
    if family == "synonyms":
        return rng.choice(tuple(_train_part(w.synonyms, held_out)) + extra_synonyms)
    frames = {"keyword": _KEYWORD_FRAMES, "imperative": _IMPERATIVE_FRAMES, "declarative": _DECLARATIVE_FRAMES}
    if family not in frames:
        raise ValueError(f"unknown question family {family!r}: use one of {QUESTION_FAMILIES}")
    frame_pool, noun_pool = frames[family], w.nouns
    if held_out:  # a held-out noun in any frame, or any noun in the held-out frame
        if rng.random() < 0.5:
            frame_pool, noun_pool = frame_pool, noun_pool[-1:]
        else:
            frame_pool = frame_pool[-1:]
    else:
        frame_pool, noun_pool = frame_pool[:-1], noun_pool[:-1]
        if extra:
            frame_pool, noun_pool = frame_pool + _EXTRA_FRAMES[family], noun_pool + extra_nouns
    n = rng.choice(noun_pool)
    return rng.choice(frame_pool).format(n=n, N=n[0].upper() + n[1:], wh=w.wh)


def _fact_sentence_templates(kind: str, slot: str, held_out: bool) -> tuple[str, ...]:
    """Fact sentences for a slot ({v}: the value): its own templates and the generic frames
    (training), or only the held-out frame."""
    s, w = SCHEMAS[kind].slot(slot), WORDINGS[(kind, slot)]
    value = w.unit.replace("{v}", "{v}")
    made = tuple(f.replace("{n}", w.nouns[0]).replace("{V}", value) for f in _train_part(_SENTENCE_FRAMES, held_out))
    return made if held_out else s.templates + made


# values of many shapes: names from many languages (the last two of each list and the last
# group are held out), places and organisations built on them, amounts 1..10^9 (the 8-digit
# band is held out), every day of the month, years 1900-2100
_NAME_GROUPS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("John", "Mary", "David", "Sarah", "Michael", "Emily", "Robert", "Grace", "Thomas", "Olivia"),
     ("Smith", "Johnson", "Brown", "Taylor", "Wilson", "Clarke", "Walker", "Wright", "Hughes", "Bennett")),
    (("María José", "Juan Carlos", "Lucía", "Alejandro", "Carmen", "Javier", "Sofía", "Diego", "Elena", "Mateo"),
     ("García López", "Fernández", "de la Cruz", "Martínez", "Rodríguez", "Sánchez", "Ortega", "Navarro",
      "Morales", "Ruiz")),
    (("Hans", "Anna-Lena", "Jürgen", "Katrin", "Lukas", "Sabine", "Matthias", "Greta", "Stefan", "Ulrike"),
     ("Müller", "Schmidt", "van der Berg", "Schneider", "Fischer", "Weber", "Hoffmann", "Becker", "Wagner",
      "Krüger")),
    (("Wei", "Xiu Ying", "Jian", "Li Na", "Hao", "Mei", "Zhi Wei", "Yan", "Jun", "Lan"),
     ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Zhou", "Wu")),
    (("Hiroshi", "Yuki", "Takeshi", "Sakura", "Kenji", "Aiko", "Daisuke", "Haruka", "Ryo", "Emi"),
     ("Tanaka", "Suzuki", "Takahashi", "Watanabe", "Yamamoto", "Nakamura", "Kobayashi", "Sato", "Inoue",
      "Kimura")),
    (("Priya", "Rahul", "Ananya", "Vikram", "Lakshmi", "Arjun", "Deepa", "Sanjay", "Kavya", "Rohan"),
     ("Sharma", "Patel", "Iyer", "Reddy", "Gupta", "Nair", "Singh", "Chatterjee", "Menon", "Rao")),
    (("Mohammed", "Fatima", "Omar", "Layla", "Youssef", "Amira", "Khalid", "Noor", "Tariq", "Salma"),
     ("Al-Farsi", "Haddad", "bin Rashid", "Nasser", "Khalil", "Mansour", "Aziz", "Saleh", "Hamdan", "Karim")),
    (("Chinedu", "Amara", "Kwame", "Nia", "Oluwaseun", "Zainab", "Tendai", "Abeni", "Jabari", "Wanjiru"),
     ("Okafor", "Mensah", "Adeyemi", "Kamau", "Diallo", "Nwosu", "Banda", "Otieno", "Boateng", "Mwangi")),
    (("Dmitri", "Olga", "Sergei", "Natalia", "Ivan", "Svetlana", "Alexei", "Irina", "Pavel", "Tatiana"),
     ("Ivanov", "Petrova", "Smirnov", "Kuznetsova", "Popov", "Sokolov", "Lebedeva", "Novikov", "Morozov",
      "Volkova")),
    (("Nguyen Van", "Linh", "Minh", "Thu", "Quang", "Hoa", "Tuan", "Mai", "Duc", "Lan Anh"),
     ("Nguyen", "Tran", "Le", "Pham", "Hoang", "Phan", "Vu", "Dang", "Bui", "Do")),
    (("Ji-woo", "Min-jun", "Seo-yeon", "Hyun", "Eun-ji", "Sung-min", "Ha-eun", "Jae", "Yuna", "Dong-hyun"),
     ("Kim", "Lee", "Park", "Choi", "Jung", "Kang", "Cho", "Yoon", "Jang", "Lim")),
    (("Søren", "Ingrid", "Bjørn", "Astrid", "Øyvind", "Sigrid", "Lars", "Freya", "Magnus", "Elin"),
     ("Hansen", "Johansson", "Lindqvist", "Andersen", "Nilsson", "Eriksen", "Berg", "Dahl", "Halvorsen",
      "Sandberg")),
    (("Zsófia", "Levente", "Réka", "Bálint", "Eszter", "Gergely", "Noémi", "Csaba", "Dóra", "Ábel"),
     ("Nagy", "Kovács", "Szabó", "Horváth", "Varga", "Tóth", "Farkas", "Balogh", "Papp", "Takács")),  # held out
)
_PLACE_PREFIX = ("San", "Port", "New", "Saint", "Bad", "Nova", "Fort", "Lake", "Mount", "Ciudad de", "Villa",
                 "Kota")
_PLACE_ROOT = ("Marino", "Hollis", "Kirov", "Takahama", "Oyo", "Valdés", "Ashworth", "Lindau", "Kampala",
               "Arcadia", "Tlalpan", "Nizhny", "Brookfield", "Quảng Yên", "Hvidsten", "Sétif", "Kuching",
               "Trondal", "Pécsvár", "Ouarzane")
_PLACE_SUFFIX = ("City", "Springs", "Heights", "del Sur", "am See", "Bay", "Junction", "Norte", "Harbour", "Falls")
_ORG_TYPES = ("Holdings", "GmbH", "Ltd", "Trading Co", "Cooperative", "Institute", "Bank", "Shipping",
              "& Sons", "AG", "Group", "Kabushiki Kaisha", "Trust", "SA", "Brothers")


def _names(held_out: bool) -> tuple[list[str], list[str]]:
    groups = _NAME_GROUPS[-1:] if held_out else _NAME_GROUPS[:-1]
    pick = (lambda xs: xs[-2:]) if held_out else (lambda xs: xs[:-2])
    if held_out:  # the held-out group whole, and the held-out tail of every other group
        firsts = [f for g in _NAME_GROUPS[:-1] for f in g[0][-2:]] + list(groups[0][0])
        lasts = [x for g in _NAME_GROUPS[:-1] for x in g[1][-2:]] + list(groups[0][1])
        return firsts, lasts
    return [f for g in groups for f in pick(g[0])], [x for g in groups for x in pick(g[1])]


def _world_person(rng: random.Random, held_out: bool = False) -> str:
    if held_out:
        firsts, lasts = _names(True)
        return f"{rng.choice(firsts)} {rng.choice(lasts)}"
    group = rng.choice(_NAME_GROUPS[:-1])
    first, last = rng.choice(group[0][:-2]), rng.choice(group[1][:-2])
    if rng.random() < 0.12:  # a middle name from the same group
        middle = rng.choice([f for f in group[0][:-2] if f != first])
        first = f"{first} {middle}"
    return f"{first} {last}"


def _world_place(rng: random.Random, held_out: bool = False) -> str:
    roots = _PLACE_ROOT[-4:] if held_out else _PLACE_ROOT[:-4]
    root, r = rng.choice(roots), rng.random()
    if r < 0.35:
        return root
    if r < 0.7:
        return f"{rng.choice(_PLACE_PREFIX)} {root}"
    return f"{root} {rng.choice(_PLACE_SUFFIX)}"


def _world_org(rng: random.Random, held_out: bool = False) -> str:
    lasts = _names(held_out)[1]
    return f"{rng.choice(lasts)} {rng.choice(_ORG_TYPES)}"


def _wide_amount(rng: random.Random, held_out: bool = False) -> str:
    if held_out:
        return f"{rng.randint(10_000_000, 99_999_999):,}"
    while True:
        v = round(math.exp(rng.uniform(0, math.log(1_000_000_000))))
        if not 10_000_000 <= v <= 99_999_999:
            return f"{v:,}"


_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _long_amount(rng: random.Random, held_out: bool = False) -> str:
    """Variety(hard=True): half the amounts have 5-7 or 9-10 digits (the 8-digit band stays
    held out), so that copying a value learns to run to its end whatever its length."""
    if held_out or rng.random() < 0.5:
        return _wide_amount(rng, held_out)
    digits = rng.choice((5, 6, 7, 7, 9, 9, 10))
    return f"{rng.randint(10 ** (digits - 1), 10 ** digits - 1):,}"


def _long_person(rng: random.Random, held_out: bool = False) -> str:
    """Variety(hard=True): longer and mixed names from the training groups: a first name with
    a last name of any group, middle names, initials, double last names."""
    if held_out:
        return _world_person(rng, True)
    groups = _NAME_GROUPS[:-1]
    group = rng.choice(groups)
    parts = [rng.choice(group[0][:-2])]
    if rng.random() < 0.35:
        parts.append(rng.choice(rng.choice(groups)[0][:-2]))
    if rng.random() < 0.15:
        parts.append(rng.choice(string.ascii_uppercase) + ".")
    lasts = rng.choice(groups)[1][:-2] if rng.random() < 0.3 else group[1][:-2]
    last = rng.choice(lasts)
    if rng.random() < 0.25:
        other = rng.choice(rng.choice(groups)[1][:-2])
        last = f"{last}{rng.choice((' ', '-'))}{other}" if other != last else last
    return " ".join(parts + [last])


def _long_place(rng: random.Random, held_out: bool = False) -> str:
    """Variety(hard=True): also places of three words and more (prefix, root, suffix)."""
    if held_out or rng.random() < 0.7:
        return _world_place(rng, held_out)
    return f"{rng.choice(_PLACE_PREFIX)} {rng.choice(_PLACE_ROOT[:-4])} {rng.choice(_PLACE_SUFFIX)}"


def _wide_date(rng: random.Random, held_out: bool = False) -> str:
    m = rng.randrange(12)
    return f"{rng.randint(1, _MONTH_DAYS[m])} {_MONTHS[m]} {rng.randint(1900, 2100)}"


def _wide_count(rng: random.Random, held_out: bool = False) -> str:
    return str(rng.randint(2, 999))


def _varied_makers(held_out: bool, hard: bool = False) -> dict[str, Callable[[random.Random], str]]:
    """Value makers of the varied data: about half the names and places are the syllable-built
    ones of the plain data, the other half real-world-style (held_out: unseen shapes). hard: more
    real-world-style names, longer names, places and amounts (never the held-out shapes)."""
    def mix(plain, world, share):
        return lambda r: world(r, held_out) if held_out or r.random() < share else plain(r)
    person, place, amount = (_long_person, _long_place, _long_amount) if hard else \
        (_world_person, _world_place, _wide_amount)
    person_share, other_share = (0.75, 0.6) if hard else (0.6, 0.5)
    return {"person": mix(_person, person, person_share), "place": mix(_place, place, other_share),
            "org": mix(_org, _world_org, other_share), "amount": lambda r: amount(r, held_out),
            "count": lambda r: _wide_count(r, held_out), "date": lambda r: _wide_date(r, held_out)}


@dataclass(frozen=True)
class Variety:
    """Options of the varied data (see make_example).

    family: the question's wording family (one of QUESTION_FAMILIES), or None to draw from the
    training mix (all families, with lower case, upper case and typos on top of any wording);
    held_out: only held-out question wordings, and the asked fact stated in a held-out sentence;
    unanswerable: the chance that a question asks for something the report does not state
    (answer NOT_IN_DOCUMENT); unseen_values: key facts take values of held-out shapes;
    hard: the training emphasis of issue 15's second round (more keyword, imperative, upper-case
    and letter-slip questions, more unanswerable questions about the report's own kind, longer
    names, places and amounts), never drawing what is held out;
    robust (training only, not with held_out): also the extra wordings of _EXTRA_WORDINGS and
    _EXTRA_FRAMES, and noise on half the questions (general words inserted, an opening or closing
    phrase, a word dropped; see _roughen).
    """

    family: str | None = None
    held_out: bool = False
    unanswerable: float = 0.15
    unseen_values: bool = False
    hard: bool = False
    robust: bool = False

    def __post_init__(self):
        if self.family is not None and self.family not in QUESTION_FAMILIES:
            raise ValueError(f"unknown question family {self.family!r}: use one of {QUESTION_FAMILIES}")
        if not 0.0 <= self.unanswerable <= 1.0:
            raise ValueError(f"unanswerable must be a probability in [0, 1], got {self.unanswerable}")
        if self.robust and self.held_out:
            raise ValueError("robust=True is training noise: it cannot be combined with held_out=True")

    def _noisy(self, rng: random.Random, q: str) -> str:
        """q, or with robust=True half the time _roughen(q) (no draw from rng without robust)."""
        return _roughen(rng, q) if self.robust and rng.random() < 0.5 else q

    def question(self, rng: random.Random, kind: str, slot: str) -> tuple[str, str]:
        """(question, family) about `slot`."""
        if self.family is not None:
            q = ask(rng, kind, slot, self.family, self.held_out, self.robust)
            return self._noisy(rng, q), self.family
        mix, p_lower, p_upper, p_typo = _QUESTION_MIX[self.hard][:4]
        r, family = rng.random(), mix[-1][0]
        for name, p in mix:
            if r < p:
                family = name
                break
            r -= p
        q = self._noisy(rng, ask(rng, kind, slot, family, self.held_out, self.robust))
        r = rng.random()
        if r < p_lower:
            q, family = q.lower(), "lower"
        elif r < p_lower + p_upper:
            q, family = q.upper(), "upper"
        if rng.random() < p_typo:
            q, family = _typo(rng, q), "typos"
        return q, family

    def unanswered(self, rng: random.Random, kind: str, present: set[str]) -> tuple[str, str]:
        """(question, family) that a `kind` report stating the slots `present` does not answer:
        a missing slot of its kind, a slot of another kind, or an off-topic question."""
        missing = [s.name for s in SCHEMAS[kind].slots if s.name not in present]
        p_own, p_other = _QUESTION_MIX[self.hard][4:]
        r = rng.random()
        if missing and r < p_own:
            return self.question(rng, kind, rng.choice(missing))
        if r < p_own + p_other:  # another kind's slot, worded so that it names that kind (not "leader?")
            other = rng.choice([k for k in REPORT_KINDS if k != kind])
            for _ in range(10):
                q, family = self.question(rng, other, rng.choice(SCHEMAS[other].slots).name)
                if any(w in q.lower() for w in _KIND_WORDS[other]):
                    return q, family
        q = self._noisy(rng, rng.choice(_OFF_TOPIC[-3:] if self.held_out else _OFF_TOPIC[:-3]))
        return (q.lower(), "lower") if rng.random() < 0.1 else (q, "off-topic")


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
    family: str = ""  # the question's wording family (varied data; "" for plain questions)
    answerable: bool = True  # False: the report does not answer the question (target NOT_IN_DOCUMENT)


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

    def __init__(self, rng: random.Random, kind: str, forbidden: set[str],
                 makers: dict[str, Callable[[random.Random], str]] | None = None):
        self.rng, self.kind, self.forbidden = rng, kind, forbidden
        self.makers = makers or _VALUE_MAKERS

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
                values[name] = self.fresh(self.makers[base])
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
    variety: Variety | None = None,
) -> Example:
    """Generate one report of about `target_tokens` tokens (never more) and its `task` target.

    kind: "project" / "company" / "expedition" (random if None); slot: the fact a QA question
    asks about (random if None); n_facts: 4-6 (random if None); length_fn: counts tokens of a
    text (default `estimate_tokens`; pass a tokenizer-based one for exact BPE lengths).
    variety: None for the plain data (fixed templates, narrow value ranges); a `Variety` for
    many question and sentence wordings, wide values and unanswerable questions.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    rng = _as_rng(rng_or_seed)
    length_fn = length_fn or estimate_tokens
    kind = kind or rng.choice(REPORT_KINDS)
    schema = SCHEMAS[kind]
    for _ in range(50):  # retry in the (rare) case a fact value shows up twice
        ex = _build(rng, schema, task, target_tokens, slot, n_facts, length_fn, variety)
        if ex is not None:
            return ex
    raise RuntimeError("could not build a document with unambiguous facts")  # pragma: no cover


def _build(rng, schema: Schema, task, target_tokens, slot, n_facts, length_fn,
           variety: Variety | None = None) -> Example | None:
    kind = schema.kind
    k = n_facts or rng.randint(4, 6)
    chosen = sorted(rng.sample(range(len(schema.slots)), k))
    slots = [schema.slots[i] for i in chosen]
    if slot is not None and slot not in {s.name for s in slots}:
        slots = sorted(set(slots[1:]) | {schema.slot(slot)}, key=schema.slots.index)
    makers = _VALUE_MAKERS if variety is None else _varied_makers(variety.unseen_values, variety.hard)
    facts: dict[str, str] = {}
    for s in slots:
        while True:
            v = makers[s.value_type](rng)
            if not any(_overlaps(v, f) for f in facts.values()):
                facts[s.name] = v
                break
    fill = _Filler(rng, kind, set(facts.values()), None if variety is None else _varied_makers(False, variety.hard))
    asked = None
    if variety is not None and task == "qa":  # chosen before the sentences: a held-out one states it
        asked = slot or rng.choice(sorted(facts))

    def templates(s: Slot) -> Sequence[str]:
        if variety is None:
            return s.templates
        return _fact_sentence_templates(kind, s.name, variety.held_out and s.name == asked)

    fact_sentences = {  # {v} is kept out of render(), which fills the other placeholders
        s.name: fill.render(rng.choice(templates(s)).replace("{v}", "\x00")).replace("\x00", facts[s.name])
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

    family, answerable = "", True
    if task == "qa" and variety is not None:
        if slot is None and rng.random() < variety.unanswerable:
            (question, family), target, answerable = variety.unanswered(rng, kind, set(facts)), NOT_IN_DOCUMENT, False
        else:
            (question, family), target = variety.question(rng, kind, asked), facts[asked]
    elif task == "qa":
        asked = slot or rng.choice(sorted(facts))
        s = schema.slot(asked)
        question, target = rng.choice(s.questions), facts[asked]
    else:
        question, target = None, summary_for(kind, facts)
    return Example(task, text, question, target, facts, fact_spans, kind, fact_sentence_spans, family, answerable)


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
    variety: Variety | None = None,
) -> Iterator[Example]:
    """Yield examples start..start+n-1 of the stream `seed`; each is reproducible on its own.

    Lengths are drawn log-uniformly so that documents land in [min_tokens, max_tokens]
    (measured by `length_fn`, default `estimate_tokens`); tasks are drawn uniformly.
    `variety` (see make_example) makes varied data instead of the plain stream.
    """
    if min_tokens > max_tokens:
        raise ValueError(f"min_tokens ({min_tokens}) must be <= max_tokens ({max_tokens})")
    lo = min(min_tokens + 40, max_tokens)  # documents end at most one sentence short of target
    for i in range(start, start + n):
        rng = _example_rng(seed, i)
        target = round(math.exp(rng.uniform(math.log(lo), math.log(max_tokens))))
        yield make_example(rng, rng.choice(list(tasks)), target, length_fn=length_fn, variety=variety)


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
