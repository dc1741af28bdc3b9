"""The bfloat16 encoder's attention probabilities against our float32 run, on the embedded model.

Issue 19's precision goal: every attention probability of the bfloat16 encoder within 1e-2 (absolute)
of our float32 path. The embedded demo model (trained, so its attention is sharp, unlike random
weights) encodes n validation reports (ledviz.demo.evaluate's summary documents from the validation
seed, about 1,000, 2,000 and 4,000 tokens in turn; the test seed is never used) with global attention
on the first token, in float32 and in bfloat16, attentions kept; for each report it prints the largest
difference of any encoder probability (every layer and head, local and global), then how many are
above 1e-2, the largest and the median.

    PYTHONPATH=. python benchmarks/precision.py              # 16 reports
    PYTHONPATH=. python benchmarks/precision.py --no-amx     # bfloat16 band products not on AMX
    PYTHONPATH=. python benchmarks/precision.py --mkl        # ... on MKL (neither AMX nor AVX-512 BF16's)
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

from ledviz import device, fused, pipeline
from ledviz.demo import data, evaluate


def largest_difference(model_a, model_b, doc, mask) -> float:
    """The largest absolute difference of any encoder probability between the two models' runs."""
    outs = []
    for model in (model_a, model_b):
        with torch.inference_mode():
            outs.append(model.get_encoder()(doc.input_ids, attention_mask=doc.attention_mask,
                                            global_attention_mask=mask, output_attentions=True))
    a, b = outs
    diff = 0.0
    for x, y in zip(a.attentions + (a.global_attentions or ()), b.attentions + (b.global_attentions or ())):
        diff = max(diff, (x.float() - y.float()).abs().max().item())
    return diff


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=16, help="validation reports (default 16)")
    p.add_argument("--lengths", default="1000,2000,4000", help="document lengths in tokens, in turn")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-amx", action="store_true",
                   help="the bfloat16 band's products not on the matrix unit (fused.use_amx off)")
    p.add_argument("--mkl", action="store_true", help="the bfloat16 band's products on MKL (use_amx, use_dpbf16 off)")
    p.add_argument("--limit", type=float, default=1e-2, help="the goal (default 1e-2)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    fused.use_amx = not (args.no_amx or args.mkl)
    fused.use_dpbf16 = not args.mkl
    loaded = pipeline.load_model()  # the embedded demo model
    fp32, bf16 = loaded.model_in("float32"), loaded.model_in("bfloat16")
    lengths = [int(x) for x in args.lengths.split(",")]
    print(f"embedded model, {args.n} validation reports (seed {data.VALID_SEED}); CPU: "
          f"{device.cpu_capability().detail}; band kernel: {fused.kernel_status()}; "
          f"load {os.getloadavg()[0]:.1f}")
    diffs = []
    for i, ex in enumerate(evaluate.summary_set(data.VALID_SEED, args.n, lengths)):
        doc = pipeline.prepare_document(loaded, ex.document)
        mask = pipeline.global_attention_mask(doc, "first")
        diffs.append(largest_difference(fp32, bf16, doc, mask))
        print(f"report {i:2d}: {doc.n_tokens:5d} tokens, largest difference {diffs[-1]:.2e}", flush=True)
    above = sum(d > args.limit for d in diffs)
    print(f"\nabove {args.limit:g}: {above} of {len(diffs)}; largest {max(diffs):.2e}; "
          f"median {statistics.median(diffs):.2e}")


if __name__ == "__main__":
    main()
