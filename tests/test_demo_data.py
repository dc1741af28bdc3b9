"""The demo's synthetic data: determinism, lengths, facts, seeds, metrics and the vocabulary."""

from __future__ import annotations

import json
import random

import pytest

from ledviz.demo import data


def _docs(seed, n=6, **kw):
    return list(data.generate_dataset(seed, n, **kw))


def test_same_seed_same_documents_and_other_seeds_differ():
    a, b = _docs(data.TRAIN_SEED), _docs(data.TRAIN_SEED)
    assert [x.document for x in a] == [x.document for x in b]
    assert [(x.task, x.question, x.target, x.facts, x.fact_spans) for x in a] == [
        (x.task, x.question, x.target, x.facts, x.fact_spans) for x in b
    ]
    c = _docs(data.TRAIN_SEED + 1)
    assert all(x.document != y.document for x, y in zip(a, c))
    # make_example accepts a seed or an rng and does not touch the global RNG
    state = random.getstate()
    assert data.make_example(7, "qa", 600).document == data.make_example(random.Random(7), "qa", 600).document
    assert random.getstate() == state


def test_examples_are_independent_of_their_neighbours():
    full = _docs(data.VALID_SEED, 5)
    tail = list(data.generate_dataset(data.VALID_SEED, 2, start=3))
    assert [x.document for x in full[3:]] == [x.document for x in tail]


def test_train_valid_test_seeds_give_disjoint_documents():
    seeds = {data.TRAIN_SEED, data.VALID_SEED, data.TEST_SEED, data.SAMPLE_SEED}
    assert len(seeds) == 4
    seeds = (data.TRAIN_SEED, data.VALID_SEED, data.TEST_SEED)
    sets = [{x.document for x in _docs(s, 8, max_tokens=800)} for s in seeds]
    assert all(len(s) == 8 for s in sets)
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])


@pytest.mark.parametrize("lo,hi", [(500, 900), (2000, 4000)])
def test_lengths_within_range(lo, hi):
    for ex in _docs(11, 6, min_tokens=lo, max_tokens=hi):
        n = data.estimate_tokens(ex.document)
        assert lo <= n <= hi, n
        # roughly words x 1.16 in the trained vocabulary
        assert lo / 1.5 <= len(ex.document.split()) <= hi


def test_make_example_stays_close_to_target_tokens():
    for target in (500, 1000, 2500, 4000):
        n = data.estimate_tokens(data.make_example(target, "summarize", target).document)
        assert target - 40 <= n <= target


def test_facts_sit_at_their_spans_once_and_anywhere():
    starts = []
    for ex in _docs(data.TEST_SEED, 12, max_tokens=1500):
        assert 4 <= len(ex.facts) <= 6
        assert set(ex.fact_spans) == set(ex.facts) == set(ex.fact_sentence_spans)
        for slot, value in ex.facts.items():
            s, e = ex.fact_spans[slot]
            assert ex.document[s:e] == value
            s0, e0 = ex.fact_sentence_spans[slot]
            assert s0 <= s < e <= e0 and ex.document[s0:e0].endswith(".")
            assert data._count_word(ex.document, value) == 1, (slot, value)
            starts.append(s / len(ex.document))
    # positions are spread over the whole document
    assert min(starts) < 0.25 and max(starts) > 0.75 and any(0.4 < x < 0.6 for x in starts)


def test_distractors_name_other_entities():
    ex = data.make_example(3, "summarize", 2000, kind="project")
    # more people than the one project lead appear in the text
    assert ex.document.count(" from ") + ex.document.count("by ") >= 1
    assert len(ex.document.split()) > 300


def test_question_answers_are_fact_values():
    qas = [ex for ex in _docs(5, 16, max_tokens=800) if ex.task == "qa"]
    assert qas
    for ex in qas:
        assert ex.question.endswith("?")
        assert ex.target in ex.facts.values()
        slot = next(k for k, v in ex.facts.items() if v == ex.target)
        assert ex.question in data.SCHEMAS[ex.kind].slot(slot).questions
    ex = data.make_example(9, "qa", 600, kind="company", slot="hq")
    assert ex.target == ex.facts["hq"] and ex.question in data.SCHEMAS["company"].slot("hq").questions


def test_summary_lists_facts_in_fixed_order():
    for ex in _docs(8, 10, tasks=("summarize",), max_tokens=700):
        assert ex.question is None and ex.task == "summarize"
        labels = [s.label for s in data.SCHEMAS[ex.kind].slots if s.name in ex.facts]
        assert [p.split(":")[0] for p in ex.target.split(". ")] == labels
        assert data.key_fact_recall(ex.target, ex.facts) == 1.0
        assert len(ex.target.split()) <= 30


def test_exact_match():
    assert data.exact_match("Maren Okafor", "maren okafor") == 1.0
    assert data.exact_match("  Maren   Okafor. ", "Maren Okafor") == 1.0
    assert data.exact_match("4312", "4,312") == 1.0
    assert data.exact_match("the Velmora", "Velmora") == 1.0
    assert data.exact_match("Maren Okafor", "Maren Okaford") == 0.0
    assert data.exact_match("Maren", "Maren Okafor") == 0.0


def test_key_fact_recall():
    facts = {"lead": "Maren Okafor", "site": "Velmora", "budget": "4,312", "deadline": "14 March 2034"}
    full = "Lead: Maren Okafor. Site: Velmora. Budget: 4,312. Deadline: 14 March 2034."
    assert data.key_fact_recall(full, facts) == 1.0
    assert data.key_fact_recall("lead maren okafor site velmora", facts) == 0.5
    # whole words only: 4,312 is not found inside 14,312, nor Velmora inside Velmoraford
    assert data.key_fact_recall("Budget: 14,312. Site: Velmoraford.", facts) == 0.0
    assert data.key_fact_recall("", facts) == 0.0
    assert data.key_fact_recall(full, list(facts.values())) == 1.0


def test_sample_documents():
    docs, questions, examples = data.sample_documents(), data.sample_questions(), data.sample_examples()
    assert 3 <= len(docs) <= 4 and set(docs) == set(questions) == set(examples)
    sizes = sorted(data.estimate_tokens(t) for t in docs.values())
    assert 900 <= sizes[0] <= 1100 and 2300 <= sizes[1] <= 2700 and 3700 <= sizes[-1] <= 4000
    for title, text in docs.items():
        assert questions[title] and all(q.endswith("?") for q in questions[title])
        assert examples[title].document == text
    assert data.sample_documents() == docs  # fixed


def _encoder(tok):
    """(encode(text, pair=None, specials=True) -> ids, decode) of an LEDTokenizerFast."""
    return (lambda a, b=None, sp=True: tok(a, b, add_special_tokens=sp)["input_ids"]), tok.decode


def test_vocabulary_special_ids_and_coverage(tmp_path):
    tok = data.train_vocabulary(tmp_path, vocab_size=800, n_docs=16, max_tokens=800)
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        assert (tmp_path / name).is_file()
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    assert [vocab[t] for t in ("<s>", "<pad>", "</s>", "<unk>")] == [0, 1, 2, 3]
    assert vocab["<mask>"] == max(vocab.values()) == len(vocab) - 1
    assert len(vocab) <= 800

    encode, decode = _encoder(data.load_tokenizer(tmp_path))
    q, d = "Who is the project lead?", "The project lead is Maren Okafor."
    ids, q_ids = encode(q, d), encode(q, sp=False)
    assert ids[0] == 0 and ids[-1] == 2 and ids[1 + len(q_ids):3 + len(q_ids)] == [2, 2]
    assert decode(ids, skip_special_tokens=True) == q + d
    # every question template and summary label is made of whole-word tokens
    for schema in data.SCHEMAS.values():
        for slot in schema.slots:
            for text in (*slot.questions, f"{slot.label}:"):
                assert len(encode(text, sp=False)) == len(text.split()) + 1, text


def test_training_inputs_layout_and_packing():
    torch = pytest.importorskip("torch")
    from ledviz.demo import train

    codec = train.Codec(data.train_vocabulary(None, vocab_size=800, n_docs=8, max_tokens=600))
    qa = data.make_example(1, "qa", 300)
    summ = data.make_example(2, "summarize", 300)
    e_qa, e_sum = train.encode_example(codec, qa, 4096), train.encode_example(codec, summ, 4096)
    g0, g1 = e_qa.global_span
    assert e_qa.input_ids[0] == 0 and e_qa.input_ids[g1:g1 + 2] == [2, 2] and e_qa.input_ids[-1] == 2
    assert codec.decode(e_qa.input_ids[g0:g1]) == qa.question and (g0, e_sum.global_span) == (1, (0, 1))
    assert codec.decode(e_qa.labels).strip() == qa.target and e_qa.labels[0] == 0 and e_qa.labels[-1] == 2
    # the answer's tokens are the very tokens of the value inside the document (copyable one for one)
    answer = e_qa.labels[1:-1]
    doc = e_qa.input_ids[g1 + 2:]
    assert any(doc[i:i + len(answer)] == answer for i in range(len(doc))), "answer tokens not in the document"
    import random
    cp = train.copy_example(codec, summ, random.Random(0))
    assert cp.input_ids == cp.labels and cp.input_ids[0] == 0 and cp.input_ids[-1] == 2
    assert 8 <= len(cp.labels) - 2 <= 48 and codec.decode(cp.labels[1:-1]).strip() in summ.document
    cut = train.encode_example(codec, summ, 50)
    assert len(cut.input_ids) == 50 and cut.input_ids[-1] == 2

    items = [train.encode_example(codec, data.make_example(i, "qa", 100 + 40 * i), 4096) for i in range(8)]
    batches = train.pack_batches(items, batch_tokens=1200, batch_size=3)
    assert sorted(id(e) for b in batches for e in b) == sorted(id(e) for e in items)
    for b in batches:
        assert len(b) <= 3 and (len(b) == 1 or len(b) * max(len(e.input_ids) for e in b) <= 1200)
    t = train.collate([e_qa, e_sum], "cpu")
    n = max(len(e_qa.input_ids), len(e_sum.input_ids))
    assert t["input_ids"].shape == (2, n) and t["global_attention_mask"][0].sum() == g1 - g0
    assert t["global_attention_mask"][1].tolist()[:2] == [1, 0]
    assert t["attention_mask"].sum() == len(e_qa.input_ids) + len(e_sum.input_ids)
    assert (t["labels"] == -100).sum() == abs(len(e_qa.labels) - len(e_sum.labels))
    assert train.collate([e_qa], "cpu", use_global=False)["global_attention_mask"].sum() == 0
    assert isinstance(t["labels"], torch.Tensor)


# ---------------------------------------------------------------------------------------------
# Varied data (data.Variety): wordings, values, unanswerable questions, held-out splits
# ---------------------------------------------------------------------------------------------
def _varied(n, seed=21, **kw):
    return list(data.generate_dataset(seed, n, ("qa",), 200, 900, variety=data.Variety(**kw)))


def test_varied_questions_cover_every_family_and_keep_facts_at_their_spans():
    exs = _varied(150, unanswerable=0.2)
    families = {ex.family for ex in exs}
    assert {"suggested", "lower", "upper", "synonyms", "keyword", "imperative", "declarative", "typos"} <= families
    declined = [ex for ex in exs if not ex.answerable]
    assert 15 <= len(declined) <= 50  # about 20%
    for ex in exs:
        for slot, value in ex.facts.items():
            s, e = ex.fact_spans[slot]
            assert ex.document[s:e] == value and data._count_word(ex.document, value) == 1
        if ex.answerable:
            assert ex.target in ex.facts.values()
        else:
            assert ex.target == data.NOT_IN_DOCUMENT and data.NOT_IN_DOCUMENT not in ex.document
    # the plain data is unchanged by the option's existence: the same seed, the same example
    assert data.make_example(4, "qa", 500) == data.make_example(4, "qa", 500, variety=None)


def _held_out_wordings():
    out = set()
    for (kind, slot), w in data.WORDINGS.items():
        out.add(w.synonyms[-1])
    return out


def test_held_out_wordings_never_appear_in_training_questions_or_sentences():
    import re

    held_syn = _held_out_wordings()
    held_nouns = {w.nouns[-1] for w in data.WORDINGS.values()}
    train = _varied(300, unanswerable=0.0)
    for ex in train:
        q = ex.question.lower()
        assert ex.question not in held_syn
        assert "identify the" not in q and "would be" not in q and "please?" not in q, ex.question
        # no held-out noun phrase, as whole words ("company head" is not in "company headquarters")
        assert not any(re.search(rf"\b{re.escape(n.lower())}\b", q) for n in held_nouns), ex.question
        assert "The report lists" not in ex.document
    rng = __import__("random").Random(0)
    held = [data.ask(rng, "project", "lead", fam, held_out=True) for fam in ("synonyms", "imperative") for _ in range(20)]
    assert "Who is leading the project?" in held and any(
        q.startswith("Identify") or "project manager" in q for q in held)
    ex = data.make_example(5, "qa", 600, variety=data.Variety(held_out=True, unanswerable=0.0))
    slot = next(k for k, v in ex.facts.items() if v == ex.target)
    s0, s1 = ex.fact_sentence_spans[slot]
    assert ex.document[s0:s1].startswith("The report lists")  # the asked fact, in the held-out sentence


def test_varied_values_are_wide_and_unseen_shapes_are_held_out():
    import re

    train = list(data.generate_dataset(22, 300, ("summarize",), 200, 400, variety=data.Variety()))
    amounts = [int(ex.facts[k].replace(",", "")) for ex in train for k in ("budget", "revenue", "distance")
               if k in ex.facts]
    assert min(amounts) < 1000 and max(amounts) > 100_000_000
    assert not any(10_000_000 <= a <= 99_999_999 for a in amounts)  # the held-out band
    dates = [ex.facts[k] for ex in train for k in ("deadline", "founded", "departure") if k in ex.facts]
    days = {int(d.split()[0]) for d in dates}
    years = [int(d.split()[-1]) for d in dates]
    assert max(days) >= 29 and min(years) < 1950 and max(years) > 2050
    people = [ex.facts[k] for ex in train for k in ("lead", "ceo", "leader") if k in ex.facts]
    assert any(len(p.split()) >= 3 for p in people) and any(re.search(r"[^\x00-\x7f]", p) for p in people)
    held_first, held_last = data._names(True)
    unseen = [data.make_example(i, "qa", 300, variety=data.Variety(unseen_values=True, unanswerable=0.0))
              for i in range(20)]
    for ex in unseen:
        for k, v in ex.facts.items():
            if k in ("lead", "ceo", "leader"):
                assert any(v.endswith(" " + last) for last in held_last), v
            if k in ("budget", "revenue", "distance"):
                assert 10_000_000 <= int(v.replace(",", "")) <= 99_999_999
    train_people = set(people)
    assert not any(p.endswith(" " + last) for p in train_people for last in held_last)


def test_variety_rejects_bad_options():
    with pytest.raises(ValueError, match="unknown question family 'shouting'"):
        data.Variety(family="shouting")
    with pytest.raises(ValueError, match="probability"):
        data.Variety(unanswerable=1.5)


def test_hard_variety_stresses_weak_wordings_and_long_values_but_keeps_held_out_things_out():
    import re

    n = 400
    easy = list(data.generate_dataset(23, n, ("qa",), 200, 600, variety=data.Variety()))
    hard = list(data.generate_dataset(23, n, ("qa",), 200, 600, variety=data.Variety(hard=True)))

    def share(exs, families):
        return sum(ex.family in families for ex in exs) / len(exs)

    weak = {"keyword", "imperative", "upper", "typos"}
    assert share(hard, weak) > share(easy, weak) + 0.1
    assert share(hard, {"upper"}) > 0.12 and share(hard, {"typos"}) > 0.15
    # unanswerable questions: more of them about the report's own kind (a slot it lacks)
    own = [ex for ex in hard if not ex.answerable and ex.family != "off-topic"]
    assert len(own) >= 30
    # long values: 9-10 digit amounts, names of three words and more, initials, double last names
    facts = [v for ex in hard for k, v in ex.facts.items()]
    amounts = [int(v.replace(",", "")) for ex in hard for k, v in ex.facts.items()
               if k in ("budget", "revenue", "distance")]
    assert any(a >= 1_000_000_000 for a in amounts) and any(1_000_000 <= a < 10_000_000 for a in amounts)
    assert not any(10_000_000 <= a <= 99_999_999 for a in amounts)  # the held-out band
    people = [ex.facts[k] for ex in hard for k in ("lead", "ceo", "leader") if k in ex.facts]
    assert sum(len(p.split()) >= 3 for p in people) > len(people) // 5
    assert any(re.search(r" [A-Z]\. ", p) for p in people) and any("-" in p.split()[-1] for p in people)
    # nothing held out: names, wordings, sentences
    held_first, held_last = data._names(True)
    hungarian = set(data._NAME_GROUPS[-1][0]) | set(data._NAME_GROUPS[-1][1])
    for v in facts:
        words = set(re.split(r"[ -]", v))
        assert not words & hungarian, v
        assert not any(v.endswith(last) for last in held_last), v
    assert not any(ex.question in _held_out_wordings() for ex in hard)
    assert not any("The report lists" in ex.document for ex in hard)
    assert not any(q in ex.question for ex in hard for q in data._OFF_TOPIC[-3:])
    # the default varied data (validation and evaluation) is unchanged by the option
    assert data.make_example(7, "qa", 500, variety=data.Variety()) == \
        data.make_example(7, "qa", 500, variety=data.Variety(hard=False))
    assert data.make_example(7, "qa", 500, variety=data.Variety(family="keyword")) != \
        data.make_example(7, "qa", 500, variety=data.Variety(family="keyword", hard=True))


def _words(text):
    import re

    return set(re.findall(r"[a-z'-]+", text.lower()))


def _held_out_only_words():
    """Words that only the held-out wordings have (the last entry of each list): nouns, synonyms,
    question frames, sentence frames, off-topic questions."""
    train, held = set(), set()
    for w in data.WORDINGS.values():
        for x in w.nouns[:-1] + w.synonyms[:-1] + (w.wh,):
            train |= _words(x)
        for x in w.nouns[-1:] + w.synonyms[-1:]:
            held |= _words(x)
    for schema in data.SCHEMAS.values():
        for s in schema.slots:
            for x in s.questions + s.templates:
                train |= _words(x)
    for frames, n in ((data._KEYWORD_FRAMES, 1), (data._IMPERATIVE_FRAMES, 1), (data._DECLARATIVE_FRAMES, 1),
                      (data._SENTENCE_FRAMES, 1), (data._OFF_TOPIC, 3)):
        for x in frames[:-n]:
            train |= _words(x)
        for x in frames[-n:]:
            held |= _words(x)
    return held - train


def test_robust_training_wordings_use_no_held_out_word():
    """The extra wordings and question noise of Variety(robust=True) neither equal nor contain a
    held-out wording, nor use any word that only the held-out wordings have ("manager",
    "spending", "limit", "identify", "would", ...): the held-out family stays unseen words."""
    held_only = _held_out_only_words()
    assert {"manager", "spending", "limit", "completion", "identify", "would"} <= held_only
    extra = [x for nouns, synonyms in data._EXTRA_WORDINGS.values() for x in nouns + synonyms]
    extra += [x for frames in data._EXTRA_FRAMES.values() for x in frames]
    extra += list(data._NOISE_WORDS + data._NOISE_OPENINGS + data._NOISE_CLOSINGS)
    held_entries = [w.nouns[-1] for w in data.WORDINGS.values()] + [w.synonyms[-1] for w in data.WORDINGS.values()]
    held_entries += [data._KEYWORD_FRAMES[-1], data._IMPERATIVE_FRAMES[-1], data._DECLARATIVE_FRAMES[-1]]
    for x in extra:
        assert not _words(x) & held_only, (x, _words(x) & held_only)
        assert not any(h.lower() in x.lower() for h in held_entries), x
    assert set(data._EXTRA_WORDINGS) == set(data.WORDINGS)
    # and the training questions drawn with them
    exs = list(data.generate_dataset(31, 300, ("qa",), 200, 500,
                                     variety=data.Variety(hard=True, robust=True, unanswerable=0.3)))
    for ex in exs:
        assert not _words(ex.question) & held_only, ex.question
        assert ex.question not in _held_out_wordings()


def test_robust_variety_adds_wordings_and_noise_for_training_only():
    import random

    with pytest.raises(ValueError, match="held_out"):
        data.Variety(held_out=True, robust=True)
    with pytest.raises(ValueError, match="held_out"):
        data.ask(random.Random(0), "project", "lead", "keyword", held_out=True, extra=True)
    rng = random.Random(3)
    plain = {data.ask(rng, "project", "lead", f) for f in ("synonyms", "keyword", "imperative") for _ in range(200)}
    extra = {data.ask(rng, "project", "lead", f, extra=True) for f in ("synonyms", "keyword", "imperative")
             for _ in range(200)}
    assert "Who directs the project?" in extra and "Who directs the project?" not in plain
    assert any(q.startswith("Show the") for q in extra) and not any(q.startswith("Show the") for q in plain)
    v = data.Variety(robust=True)
    qs = [v.question(rng, "company", "ceo")[0] for _ in range(300)]
    noisy = [q for q in qs if _words(q) & set(data._NOISE_WORDS) - _words(" ".join(plain | extra))]
    assert len(noisy) > 30
    assert any(q.split(":")[0] + ":" in data._NOISE_OPENINGS for q in qs if ":" in q)
    # noise keeps the question's end and its case
    assert all(q[-1] in "?.!" or q[-1].isalnum() for q in qs)
    # validation and evaluation data are unchanged by the option's existence
    assert data.make_example(7, "qa", 500, variety=data.Variety()) == \
        data.make_example(7, "qa", 500, variety=data.Variety(robust=False))
    assert sum(data.make_example(i, "qa", 300, variety=data.Variety(hard=True)).question !=
               data.make_example(i, "qa", 300, variety=data.Variety(hard=True, robust=True)).question
               for i in range(20)) >= 5
