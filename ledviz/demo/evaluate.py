"""Score a trained demo model on held-out documents: ``python -m ledviz.demo.evaluate --model DIR``.

For documents of about 1K, 2K and 4K tokens (TEST_SEED, never seen in training or validation)
it prints QA exact match (also with each answer kept to a span of the document, as the
app answers by default) and summary key-fact recall with greedy decoding, once with the
model's global attention (question tokens for QA, ``<s>`` for summaries) and once with the
global attention removed, which shows how much the model relies on it.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from . import data
from .train import Codec, _device, encode_example, score


def held_out(codec: Codec, length: int, n: int, max_tokens: int, tasks=data.TASKS) -> list:
    """`n` encoded test examples per task with documents of about `length` tokens."""
    out = []
    for task in tasks:
        for i in range(n):
            rng = data._example_rng(data.TEST_SEED, f"{length}/{task}/{i}")
            ex = data.make_example(rng, task, max(120, length - 30))
            out.append(encode_example(codec, ex, max_tokens))
    return out


def timing(model_dir: str, device, tokens: int = 4000, new_tokens: int = 64) -> dict:
    """Seconds to load the checkpoint, and to summarize a `tokens`-token document end to end
    (tokenize, encoder, exactly `new_tokens` greedy tokens, decode), best of two runs."""
    from ledviz import LEDForConditionalGeneration, LEDTokenizerFast

    t0 = time.perf_counter()
    model = LEDForConditionalGeneration.from_pretrained(model_dir).to(device).eval()
    tok = LEDTokenizerFast.from_pretrained(model_dir)
    load_s = time.perf_counter() - t0
    rng = data._example_rng(data.TEST_SEED, f"timing/{tokens}")
    text = data.make_example(rng, "summarize", tokens + 200).document  # cut to `tokens` below
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
    return dict(load_s=load_s, summarize_s=best, tokens=int(enc["input_ids"].shape[1]), new_tokens=new_tokens)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ledviz.demo.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="checkpoint folder written by ledviz.demo.train")
    p.add_argument("--n", type=int, default=32, help="examples per task and length")
    p.add_argument("--lengths", default="1000,2000,4000", help="document lengths in tokens (comma list)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    p.add_argument("--batch-tokens", type=int, default=32768)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-beams", type=int, default=1, help="1: greedy decoding (default); more: beam search")
    p.add_argument("--no-ablation", action="store_true", help="skip the runs without global attention")
    p.add_argument("--no-timing", action="store_true", help="skip the load and end-to-end timing")
    p.add_argument("--no-span", action="store_true",
                   help="skip answering the questions again with each answer kept to a span of its document")
    p.add_argument("--json", default=None, help="also write the scores to this file")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from ledviz import LEDForConditionalGeneration

    device = _device(args.device)
    model = LEDForConditionalGeneration.from_pretrained(args.model).to(device).eval()
    codec = Codec(data.load_tokenizer(args.model))
    capacity = model.config.max_encoder_position_embeddings
    autocast = device.type == "cuda" and torch.cuda.is_bf16_supported()
    kw = dict(batch_tokens=args.batch_tokens, batch_size=args.batch_size, autocast=autocast, num_beams=args.num_beams)
    modes = [("global", True)] + ([] if args.no_ablation else [("no global", False)])

    print(f"model {args.model}: windows {model.config.attention_windows()}, reads up to {capacity} tokens")
    decoding = "greedy decoding" if args.num_beams == 1 else f"beam search ({args.num_beams} beams)"
    print(f"held-out documents (TEST_SEED={data.TEST_SEED}), {args.n} per task and length, {decoding}\n")
    header = (f"{'length':>8} {'mode':>10} {'QA exact match':>15} {'QA, span':>9} {'summary recall':>15} "
              f"{'summary exact':>14}")
    print(header)
    print("-" * len(header))
    results: dict = {}
    totals = {m: {"qa": [], "span": [], "rec": [], "sum": []} for m, _ in modes}
    for length in (int(x) for x in args.lengths.split(",")):
        if length > capacity:
            print(f"{length:>8} (documents are cut to the model's {capacity} tokens)")
        encoded = held_out(codec, length, args.n, capacity)
        for name, use_global in modes:
            t0 = time.time()
            r = score(model, codec, encoded, device, use_global=use_global, span=not args.no_span, **kw)
            r["seconds"] = time.time() - t0
            results[f"{length}/{name}"] = r
            totals[name]["qa"].append(r["qa_em"])
            totals[name]["rec"].append(r["summary_recall"])
            totals[name]["sum"].append(r["summary_em"])
            totals[name]["span"].append(r.get("qa_span_em", math.nan))
            print(f"{length:>8} {name:>10} {r['qa_em']:>15.3f} {r.get('qa_span_em', math.nan):>9.3f} "
                  f"{r['summary_recall']:>15.3f} {r['summary_em']:>14.3f}", flush=True)
    for name, t in totals.items():
        mean = {k: sum(v) / len(v) if v else math.nan for k, v in t.items()}
        results[f"all/{name}"] = dict(qa_em=mean["qa"], summary_recall=mean["rec"], summary_em=mean["sum"])
        if not args.no_span:
            results[f"all/{name}"]["qa_span_em"] = mean["span"]
        print(f"{'all':>8} {name:>10} {mean['qa']:>15.3f} {mean['span']:>9.3f} {mean['rec']:>15.3f} "
              f"{mean['sum']:>14.3f}")
    if not args.no_span:
        print("\nQA, span: the same questions answered with each answer kept to a span of its document "
              "(constrained decoding, the app's default for QA)")
    if not args.no_timing:
        t = timing(args.model, device)
        results["timing"] = t
        print(f"\nload: {t['load_s']:.2f} s; a {t['tokens']:,}-token document summarized end to end "
              f"(encoder + {t['new_tokens']} generated tokens): {t['summarize_s']:.2f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
