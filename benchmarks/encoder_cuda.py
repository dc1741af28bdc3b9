"""The encoder on a GPU, ours beside transformers 4.57, in one run (`python benchmarks/encoder.py --device cuda`).

LED-large-shaped by default (d_model 1024, 12 layers, 16 heads, FFN 4096, window 1024; random
weights), output_attentions=True, global attention on the first token, 16,384 tokens, in bfloat16
and float16 (both libraries' whole model in that dtype), and the same without attentions. On CUDA
ledviz's encoder takes its GPU path (ledviz/attention_gpu.py) by itself. Times are CUDA-event
milliseconds (best of the rounds, after a warm-up), peak memory is `torch.cuda.max_memory_allocated`
above what was allocated before the call (the model and the input). The goal of issue 19: with
attentions, at least 3x transformers and at most 50% of its peak memory.

`--device cpu --sdpa` runs the same script on the CPU with the GPU path forced (a check of the
script where no GPU is; its times say nothing about a GPU).
"""

from __future__ import annotations

import gc
import os

import torch

from common import led_base_pair, table

LED_LARGE = dict(d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                 decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _measure(model, ids, gm, device: str, attentions: bool, repeats: int):
    """(best milliseconds, peak bytes above the start, output of the last call)."""
    import time

    best, peak, out = float("inf"), 0, None
    for _ in range(repeats):
        out = None
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        _sync(device)
        t = time.perf_counter()
        with torch.inference_mode():
            out = model(ids, global_attention_mask=gm, output_attentions=attentions)
        _sync(device)
        best = min(best, (time.perf_counter() - t) * 1e3)
        if device == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated() - base)
    return best, peak, out


def _max_diff(ref, out, n: int) -> str:
    dh = (ref.last_hidden_state.float() - out.last_hidden_state.float()).abs().max().item()
    if ref.attentions is None:
        return f"{dh:.1e} / -"
    da = max((a.float() - b.float()).abs().max().item() for a, b in zip(ref.attentions, out.attentions))
    return f"{dh:.1e} / {da:.1e}"


def run(args) -> None:
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False)")
    shape = {} if args.base_shape else LED_LARGE
    lengths = args.lengths if args.lengths_given else [16384]
    theirs, ours = led_base_pair("LEDModel", **shape)
    if args.sdpa:
        ours.get_encoder().set_attention_implementation("sdpa")
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (GPU path forced; not a GPU measurement)"
    print(f"{'LED-base' if args.base_shape else 'LED-large'}-shaped encoder on {name}, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    rows = []
    for dtype in (torch.bfloat16, torch.float16):
        t_model = theirs.to(device=device, dtype=dtype).get_encoder()
        o_model = ours.to(device=device, dtype=dtype).get_encoder()
        for n in lengths:
            g = torch.Generator().manual_seed(n)
            ids = torch.randint(3, 50000, (1, n), generator=g)
            ids[0, 0] = 0
            gm = torch.zeros(1, n, dtype=torch.long)
            gm[0, 0] = 1
            ids, gm = ids.to(device), gm.to(device)
            for attentions in (True, False):
                for m in (t_model, o_model):  # warm-up (kernels, allocator)
                    _measure(m, ids[:, :1024], gm[:, :1024], device, attentions, 1)
                # interleaved rounds: a change in the machine's state falls on both
                t_ms = o_ms = float("inf")
                t_peak = o_peak = 0
                for _ in range(args.repeats):
                    ms, pk, ref = _measure(t_model, ids, gm, device, attentions, 1)
                    t_ms, t_peak = min(t_ms, ms), max(t_peak, pk)
                    ref = None
                    ms, pk, _ = _measure(o_model, ids, gm, device, attentions, 1)
                    o_ms, o_peak = min(o_ms, ms), max(o_peak, pk)
                _, _, ref = _measure(t_model, ids, gm, device, attentions, 1)
                _, _, out = _measure(o_model, ids, gm, device, attentions, 1)
                diff = _max_diff(ref, out, n)
                ref = out = None
                row = {"dtype": str(dtype).replace("torch.", ""), "tokens": n, "attentions": attentions,
                       "transformers ms": f"{t_ms:.1f}", "ours ms": f"{o_ms:.1f}", "speed-up": f"{t_ms / o_ms:.2f}x"}
                if device == "cuda":
                    row.update({"transformers peak GB": f"{t_peak / 2**30:.2f}", "ours peak GB": f"{o_peak / 2**30:.2f}",
                                "memory ours/theirs": f"{o_peak / t_peak:.0%}"})
                row["max diff (hidden / attn)"] = diff
                rows.append(row)
                print(table([row], list(row)), flush=True)
    print()
    print(table(rows, list(rows[0])))
