"""The decline decision (ledviz.answering): a kept answer is the best whole-word span of the
document or the decline answer, chosen by score(decline) - score(span) > the model's
decline_margin; without that setting, greedy decoding's first token chooses, as before."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil

import pytest
import torch

import ledviz
from ledviz import answering
from ledviz.errors import GenerationSettingsError
from ledviz.pipeline import document_constraint, load_model, prepare_document, run

MODEL_DIR = os.path.join(os.path.dirname(ledviz.__file__), "demo", "model")


def _questions():
    """An unanswerable and an answerable question about held-out reports (VALID_SEED)."""
    from ledviz.demo import data

    unanswerable = data.make_example(data._example_rng(data.VALID_SEED, "answering-test/0"), "qa", 600,
                                     variety=data.Variety(unanswerable=1.0))
    answerable = data.make_example(data._example_rng(data.VALID_SEED, "answering-test/1"), "qa", 600)
    return [unanswerable, answerable]


def _loaded(**settings):
    """The embedded model, loaded afresh, with these settings in its generation config
    (None removes one); without its answerability head unless `decline_head` is given (the head's
    own tests are in test_answerability.py)."""
    loaded = load_model(None)
    config = dict(loaded.model.generation_config)
    for k, v in {"decline_head": None, **settings}.items():
        config.pop(k, None)
        if v is not None:
            config[k] = v
    loaded.model.generation_config = config
    return loaded


def _answer(loaded, ex, **kw):
    doc = prepare_document(loaded, ex.document, question=ex.question)
    return run(loaded, doc, task="qa", max_new_tokens=24, answer_from_document=True, **kw)


def test_the_weighed_span_never_begins_with_the_decline_s_first_word():
    """The span weighed against the decline (document_constraint "span") may not begin with the
    decline's first token " not" (a span " not become" would be the decline's first word chosen
    for the fact and then declined); the answer constraint still allows " not" to begin the
    decline, and " not" inside a span is an ordinary word."""
    loaded = load_model(None)
    tok, cfg = loaded.tokenizer, loaded.config
    source = tok(" The partner did not become a partner. Lead: Ana Ruiz.", add_special_tokens=False)["input_ids"]
    decline = answering.decline_ids(tok)
    not_id, did_id = decline[0], tok(" did", add_special_tokens=False)["input_ids"][0]
    assert not_id in source and tok.decode([not_id]) == " not"
    lead = [cfg.decoder_start_token_id, cfg.bos_token_id]
    span = document_constraint(tok, [source], "span", cfg.eos_token_id, cfg.bos_token_id)
    answer = document_constraint(tok, [source], "answer", cfg.eos_token_id, cfg.bos_token_id)
    first = span(0, torch.tensor(lead))
    assert not_id not in first and did_id in first
    assert not_id in span(0, torch.tensor(lead + [did_id]))  # " did not ..." is a span
    assert not_id in answer(0, torch.tensor(lead))  # the decline begins with it
    assert decline[1] in answer(0, torch.tensor(lead + [not_id]))


@pytest.mark.slow  # eight runs
@pytest.mark.parametrize("i", [0, 1])
def test_the_margin_forces_either_answer_and_the_scores_are_the_run_s_own(i):
    """A margin far below any score difference always declines, one far above never does; the
    two runs weigh the same span with the same scores, and the chosen answer's score equals the
    sum of the log-probabilities the run itself reports for its tokens (pipeline.score_tokens)."""
    from ledviz.demo import data

    ex = _questions()[i]
    declined = _answer(_loaded(decline_margin=-1e6, decline_score="sum"), ex)
    answered = _answer(_loaded(decline_margin=1e6, decline_score="sum"), ex)
    a, b = declined.answer, answered.answer
    assert a.declined and data.exact_match(declined.output_text, data.NOT_IN_DOCUMENT)
    assert not b.declined and declined.output_text != answered.output_text
    assert answered.output_text == b.span_text and a.span_text == b.span_text and a.span_ids == b.span_ids
    assert a.margin() == pytest.approx(b.margin()) and a.rule.margin == -1e6 and b.rule.score == "sum"
    # the run's teacher-forced log-probabilities after <s>: the answer's tokens and its end
    assert declined.token_logprobs[1:] == pytest.approx(a.decline_logprobs, abs=1e-4)
    assert answered.token_logprobs[1:] == pytest.approx(b.span_logprobs, abs=1e-4)
    assert len(b.span_logprobs) == len(b.span_ids) + 1 and a.span_logprobs == b.span_logprobs
    # the scores: the sum, the mean per token, or the first token's alone
    for score, of in (("sum", sum), ("mean", lambda x: sum(x) / len(x))):
        assert a.scores(score) == pytest.approx((of(a.span_logprobs), of(a.decline_logprobs)))
    assert a.span_ids[0] != a.decline_ids[0] and a.scores("first") == (a.span_logprobs[0], a.decline_logprobs[0])
    assert a.margin() == pytest.approx(sum(a.decline_logprobs) - sum(a.span_logprobs))
    # between the two, the margin decides: just below it declines, just above it answers
    m = a.margin()
    assert _answer(_loaded(decline_margin=m - 0.01, decline_score="sum"), ex).answer.declined
    assert not _answer(_loaded(decline_margin=m + 0.01, decline_score="sum"), ex).answer.declined


@pytest.mark.slow  # four generations
def test_without_the_setting_the_first_token_chooses_as_before():
    """A model without decline_margin (any user model) answers exactly as generate with the
    document constraint that allows the decline (the behaviour before the rule): nothing weighed
    (a span begun inside a name still begins where the name begins: the start rule)."""
    loaded = _loaded(decline_margin=None, decline_score=None)
    assert answering.decline_rule(loaded.model) is None
    for ex in _questions():
        result = _answer(loaded, ex)
        doc = result.document
        source = doc.input_ids[0, doc.document_tokens()].tolist()
        cfg = loaded.config
        allowed = document_constraint(loaded.tokenizer, [source], "answer", cfg.eos_token_id, cfg.bos_token_id)
        with torch.inference_mode():
            ids = loaded.model.generate(doc.input_ids, attention_mask=doc.attention_mask,
                                        global_attention_mask=result.global_mask, max_new_tokens=24,
                                        prefix_allowed_tokens_fn=allowed)[0].tolist()
        # the same tokens, but for the start rule's name words before a span begun inside a name
        assert result.output_ids == ids[:2] + (result.answer.prefix_ids or []) + ids[2:]
        assert result.answer.rule is None and result.answer.margin() is None and result.answer.span_text is None
        assert result.answer.declined == (ids[2:-1] == answering.decline_ids(loaded.tokenizer))


@pytest.mark.slow  # six generations
def test_the_first_token_score_at_margin_0_is_greedy_decoding_s_choice():
    """score "first" weighs the first token where the answers differ: at margin 0 it chooses as greedy decoding's
    first token does (the behaviour without a rule); a margin moves the choice."""
    loaded = _loaded()
    for ex in _questions():
        doc = prepare_document(loaded, ex.document, question=ex.question)
        source = doc.input_ids[0, doc.document_tokens()].tolist()
        gm = torch.zeros_like(doc.input_ids)
        gm[0, doc.question_tokens()] = 1
        kw = dict(input_ids=doc.input_ids, attention_mask=doc.attention_mask, global_attention_mask=gm,
                  max_new_tokens=24)
        before = answering.kept_answers(loaded.model, loaded.tokenizer, [source], rule=None, **kw)[0]
        first = answering.kept_answers(loaded.model, loaded.tokenizer, [source],
                                       rule=answering.DeclineRule(0.0, "first"), **kw)[0]
        assert first.ids == before.ids and first.declined == before.declined
        assert first.margin() == pytest.approx(first.decline_logprobs[0] - first.span_logprobs[0])
        moved = answering.kept_answers(loaded.model, loaded.tokenizer, [source],
                                       rule=answering.DeclineRule(first.margin() + (0.01 if first.declined else -0.01),
                                                                  "first"), **kw)[0]
        assert moved.declined != first.declined
    # a span that starts as the decline does (" not become"): the answers part at their second token
    fork = answering.KeptAnswer([], False, [403, 900], "not become", [-0.5, -3.0, -0.1], [-0.5, -0.2, 0, 0, -0.1],
                                answering.DeclineRule(0.0, "first"), [403, 307, 262, 671])
    assert fork.scores() == (-3.0, -0.2) and fork.margin() == pytest.approx(2.8)
    prefix = dataclasses.replace(fork, span_ids=[403, 307], span_logprobs=[-0.5, -0.2, -4.0])  # "not in": the end
    assert prefix.scores() == (-4.0, 0)


@pytest.mark.slow  # a generation with the decline weighed, twice
def test_a_span_begun_inside_a_name_begins_where_the_name_begins():
    """The start rule through the app's run: on a held-out report (VALID_SEED) whose lead has a
    first name training never drew ("Dóra Ruiz"), the model writes "Ruiz" (the name's second
    word); the answer begins with the run's first word, the decline is weighed against the span
    as written, and without the prefix the answer would be the wrong "Ruiz"."""
    from ledviz.demo import data, evaluate

    ex = evaluate.question_sets(data.VALID_SEED, 1, [1000])["unseen values"][0]
    assert ex.target == "Dóra Ruiz"
    loaded = _loaded()
    result = _answer(loaded, ex)
    a = result.answer
    assert not a.declined and a.span_text == "Ruiz" and result.output_text == a.answer_text == "Dóra Ruiz"
    assert loaded.tokenizer.decode(a.prefix_ids) == " Dóra"  # the accented name whole: "ó" is no word boundary
    assert result.output_ids[2:-1] == a.prefix_ids + a.span_ids
    assert len(a.span_logprobs) == len(a.span_ids) + 1  # weighed: the span as written, and its end
    assert a.margin() < a.rule.margin


@pytest.mark.slow  # two evaluations and two runs
def test_evaluate_and_the_app_give_the_same_answers():
    """demo.evaluate's kept answers and the app's run (pipeline.run) are the same function's:
    the same answer, span and margin for the same question."""
    from ledviz import LEDForConditionalGeneration
    from ledviz.demo import data, evaluate, train

    examples = _questions()
    for margin in (-1e6, 0.0):
        model = LEDForConditionalGeneration.from_pretrained(MODEL_DIR).eval()
        model.generation_config = {k: v for k, v in {**model.generation_config, "decline_margin": margin}.items()
                                   if k != "decline_head"}
        codec = train.Codec(data.load_tokenizer(MODEL_DIR))
        texts = evaluate.predict(model, codec, examples, "cpu", constraint="answer", batch_size=1)
        weighed = evaluate.answers(model, codec, examples, "cpu", batch_size=1)
        loaded = _loaded(decline_margin=margin)
        for ex, text, a in zip(examples, texts, weighed):
            result = _answer(loaded, ex)
            assert result.output_text == text and result.answer.span_text == a.span_text
            assert result.answer.declined == a.declined
            assert result.answer.margin() == pytest.approx(a.margin(), abs=1e-3)


@pytest.mark.parametrize("settings, message", [
    (dict(decline_margin="high"), "decline_margin='high': must be a finite number"),
    (dict(decline_margin=math.inf), "decline_margin=inf: must be a finite number"),
    (dict(decline_margin=True), "decline_margin=True: must be a finite number"),
    (dict(decline_margin=1.0, decline_score="median"), "decline_score='median': must be one of sum, mean, first"),
    (dict(decline_score="mean"), "decline_score is set without decline_margin"),
    (dict(decline_margn=1.0), "unknown answer setting.*'decline_margn'.*decline_margin, decline_score"),
])
def test_a_bad_setting_is_an_error_naming_it(settings, message):
    loaded = _loaded(**{"decline_margin": None, **settings})
    with pytest.raises(GenerationSettingsError, match=message):
        answering.decline_rule(loaded.model)
    with pytest.raises(GenerationSettingsError, match=message):  # through the app's run too
        _answer(loaded, _questions()[1])
    # a summary never asks for the rule
    doc = prepare_document(loaded, "The project lead is Maren Okafor.")
    run(loaded, doc, max_new_tokens=2)


def test_the_setting_is_read_from_generation_config_json_and_is_no_generate_setting(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(MODEL_DIR, folder)
    config = json.loads((folder / "generation_config.json").read_text())
    config.update(decline_margin=1.5, decline_score="mean")
    (folder / "generation_config.json").write_text(json.dumps(config))
    model = ledviz.LEDForConditionalGeneration.from_pretrained(folder)
    rule = answering.decline_rule(model)
    assert (rule.margin, rule.score) == (1.5, "mean")
    # the embedded model's answerability head, read from the copy's folder (its generation config names it)
    assert rule.head is not None and rule.head.path == str(folder / config["decline_head"])
    enc = torch.tensor([[0, 100, 2]])
    model.generate(enc, max_new_tokens=2)  # generate reads its own settings and leaves the rule alone
    with pytest.raises(GenerationSettingsError, match="unknown generation setting.*'decline_margin'"):
        model.generate(enc, max_new_tokens=2, decline_margin=1.0)
    with pytest.raises(GenerationSettingsError, match="rule must be 'model', None or a DeclineRule"):
        answering.kept_answers(model, None, [[5]], input_ids=enc, rule=1.0)


def test_the_decline_figure_shows_both_scores_and_the_bar_to_clear():
    from ledviz import plots

    fig = plots.decline_figure("Maren Okafor", -0.5, -4.0, 3.6, answering.SCORE_NAMES["first"], declined=False)
    bars = fig.data[0]
    assert list(bars.x) == [-0.5, -4.0] and "Maren Okafor" in bars.y[0].replace("<br>", " ") and "not in the document" in bars.y[1].replace("<br>", " ")
    assert bars.text[0].endswith("(chosen)") and not bars.text[1].endswith("(chosen)")
    line = fig.layout.shapes[0]
    assert line.x0 == line.x1 == pytest.approx(3.1)  # the span's score plus the margin
    assert fig.layout.xaxis.title.text.replace("<br>", " ") == answering.SCORE_NAMES["first"]
    # a bar above 0 is out of any log-probability's reach, and the figure says so (it read as a score to beat)
    said = fig.layout.annotations[0].text
    assert said.startswith("to decline, beat 3.10 (span +3.6)") and "out of reach" in said, said
    within = plots.decline_figure("Maren Okafor", -5.0, -4.0, 3.6, "first", declined=False).layout.annotations[0].text
    assert within == "to decline, beat -1.40 (span +3.6)", within
    long = plots.decline_figure("x" * 80, -1.0, 0.0, 0.5, "sum", declined=True)
    assert len(long.data[0].y[0]) < 60 and long.data[0].text[1].endswith("(chosen)")


def test_the_decline_figure_draws_one_token_scores_as_probabilities():
    """With the head deciding (score "first"), the bars are probabilities on 0-1: the likelier answer has the
    longer bar (negative log-probabilities drew it as the shorter one), each bar says its % and log-probability."""
    from ledviz import plots

    fig = plots.decline_figure("98,712", -0.10, -3.10, None, answering.SCORE_NAMES["first"], declined=True,
                               percent=answering.percent)
    bars = fig.data[0]
    assert list(bars.x) == pytest.approx([math.exp(-0.10), math.exp(-3.10)])
    assert bars.text[0] == "90% (log-probability -0.10)" and bars.text[1] == "5% (log-probability -3.10) (chosen)"
    assert tuple(fig.layout.xaxis.range) == (0, 1) and "probability" in fig.layout.xaxis.title.text
    with pytest.raises(ValueError, match="not both"):
        plots.decline_figure("x", -1.0, -2.0, 0.5, "first", declined=False, percent=answering.percent)
    assert [answering.percent(p) for p in (0.001, 0.0512, 0.92, 0.999)] == ["<1%", "5%", "92%", ">99%"]
    # drawn one above the other on the QA page, the head's figure and this one put x = 0 at the same place:
    # the same fixed left margin (not one sized to each figure's labels), the labels cut to fit it
    head = plots.answerability_figure(0.3, 0.15, declined=False)
    long = plots.decline_figure("a span of eighty characters " * 3, -0.1, -3.1, None, "first", declined=False,
                                percent=answering.percent)
    for f in (head, fig, long):
        assert f.layout.margin.l == plots.DECISION_LABEL_PX and f.layout.yaxis.automargin is False
    assert max(len(label.replace("<br>", "")) for label in long.data[0].y) <= plots.DECISION_LABEL_CHARS


def test_the_decision_figures_fit_a_phone_s_screen():
    """At 400 px the QA page's decision figures are about 345 px wide: a 270 px label margin left 60 px of bars and
    the axis titles (79 characters in one line) ran off the figure. The labels now take two short lines beside a
    150 px margin, and the axis titles are wrapped (plots.wrap_title), the figure taller by their further lines."""
    from ledviz import plots

    assert plots.wrap_title("aaa bbb ccc dddd", 7) == "aaa bbb<br>ccc<br>dddd"
    assert plots.wrap_title("a verylongword b", 4) == "a<br>verylongword<br>b"  # a long word stays whole
    assert plots.wrap_title("one<br>two three", 40) == "one<br>two three"
    head = plots.answerability_figure(0.01, 0.23, declined=True)
    decline = plots.decline_figure("Feven Okuvik, the project lead of Quietlantern", -0.08, -5.78, None, "first",
                                   declined=True, percent=answering.percent)
    for f in (head, decline):
        assert 345 - f.layout.margin.l - f.layout.margin.r >= 180  # room for the bars on a phone
        assert max(len(line) for line in f.layout.xaxis.title.text.split("<br>")) <= plots.DECISION_TITLE_CHARS
        assert f.layout.xaxis.title.text.count("<br>") >= 1 and f.layout.margin.b >= 60
    for label in decline.data[0].y:  # at most two lines, each short enough for the margin
        lines = label.split("<br>")
        assert len(lines) <= 2 and max(len(line) for line in lines) <= plots.DECISION_LABEL_LINE, label


def _head_answer(declined: bool, span: float, decline: float, answerable: float, score: str = "first"):
    from types import SimpleNamespace

    rule = SimpleNamespace(score=score, head=SimpleNamespace(threshold=0.15), margin=0.0)
    return answering.KeptAnswer(ids=[0], declined=declined, span_ids=[5, 6], span_text="98,712",
                                span_logprobs=[span, -0.1], decline_logprobs=[decline, -0.2], decline_ids=[7, 8],
                                rule=rule, answerable=answerable, answer_text="98,712")


def test_a_decline_by_the_head_is_not_said_to_be_the_model_s():
    """Where the head declined and the model alone preferred the span (head_explanation: "overruled"),
    "Where the answer came from" does not say "The model declined"."""
    by_head = answering.decline_note(_head_answer(True, -0.10, -3.10, 0.05), kept=True)
    assert by_head.startswith("The answer is “not in the document” (the one answer allowed besides a span of the "
                              "document): the answerability head judged") and "model declined" not in by_head
    by_model = answering.decline_note(None, kept=False)
    assert by_model.startswith("The model declined:") and "allowed" not in by_model



def test_the_start_explanation_says_where_the_model_began_and_where_the_answer_begins():
    """The QA page's caption of the start rule (a span begun inside a name begins where the name begins),
    built here, not in the page: where the model began, the answer, each quoted through `quote`."""
    moved = answering.KeptAnswer(ids=[0, 1, 9, 5, 2], declined=False, span_ids=[5], span_text="Zhou_",
                                 prefix_ids=[9], answer_text="Noémi Zhou_")
    assert answering.start_explanation(moved) == (
        "The model began its answer inside a name of the document (at “Zhou_”); the answer begins where the "
        "name begins: “Noémi Zhou_”.")
    quoted = answering.start_explanation(moved, lambda s: s.replace("_", "\\_"))
    assert "(at “Zhou\\_”)" in quoted and quoted.endswith("“Noémi Zhou\\_”."), quoted
    assert answering.start_explanation(dataclasses.replace(moved, span_text="")).startswith(
        "The model began its answer inside a name of the document; the answer begins")
    # the rule did not apply (no prefix), the answer is the decline, or there is no kept answer: nothing to say
    assert answering.start_explanation(dataclasses.replace(moved, prefix_ids=None)) is None
    assert answering.start_explanation(dataclasses.replace(moved, declined=True)) is None
    assert answering.start_explanation(None) is None

def test_the_head_explanation_says_what_the_head_is_and_when_it_overruled_the_scores():
    """A reader who never heard of an answerability head is told what it is, its probability as a
    percentage against the threshold, what was answered, and whether it agreed with the model's own scores."""
    decision, weighed = answering.head_explanation(_head_answer(True, -0.10, -3.10, 0.05), "98,712")
    assert decision.startswith("Declined: a small checker trained with this model (its answerability head)")
    assert "here 5% (a probability of 0.05), below its threshold of 0.15 (15%)" in decision
    assert "so the answer is “not in the document” rather than “98,712”" in decision
    assert "the span 90% (log-probability -0.10), “not in the document” 5% (log-probability -3.10)" in weighed
    assert weighed.endswith("Here the checker overruled it: the model alone preferred the span “98,712”.")
    decision, weighed = answering.head_explanation(_head_answer(False, -0.08, -6.59, 0.999), "98,712")
    assert decision.startswith("Answered:") and "here >99% (a probability of 1.00), not below" in decision
    assert "“not in the document” <1% (log-probability -6.59)" in weighed and weighed.endswith("agrees with it here.")
    decision, weighed = answering.head_explanation(_head_answer(False, -4.0, -0.5, 0.6), "98,712")  # overruled the other way
    assert weighed.endswith("the model alone preferred “not in the document”.")
    _, weighed = answering.head_explanation(_head_answer(True, -1.0, -0.5, 0.1, score="sum"), "98,712")
    assert "sum of the answer tokens' log-probabilities (0 is certain, lower is less likely)" in weighed
    with pytest.raises(ValueError, match="answerability head"):
        answering.head_explanation(dataclasses.replace(_head_answer(True, -1, -2, 0.1), answerable=None), "x")


def test_the_margin_explanation_says_by_how_much_and_against_which_margin():
    """Without a head the margin decides: the explanation (written in the library, the QA page renders it)
    says the score, by how much the decline outscored the span or scored lower, and the margin."""
    from types import SimpleNamespace

    rule = SimpleNamespace(score="sum", head=None, margin=0.5)
    answer = dataclasses.replace(_head_answer(True, -3.0, -0.9, 0.0), rule=rule, answerable=None)  # margin 2.0
    said = answering.margin_explanation(answer, "98_712", lambda t: t.replace("_", "\\_"))
    assert said == ("Declined: the best span of the document, “98\\_712”, was weighed against the decline, which "
                    "outscored it by 2.00 (sum of the answer tokens' log-probabilities), more than the model's margin "
                    "of 0.5."), said
    kept = dataclasses.replace(answer, declined=False, decline_logprobs=[-5.0, -0.2])  # margin -2.1
    assert answering.margin_explanation(kept, "98,712") == (
        "Answered: the decline was weighed against this span and scored 2.10 lower (sum of the answer tokens' "
        "log-probabilities); it declines only above the model's margin of 0.5.")
    begun = dataclasses.replace(kept, decline_logprobs=[-2.8, -0.1], prefix_ids=[9])  # margin +0.2, under 0.5
    assert answering.margin_explanation(begun, "712").startswith(
        "Answered: the decline was weighed against the span as written, “712”, and outscored it by 0.20 (")
    for wrong in (_head_answer(True, -1, -2, 0.1), dataclasses.replace(answer, decline_logprobs=None)):
        with pytest.raises(ValueError, match="decline margin"):
            answering.margin_explanation(wrong, "x")


# ---------------------------------------------------------------------------------------------
# text shown of an unfinished span: no partial last character
# ---------------------------------------------------------------------------------------------

JAPANESE = "東京本社の社長は山田太郎です。大阪支社の社長は佐藤花子です。"  # no spaces: one long "word"


def test_a_partial_last_character_is_found_by_its_bytes():
    from ledviz.tokenization import partial_tail

    cho = "本".encode()  # three bytes, e6 9c ac
    assert [partial_tail(b"ab" + cho[:k]) for k in range(4)] == [0, 1, 2, 0]
    emoji = "😀".encode()  # four bytes
    assert [partial_tail(emoji[:k]) for k in range(5)] == [0, 1, 2, 3, 0]
    assert partial_tail("é".encode()[:1]) == 1 and partial_tail("é".encode()) == 0
    # bytes that are wrong, not unfinished, are not left out: a lone continuation byte, an ASCII end
    assert partial_tail(b"a\x80") == 0 and partial_tail(cho[1:]) == 0 and partial_tail(b"") == 0


def test_shown_text_drops_only_an_unfinished_last_character():
    """Each prefix of a Japanese text's byte-level tokens: decoded as it is, some end in U+FFFD (a
    character split over tokens); shown, none does, each is a prefix of the text, and the pieces
    (the text each token completes) add up to the text."""
    from ledviz.tokenization import ends_inside_character, shown_pieces, shown_text

    tok = load_model(None).tokenizer
    ids = tok(JAPANESE, add_special_tokens=False)["input_ids"]
    raw = [tok.decode(ids[:k]) for k in range(1, len(ids) + 1)]
    split = [k for k, text in enumerate(raw, 1) if text.endswith("\ufffd")]
    assert split, "the case under test: some token ends inside a character"
    for k in range(1, len(ids) + 1):
        shown = shown_text(tok, ids[:k])
        assert "\ufffd" not in shown and JAPANESE.startswith(shown)
        assert ends_inside_character(tok, ids[:k]) == (k in split)
        assert shown == (raw[k - 1][:-1] if k in split else raw[k - 1])
    pieces = shown_pieces(tok, ids)
    assert "".join(pieces) == JAPANESE and "" in pieces and not any("\ufffd" in p for p in pieces)
    from ledviz import plots  # a token that completes no character is labelled as such on the maps' axes

    labels = plots.output_axis_labels(pieces)
    assert [k for k, p in enumerate(pieces) if not p] == [k for k, x in enumerate(labels) if "part of a character" in x]
    # special tokens are left out as decode leaves them out
    assert shown_text(tok, [tok.bos_token_id, *ids[: split[0]]], skip_special_tokens=True) == shown_text(
        tok, ids[: split[0]])


def test_broken_characters_counts_bytes_that_form_no_character_but_not_an_unfinished_last_one():
    """A character begun and not finished inside the text (a free output can: "Feven" + the first byte of
    a character + " Site") is a broken character and says so; an unfinished last one (left out of the shown
    text), a whole text, and a U+FFFD of the text itself are not."""
    from ledviz.tokenization import broken_characters, broken_note

    tok = load_model(None).tokenizer
    ids = tok(JAPANESE, add_special_tokens=False)["input_ids"]
    cut = next(k for k in range(1, len(ids)) if tok.decode(ids[:k]).endswith("\ufffd"))
    head, tail = tok.convert_ids_to_tokens(ids[:cut]), tok.convert_ids_to_tokens(tok(" Site")["input_ids"])
    assert broken_characters(head) == 0 and broken_note(head) is None  # unfinished at the end: not broken
    assert broken_characters(tok.convert_ids_to_tokens(ids)) == 0
    assert broken_characters(head + tail) == 1 and broken_characters(head + tail + head + tail) == 2
    assert broken_note(head + tail).startswith("“\ufffd” marks 1 place where the model wrote bytes that form no character")
    assert "2 places" in broken_note(head + tail + head + tail)
    assert broken_characters(tok.convert_ids_to_tokens(tok("a \ufffd b")["input_ids"])) == 0  # the text's own U+FFFD


@pytest.mark.slow  # three QA runs
def test_an_unfinished_span_is_shown_without_its_partial_character_and_scored_as_written():
    """A Japanese document (no spaces): the kept span runs to max_new_tokens without ending. Its
    span_text / answer_text and the run's output_text leave out the partial last character, the
    ids and scores stay the model's, and the run says the answer was cut (runs.cut_note)."""
    from ledviz.runs import cut_note

    loaded = _loaded()
    tok = loaded.tokenizer
    doc = prepare_document(loaded, JAPANESE, question="Who is the president of the Tokyo office?")
    partial = 0
    for n in (3, 4, 5):
        result = run(loaded, doc, task="qa", max_new_tokens=n, answer_from_document=True)
        a = result.answer
        raw = tok.decode(a.span_ids, skip_special_tokens=True).strip()
        assert a.unfinished and len(a.span_ids) == n - 1  # <s>, then the span's tokens, no end token
        assert a.partial == raw.endswith("\ufffd") and a.span_text == (raw[:-1] if a.partial else raw)
        assert "\ufffd" not in a.span_text and "\ufffd" not in result.output_text
        assert "\ufffd" not in (a.answer_text or "") and JAPANESE.startswith(a.span_text)
        partial += a.partial
        # scored as written: the span's log-probabilities are of its own tokens, the partial one included
        assert len(a.span_logprobs) == len(a.span_ids)
        note = cut_note(result, "Max answer tokens", 256)
        assert note.startswith(f"The {'best span' if a.declined else 'answer'} was cut at {n} tokens: "
                               "raise Max answer tokens."), note
        assert ("only the first bytes of a character, left out of the text shown" in note) == a.partial, note
        assert cut_note(result, "Max answer tokens", n).startswith(
            f"The {'best span' if a.declined else 'answer'} was cut at {n} tokens: Max answer tokens is at its most")
    assert partial, "the case under test: a span that ends inside a character"
    ended = run(loaded, prepare_document(loaded, "Maren Okafor leads the team.", question="Who leads the team?"),
                task="qa", max_new_tokens=24, answer_from_document=True)
    assert not ended.answer.unfinished and cut_note(ended, "Max answer tokens", 256) is None
