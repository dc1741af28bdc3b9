"""Encoder speed and memory, ours beside transformers 4.57, in one run.

An LED-base-shaped model (random weights: d_model 768, 6 layers, 12 heads, window 1024) on the
CPU, float32 and bfloat16 (both libraries' whole model in that dtype), output_attentions=True,
global attention on the first token, at 1,024, 4,096 and 16,384 tokens. Prints a Markdown table
of times, ratios, peak memory, the largest differences from transformers in float32, and the
floor: the time the same floating-point work takes as plain matrix products in that dtype,
measured in the same run (in every round, after the model runs, so that it sees the same load; the
median of the rounds).

    python benchmarks/encoder.py                  # the full table (16,384 tokens takes minutes)
    python benchmarks/encoder.py --lengths 1024 4096
    python benchmarks/encoder.py --warm-memory 12  # touch 12 GB once first (see --help)
    python benchmarks/encoder.py --device cuda     # on a GPU: LED-large shape, 16,384 tokens (encoder_cuda.py)

Each configuration is timed with no other run's output alive; the outputs are compared
afterwards, in runs that are not timed.
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import statistics
import time

import torch

from common import PeakMemory, led_base_pair, table, timed

from ledviz import device, fused
from ledviz.modeling import to_dtype


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


def encoder_flops(n: int, d: int = 768, ffn: int = 3072, layers: int = 6, w: int = 512) -> float:
    """Floating-point operations of the encoder's products at n tokens: projections (q, k, v, output),
    feed-forward, and the band (scores and values, 2w + 1 keys per query); the global rows are negligible."""
    per_layer = 2 * n * d * d * 4 + 2 * n * d * ffn * 2 + 2 * 2 * n * (2 * w + 1) * d
    return per_layer * layers


def matmul_rate(dtype: torch.dtype, repeats: int = 5, clock: str = "wall") -> float:
    """FLOP/s of a plain matrix product of the feed-forward's shape (4,096 x 768 by 768 x 3,072) in `dtype`
    (best of `repeats` after one warm-up product)."""
    a, b = torch.randn(4096, 768).to(dtype), torch.randn(768, 3072).to(dtype)
    best = float("inf")
    for _ in range(repeats + 1):
        t = time.perf_counter() if clock == "wall" else time.process_time()
        torch.mm(a, b)
        best = min(best, (time.perf_counter() if clock == "wall" else time.process_time()) - t)
    return 2 * 4096 * 768 * 3072 / best


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=None,
                   help="tokens (default 1,024, 4,096 and 16,384; with --device cuda 16,384)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: the GPU table of benchmarks/encoder_cuda.py (LED-large shape, bf16 and fp16)")
    p.add_argument("--sdpa", action="store_true", help="with --device cpu: force ledviz's GPU path (a check of the "
                                                        "GPU script on the CPU) instead of the CPU table")
    p.add_argument("--base-shape", action="store_true", help="with --device cuda: LED-base shape instead of LED-large")
    p.add_argument("--repeats", type=int, default=1,
                   help="rounds; each round times every configuration once, in turn (best of the rounds), "
                        "then the matrix-product floor (median of the rounds)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--no-bfloat16", action="store_true", help="float32 rows only")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="what the times and ratios are: wall-clock seconds, or this process's CPU seconds (with "
                        "--threads 1 on a loaded machine, CPU seconds leave out the time other work held the core)")
    p.add_argument("--skip-diffs", action="store_true",
                   help="leave out the untimed runs that compare the outputs with transformers' (minutes at 16,384 tokens)")
    p.add_argument("--warm-memory", type=float, default=0.0,
                   help="GB of memory to touch once before measuring (a virtual machine's fresh memory is slow)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.lengths_given = args.lengths is not None
    if args.device == "cuda" or args.sdpa:
        import encoder_cuda

        return encoder_cuda.run(args)
    args.lengths = args.lengths or [1024, 4096, 16384]
    theirs, ours = led_base_pair("LEDModel")
    configs = [("transformers", theirs, {}), ("ours", ours, {}),
               ("ours fp16 attn", ours, {"attention_dtype": torch.float16})]
    if not args.no_bfloat16:
        theirs_bf16 = copy.deepcopy(theirs).to(torch.bfloat16)
        ours_bf16 = to_dtype(copy.deepcopy(ours), torch.bfloat16)  # as the app converts it: norms in float32
        configs[1:1] = [("transformers bf16", theirs_bf16, {})]
        configs.append(("ours bf16", ours_bf16, {}))
    print(f"LED-base-shaped encoder, {args.threads} threads, times: {args.clock} seconds, output_attentions=True, 1 global token; "
          f"CPU: {device.cpu_capability().detail}; band kernel: {fused.kernel_status()}; "
          f"load average {os.getloadavg()[0]:.1f} at the start\n")

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
            for _, model, kw in configs:
                run_encoder(model, ids[:, :1024], gm[:, :1024], **kw)
        row = {"tokens": n}
        # timed runs, interleaved: each round runs every configuration once, so a change in the
        # machine's load falls on all of them; no other run's output alive, so none pays for
        # another's memory
        times = {name: float("inf") for name, _, _ in configs}
        cpu = dict(times)
        peaks = {name: 0 for name, _, _ in configs}
        # the floor: the same floating-point work as plain matrix products, measured in every round
        # beside the model runs (so it sees the same load) and reported as the median of the rounds
        flops = encoder_flops(n)
        floor_dtypes = {"float32": torch.float32} if args.no_bfloat16 else \
            {"float32": torch.float32, "bfloat16": torch.bfloat16}
        floor_rounds = {prec: [] for prec in floor_dtypes}
        for _ in range(args.repeats):
            for name, model, kw in configs:
                gc.collect()
                with PeakMemory() as mem:
                    c0 = time.process_time()
                    secs, _ = timed(lambda: discard(run_encoder(model, ids, gm, **kw)))
                    cpu[name] = min(cpu[name], time.process_time() - c0)
                times[name] = min(times[name], secs)
                peaks[name] = max(peaks[name], mem.peak)
            for prec, dtype in floor_dtypes.items():
                floor_rounds[prec].append(flops / matmul_rate(dtype, clock=args.clock))
        if args.clock == "cpu":
            times = cpu
        floors = {prec: statistics.median(secs) for prec, secs in floor_rounds.items()}
        for name, _, _ in configs:
            row[f"{name} s"] = f"{times[name]:.2f}"
            row[f"{name} cpu s"] = f"{cpu[name]:.2f}"
            row[f"{name} peak GB"] = f"{peaks[name] / 2**30:.2f}"
        for prec, secs in floors.items():
            row[f"floor {prec} s"] = f"{secs:.2f}"
        # then the outputs, compared (untimed)
        ref = None if args.skip_diffs else run_encoder(theirs, ids, gm)
        for name, model, kw in configs[1:] if ref is not None else []:
            if name.startswith("transformers"):
                continue
            out = run_encoder(model, ids, gm, **kw)
            dh, da = compare(ref, out, n)
            row[f"{name} max diff (hidden / attn)"] = f"{dh:.1e} / {da:.1e}"
            del out
        del ref
        t32, m32 = times["transformers"], peaks["transformers"]
        row["speed-up"] = f"{t32 / times['ours']:.2f}x"
        row["speed-up fp16 attn"] = f"{t32 / times['ours fp16 attn']:.2f}x"
        row["ours / floor"] = f"{times['ours'] / floors['float32']:.2f}x"
        row["memory ours/theirs"] = f"{peaks['ours'] / m32:.0%}"
        row["memory ours fp16/theirs"] = f"{peaks['ours fp16 attn'] / m32:.0%}"
        if not args.no_bfloat16:
            row["ours bf16 vs theirs fp32"] = f"{t32 / times['ours bf16']:.2f}x"
            row["ours bf16 vs theirs bf16"] = f"{times['transformers bf16'] / times['ours bf16']:.2f}x"
            row["ours bf16 / bf16 floor"] = f"{times['ours bf16'] / floors['bfloat16']:.2f}x"
        row["load"] = f"{os.getloadavg()[0]:.1f}"
        rows.append(row)
        print(table([row], list(row)), flush=True)
        print()
    cols = ["tokens", "transformers s", "ours s", "speed-up", "floor float32 s", "ours / floor",
            "ours fp16 attn s", "speed-up fp16 attn",
            "transformers bf16 s", "ours bf16 s", "ours bf16 vs theirs fp32", "ours bf16 vs theirs bf16",
            "floor bfloat16 s", "ours bf16 / bf16 floor", "transformers peak GB", "ours peak GB", "memory ours/theirs",
            "ours fp16 attn peak GB", "memory ours fp16/theirs", "ours bf16 peak GB", "ours max diff (hidden / attn)",
            "ours bf16 max diff (hidden / attn)", "load"]
    print(table(rows, [c for c in cols if c in rows[0]]))


if __name__ == "__main__":
    main()
