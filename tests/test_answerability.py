"""The answerability head (ledviz.answerability): loaded from the file a model's generation config
names, applied in ledviz.answering.kept_answers (the function the QA page, demo.evaluate and
train.score answer with), bad files are errors naming them; and the span and the decline are
scored in one batched teacher-forced pass with the same log-probabilities as two passes."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest
import torch

import ledviz
from ledviz import answerability, answering
from ledviz.answerability import AnswerabilityError
from ledviz.errors import GenerationSettingsError
from ledviz.pipeline import load_model, prepare_document, run

MODEL_DIR = os.path.join(os.path.dirname(ledviz.__file__), "demo", "model")


def _questions():
    """An unanswerable and two answerable questions about held-out reports (VALID_SEED)."""
    from ledviz.demo import data

    rng = data._example_rng
    return [data.make_example(rng(data.VALID_SEED, "answerability-test/0"), "qa", 700,
                              variety=data.Variety(unanswerable=1.0)),
            data.make_example(rng(data.VALID_SEED, "answerability-test/1"), "qa", 700),
            data.make_example(rng(data.VALID_SEED, "answerability-test/2"), "qa", 1500,
                              variety=data.Variety(family="keyword", unanswerable=0.0))]


def _inputs(loaded, ex):
    doc = prepare_document(loaded, ex.document, question=ex.question)
    source = doc.input_ids[0, doc.document_tokens()].tolist()
    gm = torch.zeros_like(doc.input_ids)
    gm[0, doc.question_tokens()] = 1
    return source, dict(input_ids=doc.input_ids, attention_mask=doc.attention_mask, global_attention_mask=gm,
                        max_new_tokens=24)


def _head_json(features=("margin_first",), weight=None, bias=0.0, threshold=0.5, config=None, hidden=0):
    """A head file's object: standardization 0/1, the given weights (default -0.3 on every input)."""
    width = sum(answerability.feature_width(f, config) for f in features) if config else len(features)
    w = weight if weight is not None else [[-0.3] * width]
    layers = [dict(weight=w, bias=[bias])]
    if hidden:
        g = torch.Generator().manual_seed(0)
        layers = [dict(weight=(torch.randn(hidden, width, generator=g) * 0.1).tolist(), bias=[0.1] * hidden),
                  dict(weight=[[0.5] * hidden], bias=[bias])]
    return dict(format="ledviz-answerability", version=1, features=list(features), mean=[0.0] * width,
                std=[1.0] * width, layers=layers, threshold=threshold, about=dict(made_by="the test"))


def _model_with_head(tmp_path, head: dict | str | None, settings=None):
    """A copy of the embedded model whose generation config names `head` (written as answerability.json)."""
    folder = tmp_path / "model"
    if not folder.exists():
        shutil.copytree(MODEL_DIR, folder)
    config = json.loads((folder / "generation_config.json").read_text())
    config.pop("decline_head", None)
    if head is not None:
        (folder / "answerability.json").write_text(head if isinstance(head, str) else json.dumps(head))
        config["decline_head"] = "answerability.json"
    config.update(settings or {})
    (folder / "generation_config.json").write_text(json.dumps(config))
    return load_model(str(folder))


def _without_head():
    loaded = load_model(None)
    config = dict(loaded.model.generation_config)
    config.pop("decline_head", None)
    loaded.model.generation_config = config
    return loaded


@pytest.mark.slow  # six generations
def test_one_batched_pass_gives_the_two_passes_log_probabilities_and_without_a_head_the_answers_are_as_before():
    """paired_logprobs (the span and the decline in one pass, cross keys/values projected once) equals
    answer_logprobs run on each; and without a head kept_answers decides by the margin on them, as it did."""
    loaded = _without_head()
    model, tok = loaded.model, loaded.tokenizer
    rule = answering.decline_rule(model)
    assert rule is not None and rule.head is None
    for ex in _questions():
        source, kw = _inputs(loaded, ex)
        a = answering.kept_answers(model, tok, [source], **kw)[0]
        assert a.answerable is None and a.features is None
        enc = model.get_encoder()(input_ids=kw["input_ids"], attention_mask=kw["attention_mask"],
                                  global_attention_mask=kw["global_attention_mask"])
        span_row = [2, 0, *a.span_ids, 2]
        decline_row = [2, 0, *a.decline_ids, 2]
        old_span = answering.answer_logprobs(model, enc, kw["attention_mask"], [span_row])[0]
        old_decline = answering.answer_logprobs(model, enc, kw["attention_mask"], [decline_row])[0]
        assert a.span_logprobs == pytest.approx(old_span, abs=1e-5)
        assert a.decline_logprobs == pytest.approx(old_decline, abs=1e-5)
        margin = old_decline[0] - old_span[0] if rule.score == "first" else None
        if margin is not None and a.span_ids[0] != a.decline_ids[0]:
            assert a.declined == (margin > rule.margin)
        assert a.ids == ([2, 0, *a.decline_ids, 2] if a.declined else span_row)
    # a batch of three inputs (the same document thrice) with answers of different lengths: the same numbers
    # as one at a time
    runner = answering._runner(model, (enc.last_hidden_state.repeat(3, 1, 1),), kw["attention_mask"].repeat(3, 1))
    spans = [span_row, [2, 0, 5, 6, 7, 8, 9, 2], [2, 0, 400]]
    declines = [decline_row] * 3
    s, d = answering.paired_logprobs(model, runner, spans, declines)
    for row, got in zip(spans, s):
        assert got == pytest.approx(answering.answer_logprobs(model, enc, kw["attention_mask"], [row])[0], abs=1e-5)
    assert all(x == pytest.approx(old_decline, abs=1e-5) for x in d)


@pytest.mark.slow  # several generations
def test_the_head_reads_the_features_and_its_threshold_forces_either_answer(tmp_path):
    """A head on one feature gives sigmoid(w * margin_first + b) and declines iff that is below its
    threshold: a threshold just above the probability declines, just below answers; a head on every
    feature (a hidden layer, too) reads the features kept_answers reports, in its order."""
    from ledviz.demo import data

    head = _head_json(("margin_first",), weight=[[-0.5]], bias=0.25, threshold=0.0)
    loaded = _model_with_head(tmp_path, head)
    model, tok = loaded.model, loaded.tokenizer
    rule = answering.decline_rule(model)
    assert rule.head is not None and rule.head.features == ("margin_first",) and rule.head.threshold == 0.0
    for ex in _questions()[:2]:
        source, kw = _inputs(loaded, ex)
        a = answering.kept_answers(model, tok, [source], **kw)[0]
        p = 1 / (1 + math.exp(-(-0.5 * a.margin("first") + 0.25)))
        assert a.answerable == pytest.approx(p, abs=1e-9) and not a.declined  # threshold 0: never
        assert set(a.features) == set(answerability.FEATURES)
        assert a.features["margin_first"] == [pytest.approx(a.margin("first"))]
        assert len(a.features["encoder_question"]) == model.config.d_model
        assert len(a.features["cross_max"]) == model.config.decoder_layers * model.config.decoder_attention_heads
        assert 0 <= a.features["question_words_found"][0] <= 1
        for threshold, declined in ((p + 1e-6, True), (p - 1e-6, False)):
            moved = answering.kept_answers(model, tok, [source],
                                           rule=answering.DeclineRule(rule.margin, rule.score,
                                                                      answerability.from_json(
                                                                          {**head, "threshold": threshold}, "t")),
                                           **kw)[0]
            assert moved.declined == declined and moved.span_text == a.span_text
            assert data.exact_match(tok.decode(moved.ids, skip_special_tokens=True), data.NOT_IN_DOCUMENT) == declined
        # the margin no longer decides: far below any difference, still answered
        far = answering.kept_answers(model, tok, [source], rule=answering.DeclineRule(-1e6, rule.score, rule.head),
                                     **kw)[0]
        assert not far.declined
    # every feature, with a hidden layer
    full = _head_json(tuple(answerability.FEATURES), config=model.config, hidden=3, threshold=0.5)
    loaded = _model_with_head(tmp_path, full)
    rule = answering.decline_rule(loaded.model)
    source, kw = _inputs(loaded, _questions()[1])
    a = answering.kept_answers(loaded.model, tok, [source], **kw)[0]
    x = torch.tensor([v for f in answerability.FEATURES for v in a.features[f]], dtype=torch.float64)
    (w1, b1), (w2, b2) = [(torch.tensor(l["weight"], dtype=torch.float64), torch.tensor(l["bias"], dtype=torch.float64))
                          for l in full["layers"]]
    expected = torch.sigmoid(torch.tanh(x @ w1.T + b1) @ w2.T + b2).item()
    assert a.answerable == pytest.approx(expected, abs=1e-9) and a.declined == (expected < 0.5)


@pytest.mark.slow  # two generations
def test_kept_answers_needs_the_question_tokens_for_a_head(tmp_path):
    loaded = _model_with_head(tmp_path, _head_json())
    source, kw = _inputs(loaded, _questions()[1])
    enc = loaded.model.get_encoder()(input_ids=kw.pop("input_ids"), attention_mask=kw["attention_mask"],
                                     global_attention_mask=kw.pop("global_attention_mask"))
    with pytest.raises(GenerationSettingsError, match="give kept_answers input_ids"):
        answering.kept_answers(loaded.model, loaded.tokenizer, [source], encoder_outputs=enc, **kw)


def _bad(obj, **change):
    out = json.loads(json.dumps(obj))
    for k, v in change.items():
        if v is None:
            out.pop(k)
        else:
            out[k] = v
    return out


_GOOD = _head_json()


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a JSON file.*remake it with python -m ledviz.demo.train_answerability"),
    ("[1, 2]", "must hold a JSON object"),
    (_bad(_GOOD, threshold=None), "missing key.*'threshold'"),
    (_bad(_GOOD, colour="red"), "unknown key.*'colour'"),
    (_bad(_GOOD, version=2), "version 2; this ledviz reads 'ledviz-answerability' version 1"),
    (_bad(_GOOD, features=["margin_first", "shoe_size"]), "unknown feature.*'shoe_size'"),
    (_bad(_GOOD, features=["encoder_question"]), "'mean' has shape \\(1,\\), expected \\(128,\\)"),
    (_bad(_GOOD, mean=[math.nan]), "'mean' holds a value that is not a finite number"),
    (_bad(_GOOD, mean=["a"]), "'mean' must be a list of numbers"),
    (_bad(_GOOD, std=[0.0]), "'std' must be positive"),
    (_bad(_GOOD, layers=[dict(weight=[[1.0, 2.0]], bias=[0.0])]), "layers\\[0\\].weight' has shape \\(1, 2\\)"),
    (_bad(_GOOD, layers=[dict(weight=[[1.0], [2.0]], bias=[0.0, 1.0])]), "the last layer must have one output"),
    (_bad(_GOOD, layers=[dict(weight=[[1.0]], bias=[0.0], scale=2)]), "exactly 'weight' and 'bias'"),
    (_bad(_GOOD, threshold=1.5), "'threshold' must be a probability"),
    (_bad(_GOOD, threshold=True), "'threshold' must be a probability"),
])
def test_a_bad_head_file_is_an_error_naming_the_file_and_the_key(tmp_path, content, message):
    loaded = _model_with_head(tmp_path, content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(AnswerabilityError, match=message) as e:
        answering.decline_rule(loaded.model)
    assert "answerability.json" in str(e.value)
    from ledviz.demo import data

    ex = data.make_example(data._example_rng(data.VALID_SEED, "answerability-test/1"), "qa", 300)
    doc = prepare_document(loaded, ex.document, question=ex.question)
    with pytest.raises(AnswerabilityError, match=message):  # through the app's run too
        run(loaded, doc, task="qa", max_new_tokens=4, answer_from_document=True)


@pytest.mark.parametrize("settings, message", [
    (dict(decline_head="missing.json"), "the model's folder .* has no such file"),
    (dict(decline_head="../answerability.json"), "must be the name of a file in the model's folder"),
    (dict(decline_head=3), "must be the name of a file in the model's folder"),
    (dict(decline_margin=None, decline_score=None), "decline_head is set without decline_margin"),
])
def test_a_bad_head_setting_is_an_error_naming_it(tmp_path, settings, message):
    loaded = _model_with_head(tmp_path, _head_json(), {k: v for k, v in settings.items() if v is not None})
    config = dict(loaded.model.generation_config)
    for k, v in settings.items():
        if v is None:
            config.pop(k, None)
    loaded.model.generation_config = config
    with pytest.raises(GenerationSettingsError, match=message):
        answering.decline_rule(loaded.model)


def test_the_head_is_read_once_per_file_version(tmp_path):
    loaded = _model_with_head(tmp_path, _head_json(threshold=0.25))
    first = answering.decline_rule(loaded.model).head
    assert answering.decline_rule(loaded.model).head is first and first.threshold == 0.25
    path = tmp_path / "model" / "answerability.json"
    path.write_text(json.dumps(_head_json(threshold=0.75)))
    os.utime(path, ns=(os.stat(path).st_mtime_ns + 10**9,) * 2)
    assert answering.decline_rule(loaded.model).head.threshold == 0.75
    # saved and loaded again: the same head
    again = tmp_path / "again.json"
    first.save(again)
    back = answerability.load(again, loaded.model.config)
    assert back.features == first.features and back.threshold == first.threshold
    assert torch.equal(back.layers[0][0], first.layers[0][0]) and back.about == first.about


def test_fitting_separates_what_is_separable_and_the_threshold_keeps_the_wrong_declines_bounded():
    from ledviz.demo import train_answerability as ta

    g = torch.Generator().manual_seed(1)
    y = torch.tensor([1, 0] * 200)
    x = torch.randn(400, 3, generator=g, dtype=torch.float64)
    x[:, 0] += 3.0 * y  # the first column tells
    mean, std, layers = ta.fit(x, y, l2=1e-3)
    head = answerability.AnswerabilityHead("t", ("a", "b", "c"), mean, std, tuple(layers))
    p = head.probabilities(x)
    assert ta.roc_auc(p.tolist(), y.tolist()) > 0.95 and abs(float(layers[0][0][0, 0])) > abs(float(layers[0][0][0, 1]))
    t = ta.choose_threshold(p, y, 0.05)
    d, nu, w, na = ta.trade_off(p, y, t)
    assert w <= 0.05 * na and nu == na == 200 and d > 100
    # no threshold declines more within the bound, nor as many with fewer wrong declines
    for other in torch.linspace(0, 1, 2001).tolist() + p.tolist():
        d2, _, w2, _ = ta.trade_off(p, y, other)
        assert w2 > 0.05 * na or (d2, -w2) <= (d, -w)
    # joined seeds: the mean of the members' logits
    mean, std, joined = ta.ensemble(x, y, l2=1e-3, hidden=2, seeds=[0, 1])
    members = [ta.fit(x, y, l2=1e-3, hidden=2, seed=s)[2] for s in (0, 1)]
    as_head = lambda layers: answerability.AnswerabilityHead("t", ("a", "b", "c"), mean, std, tuple(layers))
    logit = lambda layers: torch.logit(as_head(layers).probabilities(x))
    assert torch.allclose(logit(joined), (logit(members[0]) + logit(members[1])) / 2, atol=1e-6)
    assert ta.roc_auc([0.1, 0.9], [0, 1]) == 1.0 and ta.roc_auc([0.5, 0.5], [0, 1]) == 0.5
    # a row that was not weighed (NaN) is never declined, and does not move the fit
    p_nan = torch.tensor([math.nan, 0.1])
    assert ta.trade_off(p_nan, torch.tensor([0, 0]), 0.5) == (1, 2, 0, 0)


def test_the_answerability_figure_shows_the_probability_and_the_threshold():
    from ledviz import plots

    fig = plots.answerability_figure(0.93, 0.4, declined=False)
    bar = fig.data[0]
    assert list(bar.x) == [0.93] and bar.text[0] == "answerable: 0.93 (answered)"
    assert fig.layout.shapes[0].x0 == 0.4 and "declines below 0.40" in fig.layout.annotations[0].text
    assert list(fig.layout.xaxis.range) == [0, 1]
    assert plots.answerability_figure(0.12, 0.4, declined=True).data[0].text[0] == "answerable: 0.12 (declined)"
    # a probability near 0 draws no bar to speak of: its value is written beside it, not hidden inside it, and
    # past the threshold's dashed line, which crossed the text when it began at the bar's end
    low = plots.answerability_figure(0.0, 0.15, declined=True)
    assert low.data[0].textposition == "none"
    beside = [a for a in low.layout.annotations if a.text == "answerable: 0.00 (declined)"]
    assert len(beside) == 1 and beside[0].x == 0.15 and beside[0].xanchor == "left" and beside[0].xshift > 0
    assert plots.answerability_figure(0.3, 0.15, declined=False).data[0].textposition == "outside"  # past the line
    assert fig.data[0].textposition == "inside"
    # the decline figure without the margin's bar (a head decided)
    fig = plots.decline_figure("Maren Okafor", -0.5, -4.0, None, "first", declined=False)
    assert not fig.layout.shapes and not fig.layout.annotations


@pytest.mark.slow  # two evaluations and two runs
def test_evaluate_the_trainer_and_the_app_apply_the_head_alike(tmp_path):
    """demo.evaluate's kept answers, the trainer's (train.kept_answers) and the app's run (pipeline.run)
    reach the head through the same function: the same answer and the same probability."""
    from ledviz import LEDForConditionalGeneration
    from ledviz.demo import data, evaluate, train

    loaded = _model_with_head(tmp_path, _head_json(("margin_first", "question_words_found", "cross_max"),
                                                   config=load_model(None).model.config, threshold=0.45))
    folder = str(tmp_path / "model")
    model = LEDForConditionalGeneration.from_pretrained(folder).eval()
    codec = train.Codec(data.load_tokenizer(folder))
    examples = _questions()
    weighed = evaluate.answers(model, codec, examples, "cpu", batch_size=2)
    texts = evaluate.predict(model, codec, examples, "cpu", constraint="answer", batch_size=3)
    assert all(a.answerable is not None for a in weighed)
    for ex, text, a in zip(examples, texts, weighed):
        doc = prepare_document(loaded, ex.document, question=ex.question)
        result = run(loaded, doc, task="qa", max_new_tokens=24, answer_from_document=True)
        assert result.output_text == text and result.answer.span_text == a.span_text
        assert result.answer.declined == a.declined == (a.answerable < 0.45)
        assert result.answer.answerable == pytest.approx(a.answerable, abs=1e-4)


@pytest.mark.slow  # a small training run and an evaluation
def test_the_training_script_writes_a_head_that_evaluate_applies_and_tunes(tmp_path, capsys):
    """train_answerability on a few questions writes a head that loads, names it with --install, and
    evaluate --tune (validation) answers with it and prints its trade-off by threshold."""
    from ledviz.demo import evaluate
    from ledviz.demo import train_answerability as ta

    _model_with_head(tmp_path, None)  # a copy of the embedded model without a head
    folder = tmp_path / "model"
    about = ta.main(["--model", str(folder), "--n-train", "12", "--n-valid", "1", "--lengths", "300", "--hidden", "2",
                     "--ensemble", "2", "--cache", str(tmp_path / "cache"), "--install"])
    said = capsys.readouterr().out
    assert "ROC area on validation, -margin (first)" in said and "trade-off on validation" in said
    assert about["ensemble"] == 2 and about["hidden"] == 2 and "--n-train 12" in about["made_by"]
    config = json.loads((folder / "generation_config.json").read_text())
    assert config["decline_head"] == "answerability.json"
    model = ledviz.LEDForConditionalGeneration.from_pretrained(folder)
    head = answering.decline_rule(model).head
    assert head.features == ta.DEFAULT_FEATURES and len(head.layers) == 2 and head.layers[0][0].shape[0] == 4
    # the same command again reads the cached features and writes the same head
    first = (folder / "answerability.json").read_text()
    ta.main(["--model", str(folder), "--n-train", "12", "--n-valid", "1", "--lengths", "300", "--hidden", "2",
             "--ensemble", "2", "--cache", str(tmp_path / "cache"), "--install"])
    assert (folder / "answerability.json").read_text() == first
    with pytest.raises(SystemExit, match="unknown feature.*shoe"):
        ta.main(["--model", str(folder), "--n-train", "12", "--n-valid", "1", "--lengths", "300",
                 "--cache", str(tmp_path / "cache"), "--features", "margin_first,shoe"])
    scores = evaluate.main(["--model", str(folder), "--n", "1", "--lengths", "300", "--seed", "valid", "--tune",
                            "--no-timing"])
    assert scores["decline rule"]["head"]["threshold"] == head.threshold
    rows = scores["tune head"]
    assert rows[0]["threshold"] == 0.0 and rows[0]["declined"]["k"] == 0 and rows[-1]["threshold"] == 1.0
    assert rows[-1]["wrongly_declined"]["k"] == rows[-1]["wrongly_declined"]["n"] == len(evaluate.FAMILIES)
    assert all(a["answerable"] is not None for a in scores["answers"]["suggested"])
