"""Score a trained demo model on fresh documents: ``python -m ledviz.demo.evaluate --model DIR``.

What a new user meets, measured on documents of about 1K, 2K and 4K tokens (in turn) from a
seed that training never read: TEST_SEED by default, VALID_SEED with ``--seed valid`` (the one
to choose checkpoints by; never choose by the test seed). Every figure comes with its n and a
95% Wilson interval. Greedy decoding throughout.

* QA per wording family (suggested, lower, upper, synonyms, keyword, imperative, declarative,
  typos, held-out wordings; see ledviz.demo.data.Variety), free and with each answer kept to a
  span of its document or the decline answer (the app's default, pipeline.document_constraint);
  overall over all these families. Each question is first read as the app reads it
  (pipeline.read_question: shouted questions re-cased, letter slips mended); a
  family in which that changed a question also gets a "model alone" line, its questions as asked.
  ``--questions as-asked`` gives every question to the model as asked.
* Unanswerable questions: how often the model declines ("not in the document"), and how often
  it wrongly declines an answerable one.
* The decline decision (ledviz.answering, the same function the app answers with): by the
  model's own rule (generation_config.json's "decline_margin", and its answerability head when
  it names one in "decline_head"; without a margin, greedy decoding's first token), or the
  margin rule given with ``--decline-margin`` / ``--decline-score`` (no head). ``--tune``
  (validation only) prints, for every margin, what the rule would score, and with a head, for
  every threshold, what the head would: the tables to choose by.
* Unseen value shapes: names (held-out names from many languages) and 8-digit amounts (a band
  training never drew), copied exactly.
* QA without global attention on the question (the teaching contrast).
* Summaries (varied reports): key-fact recall, all facts right, repeated-word runs, free and with
  each value kept to a span of the document (facts_from_document).
* Load time from a fresh process, and a 4,096-token document summarized end to end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import time
from typing import Sequence

import torch

from . import data
from .train import Codec, _device, collate, encode_example, greedy_decode, kept_answers, pack_batches

FAMILIES = data.QUESTION_FAMILIES + ("held-out",)
HELD_OUT_BASES = ("synonyms", "keyword", "imperative", "declarative")
SEEDS = {"test": data.TEST_SEED, "valid": data.VALID_SEED}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def rate(hits: Sequence[bool]) -> dict:
    k, n = sum(bool(h) for h in hits), len(hits)
    lo, hi = wilson(k, n)
    return dict(k=k, n=n, rate=k / n if n else math.nan, lo=lo, hi=hi)


def fmt(r: dict) -> str:
    if not r["n"]:
        return "n=0"
    return f"{100 * r['rate']:5.1f}% ({r['k']}/{r['n']}, 95% CI {100 * r['lo']:.1f}-{100 * r['hi']:.1f})"


def repeated_word_run(text: str) -> bool:
    """True if a word follows itself ("Man Man"), case and punctuation aside."""
    words = [w for w in (data.normalize_answer(x) for x in text.split()) if w]
    return any(a == b for a, b in zip(words, words[1:]))


def all_facts_right(summary: str, ex: data.Example) -> bool:
    """Every key fact stated with its own label ("Lead: Maren Okafor.")."""
    said = {}
    for part in re.split(r"\.\s+(?=[A-Z][A-Za-z ]*:)", summary.strip().rstrip(".")):
        label, _, value = part.partition(":")
        said[label.strip()] = value.strip()
    schema = data.SCHEMAS[ex.kind]
    return all(data.exact_match(said.get(schema.slot(k).label, ""), v) for k, v in ex.facts.items())


# ------------------------------------------------------------------------------------------------
# test sets
# ------------------------------------------------------------------------------------------------
def _length(lengths: Sequence[int], i: int) -> int:
    return max(120, lengths[i % len(lengths)] - 30)


def _slot_of_type(rng, kind: str, types: Sequence[str]) -> str:
    return rng.choice([s.name for s in data.SCHEMAS[kind].slots if s.value_type in types])


def question_sets(seed: int, n: int, lengths: Sequence[int], start: int = 0) -> dict[str, list[data.Example]]:
    """Named lists of QA examples (fresh documents from `seed`): documents start .. start+n-1 of
    each set, so that a later run with a higher `start` reads documents no earlier run read."""
    sets: dict[str, list[data.Example]] = {}
    idx = range(start, start + n)
    for fam in FAMILIES:
        exs = []
        for i in idx:
            rng = data._example_rng(seed, f"eval/{fam}/{i}")
            if fam == "held-out":
                variety = data.Variety(family=HELD_OUT_BASES[i % len(HELD_OUT_BASES)], held_out=True, unanswerable=0)
            else:
                variety = data.Variety(family=fam, unanswerable=0)
            exs.append(data.make_example(rng, "qa", _length(lengths, i), variety=variety))
        sets[fam] = exs
    sets["unanswerable"] = [
        data.make_example(data._example_rng(seed, f"eval/unanswerable/{i}"), "qa", _length(lengths, i),
                          variety=data.Variety(unanswerable=1.0)) for i in idx]
    sets["unseen values"] = [unseen_value_example(seed, i, lengths) for i in idx]
    sets["plain reports"] = [  # the plain data's reports and suggested questions (the earlier model card's test)
        data.make_example(data._example_rng(seed, f"eval/plain/{i}"), "qa", _length(lengths, i)) for i in idx]
    return sets


def unseen_value_example(seed: int, i: int, lengths: Sequence[int]) -> data.Example:
    """The i-th question of the "unseen values" set of `seed`: a name (or, for odd i, a place, an
    organisation) or an amount of a held-out shape, asked in the suggested wording."""
    rng = data._example_rng(seed, f"eval/unseen/{i}")
    kind = rng.choice(data.REPORT_KINDS)
    slot = _slot_of_type(rng, kind, ("person", "amount") if i % 2 == 0 else ("person", "place", "org", "amount"))
    return data.make_example(rng, "qa", _length(lengths, i), kind=kind, slot=slot,
                             variety=data.Variety(family="suggested", unseen_values=True, unanswerable=0))


def summary_set(seed: int, n: int, lengths: Sequence[int], start: int = 0) -> list[data.Example]:
    """Summary examples: documents start .. start+n-1 of `seed` (see question_sets)."""
    return [data.make_example(data._example_rng(seed, f"eval/summary/{i}"), "summarize", _length(lengths, i),
                              variety=data.Variety()) for i in range(start, start + n)]


def read_questions(tok, examples: Sequence[data.Example]) -> tuple[list[data.Example], int]:
    """`examples` with each question as the app reads it (pipeline.read_question), and how many
    of them read differently from how they were asked."""
    from ledviz.pipeline import read_question

    out, changed = [], 0
    for ex in examples:
        read = read_question(tok, ex.question, ex.document) if ex.question is not None else None
        if read is not None and read.changed:
            out.append(dataclasses.replace(ex, question=read.text))
            changed += 1
        else:
            out.append(ex)
    return out, changed


# ------------------------------------------------------------------------------------------------
# decoding
# ------------------------------------------------------------------------------------------------
def predict(model, codec: Codec, examples: Sequence[data.Example], device, *, constraint: str | None = None,
            use_global: bool = True, rule="model", batch_tokens: int = 32768, batch_size: int = 32) -> list[str]:
    """Greedy outputs for `examples` (in order). constraint: None (free), "answer" (a whole-word
    span or the decline, chosen by `rule` as in ledviz.answering.kept_answers: the app's QA page)
    or "facts" (pipeline.document_constraint, as the app applies it, each value chosen whole)."""
    if constraint not in (None, "answer", "facts"):  # a "span" would get the facts' value chooser as its focus
        raise ValueError(f"predict keeps outputs to None (free), 'answer' or 'facts', not {constraint!r}")
    if constraint == "answer":
        return [codec.decode(a.ids) for a in answers(model, codec, examples, device, use_global=use_global,
                                                     rule=rule, batch_tokens=batch_tokens, batch_size=batch_size)]
    from ledviz.pipeline import document_constraint, document_words, facts_begun_at_names, value_chooser

    capacity = model.config.max_encoder_position_embeddings
    encoded = [encode_example(codec, ex, capacity) for ex in examples]
    index = {id(e): i for i, e in enumerate(encoded)}
    out: list[str] = [""] * len(encoded)
    for batch in pack_batches(encoded, batch_tokens, batch_size):
        tensors = collate(batch, device, use_global=use_global)
        kw, documents = {}, None
        if constraint:
            sources = [e.input_ids[1:-1] for e in batch]
            documents = [document_words(codec.tok, s) for s in sources]
            # the encoder once, for generation and for where the decoder looks (the focus of each value)
            kw["encoder_outputs"] = model.get_encoder()(
                input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"],
                global_attention_mask=tensors["global_attention_mask"], return_dict=True)
            chooser = value_chooser(model, codec.tok, kw["encoder_outputs"], tensors["attention_mask"],
                                    tensors["input_ids"], sources, documents, model.config.eos_token_id)
            kw["prefix_allowed_tokens_fn"] = document_constraint(
                codec.tok, sources, constraint, model.config.eos_token_id, model.config.bos_token_id, documents,
                focus=chooser)
        seqs = greedy_decode(model, tensors, **kw)
        for b, (e, seq) in enumerate(zip(batch, seqs)):
            if constraint == "facts":  # as the app's run: each value begun where its name begins
                seq = facts_begun_at_names(codec.tok, list(seq), documents[b],
                                           1 + (model.config.bos_token_id is not None),
                                           model.config.max_decoder_position_embeddings)
            out[index[id(e)]] = codec.decode(seq)
    return out


def answers(model, codec: Codec, examples: Sequence[data.Example], device, *, use_global: bool = True,
            rule="model", batch_tokens: int = 32768, batch_size: int = 32) -> list:
    """The kept answer (ledviz.answering.KeptAnswer: the answer, and the best span weighed against
    the decline with their scores) of each question in `examples`, in order."""
    capacity = model.config.max_encoder_position_embeddings
    encoded = [encode_example(codec, ex, capacity) for ex in examples]
    by_example = {id(ex): a for ex, a in kept_answers(model, codec, encoded, device, batch_tokens=batch_tokens,
                                                      batch_size=batch_size, use_global=use_global, rule=rule)}
    return [by_example[id(ex)] for ex in examples]


def decision_table(weighed: dict[str, list], sets: dict[str, list[data.Example]], declines) -> dict:
    """What a decline decision (`declines(kept_answer)` -> bool) would score on these questions, from
    their weighed answers (`weighed[name]`, the KeptAnswers of sets[name]): kept QA over the
    answerable wording families, answerable questions wrongly declined, unanswerable questions
    declined, and unseen values answered."""
    right, wrong_declines, declined_un, unseen = [], [], [], []
    for name in (*FAMILIES, "unanswerable", "unseen values"):
        for ex, a in zip(sets[name], weighed[name]):
            declined = declines(a)
            # scored as the model wrote it: answer_text leaves out a partial last character (a.partial),
            # whose U+FFFD never matched an answer
            answered = not declined and not a.partial and data.exact_match(a.answer_text or "", ex.target)
            if name == "unanswerable":
                declined_un.append(declined)
            elif name == "unseen values":
                unseen.append(answered)
            else:
                wrong_declines.append(declined)
                right.append(answered)
    return dict(qa=rate(right), wrongly_declined=rate(wrong_declines), declined=rate(declined_un),
                unseen=rate(unseen))


def margin_table(weighed: dict[str, list], sets: dict[str, list[data.Example]], score: str,
                 margins: Sequence[float]) -> list[dict]:
    """decision_table for each candidate margin of the decline rule (decline iff score(decline) -
    score(span) > margin)."""
    def rule(tau):
        return lambda a: a.margin(score) is not None and a.margin(score) > tau

    return [dict(margin=tau, score=score, **decision_table(weighed, sets, rule(tau))) for tau in margins]


def head_table(weighed: dict[str, list], sets: dict[str, list[data.Example]],
               thresholds: Sequence[float]) -> list[dict]:
    """decision_table for each threshold of the answerability head: declined iff the head's
    probability that the question is answerable (KeptAnswer.answerable) is below it."""
    def rule(t):
        return lambda a: a.answerable is not None and a.answerable < t

    return [dict(threshold=t, **decision_table(weighed, sets, rule(t))) for t in thresholds]


def model_alone(model, codec: Codec, examples: Sequence[data.Example], device, *, rule="model", **kw) -> dict:
    """Kept (the decline chosen by `rule`, as in `answers`) and free hits (answered right, or declined when
    unanswerable) of a question set given to the model as asked."""
    def hits(preds):
        return [bool(data.exact_match(p, e.target)) for e, p in zip(examples, preds)]

    return dict(kept=hits(predict(model, codec, examples, device, constraint="answer", rule=rule, **kw)),
                free=hits(predict(model, codec, examples, device, **kw)))


def timing(model_dir: str, device, tokens: int = 4096, new_tokens: int = 64) -> dict:
    """Seconds to load the checkpoint in a fresh Python process (imports included, and the load
    alone), and to summarize a `tokens`-token document end to end (tokenize, encoder, exactly
    `new_tokens` greedy tokens, decode), best of two runs."""
    from ledviz import LEDForConditionalGeneration, LEDTokenizerFast

    code = ("import time; t0 = time.perf_counter(); import ledviz; t1 = time.perf_counter(); "
            f"ledviz.LEDForConditionalGeneration.from_pretrained({model_dir!r}); "
            f"ledviz.LEDTokenizerFast.from_pretrained({model_dir!r}); t2 = time.perf_counter(); "
            "print(t2 - t0, t2 - t1)")
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    process_s = time.perf_counter() - t0
    with_imports, load_only = (float(x) for x in res.stdout.split())
    model = LEDForConditionalGeneration.from_pretrained(model_dir).to(device).eval()
    tok = LEDTokenizerFast.from_pretrained(model_dir)
    rng = data._example_rng(data.TEST_SEED, f"timing/{tokens}")
    text = data.make_example(rng, "summarize", tokens + 400).document  # cut to `tokens` below
    best = math.inf
    for _ in range(2):
        t0 = time.perf_counter()
        enc = tok(text, return_tensors="pt", truncation=True,
                  max_length=min(tokens, model.config.max_encoder_position_embeddings))
        gm = torch.zeros_like(enc["input_ids"])
        gm[:, 0] = 1
        with torch.inference_mode():
            out = model.generate(enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                                 global_attention_mask=gm.to(device), num_beams=1, do_sample=False,
                                 min_new_tokens=new_tokens, max_new_tokens=new_tokens)
        tok.decode(getattr(out, "sequences", out)[0], skip_special_tokens=True)
        best = min(best, time.perf_counter() - t0)
    return dict(load_s=load_only, load_with_imports_s=with_imports, fresh_process_s=process_s, summarize_s=best,
                tokens=int(enc["input_ids"].shape[1]), new_tokens=new_tokens)


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ledviz.demo.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="checkpoint folder written by ledviz.demo.train")
    p.add_argument("--seed", choices=tuple(SEEDS), default="test",
                   help="test (default): TEST_SEED, for reporting; valid: VALID_SEED, for choosing checkpoints")
    p.add_argument("--n", type=int, default=60, help="questions per wording family (and summaries)")
    p.add_argument("--start", type=int, default=0,
                   help="first document index of every set (default 0): a run with --start K reads documents "
                        "K .. K+n-1, none of which a run with a lower range read")
    p.add_argument("--lengths", default="1000,2000,4000", help="document lengths in tokens, used in turn")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--batch-tokens", type=int, default=32768)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--decline-margin", default=None, metavar="MARGIN",
                   help="decline a kept answer iff score(decline) - score(best span) > MARGIN (ledviz.answering), "
                        "instead of the model's own rule and without its answerability head; 'none': greedy "
                        "decoding's first-token choice")
    p.add_argument("--decline-score", choices=("sum", "mean", "first"), default="sum",
                   help="with --decline-margin: score an answer by the sum (default) or the mean of its token "
                        "log-probabilities, or by the first token where the two answers differ")
    p.add_argument("--tune", action="store_true",
                   help="with --seed valid only: print what the decline rule scores at each margin, to choose it by")
    p.add_argument("--questions", choices=("read", "as-asked"), default="read",
                   help="read (default): each question as the app reads it first (pipeline.read_question), with a "
                        "'model alone' line for the families that changes; as-asked: every question as asked")
    p.add_argument("--no-timing", action="store_true", help="skip the load and end-to-end timing")
    p.add_argument("--json", default=None, help="also write the scores to this file")
    return p.parse_args(argv)


def _rule(args, model):
    """The decline rule to evaluate: --decline-margin's, else the model's own (ledviz.answering);
    with --tune and no rule, margin 0 (the rule's answers are weighed whatever the margin)."""
    from ledviz import answering

    if args.decline_margin is None:
        rule = answering.decline_rule(model)
    elif args.decline_margin.strip().lower() == "none":
        rule = None
    else:
        try:
            margin = float(args.decline_margin)
        except ValueError:
            raise SystemExit(f"--decline-margin must be a number or 'none', got {args.decline_margin!r}") from None
        rule = answering.DeclineRule(margin, args.decline_score)
    if rule is None and args.tune:
        rule = answering.DeclineRule(0.0, args.decline_score)
    return rule


def tune(weighed: dict[str, list], sets: dict[str, list[data.Example]], results: dict) -> None:
    """Print the decline rule's scores at a range of margins, for both scores (validation only)."""
    head = next((a.rule.head for answers in weighed.values() for a in answers if a.rule is not None), None)
    if head is not None:
        print(f"\nanswerability head by threshold (validation; {head.path}, shipped threshold {head.threshold:g}): "
              "decline iff P(answerable) < threshold")
        print(f"{'threshold':>9}  {'kept QA, answerable families':<36} {'wrongly declined':<36} "
              f"{'unanswerable declined':<36} {'unseen values':<36}")
        results["tune head"] = []
        grid = sorted({*(x / 40 for x in range(0, 41)), head.threshold})
        for row in head_table(weighed, sets, grid):
            results["tune head"].append(row)
            print(f"{row['threshold']:>9.4f}  {fmt(row['qa']):<36} {fmt(row['wrongly_declined']):<36} "
                  f"{fmt(row['declined']):<36} {fmt(row['unseen']):<36}"
                  + ("  (shipped)" if row["threshold"] == head.threshold else ""))
    print("\ndecline rule by margin (validation): decline iff score(decline) - score(best span) > margin")
    print(f"{'score':<5} {'margin':>7}  {'kept QA, answerable families':<36} {'wrongly declined':<36} "
          f"{'unanswerable declined':<36} {'unseen values':<36}")
    results["tune"] = []
    for score, grid in (("sum", [x / 2 for x in range(-8, 25)]), ("mean", [x / 8 for x in range(-8, 33)]),
                        ("first", [x / 4 for x in range(-8, 25)])):
        for row in margin_table(weighed, sets, score, grid):
            results["tune"].append(row)
            print(f"{score:<5} {row['margin']:>7.3f}  {fmt(row['qa']):<36} {fmt(row['wrongly_declined']):<36} "
                  f"{fmt(row['declined']):<36} {fmt(row['unseen']):<36}")


def main(argv=None) -> dict:
    args = parse_args(argv)
    from ledviz import LEDForConditionalGeneration

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.n < 1:
        raise SystemExit(f"--n must be at least 1, got {args.n}")
    if args.start < 0:
        raise SystemExit(f"--start must be 0 or more, got {args.start}")
    if args.tune and args.seed != "valid":
        raise SystemExit("--tune chooses the decline margin: use it with --seed valid, never on the test seed")
    device = _device(args.device)
    model = LEDForConditionalGeneration.from_pretrained(args.model).to(device).eval()
    rule = _rule(args, model)
    codec = Codec(data.load_tokenizer(args.model))
    lengths = [int(x) for x in args.lengths.split(",")]
    seed = SEEDS[args.seed]
    kw = dict(batch_tokens=args.batch_tokens, batch_size=args.batch_size)
    t_start = time.time()
    print(f"model {args.model}: windows {model.config.attention_windows()}; {args.seed} documents "
          f"{args.start}..{args.start + args.n - 1} (seed {seed}) of about {', '.join(map(str, lengths))} tokens in turn; greedy decoding; "
          f"95% Wilson intervals", flush=True)
    print("kept answers: " + ("greedy decoding's first token chooses the span or the decline" if rule is None else
                              f"decline iff {rule.score}(decline) - {rule.score}(best span) > {rule.margin:g}"
                              if rule.head is None else
                              f"decline iff the answerability head's P(answerable) < {rule.head.threshold:g} "
                              f"({rule.head.path})"), flush=True)

    results: dict = {"seed": args.seed, "n": args.n, "start": args.start, "lengths": lengths,
                     "decline rule": None if rule is None else dict(
                         margin=rule.margin, score=rule.score,
                         head=None if rule.head is None else dict(path=rule.head.path, threshold=rule.head.threshold))}
    sets = question_sets(seed, args.n, lengths, args.start)
    answerable_free, answerable_kept, declined = [], [], []
    alone_lines: list[tuple[str, dict]] = []  # families whose questions read differently: the model on them as asked
    asked_kept, asked_free = [], []  # hits over all families, each question as asked
    weighed: dict[str, list] = {}  # each set's KeptAnswers (the best span, the decline, their scores)
    print(f"\n{'question family':<16} {'QA, kept to the document':<44} {'QA, free':<44}")
    for name, asked in sets.items():
        exs, changed = read_questions(codec.tok, asked) if args.questions == "read" else (asked, 0)
        sets[name] = exs
        free = predict(model, codec, exs, device, **kw)
        weighed[name] = answers(model, codec, exs, device, rule=rule, **kw)
        kept = [codec.decode(a.ids) for a in weighed[name]]
        results.setdefault("answers", {})[name] = [
            dict(answer=p, target=e.target, span=a.span_text, span_ids=a.span_ids, span_logprobs=a.span_logprobs,
                 decline_logprobs=a.decline_logprobs, margins={x: a.margin(x) for x in ("sum", "mean", "first")},
                 answerable=a.answerable) for e, p, a in zip(exs, kept, weighed[name])]
        alone = model_alone(model, codec, asked, device, rule=rule, **kw) if changed else None
        if alone:
            row = dict(kept=rate(alone["kept"]), free=rate(alone["free"]), read_differently=changed)
            results[("unanswerable declined" if name == "unanswerable" else f"qa/{name}") + ", model alone"] = row
            alone_lines.append((name, row))
        if name == "unanswerable":
            r = dict(kept=rate([data.exact_match(p, data.NOT_IN_DOCUMENT) for p in kept]),
                     free=rate([data.exact_match(p, data.NOT_IN_DOCUMENT) for p in free]))
            results["unanswerable declined"] = r
            examples = [(e.question, p) for e, p in zip(exs, kept)][:3]
            print(f"{'unanswerable':<16} {fmt(r['kept']):<44} {fmt(r['free']):<44}  (declined)", flush=True)
            results["unanswerable examples"] = examples
            continue
        hits_kept = [data.exact_match(p, e.target) for e, p in zip(exs, kept)]
        hits_free = [data.exact_match(p, e.target) for e, p in zip(exs, free)]
        r = dict(kept=rate(hits_kept), free=rate(hits_free))
        results[f"qa/{name}"] = r
        print(f"{name:<16} {fmt(r['kept']):<44} {fmt(r['free']):<44}", flush=True)
        if name in FAMILIES:
            answerable_free += hits_free
            answerable_kept += hits_kept
            declined += [data.exact_match(p, data.NOT_IN_DOCUMENT) for p in kept]
            asked_kept += alone["kept"] if alone else hits_kept
            asked_free += alone["free"] if alone else hits_free
    results["qa/overall"] = dict(kept=rate(answerable_kept), free=rate(answerable_free))
    results["wrongly declined"] = rate(declined)
    print(f"{'overall':<16} {fmt(results['qa/overall']['kept']):<44} {fmt(results['qa/overall']['free']):<44}")
    print(f"answerable questions wrongly declined (kept): {fmt(results['wrongly declined'])}")
    if alone_lines:
        results["qa/overall, model alone"] = dict(kept=rate(asked_kept), free=rate(asked_free))
        print("\nthe model alone, on the questions as asked (above, each was read first: pipeline.read_question)")
        for name, r in alone_lines:
            print(f"{name:<16} {fmt(r['kept']):<44} {fmt(r['free']):<44}  "
                  f"({r['read_differently']} of {r['kept']['n']} read differently)")
        r = results["qa/overall, model alone"]
        print(f"{'overall':<16} {fmt(r['kept']):<44} {fmt(r['free']):<44}")

    if args.tune:
        tune(weighed, sets, results)

    exs = sets["suggested"]
    no_global = dict(
        kept=rate([data.exact_match(p, e.target) for e, p in
                   zip(exs, predict(model, codec, exs, device, constraint="answer", use_global=False, rule=rule,
                                    **kw))]),
        free=rate([data.exact_match(p, e.target) for e, p in
                   zip(exs, predict(model, codec, exs, device, use_global=False, **kw))]))
    results["qa/suggested, no global attention"] = no_global
    print(f"{'no global attn':<16} {fmt(no_global['kept']):<44} {fmt(no_global['free']):<44}  (suggested wording)")

    summaries = summary_set(seed, args.n, lengths, args.start)
    print(f"\n{'summaries':<22} {'values kept to the document':<44} {'free':<44}")
    rows = {}
    for mode, constraint in (("kept", "facts"), ("free", None)):
        preds = predict(model, codec, summaries, device, constraint=constraint, **kw)
        recall_hits = [h for e, p in zip(summaries, preds) for h in
                       (f" {data.normalize_answer(v)} " in f" {data.normalize_answer(p)} " for v in e.facts.values())]
        rows[mode] = dict(recall=rate(recall_hits),
                          all_right=rate([all_facts_right(p, e) for e, p in zip(summaries, preds)]),
                          repeats=rate([repeated_word_run(p) for p in preds]), example=preds[0])
    for key, label in (("recall", "key-fact recall"), ("all_right", "all facts right"),
                       ("repeats", "repeated-word runs")):
        print(f"{label:<22} {fmt(rows['kept'][key]):<44} {fmt(rows['free'][key]):<44}")
    results["summaries"] = rows
    print(f"(key-fact recall counts facts: n = facts over {len(summaries)} summaries)")

    if not args.no_timing:
        t = timing(args.model, device)
        results["timing"] = t
        print(f"\nload in a fresh process: {t['load_s']:.2f} s ({t['load_with_imports_s']:.2f} s with the imports, "
              f"{t['fresh_process_s']:.2f} s for the whole process); a {t['tokens']:,}-token document summarized "
              f"end to end (encoder + {t['new_tokens']} generated tokens): {t['summarize_s']:.2f} s")
    results["seconds"] = time.time() - t_start
    print(f"\n({results['seconds']:.0f} s; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2, default=str)
    return results


if __name__ == "__main__":
    main()
