"""Corpus-study throughput: documents per second on the synthetic corpus, local vs. Ray, and the
memory of each worker; then the measured per-document costs that the README's cluster estimate uses.

    python benchmarks/study.py                         # 12 demo documents x 2 settings, 4 engine set-ups
    python benchmarks/study.py --docs 40 --large 2048  # more documents; time an LED-large-shaped encoder too

Every set-up runs the same study (the embedded model, `first` vs. `none`, 64 new tokens, one torch
thread per worker) into a fresh folder; wall time includes starting workers and loading the model.
Also checks that every set-up wrote the same rows. Say the machine's load when quoting the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import pandas as pd

from ledviz.study import KEY_COLUMNS, RESULT_COLUMNS, StudySpec, run_study
from ledviz.study.store import read_rows


def setups(workers: int) -> list[tuple[str, dict]]:
    return [
        ("local, 1 process", dict(engine="local", workers=1)),
        (f"local, pool of {workers}", dict(engine="local", workers=workers)),
        (f"ray, {workers} actors", dict(engine="ray", workers=workers)),
    ]


def led_large_encoder(tokens: int) -> dict:
    """Seconds for one forward pass of an LED-large-shaped encoder (random weights, float32, CPU)."""
    import torch

    from ledviz import LEDConfig, LEDForConditionalGeneration

    cfg = LEDConfig(vocab_size=50265, d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                    decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096, attention_window=1024,
                    max_encoder_position_embeddings=16384, max_decoder_position_embeddings=1024)
    torch.manual_seed(0)
    model = LEDForConditionalGeneration(cfg).eval()
    ids = torch.randint(4, 50000, (1, tokens))
    gm = torch.zeros_like(ids)
    gm[:, 0] = 1
    enc = model.get_encoder()
    with torch.inference_mode():
        enc(ids[:, :1024], global_attention_mask=gm[:, :1024])  # warm-up
        t = time.perf_counter()
        enc(ids, global_attention_mask=gm)
        seconds = time.perf_counter() - t
    d, L, w, f = 1024, 12, 512, 4096
    macs = L * tokens * (4 * d * d + 2 * d * f + 2 * (2 * w + 1) * d)
    return dict(tokens=tokens, seconds=seconds, gflop=2 * macs / 1e9, gflops_per_s=2 * macs / 1e9 / seconds,
                threads=torch.get_num_threads())


def large_layer_stats(tokens: int, globals_every: int = 64) -> dict:
    """CPU seconds of the study's per-layer work on one LED-large-shaped layer (16 heads, window 1024)
    at `tokens` tokens, from synthetic attention: the per-head statistics (done as the layer
    arrives) and the total variation between two settings' maps (<s> alone vs. every k-th token)."""
    import torch

    from ledviz import analysis, compare
    from ledviz.unfold import SparseAttention, synthetic_attention

    am = torch.ones(1, tokens, dtype=torch.long)
    maps = []
    for every in (tokens, globals_every):
        gm = torch.zeros(1, tokens, dtype=torch.long)
        gm[0, ::every] = 1
        local, glob = synthetic_attention(16, 1024, am, gm, generator=torch.Generator().manual_seed(every))
        maps.append(SparseAttention.from_layer(local, glob, gm, am, layer=0))
        del local, glob
    t = time.perf_counter()
    analysis.head_stats(maps[1])
    stats_s = time.perf_counter() - t
    a, b = (m.to(dtype=torch.float16) for m in maps)
    t = time.perf_counter()
    compare.row_distances(b, a)
    tv_s = time.perf_counter() - t
    return dict(tokens=tokens, stats_s=stats_s, tv_s=tv_s, threads=torch.get_num_threads())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=12)
    p.add_argument("--tokens", default="500-2000", help="demo document lengths MIN-MAX")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--large", type=int, default=0, help="also time an LED-large-shaped encoder at this many tokens")
    p.add_argument("--large-layer", type=int, default=0,
                   help="also time the per-layer statistics of one LED-large-shaped layer at this many tokens")
    args = p.parse_args(argv)

    spec = StudySpec(corpus=f"demo:{args.docs}:{args.tokens}", settings=["first", "none"],
                     max_new_tokens=args.max_new_tokens)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    root = tempfile.mkdtemp(prefix="ledviz-study-bench-")
    results, first_rows = [], None
    try:
        for name, kw in setups(args.workers):
            if kw["engine"] == "ray" and args.no_ray:
                continue
            out = os.path.join(root, name.replace(" ", "_").replace(",", ""))
            t = time.perf_counter()
            run_study(spec, out, progress=False, threads=1, **kw)
            wall = time.perf_counter() - t
            rows = read_rows(out)
            same = None
            if first_rows is None:
                first_rows = rows
            else:
                same = first_rows[KEY_COLUMNS + RESULT_COLUMNS].equals(rows[KEY_COLUMNS + RESULT_COLUMNS])
            per_worker = rows.groupby("worker")["peak_rss_mb"].max()
            busy = rows.groupby("doc_index")["total_s"].sum()
            results.append(dict(setup=name, wall_s=wall, docs_per_s=args.docs / wall,
                                busy_s_per_doc=busy.mean(), workers=len(per_worker),
                                peak_rss_mb_per_worker=per_worker.mean(), same_rows=same))
            print(f"  {name}: {wall:.1f} s", flush=True)
        table = pd.DataFrame(results)
        print(f"\n{args.docs} demo documents ({args.tokens} tokens) x 2 settings, {args.max_new_tokens} new tokens, "
              f"load average {os.getloadavg()[0]:.1f} at the end\n")
        print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))

        # per-document costs of one setting, from the single-process run
        rows = first_rows
        per = rows.assign(k_tokens=rows.n_tokens / 1000)
        costs = dict(
            tokens_mean=per.n_tokens.mean(), output_tokens_mean=per.output_tokens.mean(),
            encode_s_per_k_tokens=(per.encode_s / per.k_tokens).median(),
            generate_s_per_output_token=(per.generate_s / per.output_tokens.clip(lower=1)).median(),
            score_s_per_setting=per.score_s.median(), total_s_per_setting=per.total_s.median(),
        )
        print("\nper (document, setting), embedded model, 1 thread (medians):")
        for k, v in costs.items():
            print(f"  {k}: {v:.4f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.large:
        r = led_large_encoder(args.large)
        print(f"\nLED-large-shaped encoder (random weights, float32, CPU, {r['threads']} threads), {r['tokens']} tokens: "
              f"{r['seconds']:.1f} s for {r['gflop']:.0f} GFLOP (matmuls and band only) = {r['gflops_per_s']:.1f} GFLOP/s")

    if args.large_layer:
        r = large_layer_stats(args.large_layer)
        print(f"one LED-large-shaped layer (16 heads, window 1024), {r['tokens']} tokens, {r['threads']} threads: "
              f"per-head statistics {r['stats_s']:.1f} s, total variation to another setting {r['tv_s']:.1f} s")


if __name__ == "__main__":
    main()
