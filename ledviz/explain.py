"""The teaching example of the "How LED attention works" page: a tiny LED encoder layer on a short
sentence, its raw output layout, the unfolded N x N map, which cell of one is which cell of the
other, and what the band costs next to full attention. No Streamlit here.

The layout (see `ledviz.unfold`): for one head, the encoder returns

- `local` (N, x + 2w + 1): columns [0, x) are the attention of query i to the x global tokens
  ("g:pos"), column x + w + d the attention of query i to key i + d ("-w" ... "+w");
- `global` (N, x): entry [j, c] is the attention of global token c to key j (a global token's own
  row lives here; its row in `local` is zero).

Cell partners: raw local (i, c < x) <-> absolute (i, pos[c]); raw local (i, x + w + d) <-> (i, i + d);
raw global (j, c) <-> absolute (pos[c], j). An absolute cell that none of these reach is never scored.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch

from .attention import window_slots
from .config import LEDConfig
from .errors import InputError
from .modeling import LEDEncoder
from .text import count, decimal
from .unfold import to_dense

Tensor = torch.Tensor

LOCAL, GLOBAL = "local", "global"  # the two raw outputs: encoder_attentions / encoder_global_attentions

# the words of the example, one token each; the model sees them as ids of a made-up vocabulary
EXAMPLE_TEXT = (
    "The report names Maren Okafor as lead of the Velmora site . Its budget is 4,312 and the deadline "
    "falls on 14 March 2034 . Each section repeats a few facts , while distractors mention other "
    "names , places and dates ."
)
MIN_TOKENS = 8
MAX_TOKENS = len(EXAMPLE_TEXT.split()) + 2  # <s>, every word of the example, </s>
MAX_WINDOW = 12  # one-sided w the page offers at most


def window_text(w: int, n_tokens: int | None = None) -> str:
    """The window setting in tokens, for the line under it: what a token sees with a one-sided window `w`,
    and the model's own number for it (a config's attention_window is 2w: LED-base's 1024 is 512 on each side).
    With `n_tokens`, a window that reaches past the text says so."""
    line = (f"w = {w:,}: each token sees the {count(w, 'token')} on either side of it, {2 * w + 1:,} with itself "
            f"(a model's config writes this as attention_window = {2 * w:,}).")
    if n_tokens is not None and w >= n_tokens - 1:
        line += f" Here it reaches every one of the {n_tokens:,} tokens."
    return line


def example_tokens(n_tokens: int) -> list[str]:
    """`<s>`, the first n_tokens - 2 words of EXAMPLE_TEXT, `</s>`."""
    words = EXAMPLE_TEXT.split()
    if not MIN_TOKENS <= n_tokens <= MAX_TOKENS:
        raise InputError(f"the example has {MIN_TOKENS} to {MAX_TOKENS} tokens, got {n_tokens}")
    return ["<s>"] + words[: n_tokens - 2] + ["</s>"]


# ---------------------------------------------------------------------------------------------
# the example
# ---------------------------------------------------------------------------------------------

@dataclass
class ExplainExample:
    """One head of one tiny LED encoder layer on the example sentence, raw and unfolded.

    local_raw (1, H, N, x + 2w + 1) and global_raw (1, H, N, x) or None are the encoder's output
    for all heads, exactly as `encoder_attentions[l]` / `encoder_global_attentions[l]`;
    `local`, `glob` and `dense` are the chosen head's (N, x + 2w + 1), (N, x) and (N, N) maps.
    """

    tokens: list[str]
    window: int  # one-sided w
    global_positions: list[int]  # ascending
    head: int
    local_raw: Tensor
    global_raw: Tensor | None
    global_attention_mask: Tensor  # (1, N)
    dense_all: Tensor  # (H, N, N)

    # ---- shapes and labels ---------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.tokens)

    @property
    def x(self) -> int:
        return len(self.global_positions)

    @property
    def width(self) -> int:
        """Columns of the raw local output: x + 2w + 1."""
        return self.x + 2 * self.window + 1

    @property
    def num_heads(self) -> int:
        return self.local_raw.shape[1]

    @property
    def local(self) -> Tensor:
        return self.local_raw[0, self.head]

    @property
    def glob(self) -> Tensor:
        """(N, x): [j, c] = attention of global token c to key j (empty when x = 0)."""
        if self.global_raw is None:
            return torch.zeros(self.n, 0)
        return self.global_raw[0, self.head]

    @property
    def dense(self) -> Tensor:
        return self.dense_all[self.head]

    def token_labels(self) -> list[str]:
        """'i:token' for every position."""
        return [f"{i}:{t}" for i, t in enumerate(self.tokens)]

    def local_column_labels(self) -> list[str]:
        """'g:pos' for the global columns, then '-w' ... '+w' (the token itself is '0')."""
        w = self.window
        return [f"g:{p}" for p in self.global_positions] + [f"{d:+d}" if d else "0" for d in range(-w, w + 1)]

    def global_column_labels(self) -> list[str]:
        """'g:pos' for each global token (its row, transposed)."""
        return [f"g:{p}" for p in self.global_positions]

    def window_note(self) -> str | None:
        """A line for an example whose window reaches every token (w >= N - 1): it is full attention, and
        the raw output's x + 2w + 1 columns outnumber the tokens. None for a window narrower than that."""
        if self.window < self.n - 1:
            return None
        return (f"The window covers the whole text (w = {self.window} ≥ N − 1 = {self.n - 1}): every token sees "
                f"every other, so this is full attention. The raw output still has x + 2w + 1 = {self.width} "
                f"columns for {self.n} tokens; the window slots beyond the text's ends hold no score (grey).")

    # ---- which cells carry a score ---------------------------------------------------------------
    def is_global(self, i: int) -> bool:
        return i in self.global_positions

    def local_valid(self) -> Tensor:
        """(N, x + 2w + 1) bool: raw local slots that hold a score (the rest are structural zeros)."""
        n, w, x = self.n, self.window, self.x
        g = torch.zeros(n, dtype=torch.bool)
        g[self.global_positions] = True
        band = window_slots(~g[None], w)[0] & ~g[:, None]  # (N, 2w+1): a local key inside the sequence
        cols = (~g)[:, None].expand(n, x)
        return torch.cat([cols, band], dim=1)

    def scored(self) -> Tensor:
        """(N, N) bool: pairs LED scores at all (window, global column, global row)."""
        out = torch.zeros(self.n, self.n, dtype=torch.bool)
        valid = self.local_valid()
        for i in range(self.n):
            for col in valid[i].nonzero().flatten().tolist():
                out[i, self.raw_to_absolute(LOCAL, i, col)[1]] = True
        out[self.global_positions, :] = True
        return out

    def local_display(self) -> Tensor:
        """(N, x + 2w + 1) float32: the chosen head's raw local output, NaN on slots that hold no score."""
        return self.local.masked_fill(~self.local_valid(), float("nan"))

    def global_display(self) -> Tensor:
        """(N, x) float32: the chosen head's global output (every entry is a score)."""
        return self.glob.clone()

    def dense_display(self) -> Tensor:
        """(N, N) float32: the chosen head's unfolded map, NaN on pairs that are never scored."""
        return self.dense.masked_fill(~self.scored(), float("nan"))

    # ---- partner cells -----------------------------------------------------------------------
    def raw_to_absolute(self, part: str, row: int, col: int) -> tuple[int, int] | None:
        """The absolute (query, key) of a raw cell, or None for a slot outside the sequence.

        part LOCAL: (i, col) of the (N, x + 2w + 1) output; part GLOBAL: (j, c) of the (N, x) output.
        """
        n, w, x = self.n, self.window, self.x
        if part == GLOBAL:
            if not (0 <= row < n and 0 <= col < x):
                raise InputError(f"global cell ({row}, {col}) is outside the ({n}, {x}) output")
            return self.global_positions[col], row
        if part != LOCAL:
            raise InputError(f"part must be {LOCAL!r} or {GLOBAL!r}, got {part!r}")
        if not (0 <= row < n and 0 <= col < self.width):
            raise InputError(f"local cell ({row}, {col}) is outside the ({n}, {self.width}) output")
        if col < x:
            return row, self.global_positions[col]
        key = row + col - x - w
        return (row, key) if 0 <= key < n else None

    def absolute_to_raw(self, i: int, j: int) -> tuple[str, int, int] | None:
        """The raw cell (part, row, col) that holds attention of query i to key j, or None (never scored)."""
        n, w, x = self.n, self.window, self.x
        if not (0 <= i < n and 0 <= j < n):
            raise InputError(f"cell ({i}, {j}) is outside the {n} x {n} map")
        if self.is_global(i):  # a global query's whole row is in the global output
            return GLOBAL, j, self.global_positions.index(i)
        if self.is_global(j):  # a global key is a global column (its window slot stays empty)
            return LOCAL, i, self.global_positions.index(j)
        if abs(i - j) <= w:
            return LOCAL, i, x + w + (j - i)
        return None

    def partner(self, part: str, row: int, col: int) -> tuple[str, int, int] | None:
        """The cell in the other view: raw (LOCAL / GLOBAL) -> ("absolute", i, j), "absolute" -> raw; None if none."""
        if part == "absolute":
            return self.absolute_to_raw(row, col)
        cell = self.raw_to_absolute(part, row, col)
        return None if cell is None else ("absolute", *cell)

    def named_tokens(self) -> list[str]:
        """'i “token”' for every position: a token inside a sentence ('key 12 “.”: 0.0003', where the
        axis labels' 'i:token' read 'key 12:.: 0.0003')."""
        return [f"{i} “{t}”" for i, t in enumerate(self.tokens)]

    def describe(self, part: str, row: int, col: int) -> str:
        """One line saying what a cell holds and where its partner is (hover text and captions)."""
        tok = self.named_tokens()
        if part == "absolute":
            where = self.absolute_to_raw(row, col)
            head = f"query {tok[row]} → key {tok[col]}"
            if where is None:
                return f"{head}: never scored (outside the window, neither token global)"
            p, r, c = where
            name = "encoder_attentions" if p == LOCAL else "encoder_global_attentions"
            label = (self.local_column_labels() if p == LOCAL else self.global_column_labels())[c]
            return f"{head}: {decimal(self.dense[row, col])}, stored in {name}[{r}, {label}]"
        if part == GLOBAL:
            pos = self.global_positions[col]
            return (f"global token {tok[pos]} → key {tok[row]}: {decimal(self.glob[row, col])} "
                    f"(unfolded row {pos}, column {row})")
        labels = self.local_column_labels()
        cell = self.raw_to_absolute(LOCAL, row, col)
        if self.is_global(row):
            return f"query {tok[row]} is global: this row is empty, its attention is in encoder_global_attentions"
        if cell is None:
            return f"query {tok[row]}, slot {labels[col]}: outside the sequence (always 0)"
        i, j = cell
        if col >= self.x and self.is_global(j):
            return (f"query {tok[i]}, slot {labels[col]}: key {tok[j]} is global, so this slot stays 0 "
                    f"and the score is in column g:{j}")
        return f"query {tok[i]} → key {tok[j]}: {decimal(self.local[row, col])} (unfolded [{i}, {j}])"


def _vocabulary(tokens: Sequence[str]) -> dict[str, int]:
    """Ids for the example's words: 0-3 the LED specials, the words from 4 (stable over lengths)."""
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for word in EXAMPLE_TEXT.split():
        vocab.setdefault(word, len(vocab))
    return vocab


@torch.inference_mode()
def build_example(n_tokens: int = 32, window: int = 3, global_positions: Sequence[int] = (0,), *,
                  head: int = 0, num_heads: int = 2, seed: int = 0, sharpness: float = 0.35) -> ExplainExample:
    """Run one LED encoder layer with random-but-fixed weights on the example sentence.

    window: one-sided w (the layer's attention_window = 2w); global_positions: tokens with global
    attention; sharpness: the weights' std (larger = more peaked attention). Same seed, same weights.
    """
    tokens = example_tokens(n_tokens)
    if not 1 <= window <= MAX_WINDOW:
        raise InputError(f"the one-sided window w must be between 1 and {MAX_WINDOW}, got {window}")
    positions = sorted({int(p) for p in global_positions})
    bad = [p for p in positions if not 0 <= p < n_tokens]
    if bad:
        raise InputError(f"global positions {bad} are outside the example (0 to {n_tokens - 1})")
    if not 0 <= head < num_heads:
        raise InputError(f"head must be between 0 and {num_heads - 1}, got {head}")
    vocab = _vocabulary(tokens)
    config = LEDConfig(vocab_size=len(vocab) + 1, d_model=8 * num_heads, encoder_layers=1, decoder_layers=1,
                       encoder_attention_heads=num_heads, decoder_attention_heads=num_heads,
                       encoder_ffn_dim=16, decoder_ffn_dim=16, max_encoder_position_embeddings=128,
                       max_decoder_position_embeddings=16, attention_window=2 * window,
                       dropout=0.0, attention_dropout=0.0, init_std=sharpness)
    with torch.random.fork_rng(devices=[]):  # fixed weights without touching the caller's RNG
        torch.manual_seed(seed)
        encoder = LEDEncoder(config).eval()
    ids = torch.tensor([[vocab[t] for t in tokens]])
    gmask = torch.zeros_like(ids)
    gmask[0, positions] = 1
    out = encoder(ids, attention_mask=torch.ones_like(ids), global_attention_mask=gmask, output_attentions=True)
    local = out.attentions[0].float()
    glob = out.global_attentions[0].float() if out.global_attentions is not None else None
    dense = to_dense(local, glob, gmask)[0]  # (H, N, N)
    return ExplainExample(tokens, window, positions, head, local, glob, gmask, dense)


# ---------------------------------------------------------------------------------------------
# cost next to full attention
# ---------------------------------------------------------------------------------------------

def led_pairs(n: int, window: int, n_global: int = 0) -> int:
    """Scores LED computes for one head: N x (2w + 1) window slots + N per global column + N per global row."""
    return n * (2 * window + 1) + 2 * n_global * n


def full_pairs(n: int) -> int:
    """Scores full attention computes for one head: N^2."""
    return n * n


def cost_table(window: int, n_global: int = 1, *, min_n: int = 64, max_n: int = 16_384, points: int = 64,
               heads: int = 1, layers: int = 1, bytes_per_score: int = 4) -> pd.DataFrame:
    """Scored pairs and probability memory of LED vs full attention for N from min_n to max_n (log-spaced).

    Memory = pairs x heads x layers x bytes_per_score (4: float32, 2: float16), in MB (2**20 bytes).
    Below N = 2w + 1 the window is wider than the document and LED scores more slots than N^2.
    """
    if window < 1 or not 2 <= min_n <= max_n:
        raise InputError(f"need window >= 1 and 2 <= min_n <= max_n, got window={window}, min_n={min_n}, max_n={max_n}")
    lo = min_n
    ns = sorted({int(round(v)) for v in torch.logspace(math.log10(lo), math.log10(max_n), points).tolist()} | {max_n})
    scale = heads * layers * bytes_per_score / 2**20
    rows = []
    for n in ns:
        g = min(n_global, n)
        led, full = led_pairs(n, window, g), full_pairs(n)
        rows.append(dict(n=n, led_pairs=led, full_pairs=full, led_mb=led * scale, full_mb=full * scale,
                         ratio=full / led))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# the anatomy of a checkpoint (the Model page)
# ---------------------------------------------------------------------------------------------

# (pattern on the parameter name, part, component): the first match wins
PARAMETER_GROUPS = [
    (r"(^|\.)(shared|embed_tokens)\.", "embeddings", "token embeddings"),
    (r"encoder\.embed_positions\.", "embeddings", "encoder positions"),
    (r"decoder\.embed_positions\.", "embeddings", "decoder positions"),
    (r"encoder\.layernorm_embedding\.", "encoder", "embedding layer norm"),
    (r"decoder\.layernorm_embedding\.", "decoder", "embedding layer norm"),
    (r"encoder\.layers\.\d+\.self_attn\.longformer_self_attn\.(query|key|value)_global\.", "encoder", "global q/k/v"),
    (r"encoder\.layers\.\d+\.self_attn\.longformer_self_attn\.(query|key|value)\.", "encoder", "local q/k/v"),
    (r"encoder\.layers\.\d+\.self_attn\.output\.", "encoder", "attention output"),
    (r"decoder\.layers\.\d+\.self_attn\.", "decoder", "self-attention"),
    (r"decoder\.layers\.\d+\.encoder_attn\.", "decoder", "cross-attention"),
    (r"coder\.layers\.\d+\.fc[12]\.", None, "feed-forward"),
    (r"coder\.layers\.\d+\.\w*layer_norm\.", None, "layer norms"),
    (r"^lm_head\.", "head", "lm head (untied)"),
    (r"(qa_outputs|classification_head)\.", "head", "task head"),
]
PARTS = ("embeddings", "encoder", "decoder", "head", "other")


def _classify(name: str) -> tuple[str, int | None, str]:
    """(part, layer or None, component) of a parameter name."""
    layer_match = re.search(r"coder\.layers\.(\d+)\.", name)
    layer = int(layer_match.group(1)) if layer_match else None
    for pattern, part, component in PARAMETER_GROUPS:
        if re.search(pattern, name):
            if part is None:
                part = "encoder" if ".encoder." in f".{name}" else "decoder"
            return part, layer, component
    return "other", layer, "other"


def parameter_table(model: torch.nn.Module) -> pd.DataFrame:
    """One row per parameter tensor (tied weights once): name, part, layer, component, params, dtype, mb."""
    seen: set[int] = set()
    rows = []
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        part, layer, component = _classify(name)
        rows.append(dict(name=name, part=part, layer=layer, component=component, params=p.numel(),
                         dtype=str(p.dtype).replace("torch.", ""), mb=p.numel() * p.element_size() / 2**20))
    return pd.DataFrame(rows, columns=["name", "part", "layer", "component", "params", "dtype", "mb"])


def parameter_summary(table: pd.DataFrame) -> dict[str, int]:
    """Parameter counts: total and per part (embeddings, encoder, decoder, head, other); they add up."""
    by_part = table.groupby("part")["params"].sum()
    out = {"total": int(table["params"].sum())}
    out.update({part: int(by_part.get(part, 0)) for part in PARTS})
    return out


def parameters_by_component(table: pd.DataFrame) -> pd.DataFrame:
    """Parameters per (part, component) with their share of all parameters, parts in PARTS order and
    the biggest component of each part first: part, component, params, share."""
    total = max(int(table["params"].sum()), 1)
    out = table.groupby(["part", "component"], sort=False)["params"].sum().reset_index()
    out["share"] = out["params"] / total
    order = {p: n for n, p in enumerate(PARTS)}
    return out.sort_values(["part", "params"], key=lambda c: c.map(order) if c.name == "part" else -c)


def parameters_per_layer(table: pd.DataFrame) -> pd.DataFrame:
    """(layer x component) parameter counts of the encoder and decoder layers; rows named like
    'enc 0' and 'dec 1', in the order of the model."""
    layers = table[table.layer.notna()].copy()
    layers["where"] = layers.part.str[:3] + " " + layers.layer.astype(int).astype(str)
    return layers.pivot_table(index="where", columns="component", values="params", aggfunc="sum", sort=False)


def weights_by_dtype(model: torch.nn.Module) -> pd.DataFrame:
    """Memory of the weights (tied once) and buffers, per dtype: dtype, kind, tensors, elements, mb."""
    rows: dict[tuple[str, str], list[int]] = {}
    seen: set[int] = set()
    for kind, items in (("parameters", model.named_parameters()), ("buffers", model.named_buffers())):
        for _, t in items:
            if id(t) in seen:
                continue
            seen.add(id(t))
            key = (str(t.dtype).replace("torch.", ""), kind)
            acc = rows.setdefault(key, [0, 0, 0])
            acc[0] += 1
            acc[1] += t.numel()
            acc[2] += t.numel() * t.element_size()
    return pd.DataFrame([dict(dtype=d, kind=k, tensors=n, elements=e, mb=b / 2**20) for (d, k), (n, e, b) in rows.items()],
                        columns=["dtype", "kind", "tensors", "elements", "mb"])


def attention_memory(config: LEDConfig, n_tokens: int, n_global: int = 1) -> pd.DataFrame:
    """Per encoder layer: the probabilities LED computes for a document of n_tokens with n_global global
    tokens (H x N x (2w + 1 + 2x), one layer at a time), in MB as float32 and float16, next to a dense
    N x N map of every head. Padding to a multiple of the window is left out."""
    if n_tokens < 1 or n_global < 0:
        raise InputError(f"need at least 1 token and 0 or more global tokens, got {n_tokens} and {n_global}")
    x = min(n_global, n_tokens)
    H = config.encoder_attention_heads
    rows = []
    for layer, window in enumerate(config.attention_windows()):
        entries = H * n_tokens * (window + 1 + 2 * x)
        rows.append(dict(layer=layer, attention_window=window, entries=entries, float32_mb=entries * 4 / 2**20,
                         float16_mb=entries * 2 / 2**20, full_float32_mb=H * n_tokens * n_tokens * 4 / 2**20))
    return pd.DataFrame(rows)
