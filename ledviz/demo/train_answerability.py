"""Train the embedded model's answerability head: ``python -m ledviz.demo.train_answerability --model DIR``.

The head (ledviz.answerability) is a small classifier on features of the frozen model that
ledviz.answering.kept_answers computes while it weighs the best span against the decline. This
script:

1. draws training questions (--n-train) from TRAIN_SEED under keys no training phase or evaluation uses
   ("answerability/<i>"): half answerable (the eight wording families of data.Variety in turn,
   never a held-out wording), half unanswerable (as data.Variety makes them, the training mix and
   each family in turn), documents of 500-4,070 tokens (log-uniform); each question read as the
   app reads it (pipeline.read_question);
2. extracts the head's features with the model's own weighing (kept_answers(features=True));
3. fits a logistic regression (or, with --hidden, one tanh layer) with L2 weight decay, on
   standardized features, by L-BFGS, seeded;
4. scores it on validation (VALID_SEED, evaluate.question_sets: the nine wording families,
   unanswerable questions and unseen values, n per set), where the threshold is chosen: the
   highest that wrongly declines at most --max-wrong of the answerable questions of the nine
   families; prints the trade-off, the ROC areas of the head and of the decline rule's margins;
5. writes the head (--out, default DIR/answerability.json) and, with --install, names it in the
   model's generation_config.json ("decline_head").

It never reads the test seed. Features are cached per model and data in --cache (delete the folder
to extract again).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from typing import Sequence

import torch

from ledviz import answerability, answering

from . import data, evaluate
from .train import Codec, encode_example, kept_answers

CHUNK = 1000  # training questions per cache file

# the shipped head's (chosen on validation: the model card says how)
DEFAULT_FEATURES = ("margin_first", "margin_sum", "margin_mean", "span_first", "decline_first", "span_mean",
                    "span_min", "span_end", "span_length", "question_words_found", "question_words_missing",
                    "cross_entropy", "cross_max", "cross_question", "encoder_question")
GROUPS = {  # for --explore
    "scores": ("margin_first", "margin_sum", "margin_mean", "span_first", "decline_first", "span_mean", "span_min",
               "span_end", "span_length"),
    "words": ("question_words_found", "question_words_missing"),
    "cross": ("cross_entropy", "cross_max", "cross_question"),
    "encoder_question": ("encoder_question",),
    "encoder_span": ("encoder_span",),
    "decoder_first": ("decoder_first",),
}


# ------------------------------------------------------------------------------------------------
# data and features
# ------------------------------------------------------------------------------------------------
def training_questions(n: int, seed: int = data.TRAIN_SEED, start: int = 0) -> list[data.Example]:
    """Questions `start` to `start + n` (even: answerable, odd: not) from `seed` under keys "answerability/<i>"."""
    out = []
    fams = data.QUESTION_FAMILIES
    for i in range(start, start + n):
        rng = data._example_rng(seed, f"answerability/{i}")
        length = int(math.exp(rng.uniform(math.log(500), math.log(4070))))
        j = i // 2
        if i % 2 == 0:
            variety = data.Variety(family=fams[j % len(fams)], unanswerable=0.0)
        else:  # as the training mix draws them, and in each family in turn
            variety = data.Variety(family=None if j % 2 == 0 else fams[(j // 2) % len(fams)], unanswerable=1.0)
        out.append(data.make_example(rng, "qa", length, variety=variety))
    return out


def validation_sets(n: int, lengths: Sequence[int]) -> dict[str, list[data.Example]]:
    """evaluate's validation question sets (VALID_SEED): the nine families, unanswerable, unseen values."""
    sets = evaluate.question_sets(data.VALID_SEED, n, lengths)
    return {k: v for k, v in sets.items() if k in (*evaluate.FAMILIES, "unanswerable", "unseen values")}


def extract(model, codec: Codec, examples: Sequence[data.Example], *, batch_tokens: int, batch_size: int,
            progress: str = "") -> list:
    """The KeptAnswer (features included) of each question, each read as the app reads it first, in order."""
    read, _ = evaluate.read_questions(codec.tok, examples)
    capacity = model.config.max_encoder_position_embeddings
    encoded = [encode_example(codec, ex, capacity) for ex in read]
    rule = answering.decline_rule(model)
    if rule is None:
        raise SystemExit("the model has no decline_margin: the head reads the weighed span and decline, set "
                         "decline_margin and decline_score in its generation_config.json first")
    rule = answering.DeclineRule(rule.margin, rule.score)  # without a head: the features alone
    by_id, t0 = {}, time.time()
    for k, (ex, a) in enumerate(kept_answers(model, codec, encoded, "cpu", batch_tokens=batch_tokens,
                                             batch_size=batch_size, rule=rule, features=True), 1):
        by_id[id(ex)] = a
        if progress and k % 200 == 0:
            print(f"  {progress}: {k}/{len(encoded)} ({time.time() - t0:.0f} s)", flush=True)
    return [by_id[id(ex)] for ex in read]


def _fingerprint(model_dir: str, what: str) -> str:
    h = hashlib.sha256(what.encode())
    for name in ("model.safetensors", "tokenizer.json"):  # (the features do not depend on the decline settings)
        path = os.path.join(model_dir, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()[:16]


def features_of(model, codec, model_dir: str, name: str, examples: Sequence[data.Example], cache: str | None,
                **kw) -> list[dict | None]:
    """Each question's features (None where the answer was not weighed), from `cache` when there."""
    key = _fingerprint(model_dir, f"{name}|{len(examples)}|{answerability.VERSION}|{sorted(answerability.FEATURES)}")
    path = os.path.join(cache, f"{name}-{key}.pt") if cache else None
    if path and os.path.exists(path):
        return torch.load(path)
    answers = extract(model, codec, examples, progress=name, **kw)
    values = [a.features for a in answers]
    if path:
        os.makedirs(cache, exist_ok=True)
        torch.save(values, path)
    return values


def matrix(values: Sequence[dict | None], names: Sequence[str], width: int) -> torch.Tensor:
    """(R, width) head inputs; a row that was not weighed is NaN (never declined by the head)."""
    rows = []
    for v in values:
        rows.append(torch.tensor([x for f in names for x in v[f]], dtype=torch.float64) if v is not None
                    else torch.full((width,), math.nan, dtype=torch.float64))
    return torch.stack(rows)


# ------------------------------------------------------------------------------------------------
# fitting
# ------------------------------------------------------------------------------------------------
def fit(x: torch.Tensor, y: torch.Tensor, *, l2: float, hidden: int = 0, seed: int = 0,
        steps: int = 300) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """(mean, std, layers) of a logistic regression (hidden=0) or a one-tanh-layer net on rows `x`
    (R, F) with labels `y` (1: answerable): mean cross-entropy + l2 * sum of squared weights, by
    L-BFGS from a seeded start."""
    keep = ~torch.isnan(x).any(1)
    x, y = x[keep], y[keep].double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)  # the same for every seed: ensemble() joins the fits
    z = (x - mean) / std
    g = torch.Generator().manual_seed(seed)
    sizes = [z.shape[1], *([hidden] if hidden else []), 1]
    params = []
    for a, b in zip(sizes, sizes[1:]):
        w = (torch.randn(b, a, generator=g, dtype=torch.float64) / math.sqrt(a) * (1.0 if hidden else 0.0))
        params += [w.requires_grad_(), torch.zeros(b, dtype=torch.float64, requires_grad=True)]
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def logits():
        h = z
        for i in range(0, len(params), 2):
            h = h @ params[i].T + params[i + 1]
            if i + 2 < len(params):
                h = torch.tanh(h)
        return h[:, 0]

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits(), y)
        loss = loss + l2 * sum((params[i] ** 2).sum() for i in range(0, len(params), 2))
        loss.backward()
        return loss

    opt.step(closure)
    layers = [(params[i].detach().clone(), params[i + 1].detach().clone()) for i in range(0, len(params), 2)]
    return mean, std, layers


def ensemble(x: torch.Tensor, y: torch.Tensor, *, l2: float, hidden: int, seeds: Sequence[int]):
    """fit() once per seed, joined into one network whose output is the mean of their logits: the
    hidden layers side by side (hidden * len(seeds) units), the output weights and bias averaged. A
    single seed is fit() itself."""
    fits = [fit(x, y, l2=l2, hidden=hidden, seed=s) for s in seeds]
    if len(fits) == 1:
        return fits[0]
    if not hidden:
        raise SystemExit("--ensemble needs --hidden (an average of logistic regressions is one)")
    mean, std = fits[0][0], fits[0][1]
    w1 = torch.cat([f[2][0][0] for f in fits])
    b1 = torch.cat([f[2][0][1] for f in fits])
    w2 = torch.cat([f[2][1][0] for f in fits], dim=1) / len(fits)
    b2 = sum(f[2][1][1] for f in fits) / len(fits)
    return mean, std, [(w1, b1), (w2, b2)]


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve of `scores` ranking label-1 rows above label-0 rows (ties: half)."""
    pos = [s for s, l in zip(scores, labels) if l]
    neg = [s for s, l in zip(scores, labels) if not l]
    if not pos or not neg:
        return math.nan
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def trade_off(p_answerable: torch.Tensor, labels: torch.Tensor, threshold: float) -> tuple[int, int, int, int]:
    """(declined unanswerable, unanswerable, declined answerable, answerable) at a threshold (declined: p < t;
    NaN, a row not weighed, is never declined)."""
    declined = p_answerable < threshold  # NaN compares False
    un = labels == 0
    return int((declined & un).sum()), int(un.sum()), int((declined & ~un).sum()), int((~un).sum())


def choose_threshold(p: torch.Tensor, labels: torch.Tensor, max_wrong: float) -> float:
    """The threshold that declines the most unanswerable rows (label 0) while declining at most
    `max_wrong` of the answerable ones, and of those the fewest answerable ones: halfway between two
    neighbouring probabilities (0 when no threshold declines anything within the bound)."""
    allowed = int(math.floor(max_wrong * int((labels == 1).sum()) + 1e-9))
    values = sorted({float(v) for v in p.tolist() if not math.isnan(v)})
    cuts = [0.0] + [(a + b) / 2 for a, b in zip(values, values[1:])] + ([values[-1] + 1e-9] if values else [])
    best, best_key = 0.0, (0, 0)
    for t in cuts:
        d, _, w, _ = trade_off(p, labels, t)
        if w <= allowed and (d, -w) > best_key:
            best, best_key = t, (d, -w)
    return min(1.0, best)


def trade_off_table(p: torch.Tensor, labels: torch.Tensor, thresholds: Sequence[float]) -> list[dict]:
    rows = []
    for t in thresholds:
        d, nu, w, na = trade_off(p, labels, t)
        rows.append(dict(threshold=t, declined=evaluate.rate([True] * d + [False] * (nu - d)),
                         wrongly_declined=evaluate.rate([True] * w + [False] * (na - w))))
    return rows


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ledviz.demo.train_answerability", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the model folder (with decline_margin and decline_score set)")
    p.add_argument("--out", default=None, help="the head file to write (default: MODEL/answerability.json)")
    p.add_argument("--install", action="store_true",
                   help="also name the head in MODEL/generation_config.json (\"decline_head\")")
    p.add_argument("--n-train", type=int, default=12000, help="training questions (half unanswerable)")
    p.add_argument("--n-valid", type=int, default=32, help="validation questions per set (evaluate's --n)")
    p.add_argument("--lengths", default="1000,2000,4000", help="validation document lengths (evaluate's --lengths)")
    p.add_argument("--features", default=",".join(DEFAULT_FEATURES), help="comma-separated feature names")
    p.add_argument("--l2", type=float, default=3e-4, help="weight decay (times the sum of squared weights)")
    p.add_argument("--hidden", type=int, default=4, help="hidden units (0: logistic regression)")
    p.add_argument("--max-wrong", type=float, default=0.05,
                   help="the threshold declines at most this share of the answerable validation questions")
    p.add_argument("--seed", type=int, default=0, help="the fit's seed (a hidden layer's start)")
    p.add_argument("--ensemble", type=int, default=5,
                   help="fit this many seeds (--seed on) and join them into one network averaging their logits")
    p.add_argument("--explore", action="store_true",
                   help="print validation figures for feature groups, weight decays and hidden sizes; write nothing")
    p.add_argument("--cache", default="runs/answerability-cache", help="folder for extracted features ('' for none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-tokens", type=int, default=32768)
    p.add_argument("--batch-size", type=int, default=32)
    return p.parse_args(argv)


def _data(args):
    from ledviz import LEDForConditionalGeneration

    model = LEDForConditionalGeneration.from_pretrained(args.model).eval()
    codec = Codec(data.load_tokenizer(args.model))
    kw = dict(batch_tokens=args.batch_tokens, batch_size=args.batch_size)
    cache = args.cache or None
    train_values = []
    for start in range(0, args.n_train, CHUNK):  # in chunks, so that a larger --n-train extracts only what is new
        n = min(CHUNK, args.n_train - start)
        train_values += features_of(model, codec, args.model, f"train-{start}", training_questions(n, start=start),
                                    cache, **kw)
    train_labels = torch.tensor([1 - i % 2 for i in range(args.n_train)])
    sets = validation_sets(args.n_valid, [int(x) for x in args.lengths.split(",")])
    valid = {name: features_of(model, codec, args.model, f"valid-{name}-{args.lengths}", exs, cache, **kw)
             for name, exs in sets.items()}
    return model, train_values, train_labels, sets, valid


def _valid_rows(valid: dict, names, width):
    """(x, labels) of the nine families (1) and the unanswerable set (0); and the unseen values' x."""
    fams = [v for f in evaluate.FAMILIES for v in valid[f]]
    x = matrix(fams + valid["unanswerable"], names, width)
    labels = torch.tensor([1] * len(fams) + [0] * len(valid["unanswerable"]))
    return x, labels, matrix(valid["unseen values"], names, width)


def _head(model, names, mean, std, layers, threshold, about) -> answerability.AnswerabilityHead:
    return answerability.AnswerabilityHead("(made here)", tuple(names), mean, std, tuple(layers), threshold, about)


def evaluate_fit(model, names, train_values, train_labels, valid, l2, hidden, seed, max_wrong, members=1):
    width = sum(answerability.feature_width(n, model.config) for n in names)
    x = matrix(train_values, names, width)
    mean, std, layers = ensemble(x, train_labels, l2=l2, hidden=hidden, seeds=range(seed, seed + members))
    head = _head(model, names, mean, std, layers, 0.5, {})
    vx, vy, ux = _valid_rows(valid, names, width)
    keep = ~torch.isnan(x).any(1)
    p_train = head.probabilities(x[keep])
    p_valid = head.probabilities(torch.nan_to_num(vx))
    p_valid[torch.isnan(vx).any(1)] = math.nan
    p_unseen = head.probabilities(torch.nan_to_num(ux))
    threshold = choose_threshold(p_valid, vy, max_wrong)
    return dict(head=head, threshold=threshold, p_valid=p_valid, vy=vy, p_unseen=p_unseen,
                train_auc=roc_auc(p_train.tolist(), train_labels[keep].tolist()),
                valid_auc=roc_auc([0.0 if math.isnan(v) else v for v in p_valid.tolist()], vy.tolist()),
                point=trade_off(p_valid, vy, threshold), params=sum(w.numel() + b.numel() for w, b in layers))


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    model, train_values, train_labels, sets, valid = _data(args)
    print(f"features of {len(train_values)} training questions and {sum(map(len, valid.values()))} validation "
          f"questions ({time.time() - t0:.0f} s)", flush=True)
    # the decline rule's own margins on validation, for comparison
    fam_answers = [v for f in evaluate.FAMILIES for v in valid[f]] + valid["unanswerable"]
    labels = [1] * (len(fam_answers) - len(valid["unanswerable"])) + [0] * len(valid["unanswerable"])
    for score in ("first", "sum", "mean"):
        margins = [(-v[f"margin_{score}"][0] if v is not None else 0.0) for v in fam_answers]
        print(f"ROC area on validation, -margin ({score}): {roc_auc(margins, labels):.3f}")

    if args.explore:
        names_all = list(answerability.FEATURES)
        subsets = [("scores", GROUPS["scores"]), ("scores+words", GROUPS["scores"] + GROUPS["words"]),
                   ("scores+words+cross", GROUPS["scores"] + GROUPS["words"] + GROUPS["cross"])]
        for g in ("encoder_question", "encoder_span", "decoder_first"):
            subsets.append((f"scores+words+cross+{g}",
                            GROUPS["scores"] + GROUPS["words"] + GROUPS["cross"] + GROUPS[g]))
        subsets += [("all", tuple(names_all)),
                    ("all but scores", tuple(n for n in names_all if n not in GROUPS["scores"]))]
        print(f"\n{'features':<42} {'l2':>7} {'hid':>3} {'params':>6} {'AUC tr':>6} {'AUC va':>6}  "
              f"{'declined (valid)':<14} {'wrongly':<9} threshold")
        for label, names in subsets:
            for l2 in (1e-3, 1e-2, 3e-2, 1e-1):
                for hidden in ((0, 8) if label == "all" else (0,)):
                    r = evaluate_fit(model, names, train_values, train_labels, valid, l2, hidden, args.seed,
                                     args.max_wrong)
                    d, nu, w, na = r["point"]
                    print(f"{label:<42} {l2:>7g} {hidden:>3} {r['params']:>6} {r['train_auc']:>6.3f} "
                          f"{r['valid_auc']:>6.3f}  {d:>3}/{nu:<10} {w:>3}/{na:<5} {r['threshold']:.3f}", flush=True)
        return {}

    names = [n.strip() for n in args.features.split(",") if n.strip()]
    unknown = [n for n in names if n not in answerability.FEATURES]
    if unknown:
        raise SystemExit(f"--features: unknown feature(s) {', '.join(unknown)}; the features are "
                         f"{', '.join(answerability.FEATURES)}")
    if args.ensemble < 1:
        raise SystemExit(f"--ensemble must be at least 1, got {args.ensemble}")
    r = evaluate_fit(model, names, train_values, train_labels, valid, args.l2, args.hidden, args.seed, args.max_wrong,
                     args.ensemble)
    d, nu, w, na = r["point"]
    unseen_declined = int((r["p_unseen"] < r["threshold"]).sum())
    print(f"\nhead: {', '.join(names)}; l2 {args.l2:g}, hidden {args.hidden}, {r['params']} parameters")
    print(f"ROC area: training {r['train_auc']:.3f}, validation {r['valid_auc']:.3f}")
    print(f"threshold {r['threshold']:.4f} (the most declines with at most {100 * args.max_wrong:g}% of the "
          f"answerable validation questions declined)")
    print(f"validation: unanswerable declined {evaluate.fmt(evaluate.rate([True] * d + [False] * (nu - d)))}; "
          f"answerable wrongly declined {evaluate.fmt(evaluate.rate([True] * w + [False] * (na - w)))}; "
          f"unseen values declined {unseen_declined}/{len(r['p_unseen'])}")
    print("answerable wrongly declined per family: " + ", ".join(
        f"{f} {int((p < r['threshold']).sum())}/{len(p)}" for f, p in zip(
            evaluate.FAMILIES, r["p_valid"][: len(r["vy"]) - len(valid["unanswerable"])].split(args.n_valid))))
    print("\ntrade-off on validation (declined iff P(answerable) < threshold):")
    for row in trade_off_table(r["p_valid"], r["vy"], [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, r["threshold"]]):
        print(f"  {row['threshold']:.4f}  unanswerable declined {evaluate.fmt(row['declined']):<36} "
              f"wrongly declined {evaluate.fmt(row['wrongly_declined'])}")
    about = dict(made_by="python -m " + " ".join(["ledviz.demo.train_answerability", *(argv or sys.argv[1:])]),
                 training=f"{args.n_train} questions from TRAIN_SEED keys answerability/<i>, half unanswerable",
                 threshold_chosen_on=f"VALID_SEED, evaluate.question_sets n={args.n_valid}, lengths {args.lengths}: "
                                     f"the most declines with at most {args.max_wrong:g} of the answerable declined",
                 l2=args.l2, hidden=args.hidden, seed=args.seed, ensemble=args.ensemble,
                 train_auc=round(r["train_auc"], 4),
                 valid_auc=round(r["valid_auc"], 4), valid_declined=[d, nu], valid_wrongly_declined=[w, na])
    head = answerability.AnswerabilityHead("(made here)", tuple(names), r["head"].mean, r["head"].std,
                                           r["head"].layers, round(r["threshold"], 6), about)
    out = args.out or os.path.join(args.model, "answerability.json")
    head.save(out)
    answerability.load(out, model.config)  # it reads back
    print(f"\nwrote {out} ({os.path.getsize(out):,} bytes)")
    if args.install:
        path = os.path.join(args.model, "generation_config.json")
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        config["decline_head"] = os.path.basename(out)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"named it in {path} (decline_head)")
    return dict(about)


if __name__ == "__main__":
    main()
