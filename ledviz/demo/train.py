"""Train the small demo LED on synthetic reports: ``python -m ledviz.demo.train --out DIR``.

Multi-task training (summarize + QA, see ledviz.demo.data) of a fresh
``LEDForConditionalGeneration``. Inputs are ``<s> document </s>`` with global attention on
``<s>`` (summarize) or ``<s> question </s></s> document </s>`` with global attention on the
question tokens (QA). Training documents come from TRAIN_SEED, generated on the fly (none
repeats within a run; a --resume run reads the stream from its start again unless
--stream-start skips ahead; --plain-share mixes plain and varied examples), with an optional
length curriculum; batches are packed by length to waste little padding.
Every --eval-every steps the model is scored on validation documents (VALID_SEED) and saved
to --out (config.json, model.safetensors, tokenizer files, generation_config.json).

The defaults are the first phase of the recipe of the embedded model; its model card
(ledviz/demo/model/README.md) gives every phase's command. Use --micro for a tiny run that
finishes in seconds (CI), e.g.
``python -m ledviz.demo.train --micro --out /tmp/ledviz-micro``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from . import data

GENERATION_CONFIG = {
    "bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 2,
    "max_new_tokens": 64, "num_beams": 1, "do_sample": False,
}
MAX_TARGET_TOKENS = 64

# the defaults suit one GPU (about 8M parameters, a few minutes on an H100);
# --micro replaces them with a tiny model that runs on a CPU in seconds
MICRO = dict(steps=8, batch_tokens=2048, batch_size=8, d_model=32, layers=2, decoder_layers=1, heads=2,
             ffn=64, windows="16,16", min_tokens=120, max_tokens=256, vocab_size=600, vocab_docs=24,
             eval_every=8, eval_examples=4, log_every=1, warmup=2)


# ------------------------------------------------------------------------------------------------
# tokenizer access
# ------------------------------------------------------------------------------------------------
class Codec:
    """The few tokenizer operations training needs, on an LEDTokenizerFast's `tokenizers` backend."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.backend = tokenizer.backend_tokenizer

    def ids(self, text: str) -> list[int]:
        """Token ids of `text` without special tokens."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=True).strip()

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def save(self, out: str) -> None:
        self.tok.save_pretrained(out)


# ------------------------------------------------------------------------------------------------
# encoding and batching
# ------------------------------------------------------------------------------------------------
@dataclass
class Encoded:
    """One tokenized example: ids, the global positions [g0, g1), target ids, the source."""

    input_ids: list[int]
    global_span: tuple[int, int]
    labels: list[int]
    example: data.Example


def encode_example(codec: Codec, ex: data.Example, max_tokens: int) -> Encoded:
    """`<s> D </s>` (global: <s>) or `<s> Q </s></s> D </s>` (global: Q); D truncated to fit."""
    if ex.question is not None:
        q = codec.ids(ex.question)
        prefix, span = [0, *q, 2, 2], (1, 1 + len(q))
    else:
        prefix, span = [0], (0, 1)
    doc = codec.ids(ex.document)[: max(0, max_tokens - len(prefix) - 1)]
    # an answer is spelled as inside the document (after a space), so copying is token for token
    target = codec.ids(" " + ex.target if ex.question is not None else ex.target)
    labels = [0, *target[: MAX_TARGET_TOKENS - 2], 2]
    return Encoded(prefix + doc + [2], span, labels, ex)


def copy_example(codec: Codec, ex: data.Example, rng: random.Random, max_len: int = 48) -> Encoded:
    """Auxiliary task: a random stretch of the document (8 to `max_len` tokens) to be written back.

    It makes the encoder keep each token's identity and the decoder read it through
    cross-attention, the path both real tasks need; without it a small model can settle on
    ignoring the encoder and predicting the summary template alone.
    """
    doc = codec.ids(ex.document)
    n = rng.randint(8, max_len)
    start = rng.randrange(max(1, len(doc) - n))
    span = doc[start: start + n]
    return Encoded([0, *span, 2], (0, 1), [0, *span, 2], ex)


def collate(batch: Sequence[Encoded], device, use_global: bool = True, pad_multiple: int = 1) -> dict:
    """Pad a batch: input ids with <pad>, labels with -100; global mask from each global span."""
    n = max(len(e.input_ids) for e in batch)
    n = math.ceil(n / pad_multiple) * pad_multiple
    t = max(len(e.labels) for e in batch)
    ids = torch.full((len(batch), n), 1, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    glob = torch.zeros((len(batch), n), dtype=torch.long)
    labels = torch.full((len(batch), t), -100, dtype=torch.long)
    for i, e in enumerate(batch):
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        mask[i, : len(e.input_ids)] = 1
        if use_global:
            glob[i, e.global_span[0]: e.global_span[1]] = 1
        labels[i, : len(e.labels)] = torch.tensor(e.labels)
    out = dict(input_ids=ids, attention_mask=mask, global_attention_mask=glob, labels=labels)
    return {k: v.to(device) for k, v in out.items()}


def pack_batches(items: Iterable[Encoded], batch_tokens: int, batch_size: int) -> list[list[Encoded]]:
    """Sort by length and cut into batches of at most `batch_size` examples and
    `batch_tokens` padded tokens (one over-long example still gets a batch of its own)."""
    batches, cur = [], []
    for e in sorted(items, key=lambda e: len(e.input_ids)):
        if cur and (len(cur) >= batch_size or (len(cur) + 1) * len(e.input_ids) > batch_tokens):
            batches.append(cur)
            cur = []
        cur.append(e)
    if cur:
        batches.append(cur)
    return batches


def variety(args, training: bool = False) -> "data.Variety | None":
    """The varied data of --varied (None: the plain data), for validation, or for training
    (`training`: with --hard-variety, the harder mix; validation stays the same for every run,
    so that runs are compared on the same examples)."""
    if not args.varied:
        return None
    return data.Variety(unanswerable=args.unanswerable, hard=training and args.hard_variety,
                        robust=training and args.robust_variety)


def is_plain(args, index: int) -> bool:
    """Whether training example `index` of the stream comes from the plain data: always without
    --varied, else with probability --plain-share (a fixed draw per index, so a run's data mix
    is the same on every machine and on a --resume)."""
    if not args.varied or args.plain_share >= 1.0:
        return True
    return args.plain_share > 0.0 and random.Random(f"ledviz-demo/mix/{index}").random() < args.plain_share


def training_examples(args, start: int, n: int, min_tokens: int, max_tokens: int) -> Iterable[data.Example]:
    """Examples start..start+n-1 of the TRAIN_SEED stream, each plain or varied (see is_plain)."""
    for i in range(start, start + n):
        yield from data.generate_dataset(data.TRAIN_SEED, 1, args.tasks, min_tokens, max_tokens, start=i,
                                         variety=None if is_plain(args, i) else variety(args, training=True))


class TrainStream:
    """Endless training batches from TRAIN_SEED with a length curriculum.

    The longest document grows linearly from --min-tokens to --max-tokens over the first
    --curriculum fraction of the steps; lengths are log-uniform up to that bound.
    """

    def __init__(self, codec: Codec, args, rng: random.Random):
        self.codec, self.args, self.rng = codec, args, rng
        self.next_index = args.stream_start
        self.queue: list[list[Encoded]] = []

    def max_len(self, step: int) -> int:
        a = self.args
        frac = 1.0 if a.curriculum <= 0 else min(1.0, step / (a.curriculum * a.steps))
        return int(a.min_tokens + frac * (a.max_tokens - a.min_tokens))

    def next_batch(self, step: int) -> list[Encoded]:
        if not self.queue:
            a = self.args
            hi = max(self.max_len(step) - 20, a.min_tokens)  # room for the question and specials
            n = a.pool_batches * max(1, a.batch_tokens // max(hi, 1))
            exs = training_examples(a, self.next_index, n, min(a.min_tokens, hi), hi)
            self.next_index += n
            enc = [copy_example(self.codec, ex, self.rng) if self.rng.random() < a.copy_fraction
                   else encode_example(self.codec, ex, a.max_tokens) for ex in exs]
            self.queue = pack_batches(enc, a.batch_tokens, a.batch_size)
            self.rng.shuffle(self.queue)
        return self.queue.pop()


# ------------------------------------------------------------------------------------------------
# decoding and scoring
# ------------------------------------------------------------------------------------------------
def answer_source(e: Encoded) -> list[int]:
    """The document tokens of a QA example (`<s> Q </s></s> D </s>` -> D): what its answer may copy."""
    return e.input_ids[e.global_span[1] + 2: -1]


@torch.no_grad()
def greedy_decode(model, batch: dict, max_new_tokens: int = MAX_TARGET_TOKENS, num_beams: int = 1,
                  **generation) -> list[list[int]]:
    """Greedy (or beam-search) generation of a collated batch: the token ids of each row."""
    out = model.generate(batch["input_ids"], attention_mask=batch["attention_mask"],
                         global_attention_mask=batch["global_attention_mask"], max_new_tokens=max_new_tokens,
                         num_beams=num_beams, do_sample=False, **generation)
    return out.tolist()


@torch.no_grad()
def kept_answers(model, codec: Codec, encoded: Sequence[Encoded], device, *, batch_tokens: int, batch_size: int,
                 use_global: bool = True, autocast: bool = False, num_beams: int = 1, rule="model",
                 features: bool = False):
    """(example, ledviz.answering.KeptAnswer) for each question of `encoded`, batch by batch: each
    answer a whole-word span of its document or the decline answer, chosen by `rule` ("model":
    the model's own decline rule, as the app's QA page applies it); `features`: each weighed
    answer also carries the answerability head's features (ledviz.answerability)."""
    from ledviz import answering

    for batch in pack_batches(encoded, batch_tokens, batch_size):
        tensors = collate(batch, device, use_global=use_global)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            answers = answering.kept_answers(
                model, codec.tok, [answer_source(e) for e in batch], input_ids=tensors["input_ids"],
                attention_mask=tensors["attention_mask"], global_attention_mask=tensors["global_attention_mask"],
                rule=rule, features=features, max_new_tokens=MAX_TARGET_TOKENS, num_beams=num_beams, do_sample=False)
        yield from zip((e.example for e in batch), answers)


@torch.no_grad()
def score(model, codec: Codec, encoded: Sequence[Encoded], device, *, batch_tokens: int, batch_size: int,
          use_global: bool = True, autocast: bool = False, num_beams: int = 1, span: bool = False) -> dict:
    """Decode `encoded` (greedy, or beam search) and return qa_em, summary_recall, summary_em (means) and counts.

    With `span`, the questions are answered a second time with each answer kept to a whole-word
    span of its document or the decline answer, chosen by the model's decline rule
    (kept_answers: ledviz.answering.kept_answers, as the app's QA page answers): qa_span_em."""
    model.eval()

    def decoded(items: Sequence[Encoded]):
        """(example, decoded text) for each of `items`, batch by batch."""
        for batch in pack_batches(items, batch_tokens, batch_size):
            tensors = collate(batch, device, use_global=use_global)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                seqs = greedy_decode(model, tensors, num_beams=num_beams)
            for e, seq in zip(batch, seqs):
                yield e.example, codec.decode(seq)

    qa, recall, sum_em = [], [], []
    for ex, pred in decoded(encoded):
        if ex.task == "qa":
            qa.append(data.exact_match(pred, ex.target))
        else:
            recall.append(data.key_fact_recall(pred, ex.facts))
            sum_em.append(data.exact_match(pred, ex.target))
    questions = [e for e in encoded if e.example.task == "qa"] if span else []
    qa_span = [data.exact_match(codec.decode(a.ids), ex.target)
               for ex, a in kept_answers(model, codec, questions, device, batch_tokens=batch_tokens,
                                         batch_size=batch_size, use_global=use_global, autocast=autocast,
                                         num_beams=num_beams)]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    out = dict(qa_em=mean(qa), summary_recall=mean(recall), summary_em=mean(sum_em),
               n_qa=len(qa), n_summary=len(recall))
    if span:
        out["qa_span_em"] = mean(qa_span)
    return out


# ------------------------------------------------------------------------------------------------
# model, checkpoint, main loop
# ------------------------------------------------------------------------------------------------
class WeightAverage:
    """An exponential moving average of a model's trainable weights (Polyak averaging).

    `update(step)` moves the average towards the current weights by 1 - d, with
    d = min(decay, (1 + step) / (10 + step)) so that early steps are not weighed by a long
    history of the starting point; `swapped()` puts the averaged weights into the model for
    scoring and saving and puts the training weights back afterwards.
    """

    def __init__(self, model, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"--ema must be between 0 and 1 (exclusive), got {decay}")
        self.decay = decay
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.average = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - d)

    @contextlib.contextmanager
    def swapped(self):
        with torch.no_grad():
            backup = [p.detach().clone() for p in self.params]
            for p, a in zip(self.params, self.average):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, b in zip(self.params, backup):
                    p.copy_(b)


def insert_layers(model, encoder_at: int | None = None, encoder_window: int | None = None,
                  decoder_at: int | None = None):
    """A deeper copy of a trained `model`: a new encoder layer at index `encoder_at` (attention
    window `encoder_window`, default that of the layer it precedes) and/or a new decoder layer at
    `decoder_at`; the other layers keep their weights.

    A new layer starts as (almost) the identity, so the deeper model begins where the trained one
    stands: its attention and feed-forward weights are copies of its neighbour's, but the
    projections that write into the residual stream (attention outputs, second feed-forward
    matrix) are zero; its inner layer norms are plain normalisations and its last one repeats the
    layer norm that produced its input. The layer norms of the trained model are close to
    (weight 1, bias 0), so the result differs from the original by a few percent at most, and
    training then finds a use for the new layer.
    """
    from ledviz import LEDConfig, LEDForConditionalGeneration

    old_cfg = model.config
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    windows = list(old_cfg.attention_windows())
    n_enc, n_dec = old_cfg.encoder_layers, old_cfg.decoder_layers
    for name, at, n in (("encoder_at", encoder_at, n_enc), ("decoder_at", decoder_at, n_dec)):
        if at is not None and not 0 <= at <= n:
            raise ValueError(f"{name}={at}: a new layer goes at an index from 0 to {n}")

    def grow(stack: str, at: int | None, n: int, zero: Sequence[str], plain_norms: Sequence[str]) -> dict:
        if at is None:
            return {k: v for k, v in sd.items() if k.startswith(f"led.{stack}.layers.")}
        out = {}
        for k, v in sd.items():
            if k.startswith(f"led.{stack}.layers."):
                i, rest = k[len(f"led.{stack}.layers."):].split(".", 1)
                out[f"led.{stack}.layers.{int(i) + (int(i) >= at)}.{rest}"] = v
        src = min(at, n - 1)  # the layer it precedes, or the last one
        before = f"led.{stack}.layers.{at - 1}.final_layer_norm" if at > 0 else f"led.{stack}.layernorm_embedding"
        for k, v in sd.items():
            prefix = f"led.{stack}.layers.{src}."
            if not k.startswith(prefix):
                continue
            rest = k[len(prefix):]
            new = v.clone()
            if any(rest.startswith(z + ".") for z in zero):
                new.zero_()
            elif any(rest.startswith(z + ".") for z in plain_norms):
                new.fill_(1.0 if rest.endswith("weight") else 0.0)
            elif rest.startswith("final_layer_norm."):
                new = sd[before + "." + rest.split(".", 1)[1]].clone()
            out[f"led.{stack}.layers.{at}.{rest}"] = new
        return out

    state = {k: v for k, v in sd.items() if ".layers." not in k}
    state.update(grow("encoder", encoder_at, n_enc, ("self_attn.output", "fc2"), ("self_attn_layer_norm",)))
    state.update(grow("decoder", decoder_at, n_dec, ("self_attn.out_proj", "encoder_attn.out_proj", "fc2"),
                      ("self_attn_layer_norm", "encoder_attn_layer_norm")))
    if encoder_at is not None:
        windows.insert(encoder_at, encoder_window or windows[min(encoder_at, n_enc - 1)])
    config = LEDConfig.from_dict(old_cfg.to_dict(), encoder_layers=n_enc + (encoder_at is not None),
                                 decoder_layers=n_dec + (decoder_at is not None), attention_window=windows)
    deeper = LEDForConditionalGeneration(config)
    deeper.load_state_dict(state, strict=True)
    return deeper.to(next(model.parameters()).device)


def build_model(args, vocab_size: int):
    """A fresh LEDForConditionalGeneration sized by the command-line flags."""
    from ledviz import LEDConfig, LEDForConditionalGeneration

    windows = [int(w) for w in args.windows.split(",")]
    if len(windows) == 1:
        windows = windows * args.layers
    if len(windows) != args.layers:
        raise SystemExit(f"--windows has {len(windows)} values for {args.layers} encoder layers")
    w = max(windows)
    config = LEDConfig(
        vocab_size=vocab_size, d_model=args.d_model,
        encoder_layers=args.layers, decoder_layers=args.decoder_layers or args.layers,
        encoder_attention_heads=args.heads, decoder_attention_heads=args.heads,
        encoder_ffn_dim=args.ffn, decoder_ffn_dim=args.ffn, attention_window=windows,
        max_encoder_position_embeddings=math.ceil(max(args.max_tokens, args.position_table or 0) / w) * w,
        max_decoder_position_embeddings=128, dropout=args.dropout, attention_dropout=0.0,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
    )
    model = LEDForConditionalGeneration(config)
    if args.sinusoidal_positions:
        with torch.no_grad():
            for table in (model.led.encoder.embed_positions, model.led.decoder.embed_positions):
                table.weight.copy_(sinusoids(*table.weight.shape, scale=args.position_scale))
    return model


def sinusoids(n: int, d: int, scale: float = 0.1) -> torch.Tensor:
    """(n, d) sine/cosine position codes (Vaswani et al.), scaled to the embeddings' size."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float32) / d)
    table = torch.zeros(n, d)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return table * scale


def save_checkpoint(model, codec: Codec, out: str, info: dict) -> None:
    """Weights + config, tokenizer, generation_config.json and demo_training.json into `out`."""
    model.save_pretrained(out)
    codec.save(out)
    with open(os.path.join(out, "generation_config.json"), "w", encoding="utf-8") as f:
        json.dump(GENERATION_CONFIG, f, indent=2, sort_keys=True)
    with open(os.path.join(out, "demo_training.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, sort_keys=True, default=str)


def package(src: str, out: str, logs: Sequence[str] = ()) -> None:
    """Write the checkpoint in `src` to `out` as shipped: float16 weights, tokenizer, generation
    config and training record; `logs` (train_log.jsonl files of successive phases) are joined
    into one train_log.jsonl, each record tagged with its phase: a record that already carries
    one (the joined log of an earlier package) keeps it, the others of a file take the phase
    after the highest one before them."""
    from ledviz import LEDForConditionalGeneration

    os.makedirs(out, exist_ok=True)
    model = LEDForConditionalGeneration.from_pretrained(src).half()
    model.save_pretrained(out)
    tok = data.load_tokenizer(src)
    tok.model_max_length = model.config.max_encoder_position_embeddings  # the model's limit, not LED's 16,384
    Codec(tok).save(out)
    for name in ("generation_config.json", "demo_training.json"):
        shutil.copyfile(os.path.join(src, name), os.path.join(out, name))
    if logs:
        records, last = [], 0
        for path in logs:
            with open(path, encoding="utf-8") as g:
                part = [json.loads(line) for line in g if line.strip()]
            phase = last + 1
            for r in part:
                r.setdefault("phase", phase)
                last = max(last, r["phase"])
            records += part
        with open(os.path.join(out, "train_log.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ledviz.demo.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="checkpoint folder (created; overwritten on each save)")
    p.add_argument("--steps", type=int, default=4500)
    p.add_argument("--batch-tokens", type=int, default=4096, help="padded input tokens per batch")
    p.add_argument("--batch-size", type=int, default=48, help="at most this many examples per batch")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (2e-3 made the encoder collapse)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 5%% of --steps)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=2, help="encoder layers")
    p.add_argument("--decoder-layers", type=int, default=2, help="decoder layers (default: --layers)")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=512)
    p.add_argument("--windows", default="32,64", help="attention window per encoder layer (comma list)")
    p.add_argument("--max-tokens", type=int, default=384, help="longest input, specials included")
    p.add_argument("--position-table", type=int, default=4096,
                   help="encoder positions to allocate (at least --max-tokens); with --sinusoidal-positions, "
                        "longer than the training documents")
    p.add_argument("--sinusoidal-positions", action=argparse.BooleanOptionalAction, default=True,
                   help="start the (learned) position tables as sine/cosine codes and keep them frozen, so "
                        "positions past the training lengths still mean something")
    p.add_argument("--position-scale", type=float, default=0.04,
                   help="amplitude of the sine/cosine position codes (token embeddings start at std 0.02)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--min-tokens", type=int, default=60, help="shortest document")
    p.add_argument("--curriculum", type=float, default=0.0,
                   help="fraction of the steps over which the longest document grows to --max-tokens (0: off)")
    p.add_argument("--tasks", default="summarize,qa")
    p.add_argument("--copy-fraction", type=float, default=0.3,
                   help="share of training examples turned into the auxiliary copy task (see copy_example)")
    p.add_argument("--varied", action="store_true",
                   help="varied data (ledviz.demo.data.Variety): many question and fact-sentence wordings, "
                        "wide values, unanswerable questions; training and validation alike")
    p.add_argument("--hard-variety", action="store_true",
                   help="with --varied: train on data.Variety(hard=True) (more keyword, imperative, upper-case and "
                        "letter-slip questions, more unanswerable questions about the report's own kind, longer "
                        "names and amounts); validation keeps the default varied data")
    p.add_argument("--robust-variety", action="store_true",
                   help="with --varied: train on data.Variety(robust=True) (more training wordings, and noise on "
                        "questions: general words inserted, opening or closing phrases, a word dropped), so "
                        "that unfamiliar question words do not change the answer; validation keeps the default "
                        "varied data")
    p.add_argument("--stream-start", type=int, default=0,
                   help="first example of the training stream (a later fine-tuning phase passes the number "
                        "of examples earlier phases read, so that it sees fresh documents)")
    p.add_argument("--plain-share", type=float, default=0.0,
                   help="with --varied: share of training examples drawn from the plain data instead (the "
                        "fixed wordings the app suggests), so that fine-tuning on varied data does not "
                        "unlearn them; above 0, validation scores plain and varied examples alike and "
                        "ranks checkpoints by the mean of the two")
    p.add_argument("--unanswerable", type=float, default=0.15,
                   help="with --varied: share of questions the report does not answer (answer: "
                        f"{data.NOT_IN_DOCUMENT!r})")
    p.add_argument("--vocab-size", type=int, default=4000)
    p.add_argument("--vocab-docs", type=int, default=1000, help="documents to train the vocabulary on")
    p.add_argument("--tokenizer", default=None, help="use this saved vocabulary instead of training one")
    p.add_argument("--resume", action="store_true",
                   help="start from the weights and vocabulary in --out (optimizer and schedule restart)")
    p.add_argument("--ema", type=float, default=None,
                   help="score and save an exponential moving average of the weights with this decay "
                        "(e.g. 0.999); off by default")
    p.add_argument("--insert-encoder-layer", default=None, metavar="AT[:WINDOW]",
                   help="with --resume: add an encoder layer at index AT (window WINDOW) that starts as "
                        "the identity (see insert_layers)")
    p.add_argument("--insert-decoder-layer", type=int, default=None, metavar="AT",
                   help="with --resume: add a decoder layer at index AT that starts as the identity")
    p.add_argument("--seed", type=int, default=0, help="model init and batch order (the data stream is TRAIN_SEED)")
    p.add_argument("--device", default="auto", help="auto (default: cuda when available, else cpu), cpu or cuda")
    p.add_argument("--micro", action="store_true", help="tiny model and data, a few steps: for CI")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--eval-examples", type=int, default=32, help="validation examples (half QA, half summary)")
    p.add_argument("--keep-best", action="store_true",
                   help="save at an evaluation only when the validation score (mean of QA exact match and "
                        "summary key-fact recall) beats every earlier one, so --out ends with the best "
                        "checkpoint rather than the last")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--pool-batches", type=int, default=8, help="batches generated, sorted and shuffled at once")
    p.add_argument("--time-limit", type=float, default=None, help="stop (and save) after this many minutes")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop (and save) after this many steps, keeping the learning-rate schedule of --steps")
    p.add_argument("--log", default=None, help="JSON-lines log (default: OUT/train_log.jsonl)")
    args = p.parse_args(argv)
    if args.micro:
        flags = {t.split("=")[0] for t in (sys.argv[1:] if argv is None else argv)}
        given = {a.dest for a in p._actions if flags & set(a.option_strings)}
        for k, v in MICRO.items():
            if k not in given:
                setattr(args, k, v)
    args.tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    if not 0.0 <= args.unanswerable <= 1.0:
        p.error(f"--unanswerable must be between 0 and 1, got {args.unanswerable}")
    for name in ("unanswerable", "plain_share", "hard_variety", "robust_variety"):
        if getattr(args, name) != p.get_default(name) and not args.varied:
            p.error(f"--{name.replace('_', '-')} applies to the varied data: add --varied")
    if not 0.0 <= args.plain_share <= 1.0:
        p.error(f"--plain-share must be between 0 and 1, got {args.plain_share}")
    if args.warmup is None:
        args.warmup = max(1, args.steps // 20)
    return args


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        print("warning: CUDA is not available, training on the CPU", file=sys.stderr)
        return torch.device("cpu")
    return torch.device(name)


def _fmt_time(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def validation_value(scores: dict) -> float:
    """One number to rank checkpoints by: the mean of the QA exact match and the summary
    key-fact recall (either alone when the validation set has only one task)."""
    parts = [scores[k] for k, n in (("qa_em", "n_qa"), ("summary_recall", "n_summary")) if scores.get(n)]
    return sum(parts) / len(parts) if parts else 0.0


def validation_set(codec: Codec, args, varied: bool | None = None) -> list[Encoded]:
    """Fixed validation examples from VALID_SEED (alternating summarize / QA, all lengths),
    of the varied data if `varied` (default: --varied), else of the plain data."""
    varied = args.varied if varied is None else varied
    exs = []
    for i in range(args.eval_examples):
        rng = data._example_rng(data.VALID_SEED, i)
        lo, hi = args.min_tokens, max(args.min_tokens, args.max_tokens - 20)
        target = round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        task = args.tasks[i % len(args.tasks)]
        exs.append(encode_example(codec, data.make_example(rng, task, target,
                                                           variety=variety(args) if varied else None),
                                  args.max_tokens))
    return exs


def validation_sets(codec: Codec, args) -> dict[str, list[Encoded]]:
    """The validation sets of a run: {"plain"} or {"varied"}, or both when --plain-share mixes them."""
    if args.varied and args.plain_share > 0.0:
        return {"plain": validation_set(codec, args, varied=False), "varied": validation_set(codec, args)}
    return {"varied" if args.varied else "plain": validation_set(codec, args)}


def validate(model, codec: Codec, sets: dict[str, list[Encoded]], device, **kw) -> tuple[dict, float]:
    """Score every validation set: (scores, value). With one set the scores are score()'s dict;
    with several, {name: score()'s dict} and value is the mean of their validation_value."""
    if len(sets) == 1:
        scores = score(model, codec, next(iter(sets.values())), device, **kw)
        return scores, validation_value(scores)
    scores = {name: score(model, codec, items, device, **kw) for name, items in sets.items()}
    return scores, sum(validation_value(s) for s in scores.values()) / len(scores)


def main(argv=None) -> dict:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    device = _device(args.device)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    autocast = device.type == "cuda" and torch.cuda.is_bf16_supported()
    log_path = args.log or os.path.join(args.out, "train_log.jsonl")
    log_file = open(log_path, "a", encoding="utf-8")

    def log(record: dict) -> None:
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()

    # vocabulary
    t0 = time.time()
    if args.tokenizer or args.resume:
        tok = data.load_tokenizer(args.tokenizer or args.out)
    else:
        tok = data.train_vocabulary(None, args.vocab_size, n_docs=args.vocab_docs,
                                    min_tokens=min(500, args.min_tokens), max_tokens=args.max_tokens)
    codec = Codec(tok)
    print(f"vocabulary: {len(codec)} tokens ({time.time() - t0:.1f}s)", flush=True)

    # model
    if args.resume:
        from ledviz import LEDForConditionalGeneration

        model = LEDForConditionalGeneration.from_pretrained(args.out)
        if args.insert_encoder_layer is not None or args.insert_decoder_layer is not None:
            at, _, window = (args.insert_encoder_layer or "").partition(":")
            model = insert_layers(model, encoder_at=int(at) if at else None,
                                  encoder_window=int(window) if window else None,
                                  decoder_at=args.insert_decoder_layer)
    elif args.insert_encoder_layer is not None or args.insert_decoder_layer is not None:
        raise SystemExit("--insert-encoder-layer / --insert-decoder-layer grow a trained model: add --resume")
    else:
        model = build_model(args, len(codec))
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters, windows {model.config.attention_windows()}, "
          f"device {device}", flush=True)

    if args.sinusoidal_positions:  # frozen: the codes must stay what they are for unseen lengths
        model.led.encoder.embed_positions.weight.requires_grad_(False)
        model.led.decoder.embed_positions.weight.requires_grad_(False)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and p.requires_grad]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 and p.requires_grad]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay to 10%
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        frac = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))

    average = WeightAverage(model, args.ema) if args.ema else None
    stream = TrainStream(codec, args, random.Random(args.seed))
    valid = validation_sets(codec, args)
    info = dict(args=vars(args), params=n_params, seeds=dict(train=data.TRAIN_SEED, valid=data.VALID_SEED,
                                                             test=data.TEST_SEED))
    eval_kw = dict(batch_tokens=args.batch_tokens, batch_size=args.batch_size, autocast=autocast)
    start, last_eval, losses, tokens = time.time(), {}, [], 0
    best = None  # (step, validation value) of the checkpoint in --out
    step = 0
    for step in range(1, args.steps + 1):
        model.train()
        batch = stream.next_batch(step)
        tensors = collate(batch, device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step - 1)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = model(**tensors).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if average is not None:
            average.update(step)
        losses.append(loss.item())
        tokens += int(tensors["attention_mask"].sum())

        elapsed = time.time() - start
        if step % args.log_every == 0 or step == args.steps:
            avg = sum(losses) / len(losses)
            eta = elapsed / step * (args.steps - step)
            print(f"step {step}/{args.steps} loss {avg:.4f} lr {lr_at(step - 1):.2e} "
                  f"len<={stream.max_len(step)} {tokens / elapsed:,.0f} tok/s "
                  f"[{_fmt_time(elapsed)} < {_fmt_time(eta)}]", flush=True)
            log(dict(step=step, loss=avg, lr=lr_at(step - 1), max_len=stream.max_len(step),
                     tokens_per_s=tokens / elapsed, elapsed_s=elapsed))
            losses = []
        out_of_time = ((args.time_limit is not None and elapsed > args.time_limit * 60)
                       or (args.stop_after is not None and step >= args.stop_after))
        if step % args.eval_every == 0 or step == args.steps or out_of_time:
            with average.swapped() if average is not None else contextlib.nullcontext():
                last_eval, value = validate(model, codec, valid, device, **eval_kw)
                for name, s in (last_eval.items() if len(valid) > 1 else [("", last_eval)]):
                    print(f"  eval step {step}{' (averaged weights)' if average else ''}{' ' + name if name else ''}: "
                          f"QA exact match {s['qa_em']:.3f}, "
                          f"summary key-fact recall {s['summary_recall']:.3f}, "
                          f"summary exact {s['summary_em']:.3f}", flush=True)
                keep = not args.keep_best or best is None or value > best[1]
                log(dict(step=step, eval=last_eval, value=value, saved=keep))
                if keep:
                    best = (step, value)
                    save_checkpoint(model, codec, args.out, dict(info, step=step, eval=last_eval,
                                                                 elapsed_s=time.time() - start))
                elif args.keep_best:
                    print(f"  not saved: {args.out} keeps step {best[0]} "
                          f"(validation {best[1]:.3f} >= {value:.3f})", flush=True)
        if out_of_time:
            print(f"stopped after {step} steps (--time-limit / --stop-after)", flush=True)
            break
    log_file.close()
    return dict(step=step, eval=last_eval, saved_step=best[0] if best else None)


if __name__ == "__main__":
    main()
