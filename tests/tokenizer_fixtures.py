"""A tokenizer vocabulary trained on a generated corpus, ours and transformers' tokenizers on it, and comparisons; shared by the tokenizer test modules."""

from __future__ import annotations

import json
import random
import shutil

import pytest

from ledviz.tokenization import LEDTokenizer, LEDTokenizerFast, train_bpe_tokenizer

transformers = pytest.importorskip("transformers", reason="transformers (test-only reference) is not installed")


VOCAB_SIZE = 1000


WORDS = (
    "the a of attention window global local encoder decoder long document summary question answer "
    "model token layer head longformer sequence input output paper results we show that is are "
    "café naïve über résumé façade São Paulo Zürich 東京 北京 日本語 中文 😀 🎉 👍🏽 ✓ € £ "
    "don't it's we're I'm you've they'll 1024 16384 3.14 2024-01-01 (a) [b] {c} \"quoted\" 'single' "
    "well-known e-mail x+y=z a/b C++ #tag @user https://example.org"
).split()


TEXTS = [
    "Hello world",
    " Hello world",
    "the attention window of the encoder",
    "café naïve über résumé — façade",
    "東京 and 北京 are cities; 日本語の文章",
    "emoji 😀🎉 and skin tone 👍🏽 ✓",
    "multiple   spaces    here",
    "line one\nline two\n\n\tindented\ttab",
    "  leading and trailing  ",
    "\n",
    "",
    "a <mask> b </s>",
    "<s>start<mask>middle</s>end<pad>",
    "no-space<mask>x and  <mask>  y",
    "don't stop, it's fine . really ? yes !",
    "numbers 1024 16384 3.14159 and 2024-01-01",
    "<unk> is unknown",
]


PAIRS = [
    ("What is the window?", "The attention window of the encoder is 1024 tokens."),
    ("東京?", "café 😀 über\nnew line"),
    ("a <mask> b", " leading space in context"),
    ("", "empty question"),
]


def make_corpus(n_lines: int = 3000, seed: int = 0) -> list[str]:
    """Deterministic sentences of WORDS and made-up syllable words, with varied whitespace."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghklmnprstvwz" for v in "aeiou"] + ["ing", "tion", "er", "ly", "é", "ü"]
    made_up = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    seps = [" "] * 12 + ["  ", "\n", "\t", " \n"]
    lines = []
    for _ in range(n_lines):
        n = rng.randint(4, 20)
        words = (rng.choice(WORDS) if rng.random() < 0.5 else rng.choice(made_up) for _ in range(n))
        lines.append("".join(w + rng.choice(seps) for w in words).strip())
    return lines


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """A trained tokenizer folder (ours) and a folder with only its vocab.json + merges.txt."""
    root = tmp_path_factory.mktemp("led_tok")
    trained = root / "trained"
    train_bpe_tokenizer(make_corpus(), VOCAB_SIZE, save_dir=trained)
    raw = root / "raw"
    raw.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(trained / name, raw / name)
    return {"root": root, "trained": trained, "raw": raw}


@pytest.fixture(scope="module")
def reference(dirs):
    """transformers' tokenizers on the raw files (LED's model_max_length set explicitly)."""
    return {
        "fast": transformers.LEDTokenizerFast.from_pretrained(str(dirs["raw"]), model_max_length=16384),
        "slow": transformers.LEDTokenizer.from_pretrained(str(dirs["raw"]), model_max_length=16384),
    }


@pytest.fixture(scope="module")
def mine(dirs):
    """Our tokenizers on the same raw files."""
    return {"fast": LEDTokenizerFast.from_pretrained(dirs["raw"]), "slow": LEDTokenizer.from_pretrained(dirs["raw"])}


@pytest.fixture(params=["fast", "slow"])
def pair(request, mine, reference):
    """(ours, transformers') for LEDTokenizerFast and for LEDTokenizer."""
    return mine[request.param], reference[request.param]


def first_difference(a, b) -> str:
    """Where two (nested) lists first differ, for failure messages."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return f"[{i}] " + first_difference(x, y)
        if len(a) != len(b):
            return f"lengths {len(a)} != {len(b)}"
    return f"{a!r} != {b!r}"


def assert_same(ours, theirs, what: str = "") -> None:
    """Equality with the differing ids in the message."""
    assert ours == theirs, (
        f"{what}: first difference {first_difference(ours, theirs)}\n ours:   {ours}\n theirs: {theirs}"
    )


def assert_same_encoding(ours, theirs, what: str = "") -> None:
    """Same keys and same values (tensors compared as lists)."""
    assert set(ours.keys()) == set(theirs.keys()), f"{what}: keys {sorted(ours.keys())} != {sorted(theirs.keys())}"
    for key in theirs.keys():
        a, b = ours[key], theirs[key]
        a = a.tolist() if hasattr(a, "tolist") else a
        b = b.tolist() if hasattr(b, "tolist") else b
        if key == "offset_mapping":  # tuples vs lists
            a, b = json.loads(json.dumps(a)), json.loads(json.dumps(b))
        assert_same(a, b, f"{what} [{key}]")
