"""Benchmark: ledviz's sparse attention views on LED-base-shaped attention at 16,384 tokens.

Synthesizes random, row-normalized attention in the encoder's band + global layout (6 layers x 12
heads, attention_window 1024, 1 global token at position 0, float16 storage), then times the views
the app needs and reports memory. Run from the repository root:

    python benchmarks/unfold.py            # LED-base shape
    python benchmarks/unfold.py --seq-len 4096 --layers 2   # quicker
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

import torch

from common import PeakMemory, rss_bytes  # benchmarks/common.py, beside this script
from ledviz import analysis
from ledviz.unfold import SparseAttention, sparse_nbytes, synthetic_attention

GiB = 1024**3


def timed(fn, repeats: int) -> tuple[float, float]:
    """Best wall time and best CPU time (all threads) of `repeats` calls."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    return wall, cpu


def synthesize(layers: int, heads: int, seq_len: int, window: int, n_global: int, dtype: torch.dtype) -> list[SparseAttention]:
    """LED-shaped synthetic attention, one layer at a time, stored in `dtype`."""
    g = torch.Generator().manual_seed(0)
    am = torch.ones(1, seq_len, dtype=torch.long)
    gm = torch.zeros(1, seq_len, dtype=torch.long)
    gm[0, :n_global] = 1
    out = []
    for l in range(layers):
        local, glob = synthetic_attention(heads, window, am, gm, dtype=dtype, generator=g)
        out.append(SparseAttention.from_layer(local, glob, gm, am, layer=l, dtype=dtype))
        del local, glob
    return out


def main() -> None:
    """Synthesize, time the views, print a table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--seq-len", type=int, default=16384)
    p.add_argument("--window", type=int, default=1024)
    p.add_argument("--globals", type=int, default=1)
    p.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    p.add_argument("--bins", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    dtype = getattr(torch, args.dtype)
    N = args.seq_len

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    t0 = time.perf_counter()
    layers = synthesize(args.layers, args.heads, N, args.window, args.globals, dtype)
    t_synth = time.perf_counter() - t0
    stored = sum(sp.nbytes for sp in layers)
    fp32 = sparse_nbytes(args.layers, args.heads, N, args.window, args.globals, torch.float32)
    print(f"synthesized {args.layers} layers x {args.heads} heads, N={N}, window {args.window}, "
          f"{args.globals} global, {args.dtype}: {stored / GiB:.2f} GiB in {t_synth:.1f} s "
          f"(float32 would be {fp32 / GiB:.2f} GiB)")

    layer0, token = layers[0], N // 2
    head_means: list[SparseAttention] = []
    steps = [
        ("overview 512x512, one head", 0.5, lambda: analysis.overview(layer0.select(heads=[0]), args.bins)),
        ("overview 512x512, all heads of a layer aggregated", 3.0,
         lambda: analysis.overview(analysis.aggregate(layer0), args.bins)),
        ("rollout of one token through all layers", 1.0, lambda: analysis.rollout(layers, token)),
        ("  head means of all layers, once (for many rollouts)", None,
         lambda: head_means.__setitem__(slice(None), [analysis.aggregate(sp) for sp in layers])),
        ("  rollout of one token from the head means", 1.0, lambda: analysis.rollout(head_means, token)),
        ("overview 512x512 of each head of a layer (H maps)", None, lambda: analysis.overview(layer0, args.bins)),
        ("row + column of one token, one layer", None, lambda: (layer0.row(token), layer0.col(token))),
        ("zoom 512 x 512 tokens, one layer", None, lambda: analysis.zoom(layer0, (token, token + 512), (token, token + 512))),
        ("per-head statistics of one layer", None, lambda: analysis.head_stats(layer0)),
        ("global-token statistics, all layers", None, lambda: analysis.global_token_stats(layers)),
    ]
    rss_before = rss_bytes()
    tracemalloc.start()
    rows = []
    with PeakMemory() as peak:
        for name, goal, fn in steps:
            rows.append((name, *timed(fn, args.repeats), goal))
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'step':<{width}}  {'wall (s)':>9}  {'CPU (s)':>8}  {'goal (s)':>8}  ok")
    print("-" * (width + 36))
    for name, wall, cpu, goal in rows:
        ok = "" if goal is None else ("yes" if wall < goal else "NO")
        print(f"{name:<{width}}  {wall:>9.3f}  {cpu:>8.3f}  {'' if goal is None else f'< {goal:g}':>8}  {ok}")
    print(f"(best of {args.repeats}; CPU = all threads; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print()
    print(f"stored attention (band + globals)         {stored / GiB:8.2f} GiB")
    print(f"RSS before the analysis                   {rss_before / GiB:8.2f} GiB")
    print(f"peak RSS during the analysis (sampled)    {(rss_before + peak.peak) / GiB:8.2f} GiB  "
          f"(+{peak.peak / GiB:.2f} GiB working memory)")
    print(f"peak RSS of the process (getrusage)       {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:8.2f} GiB")
    print(f"peak Python allocations (tracemalloc)     {py_peak / 1024**2:8.2f} MiB (torch buffers are not traced)")
    print(f"a dense N x N map of one head would be    {N * N * 4 / GiB:8.2f} GiB (float32); never built")


if __name__ == "__main__":
    main()
