"""Generation speed of ledviz against transformers, side by side, on an LED-base-shaped model.

Random weights (d_model 768, 6 + 6 layers, 12 heads, FFN 3072, vocab 50265, window 1024,
16384 encoder / 1024 decoder positions) on the CPU under torch.inference_mode, in float32 and in
bfloat16 (both libraries' whole model in that dtype). The transformers model is built, saved, and
loaded into ledviz, so both run the same weights. Each library encodes the input once (timed),
then decodes from that encoder output with greedy search and with 4 beams, exactly `new` tokens
each (min_new_tokens = max_new_tokens; with --no-min, max_new_tokens only and an EOS id these random
weights do not pick, so ledviz does not know the output's length in advance). Each round encodes with every configuration, then runs
each decoding mode with every configuration in turn (transformers, ledviz, ...), round after round
(the median of the rounds), so a change in the machine's load falls on all of them. The models are
loaded outside torch.inference_mode, as an application loads them; ledviz's one-time packing of
the decoder weights (at a model's first generate call) is timed apart, before the rounds.

The floor column is the time the same products take as plain matrix products in that dtype,
measured in the same run: the cross-attention key/value projections of the encoder output once,
then per step every decoder Linear and the lm_head on the step's rows, and the cross-attention
products against the encoder's keys and values. (ledviz's greedy skips some of them: the lm_head
is screened in int8, and an output that may be short attends through the encoder output without
the key/value projections (fastdecode.projection_position), so it can come under this floor.)

    python benchmarks/generate.py            # 4,096-token input, 64 new tokens (many minutes)
    python benchmarks/generate.py --quick    # 1,024-token input, 16 new tokens
    python benchmarks/generate.py --threads 1 --clock cpu --repeats 3   # on a loaded machine
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F

import ledviz
from ledviz import device
from ledviz.fastdecode import FastDecoder, projection_position
from ledviz.modeling import to_dtype

LED_BASE = dict(
    d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12, decoder_attention_heads=12,
    encoder_ffn_dim=3072, decoder_ffn_dim=3072, vocab_size=50265, attention_window=1024,
    max_encoder_position_embeddings=16384, max_decoder_position_embeddings=1024,
)
MODES = (("greedy", 1), ("beams4", 4))


def build_models(path: str):
    """The transformers reference with random weights, saved to `path`, and ledviz's copy of it."""
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    ref = transformers.LEDForConditionalGeneration(transformers.LEDConfig(**LED_BASE)).eval()
    ref.save_pretrained(path)
    ours = ledviz.LEDForConditionalGeneration.from_pretrained(path).eval()
    return ref, ours


class Clock:
    """Wall-clock or this process's CPU seconds."""

    def __init__(self, kind: str):
        self.now = time.perf_counter if kind == "wall" else time.process_time

    def best(self, fn, repeats: int = 1):
        """(best seconds, last result) of `repeats` calls (the floors: a plain product's best case)."""
        best, out = float("inf"), None
        for _ in range(repeats):
            t = self.now()
            out = fn()
            best = min(best, self.now() - t)
        return best, out


def product_floor(model, clock: Clock, n_src: int, new: int, rows: int) -> float:
    """Seconds of the same products as plain matrix products in the model's dtype: the cross keys and
    values of the encoder output once, then `new` steps of every other decoder Linear and the lm_head on
    `rows` rows, and the cross-attention products (rows x N per head)."""
    dec, dtype = model.get_decoder(), model.dtype
    D, H = model.config.d_model, model.config.decoder_attention_heads
    enc = torch.randn(1, n_src, D, dtype=dtype)
    total = 0.0
    step_linears = []
    for name, mod in dec.named_modules():
        if isinstance(mod, torch.nn.Linear):
            if "encoder_attn.k_proj" in name or "encoder_attn.v_proj" in name:
                total += clock.best(lambda m=mod: F.linear(enc, m.weight, m.bias), 2)[0]
            else:
                step_linears.append(mod)
    step_linears.append(model.lm_head)
    step = sum(clock.best(lambda m=m: F.linear(torch.randn(rows, 1, m.in_features, dtype=dtype), m.weight, m.bias),
                          3)[0] for m in step_linears)
    k = torch.randn(1, H, n_src, D // H, dtype=dtype)
    q = torch.randn(1, H, rows, D // H, dtype=dtype)
    p = torch.randn(1, H, rows, n_src, dtype=dtype)
    cross = clock.best(lambda: q @ k.transpose(-1, -2), 3)[0] + clock.best(lambda: p @ k, 3)[0]
    return total + new * (step + len(dec.layers) * cross)


def read_rate(clock: Clock) -> float:
    """Bytes per second one row times a float32 weight streams from memory: 400 MB of 768 x 3072 weights,
    more than the caches hold, each read once a pass (best of 3 passes)."""
    weights = [torch.ones(768, 3072) for _ in range(42)]
    x = torch.ones(1, 768)
    return sum(w.numel() * 4 for w in weights) / clock.best(lambda: [x @ w for w in weights], 3)[0]


def greedy_step_bytes(model, n_src: int, lm_head_bytes: int) -> int:
    """Bytes a greedy step must read at an n_src-token input: every decoder weight but the cross-attention
    key/value projections (used once, before the steps), the cross-attention keys and values of every
    layer, and the lm_head (`lm_head_bytes`: ledviz's float32 greedy reads an int8 or bfloat16 copy)."""
    dec, size = model.get_decoder(), model.dtype.itemsize
    weights = sum(p.numel() for name, p in dec.layers.named_parameters()
                  if "encoder_attn.k_proj" not in name and "encoder_attn.v_proj" not in name) * size
    cross = 2 * len(dec.layers) * n_src * model.config.d_model * size
    return weights + cross + lm_head_bytes


def cross_route(args, new: int) -> str:
    """When ledviz's float32 greedy makes the cross-attention keys/values in this run (fastdecode)."""
    at = projection_position(FastDecoder.break_even_rows(torch.float32, "cpu", args.n_tokens), 1,
                             0 if args.no_min else new, new)
    if at is None:
        return "attends through the encoder output throughout"
    if at == 0:
        return "makes the keys/values at the first token (the output is sure to be long)"
    return f"attends through the encoder output for the first {at} rows, then makes the keys/values"


def greedy_details(args, results: dict, rounds: dict, ours, n_tokens: int, new: int, clock: Clock) -> None:
    """Greedy round by round, with the encoder included, split into the first token and the steps, and the
    float32 step against the bytes it reads."""
    for prec in [p for p in ("float32", "bfloat16") if ("ledviz", p) in results]:
        ratios = [t / o for t, o in zip(rounds[("transformers", prec)]["greedy"], rounds[("ledviz", prec)]["greedy"])]
        print(f"{prec} greedy, ledviz / transformers round by round: " + ", ".join(f"{r:.2f}x" for r in ratios))
    for prec in [p for p in ("float32", "bfloat16") if ("ledviz", p) in results]:
        whole = {lib: results[(lib, prec)]["encoder_s"] + results[(lib, prec)]["greedy"]
                 for lib in ("transformers", "ledviz")}
        print(f"{prec} generate(input_ids) greedy, encoder included (the sums above): transformers "
              f"{whole['transformers']:.2f} s, ledviz {whole['ledviz']:.2f} s, "
              f"{whole['transformers'] / whole['ledviz']:.2f}x")
        split = []
        for lib in ("transformers", "ledviz"):
            r = results[(lib, prec)]
            split.append(f"{lib} {r['first_s']:.2f} s + {(r['greedy'] - r['first_s']) / (new - 1) * 1e3:.1f} ms per step")
        print(f"{prec} greedy, the first token then each step (transformers projects the encoder's keys/values "
              f"at the first token; ledviz's float32 {cross_route(args, new)}"
              f"{'' if args.no_bfloat16 else ', bfloat16 attends through the encoder output throughout'}): "
              + "; ".join(split))
    rate = read_rate(clock)
    lm = ours.lm_head.weight.numel()
    screen = FastDecoder.pack(ours).screen
    screen_bytes = screen.packed.numel() if hasattr(screen, "packed") else screen.weight.numel() * 2
    theirs_b, ours_b = greedy_step_bytes(ours, n_tokens, lm * 4), greedy_step_bytes(ours, n_tokens, screen_bytes)
    # through the encoder output (ledviz's first rows): the key/value weights and the encoder output once a
    # layer (its second read a layer comes from the cache) instead of the layer's keys and values
    layers, D = len(ours.get_decoder().layers), ours.config.d_model
    ours_x = ours_b + layers * (2 * D * D - n_tokens * D) * 4
    step = {lib: (results[(lib, "float32")]["greedy"] - results[(lib, "float32")]["first_s"]) / (new - 1)
            for lib in ("transformers", "ledviz")}
    made_at = projection_position(FastDecoder.break_even_rows(torch.float32, "cpu", n_tokens), 1,
                                  0 if args.no_min else new, new)
    ours_now = ours_b if made_at == 0 else ours_x
    print(f"float32 greedy step reads: transformers {theirs_b / 1e6:.0f} MB, ledviz {ours_b / 1e6:.0f} MB with the "
          f"keys/values made, {ours_x / 1e6:.0f} MB through the encoder output (lm_head screened in "
          f"{type(screen).__name__}); one row times a float32 weight streams {rate / 1e9:.1f} GB/s here "
          f"({args.clock} clock), so a step takes at least {ours_b / rate * 1e3:.1f} / {ours_x / rate * 1e3:.1f} ms "
          f"for ledviz and {theirs_b / rate * 1e3:.1f} ms for transformers; they took {step['ledviz'] * 1e3:.1f} ms "
          f"({ours_now / step['ledviz'] / 1e9:.1f} GB/s) and {step['transformers'] * 1e3:.1f} ms "
          f"({theirs_b / step['transformers'] / 1e9:.1f} GB/s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,024-token input and 16 new tokens")
    ap.add_argument("--tokens", type=int, default=None, help="input tokens (default 4,096)")
    ap.add_argument("--new", type=int, default=None, help="new tokens (default 64)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds (the median of the rounds)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--no-bfloat16", action="store_true", help="float32 only")
    ap.add_argument("--modes", nargs="+", choices=[m for m, _ in MODES], default=[m for m, _ in MODES],
                    help="decoding modes to time (default: greedy and 4 beams)")
    ap.add_argument("--no-min", action="store_true",
                    help="max_new_tokens only, with an EOS id the random weights do not pick here (the lengths "
                         "are printed): ledviz cannot know in advance that the output will be long")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall-clock seconds, or this process's CPU seconds (with --threads 1 on a loaded "
                         "machine, CPU seconds leave out the time other work held the core)")
    args = ap.parse_args()
    modes = [(m, b) for m, b in MODES if m in args.modes]
    if args.threads:
        torch.set_num_threads(args.threads)
    n_tokens, new = (1024, 16) if args.quick else (4096, 64)
    n_tokens, new = args.tokens or n_tokens, args.new or new
    args.n_tokens = n_tokens
    clock = Clock(args.clock)
    warnings.filterwarnings("ignore")
    print(f"input {n_tokens} tokens, {new} new tokens, CPU ({device.cpu_capability().detail}), "
          f"{torch.get_num_threads()} threads, {args.clock} seconds, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} at the start")

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, LED_BASE["vocab_size"], (1, n_tokens), generator=g)
    ids[0, 0], ids[0, -1] = 0, 2
    mask = torch.ones_like(ids)
    gmask = torch.zeros_like(ids)
    gmask[0, 0] = 1

    with tempfile.TemporaryDirectory() as tmp:
        # built outside inference_mode, as an application loads them: weights made under it keep no version
        # counter, so ledviz's decoder would re-pack them at every generate call instead of keeping the pack
        ref, ours = build_models(tmp)
    copies = {} if args.no_bfloat16 else {"transformers": copy.deepcopy(ref).to(torch.bfloat16),
                                          "ledviz": to_dtype(copy.deepcopy(ours), torch.bfloat16)}  # as the app
    with torch.inference_mode():
        from transformers.models.led.modeling_led import LEDEncoderBaseModelOutput as HFEncoderOutput

        ours_wrap = lambda e: e  # noqa: E731
        # transformers expands the encoder output in place for beams: give each call its own object
        ref_wrap = lambda e: HFEncoderOutput(last_hidden_state=e.last_hidden_state)  # noqa: E731
        configs = [("transformers", "float32", ref, ref_wrap), ("ledviz", "float32", ours, ours_wrap)]
        if not args.no_bfloat16:
            configs += [("transformers", "bfloat16", copies["transformers"], ref_wrap),
                        ("ledviz", "bfloat16", copies["ledviz"], ours_wrap)]
        # ledviz packs a model's decoder weights at its first generate call and keeps them (transposed
        # copies in float32): a one-time cost per loaded model, timed here apart and left out of the rounds
        for lib, prec, model, _ in configs:
            if lib == "ledviz":
                t_pack, _ = clock.best(lambda: FastDecoder.pack(model))
                print(f"  ledviz {prec}: decoder weights packed once in {t_pack:.2f} s", flush=True)
        results: dict[tuple[str, str], dict] = {}
        for rnd in range(args.repeats):
            encoded = {}
            for lib, prec, model, wrap in configs:
                res = results.setdefault((lib, prec), {})
                t_enc, enc = clock.best(lambda: model.get_encoder()(
                    input_ids=ids, attention_mask=mask, global_attention_mask=gmask, return_dict=True))
                res.setdefault("encoder_s", []).append(t_enc)
                encoded[(lib, prec)] = enc
                # one new token: transformers projects the cross-attention keys/values of every layer, one step
                t1, _ = clock.best(lambda: model.generate(encoder_outputs=wrap(enc), attention_mask=mask, num_beams=1,
                                                          min_new_tokens=1, max_new_tokens=1))
                res.setdefault("first_s", []).append(t1)
            # exactly `new` tokens; with --no-min, an EOS id that these random weights do not pick here (the lengths
            # are printed): fastdecode cannot know in advance that the output will be long
            length = dict(eos_token_id=LED_BASE["vocab_size"] - 1) if args.no_min else dict(min_new_tokens=new)
            # one mode at a time, the libraries in turn (A B A B): what ran just before is alike for both
            for label, beams in modes:
                for lib, prec, model, wrap in configs:
                    res = results[(lib, prec)]
                    t, out = clock.best(lambda: model.generate(
                        encoder_outputs=wrap(encoded[(lib, prec)]), attention_mask=mask, num_beams=beams,
                        max_new_tokens=new, **length))
                    res.setdefault(label, []).append(t)
                    res[label + "_ids"] = out
                    ended = f"  (ended after {out.shape[-1] - 1} tokens)" if out.shape[-1] - 1 != new else ""
                    print(f"  round {rnd + 1} {lib:12s} {prec:8s} {label:7s} {t:7.2f} s  {new / t:6.2f} tokens/s{ended}",
                          flush=True)
        rounds = {key: {k: list(v) for k, v in res.items() if not k.endswith("_ids")} for key, res in results.items()}
        for res in results.values():  # the median of the rounds
            for k in [k for k in res if not k.endswith("_ids")]:
                res[k] = statistics.median(res[k])
        floors = {(prec, label): product_floor(model, clock, n_tokens, new, beams)
                  for lib, prec, model, _ in configs if lib == "ledviz" for label, beams in modes}

    print(f"\nload average {os.getloadavg()[0]:.1f} at the end\n")
    print("| precision | | transformers | ledviz | ledviz / transformers | product floor | ledviz / floor | same tokens |")
    print("|---|---|---|---|---|---|---|---|")
    for prec in [p for p in ("float32", "bfloat16") if ("ledviz", p) in results]:
        ours_r, ref_r = results[("ledviz", prec)], results[("transformers", prec)]
        print(f"| {prec} | encoder (s) | {ref_r['encoder_s']:.2f} | {ours_r['encoder_s']:.2f} | "
              f"{ref_r['encoder_s'] / ours_r['encoder_s']:.2f}x | | | |")
        for label, _ in modes:
            a, b = new / ours_r[label], new / ref_r[label]
            floor = floors[(prec, label)]
            same = torch.equal(ours_r[label + "_ids"], ref_r[label + "_ids"])
            print(f"| {prec} | {label} (tokens/s) | {b:.2f} | {a:.2f} | {a / b:.2f}x | {new / floor:.2f} | "
                  f"{ours_r[label] / floor:.2f}x | {same} |")
    if "greedy" in args.modes:
        greedy_details(args, results, rounds, ours, n_tokens, new, clock)
    if ("ledviz", "bfloat16") in results:
        for label, _ in modes:
            a = new / results[("ledviz", "bfloat16")][label]
            b = new / results[("transformers", "float32")][label]
            print(f"ledviz bfloat16 {label} vs transformers float32: {a / b:.2f}x")


if __name__ == "__main__":
    main()
