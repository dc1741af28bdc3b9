"""ledviz.unfold against the attention it unfolds.

The key test recomputes each layer's dense attention IN THE TEST from the model's own projections
and hidden states (the definition in LED_REFERENCE.md) and compares `to_dense` of the model's
band + global output with it. Attention comes from the models in `SOURCES` (the `attention_sources`
fixture): transformers' LED and Longformer (test-only references) and our own ledviz LED (loaded with
the same weights as transformers' LED). A new source is one more entry there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch
import transformers  # the test-only reference (requirements-test.txt)

import ledviz
from ledviz.errors import InputError
from ledviz.unfold import (
    SparseAttention,
    band_mask,
    global_positions,
    merge_masks,
    sparse_from_outputs,
    synthetic_attention,
    to_dense,
)

WINDOWS = [4, 8]  # per encoder layer: one-sided 2 and 4
TINY = dict(
    vocab_size=99, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
    decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, attention_window=WINDOWS,
    max_encoder_position_embeddings=64, max_decoder_position_embeddings=64,
    init_std=0.3,  # larger than the default so that attention is far from uniform
    dropout=0.0, attention_dropout=0.0,
)
PAD = 1


# ---------------------------------------------------------------------------------------------
# inputs: padding, uneven global counts (one element with none), a global mark on padding
# ---------------------------------------------------------------------------------------------

def make_case(name: str) -> dict[str, torch.Tensor | None]:
    """Inputs for one test case: input_ids, attention_mask, global_attention_mask (or None)."""
    g = torch.Generator().manual_seed(1)
    if name == "uneven":  # N = 13: transformers pads to 16 inside
        lengths, globals_ = [13, 9, 11], [[0, 6], [2, 11], []]  # 11 is padding in element 1: not global
    elif name == "no_global":
        lengths, globals_ = [11, 7], None
    elif name == "edges":  # globals at both ends and next to each other; N = 16 needs no inner padding
        lengths, globals_ = [16, 12], [[0, 1, 15], [11]]
    elif name == "one_element":
        lengths, globals_ = [10], [[4]]
    else:
        raise ValueError(name)
    B, N = len(lengths), max(lengths)
    ids = torch.randint(3, 99, (B, N), generator=g)
    am = torch.zeros(B, N, dtype=torch.long)
    for b, n in enumerate(lengths):
        am[b, :n] = 1
    ids = ids.masked_fill(am == 0, PAD)
    gm = None
    if globals_ is not None:
        gm = torch.zeros(B, N, dtype=torch.long)
        for b, pos in enumerate(globals_):
            gm[b, pos] = 1
    return {"input_ids": ids, "attention_mask": am, "global_attention_mask": gm}


CASES = ["uneven", "no_global", "edges", "one_element"]


# ---------------------------------------------------------------------------------------------
# attention sources
# ---------------------------------------------------------------------------------------------

@dataclass
class EncoderRun:
    """What a source returns: the encoder attentions, the layers' inputs and their self-attention modules."""

    local: tuple  # per layer (B, H, N, x + 2w + 1)
    global_: tuple | None  # per layer (B, H, >= N, x)
    hidden_states: tuple  # hidden_states[l] = input of layer l, (B, N, D)
    attention_module: Callable[[int], Any]  # l -> module with query, key, ..., value_global, num_heads
    outputs: Any


@dataclass
class AttentionSource:
    """A model producing encoder attentions in the band + global layout."""

    name: str
    run: Callable[..., EncoderRun]


def _tf_led() -> transformers.LEDModel:
    """transformers' LEDModel, tiny, seeded, eval mode."""
    torch.manual_seed(0)
    return transformers.LEDModel(transformers.LEDConfig(**TINY)).eval()


def _led_source(name: str, model) -> AttentionSource:
    """An LEDModel (ours or transformers', same module layout) as a source."""

    @torch.no_grad()
    def run(input_ids, attention_mask, global_attention_mask) -> EncoderRun:
        """Run the model on a case and collect what the tests need."""
        out = model(input_ids=input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask,
                    decoder_input_ids=input_ids[:, :3], output_attentions=True, output_hidden_states=True)
        return EncoderRun(out.encoder_attentions, out.encoder_global_attentions, out.encoder_hidden_states,
                          lambda l: model.encoder.layers[l].self_attn.longformer_self_attn, out)

    return AttentionSource(name, run)


def _source_transformers_led() -> AttentionSource:
    """transformers' LEDModel as a source."""
    return _led_source("transformers-led", _tf_led())


def _source_transformers_longformer() -> AttentionSource:
    """transformers' LongformerModel (same layout, attentions / global_attentions) as a source."""
    torch.manual_seed(0)
    config = transformers.LongformerConfig(
        vocab_size=99, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        attention_window=WINDOWS, max_position_embeddings=64, initializer_range=0.3,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=PAD,
    )
    model = transformers.LongformerModel(config, add_pooling_layer=False).eval()

    @torch.no_grad()
    def run(input_ids, attention_mask, global_attention_mask) -> EncoderRun:
        """Run the model on a case and collect what the tests need."""
        out = model(input_ids=input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask,
                    output_attentions=True, output_hidden_states=True)
        return EncoderRun(out.attentions, out.global_attentions, out.hidden_states,
                          lambda l: model.encoder.layer[l].attention.self, out)

    return AttentionSource("transformers-longformer", run)


def _source_ledviz() -> AttentionSource:
    """Our LEDModel, with transformers' LED weights, as a source."""
    model = ledviz.LEDModel(ledviz.LEDConfig(**TINY)).eval()
    model.load_state_dict(_tf_led().state_dict())
    return _led_source("ledviz", model)


SOURCES = {
    "transformers-led": _source_transformers_led,
    "transformers-longformer": _source_transformers_longformer,
    "ledviz": _source_ledviz,
}


@pytest.fixture(scope="module", params=list(SOURCES))
def attention_sources(request) -> AttentionSource:
    """Every model that produces encoder attentions (add ours or others to SOURCES)."""
    return SOURCES[request.param]()


# ---------------------------------------------------------------------------------------------
# the dense definition, computed here from the model's own projections
# ---------------------------------------------------------------------------------------------

def _masked_softmax(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Softmax over allowed entries; rows with none allowed are zero."""
    return scores.masked_fill(~allowed, float("-inf")).softmax(-1).nan_to_num(0.0)


def dense_definition(module, hidden: torch.Tensor, valid: torch.Tensor, is_global: torch.Tensor, w: int) -> torch.Tensor:
    """(B, H, N, N) attention by definition.

    A non-global query attends to non-padding, non-global keys with |i - j| <= w plus every global
    key, scored with query/key (query scaled by 1/sqrt(head_dim)); a global query attends to every
    non-padding key with query_global/key_global; padding rows are zero.
    """
    B, N, D = hidden.shape
    H = module.num_heads
    hd = D // H
    heads = lambda t: t.view(B, N, H, hd).transpose(1, 2)  # noqa: E731  (B, H, N, hd)
    q, k = heads(module.query(hidden)) / math.sqrt(hd), heads(module.key(hidden))
    qg, kg = heads(module.query_global(hidden)) / math.sqrt(hd), heads(module.key_global(hidden))
    i = torch.arange(N)
    near = (i[:, None] - i[None, :]).abs() <= w  # (N, N)
    local_keys = (near[None] & (valid & ~is_global)[:, None, :]) | is_global[:, None, :]  # (B, N, N)
    p_local = _masked_softmax(q @ k.transpose(-1, -2), local_keys[:, None])
    p_global = _masked_softmax(qg @ kg.transpose(-1, -2), valid[:, None, None, :].expand(B, 1, N, N))
    p = torch.where(is_global[:, None, :, None], p_global, p_local)
    return p * valid[:, None, :, None]


def _masks(case):
    """(valid, is_global) of a case."""
    ids = case["input_ids"]
    return merge_masks(case["global_attention_mask"], case["attention_mask"], *ids.shape)


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case_name", CASES)
def test_to_dense_matches_definition(attention_sources, case_name):
    """Key test: to_dense of the model output == the dense definition from the model's projections."""
    case = make_case(case_name)
    run = attention_sources.run(**case)
    valid, is_global = _masks(case)
    for l, w in enumerate(WINDOWS):
        g = run.global_[l] if run.global_ is not None else None
        got = to_dense(run.local[l], g, case["global_attention_mask"], case["attention_mask"])
        want = dense_definition(run.attention_module(l), run.hidden_states[l], valid, is_global, w // 2)
        diff = (got - want).abs().max().item()
        assert diff < 1e-5, f"{attention_sources.name} {case_name} layer {l}: max |to_dense - definition| = {diff:.3e}"


@pytest.mark.parametrize("case_name", CASES)
def test_rows_sum_to_one(attention_sources, case_name):
    """Non-padding rows are distributions; padding rows are zero."""
    case = make_case(case_name)
    run = attention_sources.run(**case)
    valid, _ = _masks(case)
    for l in range(len(WINDOWS)):
        dense = to_dense(run.local[l], run.global_[l] if run.global_ else None,
                         case["global_attention_mask"], case["attention_mask"])
        sums = dense.sum(-1)  # (B, H, N)
        err = (sums - valid[:, None, :].float()).abs().max().item()
        assert err < 1e-5, f"{attention_sources.name} {case_name} layer {l}: row sums off by {err:.3e}"


@pytest.mark.parametrize("case_name", CASES)
def test_sparse_equals_dense(attention_sources, case_name):
    """Rows, columns, COO/CSR and row sums of the sparse form equal the dense map."""
    case = make_case(case_name)
    run = attention_sources.run(**case)
    layers = sparse_from_outputs(run.outputs, case["global_attention_mask"], case["attention_mask"], dtype=torch.float32)
    assert [sp.layer for sp in layers] == list(range(len(WINDOWS)))
    for sp in layers:
        dense = sp.to_dense()
        B, H, N, _ = dense.shape
        for i in range(N):
            diff = (sp.row(i) - dense[:, :, i]).abs().max().item()
            assert diff < 1e-7, f"layer {sp.layer} row {i}: max diff {diff:.3e}"
            diff = (sp.col(i) - dense[:, :, :, i]).abs().max().item()
            assert diff < 1e-7, f"layer {sp.layer} col {i}: max diff {diff:.3e}"
        diff = (sp.to_torch_sparse().to_dense() - dense).abs().max().item()
        assert diff < 1e-7, f"layer {sp.layer}: COO differs from dense by {diff:.3e}"
        for b in range(B):
            for h in range(H):
                for layout in ("coo", "csr"):
                    diff = (sp.to_torch_sparse(layout, batch=b, head=h).to_dense() - dense[b, h]).abs().max().item()
                    assert diff < 1e-7, f"layer {sp.layer} {layout} ({b}, {h}): max diff {diff:.3e}"
        diff = (sp.row_sums() - dense.sum(-1)).abs().max().item()
        assert diff < 1e-6, f"row_sums differ by {diff:.3e}"


def test_sources_agree():
    """Our LED and transformers' LED (same weights) unfold to the same dense maps."""
    case = make_case("uneven")
    a, b = _source_transformers_led().run(**case), _source_ledviz().run(**case)
    for l in range(len(WINDOWS)):
        da = to_dense(a.local[l], a.global_[l], case["global_attention_mask"], case["attention_mask"])
        db = to_dense(b.local[l], b.global_[l], case["global_attention_mask"], case["attention_mask"])
        diff = (da - db).abs().max().item()
        assert diff < 1e-5, f"layer {l}: ledviz and transformers differ by {diff:.3e}"


def test_transformers_global_layout_is_handled():
    """transformers' global attentions are un-trimmed and hold 1/L_pad in unused slots; to_dense ignores both."""
    case = make_case("uneven")  # N = 13, padded to 16; element 1 has 1 global, element 2 none
    run = _source_transformers_led().run(**case)
    g = run.global_[0]
    assert g.shape[2] == 16, f"expected transformers' padded length 16, got {tuple(g.shape)}"
    junk = g[2, :, :, 0]  # element 2 has no global token: its slot 0 is filler
    assert torch.allclose(junk, torch.full_like(junk, 1 / 16)), f"filler is not 1/16: {junk.unique()}"
    dense = to_dense(run.local[0], g, case["global_attention_mask"], case["attention_mask"])
    valid, is_global = _masks(case)
    assert dense.shape == (3, 2, 13, 13)
    # element 2 has no global rows: its rows are the band + nothing else; padding rows are zero
    assert dense[2, :, 11:].abs().max() == 0 and dense[1, :, 9:].abs().max() == 0
    assert not is_global[1, 11], "padding must win over global"
    # the sparse form stores zeros there, not transformers' filler
    sp = SparseAttention.from_layer(run.local[0], g, case["global_attention_mask"], case["attention_mask"])
    assert sp.global_rows.shape == (3, 2, 2, 13)
    assert sp.global_rows[2].abs().max() == 0 and sp.global_rows[1, :, 1].abs().max() == 0
    assert sp.global_rows[1, :, 0, 9:].abs().max() == 0, "global rows are zero on padding keys"


def test_padding_wins_over_global_and_positions():
    """A global mark on padding is ignored; global positions ascend with -1 fill."""
    am = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    gm = torch.tensor([[0, 1, 0, 1], [1, 0, 1, -1]])  # -1: transformers' padding value of the global mask
    valid, is_global = merge_masks(gm, am, 2, 4)
    assert is_global.tolist() == [[False, True, False, False], [True, False, True, False]]
    assert global_positions(is_global).tolist() == [[1, -1], [0, 2]]


def test_synthetic_attention_has_the_layout():
    """synthetic_attention (benchmarks) gives valid rows and zeros exactly where the layout says."""
    g = torch.Generator().manual_seed(0)
    am = torch.tensor([[1] * 20, [1] * 14 + [0] * 6])
    gm = torch.zeros(2, 20, dtype=torch.long)
    gm[0, [0, 7]] = 1
    gm[1, [3, 16]] = 1  # 16 is padding
    local, glob = synthetic_attention(3, 6, am, gm, generator=g)
    assert local.shape == (2, 3, 20, 2 + 7) and glob.shape == (2, 3, 20, 2)
    dense = to_dense(local, glob, gm, am)
    valid, is_global = merge_masks(gm, am, 2, 20)
    err = (dense.sum(-1) - valid[:, None].float()).abs().max().item()
    assert err < 1e-5, f"row sums off by {err:.3e}"
    # allowed entries by definition (window 3, one-sided)
    i = torch.arange(20)
    near = (i[:, None] - i[None, :]).abs() <= 3
    allowed = (near[None] & (valid & ~is_global)[:, None, :]) | is_global[:, None, :]
    allowed = torch.where(is_global[:, :, None], valid[:, None, :].expand(2, 20, 20), allowed) & valid[:, :, None]
    assert dense[~allowed[:, None].expand_as(dense)].abs().max() == 0
    assert (dense[allowed[:, None].expand_as(dense)] > 0).all()


def test_band_mask_counts():
    """band_mask drops out-of-sequence, padding and global slots, and global/padding queries."""
    valid = torch.tensor([[True] * 6 + [False] * 2])
    is_global = torch.zeros_like(valid)
    is_global[0, 2] = True
    m = band_mask(valid, is_global, 1)  # (1, 8, 3)
    assert m[0, 0].tolist() == [False, True, True]
    assert m[0, 1].tolist() == [True, True, False]  # key 2 is global
    assert not m[0, 2].any() and not m[0, 6:].any()  # global and padding queries
    assert torch.equal(band_mask(valid, is_global, 1, rows=(3, 5)), m[:, 3:5])


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 1e-3), (torch.bfloat16, 8e-3)])
def test_reduced_precision_storage(dtype, tol):
    """float16/bfloat16 storage stays close to float32 and takes half the bytes."""
    case = make_case("uneven")
    run = _source_transformers_led().run(**case)
    full = sparse_from_outputs(run.outputs, case["global_attention_mask"], case["attention_mask"], dtype=torch.float32)
    low = sparse_from_outputs(run.outputs, case["global_attention_mask"], case["attention_mask"], dtype=dtype)
    for a, b in zip(full, low):
        assert b.band.dtype == dtype and b.global_rows.dtype == dtype
        diff = (a.to_dense() - b.to_dense()).abs().max().item()
        assert diff < tol, f"{dtype}: max diff to float32 {diff:.3e}"
        assert b.nbytes < a.nbytes * 0.6


def test_select_and_layer_filter():
    """select() picks elements/heads; sparse_from_outputs filters layers and skips None."""
    case = make_case("uneven")
    run = _source_transformers_led().run(**case)
    layers = sparse_from_outputs(run.outputs, case["global_attention_mask"], case["attention_mask"], layers=[1])
    assert [sp.layer for sp in layers] == [1]
    sp = layers[0]
    dense = sp.to_dense()
    one = sp.select(batch=1, heads=[1])
    assert one.num_global == 1, "element 1 has one global token: unused slots are dropped"
    assert torch.allclose(one.to_dense()[0, 0], dense[1, 1])
    # a model that kept only some layers returns None for the others
    partial = {"encoder_attentions": (None, run.local[1]), "encoder_global_attentions": (None, run.global_[1])}
    got = sparse_from_outputs(partial, case["global_attention_mask"], case["attention_mask"])
    assert [s.layer for s in got] == [1]


def test_errors_name_the_problem():
    """Wrong masks, oversized dense maps and missing attentions raise InputError with a clear message."""
    case = make_case("uneven")
    run = _source_transformers_led().run(**case)
    with pytest.raises(InputError, match="do not belong"):
        to_dense(run.local[0], run.global_[0], None, case["attention_mask"])  # masks of another run
    with pytest.raises(InputError, match="attention_mask has shape"):
        to_dense(run.local[0], run.global_[0], case["global_attention_mask"], case["attention_mask"][:, :5])
    am = torch.ones(1, 5000, dtype=torch.long)
    local, _ = synthetic_attention(1, 2, am)
    with pytest.raises(InputError, match="dense map of 5000 tokens"):
        SparseAttention.from_layer(local, None, None, am).to_dense()
    with pytest.raises(InputError, match="output_attentions"):
        sparse_from_outputs({"last_hidden_state": torch.zeros(1)})
