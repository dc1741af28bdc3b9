"""LED (Longformer-Encoder-Decoder) in plain PyTorch.

Read top to bottom: activations, the encoder layer (its sliding-window + global self-attention
lives in `attention.py`), the BART-style decoder attention and layer, the encoder/decoder
stacks, `LEDModel`, and the task heads. Parameter names follow the public
checkpoints (`led.encoder.layers.0.self_attn.longformer_self_attn.query.weight`, ...), so
their state dicts load as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import (
    ATTENTION_IMPLEMENTATIONS,
    GlobalLayout,
    LEDEncoderSelfAttention,
    ReusedBuffer,
    is_inference,
    rows_per_slice,
)
from . import fused
from .cache import KeyValues, LayerCache, cached_length
from .config import LEDConfig
from .errors import InputError
from .outputs import (
    BaseModelOutputWithPastAndCrossAttentions,
    LEDEncoderBaseModelOutput,
    LEDSeq2SeqLMOutput,
    LEDSeq2SeqModelOutput,
    LEDSeq2SeqQuestionAnsweringModelOutput,
    LEDSeq2SeqSequenceClassifierOutput,
)
from .generation import GenerationMixin
from .pretrained import LEDPreTrainedModel

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "tanh": torch.tanh,
}
# in-place versions, used by the encoder's inference path
_INPLACE_ACTIVATIONS = {
    "gelu": torch.ops.aten.gelu_,
    "relu": torch.relu_,
    "tanh": torch.tanh_,
}

# An attention sink receives each encoder layer's probabilities as they are produced:
# sink(layer_index, local_probs (B, H, N, x + 2w + 1), global_probs (B, H, N, x) or None)
AttentionSink = Callable[[int, torch.Tensor, "torch.Tensor | None"], None]


def get_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation_function {name!r} is not supported; use one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def shift_tokens_right(input_ids: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs from targets: prepend the start token, drop the last token, -100 -> pad."""
    shifted = input_ids.new_zeros(input_ids.shape)
    shifted[:, 1:] = input_ids[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


# ---------------------------------------------------------------------------------------------
# Attention modules
# ---------------------------------------------------------------------------------------------

class LEDEncoderAttention(nn.Module):
    """Holds the Longformer self-attention and its output projection (the checkpoints' names);
    LEDEncoderLayer calls them, so that at inference the projection runs in place."""

    def __init__(self, config: LEDConfig, layer_id: int):
        super().__init__()
        self.longformer_self_attn = LEDEncoderSelfAttention(config, layer_id)
        self.output = nn.Linear(config.d_model, config.d_model)


class LEDDecoderAttention(nn.Module):
    """Multi-head attention of the decoder (self or cross), with a key/value cache."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, is_decoder: bool = True, bias: bool = True):
        super().__init__()
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.scaling = self.head_dim ** -0.5
        self.dropout = dropout
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)

    def key_values(self, states: torch.Tensor) -> KeyValues:
        """The keys and values (B, H, S, hd) of states (B, S, D)."""
        return KeyValues(self._heads(self.k_proj(states)), self._heads(self.v_proj(states)))

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        past_key_value: KeyValues | None = None,
        attention_mask: torch.Tensor | None = None,
        layer_head_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, KeyValues]:
        """attention_mask: additive, broadcast to (B, 1, T, S). Returns output (B, T, D), probs (B, H, T, S)
        (with output_attentions) and the keys/values to cache."""
        B, T, D = hidden_states.shape
        q = self._heads(self.q_proj(hidden_states) * self.scaling)
        if key_value_states is not None:
            # cross-attention: keys/values of the encoder output are computed once, then reused
            k, v = past_key_value if past_key_value is not None else self.key_values(key_value_states)
        else:
            k, v = self.key_values(hidden_states)
            if past_key_value is not None:
                k = torch.cat([past_key_value.key, k], dim=2)
                v = torch.cat([past_key_value.value, v], dim=2)
        scores = q @ k.transpose(-1, -2)  # (B, H, T, S)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = scores.softmax(dim=-1)
        if layer_head_mask is not None:
            probs = layer_head_mask.view(1, -1, 1, 1) * probs
        out = F.dropout(probs, p=self.dropout, training=self.training) @ v  # (B, H, T, hd)
        out = self.out_proj(out.transpose(1, 2).reshape(B, T, D))
        return out, (probs if output_attentions else None), KeyValues(k, v)


# ---------------------------------------------------------------------------------------------
# Layers and stacks
# ---------------------------------------------------------------------------------------------

def _rows_in_place(x: torch.Tensor, buffer: ReusedBuffer, rows: int,
                   fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """x (N, D) <- fn(x), `rows` rows at a time, for a row-wise fn(part, buf) that returns its
    (part rows, D) result (buf, a view of `buffer` of that shape, it may write into): no second
    (N, D) tensor."""
    N, D = x.shape
    buf = buffer.view((rows, D), x)
    for r0 in range(0, N, rows):
        part = x[r0: r0 + rows]
        part.copy_(fn(part, buf[: part.shape[0]]))


def _narrow_stream(stream: torch.Tensor, dtype: torch.dtype, layout: GlobalLayout) -> torch.Tensor:
    """The float32 residual stream (B, L, D) in the weights' dtype: the copy the previous layer's last layer
    norm wrote beside it (GlobalLayout.narrow_stream) where it is still this stream's, else a conversion."""
    mirror = layout.narrow_stream
    layout.narrow_stream = None
    if mirror is not None and mirror[0] is stream and mirror[1].dtype == dtype and mirror[1].numel() == stream.numel():
        return mirror[1].view(stream.shape)
    return stream.to(dtype)


class LEDEncoderLayer(nn.Module):
    def __init__(self, config: LEDConfig, layer_id: int):
        super().__init__()
        d = config.d_model
        self.self_attn = LEDEncoderAttention(config, layer_id)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.dropout, self.activation_dropout = config.dropout, config.activation_dropout
        self.activation_fn = get_activation(config.activation_function)
        self.activation_inplace = _INPLACE_ACTIVATIONS.get(config.activation_function)

    def forward(self, hidden_states, layout, layer_head_mask=None, output_attentions=False, probs_dtype=None):
        """hidden_states (B, L, D) in the weights' dtype, or for inference with bfloat16 weights in float32
        (the encoder's float32 residual stream, `wide_residual_stream`): then the output is float32 too."""
        # attention block (post-LayerNorm)
        residual = hidden_states
        weights_dtype = self.fc1.weight.dtype
        if hidden_states.dtype != weights_dtype:  # the wide stream: products take the weights' dtype
            hidden_states = _narrow_stream(hidden_states, weights_dtype, layout)
        h, local_probs, global_probs = self.self_attn.longformer_self_attn(
            hidden_states, layout, layer_head_mask, output_attentions, probs_dtype)
        if is_inference(self) and residual.dtype != h.dtype:
            h = self._tail_inference_wide(h.contiguous(), residual, layout)
        elif is_inference(self):
            h = self._tail_inference(h.contiguous(), residual, layout)
        else:
            h = self.self_attn.output(h)
            h = residual + F.dropout(h, p=self.dropout, training=self.training)
            h = self.self_attn_layer_norm(h)
            # feed-forward block
            residual = h
            f = F.dropout(self.activation_fn(self.fc1(h)), p=self.activation_dropout, training=self.training)
            h = residual + F.dropout(self.fc2(f), p=self.dropout, training=self.training)
            h = self.final_layer_norm(h)
        if h.dtype == torch.float16 and not torch.isfinite(h).all():
            limit = torch.finfo(h.dtype).max - 1000
            h = h.clamp(-limit, limit)
        return h, local_probs, global_probs

    def _tail_inference(self, h: torch.Tensor, residual: torch.Tensor, layout: GlobalLayout) -> torch.Tensor:
        """Output projection, residual sums, layer norms and feed-forward without autograd, written
        over `h` (the attention output, which only this layer holds) a slice of rows at a time: no
        second (L, D) tensor, and the (L, ffn) activations of a long document only ever a slice
        at a time, in a scratch buffer shared by the layers of the pass."""
        B, L, D = h.shape
        flat = h.view(B * L, D)
        ffn = self.fc1.out_features
        rows = self._tail_rows(B * L, h)
        activations = layout.scratch.scores_or_activations.view((rows, ffn), h)
        proj, ln1, ln2 = self.self_attn.output, self.self_attn_layer_norm, self.final_layer_norm

        def layer_norm(ln: nn.LayerNorm, t: torch.Tensor) -> torch.Tensor:
            return F.layer_norm(t, ln.normalized_shape, ln.weight, ln.bias, ln.eps)

        def feed_forward(part: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
            f = self._fc1_activated(part, activations[: part.shape[0]])
            return layer_norm(ln2, torch.addmm(self.fc2.bias, f, self.fc2.weight.t(), out=buf).add_(part))

        out_rows = layout.scratch.layer_rows
        _rows_in_place(flat, out_rows, rows, lambda part, buf: torch.addmm(proj.bias, part, proj.weight.t(), out=buf))
        flat.add_(residual.reshape(B * L, D))
        _rows_in_place(flat, out_rows, rows, lambda part, buf: layer_norm(ln1, part))
        _rows_in_place(flat, out_rows, rows, feed_forward)
        return h

    def _tail_rows(self, n: int, h: torch.Tensor) -> int:
        """Rows per slice of the inference tail over n rows like h: the (rows, ffn) activations within the
        inference path's slice size, and where fc1 takes fused.linear_gelu (whose result is a new tensor),
        within fused.LINEAR_GELU_MAX_BYTES, so that the allocator reuses its memory rather than mapping
        fresh pages for every slice."""
        row_bytes = self.fc1.out_features * h.element_size()
        rows = rows_per_slice(n, row_bytes)
        if self.activation_fn is F.gelu and fused.linear_gelu_takes(h.view(-1, h.shape[-1]), self.fc1.weight):
            rows = min(rows, max(1, fused.LINEAR_GELU_MAX_BYTES // row_bytes))
        return rows

    def _fc1_activated(self, part: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """activation(fc1(part)) without autograd: the product into `out` (a scratch slice), the
        activation in place where it has an in-place form; in bfloat16 with GELU, one oneDNN product with
        the bias and GELU in its epilogue (fused.linear_gelu: a new tensor, not `out`) where PyTorch has it,
        else the product without its bias, then the bias and GELU in one pass of the fused kernel (where it
        runs)."""
        if self.activation_fn is F.gelu:
            f = fused.linear_gelu(part, self.fc1.weight, self.fc1.bias)  # None where it does not take these
            if f is not None:
                return f
            if fused.bias_gelu_takes(out):
                f = torch.mm(part, self.fc1.weight.t(), out=out)
                fused.bias_gelu(f, self.fc1.bias)
                return f
        f = torch.addmm(self.fc1.bias, part, self.fc1.weight.t(), out=out)
        if self.activation_inplace is not None:
            self.activation_inplace(f)
            return f
        return self.activation_fn(f)

    def _tail_inference_wide(self, h: torch.Tensor, residual: torch.Tensor, layout: GlobalLayout) -> torch.Tensor:
        """`_tail_inference` with the residual stream in float32 (residual and the result (B, L, D) float32):
        the products in the weights' dtype, the sums and layer norms in float32, so that the stream is
        rounded only where a product reads it."""
        B, L, D = h.shape
        flat, res = h.view(B * L, D), residual.reshape(B * L, D)
        # the result over the input stream where the encoder keeps no copy of it (fresh memory costs page faults)
        out = res if layout.stream_reusable and res.is_contiguous() else \
            torch.empty(B * L, D, dtype=torch.float32, device=h.device)
        ffn = self.fc1.out_features
        rows = self._tail_rows(B * L, h)
        activations = layout.scratch.scores_or_activations.view((rows, ffn), h)
        narrow = layout.scratch.layer_rows.view((rows, D), h)  # a slice in the weights' dtype
        proj, ln1, ln2 = self.self_attn.output, self.self_attn_layer_norm, self.final_layer_norm

        def layer_norm(ln: nn.LayerNorm, t: torch.Tensor) -> torch.Tensor:
            return F.layer_norm(t, ln.normalized_shape, ln.weight.float(), ln.bias.float(), ln.eps)

        def add_norm(inp: torch.Tensor, o: torch.Tensor, add: torch.Tensor, add_bias: torch.Tensor, ln: nn.LayerNorm,
                     to_narrow: torch.Tensor | None) -> None:
            """o = ln(inp + add + add_bias) (and to_narrow = o in the weights' dtype): the fused kernel's one
            pass per row (no temporaries), else PyTorch operations."""
            if fused.residual_layer_norm(inp, o, add, add_bias, ln, to_narrow):
                return
            torch.add(inp, add, out=o).add_(add_bias)  # float32 sums
            o.copy_(layer_norm(ln, o))
            if to_narrow is not None:
                to_narrow.copy_(o)

        # the result in the weights' dtype too, for the next layer's products (written by the last layer norm
        # as it goes, in the scratch the next layer reads it from: nothing of this layer reads it by then)
        mirror = layout.scratch.narrow_stream.view((B * L, D), h)
        for r0 in range(0, B * L, rows):
            r1 = min(B * L, r0 + rows)
            buf = narrow[: r1 - r0]
            o = out[r0:r1]
            # the biases of the output projection and fc2 join the float32 sum
            add_norm(res[r0:r1], o, torch.mm(flat[r0:r1], proj.weight.t(), out=buf), proj.bias, ln1, buf)
            f = self._fc1_activated(buf, activations[: r1 - r0])
            add_norm(o, o, torch.mm(f, self.fc2.weight.t(), out=buf), self.fc2.bias, ln2, mirror[r0:r1])
        result = out.view(B, L, D)
        layout.narrow_stream = (result, mirror)
        return result


class LEDDecoderLayer(nn.Module):
    def __init__(self, config: LEDConfig):
        super().__init__()
        d, h = config.d_model, config.decoder_attention_heads
        self.self_attn = LEDDecoderAttention(d, h, dropout=config.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.encoder_attn = LEDDecoderAttention(d, h, dropout=config.attention_dropout)
        self.encoder_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, config.decoder_ffn_dim)
        self.fc2 = nn.Linear(config.decoder_ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.dropout, self.activation_dropout = config.dropout, config.activation_dropout
        self.activation_fn = get_activation(config.activation_function)

    def forward(self, hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask,
                layer_head_mask=None, cross_attn_layer_head_mask=None, past_key_value: LayerCache | None = None,
                output_attentions=False, cross_group: int = 1):
        """hidden_states (R, T, D) after the positions `past_key_value` holds.

        cross_group > 1: the decoder rows come in groups of that size per encoder row (the beams of
        one document); each group is folded into one query sequence, so all of them read the same
        cross-attention keys/values without a copy per row. Returns h, self probs, cross probs, the
        new LayerCache.
        """
        past = past_key_value or LayerCache()
        # causal self-attention
        residual = hidden_states
        h, self_probs, self_kv = self.self_attn(hidden_states, None, past.self_attn, attention_mask, layer_head_mask,
                                                output_attentions)
        h = self.self_attn_layer_norm(residual + F.dropout(h, p=self.dropout, training=self.training))
        # cross-attention onto the encoder output
        residual = h
        R, T, D = h.shape
        folded = h.reshape(R // cross_group, cross_group * T, D) if cross_group > 1 else h
        c, cross_probs, cross_kv = self.encoder_attn(
            folded, encoder_hidden_states, past.cross_attn, encoder_attention_mask, cross_attn_layer_head_mask,
            output_attentions,
        )
        if cross_group > 1:
            c = c.reshape(R, T, D)
            if cross_probs is not None:  # (B, H, group * T, N) -> (R, H, T, N)
                B, H, _, N = cross_probs.shape
                cross_probs = cross_probs.view(B, H, cross_group, T, N).transpose(1, 2).reshape(R, H, T, N)
        h = self.encoder_attn_layer_norm(residual + F.dropout(c, p=self.dropout, training=self.training))
        # feed-forward
        residual = h
        f = F.dropout(self.activation_fn(self.fc1(h)), p=self.activation_dropout, training=self.training)
        h = self.final_layer_norm(residual + F.dropout(self.fc2(f), p=self.dropout, training=self.training))
        return h, self_probs, cross_probs, LayerCache(self_kv, cross_kv)


class LEDEmbedding(nn.Embedding):
    """nn.Embedding whose random start is skipped when it is built on the "meta" device: there
    from_pretrained assigns every weight from the checkpoint, and torch's normal_ on a meta tensor
    first imports torch._dynamo, about a second of a fresh process's load time."""

    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            super().reset_parameters()


class LEDLearnedPositionalEmbedding(LEDEmbedding):
    """Learned absolute positions 0, 1, ... (no offset, unlike BART)."""

    def forward(self, seq_len: int, past_len: int = 0) -> torch.Tensor:  # type: ignore[override]
        positions = torch.arange(past_len, past_len + seq_len, dtype=torch.long, device=self.weight.device)
        return super().forward(positions)


def _first_rows(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """The first n positions of x along dim, trimming the window padding; x itself when there is none (so a
    caller's retain_grad on a returned state or attention sees its gradient)."""
    return x if x.shape[dim] == n else x.narrow(dim, 0, n)


def _check_cache_position(cache_position: torch.Tensor | None, past_len: int, T: int) -> None:
    """transformers' `cache_position`: LED's decoder writes its cache in order, so the positions can only be the
    T after the `past_len` cached ones."""
    if cache_position is None:
        return
    expected = torch.arange(past_len, past_len + T)
    if tuple(cache_position.shape) != (T,) or not torch.equal(cache_position.detach().cpu().long(), expected):
        raise InputError(f"cache_position must be the {T} positions after the {past_len} cached ones "
                         f"({expected.tolist()}), got {cache_position.tolist()}: LED's cache is written in order")


def _check_mask(name: str, mask: torch.Tensor | None, shape: tuple[int, ...]) -> None:
    if mask is not None and tuple(mask.shape) != tuple(shape):
        raise InputError(
            f"{name} has shape {tuple(mask.shape)} but the input has shape {tuple(shape)}: "
            f"give one mask value per input token"
        )


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """bool mask -> additive mask: 0 where allowed, the dtype's minimum elsewhere."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def _padding_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, S) 1/0 key mask -> additive (B, 1, 1, S), broadcast over heads and queries."""
    return _additive(mask[:, None, None, :].to(torch.bool), dtype)


def _causal_mask(T: int, past_len: int, dtype: torch.dtype, device, padding: torch.Tensor | None = None):
    """Additive (B or 1, 1, T, past + T) self-attention mask of T new decoder positions: causal, and
    `padding` (B, past + T) keys removed. None for a single query, as the reference does."""
    if T == 1:
        return None
    allowed = torch.ones(T, past_len + T, dtype=torch.bool, device=device).tril(past_len)[None, None]
    if padding is not None:
        allowed = allowed & padding[:, None, None, :].bool()
    return _additive(allowed, dtype)


@dataclass
class DecoderStep:
    """What the decoder layers give for T new positions (R rows): hidden (R, T, D), the new cache of
    every layer (with use_cache), and per layer the inputs and attentions when asked."""

    hidden: torch.Tensor
    caches: list[LayerCache] | None = None
    hidden_states: tuple | None = None
    self_attentions: tuple | None = None
    cross_attentions: tuple | None = None


class LEDEncoder(LEDPreTrainedModel):
    """Embeddings and the Longformer encoder layers; pads to a multiple of the window and trims back."""

    def __init__(self, config: LEDConfig, embed_tokens: nn.Embedding | None = None):
        super().__init__(config)
        self.dropout, self.layerdrop = config.dropout, config.encoder_layerdrop
        self.padding_idx = config.pad_token_id
        self.max_source_positions = config.max_encoder_position_embeddings
        self.embed_tokens = embed_tokens or LEDEmbedding(config.vocab_size, config.d_model, self.padding_idx)
        self.embed_positions = LEDLearnedPositionalEmbedding(config.max_encoder_position_embeddings, config.d_model)
        self.layers = nn.ModuleList([LEDEncoderLayer(config, i) for i in range(config.encoder_layers)])
        self.layernorm_embedding = nn.LayerNorm(config.d_model)
        self.gradient_checkpointing = False
        self.checkpoint_kwargs = {"use_reentrant": False}  # torch.utils.checkpoint's, see gradient_checkpointing_enable
        # bfloat16 weights, inference on the CPU: the residual stream stays float32 (see forward)
        self.wide_residual_stream = True
        self.post_init()

    def set_attention_implementation(self, name: str, block_size: int | None = None) -> None:
        """Choose the self-attention's implementation: "blocked" (default; the fast path at inference, and
        on CUDA the GPU path), "reference" (one gathered window per query) or "sdpa" (the GPU path,
        ledviz/attention_gpu.py, on any device); `block_size`: query rows per block."""
        if name not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"attention implementation must be one of {ATTENTION_IMPLEMENTATIONS}, got {name!r}")
        for layer in self.layers:
            layer.self_attn.longformer_self_attn.implementation = name
            layer.self_attn.longformer_self_attn.block_size = block_size

    def _pad_to_window(self, mask_state: torch.Tensor, inputs_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad the embeddings (B, N, D) and the mask state (B, N) to a multiple of the largest attention window."""
        window = max(self.config.attention_windows())
        L = inputs_embeds.shape[1]
        pad = (window - L % window) % window
        if L + pad > self.max_source_positions:
            raise InputError(
                f"the input has {L} tokens (padded to {L + pad}, a multiple of the attention window {window}), "
                f"but this model reads at most {self.max_source_positions} tokens "
                f"(max_encoder_position_embeddings): truncate the input, e.g. tokenizer(..., truncation=True, "
                f"max_length={self.max_source_positions - (self.max_source_positions % window)})"
            )
        if pad:
            pad_ids = torch.full((inputs_embeds.shape[0], pad), self.padding_idx, dtype=torch.long, device=inputs_embeds.device)
            inputs_embeds = torch.cat([inputs_embeds, self.embed_tokens(pad_ids)], dim=1)
            mask_state = F.pad(mask_state, (0, pad), value=0)
        return mask_state, inputs_embeds

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        global_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        attention_sink: AttentionSink | None = None,
        attention_layers: list[int] | None = None,
        attention_dtype: torch.dtype | None = None,
    ):
        """Encode a batch. `global_attention_mask` 1 marks global tokens (padding wins over global).

        Keeping attentions: `output_attentions` returns them all; `attention_layers` keeps only
        those layers (others are None), `attention_dtype` stores them in reduced precision, and
        `attention_sink(layer, local, global)` receives each layer's (trimmed) probabilities as the
        encoder produces them, so a caller can reduce them without holding every layer at once.
        """
        cfg = self.config
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = cfg.return_dict if return_dict is None else return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("give exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            if input_ids.dim() != 2:
                raise InputError(f"input_ids must have shape (batch, sequence), got {tuple(input_ids.shape)}")
            if input_ids.shape[1] == 0:
                raise InputError("input_ids is empty: the document has no tokens")
            inputs_embeds = self.embed_tokens(input_ids)
        B, N = inputs_embeds.shape[:2]
        _check_mask("attention_mask", attention_mask, (B, N))
        _check_mask("global_attention_mask", global_attention_mask, (B, N))

        # 0 = padding, 1 = local, 2 = global (padding wins over global)
        keep = torch.ones(B, N, dtype=torch.long, device=inputs_embeds.device) if attention_mask is None else (attention_mask > 0).long()
        mask_state = keep if global_attention_mask is None else keep * (1 + (global_attention_mask > 0).long())
        mask_state, inputs_embeds = self._pad_to_window(mask_state, inputs_embeds)
        layout = GlobalLayout.from_mask(mask_state)
        if head_mask is not None and head_mask.shape[0] != len(self.layers):
            raise InputError(f"head_mask is given for {head_mask.shape[0]} layers, but the encoder has {len(self.layers)}")

        # bfloat16 weights at inference on the CPU: the residual stream between the layers stays in float32
        # (each layer's products still read bfloat16), which halves the error of the attention probabilities
        # (only for the CPU's "blocked" attention, whose tail and kernel it is made for: the GPU path,
        # "sdpa", keeps its stream in the weights' dtype wherever it runs, as on a GPU)
        model_dtype = inputs_embeds.dtype
        wide = (self.wide_residual_stream and model_dtype == torch.bfloat16 and inputs_embeds.device.type == "cpu"
                and is_inference(self)
                and all(layer.self_attn.longformer_self_attn.implementation == "blocked" for layer in self.layers))

        # embeddings; on the wide stream their sum and layer norm in float32 too (in bfloat16 the sum's rounding,
        # magnified by the norm, was the largest single part of the probabilities' error)
        positions = self.embed_positions(inputs_embeds.shape[1])
        if wide:
            # the stream's one fresh float32 tensor, normed in place; the fused kernel also writes the first
            # layer's bfloat16 copy as it goes (as every layer's last norm does for the next)
            ln, h = self.layernorm_embedding, inputs_embeds.float().add_(positions)
            flat = h.view(-1, h.shape[-1])
            mirror = layout.scratch.narrow_stream.view(tuple(flat.shape), inputs_embeds)
            if fused.residual_layer_norm(flat, flat, None, None, ln, mirror):
                layout.narrow_stream = (h, mirror)
            else:
                h = F.layer_norm(h, ln.normalized_shape, ln.weight.float(), ln.bias.float(), ln.eps)
        else:
            h = inputs_embeds + positions.to(model_dtype)
            h = F.dropout(self.layernorm_embedding(h), p=self.dropout, training=self.training)
        del inputs_embeds  # (B, L, D): not needed past here, and large for a long document
        # the float32 stream a layer receives may be overwritten by its result unless the hidden states are kept
        layout.stream_reusable = wide and not output_hidden_states
        want_probs = output_attentions or attention_sink is not None
        # a sink that reduces the probabilities to per-row statistics can take them from the fused kernel
        sink_row_stats = bool(getattr(attention_sink, "wants_row_statistics", False))
        all_hidden = [] if output_hidden_states else None
        all_local = [] if output_attentions else None
        all_global = [] if (output_attentions and layout.num_global) else None
        for idx, layer in enumerate(self.layers):
            if output_hidden_states:
                all_hidden.append(h)
            # LayerDrop's number is drawn for every layer in eval mode too, as transformers does, so the
            # global RNG is in the same state after the encoder (seeded sampling gives the same tokens)
            if (torch.rand([]) < self.layerdrop) and self.training:  # LayerDrop
                local_probs = global_probs = None
            else:
                layer_mask = head_mask[idx] if head_mask is not None else None
                keep_this = want_probs and (attention_layers is None or idx in attention_layers)
                layout.want_row_stats = sink_row_stats and keep_this
                if self.gradient_checkpointing and self.training:
                    h, local_probs, global_probs = checkpoint(layer, h, layout, layer_mask, keep_this, attention_dtype,
                                                              **self.checkpoint_kwargs)
                else:
                    h, local_probs, global_probs = layer(h, layout, layer_mask, keep_this, attention_dtype)
            # trim padding and put the global probabilities as (B, H, N, x)
            if local_probs is not None:
                local_probs = _first_rows(local_probs, N, dim=2)
                if global_probs is not None:
                    global_probs = _first_rows(global_probs.transpose(2, 3), N, dim=2)
                if attention_dtype is not None and global_probs is not None:
                    global_probs = global_probs.to(attention_dtype)
                if attention_sink is not None:
                    if layout.row_stats is not None:
                        attention_sink.row_statistics(idx, _first_rows(layout.row_stats, N, dim=2))
                    attention_sink(idx, local_probs, global_probs)
            layout.row_stats = None
            if output_attentions:
                all_local.append(local_probs)
                if all_global is not None:
                    all_global.append(global_probs)
        if output_hidden_states:
            all_hidden.append(h)
            all_hidden = tuple(_first_rows(s, N, dim=1).to(model_dtype) for s in all_hidden)
        h = _first_rows(h, N, dim=1).to(model_dtype)
        all_local = tuple(all_local) if all_local is not None else None
        all_global = tuple(all_global) if all_global is not None else None
        if not return_dict:
            return tuple(v for v in (h, all_hidden, all_local, all_global) if v is not None)
        return LEDEncoderBaseModelOutput(last_hidden_state=h, hidden_states=all_hidden, attentions=all_local,
                                         global_attentions=all_global)


def to_dtype(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """model.to(dtype) (in place; returns model), except that with bfloat16 the encoders' layer norms keep their
    parameters in float32 with every bit they had: the encoder runs them on its float32 residual stream, and
    their weights rounded to bfloat16 were a large part of the attention probabilities' error (over 16
    validation reports of the embedded model, the largest difference from float32 fell from 1.4e-2 to 1.0e-2).
    A few thousand numbers per layer: the memory is the same. Loading float32 weights into the result later
    (load_state_dict) keeps the norms' bits too."""
    norms = []
    if dtype == torch.bfloat16:
        for encoder in (m for m in model.modules() if isinstance(m, LEDEncoder)):
            norms.append(encoder.layernorm_embedding)
            for layer in encoder.layers:
                norms += [layer.self_attn_layer_norm, layer.final_layer_norm]
    kept = [(ln, [p.detach().to(torch.float32, copy=True) for p in ln.parameters()]) for ln in norms]
    model.to(dtype)
    with torch.no_grad():
        for ln, values in kept:
            ln.to(torch.float32)
            for p, v in zip(ln.parameters(), values):
                p.copy_(v)
    return model


class LEDDecoder(LEDPreTrainedModel):
    """Embeddings and the causal decoder layers with cross-attention onto the encoder output."""

    def __init__(self, config: LEDConfig, embed_tokens: nn.Embedding | None = None):
        super().__init__(config)
        self.dropout, self.layerdrop = config.dropout, config.decoder_layerdrop
        self.padding_idx = config.pad_token_id
        self.max_target_positions = config.max_decoder_position_embeddings
        self.embed_tokens = embed_tokens or LEDEmbedding(config.vocab_size, config.d_model, self.padding_idx)
        self.embed_positions = LEDLearnedPositionalEmbedding(config.max_decoder_position_embeddings, config.d_model)
        self.layers = nn.ModuleList([LEDDecoderLayer(config) for _ in range(config.decoder_layers)])
        self.layernorm_embedding = nn.LayerNorm(config.d_model)
        self.gradient_checkpointing = False
        self.checkpoint_kwargs = {"use_reentrant": False}  # torch.utils.checkpoint's, see gradient_checkpointing_enable
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        global_attention_mask: torch.Tensor | None = None,  # accepted for symmetry; the decoder has none
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        past_key_values: tuple | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache_position: torch.Tensor | None = None,
    ):
        """`cache_position` (transformers' argument) must be the positions after the cache, if given."""
        cfg = self.config
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        use_cache = cfg.use_cache if use_cache is None else use_cache
        return_dict = cfg.return_dict if return_dict is None else return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("give exactly one of decoder_input_ids and decoder_inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        B, T = inputs_embeds.shape[:2]
        caches = [LayerCache.from_legacy(entry) for entry in past_key_values] if past_key_values else None
        past_len = cached_length(caches)
        _check_cache_position(cache_position, past_len, T)
        if past_len + T > self.max_target_positions:
            raise InputError(
                f"the decoder input reaches {past_len + T} tokens but the model's decoder reads at most "
                f"{self.max_target_positions} (max_decoder_position_embeddings): generate fewer tokens"
            )
        if T > 1 and attention_mask is not None:
            _check_mask("decoder_attention_mask", attention_mask, (B, past_len + T))
        step = self.step(inputs_embeds, encoder_hidden_states, encoder_attention_mask, caches, attention_mask,
                         head_mask=head_mask, cross_attn_head_mask=cross_attn_head_mask, use_cache=use_cache,
                         output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        fields = dict(
            last_hidden_state=step.hidden,
            past_key_values=tuple(c.to_legacy() for c in step.caches) if use_cache else None,
            hidden_states=step.hidden_states,
            attentions=step.self_attentions,
            cross_attentions=step.cross_attentions,
        )
        if not return_dict:
            return tuple(v for v in fields.values() if v is not None)
        return BaseModelOutputWithPastAndCrossAttentions(**fields)

    def step(
        self,
        inputs_embeds: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        encoder_attention_mask: torch.Tensor | None,
        caches: list[LayerCache] | None = None,
        attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        use_cache: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        cross_group: int = 1,
    ) -> DecoderStep:
        """The decoder on T new positions: inputs_embeds (R, T, D) after the positions `caches` hold.

        The one decoder step of `forward` and of generation. attention_mask (R, past + T) and
        encoder_attention_mask (B, N) are 1/0 key masks; cross_group: see LEDDecoderLayer.
        """
        T, dtype = inputs_embeds.shape[1], inputs_embeds.dtype
        past_len = cached_length(caches)
        self_mask = _causal_mask(T, past_len, dtype, inputs_embeds.device, attention_mask)
        cross_mask = None
        if encoder_hidden_states is not None and encoder_attention_mask is not None:
            cross_mask = _padding_mask(encoder_attention_mask, dtype)
        h = inputs_embeds + self.embed_positions(T, past_len).to(dtype)
        h = F.dropout(self.layernorm_embedding(h), p=self.dropout, training=self.training)

        all_hidden = [] if output_hidden_states else None
        all_self = [] if output_attentions else None
        all_cross = [] if output_attentions else None
        new_caches = [] if use_cache else None
        for idx, layer in enumerate(self.layers):
            if output_hidden_states:
                all_hidden.append(h)
            if self.training and torch.rand([]) < self.layerdrop:  # LayerDrop
                continue
            args = (h, self_mask, encoder_hidden_states, cross_mask,
                    head_mask[idx] if head_mask is not None else None,
                    cross_attn_head_mask[idx] if cross_attn_head_mask is not None else None,
                    caches[idx] if caches else None, output_attentions, cross_group)
            if self.gradient_checkpointing and self.training:
                h, self_probs, cross_probs, cache = checkpoint(layer, *args, **self.checkpoint_kwargs)
            else:
                h, self_probs, cross_probs, cache = layer(*args)
            if use_cache:
                new_caches.append(cache)
            if output_attentions:
                all_self.append(self_probs)
                all_cross.append(cross_probs)
        if output_hidden_states:
            all_hidden.append(h)
        return DecoderStep(
            hidden=h, caches=new_caches,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            self_attentions=tuple(all_self) if output_attentions else None,
            cross_attentions=tuple(all_cross) if output_attentions else None,
        )


def _as_encoder_output(encoder_outputs) -> LEDEncoderBaseModelOutput:
    """Accept an encoder output object or a tuple (hidden, [hidden_states], [attentions], [global])."""
    if isinstance(encoder_outputs, LEDEncoderBaseModelOutput):
        return encoder_outputs
    items = list(encoder_outputs) + [None] * 3
    return LEDEncoderBaseModelOutput(*items[:4])


class LEDModel(LEDPreTrainedModel):
    """The bare LED encoder-decoder, returning the decoder's hidden states."""

    base_model_prefix = ""

    def __init__(self, config: LEDConfig):
        super().__init__(config)
        self.shared = LEDEmbedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.encoder = LEDEncoder(config, self.shared)
        self.decoder = LEDDecoder(config, self.shared)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.shared = value
        self.encoder.embed_tokens = value
        self.decoder.embed_tokens = value

    def get_encoder(self) -> LEDEncoder:
        return self.encoder

    def get_decoder(self) -> LEDDecoder:
        return self.decoder

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        decoder_head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        encoder_outputs=None,
        global_attention_mask: torch.Tensor | None = None,
        past_key_values: tuple | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache_position: torch.Tensor | None = None,
    ):
        cfg = self.config
        return_dict = cfg.return_dict if return_dict is None else return_dict
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        if input_ids is not None and input_ids.dim() == 2 and input_ids.shape[1] == 0:
            raise InputError("input_ids is empty: the document has no tokens")
        # the decoder sees the input shifted right when no decoder input is given
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            if input_ids is None:
                raise InputError("give decoder_input_ids (or decoder_inputs_embeds) when the input is given as inputs_embeds")
            decoder_input_ids = shift_tokens_right(input_ids, cfg.pad_token_id, cfg.decoder_start_token_id)
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask,
                head_mask=head_mask, inputs_embeds=inputs_embeds, output_attentions=output_attentions,
                output_hidden_states=output_hidden_states, return_dict=True,
            )
        else:
            encoder_outputs = _as_encoder_output(encoder_outputs)
        dec = self.decoder(
            input_ids=decoder_input_ids, attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state, encoder_attention_mask=attention_mask,
            head_mask=decoder_head_mask, cross_attn_head_mask=cross_attn_head_mask, past_key_values=past_key_values,
            inputs_embeds=decoder_inputs_embeds, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=True, cache_position=cache_position,
        )
        out = LEDSeq2SeqModelOutput(
            last_hidden_state=dec.last_hidden_state,
            past_key_values=dec.past_key_values,
            decoder_hidden_states=dec.hidden_states,
            decoder_attentions=dec.attentions,
            cross_attentions=dec.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
            encoder_global_attentions=encoder_outputs.global_attentions,
        )
        return out if return_dict else out.to_tuple()


def _seq2seq_fields(out: LEDSeq2SeqModelOutput) -> dict:
    """The fields every LED head output copies from the base model output."""
    return dict(
        past_key_values=out.past_key_values,
        decoder_hidden_states=out.decoder_hidden_states,
        decoder_attentions=out.decoder_attentions,
        cross_attentions=out.cross_attentions,
        encoder_last_hidden_state=out.encoder_last_hidden_state,
        encoder_hidden_states=out.encoder_hidden_states,
        encoder_attentions=out.encoder_attentions,
        encoder_global_attentions=out.encoder_global_attentions,
    )


class LEDForConditionalGeneration(GenerationMixin, LEDPreTrainedModel):
    """LED with a language-modeling head (tied to the shared embeddings): summarization, generative QA."""

    _tied_weights = {"lm_head.weight": "led.shared.weight"}

    def __init__(self, config: LEDConfig):
        super().__init__(config)
        self.led = LEDModel(config)
        self.register_buffer("final_logits_bias", torch.zeros((1, config.vocab_size)))
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()
        self.tie_weights()

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.led.shared.weight

    def get_encoder(self) -> LEDEncoder:
        return self.led.encoder

    def get_decoder(self) -> LEDDecoder:
        return self.led.decoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.led.shared

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        decoder_head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        encoder_outputs=None,
        global_attention_mask: torch.Tensor | None = None,
        past_key_values: tuple | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache_position: torch.Tensor | None = None,
    ):
        """labels (B, T): target ids, -100 ignored in the loss; the decoder input defaults to them shifted right."""
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        out = self.led(
            input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask, head_mask=head_mask, decoder_head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask, encoder_outputs=encoder_outputs,
            global_attention_mask=global_attention_mask, past_key_values=past_key_values, inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=True, cache_position=cache_position,
        )
        logits = self.lm_head(out.last_hidden_state) + self.final_logits_bias.to(out.last_hidden_state.dtype)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1).to(logits.device))
        res = LEDSeq2SeqLMOutput(loss=loss, logits=logits, **_seq2seq_fields(out))
        return res if return_dict else res.to_tuple()


class LEDClassificationHead(nn.Module):
    """dropout -> dense -> tanh -> dropout -> out_proj on one pooled vector."""

    def __init__(self, input_dim: int, inner_dim: int, num_classes: int, pooler_dropout: float):
        super().__init__()
        self.dense = nn.Linear(input_dim, inner_dim)
        self.dropout = nn.Dropout(p=pooler_dropout)
        self.out_proj = nn.Linear(inner_dim, num_classes)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.dense(self.dropout(hidden_states)))
        return self.out_proj(self.dropout(h))


def _classification_loss(config: LEDConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Regression (1 label), single-label or multi-label classification, as config.problem_type says."""
    problem = config.problem_type
    if problem is None:
        if config.num_labels == 1:
            problem = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
    if problem == "regression":
        return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype)) if config.num_labels == 1 \
            else F.mse_loss(logits, labels.to(logits.dtype))
    if problem == "single_label_classification":
        return F.cross_entropy(logits.view(-1, config.num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class LEDForSequenceClassification(LEDPreTrainedModel):
    """LED with a classification head on the decoder state at the last </s> token."""

    def __init__(self, config: LEDConfig):
        super().__init__(config)
        self.led = LEDModel(config)
        self.classification_head = LEDClassificationHead(config.d_model, config.d_model, config.num_labels,
                                                         config.classifier_dropout)
        self.post_init()

    def get_encoder(self) -> LEDEncoder:
        return self.led.encoder

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        decoder_head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        encoder_outputs=None,
        global_attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ):
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if labels is not None:
            use_cache = False  # as transformers: a training pass keeps no cache
        if input_ids is None:
            raise InputError("LEDForSequenceClassification needs input_ids: it pools at the last </s> token")
        out = self.led(
            input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask, head_mask=head_mask, decoder_head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask, encoder_outputs=encoder_outputs,
            global_attention_mask=global_attention_mask, inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=True,
        )
        hidden = out.last_hidden_state  # (B, T, D), T = input length (decoder reads the shifted input)
        eos = input_ids.eq(self.config.eos_token_id).to(hidden.device)
        counts = eos.sum(dim=1)
        if counts.numel() and (counts != counts[0]).any():
            raise InputError(
                f"every row must hold the same number of </s> tokens (got {counts.tolist()}): the classifier "
                "pools the decoder state at the last </s>"
            )
        if counts.numel() and counts[0] == 0:
            raise InputError("the input has no </s> token: tokenize with add_special_tokens=True")
        pooled = hidden[eos, :].view(hidden.shape[0], -1, hidden.shape[-1])[:, -1, :]
        logits = self.classification_head(pooled)
        loss = _classification_loss(self.config, logits, labels) if labels is not None else None
        res = LEDSeq2SeqSequenceClassifierOutput(loss=loss, logits=logits, **_seq2seq_fields(out))
        return res if return_dict else res.to_tuple()


class LEDForQuestionAnswering(LEDPreTrainedModel):
    """LED with a span head (start/end logits) on the decoder's last hidden state."""

    def __init__(self, config: LEDConfig):
        super().__init__(config)
        config.num_labels = 2  # start and end (labels the config names for two are kept, as in transformers)
        self.led = LEDModel(config)
        self.qa_outputs = nn.Linear(config.d_model, 2)
        self.post_init()

    def get_encoder(self) -> LEDEncoder:
        return self.led.encoder

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        decoder_head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        encoder_outputs=None,
        global_attention_mask: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ):
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if start_positions is not None and end_positions is not None:
            use_cache = False
        out = self.led(
            input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask, head_mask=head_mask, decoder_head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask, encoder_outputs=encoder_outputs,
            global_attention_mask=global_attention_mask, inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=True,
        )
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).split(1, dim=-1)
        start_logits, end_logits = start_logits.squeeze(-1).contiguous(), end_logits.squeeze(-1).contiguous()
        loss = None
        if start_positions is not None and end_positions is not None:
            # positions outside the sequence are ignored
            ignored = start_logits.shape[1]
            start = start_positions.view(-1).clamp(0, ignored)
            end = end_positions.view(-1).clamp(0, ignored)
            loss = (F.cross_entropy(start_logits, start, ignore_index=ignored)
                    + F.cross_entropy(end_logits, end, ignore_index=ignored)) / 2
        res = LEDSeq2SeqQuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                                     **_seq2seq_fields(out))
        return res if return_dict else res.to_tuple()
