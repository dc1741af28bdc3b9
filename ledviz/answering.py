"""Answers kept to the document, and the decision to decline: the one function the app's QA page
(pipeline.run), `ledviz.demo.evaluate` and `ledviz.demo.train.score(span=True)` answer with.

A kept answer is a whole-word span of the document or exactly the decline answer
" not in the document" (ledviz.demo.data.NOT_IN_DOCUMENT; pipeline.document_constraint).

Without a decline rule (a model whose generation_config.json has no "decline_margin": any user
model, and the embedded model before issue 15's phase 10) greedy decoding chooses between the two
on the first token, as it always did.

With a decline rule the choice is made on whole answers:
1. the best span is found with the decline forbidden (constrained greedy decoding, or beam search
   with num_beams > 1);
2. both complete answers, the span and the decline, are scored teacher-forced from the
   log-probabilities the model (left free) gives their tokens and their end token: their sum
   ("sum"), that sum over the number of tokens ("mean"), or the log-probability of the first
   token where the two answers differ ("first": greedy decoding's choice, made with a margin);
3. the answer declines iff score(decline) - score(span) > decline_margin.

With a trained answerability head (ledviz.answerability) the choice in step 3 is the head's
instead: it reads features of both weighed answers and of the model's states (the margins, the
span's log-probabilities, the question's encoder states, the decoder's state and cross-attention
at the first answer step, the question's words found in the document) and the answer declines
iff its probability that the question is answerable is below the head's threshold.

The model's settings (generation_config.json, beside generate's own):
  "decline_margin": a number, the margin τ (chosen on validation data, never the test seed);
  "decline_score": "sum" (the default), "mean" or "first";
  "decline_head": the name of an answerability head file in the model's folder
  ("answerability.json", written by python -m ledviz.demo.train_answerability); it needs
  decline_margin and decline_score too (the scores the page shows beside the head's verdict).
Any other "decline_..." key is an error naming it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from . import answerability
from .errors import GenerationSettingsError
from .tokenization import ends_inside_character, shown_text

SCORES = ("sum", "mean", "first")
SCORE_NAMES = {"sum": "sum of the answer tokens' log-probabilities",
               "mean": "mean log-probability per answer token",
               "first": "log-probability of the first token where the answers differ"}
SETTINGS = ("decline_margin", "decline_score", "decline_head")


@dataclass(frozen=True)
class DeclineRule:
    """Decline iff score(decline) - score(best span) > margin; `score` one of SCORES: the sum or
    the mean of the answer's token log-probabilities (its end token included), or the
    log-probability of the first token where the two answers differ."""

    margin: float
    score: str = "sum"
    head: answerability.AnswerabilityHead | None = None  # with a head, the head decides (module docstring)

    def __post_init__(self):
        if isinstance(self.margin, bool) or not isinstance(self.margin, (int, float)) or not math.isfinite(self.margin):
            raise GenerationSettingsError(f"decline_margin={self.margin!r}: must be a finite number (the margin by "
                                          "which the decline must outscore the best span to be chosen)")
        if self.score not in SCORES:
            raise GenerationSettingsError(f"decline_score={self.score!r}: must be one of {', '.join(SCORES)}")


def decline_rule(model) -> DeclineRule | None:
    """The decline rule a model's generation config sets ("decline_margin", "decline_score"), or
    None when it sets no margin (the first-token choice). A "decline_..." key that is not one of
    SETTINGS, or a bad value, is a GenerationSettingsError naming it."""
    config = model.generation_config
    unknown = sorted(k for k in config if k.startswith("decline") and k not in SETTINGS)
    if unknown:
        raise GenerationSettingsError(f"unknown answer setting(s) {', '.join(map(repr, unknown))} in the model's "
                                      f"generation config; the answer settings are: {', '.join(SETTINGS)}")
    if config.get("decline_margin") is None:
        for key in ("decline_score", "decline_head"):
            if config.get(key) is not None:
                raise GenerationSettingsError(f"{key} is set without decline_margin: set decline_margin and "
                                              "decline_score too, or none of them (the first-token choice)")
        return None
    rule = DeclineRule(config["decline_margin"], config.get("decline_score", "sum"))
    if config.get("decline_head") is not None:
        rule = dataclasses.replace(rule, head=answerability.model_head(model, config["decline_head"]))
    return rule


@dataclass(frozen=True)
class KeptAnswer:
    """One kept answer and how it was chosen.

    `ids`: the output as generate writes it (decoder start, <s>, the answer's tokens, </s>), with
    `prefix_ids` put before the span. `declined`: whether the answer is the decline. With a
    decline rule: `span_ids` are the tokens of the best span found with the decline forbidden
    (without <s> and </s>, as the model wrote it), `span_text` its text; `span_logprobs` /
    `decline_logprobs` the log-probabilities (teacher-forced, the model left free) of each token
    of the two answers, their end token included; `rule` the rule applied: declined iff
    margin() > rule.margin, or, with a head (rule.head), iff `answerable`, the head's probability,
    is below rule.head.threshold. Without a rule these are None. `features`: what the head reads
    (ledviz.answerability.features), with a head or when kept_answers is asked for them.

    The start rule (generation.run_prefix): where the span begins inside a run of capitalized
    words of the document ("Zhou" of "Noémi Zhou"), the answer begins where the run begins:
    `prefix_ids` are the tokens of the run's words before the span (None where there are none),
    and `answer_text` is the span's text with them, the answer unless declined. The decline is
    weighed (by the margin or the head) against the span as the model wrote it.

    `span_text` and `answer_text` are text to show: a span that ran to max_new_tokens without its
    end token (`unfinished`) can stop inside a character (byte-level tokens of a text without
    spaces, Japanese), and that partial character is left out of them (`partial`;
    tokenization.shown_text). The ids and the scores are the model's, untouched."""

    ids: list[int]
    declined: bool
    span_ids: list[int] | None = None
    span_text: str | None = None
    span_logprobs: list[float] | None = None
    decline_logprobs: list[float] | None = None
    rule: DeclineRule | None = None
    decline_ids: list[int] | None = None  # the decline's tokens (without <s> and </s>)
    answerable: float | None = None  # the head's probability that the question is answerable (rule.head)
    features: dict[str, list[float]] | None = None  # ledviz.answerability.features (with a head, or asked for)
    prefix_ids: list[int] | None = None  # the name run's words put before the span (generation.run_prefix)
    answer_text: str | None = None  # the span with them: the answer, unless declined
    unfinished: bool = False  # the span has no end token: cut at max_new_tokens (or stopped)
    partial: bool = False  # its last token ends inside a character, left out of span_text and answer_text

    def scores(self, score: str | None = None) -> tuple[float, float] | None:
        """(span, decline) scores by `score` (one of SCORES; default: the rule's), or None when
        the answer was not weighed."""
        if not self.span_logprobs or not self.decline_logprobs:
            return None
        score = score or (self.rule.score if self.rule else "sum")
        if score not in SCORES:
            raise GenerationSettingsError(f"score={score!r}: must be one of {', '.join(SCORES)}")
        if score == "first":  # where the two answers part (" not become" and " not in the document": the second)
            fork = next((i for i, (a, b) in enumerate(zip(self.span_ids, self.decline_ids)) if a != b),
                        min(len(self.span_ids), len(self.decline_ids)))
            return float(self.span_logprobs[fork]), float(self.decline_logprobs[fork])
        return _score(self.span_logprobs, score), _score(self.decline_logprobs, score)

    def margin(self, score: str | None = None) -> float | None:
        """score(decline) - score(span) (by `score`, default the rule's); None when not weighed."""
        s = self.scores(score)
        return None if s is None else s[1] - s[0]


def _score(logprobs: Sequence[float], score: str) -> float:
    total = float(sum(logprobs))
    return total if score == "sum" else total / len(logprobs)


def percent(probability: float) -> str:
    """A probability as a reader reads it: "92%", "<1%" (not "0%" for a small one), ">99%"."""
    if probability < 0.005:
        return "<1%"
    if probability > 0.995:
        return ">99%"
    return f"{probability:.0%}"


def start_explanation(answer: KeptAnswer | None, quote=lambda s: s) -> str | None:
    """Where the start rule moved the answer's start (generation.run_prefix: the model began inside a
    name of the document, the answer begins where the name begins), in one sentence naming where the
    model began and the answer; None where the rule did not apply (no kept answer, no prefix) or the
    answer is the decline. `quote` escapes a text for the page (Markdown), as for head_explanation."""
    if answer is None or not answer.prefix_ids or answer.declined:
        return None
    at = f" (at “{quote(answer.span_text)}”)" if answer.span_text else ""
    return (f"The model began its answer inside a name of the document{at}; the answer begins where the name "
            f"begins: “{quote(answer.answer_text or '')}”.")


def head_explanation(answer: KeptAnswer, span_text: str, quote=lambda s: s) -> tuple[str, str]:
    """Why an answerability head (rule.head) kept or declined `answer`, in words a reader who never
    heard of one follows: what the head is, its probability (as a percentage too) against its
    threshold, what was answered or not, and how the two scores drawn beside it (the model's own
    preference, decline_figure) relate to the decision: where the head overruled them, it says so.
    Two texts: the decision (above the head's figure), the scores (above their figure; "" when the
    answer was not weighed). `span_text`: the weighed span as shown; `quote` escapes a text for the page (markdown)."""
    rule = answer.rule
    if rule is None or rule.head is None or answer.answerable is None:
        raise ValueError("head_explanation needs an answer decided by an answerability head")
    p, cut = answer.answerable, rule.head.threshold
    if answer.declined:
        outcome = (f"below its threshold of {cut:.2f} ({percent(cut)}), so the answer is “not in the document” "
                   f"rather than “{quote(span_text)}”")
    else:
        shown = answer.answer_text if answer.answer_text is not None else span_text
        outcome = f"not below its threshold of {cut:.2f} ({percent(cut)}), so the answer is “{quote(shown)}”"
    decision = (f"{'Declined' if answer.declined else 'Answered'}: a small checker trained with this model (its "
                f"answerability head) reads the question, the document, the model's inner states and the best span "
                f"the model found, “{quote(span_text)}”, and estimates how likely it is that the document answers "
                f"the question: here {percent(p)} (a probability of {p:.2f}), {outcome}. It can be wrong either way.")
    scores = answer.scores()
    if scores is None:
        return decision, ""
    span, decline = scores
    lead = "Below, the model's own preference, which the checker also reads:"
    if rule.score == "first":  # one token's log-probability: a probability a reader knows
        figure = (f"{lead} how likely the model finds each answer at the first token where the two differ: the span "
                  f"{percent(math.exp(span))} (log-probability {span:.2f}), “not in the document” "
                  f"{percent(math.exp(decline))} (log-probability {decline:.2f}).")
    else:
        figure = (f"{lead} its {SCORE_NAMES[rule.score]} (0 is certain, lower is less likely) for the span, "
                  f"{span:.2f}, and for “not in the document”, {decline:.2f}.")
    prefers_span = span >= decline
    if prefers_span != answer.declined:
        return decision, f"{figure} The checker agrees with it here."
    preferred = f"the span “{quote(span_text)}”" if prefers_span else "“not in the document”"
    return decision, f"{figure} Here the checker overruled it: the model alone preferred {preferred}."


def margin_explanation(answer: KeptAnswer, span_text: str, quote=lambda s: s) -> str:
    """Why the margin rule (a rule without a head) kept or declined `answer`: the weighed span, by how
    much the decline outscored it (or scored lower), in which score, against the model's margin.
    `span_text` and `quote` as for head_explanation; "the span as written" where the answer was begun
    at a name's first word (prefix_ids)."""
    rule, margin = answer.rule, answer.margin()
    if rule is None or rule.head is not None or margin is None:
        raise ValueError("margin_explanation needs an answer weighed by a decline margin, without a head")
    unit = SCORE_NAMES[rule.score]
    if answer.declined:
        return (f"Declined: the best span of the document, “{quote(span_text)}”, was weighed against the decline, "
                f"which outscored it by {margin:.2f} ({unit}), more than the model's margin of {rule.margin:g}.")
    weighed = f"the span as written, “{quote(span_text)}”," if answer.prefix_ids else "this span"
    by = f"outscored it by {margin:.2f}" if margin > 0 else f"scored {-margin:.2f} lower"
    return (f"Answered: the decline was weighed against {weighed} and {by} ({unit}); it declines only above the "
            f"model's margin of {rule.margin:g}.")


def decline_note(answer: KeptAnswer | None, kept: bool) -> str:
    """What "Where the answer came from" says of a declined answer: who declined. Where an
    answerability head decided it says the head did (the model alone may have preferred the span:
    head_explanation), not "the model declined"; `kept`: the answer was kept to the document."""
    allowed = " (the one answer allowed besides a span of the document)" if kept else ""
    if answer is not None and answer.answerable is not None and answer.declined:
        who = (f"The answer is “not in the document”{allowed}: the answerability head judged that the document "
               "does not answer the question, as said above.")
    else:
        who = f"The model declined: “not in the document” is its answer when it finds none{allowed}."
    return f"{who} It can be wrong either way; below is where the answer tokens looked."


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def decline_ids(tok) -> list[int]:
    """The tokens of the decline answer as the model writes it (" not in the document")."""
    from .demo.data import NOT_IN_DOCUMENT

    return _ids(tok, " " + NOT_IN_DOCUMENT)


def _strip(seq: Sequence[int], pad: int | None, ends: Sequence[int]) -> list[int]:
    """A generated row without the padding after its end."""
    row = [int(t) for t in seq]
    for i, t in enumerate(row[1:], 1):  # the decoder start may be the end token
        if t in ends:
            return row[: i + 1]
    while row and pad is not None and row[-1] == pad and pad not in ends:
        row.pop()
    return row


@torch.no_grad()
def answer_logprobs(model, encoder_outputs, attention_mask: torch.Tensor | None, answers: Sequence[Sequence[int]],
                    *, first: int = 2) -> list[list[float]]:
    """Teacher-forced log-probabilities of each row's answer tokens: `answers[b]` the whole output
    of input b (decoder start, <s>, tokens, and </s> if it ended), from position `first` on (after
    the decoder start and <s>, which every answer shares)."""
    ids = _padded(model, answers, model.device)
    out = model(attention_mask=attention_mask, encoder_outputs=encoder_outputs, decoder_input_ids=ids[:, :-1],
                use_cache=False)
    return _token_logprobs(out.logits, ids, answers, first)


def _padded(model, rows: Sequence[Sequence[int]], device) -> torch.Tensor:
    """The rows as one (R, longest) tensor, padded after each with the model's pad token (0 if none)."""
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    width = max(len(a) for a in rows)
    ids = torch.full((len(rows), width), int(pad), dtype=torch.long, device=device)
    for b, a in enumerate(rows):
        ids[b, : len(a)] = torch.as_tensor(list(a), dtype=torch.long)
    return ids


def _token_logprobs(logits: torch.Tensor, ids: torch.Tensor, rows: Sequence[Sequence[int]],
                    first: int) -> list[list[float]]:
    """Each row's teacher-forced log-probabilities of its tokens from position `first` on, from the
    logits (R, T - 1, V) of the decoder fed `ids[:, :-1]` (_padded's)."""
    logp = logits.float().log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (R, T - 1)
    return [logp[b, first - 1: len(a) - 1].tolist() for b, a in enumerate(rows)]


def _runner(model, encoder_outputs, attention_mask):
    """The decoder over a batch's encoder output whose cross-attention keys/values are projected once
    for every pass made with it (generation._DecoderRunner)."""
    from .generation import _as_hidden, _DecoderRunner

    hidden, _ = _as_hidden(encoder_outputs)
    return _DecoderRunner(model, hidden, attention_mask, use_cache=False)


@torch.no_grad()
def paired_logprobs(model, runner, spans: Sequence[Sequence[int]], declines: Sequence[Sequence[int]], *,
                    first: int = 2) -> tuple[list[list[float]], list[list[float]]]:
    """answer_logprobs of two answers per input (`spans[b]` and `declines[b]`, whole outputs) in one
    teacher-forced pass: rows 2b and 2b + 1 read input b's cross-attention keys/values, projected
    once (`runner`: _runner's, over the batch's encoder output)."""
    rows = [r for pair in zip(spans, declines) for r in pair]
    ids = _padded(model, rows, runner.encoder_hidden.device)
    h = runner.forward(ids[:, :-1], None, 2).hidden
    out = _token_logprobs(model.lm_head(h) + model.final_logits_bias.to(h.dtype), ids, rows, first)
    return out[0::2], out[1::2]


def _question_spans(input_ids: torch.Tensor, ends: Sequence[int]) -> list[tuple[int, int]]:
    """Each row's question tokens, [1, its first end token): the input is <s> question </s></s> document </s>."""
    spans = []
    for row in input_ids.tolist():
        stop = next((i for i, t in enumerate(row[1:], 1) if t in ends), len(row))
        spans.append((1, stop))
    return spans


def _features(model, tok, runner, input_ids, attention_mask, sources, rows, declined_rows, weighed, lead, ends):
    """ledviz.answerability.features of each weighed row (None for a row that was not weighed)."""
    if input_ids is None:
        raise GenerationSettingsError("the answerability head reads the question's tokens: give kept_answers "
                                      "input_ids (with or without encoder_outputs)")
    hidden = runner.encoder_hidden
    decoder_first, cross = answerability.first_step(runner, declined_rows, lead)
    mask = (attention_mask if attention_mask is not None else torch.ones_like(input_ids)).bool()
    out = []
    for b, ((q0, q1), w) in enumerate(zip(_question_spans(input_ids, ends), weighed)):
        if w is None:
            out.append(None)
            continue
        qmask = torch.zeros(input_ids.shape[1], dtype=torch.bool, device=hidden.device)
        qmask[q0:q1] = True
        # the span where it first occurs in the document (the document follows the question and </s></s>)
        row = input_ids[b].tolist()
        at = answerability.find(row[q1:], w.span_ids)
        at = q1 + at if at >= 0 else q1
        span_states = hidden[b, at: at + max(1, len(w.span_ids))].float().mean(0)
        out.append(answerability.features(
            span_ids=w.span_ids, span_logprobs=w.span_logprobs, decline_ids=w.decline_ids,
            decline_logprobs=w.decline_logprobs,
            question_text=tok.decode(input_ids[b, q0:q1].tolist(), skip_special_tokens=True),
            document_text=tok.decode(list(sources[b]), skip_special_tokens=True),
            encoder_question=hidden[b, q0:q1].float().mean(0), encoder_span=span_states, decoder_first=decoder_first[b],
            cross=[c[b] for c in cross], question_mask=qmask, input_mask=mask[b]))
    return out


@torch.no_grad()
def kept_answers(model, tok, sources: Sequence[Sequence[int]], *, input_ids: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, global_attention_mask: torch.Tensor | None = None,
                 encoder_outputs=None, rule: DeclineRule | None | str = "model", features: bool = False,
                 **generation: Any) -> list[KeptAnswer]:
    """Answer each input with a whole-word span of its document (`sources[b]`: the document token
    ids of input b) or the decline answer, choosing between them by `rule` ("model": the model's
    own decline_rule; None: the first-token choice of greedy decoding; or a DeclineRule).

    The encoder runs once (or give `encoder_outputs` with the same attention_mask). `generation`
    goes to model.generate (max_new_tokens, num_beams, streamer, stop_event, eos_token_id, ...);
    with a rule it decodes the span, the decline being weighed against it afterwards. A span that
    did not end (max_new_tokens reached, or stopped) is weighed as far as it was written; a row
    with no span token at all is kept as written, undecided.

    The span and the decline are scored in one teacher-forced pass (paired_logprobs). With a head
    in the rule (rule.head), or `features=True` (with a rule), each weighed answer also gets the
    head's features (ledviz.answerability.features; they need `input_ids`), and with a head its
    probability `answerable`, which then makes the choice."""
    from .pipeline import AttentionFocus, DocumentWords, document_constraint, document_words

    if rule == "model":
        rule = decline_rule(model)
    elif rule is not None and not isinstance(rule, DeclineRule):
        raise GenerationSettingsError(f"rule must be 'model', None or a DeclineRule, not {rule!r}")
    if "prefix_allowed_tokens_fn" in generation:
        raise GenerationSettingsError("kept_answers sets prefix_allowed_tokens_fn itself (the document constraint)")
    gen = model.generation_config
    eos = generation.get("eos_token_id", gen.get("eos_token_id", model.config.eos_token_id))
    if eos is None:
        raise GenerationSettingsError("a kept answer needs an end-of-sequence token: this model has no eos_token_id")
    ends = [int(eos)] if isinstance(eos, int) else [int(t) for t in eos]
    bos = model.config.bos_token_id
    start = generation.get("decoder_start_token_id", gen.get("decoder_start_token_id",
                                                             model.config.decoder_start_token_id))
    if encoder_outputs is None:
        encoder_outputs = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask,
                                              global_attention_mask=global_attention_mask, return_dict=True)
    documents = [document_words(tok, list(s)) for s in sources]
    # a first token shared by two words continues into the one the model looks at (needs the inputs)
    focus = None if input_ids is None else AttentionFocus(model, tok, encoder_outputs, attention_mask, input_ids,
                                                          sources, documents)
    constraint = document_constraint(tok, [list(s) for s in sources], "answer" if rule is None else "span", eos, bos,
                                     documents=documents, focus=focus)
    seqs = model.generate(attention_mask=attention_mask, encoder_outputs=encoder_outputs,
                          prefix_allowed_tokens_fn=constraint, **generation)
    rows = [_strip(s, model.config.pad_token_id, ends) for s in seqs.tolist()]
    lead = 1 + (bos is not None)  # decoder start, <s>
    decline = decline_ids(tok)
    limit = getattr(model.config, "max_decoder_position_embeddings", None)

    def written(r: list[int]) -> tuple[bool, list[int]]:
        """Whether the row ended (its end token written), and its span: the tokens after the lead, without the end."""
        ended = len(r) > lead and r[-1] in ends
        return ended, r[lead:-1] if ended else r[lead:]

    def begun(r: list[int], document: DocumentWords) -> dict:
        """The row with its span begun where its name run begins: ids, prefix_ids, answer_text."""
        ended, span = written(r)
        prefix = document.run_prefix(span) if ended and span else []
        if limit is not None and len(r) + len(prefix) > limit:  # no room for the name's first words
            prefix = []
        ids = r[:lead] + prefix + r[lead:]
        return dict(ids=ids, prefix_ids=prefix or None, unfinished=not ended and bool(span),
                    partial=not ended and ends_inside_character(tok, span),
                    answer_text=shown_text(tok, prefix + span, skip_special_tokens=True).strip() if span else None)

    if rule is None:
        return [KeptAnswer(r, True) if r[lead: lead + len(decline) + 1] == decline + ends[:1] else
                KeptAnswer(declined=False, **begun(r, document)) for r, document in zip(rows, documents)]

    declined_rows = [[int(start), *([bos] if bos is not None else []), *decline, ends[0]] for _ in rows]
    runner = _runner(model, encoder_outputs, attention_mask)
    span_logprobs, decline_logprobs = paired_logprobs(model, runner, rows, declined_rows, first=lead)
    weighed: list[KeptAnswer | None] = []
    out = []
    for r, s_lp, d_lp, document in zip(rows, span_logprobs, decline_logprobs, documents):
        span = written(r)[1]
        text = shown_text(tok, span, skip_special_tokens=True).strip()
        if not span:  # nothing written (stopped at once): undecided, kept as written
            out.append(KeptAnswer(r, False, span, text))
            weighed.append(None)
            continue
        out.append(KeptAnswer(declined=False, span_ids=span, span_text=text, span_logprobs=s_lp,
                              decline_logprobs=d_lp, rule=rule, decline_ids=decline, **begun(r, document)))
        weighed.append(out[-1])
    values = (_features(model, tok, runner, input_ids, attention_mask, sources, rows, declined_rows, weighed, lead,
                        ends) if rule.head is not None or features else [None] * len(rows))
    for b, (d, w, v) in enumerate(zip(declined_rows, weighed, values)):
        if w is None:
            continue
        p = rule.head.probability(v) if rule.head is not None else None
        declined = p < rule.head.threshold if p is not None else w.margin() > rule.margin
        out[b] = dataclasses.replace(w, answerable=p, features=v, **(dict(ids=d, declined=True) if declined else {}))
    return out
