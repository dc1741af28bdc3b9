"""transformers' LED tokenizer tests (tests/models/led/test_tokenization_led.py and the
TokenizerTesterMixin of tests/test_tokenization_common.py, 4.57.6), re-written as checks that run
on either library.

Each `check_<upstream test name>(lib)` does what the upstream test does, with the upstream test's
assertions, and returns a record of what it saw (ids, texts, lengths, flags). The test module runs
every check on ledviz's tokenizers and on transformers' tokenizers built from the same files and
asserts the two records are equal: the expected values are transformers' own.

Where ledviz differs on purpose (README, "Deliberate differences from transformers"), the check
asserts each library's own behaviour and leaves it out of the record. `UPSTREAM` accounts for every
upstream test: ported, a deliberate difference, or skipped with the reason it does not apply.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import pickle
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from tokenizers import AddedToken

# ---- the files ---------------------------------------------------------------------------------

# the upstream LED test's vocabulary: a few byte-level BPE pieces and <unk>, no other special token
TINY_VOCAB = ["l", "o", "w", "e", "r", "s", "t", "i", "d", "n", "\u0120", "\u0120l", "\u0120n", "\u0120lo",
              "\u0120low", "er", "\u0120lowest", "\u0120newer", "\u0120wider", "<unk>"]
TINY_MERGES = ["#version: 0.2", "\u0120 l", "\u0120l o", "\u0120lo w", "e r", ""]

# stands in for upstream's tests/fixtures/sample_text.txt (a few hundred tokens of prose)
SAMPLE_TEXT = (
    "The attention window of the encoder is long, and the document is longer still. We show that "
    "global attention on the question tokens is what the model needs to answer; local attention "
    "alone reads each token with its neighbours. The results of the paper are in the summary: "
    "the longformer sequence model reads 16384 tokens, and its decoder writes the output layer by layer."
) * 6


def write_tiny_vocab(folder: str) -> str:
    """vocab.json + merges.txt of the upstream LED tokenizer test in `folder`."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(TINY_VOCAB)}, f)
        f.write("\n")
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(TINY_MERGES))
    return folder


@dataclass
class Lib:
    """One library's two LED tokenizer classes, and the folders the checks load them from.

    `tiny`: the upstream test's own vocabulary (its `tmpdirname`); `real`: a trained LED-style
    vocabulary standing in for allenai/led-base-16384 (upstream's `tokenizers_list`)."""

    name: str  # "ledviz" or "transformers"
    slow_class: type
    fast_class: type
    logger: str
    tiny: str
    real: str

    @property
    def is_ref(self) -> bool:
        return self.name == "transformers"

    # upstream's get_tokenizer / get_rust_tokenizer (the LED test adds unk_token="<unk>")
    def slow(self, folder: str | None = None, **kw):
        return self.slow_class.from_pretrained(folder or self.tiny, **({"unk_token": "<unk>"} | kw))

    def fast(self, folder: str | None = None, **kw):
        return self.fast_class.from_pretrained(folder or self.tiny, **({"unk_token": "<unk>"} | kw))

    def both(self, **kw):
        return [self.slow(**kw), self.fast(**kw)]

    # upstream's tokenizers_list entries: the pretrained tokenizer, as it is
    def real_slow(self, **kw):
        return self.slow_class.from_pretrained(self.real, **kw)

    def real_fast(self, **kw):
        return self.fast_class.from_pretrained(self.real, **kw)

    @contextmanager
    def logs(self, level=logging.WARNING):
        """The records this library's logger gives at `level` and above inside the block."""
        records: list[logging.LogRecord] = []

        class Keep(logging.Handler):
            def emit(self, record):
                records.append(record)

        log = logging.getLogger(self.logger)
        handler, old_level = Keep(level), log.level
        log.addHandler(handler)
        log.setLevel(min(level, old_level) if old_level else level)
        try:
            yield records
        finally:
            log.removeHandler(handler)
            log.setLevel(old_level)


def reset_warnings(tokenizer) -> None:
    """Make once-per-tokenizer warnings fire again (upstream: `tokenizer.deprecation_warnings = {}`)."""
    tokenizer.deprecation_warnings = {}


def plain(value):
    """Lists, dicts, ints and strings from encodings, tensors and tuples (what a record holds)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "items"):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def raises(fn, *args, **kwargs) -> type | None:
    """The exception class `fn(*args, **kwargs)` raises (None if it returns)."""
    try:
        fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the class is the result
        return type(e)
    return None


def clean_sequence(tok, with_prefix_space=False, max_length=20, min_length=5) -> tuple[str, list[int]]:
    """Upstream's get_clean_sequence: a text of vocabulary entries that are plain letters/spaces and
    encode back to their own id, and its ids."""
    picked = []
    for i in sorted(set(tok.get_vocab().values())):
        piece = tok.decode([i], clean_up_tokenization_spaces=False)
        if re.fullmatch(r"[ a-zA-Z]+", piece) and tok.encode(piece, add_special_tokens=False) == [i]:
            picked.append(i)
    picked = picked[:max_length] if max_length is not None else picked
    while picked and min_length is not None and len(picked) < min_length:
        picked = picked + picked
    text = tok.decode(picked, clean_up_tokenization_spaces=False)
    if " " not in text and len(picked) > 1:
        text = (tok.decode(picked[:1], clean_up_tokenization_spaces=False) + " "
                + tok.decode(picked[1:], clean_up_tokenization_spaces=False))
    if with_prefix_space:
        text = " " + text
    return text, tok.encode(text, add_special_tokens=False)


def as_rows(batch) -> list[dict]:
    """A batched encoding as one dict per sequence (upstream's convert_batch_encode_plus_format_to_encode_plus)."""
    return [{k: plain(batch[k][i]) for k in batch} for i in range(len(batch["input_ids"]))]


def trailing_pads(ids, pad_id) -> int:
    n = 0
    for i in reversed(ids):
        if i != pad_id:
            break
        n += 1
    return n


# ---- the LED test module's own checks ---------------------------------------------------------

SRC = ["A long paragraph for summarization.", "Another paragraph for summarization."]
TGT = ["Summary of the text.", "Another summary."]


def check_test_prepare_batch(lib):
    out = []
    for tok in (lib.real_slow(), lib.real_fast()):
        # upstream hard-codes the ids for its Hub vocabulary, where both texts have 9 tokens
        expected = tok(SRC[0])["input_ids"]
        longest = max(len(tok(t)["input_ids"]) for t in SRC)
        batch = tok(SRC, max_length=len(expected), padding=True, return_tensors="pt")
        assert tuple(batch.input_ids.shape) == (2, longest) == tuple(batch.attention_mask.shape)
        assert batch.input_ids.tolist()[0][:len(expected)] == expected
        out.append(plain(batch))
    return out


def check_test_prepare_batch_empty_target_text(lib):
    out = []
    for tok in (lib.real_slow(), lib.real_fast()):
        batch = tok(SRC, padding=True, return_tensors="pt")
        assert "input_ids" in batch and "attention_mask" in batch
        assert "labels" not in batch and "decoder_attention_mask" not in batch
        out.append(sorted(batch))
    return out


def check_test_tokenizer_as_target_length(lib):
    out = []
    for tok in (lib.real_slow(), lib.real_fast()):
        targets = tok(text_target=TGT, max_length=32, padding="max_length", return_tensors="pt")
        assert targets["input_ids"].shape[1] == 32
        out.append(plain(targets))
    return out


def check_test_prepare_batch_not_longer_than_maxlen(lib):
    out = []
    for tok in (lib.real_slow(model_max_length=16384), lib.real_fast(model_max_length=16384)):
        batch = tok(["I am a small frog" * 1024, "I am a small frog"], padding=True, truncation=True,
                    return_tensors="pt")
        assert batch.input_ids.shape[0] == 2 and batch.input_ids.shape[1] <= tok.model_max_length
        out.append(list(batch.input_ids.shape))
    return out


def check_test_special_tokens(lib):
    for tok in (lib.real_slow(), lib.real_fast()):
        ids = tok(SRC[:1], return_tensors="pt")["input_ids"]
        labels = tok(text_target=TGT[:1], return_tensors="pt")["input_ids"]
        for seq in (ids, labels):
            assert (seq[:, 0] == tok.bos_token_id).all() and (seq[:, -1] == tok.eos_token_id).all()
    return True


def check_test_global_attention_mask(lib):
    """Deliberate difference: transformers pads LED's global_attention_mask with -1, ledviz with 0."""
    fill = -1 if lib.is_ref else 0
    for tok in (lib.real_slow(), lib.real_fast()):
        enc = tok(TGT, padding=False)
        enc["global_attention_mask"] = [[0] * len(x) for x in enc["input_ids"]]
        lengths = [len(x) for x in enc["input_ids"]]
        padded = tok.pad(enc)
        assert padded["global_attention_mask"] == [[0] * n + [fill] * (max(lengths) - n) for n in lengths]
    return lengths


def check_test_embeded_special_tokens(lib):
    slow, fast = lib.real_slow(), lib.real_fast()
    sentence = "A, <mask> AllenNLP sentence."
    r = fast.encode_plus(sentence, add_special_tokens=True, return_token_type_ids=True)
    p = slow.encode_plus(sentence, add_special_tokens=True, return_token_type_ids=True)
    assert sum(r["token_type_ids"]) == sum(p["token_type_ids"]) == 0
    assert sum(r["attention_mask"]) / len(r["attention_mask"]) == sum(p["attention_mask"]) / len(p["attention_mask"])
    assert p["input_ids"] == r["input_ids"]
    tokens = slow.convert_ids_to_tokens(p["input_ids"])
    assert tokens == fast.convert_ids_to_tokens(r["input_ids"]) and "<mask>" in tokens
    return [plain(p), tokens]


def check_test_pretokenized_inputs(lib):
    """LED's test module turns this mixin check off (`pass`): on its tiny vocabulary the "clean" text has
    runs of spaces that word splitting cannot give back, in transformers too. Ported anyway on the
    real vocabulary, with add_prefix_space=True (the common check skips tokenizers without it)."""
    out = []
    for tok in (lib.real_slow(add_prefix_space=True), lib.real_fast(add_prefix_space=True)):
        # (upstream's clean sequence, its runs of spaces made single as on upstream's Hub vocabulary)
        text = " " + " ".join(clean_sequence(tok, with_prefix_space=True)[0].split())
        words = text.split()
        for special in (False, True):
            assert tok.encode(words, is_split_into_words=True, add_special_tokens=special) == \
                tok.encode(text, add_special_tokens=special)
            a = tok.encode_plus(words, is_split_into_words=True, add_special_tokens=special)
            b = tok.encode_plus(text, add_special_tokens=special)
            assert all(a[k] == b[k] for k in a)
            batch = [text.strip()] * 2 + [text.strip() + " " + text.strip()]
            split_batch = [s.split() for s in batch]
            joined = [" " + " ".join(s) for s in split_batch]
            a = tok.batch_encode_plus(split_batch, is_split_into_words=True, add_special_tokens=special)
            b = tok.batch_encode_plus(joined, add_special_tokens=special)
            assert all(a[k] == b[k] for k in a)
            assert tok.encode(words, words, is_split_into_words=True, add_special_tokens=special) == \
                tok.encode(text, text, add_special_tokens=special)
            a = tok.encode_plus(words, words, is_split_into_words=True, add_special_tokens=special)
            b = tok.encode_plus(text, text, add_special_tokens=special)
            assert all(a[k] == b[k] for k in a)
            pairs = [(text.strip(), text.strip())] * 2 + [(text.strip() + " " + text.strip(), text.strip())]
            split_pairs = [tuple(s.split() for s in p) for p in pairs]
            joined_pairs = [tuple(" " + " ".join(s) for s in p) for p in split_pairs]
            a = tok.batch_encode_plus(split_pairs, is_split_into_words=True, add_special_tokens=special)
            b = tok.batch_encode_plus(joined_pairs, add_special_tokens=special)
            assert all(a[k] == b[k] for k in a)
            out.append(plain(a))
    return out


# ---- the mixin's checks: one tokenizer at a time ----------------------------------------------

def check_test_model_input_names_signature(lib):
    return [tok.model_input_names for tok in lib.both() if tok.model_input_names[0] == "input_ids"]


def check_test_rust_tokenizer_signature(lib):
    params = inspect.signature(lib.fast_class.__init__).parameters
    assert "tokenizer_file" in params and params["tokenizer_file"].default is None
    return True


def check_test_tokenizer_slow_store_full_signature(lib):
    tok = lib.slow()
    for name, p in inspect.signature(lib.slow_class.__init__).parameters.items():
        if p.default is not inspect.Parameter.empty:
            assert name in tok.init_kwargs, name
    return True


def check_test_tokenizer_fast_store_full_signature(lib):
    tok = lib.fast()
    for name, p in inspect.signature(lib.fast_class.__init__).parameters.items():
        if p.default is not inspect.Parameter.empty and name not in ("vocab_file", "merges_file", "tokenizer_file"):
            assert name in tok.init_kwargs, name
    return True


def check_test_rust_and_python_full_tokenizers(lib):
    slow, fast = lib.slow(), lib.fast()
    text = "lower newer"  # the LED test's get_input_output_texts
    out = []
    for special in (False, True):
        assert slow.encode(text, add_special_tokens=special) == fast.encode(text, add_special_tokens=special)
        out.append(slow.encode(text, add_special_tokens=special))
    return out


SPECIAL_ATTRS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]


def check_test_tokenizers_common_properties(lib):
    for tok in lib.both():
        for attr in SPECIAL_ATTRS:
            assert hasattr(tok, attr) and hasattr(tok, attr + "_id")
        for attr in ("additional_special_tokens", "additional_special_tokens_ids", "model_max_length",
                     "init_inputs", "init_kwargs"):
            assert hasattr(tok, attr), attr
        if not tok.is_fast:
            assert hasattr(tok, "added_tokens_encoder") and hasattr(tok, "added_tokens_decoder")
    return True


def check_test_tokenizers_common_ids_setters(lib):
    out = []
    for tok in lib.both():
        some_id = next(iter(tok.get_vocab().values()))
        some_token = tok.convert_ids_to_tokens(some_id, skip_special_tokens=False)
        for attr in SPECIAL_ATTRS:
            setattr(tok, attr + "_id", None)
            assert getattr(tok, attr) is None and getattr(tok, attr + "_id") is None
            setattr(tok, attr + "_id", some_id)
            assert getattr(tok, attr) == some_token and getattr(tok, attr + "_id") == some_id
        tok.additional_special_tokens_ids = []
        assert tok.additional_special_tokens == [] and tok.additional_special_tokens_ids == []
        tok.additional_special_tokens_ids = [some_id]
        assert tok.additional_special_tokens == [some_token] and tok.additional_special_tokens_ids == [some_id]
        if not tok.is_fast:  # (transformers' fast get_vocab() has no fixed order)
            out.append(some_token)
    return out


def check_test_tokenizers_special_tokens_properties_unset(lib):
    for verbose in (True, False):
        for tok in lib.both(verbose=verbose) if lib.is_ref else lib.both():
            for attr in SPECIAL_ATTRS + ["additional_special_tokens"]:
                setattr(tok, attr, None)
                assert getattr(tok, attr) is None, attr
    return True


def check_test_save_and_load_tokenizer(lib):
    out = []
    for tok in lib.both():
        assert tok.model_max_length != 42
    sample = " He is very happy, UNwant\u00e9d,running"
    for tok in lib.both():
        with tempfile.TemporaryDirectory() as d:
            before, vocab = tok.encode(sample, add_special_tokens=False), tok.get_vocab()
            tok.save_pretrained(d)
            again = type(tok).from_pretrained(d)
            assert again.encode(sample, add_special_tokens=False) == before and again.get_vocab() == vocab
            out.append(before)
    for tok in lib.both(model_max_length=42):
        with tempfile.TemporaryDirectory() as d:
            tok.add_tokens(["bim", "bambam"])
            extra = tok.additional_special_tokens
            extra.append("new_additional_special_token")
            tok.add_special_tokens({"additional_special_tokens": extra}, replace_additional_special_tokens=False)
            before, vocab = tok.encode(sample, add_special_tokens=False), tok.get_vocab()
            tok.save_pretrained(d)
            again = type(tok).from_pretrained(d)
            after_vocab = again.get_vocab()
            assert again.encode(sample, add_special_tokens=False) == before and after_vocab == vocab
            assert "bim" in after_vocab and "bambam" in after_vocab
            assert "new_additional_special_token" in again.additional_special_tokens
            assert again.model_max_length == 42
            assert type(tok).from_pretrained(d, model_max_length=43).model_max_length == 43
            out.append([before, sorted(after_vocab.items())])
    return out


def check_test_pickle_tokenizer(lib):
    out = []
    for tok in lib.both():
        text = "Munich and Berlin are nice cities"
        pieces = tok.tokenize(text)
        assert pickle.loads(pickle.dumps(tok)).tokenize(text) == pieces
        out.append(pieces)
    return out


def check_test_pickle_added_tokens(lib):
    token = AddedToken("<s>", rstrip=True, lstrip=True, normalized=False, single_word=True)
    assert pickle.loads(pickle.dumps(token)).__getstate__() == token.__getstate__()
    return True


def check_test_added_tokens_do_lower_case(lib):
    """The branch for tokenizers without do_lower_case (LED has none)."""
    out = []
    for tok in lib.both():
        special = tok.all_special_tokens[0]
        text = special + " aaaaa bbbbbb low cccccccccdddddddd l " + special
        text2 = special + " AAAAA BBBBBB low CCCCCCCCCDDDDDDDD l " + special
        before = tok.tokenize(text)
        added = tok.add_tokens([AddedToken(t, lstrip=True, rstrip=True)
                                for t in ["aaaaa bbbbbb", "cccccccccdddddddd", "AAAAA BBBBBB", "CCCCCCCCCDDDDDDDD"]])
        assert added in (2, 4)
        after, after2 = tok.tokenize(text), tok.tokenize(text2)
        assert len(after) == len(after2) and after[1] != after2[1] and len(before) > len(after)
        out.append([before, after, after2])
    return out


def check_test_add_tokens_tokenizer(lib):
    out = []
    for tok in lib.both():
        vocab_size, size = tok.vocab_size, len(tok)
        assert vocab_size != 0
        new = [AddedToken("aaaaa bbbbbb", rstrip=True, lstrip=True), AddedToken("cccccccccdddddddd", rstrip=True, lstrip=True)]
        assert tok.add_tokens(new) == 2
        assert tok.vocab_size == vocab_size and len(tok) == size + 2
        ids = tok.encode("aaaaa bbbbbb low cccccccccdddddddd l", add_special_tokens=False)
        assert len(ids) >= 4 and ids[0] > tok.vocab_size - 1 and ids[-2] > tok.vocab_size - 1
        specials = {"eos_token": AddedToken(">>>>|||<||<<|<<", rstrip=True, lstrip=True),
                    "pad_token": AddedToken("<<<<<|||>|>>>>|>", rstrip=True, lstrip=True)}
        assert tok.add_special_tokens(specials) == 2
        assert tok.vocab_size == vocab_size and len(tok) == size + 4
        ids2 = tok.encode(">>>>|||<||<<|<< aaaaa bbbbbb low cccccccccdddddddd <<<<<|||>|>>>>|> l",
                          add_special_tokens=False)
        assert len(ids2) >= 6 and ids2[0] > tok.vocab_size - 1 and ids2[0] > ids2[1]
        assert ids2[-2] > tok.vocab_size - 1 and ids2[-2] > ids2[-3]
        assert ids2[0] == tok.eos_token_id and ids2[-2] == tok.pad_token_id
        out.append([ids, ids2])
    return out


def check_test_add_special_tokens(lib):
    out = []
    for tok in lib.both():
        text, ids = clean_sequence(tok)
        tok.add_special_tokens({"cls_token": AddedToken("[SPECIAL_TOKEN]", lstrip=True, rstrip=True)})
        special_ids = tok.encode("[SPECIAL_TOKEN]", add_special_tokens=False)
        assert len(special_ids) == 1
        joined = tok.decode(ids + special_ids, clean_up_tokenization_spaces=False)
        encoded = tok.encode(joined, add_special_tokens=False)
        assert encoded == tok.encode(text, add_special_tokens=False) + special_ids
        decoded = tok.decode(encoded, skip_special_tokens=True)
        assert "[SPECIAL_TOKEN]" not in decoded
        out.append([joined, encoded, decoded])
    return out


def check_test_internal_consistency(lib):
    out = []
    for tok in lib.both():
        text = "lower newer"
        pieces = tok.tokenize(text)
        ids = tok.convert_tokens_to_ids(pieces)
        assert ids == tok.encode(text, add_special_tokens=False)
        assert len(tok.convert_ids_to_tokens(ids)) != 0
        decoded = tok.decode(ids)
        assert isinstance(decoded, str) and decoded == text
        out.append([pieces, ids])
    return out


def check_test_encode_decode_with_spaces(lib):
    tok = lib.slow()
    tok.add_tokens([AddedToken(t, normalized=True, lstrip=True, rstrip=True) for t in ("[ABC]", "[DEF]", "GHI IHG")])
    tok.add_tokens([AddedToken("[SAMPLE]", normalized=True)], special_tokens=True)
    text = "[ABC][DEF][ABC]GHI IHG[DEF]"
    ids = tok.encode(text, add_special_tokens=False)
    decoded = tok.decode(ids, spaces_between_special_tokens=False)  # LED: space_between_special_tokens False
    assert decoded in (text, text.lower())
    return [ids, decoded]


def check_test_mask_output(lib):
    # upstream checks token_type_ids only for tokenizers that list them; LED does not
    return [("token_type_ids" in tok.model_input_names) for tok in lib.both()]


def check_test_token_type_ids(lib):
    out = []
    for tok in lib.both():
        types = tok("Test this method.", return_token_type_ids=True)["token_type_ids"]
        assert 0 in types
        out.append(types)
    return out


def check_test_sequence_ids(lib):
    tok = lib.fast()
    one, two = tok("Test this method."), tok("Test this method.", "With these inputs.")
    assert 0 in one.sequence_ids() and {0, 1, None} <= set(two.sequence_ids())
    return [one.sequence_ids(), two.sequence_ids()]


def check_test_number_of_added_tokens(lib):
    out = []
    for tok in lib.both():
        plain_ids = tok.encode("Test this method.", "With these inputs.", add_special_tokens=False)
        with_special = tok.encode("Test this method.", "With these inputs.", add_special_tokens=True)
        assert tok.num_special_tokens_to_add(pair=True) == len(with_special) - len(plain_ids)
        out.append(with_special)
    return out


LONG_WARNING = "Token indices sequence length is longer than the specified maximum sequence length for this model"


def check_test_maximum_encoding_length_single_input(lib):
    out = []
    for tok in lib.both(model_max_length=100):
        seq_0, _ = clean_sequence(tok, max_length=20)
        sequence = tok.encode(seq_0, add_special_tokens=False)
        total = len(sequence)
        assert total > 4 and tok.model_max_length == 100
        seq_1 = seq_0 * 100
        assert len(tok(seq_1, add_special_tokens=False)["input_ids"]) > 100
        for padding in (False, True, "longest"):
            for truncation in (True, "longest_first", "only_first"):
                assert len(tok(seq_1, padding=padding, truncation=truncation)["input_ids"]) == 100
                assert len(tok([seq_1], padding=padding, truncation=truncation)["input_ids"][0]) == 100
            for batch in (False, True):
                reset_warnings(tok)
                with lib.logs() as records:
                    got = tok([seq_1] if batch else seq_1, padding=padding, truncation=False)["input_ids"]
                assert len(got[0] if batch else got) != 100
                assert len(records) == 1 and records[0].getMessage().startswith(LONG_WARNING)
        info = tok(seq_0, max_length=total - 2, add_special_tokens=False, stride=2, truncation="longest_first",
                   return_overflowing_tokens=True)
        if tok.is_fast:
            kept, overflow = info["input_ids"][0], info["input_ids"][1]
            assert len(info["input_ids"]) == 2
        else:
            kept, overflow = info["input_ids"], info["overflowing_tokens"]
        assert kept == sequence[:-2] and overflow == sequence[-4:]
        out.append(plain(info))
    return out


def check_test_maximum_encoding_length_pair_input(lib):
    out = []
    stride = 2
    for tok in lib.both(model_max_length=100):
        seq_0, ids = clean_sequence(tok, max_length=20)
        if len(ids) <= 2 + stride:
            seq_0 = (seq_0 + " ") * (2 + stride)
        ids_0 = tok.encode(seq_0, add_special_tokens=False)
        assert len(ids_0) > 2 + stride
        seq_1 = "This is another sentence to be encoded."
        ids_1 = tok.encode(seq_1, add_special_tokens=False)
        if abs(len(ids_0) - len(ids_1)) <= 2:
            seq_1 = tok.decode(ids_1 + ids_1, clean_up_tokenization_spaces=False)
        ids_1 = tok.encode(seq_1, add_special_tokens=False)
        assert len(ids_1) > 2 + stride
        smallest = ids_1 if len(ids_0) > len(ids_1) else ids_0
        sequence = tok.encode(seq_0, seq_1, add_special_tokens=False)
        seq_2 = seq_0 * 100
        assert len(tok(seq_1, add_special_tokens=False)["input_ids"]) < 90
        assert len(tok(seq_2, seq_1, add_special_tokens=False)["input_ids"]) > 100
        for padding in (False, True, "longest"):
            for truncation in (True, "longest_first", "only_first"):
                assert len(tok(seq_2, seq_1, padding=padding, truncation=truncation)["input_ids"]) == 100
                assert len(tok([seq_2], [seq_1], padding=padding, truncation=truncation)["input_ids"][0]) == 100
            assert len(tok(seq_1, seq_2, padding=padding, truncation="only_second")["input_ids"]) == 100
            assert len(tok([seq_1], [seq_2], padding=padding, truncation="only_second")["input_ids"][0]) == 100
            for batch in (False, True):
                reset_warnings(tok)
                with lib.logs() as records:
                    got = tok(*(([seq_1], [seq_2]) if batch else (seq_1, seq_2)), padding=padding,
                              truncation=False)["input_ids"]
                assert len(got[0] if batch else got) != 100
                assert len(records) == 1 and records[0].getMessage().startswith(LONG_WARNING)
        cut_first = ids_0[:-2] + ids_1
        cut_second = ids_0 + ids_1[:-2]
        cut_longest = cut_first if len(ids_0) > len(ids_1) else cut_second
        over_first = ids_0[-(2 + stride):] + ids_1
        over_second = ids_0 + ids_1[-(2 + stride):]
        over_longest = over_first if len(ids_0) > len(ids_1) else over_second
        common = dict(max_length=len(sequence) - 2, add_special_tokens=False, stride=stride,
                      return_overflowing_tokens=True)
        record = []
        for truncation in ("longest_first", True):
            if tok.is_fast:
                info = tok(seq_0, seq_1, truncation=truncation, **common)
                assert len(info["input_ids"]) == 2
                assert info["input_ids"][0] == cut_longest
                assert len(info["input_ids"][1]) == 2 + stride + len(smallest)
                assert info["input_ids"][1] == over_longest
                record.append(plain(info))
            else:
                error = raises(tok, seq_0, seq_1, truncation=truncation, **common)
                assert error is not None and issubclass(error, ValueError)
        for truncation, cut, over_fast, over_slow in (("only_first", cut_first, over_first, ids_0[-(2 + stride):]),
                                                      ("only_second", cut_second, over_second, ids_1[-(2 + stride):])):
            info = tok(seq_0, seq_1, truncation=truncation, **common)
            if tok.is_fast:
                assert len(info["input_ids"]) == 2 and info["input_ids"][0] == cut and info["input_ids"][1] == over_fast
            else:
                assert info["input_ids"] == cut and info["overflowing_tokens"] == over_slow
            record.append(plain(info))
        out.append(record)
    return out


def check_test_special_tokens_mask(lib):
    out = []
    for tok in lib.both():
        ids = tok.encode("Encode this.", add_special_tokens=False)
        enc = tok.encode_plus("Encode this.", add_special_tokens=True, return_special_tokens_mask=True)
        mask = enc["special_tokens_mask"]
        assert len(mask) == len(enc["input_ids"])
        assert [x for x, m in zip(enc["input_ids"], mask) if not m] == ids
        out.append(mask)
    return out


def check_test_special_tokens_mask_input_pairs(lib):
    out = []
    for tok in lib.both():
        ids = tok.encode("Encode this.", add_special_tokens=False) + \
            tok.encode("This one too please.", add_special_tokens=False)
        enc = tok.encode_plus("Encode this.", "This one too please.", add_special_tokens=True,
                              return_special_tokens_mask=True)
        mask = enc["special_tokens_mask"]
        assert len(mask) == len(enc["input_ids"])
        assert [x for x, m in zip(enc["input_ids"], mask) if not m] == ids
        out.append(mask)
    return out


def _side_in_kwargs(lib, name):
    for make in (lib.real_fast, lib.real_slow):
        assert getattr(make(**{name: "left"}), name) == "left"
        assert getattr(make(**{name: "right"}), name) == "right"
        error = raises(make, **{name: "unauthorized"})
        assert error is not None and issubclass(error, ValueError)
    return True


def check_test_padding_side_in_kwargs(lib):
    return _side_in_kwargs(lib, "padding_side")


def check_test_truncation_side_in_kwargs(lib):
    return _side_in_kwargs(lib, "truncation_side")


def check_test_right_and_left_padding(lib):
    out = []
    for tok in lib.both():
        pad = tok.pad_token_id
        for side in ("right", "left"):
            tok.padding_side = side
            ids = tok.encode("Sequence")
            padded = tok.encode("Sequence", max_length=len(ids) + 10, padding="max_length")
            assert padded == (ids + [pad] * 10 if side == "right" else [pad] * 10 + ids)
            out.append(padded)
        ids = tok.encode("Sequence")
        for side, padding in (("right", True), ("left", "longest"), ("right", None), ("left", False)):
            tok.padding_side = side
            kw = {} if padding is None else {"padding": padding}
            assert tok.encode("Sequence", **kw) == ids
    return out


def check_test_right_and_left_truncation(lib):
    out = []
    for tok in lib.both():
        text = "This is a test sequence"
        ids = tok.encode(text, add_special_tokens=False)
        n = len(ids)
        for side, expected in (("right", ids[:-3]), ("left", ids[3:])):
            tok.truncation_side = side
            cut = tok.encode(text, max_length=n - 3, truncation=True, add_special_tokens=False)
            assert cut == expected
            out.append(cut)
        for side, kw in (("right", {"truncation": True}), ("left", {"truncation": "longest_first"}),
                         ("right", {}), ("left", {"truncation": False})):
            tok.truncation_side = side
            assert tok.encode(text, add_special_tokens=False, **kw) == ids
    return out


def check_test_padding_to_multiple_of(lib):
    out = []
    for tok in lib.both():
        for enc in (tok("", padding=True, pad_to_multiple_of=8),
                    tok("This is a sample input", padding=True, pad_to_multiple_of=8),
                    tok("This", padding=True, truncation=True, pad_to_multiple_of=8)):
            assert all(len(v) % 8 == 0 for v in enc.values())
            out.append(plain(enc))
        enc = tok("This", pad_to_multiple_of=8)  # no padding asked: nothing padded
        assert all(len(v) % 8 != 0 for v in enc.values())
        error = raises(tok, "This", padding=True, truncation=True, max_length=12, pad_to_multiple_of=8)
        assert error is not None and issubclass(error, ValueError)
    return out


def check_test_padding_with_attention_mask(lib):
    out = []
    for tok in lib.both():
        features = [{"input_ids": [1, 2, 3, 4, 5, 6], "attention_mask": [1, 1, 1, 1, 1, 0]},
                    {"input_ids": [1, 2, 3], "attention_mask": [1, 1, 0]}]
        padded = tok.pad(features)
        assert padded["attention_mask"] == [[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0]]
        out.append(plain(padded))
    return out


def check_test_encode_plus_with_padding(lib):
    out = []
    for as_call_kwarg in (True, False):
        for tok in lib.both():
            pad = tok.pad_token_id
            enc = tok.encode_plus("Sequence", return_special_tokens_mask=True)
            ids, mask, n = enc["input_ids"], enc["special_tokens_mask"], len(enc["input_ids"])
            for padding in (True, False):
                same = tok.encode_plus("Sequence", padding=padding, return_special_tokens_mask=True)
                assert same["input_ids"] == ids and same["special_tokens_mask"] == mask
            padded = {}
            for side in ("right", "left"):
                kw = dict(max_length=n + 10, padding="max_length", return_special_tokens_mask=True)
                if as_call_kwarg:
                    kw["padding_side"] = side
                else:
                    tok.padding_side = side
                padded[side] = got = tok.encode_plus("Sequence", **kw)
                fill = lambda v, x: v + [x] * 10 if side == "right" else [x] * 10 + v  # noqa: E731
                assert got["input_ids"] == fill(ids, pad)
                assert got["special_tokens_mask"] == fill(mask, 1)
                assert got["attention_mask"] == fill(enc["attention_mask"], 0)
            out.append(plain(padded))
    return out


def check_test_padding_warning_message_fast_tokenizer(lib):
    fast = lib.fast()
    with lib.logs() as records:
        fast.pad(fast("This is a text"))
    assert len(records) == 1
    assert "with a fast tokenizer, using the `__call__` method is faster" in records[0].getMessage()
    slow = lib.slow()
    with lib.logs() as records:
        slow.pad(slow("This is a text"))
    assert not records
    return True


def check_test_get_vocab(lib):
    out = []
    for tok in lib.both():
        vocab = tok.get_vocab()
        assert isinstance(vocab, dict) and len(tok) >= len(vocab)
        assert len([tok.convert_ids_to_tokens(i) for i in range(len(tok))]) == len(tok)
        tok.add_tokens(["asdfasdfasdfasdf"])
        tokens = [tok.convert_ids_to_tokens(i) for i in range(len(tok))]
        assert len(tokens) == len(tok)
        out.append(tokens)
    return out


def check_test_conversion_reversible(lib):
    for tok in lib.both():
        for word, i in tok.get_vocab().items():
            if word != tok.unk_token:
                assert tok.convert_tokens_to_ids(word) == i and tok.convert_ids_to_tokens(i) == word
    return True


BATCH_TEXTS = ["Testing batch encode plus", "Testing batch encode plus with different sequence lengths",
               "Testing batch encode plus with different sequence lengths correctly pads"]


def check_test_call(lib):
    s = BATCH_TEXTS
    for tok in lib.both():
        assert plain(tok.encode_plus(s[0])) == plain(tok(s[0]))
        assert plain(tok.encode_plus(s[0], s[1])) == plain(tok(s[0], s[1]))
        assert plain(tok.batch_encode_plus(s)) == plain(tok(s))
        assert plain(tok.batch_encode_plus(list(zip(s, s)))) == plain(tok(s, s))
    return True


def check_test_batch_encode_plus_batch_sequence_length(lib):
    out = []
    for tok in lib.both():
        singles = [plain(tok.encode_plus(s)) for s in BATCH_TEXTS]
        assert singles == as_rows(tok.batch_encode_plus(BATCH_TEXTS, padding=False))
        longest = max(len(e["input_ids"]) for e in singles)
        padded = [plain(tok.encode_plus(s, max_length=longest, padding="max_length")) for s in BATCH_TEXTS]
        assert padded == as_rows(tok.batch_encode_plus(BATCH_TEXTS, padding=True))
        assert plain(tok.batch_encode_plus(BATCH_TEXTS, padding=True)) == \
            plain(tok.batch_encode_plus(BATCH_TEXTS, max_length=longest + 10, padding="longest"))
        assert plain(tok.batch_encode_plus(BATCH_TEXTS, padding=False)) == \
            plain(tok.batch_encode_plus(BATCH_TEXTS, max_length=longest + 10, padding=False))
        out.append(padded)
    return out


def check_test_added_token_are_matched_longest_first(lib):
    out = []
    for order in (("extra_id_1", "extra_id_100"), ("extra_id_100", "extra_id_1")):
        tok = lib.slow()
        for t in order:
            tok.add_tokens([AddedToken(t)])
        pieces = tok.tokenize("This is some extra_id_100")
        assert "extra_id_100" in pieces
        out.append(pieces)
    return out


def check_test_added_token_serializable(lib):
    out = []
    for tok in lib.both():
        tok.add_tokens([AddedToken("new_token", lstrip=True)])
        with tempfile.TemporaryDirectory() as d:
            tok.save_pretrained(d)
            again = tok.from_pretrained(d)
            out.append(again.encode("a new_token here", add_special_tokens=False))
    return out


def check_test_batch_encode_plus_padding(lib):
    out = []
    for side in ("right", "left"):
        for tok in lib.both():
            tok.padding_side = side
            singles = [plain(tok.encode_plus(s, max_length=100, padding="max_length")) for s in BATCH_TEXTS]
            assert singles == as_rows(tok.batch_encode_plus(BATCH_TEXTS, max_length=100, padding="max_length"))
            out.append(singles)
    return out


def check_test_prepare_for_model(lib):
    out = []
    for tok in lib.both():
        text = "Testing the prepare_for_model method."
        prepared = tok.prepare_for_model(tok.encode(text, add_special_tokens=False), add_special_tokens=True)
        assert plain(prepared) == plain(tok.encode_plus(text, add_special_tokens=True))
        out.append(plain(prepared))
    return out


def check_test_batch_encode_plus_overflowing_tokens(lib):
    out = []
    for tok in lib.both():
        enc = tok.batch_encode_plus(["Testing the prepare_for_model method.", "Test"], return_overflowing_tokens=True,
                                    truncation=True, padding=True, max_length=3)
        out.append(plain(enc))
    return out


def check_test_prepare_seq2seq_batch(lib):
    """Upstream passes src_lang="en_XX" and expects it ignored; ledviz raises TypeError for it (nothing is
    silently dropped), so the call is made without it here and the TypeError is asserted apart."""
    src = [" UN Chief Says There Is No Military Solution in Syria",
           " Secretary-General Ban Ki-moon says his response to Russia's stepped up military support for Syria is "
           "that 'there is no military solution' to the nearly five-year conflict and more weapons will only worsen "
           "the violence and misery for millions of people."]
    tgt = ["\u015eeful ONU declar\u0103 c\u0103 nu exist\u0103 o solu\u0163ie militar\u0103 \u00een Siria",
           "Secretarul General Ban Ki-moon declar\u0103 c\u0103 r\u0103spunsul s\u0103u la intensificarea sprijinului "
           "militar al Rusiei pentru Siria este c\u0103 \"nu exist\u0103 o solu\u0163ie militar\u0103\"."]
    out = []
    for tok in lib.both():
        if not lib.is_ref:
            assert raises(tok.prepare_seq2seq_batch, src, tgt, max_length=3, src_lang="en_XX") is TypeError
        batch = tok.prepare_seq2seq_batch(src_texts=src, tgt_texts=tgt, max_length=3, max_target_length=10,
                                          return_tensors="pt")
        assert batch.input_ids.shape[1] == 3 and batch.labels.shape[1] == 10
        batch2 = tok.prepare_seq2seq_batch(src, tgt_texts=tgt, max_length=3, return_tensors="pt")
        assert batch2.input_ids.shape[1] == 3 and batch2.labels.shape[1] == 3
        enc_only = tok.prepare_seq2seq_batch(src_texts=src, max_length=3, max_target_length=10, return_tensors="pt")
        assert enc_only.input_ids.shape[1] == 3 and enc_only.attention_mask.shape[1] == 3
        assert "decoder_input_ids" not in enc_only
        out.append([plain(batch), plain(batch2), sorted(enc_only)])
    return out


def check_test_is_fast(lib):
    assert lib.real_fast().is_fast and not lib.real_slow().is_fast
    return True


def check_test_fast_only_inputs(lib):
    tok = lib.real_fast()
    for fn in (tok.tokenize, tok.encode, tok.encode_plus, tok.batch_encode_plus):
        assert raises(fn, None) is not None and issubclass(raises(fn, None), TypeError), fn.__name__
    return True


def check_test_alignment_methods(lib):
    tok = lib.real_fast()
    words = ["Wonderful", "no", "inspiration", "example", "with", "subtoken"]
    text = " ".join(words)
    enc = tok.encode_plus(text, add_special_tokens=False)
    batch = tok.batch_encode_plus([text] * 3, add_special_tokens=False)
    n = len(enc["input_ids"])
    record = {"words": enc.words(0), "batch_words": batch.words(2)}
    assert len(enc.words(0)) == n and max(enc.words(0)) == len(words) - 1 and min(enc.words(0)) == 0
    assert len(batch.words(2)) == n and max(batch.words(2)) == len(words) - 1
    assert len(enc.tokens(0)) == n
    # word <-> tokens <-> chars, single and batched forms
    assert enc.word_to_tokens(0).start == 0 and enc.word_to_tokens(0, 0).start == 0
    assert enc.word_to_tokens(len(words) - 1).end == n
    assert batch.word_to_tokens(2, len(words) - 1).end == n
    assert enc.token_to_chars(0).start == 0 and enc.token_to_chars(0, 0).start == 0
    assert enc.token_to_chars(n - 1).end == len(text) and batch.token_to_chars(2, n - 1).end == len(text)
    assert enc.char_to_token(0) == 0 and enc.char_to_token(0, 0) == 0
    assert enc.char_to_token(len(text) - 1) == n - 1 and batch.char_to_token(2, len(text) - 1) == n - 1
    assert enc.char_to_word(0) == 0 and enc.char_to_word(len(text) - 1) == len(words) - 1
    assert batch.char_to_word(2, len(text) - 1) == len(words) - 1
    assert enc.word_to_chars(0).start == 0 and enc.word_to_chars(len(words) - 1).end == len(text)
    assert batch.word_to_chars(2, len(words) - 1).end == len(text)
    assert enc.token_to_word(0) == 0 and enc.token_to_word(n - 1) == len(words) - 1
    assert batch.token_to_word(2, n - 1) == len(words) - 1
    record["every"] = [[tuple(enc.word_to_tokens(w)), tuple(enc.word_to_chars(w))] for w in range(len(words))]
    record["chars"] = [[enc.char_to_token(c), enc.char_to_word(c)] for c in range(len(text))]
    record["tokens"] = [[tuple(enc.token_to_chars(t)), enc.token_to_word(t), enc.token_to_sequence(t)] for t in range(n)]
    # pairs: sequence index of each token, and lookups in the second text
    pair = tok.encode_plus(text, text, add_special_tokens=True)
    m = len(pair["input_ids"])
    assert pair.token_to_sequence(1) == 0 and pair.token_to_sequence(m - 2) == 1
    assert pair.token_to_sequence(0) is None and pair.token_to_sequence(m - 1) is None
    assert pair.char_to_token(0, sequence_index=1) > pair.char_to_token(0, sequence_index=0)
    assert pair.word_to_tokens(0, sequence_index=1).start > pair.word_to_tokens(0, sequence_index=0).start
    assert pair.char_to_word(0, sequence_index=1) == 0
    assert pair.word_to_chars(0, sequence_index=1).start == 0
    pairs = tok.batch_encode_plus([(text, text)] * 2, add_special_tokens=True)
    assert pairs.token_to_sequence(1, m - 2) == 1
    assert pairs.char_to_token(1, 0, sequence_index=1) == pair.char_to_token(0, sequence_index=1)
    record["pair"] = [pair.token_to_sequence(t) for t in range(m)]
    return record


def check_test_tokenization_python_rust_equals(lib):
    slow, fast = lib.real_slow(), lib.real_fast()
    keys = ("input_ids", "token_type_ids", "attention_mask")
    out = []
    for args, kw in (((SAMPLE_TEXT,), {}), ((SAMPLE_TEXT, SAMPLE_TEXT), {}),
                     ((SAMPLE_TEXT,), {"max_length": 512, "truncation": True})):
        p, r = slow.encode_plus(*args, **kw), fast.encode_plus(*args, **kw)
        assert all(p[k] == r[k] for k in keys if k in p)
        out.append(p["input_ids"])
    p = slow.encode_plus(SAMPLE_TEXT, max_length=64, truncation=True, stride=3, return_overflowing_tokens=True)
    r = fast.encode_plus(SAMPLE_TEXT, max_length=64, truncation=True, stride=3, return_overflowing_tokens=True)
    assert all(p[k] == r[k][0] for k in keys if k in p)
    out.append(plain(r))
    return out


def check_test_num_special_tokens_to_add_equal(lib):
    slow, fast = lib.real_slow(), lib.real_fast()
    result = [fast.num_special_tokens_to_add(p) for p in (False, True)]
    assert result == [slow.num_special_tokens_to_add(p) for p in (False, True)]
    return result


def check_test_max_length_equal(lib):
    slow, fast = lib.real_slow(model_max_length=512), lib.real_fast(model_max_length=512)
    result = [fast.max_len_single_sentence, fast.max_len_sentences_pair]
    assert result == [slow.max_len_single_sentence, slow.max_len_sentences_pair]
    return result


def check_test_special_tokens_map_equal(lib):
    slow, fast = lib.real_slow(), lib.real_fast()
    assert list(slow.special_tokens_map.items()) == list(fast.special_tokens_map.items())
    return list(slow.special_tokens_map.items())


def check_test_add_tokens(lib):
    tok = lib.real_fast()
    size = len(tok)
    assert tok.add_tokens("") == 0
    assert tok.add_tokens("testoken") == 1
    assert tok.add_tokens(["testoken1", "testtoken2"]) == 2
    assert len(tok) == size + 3
    assert tok.add_special_tokens({}) == 0
    assert tok.add_special_tokens({"bos_token": "[BOS]", "eos_token": "[EOS]"}) == 2
    # a string where a list belongs: AssertionError upstream, ledviz's InputError (a ValueError)
    error = raises(tok.add_special_tokens, {"additional_special_tokens": "<testtoken1>"})
    assert error is (AssertionError if lib.is_ref else _input_error())
    assert tok.add_special_tokens({"additional_special_tokens": ["<testtoken2>"]}) == 1
    assert tok.add_special_tokens({"additional_special_tokens": ["<testtoken3>", "<testtoken4>"]}) == 2
    extra = tok.special_tokens_map["additional_special_tokens"]
    assert "<testtoken3>" in extra and isinstance(extra, list) and len(extra) >= 2
    assert len(tok) == size + 8
    return [sorted(tok.get_added_vocab().items()), extra]


def _input_error():
    from ledviz.errors import InputError

    return InputError


def check_test_offsets_mapping(lib):
    tok = lib.real_fast()
    text, pair = "Wonderful no inspiration example with subtoken", "Along with an awesome pair"
    out = []
    for args, n_special in (((text,), tok.num_special_tokens_to_add(False)), ((text, pair), tok.num_special_tokens_to_add(True))):
        enc = tok.encode_plus(*args, return_special_tokens_mask=True, return_offsets_mapping=True, add_special_tokens=True)
        assert len(enc["offset_mapping"]) == len(enc["input_ids"]) and sum(enc["special_tokens_mask"]) == n_special
        out.append(plain(enc))
    return out


def check_test_batch_encode_dynamic_overflowing(lib):
    tok = lib.real_fast()
    text = "HuggingFace is solving NLP one commit at a time"
    out = []
    for call, arg, truncation in ((tok.encode_plus, text, True), (tok.batch_encode_plus, [text], "only_first"),
                                  (tok.batch_encode_plus, [text, "Very tiny input"], "only_first")):
        enc = call(arg, max_length=6, padding=True, truncation=truncation, return_tensors="pt",
                   return_overflowing_tokens=True)
        for key in enc:
            if key != "overflow_to_sample_mapping":
                assert enc[key].dim() == 2 and enc[key].shape[-1] == 6
        out.append(plain(enc))
    return out


def check_test_compare_pretokenized_inputs(lib):
    """Upstream skips this for tokenizers without add_prefix_space (allenai's LED has none); ported with
    add_prefix_space=True, where both classes support split words."""
    slow, fast = lib.real_slow(add_prefix_space=True), lib.real_fast(add_prefix_space=True)
    simple, pair = "This is a sample input".split(), "This is a sample pair".split()
    kw = dict(is_split_into_words=True, return_overflowing_tokens=False, return_special_tokens_mask=True)
    out = []
    assert slow.encode(simple, is_split_into_words=True, add_special_tokens=False) == \
        fast.encode(simple, is_split_into_words=True, add_special_tokens=False)
    for args, call in (((simple,), "encode_plus"), (([simple] * 2 + [simple + pair],), "batch_encode_plus"),
                       ((simple, pair), "encode_plus"),
                       (([simple, pair] * 2 + [simple + pair, pair],), "batch_encode_plus")):
        p, r = getattr(slow, call)(*args, **kw), getattr(fast, call)(*args, **kw)
        assert all(p[k] == r[k] for k in p)
        out.append(plain(p))
    assert slow.encode(simple, pair, is_split_into_words=True) == fast.encode(simple, pair, is_split_into_words=True)
    return out


def check_test_create_token_type_ids(lib):
    slow, fast = lib.real_slow(), lib.real_fast()
    out = []
    for args in (([1, 2, 3],), ([1, 2, 3], [1, 2, 3])):
        assert slow.create_token_type_ids_from_sequences(*args) == fast.create_token_type_ids_from_sequences(*args)
        out.append(slow.create_token_type_ids_from_sequences(*args))
    return out


def check_test_build_inputs_with_special_tokens(lib):
    slow, fast = lib.real_slow(), lib.real_fast()
    out = []
    for a, b in (("", ""), ("", "This is a sample pair"), ("This is a sample input", ""),
                 ("This is a sample input", "This is a sample pair")):
        ia, ib = slow.encode(a, add_special_tokens=False), slow.encode(b, add_special_tokens=False)
        for args in ((ia,), (ia, ib)):
            assert slow.build_inputs_with_special_tokens(*args) == fast.build_inputs_with_special_tokens(*args)
            out.append(fast.build_inputs_with_special_tokens(*args))
    return out


def _same_padded(r, p, length, pad_id):
    assert len(r) == len(p) == length
    assert trailing_pads(r, pad_id) == trailing_pads(p, pad_id)


def _same_padded_batch(r, p, length, pad_id, main="input_ids"):
    for rows in r.values():
        assert len(rows) == 2 and len(rows[0]) == length and len(rows[1]) == length
    for a, b in zip(r[main], p[main]):
        _same_padded(a, b, length, pad_id)
    assert plain(r["attention_mask"]) == plain(p["attention_mask"])


def check_test_padding(lib, max_length=50):
    slow, fast = lib.real_slow(), lib.real_fast()
    assert slow.pad_token_id == fast.pad_token_id
    pad = slow.pad_token_id
    a, b = "This is a simple input", "This is a pair"
    out = []
    for args in ((a,), (a, b)):
        r = fast.encode(*args, max_length=max_length, padding="max_length")
        _same_padded(r, slow.encode(*args, max_length=max_length, padding="max_length"), max_length, pad)
        r2 = fast.encode(*args, padding="longest")
        _same_padded(r2, slow.encode(*args, padding=True), len(r2), pad)
        r3 = fast.encode_plus(*args, max_length=max_length, padding="max_length")
        p3 = slow.encode_plus(*args, max_length=max_length, padding="max_length")
        _same_padded(r3["input_ids"], p3["input_ids"], max_length, pad)
        assert r3["attention_mask"] == p3["attention_mask"]
        r4, p4 = fast.encode_plus(*args, padding="longest"), slow.encode_plus(*args, padding=True)
        _same_padded(r4["input_ids"], p4["input_ids"], len(r4["input_ids"]), pad)
        assert r4["attention_mask"] == p4["attention_mask"]
        out.append([r, r2, plain(r3), plain(r4)])
    texts = ["This is a simple input 1", "This is a simple input 2"]
    r = fast.batch_encode_plus(texts, max_length=max_length, padding="max_length")
    _same_padded_batch(r, slow.batch_encode_plus(texts, max_length=max_length, padding="max_length"), max_length, pad)
    for kw in ({"max_length": max_length}, {}):
        r = fast.batch_encode_plus(texts, padding="longest", **kw)
        _same_padded_batch(r, slow.batch_encode_plus(texts, padding=True, **kw), len(r["input_ids"][0]), pad)
    pairs = [("This is a simple input 1", "This is a simple input 2"), ("This is a simple pair 1", "This is a simple pair 2")]
    r = fast.batch_encode_plus(pairs, max_length=max_length, truncation=True, padding="max_length")
    _same_padded_batch(r, slow.batch_encode_plus(pairs, max_length=max_length, truncation=True, padding="max_length"),
                       max_length, pad)
    r = fast.batch_encode_plus(pairs, padding=True)
    _same_padded_batch(r, slow.batch_encode_plus(pairs, padding="longest"), len(r["input_ids"][0]), pad)
    out.append(plain(r))
    # pad() after encoding
    r, p = fast.pad(fast.encode_plus("This is a input 1")), slow.pad(slow.encode_plus("This is a input 1"))
    _same_padded(r["input_ids"], p["input_ids"], len(r["input_ids"]), pad)
    r = fast.pad(fast.encode_plus("This is a input 1"), max_length=max_length, padding="max_length")
    p = slow.pad(slow.encode_plus("This is a input 1"), max_length=max_length, padding="max_length")
    _same_padded(r["input_ids"], p["input_ids"], max_length, pad)
    two = ["This is a input 1", "This is a much longer input whilch should be padded"]
    r, p = fast.pad(fast.batch_encode_plus(two)), slow.pad(slow.batch_encode_plus(two))
    _same_padded_batch(r, p, len(r["input_ids"][0]), pad)
    r = fast.pad(fast.batch_encode_plus(two), max_length=max_length, padding="max_length")
    p = slow.pad(slow.batch_encode_plus(two), max_length=max_length, padding="max_length")
    _same_padded_batch(r, p, max_length, pad)
    out.append(plain(r))
    r = fast.pad({"input_ids": [[], []]}, max_length=max_length, padding="max_length")
    p = slow.pad({"input_ids": [[], []]}, max_length=max_length, padding="max_length")
    _same_padded_batch(r, p, max_length, pad)
    out.append(plain(r))
    return out


def check_test_padding_different_model_input_name(lib):
    slow, fast = lib.real_slow(), lib.real_fast()
    pad = slow.pad_token_id
    two = ["This is a input 1", "This is a much longer input whilch should be padded"]
    encs = []
    for tok in (fast, slow):
        enc = fast.batch_encode_plus(two)  # upstream encodes both with the fast tokenizer
        enc["inputs"] = enc.pop(tok.model_input_names[0])
        tok.model_input_names = ["inputs"] + tok.model_input_names[1:]
        encs.append(fast.pad(enc, padding="longest"))
    r, p = encs
    _same_padded_batch(r, p, len(p["inputs"][0]), pad, main="inputs")
    return plain(r)


def check_test_save_pretrained(lib):
    slow, fast = lib.real_slow(), lib.real_fast()
    out = []
    for legacy in (None, True, False):
        with tempfile.TemporaryDirectory() as d:
            kw = {} if legacy is None else {"legacy_format": legacy}
            fast_files = fast.save_pretrained(d, **kw)
            slow_files = slow.save_pretrained(d)
            for f in fast_files + slow_files:
                if os.path.exists(f) and f.endswith(".json"):
                    with open(f, encoding="utf-8") as fh:
                        json.load(fh)
            if legacy is not True:
                assert any("tokenizer.json" in f for f in fast_files)
            if legacy is None:
                assert tuple(f for f in fast_files if "tokenizer.json" not in f) == tuple(slow_files)
            if legacy is True:
                assert tuple(fast_files) == tuple(slow_files)
            fast_again, slow_again = fast.from_pretrained(d), slow.from_pretrained(d)
            for key in slow_again.special_tokens_map:
                assert hasattr(fast_again, key)
            out.append([[os.path.basename(f) for f in fast_files], [os.path.basename(f) for f in slow_files]])
    return out


def check_test_embedded_special_tokens(lib):
    slow, fast = lib.real_slow(), lib.real_fast()
    sentence = "A, <mask> AllenNLP sentence."
    r, p = fast.encode_plus(sentence, add_special_tokens=True), slow.encode_plus(sentence, add_special_tokens=True)
    assert all(r[k] == p[k] for k in p)
    assert fast.convert_ids_to_tokens(r["input_ids"]) == slow.convert_ids_to_tokens(p["input_ids"])
    return [plain(p), slow.convert_ids_to_tokens(p["input_ids"])]


def check_test_compare_add_special_tokens(lib):
    tok = lib.real_fast()
    n = tok.num_special_tokens_to_add(pair=False)
    out = []
    for text in ("", " "):
        assert len(tok.tokenize(text, add_special_tokens=False)) == len(tok.tokenize(text, add_special_tokens=True)) - n
        assert len(tok.encode(text, add_special_tokens=False)) == len(tok.encode(text, add_special_tokens=True)) - n
        a, b = tok.encode_plus(text, add_special_tokens=False), tok.encode_plus(text, add_special_tokens=True)
        assert all(len(a[k]) == len(b[k]) - n for k in a)
        a, b = tok.batch_encode_plus([text, text], add_special_tokens=False), tok.batch_encode_plus([text, text])
        assert all(len(x) == len(y) - n for k in a for x, y in zip(a[k], b[k]))
        out.append(tok.tokenize(text, add_special_tokens=True))
    return out


def check_test_compare_prepare_for_model(lib):
    slow, fast = lib.real_slow(), lib.real_fast()
    text = "Asserting that both tokenizers are equal"
    p = slow.prepare_for_model(slow.encode(text, add_special_tokens=False))
    r = fast.prepare_for_model(fast.encode(text, add_special_tokens=False))
    assert all(p[k] == r[k] for k in p)
    return plain(p)


def check_test_special_tokens_initialization(lib):
    added = [AddedToken("<special>", lstrip=True)]
    fast = lib.real_fast(additional_special_tokens=added)
    r = fast.encode("Hey this is a <special> token")
    special_id = fast.encode("<special>", add_special_tokens=False)[0]
    assert special_id in r
    from_slow = lib.real_fast(additional_special_tokens=added, from_slow=True)
    p = lib.real_slow(additional_special_tokens=added).encode("Hey this is a <special> token")
    assert p == r and from_slow.encode("Hey this is a <special> token") == r
    return r


def check_test_special_tokens_initialization_with_non_empty_additional_special_tokens(lib):
    tok = lib.slow()
    with tempfile.TemporaryDirectory() as d:
        tok.save_pretrained(d)
        path = os.path.join(d, "tokenizer_config.json")
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        config["additional_special_tokens"] = ["an_additional_special_token"]
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f)
        loaded = lib.slow_class.from_pretrained(d)
        assert "an_additional_special_token" in loaded.additional_special_tokens
        assert "an_additional_special_token" in loaded.get_vocab()
        ids = loaded.convert_tokens_to_ids(["an_additional_special_token"])
        assert loaded.convert_ids_to_tokens(ids) == ["an_additional_special_token"]
        other = lib.slow_class.from_pretrained(d, additional_special_tokens=[AddedToken("a_new_additional_special_token", lstrip=True)])
        assert "a_new_additional_special_token" in other.additional_special_tokens
        ids2 = other.convert_tokens_to_ids(["a_new_additional_special_token"])
        assert other.convert_ids_to_tokens(ids2) == ["a_new_additional_special_token"]
        return [ids, ids2, other.additional_special_tokens]


def check_test_convert_tokens_to_string_format(lib):
    out = []
    for tok in lib.both():
        text = tok.convert_tokens_to_string(["this", "is", "a", "test"])
        assert isinstance(text, str)
        out.append([text, tok.convert_tokens_to_string(["this", "\u0120is", "<mask>", "\u0120a"])])
    return out


def check_test_save_slow_from_fast_and_reload_fast(lib):
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        fast = lib.real_fast()
        path = os.path.join(d1, "tokenizer.json")
        fast.backend_tokenizer.save(path)
        lib.real_fast(tokenizer_file=path).save_pretrained(d1, legacy_format=True)
        slow = lib.slow_class.from_pretrained(d1)
        slow.save_pretrained(d2)
        again = lib.fast_class.from_pretrained(d2)
        return [again.encode(SAMPLE_TEXT[:200]), fast.encode(SAMPLE_TEXT[:200])]


def check_test_split_special_tokens(lib):
    special = "<my_new_token>"
    sentence = f"Hey this is a {special} token"
    fast = lib.real_fast(additional_special_tokens=[special], split_special_tokens=True)
    slow = lib.real_slow(additional_special_tokens=[special], split_special_tokens=True)
    special_id = slow.convert_tokens_to_ids(special)
    assert special_id in slow.encode(special, add_special_tokens=False, split_special_tokens=False)
    assert special_id not in slow.encode(special, add_special_tokens=False)
    out = []
    for tok in (slow, fast):
        split, whole = tok.tokenize(sentence), tok.tokenize(sentence, split_special_tokens=False)
        assert special not in split and special in whole
        assert special_id not in tok(sentence)["input_ids"]
        out.append([split, whole, tok(sentence)["input_ids"]])
    with tempfile.TemporaryDirectory() as d:
        slow.save_pretrained(d)
        again = lib.slow_class.from_pretrained(d)
        assert special not in again.tokenize(sentence) and special in again.tokenize(sentence, split_special_tokens=False)
    return out


def check_test_added_tokens_serialization(lib):
    """Every save/load path keeps an eos_token given as an AddedToken with its flags (compared by
    content and flags: id -> (content, lstrip, rstrip, normalized, special))."""
    new_eos = AddedToken("[NEW_EOS]", rstrip=False, lstrip=True, normalized=False, special=True)

    def flags(tok):
        return {i: (t.content, t.lstrip, t.rstrip, t.normalized, t.special) for i, t in tok.added_tokens_decoder.items()}

    def check(expected, cls, folder):
        tok = cls.from_pretrained(folder)
        assert "[NEW_EOS]" not in tok.additional_special_tokens
        got = flags(tok)
        assert got[tok.eos_token_id] == ("[NEW_EOS]", True, False, False, True)
        assert all(got.get(i) == v for i, v in expected.items()), (got, expected)
        return tok

    out = []
    slow = lib.real_slow(eos_token=new_eos)
    expected = flags(slow)
    assert expected[slow.eos_token_id] == ("[NEW_EOS]", True, False, False, True)
    with tempfile.TemporaryDirectory() as d2:
        slow.save_pretrained(d2)
        check(expected, lib.slow_class, d2)
        fast = check(expected, lib.fast_class, d2)
        with tempfile.TemporaryDirectory() as d3:
            fast.save_pretrained(d3)
            check(expected, lib.fast_class, d3)
            check(expected, lib.slow_class, d3)
    out.append(sorted(expected.items()))
    fast = lib.real_fast(eos_token=new_eos)
    expected = flags(fast)
    assert expected[fast.eos_token_id] == ("[NEW_EOS]", True, False, False, True)
    with tempfile.TemporaryDirectory() as d4:
        fast.save_pretrained(d4)
        check(expected, lib.fast_class, d4)
        check(expected, lib.slow_class, d4)
    out.append(sorted(expected.items()))
    return out


def check_test_special_token_addition(lib):
    tok = lib.real_fast()
    tok.add_special_tokens({"additional_special_tokens": ["<tok>"]})
    assert tok.additional_special_tokens == ["<tok>"]
    with tempfile.TemporaryDirectory() as d:
        tok.save_pretrained(d)
        tok2 = lib.fast_class.from_pretrained(lib.real)
        steps = [(["<tok>"], True, ["<tok>"]), (["<tok>", "<other>"], True, ["<tok>", "<other>"]),
                 (["<other>", "<another>"], True, ["<other>", "<another>"]),
                 (["<tok>"], False, ["<other>", "<another>", "<tok>"])]
        for tokens, replace, expected in steps:
            tok2.add_special_tokens({"additional_special_tokens": tokens}, replace_additional_special_tokens=replace)
            assert tok2.additional_special_tokens == expected
    return sorted(tok2.get_added_vocab().items())


def check_test_tokenizer_initialization_with_conflicting_key(lib):
    """A keyword that names a method: AttributeError upstream; ledviz's from_pretrained raises TypeError
    for any keyword that is no constructor or loading argument."""
    expected = AttributeError if lib.is_ref else TypeError
    assert raises(lib.fast, add_special_tokens=True) is expected
    assert raises(lib.fast, get_vocab=True) is expected
    return True


def check_test_rust_tokenizer_add_prefix_space(lib):
    for flag in (True, False):
        tok = lib.real_fast(add_prefix_space=flag)
        assert tok.add_prefix_space == flag
        assert tok.backend_tokenizer.pre_tokenizer.add_prefix_space == flag
    return True


def check_test_empty_input_string(lib):
    import numpy as np
    import torch

    out = []
    for tok in lib.both():
        for kind, dtype in (("pt", torch.int64), ("np", np.int64)):
            enc = tok("", return_tensors=kind)
            assert enc.input_ids.dtype == dtype
            out.append(plain(enc))
    return out


def check_test_separate_tokenizers(lib):
    """Deliberate difference: transformers keeps an unknown constructor keyword in init_kwargs; ledviz
    raises TypeError naming it."""
    if lib.is_ref:
        a, b = lib.both(random_argument=True), lib.both(random_argument=False)
        assert all(t.init_kwargs["random_argument"] for t in a) and not any(t.init_kwargs["random_argument"] for t in b)
    else:
        for make in (lib.slow, lib.fast):
            with pytest.raises(TypeError, match="random_argument"):
                make(random_argument=True)
    return True


def check_test_tokenize_special_tokens(lib):
    out = []
    for tok in lib.both():
        tok.add_tokens(["[SPECIAL_TOKEN_1]"], special_tokens=True)
        tok.add_special_tokens({"additional_special_tokens": ["[SPECIAL_TOKEN_2]"]}, replace_additional_special_tokens=False)
        one, two = tok.tokenize("[SPECIAL_TOKEN_1]"), tok.tokenize("[SPECIAL_TOKEN_2]")
        assert len(one) == 1 and len(two) == 1 and one[0] == "[SPECIAL_TOKEN_1]"
        out.append([one, two])
    return out


def check_test_local_files_only(lib):
    """Upstream loads its Hub id through AutoTokenizer with and without local_files_only; here the real
    folder is laid out as the Hub cache and both classes load it offline, by id."""
    out = []
    root = tempfile.mkdtemp()
    try:
        commit = "0123456789abcdef0123456789abcdef01234567"
        snapshot = os.path.join(root, "models--org--led-tok", "snapshots", commit)
        shutil.copytree(lib.real, snapshot)
        os.makedirs(os.path.join(root, "models--org--led-tok", "refs"))
        with open(os.path.join(root, "models--org--led-tok", "refs", "main"), "w") as f:
            f.write(commit)
        for cls in (lib.slow_class, lib.fast_class):
            cached = cls.from_pretrained("org/led-tok", cache_dir=root, local_files_only=True)
            assert cached.get_vocab() == cls.from_pretrained(lib.real).get_vocab()
            out.append(cached.encode(SAMPLE_TEXT[:100]))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


# ---- the account of every upstream check ---------------------------------------------------------

_CHAT = "chat templates: LED has none, and ledviz offers no apply_chat_template"
_SP = "sentencepiece: LED's tokenizers are byte-level BPE"
_TRAIN = ("training a new vocabulary from the tokenizer (train_new_from_iterator): ledviz trains LED vocabularies "
          "with ledviz.tokenization.train_bpe_tokenizer instead")

SKIPPED = {
    "test_sentencepiece_tokenize_and_convert_tokens_to_string": _SP,
    "test_sentencepiece_tokenize_and_decode": _SP,
    "test_subword_regularization_tokenizer": _SP,
    "test_pickle_subword_regularization_tokenizer": _SP,
    "test_save_sentencepiece_tokenizer": _SP,
    **{name: _CHAT for name in (
        "test_chat_template", "test_chat_template_save_loading", "test_chat_template_batched",
        "test_jinja_loopcontrols", "test_jinja_strftime", "test_chat_template_return_assistant_tokens_mask",
        "test_chat_template_return_assistant_tokens_mask_truncated", "test_continue_final_message",
        "test_continue_final_message_with_trim", "test_continue_final_message_with_decoy_earlier_message",
        "test_chat_template_dict", "test_chat_template_dict_saving", "test_chat_template_file_priority")},
    "test_training_new_tokenizer": _TRAIN,
    "test_training_new_tokenizer_with_special_tokens_change": _TRAIN,
    "test_encode_decode_fast_slow_all_tokens": "skipped upstream itself (unittest.skip, a gated Hub model)",
    "test_torch_encode_plus_sent_to_model": "skipped upstream for encoder-decoder models such as LED",
    "test_np_encode_plus_sent_to_model": "skipped upstream for encoder-decoder models such as LED",
    "test_tokenizer_mismatch_warning": "loads transformers' BertTokenizer/AlbertTokenizer classes; ledviz has "
                                       "LED tokenizers only",
    "test_saving_tokenizer_trainer": "transformers' Trainer",
}

# ported, but asserting ledviz's documented behaviour where it differs from transformers on purpose
DIFFERENCES = {
    "test_global_attention_mask": "pad() fills global_attention_mask with 0 (transformers: -1)",
    "test_separate_tokenizers": "an unknown constructor keyword raises TypeError (transformers keeps it in init_kwargs)",
    "test_tokenizer_initialization_with_conflicting_key": "from_pretrained(add_special_tokens=True) raises TypeError "
                                                          "(transformers: AttributeError)",
    "test_prepare_seq2seq_batch": "an unknown keyword such as src_lang raises TypeError (transformers ignores it)",
    "test_add_tokens": "additional_special_tokens given as a string raises InputError (transformers: AssertionError)",
    "test_tokenizers_special_tokens_properties_unset": "verbose= is no constructor argument (TypeError); the "
                                                       "tokenizer logs its warnings regardless",
}


def ported_checks() -> dict:
    """Upstream test name -> its check function, for every check in this module."""
    return {name[len("check_"):]: fn for name, fn in globals().items() if name.startswith("check_")}
