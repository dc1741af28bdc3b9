"""The embedded demo model and the training/evaluation scripts (a micro run; the full run is not for CI)."""

from __future__ import annotations

import json
import os

import pytest
import torch

import ledviz
from ledviz.pipeline import default_model_dir, load_model, prepare_document, run

MODEL_DIR = os.path.join(os.path.dirname(ledviz.__file__), "demo", "model")


def test_embedded_checkpoint_is_complete_and_small():
    files = set(os.listdir(MODEL_DIR))
    for name in ("config.json", "generation_config.json", "model.safetensors", "vocab.json", "merges.txt",
                 "tokenizer.json", "README.md"):
        assert name in files, f"{name} missing from the embedded model"
    size = sum(os.path.getsize(os.path.join(MODEL_DIR, f)) for f in files)
    assert size < 25e6, f"embedded model is {size / 1e6:.1f} MB"
    assert os.path.samefile(default_model_dir(), MODEL_DIR) or os.environ.get("LEDVIZ_MODEL")


def test_embedded_checkpoint_loads_in_ledviz_and_transformers():
    import transformers

    ours = ledviz.LEDForConditionalGeneration.from_pretrained(MODEL_DIR)
    theirs = transformers.LEDForConditionalGeneration.from_pretrained(MODEL_DIR).eval()
    tok = ledviz.LEDTokenizerFast.from_pretrained(MODEL_DIR)
    ref_tok = transformers.LEDTokenizerFast.from_pretrained(MODEL_DIR)
    text = "The project lead is Maren Okafor. The site is located in Velmora."
    enc = tok(text, return_tensors="pt")
    assert enc["input_ids"].tolist() == ref_tok(text, return_tensors="pt")["input_ids"].tolist()
    gm = torch.zeros_like(enc["input_ids"])
    gm[0, 0] = 1
    with torch.no_grad():
        a = ours(enc["input_ids"], global_attention_mask=gm).logits
        b = theirs(enc["input_ids"], global_attention_mask=gm).logits
    assert (a - b).abs().max() < 1e-4
    # load time is a figure of `python -m ledviz.demo.evaluate` (a fresh process), not a timed test


def test_embedded_model_runs_a_sample_document_end_to_end():
    from ledviz.demo.data import sample_documents

    loaded = load_model(None)
    title, text = next(iter(sample_documents().items()))
    doc = prepare_document(loaded, text)
    result = run(loaded, doc, max_new_tokens=8)
    assert result.output_ids[0] == loaded.config.decoder_start_token_id
    assert len(result.layers) == loaded.config.encoder_layers
    assert result.cross_attentions[0].shape[-1] == doc.n_tokens


@pytest.mark.slow  # a training run, or several generations: more than a few seconds
def test_micro_training_run_and_evaluation(tmp_path):
    from ledviz.demo import evaluate, train

    out = tmp_path / "micro"
    result = train.main(["--micro", "--out", str(out), "--steps", "6", "--stop-after", "4", "--eval-every", "4",
                         "--device", "cpu"])
    assert result["step"] == 4  # --stop-after ends the run early, with the schedule of --steps
    assert (out / "model.safetensors").exists() and (out / "vocab.json").exists()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in log) and any("eval" in r for r in log)
    model = ledviz.LEDForConditionalGeneration.from_pretrained(out)
    assert model.config.encoder_layers >= 1
    shipped = tmp_path / "shipped"
    train.package(str(out), str(shipped), logs=[str(out / "train_log.jsonl")] * 2)
    packed = ledviz.LEDForConditionalGeneration.from_pretrained(shipped, torch_dtype="auto")
    assert packed.dtype == torch.float16 and (shipped / "vocab.json").exists()
    limit = json.loads((shipped / "tokenizer_config.json").read_text())["model_max_length"]
    assert limit == packed.config.max_encoder_position_embeddings  # what the tokenizer says is the model's limit
    phases = {json.loads(line)["phase"] for line in (shipped / "train_log.jsonl").read_text().splitlines()}
    assert phases == {1, 2}
    again = tmp_path / "again"  # a later phase packaged after the shipped log keeps its phases
    train.package(str(out), str(again), logs=[str(shipped / "train_log.jsonl"), str(out / "train_log.jsonl")])
    phases = [json.loads(line)["phase"] for line in (again / "train_log.jsonl").read_text().splitlines()]
    assert sorted(set(phases)) == [1, 2, 3] and phases == sorted(phases)
    train.main(["--micro", "--out", str(out), "--steps", "2", "--eval-every", "2", "--device", "cpu", "--resume",
                "--varied", "--unanswerable", "0.5"])
    scores = evaluate.main(["--model", str(out), "--n", "2", "--lengths", "300", "--seed", "valid",
                            "--decline-margin=-1e9", "--tune"])
    # a margin below any score difference: the rule declines everything
    assert scores["decline rule"] == dict(margin=-1e9, score="sum", head=None)
    assert scores["unanswerable declined"]["kept"]["k"] == 2 and scores["wrongly declined"]["k"] == 18
    assert scores["qa/overall"]["kept"]["k"] == 0 and scores["qa/plain reports"]["kept"]["k"] == 0
    assert all(a["answer"] == "not in the document" and a["span"] for a in scores["answers"]["suggested"])
    tuned = {(r["score"], r["margin"]): r for r in scores["tune"]}  # the table to choose the margin by
    assert tuned["sum", 0.0]["declined"]["n"] == 2 and tuned["first", 0.0]["wrongly_declined"]["n"] == 18
    with pytest.raises(SystemExit, match="--seed valid, never on the test seed"):
        evaluate.main(["--model", str(out), "--n", "2", "--tune"])
    assert scores["seed"] == "valid" and scores["timing"]["new_tokens"] == 64 and scores["timing"]["summarize_s"] > 0
    assert scores["timing"]["tokens"] == 4096 and scores["timing"]["load_s"] > 0
    for family in (*evaluate.FAMILIES, "unseen values", "plain reports", "overall", "suggested, no global attention"):
        for mode in ("kept", "free"):
            r = scores[f"qa/{family}"][mode]
            assert r["n"] == (2 * len(evaluate.FAMILIES) if family == "overall" else 2) and 0 <= r["lo"] <= r["hi"] <= 1
    assert scores["unanswerable declined"]["kept"]["n"] == 2 and scores["wrongly declined"]["n"] == 18
    # every upper-case question is read differently (re-cased): the family also has its "model alone" line,
    # and the overall rate has one with each question as asked
    alone = scores["qa/upper, model alone"]
    assert alone["read_differently"] == 2 and alone["kept"]["n"] == alone["free"]["n"] == 2
    assert scores["qa/overall, model alone"]["kept"]["n"] == 18 and "qa/suggested, model alone" not in scores
    assert set(scores["summaries"]["kept"]) >= {"recall", "all_right", "repeats"}


def test_evaluation_reads_questions_as_the_app_does():
    """evaluate.read_questions: each question through pipeline.read_question, the changed ones counted;
    an upper-case question is re-cased, a suggested one left as asked."""
    from ledviz.demo import data, evaluate

    tok = data.load_tokenizer(MODEL_DIR)
    sets = evaluate.question_sets(data.VALID_SEED, 3, [300])
    upper, changed = evaluate.read_questions(tok, sets["upper"])
    assert changed == 3
    for ex, asked in zip(upper, sets["upper"]):
        assert ex.question != asked.question and ex.question.lower() == asked.question.lower()
        assert (ex.document, ex.target) == (asked.document, asked.target)
    same, changed = evaluate.read_questions(tok, sets["suggested"])
    assert changed == 0 and [e.question for e in same] == [e.question for e in sets["suggested"]]
    assert evaluate.parse_args(["--model", "m", "--questions", "as-asked"]).questions == "as-asked"
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--model", "m", "--questions", "lower"])


def test_evaluation_measures():
    from ledviz.demo import data, evaluate

    assert evaluate.wilson(0, 10)[0] == 0 and abs(evaluate.wilson(5, 10)[0] - 0.2366) < 1e-3
    assert abs(evaluate.wilson(5, 10)[1] - 0.7634) < 1e-3 and evaluate.wilson(10, 10)[1] == 1.0
    assert evaluate.repeated_word_run("CEO: Man Man Man.") and evaluate.repeated_word_run("Lead: Ana. ana")
    assert not evaluate.repeated_word_run("Lead: Maren Okafor. Site: Velmora.")
    ex = data.make_example(1, "summarize", 300, kind="project")
    assert evaluate.all_facts_right(ex.target, ex) and evaluate.all_facts_right(ex.target.lower().upper(), ex) is False
    wrong = ex.target.replace(next(iter(ex.facts.values())), "Nobody")
    assert not evaluate.all_facts_right(wrong, ex)


def test_weight_average_tracks_the_weights_and_swaps_them_in_and_out():
    from ledviz.demo.train import WeightAverage

    model = torch.nn.Linear(3, 2)
    model.bias.requires_grad_(False)  # frozen weights are not averaged
    start = model.weight.detach().clone()
    avg = WeightAverage(model, decay=0.9)
    expected = start.clone()
    for step in range(1, 40):
        with torch.no_grad():
            model.weight.add_(1.0)
        avg.update(step)
        d = min(0.9, (1 + step) / (10 + step))
        expected = d * expected + (1 - d) * model.weight.detach()
    trained = model.weight.detach().clone()
    assert torch.allclose(avg.average[0], expected)
    assert not torch.allclose(expected, trained) and (expected < trained).all()  # it lags behind
    with avg.swapped():
        assert torch.equal(model.weight, avg.average[0])
    assert torch.equal(model.weight, trained)  # training weights are back
    try:
        with avg.swapped():
            raise RuntimeError("scoring failed")
    except RuntimeError:
        pass
    assert torch.equal(model.weight, trained)
    for bad in (0.0, 1.0, 1.5):
        try:
            WeightAverage(model, bad)
        except ValueError as e:
            assert "--ema" in str(e)
        else:
            raise AssertionError(f"decay {bad} was accepted")


@pytest.mark.slow  # a training run, or several generations: more than a few seconds
def test_micro_training_with_weight_average_saves_the_average(tmp_path):
    from ledviz.demo import train

    raw, averaged = tmp_path / "raw", tmp_path / "ema"
    common = ["--micro", "--steps", "4", "--eval-every", "4", "--device", "cpu", "--seed", "1"]
    train.main(common + ["--out", str(raw)])
    train.main(common + ["--out", str(averaged), "--ema", "0.99"])
    a = ledviz.LEDForConditionalGeneration.from_pretrained(raw).state_dict()
    b = ledviz.LEDForConditionalGeneration.from_pretrained(averaged).state_dict()
    key = "led.encoder.layers.0.fc1.weight"
    assert not torch.allclose(a[key], b[key])  # same run, but the saved weights are the average


@pytest.mark.slow  # a training run, or several generations: more than a few seconds
def test_keep_best_leaves_the_best_validated_checkpoint_in_out(tmp_path, monkeypatch):
    from ledviz.demo import train

    assert train.validation_value(dict(qa_em=0.9, summary_recall=0.7, n_qa=4, n_summary=4)) == 0.8
    assert train.validation_value(dict(qa_em=0.5, summary_recall=float("nan"), n_qa=4, n_summary=0)) == 0.5
    scripted = iter([0.25, 0.75, 0.5])  # QA exact match at the evaluations of steps 2, 4 and 6

    def fake_score(model, codec, encoded, device, **kw):
        return dict(qa_em=next(scripted), summary_recall=0.5, summary_em=0.0, n_qa=2, n_summary=2)

    monkeypatch.setattr(train, "score", fake_score)
    out = tmp_path / "best"
    result = train.main(["--micro", "--steps", "6", "--eval-every", "2", "--device", "cpu", "--keep-best",
                         "--out", str(out)])
    assert result["step"] == 6 and result["saved_step"] == 4
    info = json.loads((out / "demo_training.json").read_text())
    assert info["step"] == 4 and info["eval"]["qa_em"] == 0.75
    evals = [r for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "eval" in r]
    assert [(r["step"], r["saved"]) for r in evals] == [(2, True), (4, True), (6, False)]

    scripted = iter([0.25, 0.75, 0.5])  # without --keep-best the last evaluation is saved
    last = tmp_path / "last"
    result = train.main(["--micro", "--steps", "6", "--eval-every", "2", "--device", "cpu", "--out", str(last)])
    assert result["saved_step"] == 6 and json.loads((last / "demo_training.json").read_text())["step"] == 6


def test_plain_share_mixes_plain_and_varied_training_examples():
    from ledviz.demo import train

    args = train.parse_args(["--out", "x", "--varied", "--plain-share", "0.4", "--stream-start", "500"])
    plain = [train.is_plain(args, i) for i in range(2000)]
    assert 0.36 < sum(plain) / len(plain) < 0.44  # a fixed draw per index, share 0.4
    assert plain == [train.is_plain(args, i) for i in range(2000)]
    exs = list(train.training_examples(args, 10, 12, 120, 200))
    assert [e.family == "" for e in exs if e.task == "qa"] == [plain[i] for i, e in enumerate(exs, 10)
                                                                 if e.task == "qa"]  # varied questions have a family
    assert not any(train.is_plain(train.parse_args(["--out", "x", "--varied"]), i) for i in range(50))
    assert all(train.is_plain(train.parse_args(["--out", "x"]), i) for i in range(50))
    for bad in (["--plain-share", "0.5"], ["--varied", "--plain-share", "1.5"]):  # needs --varied; a share
        with pytest.raises(SystemExit):
            train.parse_args(["--out", "x", *bad])
    assert train.TrainStream(None, args, None).next_index == 500


def test_hard_variety_trains_on_the_hard_mix_and_validates_on_the_default_one():
    from ledviz.demo import train

    args = train.parse_args(["--out", "x", "--varied", "--hard-variety"])
    assert train.variety(args, training=True).hard and not train.variety(args).hard
    assert not train.variety(train.parse_args(["--out", "x", "--varied"]), training=True).hard
    with pytest.raises(SystemExit):  # needs --varied
        train.parse_args(["--out", "x", "--hard-variety"])


def test_robust_variety_trains_with_question_noise_and_validates_on_the_default_data():
    from ledviz.demo import train

    args = train.parse_args(["--out", "x", "--varied", "--hard-variety", "--robust-variety"])
    trained, valid = train.variety(args, training=True), train.variety(args)
    assert trained.robust and trained.hard and not valid.robust and not valid.hard
    assert not train.variety(train.parse_args(["--out", "x", "--varied"]), training=True).robust
    with pytest.raises(SystemExit):  # needs --varied
        train.parse_args(["--out", "x", "--robust-variety"])


@pytest.mark.slow  # a training run
def test_mixed_training_validates_plain_and_varied_data(tmp_path):
    from ledviz.demo import train

    out = tmp_path / "mixed"
    train.main(["--micro", "--out", str(out), "--steps", "2", "--eval-every", "2", "--eval-examples", "4",
                "--device", "cpu", "--varied", "--plain-share", "0.5", "--keep-best"])
    evals = [r for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "eval" in r]
    assert set(evals[-1]["eval"]) == {"plain", "varied"} and evals[-1]["saved"]
    parts = evals[-1]["eval"]
    assert evals[-1]["value"] == pytest.approx(sum(train.validation_value(p) for p in parts.values()) / 2)
    assert all(p["n_qa"] == 2 and p["n_summary"] == 2 for p in parts.values())


def _tiny_generator(seed: int = 0):
    from conftest import perturb, tiny_kwargs

    torch.manual_seed(seed)
    model = ledviz.LEDForConditionalGeneration(
        ledviz.LEDConfig(**tiny_kwargs(dropout=0.0, attention_dropout=0.0))).eval()
    norms = {k: v.clone() for k, v in model.state_dict().items() if "norm" in k}
    perturb(model, seed)
    model.load_state_dict(norms, strict=False)  # layer norms as initialised: weight 1, bias 0
    return model


def test_inserted_layers_start_as_the_identity():
    from ledviz.demo.train import insert_layers

    model = _tiny_generator()
    ids = torch.randint(4, model.config.vocab_size, (2, 40))
    glob = torch.zeros_like(ids)
    glob[:, :3] = 1
    dec = torch.randint(4, model.config.vocab_size, (2, 7))
    with torch.no_grad():
        before = model(ids, global_attention_mask=glob, decoder_input_ids=dec).logits
    for enc_at, dec_at in ((0, None), (1, 1), (2, 2), (None, 0)):
        deeper = insert_layers(model, encoder_at=enc_at, encoder_window=16, decoder_at=dec_at).eval()
        cfg = deeper.config
        assert cfg.encoder_layers == 2 + (enc_at is not None) and cfg.decoder_layers == 2 + (dec_at is not None)
        if enc_at is not None:
            assert cfg.attention_windows()[enc_at] == 16 and len(cfg.attention_windows()) == 3
            old = model.led.encoder.layers[1].fc1.weight
            assert torch.equal(deeper.led.encoder.layers[1 + (enc_at <= 1)].fc1.weight, old)
            assert not deeper.led.encoder.layers[enc_at].fc2.weight.any()
        with torch.no_grad():
            after = deeper(ids, global_attention_mask=glob, decoder_input_ids=dec).logits
        assert (after - before).abs().max() < 1e-3, (enc_at, dec_at)
    # trained layer norms are not exactly plain: then the deeper model is close, not equal
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.mul_(1.05)
        before = model(ids, global_attention_mask=glob, decoder_input_ids=dec).logits
        after = insert_layers(model, encoder_at=1, decoder_at=1).eval()(
            ids, global_attention_mask=glob, decoder_input_ids=dec).logits
    assert 0 < (after - before).abs().max() < 0.1 * before.abs().max()
    for bad in (dict(encoder_at=3), dict(decoder_at=-1)):
        try:
            insert_layers(model, **bad)
        except ValueError as e:
            assert "index from 0 to 2" in str(e)
        else:
            raise AssertionError(f"{bad} was accepted")


@pytest.mark.slow  # a training run, or several generations: more than a few seconds
def test_training_can_grow_a_trained_model(tmp_path):
    from ledviz.demo import train

    out = tmp_path / "micro"
    common = ["--micro", "--steps", "2", "--eval-every", "2", "--device", "cpu", "--out", str(out)]
    train.main(common)
    train.main(common + ["--resume", "--insert-encoder-layer", "2:32", "--insert-decoder-layer", "0"])
    cfg = ledviz.LEDConfig.from_pretrained(out)
    assert (cfg.encoder_layers, cfg.decoder_layers) == (3, 2) and cfg.attention_windows() == [16, 16, 32]
    try:
        train.main(common[:-2] + ["--out", str(tmp_path / "fresh"), "--insert-decoder-layer", "0"])
    except SystemExit as e:
        assert "--resume" in str(e)
    else:
        raise AssertionError("growing a fresh model was accepted")


def _held_out(task: str, tokens: int, index: int = 0):
    from ledviz.demo import data

    return data.make_example(data._example_rng(data.TEST_SEED, f"model-test/{task}/{tokens}/{index}"), task, tokens)


@pytest.mark.slow  # a training run, or several generations: more than a few seconds
def test_embedded_model_answers_held_out_questions():
    """Questions about held-out documents (TEST_SEED, never trained on), through the app's own path.

    The model card reports 89% exact match over 1K-4K documents; 8 of these 10 must be right.
    """
    loaded = load_model(None)
    wrong = []
    for i in range(10):
        ex = _held_out("qa", 1500, i)
        doc = prepare_document(loaded, ex.document, question=ex.question)
        result = run(loaded, doc, task="qa", max_new_tokens=24)
        if result.output_text != ex.target:
            wrong.append(f"{ex.question!r}: {result.output_text!r} (expected {ex.target!r})")
    assert len(wrong) <= 2, "wrong answers: " + "; ".join(wrong)


@pytest.mark.slow  # a training run, or several generations: more than a few seconds
def test_answers_kept_to_the_document_are_spans_of_it():
    """The QA page's default: each answer is a span of the document (constrained decoding).

    Over 1K-4K held-out documents it lifts exact match from 89% to 92% (model card); here every
    answer must occur in the document, and 8 of 10 must be right."""
    import pytest

    from ledviz import InputError
    from ledviz.demo import data

    loaded = load_model(None)
    wrong, changed = [], 0
    for i in range(10):
        ex = _held_out("qa", 1500, i)
        doc = prepare_document(loaded, ex.document, question=ex.question)
        free = run(loaded, doc, task="qa", max_new_tokens=24)
        kept = run(loaded, doc, task="qa", max_new_tokens=24, answer_from_document=True)
        assert kept.settings["answer_from_document"] is True
        assert kept.output_text, "an empty answer"
        if kept.output_text != data.NOT_IN_DOCUMENT:  # the one answer allowed besides the spans
            assert kept.output_text in ex.document, f"{kept.output_text!r} is not in the document"
        changed += kept.output_text != free.output_text
        if kept.output_text != ex.target:
            wrong.append(f"{ex.question!r}: {kept.output_text!r} (expected {ex.target!r})")
    assert len(wrong) <= 2, "wrong answers: " + "; ".join(wrong)
    assert changed >= 1, "the constraint changed no answer: this test shows nothing about it"
    with pytest.raises(InputError, match="one or the other"):
        run(loaded, doc, task="qa", answer_from_document=True, prefix_allowed_tokens_fn=lambda b, ids: [2])


@pytest.mark.slow  # a training run, or several generations: more than a few seconds
def test_embedded_model_summaries_state_the_key_facts():
    from ledviz.demo import data

    loaded = load_model(None)
    recalls = []
    for i in range(4):
        ex = _held_out("summarize", 2500, i)
        doc = prepare_document(loaded, ex.document)
        result = run(loaded, doc, task="summarize", max_new_tokens=64)
        recalls.append(data.key_fact_recall(result.output_text, ex.facts))
    assert sum(recalls) / len(recalls) >= 0.7, f"key-fact recall per summary: {recalls}"


def test_the_decline_answer_is_allowed_when_answers_are_kept_to_the_document():
    """answer_from_document allows a span of the document or exactly " not in the document"."""
    from ledviz.demo import data
    from ledviz.pipeline import document_constraint

    loaded = load_model(None)
    tok = loaded.tokenizer
    ex = _held_out("qa", 600)
    doc = prepare_document(loaded, ex.document, question="What is the capital of France?")
    source = doc.input_ids[0, doc.document_tokens()].tolist()
    allowed = document_constraint(tok, [source], "answer", loaded.config.eos_token_id, loaded.config.bos_token_id)
    decline = tok(" " + data.NOT_IN_DOCUMENT, add_special_tokens=False)["input_ids"]
    written = [loaded.config.decoder_start_token_id, loaded.config.bos_token_id]
    for t in decline:
        assert t in allowed(0, torch.tensor(written)), f"{tok.decode(written[2:] + [t])!r} is not allowed"
        written.append(t)
    assert allowed(0, torch.tensor(written)) == [loaded.config.eos_token_id]
    start = allowed(0, torch.tensor(written[:2]))
    other = next(t for t in range(5, len(tok)) if t not in set(source) and t != decline[0])
    assert decline[0] in start and other not in start  # a token of no span and no alternative is not allowed


def test_answers_and_facts_kept_to_the_document_are_whole_words():
    """The word rule of document_constraint (generation.word_bounds), with the embedded model's
    tokenizer: a kept answer or summary value may stop only where a word of the document ends, and
    not inside a run of capitalized words, so "7,500,000" is never cut to "7,500" nor "Noémi Zhou"
    to "Noémi Zho" or "Noémi"; through the app's run, an answer is the decline or whole words of
    the document."""
    import re

    from ledviz.demo import data
    from ledviz.pipeline import document_constraint, fact_labels

    loaded = load_model(None)
    tok, cfg = loaded.tokenizer, loaded.config
    text = ("The approved budget is 7,500,000 credits. The project is led by Noémi Zhou, and the site is "
            "St. Louis. Its partner is Anna-Lena Holdings.")
    doc = prepare_document(loaded, text, question="What is the approved budget?")
    source = doc.input_ids[0, doc.document_tokens()].tolist()
    answer = document_constraint(tok, [source], "answer", cfg.eos_token_id, cfg.bos_token_id)
    start = [cfg.decoder_start_token_id, cfg.bos_token_id]

    def ends_allowed(value: str) -> list[tuple[str, bool]]:
        """(prefix, may end there) along the tokens of `value`, each token checked as allowed."""
        written, out = list(start), []
        for t in tok(value, add_special_tokens=False)["input_ids"]:
            assert t in answer(0, torch.tensor(written)), f"{tok.decode(written[2:] + [t])!r} is not allowed"
            written.append(t)
            out.append((tok.decode(written[2:]), cfg.eos_token_id in answer(0, torch.tensor(written))))
        return out

    # the name rule (word_bounds(name_runs=True)): " Noémi" may not end where " Zhou" goes on with the name,
    # nor " Anna-Lena" before " Holdings"
    for value, whole in ((" 7,500,000", {" 7,500,000"}), (" Noémi Zhou", {" Noémi Zhou"}),
                         (" St. Louis", {" St", " St.", " St. Louis"}), (" Anna-Lena Holdings", {" Anna-Lena Holdings"})):
        steps = ends_allowed(value)
        assert len(steps) >= 2, steps  # the test needs a value of several tokens
        assert {p for p, may_end in steps if may_end} == whole & {p for p, _ in steps}, steps
    # a name at the end of its line may end there, though the next line begins with a capital
    listed = prepare_document(loaded, "Team sheet\nLead: Rohan Bennett\nSite: Velmora\n", question="Who leads?")
    listed_answer = document_constraint(tok, [listed.input_ids[0, listed.document_tokens()].tolist()], "answer",
                                        cfg.eos_token_id, cfg.bos_token_id)
    written = list(start)
    for t in tok(" Rohan Bennett", add_special_tokens=False)["input_ids"]:
        assert cfg.eos_token_id not in listed_answer(0, torch.tensor(written))  # not inside the name
        written.append(t)
    assert cfg.eos_token_id in listed_answer(0, torch.tensor(written))
    # the summary's values: the stop "." only after a whole word
    label = "Budget" if "Budget" in fact_labels() else fact_labels()[0]
    facts = document_constraint(tok, [source], "facts", cfg.eos_token_id, cfg.bos_token_id)
    stop = tok(".", add_special_tokens=False)["input_ids"][0]
    written = start + tok(f"{label}:", add_special_tokens=False)["input_ids"]
    for t in tok(" 7,500,000", add_special_tokens=False)["input_ids"]:
        assert stop not in facts(0, torch.tensor(written)), tok.decode(written[2:])  # empty, " 7", " 7,500", ...
        written.append(t)
    assert stop in facts(0, torch.tensor(written))
    # through the app's run: the answer is whole words of the document, or the decline
    for question in ("What is the approved budget?", "Who leads the project?", "WHO IS THE PROJECT LEAD?"):
        doc = prepare_document(loaded, text, question=question)
        out = run(loaded, doc, task="qa", max_new_tokens=24, answer_from_document=True).output_text
        assert out == data.NOT_IN_DOCUMENT or re.search(
            rf"(?<![\w,.'-]){re.escape(out)}(?![\w]|[,.'-][\w])", text), f"{question!r}: {out!r}"


def test_a_word_that_begins_a_line_is_copied_in_the_spellings_a_model_writes():
    """A name that begins a line is "M" + "an" + "aia" to the encoder, " Manaia" ("ĠMan" + "aia")
    in the tokenizer's spelling of an answer, and "ĠM" + "an" + "aia" when a model copies the
    encoder's tokens with a space: document_constraint allows all three (the sample company
    report's "CEO: Markets." came from allowing only the second); a summary keeps the
    tokenizer's spelling (facts_begun_at_names), and begins every value where its name begins."""
    from ledviz.pipeline import document_constraint, document_words, facts_begun_at_names

    loaded = load_model(None)
    tok, cfg = loaded.tokenizer, loaded.config
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    text = "Markets\nManaia Holiton serves as chief executive.\nThe lead is Carmen Sofía Sánchez."
    source = ids(text)
    start = [cfg.decoder_start_token_id, cfg.bos_token_id]
    spellings = [ids(" Manaia Holiton"), ids("Manaia Holiton"), [tok.convert_tokens_to_ids("ĠM"), *ids("anaia Holiton")]]
    assert ids("\nManaia")[1:] == spellings[1][:3] and len({tuple(x) for x in spellings}) == 3
    for what, lead in (("answer", []), ("facts", ids("CEO:"))):
        allowed = document_constraint(tok, [source], what, cfg.eos_token_id, cfg.bos_token_id)
        for spelled in spellings:
            written = start + lead
            for t in spelled:
                assert t in allowed(0, torch.tensor(written)), (what, tok.convert_ids_to_tokens(written + [t]))
                written.append(t)
            end = cfg.eos_token_id if what == "answer" else ids(".")[0]
            assert end in allowed(0, torch.tensor(written)), (what, tok.convert_ids_to_tokens(written))
    words = document_words(tok, source)
    row = [*start, *ids("CEO:"), *spellings[2], *ids("."), *ids(" Lead:"), *ids(" Sofía Sánchez."), cfg.eos_token_id]
    assert tok.decode(facts_begun_at_names(tok, row, words, 2), skip_special_tokens=True) == (
        "CEO: Manaia Holiton. Lead: Carmen Sofía Sánchez.")
    assert facts_begun_at_names(tok, row, words, 2)[2 + len(ids("CEO:")):][:len(spellings[0])] == spellings[0]
    assert facts_begun_at_names(tok, row, words, 2, max_length=len(row)) == row  # no room: as written
    assert facts_begun_at_names(tok, row[:5], words, 2) == row[:5]  # a value not ended: as written


def test_a_value_copied_from_the_documents_first_word_is_spaced_after_its_label():
    """A document whose first word is a fact's value ("Maren Okafor leads ..."): the summary
    writes "CEO: Maren Okafor.", not "CEO:Maren Okafor." (copy_source gave the first word no
    space before it, so the value was copied as the encoder reads it, "M" + "aren")."""
    import re

    loaded = load_model(None)
    text = ("Maren Okafor leads the project. The project site is in Velmora. The approved budget is 4,312. "
            "The deadline falls on 14 March 2034.")
    out = run(loaded, prepare_document(loaded, text), task="summarize", max_new_tokens=64,
              facts_from_document=True).output_text
    assert "Maren Okafor" in out and not re.search(r":\S", out), out


@pytest.mark.slow  # three runs on a 2,500-token report
def test_the_company_sample_names_its_chief_executive():
    """The app's company sample, whose chief executive begins a line ("\nManaia Holiton serves as
    chief executive."): its summary and the suggested question name her (they said "Markets", a
    heading two paragraphs up, before the model's own spelling was allowed)."""
    from ledviz.demo import data

    loaded = load_model(None)
    title = next(t for t in data.sample_examples() if t.startswith("Company"))
    ex = data.sample_examples()[title]
    assert ex.facts["ceo"] == "Manaia Holiton" and "\nManaia Holiton" in ex.document
    summary = run(loaded, prepare_document(loaded, ex.document), task="summarize", max_new_tokens=64,
                  facts_from_document=True).output_text
    assert "CEO: Manaia Holiton." in summary, summary
    for question in ("Who is the chief executive?", "Who is the CEO?"):
        doc = prepare_document(loaded, ex.document, question=question)
        answer = run(loaded, doc, task="qa", max_new_tokens=24, answer_from_document=True).output_text
        assert answer == "Manaia Holiton", (question, answer)


def test_summaries_kept_to_the_document_state_only_spans_once_each():
    """facts_from_document: every value of the summary is a span of the document that begins a word,
    every label appears once, and no word follows itself (the issue's "CEO: Man Man Man")."""
    from ledviz.demo import data, evaluate

    loaded = load_model(None)
    for title, ex in data.sample_examples().items():
        doc = prepare_document(loaded, ex.document)
        result = run(loaded, doc, task="summarize", max_new_tokens=64, facts_from_document=True)
        assert result.settings["facts_from_document"] is True
        text = result.output_text
        labels = [p.partition(":")[0] for p in text.rstrip(".").split(". ")]
        assert labels and len(labels) == len(set(labels)), text
        flat = " ".join(ex.document.split())
        for part in text.rstrip(".").split(". "):
            value = part.partition(":")[2].strip()
            assert value and f" {value}" in f" {flat}", f"{value!r} of {text!r} is not a span of the document"
        assert not evaluate.repeated_word_run(text), text
    with pytest.raises(ledviz.InputError, match="set one of them"):
        run(loaded, doc, task="summarize", facts_from_document=True, answer_from_document=True)



# Issue 15's probes of a new user's own questions: five held-out reports (TEST_SEED) per kind of
# question, drawn by these fixed keys before the model's answers were looked at.
_PROBES = {
    "lower-case question": dict(family="lower", unanswerable=0.0),
    "paraphrase": dict(family="synonyms", unanswerable=0.0),
    "unanswerable question": dict(unanswerable=1.0),
    "unseen name": dict(family="suggested", unseen_values=True, unanswerable=0.0),
}


def _probe(kind: str, index: int):
    from ledviz.demo import data

    rng = data._example_rng(data.TEST_SEED, f"model-test/issue15/{kind}/{index}")
    slot = None
    if kind == "unseen name":
        report = rng.choice(data.REPORT_KINDS)
        slot = rng.choice([s.name for s in data.SCHEMAS[report].slots if s.value_type == "person"])
        return data.make_example(rng, "qa", 1500, kind=report, slot=slot, variety=data.Variety(**_PROBES[kind]))
    return data.make_example(rng, "qa", 1500, variety=data.Variety(**_PROBES[kind]))


@pytest.mark.slow  # several generations
@pytest.mark.parametrize("kind", [
    "lower-case question", "unanswerable question",
    "paraphrase",  # passes since phase 9 and the whole-word rule (the 7-digit amounts were cut short before)
    # passes since the attention focus (pipeline.AttentionFocus): twice the model wrote ' No', the first token
    # of 'Noémi', and went on with another occurrence of it ('No major problems with the work plan'); 3 of 5
    # were right with the start rule, 2 with the end rule alone, 1 before
    "unseen name",
])
def test_embedded_model_answers_a_new_users_own_questions(kind):
    """Through the app's own path (the question read as the QA page reads it, prepare_document,
    run with answers kept to the document, the page's defaults): 4 of 5 held-out probes of each
    kind answered right; an unanswerable question is right when declined with "not in the document"."""
    from ledviz.demo import data
    from ledviz.pipeline import read_question

    loaded = load_model(None)
    wrong = []
    for i in range(5):
        ex = _probe(kind, i)
        assert ex.answerable == (kind != "unanswerable question")
        question = read_question(loaded.tokenizer, ex.question, ex.document).text
        doc = prepare_document(loaded, ex.document, question=question)
        result = run(loaded, doc, task="qa", max_new_tokens=24, answer_from_document=True)
        if not data.exact_match(result.output_text, ex.target):
            wrong.append(f"{ex.question!r}: {result.output_text!r} (expected {ex.target!r})")
    assert len(wrong) <= 1, f"{kind}: " + "; ".join(wrong)


@pytest.mark.slow  # several generations: more than a few seconds
def test_trainers_kept_score_uses_the_apps_constraint():
    """The trainer's kept-answer score (train.score(span=True)) keeps answers the way the app and
    demo.evaluate do (pipeline.document_constraint: whole words, or the decline answer), so the
    number it logs is the one the app would show: on questions about values of unseen shapes (the
    answers a looser span rule cut short) its rate equals evaluate.predict's kept answers."""
    from ledviz import LEDForConditionalGeneration
    from ledviz.demo import data, evaluate, train

    model = LEDForConditionalGeneration.from_pretrained(MODEL_DIR).eval()
    codec = train.Codec(data.load_tokenizer(MODEL_DIR))
    examples = evaluate.question_sets(data.VALID_SEED, 6, [600])["unseen values"]
    kept = evaluate.predict(model, codec, examples, "cpu", constraint="answer")
    expected = sum(data.exact_match(p, ex.target) for p, ex in zip(kept, examples)) / len(examples)
    encoded = [train.encode_example(codec, ex, model.config.max_encoder_position_embeddings) for ex in examples]
    scores = train.score(model, codec, encoded, "cpu", batch_tokens=32768, batch_size=32, span=True)
    assert scores["qa_span_em"] == pytest.approx(expected)


def test_evaluation_start_reads_later_documents_only():
    """--start K: every set is documents K .. K+n-1, the same documents as the tail of a run from 0,
    and none of a run that ended before K (a later test run reads documents never read)."""
    from ledviz.demo import data, evaluate

    whole = evaluate.question_sets(data.VALID_SEED, 4, [300])
    tail = evaluate.question_sets(data.VALID_SEED, 2, [300], start=2)
    assert set(tail) == set(whole)
    for name, exs in tail.items():
        assert [e.document for e in exs] == [e.document for e in whole[name][2:]], name
        assert not {e.document for e in exs} & {e.document for e in whole[name][:2]}, name
    later = evaluate.summary_set(data.VALID_SEED, 1, [300], start=1)
    assert [e.document for e in later] == [evaluate.summary_set(data.VALID_SEED, 2, [300])[1].document]
    assert evaluate.parse_args(["--model", "m", "--start", "96"]).start == 96
    with pytest.raises(SystemExit, match="--start must be 0 or more"):
        evaluate.main(["--model", "m", "--start", "-1"])


def test_evaluation_predict_names_an_unknown_constraint():
    """predict keeps outputs free, to an answer or to facts; a "span" (which would get the facts' value
    chooser as its focus) or a typo is an error naming the choices, before any model is touched."""
    from ledviz.demo import evaluate

    for wrong in ("span", "fact"):
        with pytest.raises(ValueError, match=f"'answer' or 'facts', not '{wrong}'"):
            evaluate.predict(None, None, [], "cpu", constraint=wrong)


def test_attention_focus_marks_the_sentence_looked_at_in_every_form_of_the_document():
    """AttentionFocus.sentence_mask: the sentence of a document token, marked in each form an answer
    copies (pipeline.DocumentWords: a line's first word is spelled three ways), sentences ending at
    ". " and at line breaks (ledviz.sentences), not after an initial ("Salma K. Bui")."""
    import bisect
    import itertools

    from ledviz.pipeline import AttentionFocus, document_words
    from ledviz.tokenization import token_bytes

    tok = load_model(None).tokenizer
    text = "Overview\nThe chief is Salma K. Bui. Visit San Kampala.\nManaia Holiton serves as chief executive."
    source = tok(text, add_special_tokens=False)["input_ids"]
    words = document_words(tok, source)
    assert words.others  # the line breaks give the document more than one form
    focus = AttentionFocus(None, tok, (torch.zeros(1, len(source) + 2, 4),), None, torch.tensor([[0, *source, 2]]),
                           [source], [words])
    copyable, _ = words.answer_source(2)
    pieces = tok.convert_ids_to_tokens(source)

    def marked(j):
        mask = focus.sentence_mask(0, j).tolist()
        forms, run = [], []
        for t, m in zip(copyable + [2], mask + [False]):
            if t == 2:
                forms.append(tok.decode(run).strip())
                run = []
            elif m:
                run.append(t)
        return forms

    ends = list(itertools.accumulate(len(token_bytes(p)) for p in pieces))
    at = lambda word: bisect.bisect_right(ends, text.encode().index(word.encode()))  # noqa: E731 - the token holding it
    assert set(marked(at("Salma"))) == set(marked(at("Bui"))) == {"The chief is Salma K. Bui."}
    assert set(marked(at("Kampala"))) == {"Visit San Kampala."}
    assert set(marked(at("Manaia"))) == {"Manaia Holiton serves as chief executive."}
    assert set(marked(0)) == {"Overview"}


def test_choose_value_keeps_a_value_whole():
    """pipeline.choose_value, on log-probabilities made by hand: the model's "13" is the "13" of "13 open
    items" (its stop token unlikely: the model goes on with " June"), so "10 June 2030." is chosen; a value
    the model would end where the document does keeps the model's own first token however unlikely its
    pieces (an unseen name); with no whole value at all, the model's own first token stays."""
    import math

    from ledviz.pipeline import choose_value

    stop, end, vocab = 9, 2, 12
    # tokens: 3 " 13", 4 " open", 5 " items", 6 " 10", 7 " June", 8 " 2030", 10 " Sal", 11 "ma"

    def table(rows):
        lp = torch.full((len(rows), vocab), -20.0)
        for k, row in enumerate(rows):
            for t, v in row.items():
                lp[k, t] = v
        return lp

    thirteen = (0, [3, 4, 5, stop], table([{3: -0.07}, {stop: -12.0, 7: -0.01, 4: -15.0}, {}, {}]),
                [True, False, True, True])
    ten = (20, [6, 7, 8, stop], table([{6: -3.65}, {7: 0.0}, {8: 0.0}, {stop: 0.0}]), [False, False, True, True])
    assert choose_value([thirteen, ten], own=3, stop=stop, cut={stop, end}, most=24, whole=math.log(0.05)) == 20
    name = (40, [10, 11, stop], table([{10: -1.5}, {11: -9.0}, {stop: -0.1}]), [False, True, True])
    team = (60, [4, stop], table([{4: -4.4}, {stop: -1.2}]), [True, True])
    assert choose_value([name, team], own=10, stop=stop, cut={stop, end}, most=24, whole=math.log(0.05)) == 40
    assert choose_value([thirteen], own=3, stop=stop, cut={stop, end}, most=24, whole=math.log(0.05)) == 0
    # a value the constraint would end the output inside (no word end before the document's end) is never
    # whole, nor chosen over one it would not
    cut_off = (80, [6, 7], table([{6: -0.1}, {7: 0.0}, {}]), [False, False])
    unsure = (100, [6, 7, 8, stop], table([{6: -0.1}, {7: 0.0}, {8: 0.0}, {stop: -5.0, 4: -1.0}]),
              [False, False, True, True])
    assert choose_value([cut_off, unsure, thirteen], own=6, stop=stop, cut={stop, end}, most=24,
                        whole=math.log(0.05)) == 100


@pytest.mark.slow  # one run on a 1,000-token report
def test_the_project_sample_summary_keeps_its_deadline_whole():
    """The app's 1K sample: the model begins "Deadline:" with the "13" of "13 open items" (wanting "13 June
    2030"); kept to that span it read "Deadline: 13." The value chosen whole is the report's own deadline."""
    from ledviz.demo import data, evaluate

    loaded = load_model(None)
    title = next(t for t in data.sample_examples() if t.startswith("Project"))
    ex = data.sample_examples()[title]
    summary = run(loaded, prepare_document(loaded, ex.document), task="summarize", max_new_tokens=64,
                  facts_from_document=True).output_text
    assert "Deadline: 10 June 2030." in summary and evaluate.all_facts_right(summary, ex), summary


@pytest.mark.slow  # two runs on validation reports of 1,000 and 4,000 tokens
def test_a_name_whose_first_token_another_word_shares_is_answered_whole():
    """Two validation reports (the "unseen values" set) whose answer's first token " Sa" also begins another
    capitalized word of the report: the answer went on into the wrong one ("San Kampala" for "Salma Bui",
    "Bennett SA" for "Salma Volkova"); it goes on into the word in the sentence the model looks at."""
    from ledviz.demo import data, evaluate

    loaded = load_model(None)
    for i in (77, 78):
        ex = evaluate.unseen_value_example(data.VALID_SEED, i, (1000, 2000, 4000))
        doc = prepare_document(loaded, ex.document, question=ex.question)
        answer = run(loaded, doc, task="qa", max_new_tokens=24, answer_from_document=True).output_text
        assert answer == ex.target, (ex.question, answer, ex.target)


@pytest.mark.parametrize("setting, value", [("first", 0), ("per_token", -1), ("max_value_tokens", 2.5),
                                            ("first", True), ("whole", 0.5), ("whole", float("nan"))])
def test_value_chooser_names_a_setting_it_cannot_use(setting, value):
    """pipeline.ValueChooser: a count below 1 (or not a whole number) or a 'whole' that is not a
    log-probability is an error naming the setting, before any model work (first=0 was an
    IndexError deep in a summary)."""
    from ledviz.errors import GenerationSettingsError
    from ledviz.pipeline import ValueChooser

    with pytest.raises(GenerationSettingsError, match=f"ValueChooser: {setting} "):
        ValueChooser(None, None, None, None, None, [], [], stop=4, ends=[2], **{setting: value})


def test_value_chooser_and_the_facts_constraint_share_the_value_length():
    """One bound on a summary value's tokens: the chooser follows a candidate as far as the
    constraint lets a value run (generation.MAX_VALUE_TOKENS, the default of both)."""
    import inspect

    from ledviz import generation
    from ledviz.pipeline import ValueChooser

    for fn in (ValueChooser.__init__, generation.fact_list_constraint):
        assert inspect.signature(fn).parameters["max_value_tokens"].default == generation.MAX_VALUE_TOKENS
