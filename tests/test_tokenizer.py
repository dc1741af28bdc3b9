"""ledviz's LED tokenizers against transformers' LEDTokenizer and LEDTokenizerFast.

A byte-level BPE vocabulary (~1000 tokens, LED's special-token layout) is trained here on a
generated corpus; ours and transformers' tokenizers load the same vocab.json + merges.txt and
must give the same ids, masks, offsets and decoded text. No network.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from ledviz.errors import CheckpointError, InputError
from ledviz.tokenization import BatchEncoding, LEDTokenizer, LEDTokenizerFast, train_bpe_tokenizer
from tokenizer_fixtures import VOCAB_SIZE, TEXTS, PAIRS, dirs, reference, mine, pair, assert_same, assert_same_encoding  # noqa: F401 (fixtures and helpers shared with other modules)

transformers = pytest.importorskip("transformers", reason="transformers (test-only reference) is not installed")


# texts the parity tests run on: plain, Unicode, whitespace, special tokens inside the text


# ---- fixtures ------------------------------------------------------------------------------


# ---- helpers -------------------------------------------------------------------------------


def outcome(tok, *args, **kwargs):
    """The encoding, or the exception type when the call raises."""
    try:
        return tok(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - compared below
        return e


# ---- the trained vocabulary ----------------------------------------------------------------

def test_trained_vocabulary_has_led_layout(dirs, mine):
    vocab = json.loads((dirs["raw"] / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == VOCAB_SIZE, f"corpus too small to fill the vocabulary: {len(vocab)}"
    assert [vocab[t] for t in ("<s>", "<pad>", "</s>", "<unk>")] == [0, 1, 2, 3]
    assert vocab["<mask>"] == VOCAB_SIZE - 1 == max(vocab.values())
    for tok in mine.values():
        assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
        assert (tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (0, 2, VOCAB_SIZE - 1)
        assert tok.vocab_size == len(tok) == VOCAB_SIZE
        assert tok.model_max_length == 16384 and tok.padding_side == "right"


def test_train_rejects_tiny_vocabulary():
    with pytest.raises(InputError, match="vocab_size"):
        train_bpe_tokenizer(["abc"], 100)


# ---- encoding parity -----------------------------------------------------------------------

@pytest.mark.parametrize("text", TEXTS)
def test_single_text_matches(pair, text):
    ours, theirs = pair
    kwargs = dict(return_special_tokens_mask=True, return_token_type_ids=True)
    assert_same_encoding(ours(text, **kwargs), theirs(text, **kwargs), repr(text))
    assert_same(ours.tokenize(text), theirs.tokenize(text), f"tokenize {text!r}")
    assert_same(ours(text, add_special_tokens=False)["input_ids"],
                theirs(text, add_special_tokens=False)["input_ids"], f"no special tokens {text!r}")


@pytest.mark.parametrize("question,context", PAIRS)
def test_pair_matches(pair, question, context):
    ours, theirs = pair
    kwargs = dict(return_special_tokens_mask=True, return_token_type_ids=True)
    enc = ours(question, context, **kwargs)
    assert_same_encoding(enc, theirs(question, context, **kwargs), f"pair {question!r}")
    # <s> A </s></s> B </s>
    q = ours(question, add_special_tokens=False)["input_ids"]
    c = ours(context, add_special_tokens=False)["input_ids"]
    assert enc["input_ids"] == [0, *q, 2, 2, *c, 2]


@pytest.mark.parametrize("padding,max_length,multiple", [
    (True, None, None), ("longest", None, None), ("max_length", 64, None),
    (True, None, 8), ("max_length", 50, 16), (False, None, 8), ("do_not_pad", None, None),
])
def test_batch_padding_matches(pair, padding, max_length, multiple):
    ours, theirs = pair
    kwargs = dict(padding=padding, max_length=max_length, pad_to_multiple_of=multiple,
                  return_special_tokens_mask=True)
    if max_length is not None:
        kwargs["truncation"] = False
    assert_same_encoding(ours(TEXTS, **kwargs), theirs(TEXTS, **kwargs), f"batch padding={padding!r}")
    questions, contexts = zip(*PAIRS)
    assert_same_encoding(ours(list(questions), list(contexts), **kwargs),
                         theirs(list(questions), list(contexts), **kwargs), f"pairs padding={padding!r}")
    # a list of (question, context) tuples is a batch of pairs too
    assert_same_encoding(ours(list(PAIRS), **kwargs), theirs(list(PAIRS), **kwargs), "tuple pairs")


def test_single_text_padding_and_tensors(pair):
    ours, theirs = pair
    for kwargs in (dict(padding=True, pad_to_multiple_of=16), dict(padding="max_length", max_length=30),
                   dict(return_tensors="pt"), dict(padding=True, return_tensors="pt")):
        assert_same_encoding(ours(TEXTS[2], **kwargs), theirs(TEXTS[2], **kwargs), str(kwargs))
    enc = ours(TEXTS[:5], padding=True, return_tensors="pt")
    ref = theirs(TEXTS[:5], padding=True, return_tensors="pt")
    assert enc["input_ids"].shape == ref["input_ids"].shape and enc["input_ids"].dtype == torch.long
    assert_same_encoding(enc, ref, "pt batch")


def test_left_padding_matches(pair):
    ours, theirs = pair
    kwargs = dict(padding=True, padding_side="left", return_special_tokens_mask=True)
    assert_same_encoding(ours(TEXTS[:6], **kwargs), theirs(TEXTS[:6], **kwargs), "left padding")


LONG_A = "the attention window of the encoder is long and the decoder reads it all"
LONG_B = "question answering with global attention on every question token please"


@pytest.mark.parametrize("strategy", ["longest_first", True, "only_first", "only_second"])
@pytest.mark.parametrize("max_length", [1, 3, 4, 5, 9, 10, 11, 15, 16, 17, 24, 200])
def test_pair_truncation_matches(pair, strategy, max_length):
    ours, theirs = pair
    for a, b in ((LONG_A, LONG_B), (LONG_B, LONG_A), (LONG_A, LONG_A), ("short", LONG_B)):
        got = outcome(ours, a, b, truncation=strategy, max_length=max_length)
        want = outcome(theirs, a, b, truncation=strategy, max_length=max_length)
        if isinstance(want, Exception):
            assert isinstance(got, InputError), (
                f"{strategy} {max_length}: transformers raised {want!r}, ours gave {got!r}"
            )
            continue
        assert not isinstance(got, Exception), f"{strategy} {max_length}: ours raised {got!r}"
        assert_same_encoding(got, want, f"{strategy} max_length={max_length} ({len(a)}, {len(b)})")
        # what truncation removed is reported
        full = len(ours(a, b)["input_ids"])
        assert got.num_truncated_tokens == full - len(got["input_ids"])


@pytest.mark.parametrize("strategy", ["longest_first", "only_first", "only_second"])
@pytest.mark.parametrize("max_length", [1, 2, 3, 5, 8])
def test_single_truncation_matches(pair, strategy, max_length):
    ours, theirs = pair
    got = outcome(ours, LONG_A, truncation=strategy, max_length=max_length)
    want = outcome(theirs, LONG_A, truncation=strategy, max_length=max_length)
    if isinstance(want, Exception):
        assert isinstance(got, InputError), f"transformers raised {want!r}, ours gave {got!r}"
    else:
        assert_same_encoding(got, want, f"{strategy} max_length={max_length}")


def test_truncation_batch_and_defaults(pair):
    ours, theirs = pair
    # max_length alone truncates longest_first; truncation=True with padding to a multiple
    for kwargs in (dict(max_length=6), dict(truncation=True, max_length=8, padding=True, pad_to_multiple_of=4),
                   dict(truncation="only_second", max_length=14, padding="max_length")):
        questions, contexts = zip(*PAIRS)
        assert_same_encoding(ours(list(questions), list(contexts), **kwargs),
                             theirs(list(questions), list(contexts), **kwargs), str(kwargs))
    # a max_length that is not a multiple of pad_to_multiple_of is refused by both
    with pytest.raises(ValueError):
        theirs("x", truncation=True, max_length=10, padding=True, pad_to_multiple_of=4)
    with pytest.raises(InputError, match="multiple"):
        ours("x", truncation=True, max_length=10, padding=True, pad_to_multiple_of=4)


def test_truncation_report(mine):
    tok = mine["fast"]
    full = tok([LONG_A, "short"])
    enc = tok([LONG_A, "short"], truncation=True, max_length=6)
    n_long = len(full["input_ids"][0])
    assert enc.num_truncated_tokens == [n_long - 6, 0]
    assert enc.was_truncated and enc.num_tokens_over_limit == [0, 0]
    single = tok(LONG_A, truncation=True, max_length=5)
    assert single.num_truncated_tokens == n_long - 5
    assert not tok("short").was_truncated


@pytest.mark.parametrize("cls", [LEDTokenizerFast, LEDTokenizer])
def test_text_over_model_max_length_is_kept_and_reported(dirs, cls):
    tok = cls.from_pretrained(dirs["raw"], model_max_length=10)
    ref_cls = transformers.LEDTokenizerFast if cls is LEDTokenizerFast else transformers.LEDTokenizer
    ref = ref_cls.from_pretrained(str(dirs["raw"]), model_max_length=10)
    enc = tok([LONG_A, "short"])
    assert_same(enc["input_ids"], ref([LONG_A, "short"])["input_ids"], "over the limit, no truncation")
    assert enc.num_tokens_over_limit == [len(enc["input_ids"][0]) - 10, 0]
    assert enc.num_truncated_tokens == [0, 0]
    # truncation=True cuts at model_max_length
    cut = tok(LONG_A, truncation=True)
    assert_same(cut["input_ids"], ref(LONG_A, truncation=True)["input_ids"], "truncation at model_max_length")
    assert len(cut["input_ids"]) == 10 and cut.num_tokens_over_limit == 0


# ---- offsets and word information (fast) ----------------------------------------------------

@pytest.mark.parametrize("text", TEXTS)
def test_offsets_match_fast(mine, reference, text):
    ref = reference["fast"](text, "second text  here", return_offsets_mapping=True)
    for kind, tok in mine.items():
        enc = tok(text, "second text  here", return_offsets_mapping=True)
        assert_same_encoding(enc, ref, f"offsets {text!r}")
        assert_same(enc.word_ids(), ref.word_ids(), "word_ids")
        assert_same(enc.sequence_ids(), ref.sequence_ids(), "sequence_ids")
        # tokens as the fast tokenizer shows them (" <mask>"); the slow one shows vocabulary entries
        want = ref.tokens() if kind == "fast" else reference["fast"].convert_ids_to_tokens(ref["input_ids"])
        assert_same(enc.tokens(), want, f"{kind} tokens")
        for char in range(len(text)):
            assert enc.char_to_token(char) == ref.char_to_token(char), f"char_to_token({char}) of {text!r}"


def test_offsets_batch_padded_tensors(mine, reference):
    kwargs = dict(padding=True, return_offsets_mapping=True, return_tensors="pt")
    enc = mine["fast"](TEXTS, **kwargs)
    ref = reference["fast"](TEXTS, **kwargs)
    assert enc["offset_mapping"].shape == ref["offset_mapping"].shape
    assert_same_encoding(enc, ref, "padded offsets")
    assert_same(enc.word_ids(3), ref.word_ids(3), "padded word_ids")


# ---- decoding ------------------------------------------------------------------------------

@pytest.mark.parametrize("text", TEXTS)
def test_decode_matches(pair, text):
    ours, theirs = pair
    ids = theirs(text)["input_ids"]
    for skip in (False, True):
        assert_same(ours.decode(ids, skip_special_tokens=skip), theirs.decode(ids, skip_special_tokens=skip),
                    f"decode skip={skip}")
        assert_same(ours.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=True),
                    theirs.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=True), "clean up")
    # partial UTF-8 (a cut emoji or CJK character) is replaced the same way
    assert_same(ours.decode(ids[:-2]), theirs.decode(ids[:-2]), "cut sequence")
    assert_same(ours.decode(torch.tensor(ids)), theirs.decode(ids), "tensor input")


def test_decode_defaults_and_batch(pair):
    ours, theirs = pair
    text = "don't stop , it's fine . really ?"
    ids = theirs(text)["input_ids"]
    # LED in transformers 4.57 does not clean up tokenization spaces by default
    assert ours.decode(ids, skip_special_tokens=True) == text == theirs.decode(ids, skip_special_tokens=True)
    batch = theirs(TEXTS, padding=True, return_tensors="pt")["input_ids"]
    for skip in (False, True):
        assert_same(ours.batch_decode(batch, skip_special_tokens=skip),
                    theirs.batch_decode(batch, skip_special_tokens=skip), f"batch_decode skip={skip}")
        assert_same(ours.batch_decode(batch.tolist(), skip_special_tokens=skip),
                    theirs.batch_decode(batch.tolist(), skip_special_tokens=skip), "batch_decode lists")
    assert ours.decode(5) == theirs.decode(5)


@pytest.mark.parametrize("errors", ["replace", "ignore", "strict"])
def test_decode_errors_setting(dirs, errors):
    # <s>, the first three of the four bytes of 😀 (byte-level symbols), "a", </s>
    ref_fast = transformers.LEDTokenizerFast.from_pretrained(str(dirs["raw"]))
    ids = [0, *ref_fast.convert_tokens_to_ids(list("ðŁĺ")), ref_fast.convert_tokens_to_ids("a"), 2]
    assert "\ufffd" in ref_fast.decode(ids), "the test ids should hold invalid UTF-8"
    for ours_cls, ref_cls in ((LEDTokenizerFast, transformers.LEDTokenizerFast),
                              (LEDTokenizer, transformers.LEDTokenizer)):
        ours = ours_cls.from_pretrained(dirs["raw"], errors=errors)
        ref = ref_cls.from_pretrained(str(dirs["raw"]), errors=errors)
        want = outcome(ref.decode, ids)
        got = outcome(ours.decode, ids)
        if isinstance(want, Exception):
            assert type(got) is type(want), f"{ours_cls.__name__}: {got!r} vs {want!r}"
        else:
            assert_same(got, want, f"{ours_cls.__name__} errors={errors}")


def test_decode_rejects_ids_outside_vocabulary(mine):
    with pytest.raises(InputError, match="-100"):
        mine["fast"].decode([0, 5, -100])
    with pytest.raises(InputError, match="batch_decode"):
        mine["fast"].decode([[0, 5]])


# ---- the documented methods ----------------------------------------------------------------

def test_special_token_methods(pair):
    ours, theirs = pair
    slow = transformers.LEDTokenizer  # the documented methods; the fast class asserts on some forms
    ref = theirs if isinstance(theirs, slow) else None
    a, b = [10, 11, 12], [20, 21]
    assert ours.build_inputs_with_special_tokens(a) == [0, 10, 11, 12, 2]
    assert ours.build_inputs_with_special_tokens(a, b) == [0, 10, 11, 12, 2, 2, 20, 21, 2]
    assert_same(ours.build_inputs_with_special_tokens(a, b), theirs.build_inputs_with_special_tokens(a, b), "build")
    assert ours.get_special_tokens_mask(a) == [1, 0, 0, 0, 1]
    assert ours.get_special_tokens_mask(a, b) == [1, 0, 0, 0, 1, 1, 0, 0, 1]
    assert ours.create_token_type_ids_from_sequences(a, b) == [0] * 9
    with_specials = [0, 10, ours.mask_token_id, 2, 2, 1, 3]
    assert ours.get_special_tokens_mask(with_specials, already_has_special_tokens=True) == [1, 0, 1, 1, 1, 1, 1]
    assert_same(ours.get_special_tokens_mask(with_specials, already_has_special_tokens=True),
                theirs.get_special_tokens_mask(with_specials, already_has_special_tokens=True), "mask with specials")
    if ref is not None:
        assert_same(ours.get_special_tokens_mask(a, b), ref.get_special_tokens_mask(a, b), "special mask")
        assert_same(ours.get_special_tokens_mask(a), ref.get_special_tokens_mask(a), "special mask single")
        assert_same(ours.create_token_type_ids_from_sequences(a, b), ref.create_token_type_ids_from_sequences(a, b),
                    "token types")
    with pytest.raises(InputError):
        ours.get_special_tokens_mask(a, b, already_has_special_tokens=True)


def test_vocabulary_api(pair):
    ours, theirs = pair
    assert ours.vocab_size == theirs.vocab_size and len(ours) == len(theirs)
    assert ours.get_vocab() == theirs.get_vocab()
    assert ours.all_special_tokens == theirs.all_special_tokens
    assert ours.all_special_ids == theirs.all_special_ids
    assert ours.special_tokens_map == {k: str(v) for k, v in theirs.special_tokens_map.items()}
    for attr in ("bos", "eos", "sep", "cls", "unk", "pad", "mask"):
        assert getattr(ours, f"{attr}_token") == str(getattr(theirs, f"{attr}_token"))
        assert getattr(ours, f"{attr}_token_id") == getattr(theirs, f"{attr}_token_id"), attr
    tokens = ours.tokenize("café naïve 東京 😀 <mask>") + ["not-a-token-xyz"]
    assert_same(ours.convert_tokens_to_ids(tokens), theirs.convert_tokens_to_ids(tokens), "tokens -> ids")
    assert ours.convert_tokens_to_ids("not-a-token-xyz") == ours.unk_token_id
    ids = list(range(0, len(ours), 37)) + [len(ours) - 1]
    assert_same(ours.convert_ids_to_tokens(ids), theirs.convert_ids_to_tokens(ids), "ids -> tokens")
    assert_same(ours.convert_ids_to_tokens([0, 5, 1, 2], skip_special_tokens=True),
                theirs.convert_ids_to_tokens([0, 5, 1, 2], skip_special_tokens=True), "skip specials")
    assert ours.convert_ids_to_tokens(5) == theirs.convert_ids_to_tokens(5)


@pytest.mark.parametrize("text", TEXTS + ["\tstarts with a tab", "x</s>y"])
def test_add_prefix_space_matches(dirs, text):
    classes = ((LEDTokenizerFast, transformers.LEDTokenizerFast), (LEDTokenizer, transformers.LEDTokenizer))
    for ours_cls, ref_cls in classes:
        ours = ours_cls.from_pretrained(dirs["raw"], add_prefix_space=True)
        ref = ref_cls.from_pretrained(str(dirs["raw"]), add_prefix_space=True)
        assert_same(ours(text, "pair text")["input_ids"], ref(text, "pair text")["input_ids"],
                    f"{ours_cls.__name__} add_prefix_space {text!r}")
    # without it, the space matters: "Hello" and " Hello" are different tokens
    tok = LEDTokenizerFast.from_pretrained(dirs["raw"])
    assert tok("Hello")["input_ids"] != tok(" Hello")["input_ids"]


# ---- BatchEncoding ---------------------------------------------------------------------------

def test_batch_encoding_access(mine):
    tok = mine["fast"]
    enc = tok(TEXTS[:3], padding=True, return_tensors="pt")
    assert isinstance(enc, BatchEncoding) and isinstance(enc, dict)
    assert enc.input_ids is enc["input_ids"] and enc.attention_mask.shape == enc.input_ids.shape
    assert enc.to("cpu") is enc and enc.input_ids.device.type == "cpu"
    with pytest.raises(AttributeError):
        _ = enc.not_a_key
    with pytest.raises(InputError, match="padding=True"):
        tok(TEXTS[:3], return_tensors="pt")
    # numpy tensors, encode() and tokenize() of a pair
    arr = tok(TEXTS[:3], padding=True, return_tensors="np")["input_ids"]
    assert arr.shape == tuple(enc.input_ids.shape) and arr.tolist() == enc.input_ids.tolist()
    assert tok.encode("a", "b") == tok("a", "b")["input_ids"]
    assert tok.encode("a", return_tensors="pt").shape == (1, 3)
    assert tok.tokenize("a", "b", add_special_tokens=True) == ["<s>", "a", "</s>", "</s>", "b", "</s>"]
    with pytest.raises(InputError):
        tok(None)
    with pytest.raises(InputError):
        tok(["ok", 3])


# ---- padding with a global attention mask ---------------------------------------------------

def test_pad_with_global_attention_mask(pair):
    ours, theirs = pair
    features = []
    for text in TEXTS[:4]:
        enc = theirs(text)
        features.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                         "global_attention_mask": [1] + [0] * (len(enc["input_ids"]) - 1)})
    for kwargs in (dict(), dict(pad_to_multiple_of=8), dict(padding="max_length", max_length=40)):
        got = ours.pad([dict(f) for f in features], **kwargs)
        want = theirs.pad([dict(f) for f in features], **kwargs)
        # transformers pads the global mask with -1, we pad with 0 (both mean "local")
        want_global = [[0 if v == -1 else v for v in row] for row in want["global_attention_mask"]]
        assert -1 in sum(want["global_attention_mask"], []), "the reference no longer pads with -1"
        assert_same(got["global_attention_mask"], want_global, f"global mask {kwargs}")
        assert_same(got["input_ids"], want["input_ids"], f"pad ids {kwargs}")
        assert_same(got["attention_mask"], want["attention_mask"], f"pad mask {kwargs}")
    # a BatchEncoding re-padded to a longer length, as tensors
    enc = ours(TEXTS[:3], padding=True)
    longer = ours.pad(enc, padding="max_length", max_length=64, return_tensors="pt")
    assert longer["input_ids"].shape == (3, 64) and int(longer["attention_mask"][:, 40:].sum()) == 0


def test_pad_global_attention_mask_helper(mine):
    tok = mine["fast"]
    assert tok.pad_global_attention_mask([[1, 0], [1, 1, 0, 1]]) == [[1, 0, 0, 0], [1, 1, 0, 1]]
    assert tok.pad_global_attention_mask([[1]], length=3, pad_to_multiple_of=4) == [[1, 0, 0, 0]]
    padded = tok.pad_global_attention_mask(torch.tensor([[1, 0, 1]]), length=5)
    assert isinstance(padded, torch.Tensor) and padded.tolist() == [[1, 0, 1, 0, 0]]


# ---- saving and loading --------------------------------------------------------------------

def test_save_pretrained_loads_in_transformers(mine, tmp_path):
    ours = mine["fast"]
    ours.save_pretrained(tmp_path)
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (tmp_path / name).is_file(), name
    texts = TEXTS + ["x <mask> y"]
    for ref_cls in (transformers.LEDTokenizerFast, transformers.LEDTokenizer):
        ref = ref_cls.from_pretrained(str(tmp_path))
        assert ref.model_max_length == 16384 and ref.mask_token_id == ours.mask_token_id
        assert_same(ref(texts)["input_ids"], ours(texts)["input_ids"], f"{ref_cls.__name__} on our save")
    # and our classes read it back (tokenizer.json for fast, vocab.json + merges.txt for slow)
    for cls in (LEDTokenizerFast, LEDTokenizer):
        again = cls.from_pretrained(tmp_path)
        assert again.model_max_length == 16384
        assert_same(again(texts)["input_ids"], ours(texts)["input_ids"], f"{cls.__name__} reload")


def test_save_vocabulary(mine, tmp_path):
    vocab_path, merges_path = mine["slow"].save_vocabulary(tmp_path, filename_prefix="led")
    assert os.path.basename(vocab_path) == "led-vocab.json" and os.path.basename(merges_path) == "led-merges.txt"
    ref = transformers.LEDTokenizer(vocab_file=vocab_path, merges_file=merges_path)
    assert_same(ref(TEXTS)["input_ids"], mine["slow"](TEXTS)["input_ids"], "transformers on save_vocabulary")
    ours = LEDTokenizerFast(vocab_file=vocab_path, merges_file=merges_path)
    assert_same(ours(TEXTS)["input_ids"], mine["fast"](TEXTS)["input_ids"], "ours on save_vocabulary")


def test_transformers_saved_folder_loads(reference, mine, tmp_path):
    reference["fast"].save_pretrained(tmp_path)
    ours = LEDTokenizerFast.from_pretrained(tmp_path)
    assert_same(ours(TEXTS)["input_ids"], reference["fast"](TEXTS)["input_ids"], "from transformers' save")
    assert ours.model_max_length == 16384


def test_missing_files_raise_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError) as err:
        LEDTokenizerFast.from_pretrained(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and all(f in message for f in ("tokenizer.json", "vocab.json", "merges.txt"))
    (tmp_path / "vocab.json").write_text("{}", encoding="utf-8")
    with pytest.raises(CheckpointError, match="found: vocab.json"):
        LEDTokenizer.from_pretrained(tmp_path)


def test_hub_cache_layout_loads_by_id(dirs, mine, tmp_path, monkeypatch):
    hub_constants = pytest.importorskip("huggingface_hub.constants", reason="huggingface_hub is not installed")
    # models--org--name/snapshots/<commit>/files and refs/main naming the commit
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--testorg--tiny-led"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(dirs["trained"] / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    for cls in (LEDTokenizerFast, LEDTokenizer):
        tok = cls.from_pretrained("testorg/tiny-led")
        assert_same(tok(TEXTS)["input_ids"], mine["fast"](TEXTS)["input_ids"], f"{cls.__name__} from the Hub cache")
    with pytest.raises(CheckpointError):
        LEDTokenizerFast.from_pretrained("testorg/not-cached")
