"""Drop-in for transformers users, part 2: the tokenizer API they bring (text_target, encode_plus,
added tokens, overflowing windows, init_kwargs, vocabularies without special tokens, unknown
characters), against transformers' LEDTokenizer and LEDTokenizerFast on the same files."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from ledviz.errors import InputError
from ledviz.tokenization import LEDTokenizer, LEDTokenizerFast
from tokenizer_fixtures import assert_same, assert_same_encoding, dirs, mine, pair, reference  # noqa: F401 (fixtures)

transformers = pytest.importorskip("transformers")

LONG = "the attention window of the encoder is long and the document is longer still, as the results show"
CLASSES = {"fast": (LEDTokenizerFast, "LEDTokenizerFast"), "slow": (LEDTokenizer, "LEDTokenizer")}


def _both(kind: str, folder, **kw):
    ours_cls, name = CLASSES[kind]
    return ours_cls.from_pretrained(folder, **kw), getattr(transformers, name).from_pretrained(str(folder), **kw)


@pytest.mark.parametrize("kw", [{}, {"padding": True}, {"max_length": 6, "truncation": True},
                                {"padding": "max_length", "max_length": 12, "return_tensors": "pt"}], ids=str)
def test_text_target_gives_labels(pair, kw):
    ours, theirs = pair
    texts, targets = ["a long document about attention", "short"], ["the summary", "a much longer summary here"]
    assert_same_encoding(ours(texts, text_target=targets, **kw), theirs(texts, text_target=targets, **kw), "labels")
    assert_same_encoding(ours(text_target=targets, **kw), theirs(text_target=targets, **kw), "target alone")
    assert_same_encoding(ours("question?", "context here", text_target="answer", text_pair_target="why"),
                         theirs("question?", "context here", text_target="answer", text_pair_target="why"), "pairs")
    with pytest.raises(InputError, match="text"):
        ours()


def test_encode_plus_and_batch_encode_plus(pair):
    ours, theirs = pair
    for args, kw in ((("Hello world",), {}), (("a question", "its context"), {"return_length": True}),
                     (("Hello world",), {"return_special_tokens_mask": True, "max_length": 4, "truncation": True})):
        assert_same_encoding(ours.encode_plus(*args, **kw), theirs.encode_plus(*args, **kw), f"encode_plus {args}")
    batch = ["Hello world", "the attention window", ("q?", "a context")]
    assert_same_encoding(ours.batch_encode_plus(batch, padding=True, return_tensors="pt"),
                         theirs.batch_encode_plus(batch, padding=True, return_tensors="pt"), "batch_encode_plus")
    with pytest.raises(InputError, match="batch_encode_plus"):
        ours.encode_plus(["a", "b"])


@pytest.mark.parametrize("kind", ["fast", "slow"])
def test_add_tokens_and_special_tokens(dirs, kind):
    ours, theirs = _both(kind, dirs["trained"])
    for tok in (ours, theirs):
        assert tok.add_tokens(["newword", "newword"]) == 1
        assert tok.add_tokens("<ctx>", special_tokens=True) == 1
        assert tok.add_special_tokens({"additional_special_tokens": ["<q>", "<ctx>"]}) == 1
    assert len(ours) == len(theirs) and ours.get_added_vocab() == theirs.get_added_vocab()
    text = "hello newword world <ctx> x newwordy <q>"
    ids = ours(text)["input_ids"]
    assert_same(ids, theirs(text)["input_ids"], "ids with added tokens")
    assert ours.convert_ids_to_tokens(ids) == theirs.convert_ids_to_tokens(ids)
    for skip in (False, True):
        assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip), skip
    assert ours.additional_special_tokens == theirs.additional_special_tokens == ["<q>", "<ctx>"]
    assert ours.additional_special_tokens_ids == theirs.additional_special_tokens_ids
    assert ours.all_special_tokens == theirs.all_special_tokens and ours.all_special_ids == theirs.all_special_ids
    assert ours.special_tokens_map == theirs.special_tokens_map
    for tok in (ours, theirs):
        assert tok.add_special_tokens({"additional_special_tokens": ["<z>"]}, replace_additional_special_tokens=False) == 1
        assert tok.add_special_tokens({"cls_token": "<cls>"}) == 1
    assert ours.cls_token == theirs.cls_token == "<cls>" and ours.additional_special_tokens == theirs.additional_special_tokens
    assert_same(ours("hi there")["input_ids"], theirs("hi there")["input_ids"], "after a new cls_token")
    with pytest.raises(InputError, match="no special-token names"):
        ours.add_special_tokens({"clss_token": "<c>"})


@pytest.mark.parametrize("kind", ["fast", "slow"])
def test_added_tokens_survive_save_and_load(dirs, kind, tmp_path):
    ours, _ = _both(kind, dirs["trained"])
    ours.add_tokens(["newword"])
    ours.add_special_tokens({"additional_special_tokens": ["<q>"]})
    ours.save_pretrained(tmp_path)
    text = "x newword <q> y"
    for cls in (LEDTokenizer, LEDTokenizerFast):
        again = cls.from_pretrained(tmp_path)
        assert again(text)["input_ids"] == ours(text)["input_ids"] and again.additional_special_tokens == ["<q>"]
    theirs = getattr(transformers, CLASSES[kind][1]).from_pretrained(str(tmp_path))
    assert theirs(text)["input_ids"] == ours(text)["input_ids"] and theirs.additional_special_tokens == ["<q>"]
    # a saved folder without tokenizer.json keeps its added tokens in tokenizer_config.json (the slow
    # tokenizer writes none, as transformers')
    if kind == "fast":
        os.remove(tmp_path / "tokenizer.json")
    assert not (tmp_path / "tokenizer.json").exists()
    assert LEDTokenizer.from_pretrained(tmp_path)(text)["input_ids"] == ours(text)["input_ids"]


@pytest.mark.parametrize("kw", [
    dict(max_length=8, truncation=True, stride=2, return_overflowing_tokens=True),
    dict(max_length=8, truncation=True, return_overflowing_tokens=True),
    dict(max_length=8, truncation=True, stride=3, return_overflowing_tokens=True, padding=True),
    dict(max_length=8, truncation=True, stride=2, return_overflowing_tokens=True, padding=True, return_tensors="pt",
         return_offsets_mapping=True),
    dict(max_length=8, truncation="only_first", stride=1, return_overflowing_tokens=True),
    dict(max_length=8, truncation=True, stride=2),
], ids=str)
def test_overflowing_windows_with_stride(pair, kw):
    ours, theirs = pair
    if not ours.is_fast and (kw.get("return_tensors") or kw.get("return_offsets_mapping")):
        pytest.skip("transformers' slow tokenizer returns neither tensors of ragged overflow nor offsets")
    assert_same_encoding(ours(LONG, **kw), theirs(LONG, **kw), "single")
    if "return_tensors" not in kw:
        assert_same_encoding(ours([LONG, "short one", LONG[:30]], **kw), theirs([LONG, "short one", LONG[:30]], **kw),
                             "batch")
    pair_kw = dict(kw, truncation="only_second", max_length=14)
    assert_same_encoding(ours("a question here", LONG, **pair_kw), theirs("a question here", LONG, **pair_kw), "pair")


def test_overflow_errors_name_the_stride(mine):
    with pytest.raises(InputError, match="stride"):
        mine["fast"](LONG, max_length=8, truncation=True, stride=6, return_overflowing_tokens=True)
    with pytest.raises(InputError, match="stride"):
        mine["fast"](LONG, max_length=8, truncation=True, stride=-1, return_overflowing_tokens=True)


@pytest.mark.parametrize("kind", ["fast", "slow"])
def test_init_kwargs(dirs, kind):
    ours, theirs = _both(kind, dirs["trained"], model_max_length=512, padding_side="left")
    for key in ("model_max_length", "padding_side", "truncation_side", "add_prefix_space", "trim_offsets", "errors",
                "clean_up_tokenization_spaces", "name_or_path", "bos_token", "eos_token", "unk_token", "sep_token",
                "pad_token", "cls_token", "mask_token"):
        assert str(ours.init_kwargs[key]) == str(theirs.init_kwargs[key]), key
    assert ours.model_max_length == 512 and ours.padding_side == "left"


@pytest.fixture(scope="module")
def bare_vocab(dirs, tmp_path_factory):
    """vocab.json + merges.txt without <s>, </s>, <pad>, <mask> (<unk> kept at id 0)."""
    folder = tmp_path_factory.mktemp("bare")
    vocab = json.loads((dirs["trained"] / "vocab.json").read_text())
    kept = [t for t in sorted(vocab, key=vocab.get) if t not in ("<s>", "</s>", "<pad>", "<mask>")]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(kept)}))
    shutil.copy(dirs["trained"] / "merges.txt", folder / "merges.txt")
    return folder


@pytest.mark.parametrize("kind", ["fast", "slow"])
def test_vocabulary_without_special_tokens_gets_them_added(bare_vocab, kind):
    ours, theirs = _both(kind, bare_vocab)
    specials = ["<s>", "</s>", "<pad>", "<mask>", "<unk>"]
    assert ours.convert_tokens_to_ids(specials) == theirs.convert_tokens_to_ids(specials)
    assert len(ours) == len(theirs) and ours.vocab_size == theirs.vocab_size
    for text in ("Hello world", "a <mask> b"):
        assert_same_encoding(ours(text), theirs(text), text)
    assert_same_encoding(ours("q?", "ctx"), theirs("q?", "ctx"), "pair")
    assert ours.decode(ours("a <mask> b")["input_ids"]) == theirs.decode(theirs("a <mask> b")["input_ids"])


@pytest.fixture(scope="module")
def holey_vocab(dirs, tmp_path_factory):
    """A vocabulary that lacks the byte symbol of the second byte of 'é' ('©'), and every merge with it."""
    folder = tmp_path_factory.mktemp("holey")
    vocab = json.loads((dirs["trained"] / "vocab.json").read_text())
    kept = [t for t in sorted(vocab, key=vocab.get) if "©" not in t]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(kept)}))
    merges = (dirs["trained"] / "merges.txt").read_text().split("\n")
    (folder / "merges.txt").write_text("\n".join(m for m in merges if "©" not in m))
    return folder


@pytest.mark.parametrize("kind", ["fast", "slow"])
def test_characters_missing_from_the_vocabulary(holey_vocab, kind):
    ours, theirs = _both(kind, holey_vocab)
    for text in ("café über é", "é", "plain text", ("é?", "café")):
        args = text if isinstance(text, tuple) else (text,)
        assert_same_encoding(ours(*args), theirs(*args), f"{kind} {text!r}")
    ids = ours("café")["input_ids"]
    if kind == "slow":  # transformers' Python tokenizer writes <unk>; the fast one drops the piece
        assert ours.unk_token_id in ids
    else:
        assert ours.unk_token_id not in ids


def test_embedded_tokenizer_says_the_models_limit():
    from ledviz import LEDConfig
    from ledviz.pipeline import default_model_dir

    folder = default_model_dir()
    limit = LEDConfig.from_pretrained(folder).max_encoder_position_embeddings
    for cls in (LEDTokenizerFast, LEDTokenizer):
        tok = cls.from_pretrained(folder)
        assert tok.model_max_length == limit == 4096
        # truncation=True alone keeps a direct caller inside the model's limit
        assert len(tok("word " * 6000, truncation=True)["input_ids"]) == limit
    assert transformers.LEDTokenizerFast.from_pretrained(folder).model_max_length == limit


@pytest.mark.parametrize("kind", ["fast", "slow"])
def test_subfolder_and_unknown_keywords(dirs, kind, tmp_path):
    from ledviz.errors import CheckpointError

    shutil.copytree(dirs["trained"], tmp_path / "repo" / "tok")
    ours, theirs = _both(kind, tmp_path / "repo", subfolder="tok")
    assert_same_encoding(ours("Hello world", "a pair"), theirs("Hello world", "a pair"), "subfolder")
    with pytest.raises(CheckpointError, match="subfolder 'nope'"):
        CLASSES[kind][0].from_pretrained(tmp_path / "repo", subfolder="nope")
    with pytest.raises(TypeError, match="model_max_lenght"):
        CLASSES[kind][0].from_pretrained(tmp_path / "repo", subfolder="tok", model_max_lenght=10)


def test_slow_pair_longest_first_overflow_is_refused_as_in_transformers(mine, reference):
    kw = dict(max_length=10, truncation="longest_first", return_overflowing_tokens=True, stride=1)
    with pytest.raises(ValueError, match="longest_first"):
        reference["slow"]("a question that is long enough", LONG, **kw)
    with pytest.raises(InputError, match="only_second"):
        mine["slow"]("a question that is long enough", LONG, **kw)
    # the fast tokenizer cuts such a pair into windows, as transformers' fast one
    assert_same_encoding(mine["fast"]("a question that is long enough", LONG, **kw),
                         reference["fast"]("a question that is long enough", LONG, **kw), "fast pair windows")


# ---- words given already split (is_split_into_words) -----------------------------------------

WORDS = ["The", "attention", "window", "of", "caf\u00e9", "\u6771\u4eac", "<mask>", "", "don't"]
QUESTION = ["What", "is", "it?"]


@pytest.mark.parametrize("kind", ["fast", "slow"])
@pytest.mark.parametrize("kw", [{}, {"add_special_tokens": False}, {"return_offsets_mapping": True},
                                {"max_length": 7, "truncation": True, "padding": "max_length"},
                                {"max_length": 12, "truncation": "only_first", "return_overflowing_tokens": True,
                                 "stride": 1}], ids=str)
def test_split_into_words_matches_transformers(dirs, kind, kw):
    """Word lists, word-list pairs and batches of both give transformers' ids, masks and word ids."""
    ours, theirs = _both(kind, dirs["trained"], add_prefix_space=True)
    if kind == "slow" and kw.get("return_offsets_mapping"):
        # transformers' slow tokenizer has no offsets: ours gives the fast one's
        fast = transformers.LEDTokenizerFast.from_pretrained(str(dirs["trained"]), add_prefix_space=True)
        for args in ((WORDS,), (WORDS, QUESTION), ([WORDS, QUESTION],)):
            assert_same(json.loads(json.dumps(ours(*args, is_split_into_words=True, **kw)["offset_mapping"])),
                        json.loads(json.dumps(fast(*args, is_split_into_words=True, **kw)["offset_mapping"])),
                        f"offsets {args}")
        return
    single = ours(WORDS, is_split_into_words=True, **kw), theirs(WORDS, is_split_into_words=True, **kw)
    pair = (ours(WORDS, QUESTION, is_split_into_words=True, **kw),
            theirs(WORDS, QUESTION, is_split_into_words=True, **kw))
    batch = [WORDS, QUESTION, WORDS[:2]]
    batched = ours(batch, is_split_into_words=True, **kw), theirs(batch, is_split_into_words=True, **kw)
    for (a, b), what in ((single, "single"), (pair, "pair"), (batched, "batch")):
        assert_same_encoding(a, b, what)
        if kind == "fast":
            rows = len(a["input_ids"]) if a.is_batched else 1
            for i in range(rows):
                assert a.word_ids(i) == b.word_ids(i), (what, i)
    assert_same_encoding(ours.batch_encode_plus([(QUESTION, WORDS), (WORDS, QUESTION)], is_split_into_words=True),
                         theirs.batch_encode_plus([(QUESTION, WORDS), (WORDS, QUESTION)], is_split_into_words=True),
                         "batch of pairs")


def test_split_into_words_without_prefix_space(dirs):
    """LEDTokenizerFast needs add_prefix_space=True (as transformers'); LEDTokenizer puts a space in front
    of every word either way, as transformers' does."""
    fast, _ = _both("fast", dirs["trained"])
    with pytest.raises(InputError, match="add_prefix_space=True"):
        fast(WORDS, is_split_into_words=True)
    ours, theirs = _both("slow", dirs["trained"])
    assert ours(WORDS, is_split_into_words=True)["input_ids"] == theirs(WORDS, is_split_into_words=True)["input_ids"]


def test_split_into_words_bad_input(dirs):
    ours, _ = _both("fast", dirs["trained"], add_prefix_space=True)
    with pytest.raises(TypeError, match="list of words"):
        ours("a plain string", is_split_into_words=True)
    with pytest.raises(TypeError, match=r"text\[1\]"):
        ours([["a", "b"], ["c", 3]], is_split_into_words=True)
    with pytest.raises(InputError, match="is_split_into_words=True"):
        ours([["a", "b", "c"]])  # a word list without saying so (two strings would read as a pair)
    with pytest.raises(InputError, match="word lists"):
        ours.batch_encode_plus(["a", "b"], is_split_into_words=True)


@pytest.mark.parametrize("kind", ["fast", "slow"])
def test_pickled_tokenizer_encodes_the_same(dirs, kind):
    """A pickled tokenizer (DataLoader workers, datasets.map) gives the same encodings, overflow windows
    included, and keeps its added tokens."""
    import pickle

    ours, _ = _both(kind, dirs["trained"])
    ours.add_tokens(["newword"])
    again = pickle.loads(pickle.dumps(ours))
    kw = dict(max_length=8, truncation=True, stride=2, return_overflowing_tokens=True)
    assert again(LONG + " newword", **kw) == ours(LONG + " newword", **kw)
    assert len(again) == len(ours)


@pytest.mark.parametrize("kind", ["fast", "slow"])
def test_prepare_for_model_matches_transformers(dirs, kind):
    ours, theirs = _both(kind, dirs["trained"])
    ids_a = theirs.encode("the attention window of the encoder", add_special_tokens=False)
    ids_b = theirs.encode("a question?", add_special_tokens=False)
    for args, kw in (((ids_a,), {}), ((ids_a, ids_b), {"return_length": True}),
                     ((ids_a, ids_b), {"max_length": 8, "truncation": "only_first", "return_overflowing_tokens": True,
                                       "stride": 1}),
                     ((ids_a,), {"padding": "max_length", "max_length": 12, "return_tensors": "pt"}),
                     ((ids_a,), {"return_tensors": "pt", "prepend_batch_axis": True, "return_length": True})):
        assert_same_encoding(ours.prepare_for_model(*args, **kw), theirs.prepare_for_model(*args, **kw), str(kw))
    with pytest.raises(InputError, match="longest_first"):
        ours.prepare_for_model(ids_a, ids_b, max_length=8, truncation=True, return_overflowing_tokens=True)


@pytest.mark.parametrize("kind", ["fast", "slow"])
def test_split_special_tokens_matches_transformers(dirs, kind):
    """split_special_tokens reads special tokens written in the text as text; the fast tokenizer still
    matches added tokens that are not special, the slow one none (both as transformers)."""
    ours, theirs = _both(kind, dirs["trained"], split_special_tokens=True)
    for tok in (ours, theirs):
        tok.add_tokens(["newword"])
        tok.add_special_tokens({"additional_special_tokens": ["<q>"]})
    text = "a <mask> newword <q> </s> b"
    for kw in ({}, {"split_special_tokens": False}, {"split_special_tokens": True, "max_length": 6,
                                                      "truncation": True}):
        assert ours(text, **kw)["input_ids"] == theirs(text, **kw)["input_ids"], kw
        assert ours.tokenize(text, **{k: v for k, v in kw.items() if k == "split_special_tokens"}) == \
            theirs.tokenize(text, **{k: v for k, v in kw.items() if k == "split_special_tokens"}), kw
    assert ours.init_kwargs["split_special_tokens"] is True


def test_add_prefix_space_per_call(dirs):
    """LEDTokenizer takes add_prefix_space per call (transformers' prepare_for_tokenization); the fast one
    raises TypeError for it, as transformers' does."""
    ours, theirs = _both("slow", dirs["trained"])
    for flag in (True, False):
        for args in (("Hello world",), ("a question?", "its context")):
            assert ours(*args, add_prefix_space=flag) == theirs(*args, add_prefix_space=flag)
    fast, theirs_fast = _both("fast", dirs["trained"])
    for tok in (fast, theirs_fast):
        with pytest.raises(TypeError, match="add_prefix_space"):
            tok("Hello world", add_prefix_space=True)


@pytest.mark.parametrize("kind", ["fast", "slow"])
def test_unknown_call_keyword_raises(dirs, kind):
    """A keyword no tokenizer method knows raises TypeError naming it, from every way of calling
    (transformers' fast tokenizer does too; its slow one only logs "not recognized")."""
    ours, _ = _both(kind, dirs["trained"])
    for call in (ours, ours.encode, ours.encode_plus, ours.tokenize):
        with pytest.raises(TypeError, match="return_tensor"):
            call("Hello world", return_tensor="pt")  # a typo of return_tensors
    with pytest.raises(TypeError, match="foo"):
        ours.batch_encode_plus(["a", "b"], foo=1)
    with pytest.raises(TypeError, match="foo"):
        ours.prepare_seq2seq_batch(["a"], ["b"], foo=1)


def test_tokenize_takes_call_keywords(dirs):
    ours, theirs = _both("slow", dirs["trained"])
    assert ours.tokenize("Hello world", add_prefix_space=True) == theirs.tokenize("Hello world", add_prefix_space=True)
    fast, theirs_fast = _both("fast", dirs["trained"])
    assert fast.tokenize("Hello world", add_special_tokens=True) == \
        theirs_fast.tokenize("Hello world", add_special_tokens=True)
    assert ours.tokenize("Hello world", add_special_tokens=True) == fast.tokenize("Hello world", add_special_tokens=True)
