"""Where the time of the app's summary of a long document goes: encode, generate, trace, views.

The app's Summarize run (`pipeline.run`, every encoder layer's attention kept for the views, with
their per-head statistics) on an LED-base-shaped model with random weights (d_model 768, 6 + 6
layers, 12 heads, window 1024; the embedded model's tokenizer and its 4,000-token vocabulary), then the numbers the app's
views compute for their first draw (`ledviz.views`: the mean over every layer and head, its
256-bin overview, token 0's row, the cross-attention map, the per-head and global-token tables).
Beside it, in the same process and clock, the model compute alone: the encoder without keeping
any attention (`bare encoder`), and the same run's generation and teacher-forced trace, which
are model compute. The part that is not model compute is the rest: keeping the attention and its
statistics (the encode minus the bare encoder) and the views.

    PYTHONPATH=. python benchmarks/breakdown.py                      # 16,384 tokens, float32 and bfloat16
    PYTHONPATH=. python benchmarks/breakdown.py --tokens 8192 --precisions bfloat16 --clock cpu --threads 1

Times are the best of `--repeats` rounds (each round runs everything once, in turn).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import torch

from common import LED_BASE, sample_text, table  # benchmarks/common.py, beside this script

from ledviz import analysis, device, fused, pipeline, views
from ledviz.modeling import LEDForConditionalGeneration


def led_base_loaded(tokens: int) -> pipeline.LoadedModel:
    """A random-weight LED-base-shaped model with the embedded model's tokenizer, reading `tokens` tokens."""
    from ledviz.config import LEDConfig

    embedded = pipeline.load_model()
    tok = embedded.tokenizer
    torch.manual_seed(0)
    # the tokenizer's vocabulary (4,000), so that every generated id decodes; LED-base's 50,265 would
    # only make the generation's lm_head (model compute) larger
    config = LEDConfig(**{**LED_BASE, "vocab_size": len(tok), "max_encoder_position_embeddings": max(tokens, 1024),
                          "dropout": 0.0,
                          "pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id,
                          "eos_token_id": tok.eos_token_id, "decoder_start_token_id": tok.eos_token_id})
    model = LEDForConditionalGeneration(config).eval()
    tok.model_max_length = max(tokens, tok.model_max_length or 0)
    return pipeline.LoadedModel(model, tok, "random LED-base", "local", 0.0)


def document_of(loaded: pipeline.LoadedModel, tokens: int) -> pipeline.Document:
    """A document of the sample texts repeated, exactly `tokens` tokens long (special tokens included)."""
    return pipeline.prepare_document(loaded, sample_text(loaded, tokens))


@contextlib.contextmanager
def clock_of_pipeline(clock):
    """pipeline.run times its parts with time.perf_counter: make that `clock` for the run."""
    real = pipeline.time
    pipeline.time = type("Clock", (), {"perf_counter": staticmethod(clock)})
    try:
        yield
    finally:
        pipeline.time = real


def first_draw(result: pipeline.RunResult) -> dict[str, float]:
    """The views' numbers for the app's first draw, timed part by part (in seconds of `clock`)."""
    parts = {}
    t = CLOCK()
    agg = views.aggregated(result, views.View())
    parts["aggregate"] = CLOCK() - t
    t = CLOCK()
    views.overview_map(agg, 256)
    views.token_row(agg, 0)
    views.cross_map(result, views.View())
    table_ = analysis.stats_table(dict(sorted(result.head_stats.items())))
    views.stat_grid(table_, "entropy")
    views.global_stats(result, views.View())
    parts["maps and tables"] = CLOCK() - t
    return parts


CLOCK = time.perf_counter


def main():
    global CLOCK
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--precisions", nargs="+", choices=device.PRECISIONS, default=list(device.PRECISIONS))
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall-clock seconds, or this process's CPU seconds (with --threads 1 on a loaded machine)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    loaded = led_base_loaded(args.tokens)
    doc = document_of(loaded, args.tokens)
    gm = pipeline.global_attention_mask(doc, "first")
    print(f"LED-base-shaped model (random weights), {args.tokens:,} tokens, {args.new_tokens} new tokens, "
          f"{args.threads} threads, {args.clock} seconds; CPU: {device.cpu_capability().detail}; "
          f"band kernel: {fused.kernel_status()}; "
          f"load average {os.getloadavg()[0]:.1f} at the start\n", flush=True)

    best: dict[str, dict[str, float]] = {prec: {} for prec in args.precisions}

    def keep(prec, name, secs):
        best[prec][name] = min(best[prec].get(name, float("inf")), secs)

    for _ in range(args.repeats):
        for prec in args.precisions:
            model = loaded.model_in(prec)
            with torch.inference_mode():
                t = CLOCK()
                model.get_encoder()(doc.input_ids, attention_mask=doc.attention_mask, global_attention_mask=gm)
                keep(prec, "bare encoder", CLOCK() - t)
            with clock_of_pipeline(CLOCK):
                t = CLOCK()
                result = pipeline.run(loaded, doc, gm, max_new_tokens=args.new_tokens,
                                      min_new_tokens=args.new_tokens, precision=prec)
                run_s = CLOCK() - t
            for part in ("encode", "generate", "trace"):
                keep(prec, part, result.timings[f"{part}_s"])
            keep(prec, "run, other", run_s - result.timings["total_s"])
            for part, secs in first_draw(result).items():
                keep(prec, f"views: {part}", secs)
            keep(prec, "attention kept GB", result.attention_bytes / 2**30)
            del result

    rows = []
    for prec, parts in best.items():
        kept_gb = parts.pop("attention kept GB")
        total = sum(parts.values())
        model = parts["bare encoder"] + parts["generate"] + parts["trace"]
        whole = total - parts["bare encoder"]  # the app's run and views (the bare encoder is not part of it)
        not_model = whole - model
        row = {"precision": prec, "tokens": f"{args.tokens:,}"}
        row.update({f"{k} s": f"{v:.2f}" for k, v in parts.items()})
        row["attention kept GB"] = f"{kept_gb:.2f}"
        row["whole s"] = f"{whole:.2f}"
        row["store and statistics s"] = f"{parts['encode'] - parts['bare encoder']:.2f}"
        row["not model compute"] = f"{not_model / whole:.1%}"
        row["load"] = f"{os.getloadavg()[0]:.1f}"
        rows.append(row)
        print(table([row], list(row)), flush=True)
        print()
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
