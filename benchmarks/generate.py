"""Generation speed of ledviz against transformers, side by side, on an LED-base-shaped model.

Random weights (d_model 768, 6 + 6 layers, 12 heads, FFN 3072, vocab 50265, window 1024,
16384 encoder / 1024 decoder positions), float32 on the CPU under torch.inference_mode. The
transformers model is built, saved, and loaded into ledviz, so both run the same weights. Each
library encodes the input once (timed), then decodes from that encoder output with greedy search
and with 4 beams, exactly `new` tokens each (min_new_tokens = max_new_tokens).

    python benchmarks/generate.py            # 4,096-token input, 64 new tokens (a few minutes)
    python benchmarks/generate.py --quick    # 1,024-token input, 16 new tokens
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import torch

import ledviz

LED_BASE = dict(
    d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12, decoder_attention_heads=12,
    encoder_ffn_dim=3072, decoder_ffn_dim=3072, vocab_size=50265, attention_window=1024,
    max_encoder_position_embeddings=16384, max_decoder_position_embeddings=1024,
)


def build_models(path: str):
    """The transformers reference with random weights, saved to `path`, and ledviz's copy of it."""
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    ref = transformers.LEDForConditionalGeneration(transformers.LEDConfig(**LED_BASE)).eval()
    ref.save_pretrained(path)
    ours = ledviz.LEDForConditionalGeneration.from_pretrained(path).eval()
    return ref, ours


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run(name: str, model, ids, mask, gmask, new: int, fresh_encoder_output) -> dict:
    """Encoder time, then greedy and 4-beam decoding from the encoder output; returns times and tokens."""
    enc, t_enc = timed(lambda: model.get_encoder()(input_ids=ids, attention_mask=mask, global_attention_mask=gmask,
                                                    return_dict=True))
    res = {"encoder_s": t_enc}
    for label, beams in (("greedy", 1), ("beams4", 4)):
        # transformers expands the encoder output in place for beams: give each call its own object
        out, t = timed(lambda: model.generate(
            encoder_outputs=fresh_encoder_output(enc), attention_mask=mask, num_beams=beams,
            min_new_tokens=new, max_new_tokens=new))
        res[label] = (t, out)
        print(f"  {name:12s} {label:7s} {t:7.2f} s  {new / t:6.2f} tokens/s", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,024-token input and 16 new tokens")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n_tokens, new = (1024, 16) if args.quick else (4096, 64)
    warnings.filterwarnings("ignore")
    print(f"input {n_tokens} tokens, {new} new tokens, float32 CPU, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, LED_BASE["vocab_size"], (1, n_tokens), generator=g)
    ids[0, 0], ids[0, -1] = 0, 2
    mask = torch.ones_like(ids)
    gmask = torch.zeros_like(ids)
    gmask[0, 0] = 1

    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        ref, ours = build_models(tmp)
        from transformers.models.led.modeling_led import LEDEncoderBaseModelOutput as HFEncoderOutput

        results = {}
        print("ledviz")
        results["ours"] = run("ledviz", ours, ids, mask, gmask, new, lambda e: e)
        print("transformers")
        results["ref"] = run("transformers", ref, ids, mask, gmask, new,
                             lambda e: HFEncoderOutput(last_hidden_state=e.last_hidden_state))

    ours_r, ref_r = results["ours"], results["ref"]
    print()
    print(f"{'':16s}{'ledviz':>12s}{'transformers':>14s}{'speed ours/theirs':>20s}")
    print(f"{'encoder (s)':16s}{ours_r['encoder_s']:12.2f}{ref_r['encoder_s']:14.2f}"
          f"{ref_r['encoder_s'] / ours_r['encoder_s']:19.2f}x")
    for label in ("greedy", "beams4"):
        a, b = new / ours_r[label][0], new / ref_r[label][0]
        same = torch.equal(ours_r[label][1], ref_r[label][1])
        print(f"{label + ' (tok/s)':16s}{a:12.2f}{b:14.2f}{a / b:19.2f}x   same tokens: {same}")


if __name__ == "__main__":
    main()
