"""Encoder speed and memory, ours beside transformers 4.57, in one run.

An LED-base-shaped model (random weights: d_model 768, 6 layers, 12 heads, window 1024), float32
on the CPU, output_attentions=True, global attention on the first token, at 1,024, 4,096 and
16,384 tokens. Prints a Markdown table of times, ratios, peak memory and the largest differences.

    python benchmarks/encoder.py                  # the full table (16,384 tokens takes minutes)
    python benchmarks/encoder.py --lengths 1024 4096
    python benchmarks/encoder.py --warm-memory 12  # touch 12 GB once first (see --help)

Each configuration is timed with no other run's output alive; the outputs are compared
afterwards, in runs that are not timed.
"""

from __future__ import annotations

import argparse
import gc
import time

import torch

from common import PeakMemory, led_base_pair, table, timed


def run_encoder(model, ids, gm, **kw):
    with torch.inference_mode():
        return model.get_encoder()(ids, global_attention_mask=gm, output_attentions=True, **kw)


def discard(_output) -> None:
    """Drop a timed run's output at once."""


def compare(theirs_out, ours_out, n: int) -> tuple[float, float]:
    """Largest differences: hidden states, and every attention probability (global: valid part)."""
    dh = (theirs_out.last_hidden_state - ours_out.last_hidden_state).abs().max().item()
    da = 0.0
    for a, b in zip(theirs_out.attentions, ours_out.attentions):
        da = max(da, (a - b.float()).abs().max().item())
    for a, b in zip(theirs_out.global_attentions, ours_out.global_attentions):
        da = max(da, (a[:, :, :n] - b.float()).abs().max().item())
    return dh, da


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--repeats", type=int, default=1, help="best of this many runs (after one warm-up at 1,024)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--warm-memory", type=float, default=0.0,
                   help="GB of memory to touch once before measuring (a virtual machine's fresh memory is slow)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    theirs, ours = led_base_pair("LEDModel")
    print(f"LED-base-shaped encoder, float32, {args.threads} threads, output_attentions=True, 1 global token\n")

    if args.warm_memory:
        # Fresh memory is slow to touch the first time on a virtual machine, and it would count
        # against whichever run first grows the process: touch it once, for both libraries.
        t = time.perf_counter()
        warm = torch.empty(int(args.warm_memory * 2**30) // 4)
        warm.fill_(0.0)
        del warm
        print(f"memory warmed up: {args.warm_memory:g} GB in {time.perf_counter() - t:.1f} s\n")

    rows = []
    for n in args.lengths:
        g = torch.Generator().manual_seed(n)
        ids = torch.randint(3, 50000, (1, n), generator=g)
        ids[0, 0] = 0
        gm = torch.zeros(1, n, dtype=torch.long)
        gm[0, 0] = 1
        if not rows:  # warm-up
            run_encoder(ours, ids[:, :1024], gm[:, :1024])
            run_encoder(theirs, ids[:, :1024], gm[:, :1024])
        row = {"tokens": n}
        configs = (("transformers", theirs, {}), ("ours", ours, {}),
                   ("ours fp16 attn", ours, {"attention_dtype": torch.float16}))
        # timed runs: no other run's output alive, so neither pays for the other's memory
        results = {}
        for name, model, kw in configs:
            gc.collect()
            with PeakMemory() as mem:
                secs, _ = timed(lambda: discard(run_encoder(model, ids, gm, **kw)), args.repeats)
            row[f"{name} s"] = f"{secs:.2f}"
            row[f"{name} peak GB"] = f"{mem.peak / 2**30:.2f}"
            results[name] = (secs, mem.peak)
        # then the outputs, compared (untimed)
        ref = run_encoder(theirs, ids, gm)
        for name, model, kw in configs[1:]:
            out = run_encoder(model, ids, gm, **kw)
            dh, da = compare(ref, out, n)
            row[f"{name} max diff (hidden / attn)"] = f"{dh:.1e} / {da:.1e}"
            del out
        del ref
        t_theirs, m_theirs = results["transformers"]
        row["speed-up"] = f"{t_theirs / results['ours'][0]:.2f}x"
        row["speed-up fp16 attn"] = f"{t_theirs / results['ours fp16 attn'][0]:.2f}x"
        row["memory ours/theirs"] = f"{results['ours'][1] / m_theirs:.0%}"
        row["memory ours fp16/theirs"] = f"{results['ours fp16 attn'][1] / m_theirs:.0%}"
        rows.append(row)
        print(table([row], list(row)), flush=True)
        print()
    cols = ["tokens", "transformers s", "ours s", "speed-up", "ours fp16 attn s", "speed-up fp16 attn", "transformers peak GB", "ours peak GB",
            "memory ours/theirs", "ours fp16 attn peak GB", "memory ours fp16/theirs", "ours max diff (hidden / attn)"]
    print(table(rows, cols))


if __name__ == "__main__":
    main()
