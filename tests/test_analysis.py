"""ledviz.analysis and ledviz.export: every view, computed from the sparse form, equals the same view
computed here from the dense map (`SparseAttention.to_dense`, itself checked against the definition
in test_unfold.py) on small inputs; the attention store and the exports round-trip.

Attention comes from `RUNS`: a synthetic run (uneven windows, globals, padding, float16 storage)
and tiny LED models (transformers' as the reference, ours with the same weights).
"""

from __future__ import annotations

import math
import sys

import pandas as pd
import pytest
import torch
import transformers  # the test-only reference (requirements-test.txt)

import ledviz
from ledviz import analysis as A
from ledviz import export as E
from ledviz.errors import InputError
from ledviz.unfold import SparseAttention, sparse_from_outputs, sparse_nbytes, synthetic_attention

TOL = 1e-5
TINY = dict(
    vocab_size=99, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
    decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, attention_window=[4, 8],
    max_encoder_position_embeddings=64, max_decoder_position_embeddings=64, init_std=0.3,
)


# ---------------------------------------------------------------------------------------------
# runs: layers (SparseAttention), their dense maps, masks and cross-attentions
# ---------------------------------------------------------------------------------------------

def _inputs():
    """3 elements, N = 13: globals {0, 6}, {2} (+ a global mark on padding), none; padding in two."""
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 99, (3, 13), generator=g)
    am = torch.ones(3, 13, dtype=torch.long)
    am[1, 9:] = 0
    am[2, 11:] = 0
    ids = ids.masked_fill(am == 0, 1)
    gm = torch.zeros(3, 13, dtype=torch.long)
    gm[0, [0, 6]] = 1
    gm[1, [2, 11]] = 1
    return ids, am, gm


def _run_synthetic():
    """Synthetic run: 3 layers of windows 4/8/6, 3 heads, N = 37, float16 storage, random cross-attention."""
    g = torch.Generator().manual_seed(0)
    am = torch.ones(2, 37, dtype=torch.long)
    am[1, 28:] = 0
    gm = torch.zeros(2, 37, dtype=torch.long)
    gm[0, [0, 20]] = 1
    gm[1, 5] = 1
    layers = []
    for l, window in enumerate([4, 8, 6]):
        local, glob = synthetic_attention(3, window, am, gm, generator=g)
        layers.append(SparseAttention.from_layer(local, glob, gm, am, layer=l, dtype=torch.float16))
    cross = []
    for _ in range(2):  # 2 decoder layers, T = 5
        scores = torch.randn(2, 3, 5, 37, generator=g).masked_fill(am[:, None, None, :] == 0, float("-inf"))
        cross.append(scores.softmax(-1))
    return layers, am, gm, tuple(cross)


def _run_model(model):
    """A tiny model's run on `_inputs()`: float32 sparse layers, masks, cross-attentions."""
    ids, am, gm = _inputs()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=am, global_attention_mask=gm, decoder_input_ids=ids[:, :4],
                    output_attentions=True)
    return sparse_from_outputs(out, gm, am, dtype=torch.float32), am, gm, out.cross_attentions


def _tf_led():
    """transformers' LEDModel, tiny, seeded, eval mode."""
    torch.manual_seed(0)
    return transformers.LEDModel(transformers.LEDConfig(**TINY)).eval()


def _ours():
    """Our LEDModel with transformers' LED weights."""
    model = ledviz.LEDModel(ledviz.LEDConfig(**TINY)).eval()
    model.load_state_dict(_tf_led().state_dict())
    return model


RUNS = {
    "synthetic": _run_synthetic,
    "transformers-led": lambda: _run_model(_tf_led()),
    "ledviz": lambda: _run_model(_ours()),
}


@pytest.fixture(scope="module", params=list(RUNS))
def run(request):
    """dict with layers, dense (per layer (B, H, N, N)), attention_mask, global_attention_mask, cross."""
    layers, am, gm, cross = RUNS[request.param]()
    return {"name": request.param, "layers": layers, "dense": [sp.to_dense() for sp in layers],
            "attention_mask": am, "global_attention_mask": gm, "cross": cross}


def _close(got: torch.Tensor, want: torch.Tensor, what: str, tol: float = TOL) -> None:
    """Assert equal shapes and max |got - want| < tol, naming the difference."""
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    diff = (got.float() - want.float()).abs().max().item() if got.numel() else 0.0
    assert diff < tol, f"{what}: max |diff| = {diff:.3e}"


def _pool(mat: torch.Tensor, s_r: int, s_c: int, reduce: str) -> torch.Tensor:
    """Reference block pooling of (..., R, C) by explicit loops."""
    R, C = mat.shape[-2:]
    rows = list(range(0, R, s_r))
    cols = list(range(0, C, s_c))
    out = torch.zeros(*mat.shape[:-2], len(rows), len(cols))
    for a, r in enumerate(rows):
        for b, c in enumerate(cols):
            blk = mat[..., r: r + s_r, c: c + s_c]
            out[..., a, b] = {"sum": blk.sum((-1, -2)), "mean": blk.mean((-1, -2)), "max": blk.amax((-1, -2))}[reduce]
    return out


# ---------------------------------------------------------------------------------------------
# views
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reduce", A.REDUCES)
def test_overview_matches_dense(run, reduce):
    """Binned overview == block pooling of the dense map, for every bin count and element."""
    for sp, dense in zip(run["layers"], run["dense"]):
        N = sp.seq_len
        for bins in (1, 3, 4, 8, N, 2 * N):
            s = A.bin_size(N, bins)
            for b in range(sp.batch_size):
                got = A.overview(sp, bins=bins, reduce=reduce, batch=b)
                _close(got, _pool(dense[b], s, s, reduce), f"{run['name']} layer {sp.layer} bins {bins} {reduce} b{b}")
                assert got.shape[-1] <= bins


def test_zoom_rows_cols_match_dense(run):
    """Zoom, row and column views == slices of the dense map."""
    for sp, dense in zip(run["layers"], run["dense"]):
        N = sp.seq_len
        for b in range(sp.batch_size):
            for rows, cols in [((0, N), (0, N)), ((1, 7), (3, 12)), ((5, 6), (0, N)), ((N - 4, N), (0, 3)), ((2, 2), (0, 4))]:
                _close(A.zoom(sp, rows, cols, batch=b), dense[b][:, rows[0]:rows[1], cols[0]:cols[1]],
                       f"{run['name']} zoom {rows}x{cols} b{b}")
            for i in range(N):
                _close(A.row_view(sp, i, batch=b), dense[b][:, i], f"row {i}")
                _close(A.col_view(sp, i, batch=b), dense[b][:, :, i], f"col {i}")
    with pytest.raises(InputError, match="within"):
        A.zoom(run["layers"][0], (0, 999), (0, 1))


def test_aggregate_heads_and_layers(run):
    """Mean/max over heads and over layers of different windows == the dense reductions."""
    layers, dense = run["layers"], run["dense"]
    for sp, d in zip(layers, dense):
        _close(A.aggregate(sp).to_dense()[:, 0], d.mean(1), "mean over heads")
        _close(A.aggregate(sp, reduce="max").to_dense()[:, 0], d.amax(1), "max over heads")
        _close(A.aggregate(sp, heads=[1]).to_dense()[:, 0], d[:, 1], "one chosen head")
    # over layers of different windows
    _close(A.aggregate(layers).to_dense()[:, 0], torch.cat(dense, 1).mean(1), "mean over layers and heads")
    _close(A.aggregate(layers, reduce="max").to_dense()[:, 0], torch.cat(dense, 1).amax(1), "max over layers")
    _close(A.aggregate(layers, layers=[1], heads=[0]).to_dense()[:, 0], dense[1][:, 0], "layer 1 head 0")
    # an aggregate is a SparseAttention: every view works on it
    agg = A.aggregate(layers)
    _close(A.overview(agg, bins=4)[0], _pool(torch.cat(dense, 1).mean(1)[0], A.bin_size(agg.seq_len, 4),
                                             A.bin_size(agg.seq_len, 4), "sum"), "overview of aggregate")


def _dense_stats(d: torch.Tensor, valid: torch.Tensor, is_global: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-head statistics from the dense map, averaged over non-padding rows: (B, H) each."""
    N = d.shape[-1]
    i = torch.arange(N)
    rows = {
        "mean_distance": (d * (i[:, None] - i[None, :]).abs()).sum(-1),
        "entropy": -torch.special.xlogy(d, d).sum(-1),
        "global_mass": (d * is_global[:, None, None, :]).sum(-1),
        "self_mass": d.diagonal(dim1=2, dim2=3),
    }
    v = valid[:, None, :].float()
    return {k: (r * v).sum(-1) / v.sum(-1) for k, r in rows.items()}


def test_head_stats_match_dense(run):
    """Per-head statistics == the same statistics of the dense map; tidy table layout."""
    for sp, d in zip(run["layers"], run["dense"]):
        got, want = A.head_stats(sp), _dense_stats(d, sp.attention_mask, sp.is_global)
        for name in A.STAT_NAMES:
            _close(got[name], want[name], f"{run['name']} layer {sp.layer} {name}", tol=1e-4)
    table = A.head_stats_table(run["layers"])
    L, B, H = len(run["layers"]), run["layers"][0].batch_size, run["layers"][0].num_heads
    assert list(table.columns) == ["layer", "batch", "head", *A.STAT_NAMES] and len(table) == L * B * H
    row = table[(table["layer"] == 1) & (table["batch"] == 0) & (table["head"] == 1)]
    assert math.isclose(row["entropy"].item(), A.head_stats(run["layers"][1])["entropy"][0, 1].item(), rel_tol=1e-6)


def test_global_token_stats_match_dense(run):
    """Global-token statistics == rows and columns of the dense map at the global positions."""
    for b in range(run["layers"][0].batch_size):
        table = A.global_token_stats(run["layers"], batch=b)
        for sp, d in zip(run["layers"], run["dense"]):
            part = table[table.layer == sp.layer]
            pos = sp.global_positions[b][sp.global_positions[b] >= 0]
            assert len(part) == sp.num_heads * len(pos)
            n_valid = sp.attention_mask[b].sum().item()
            i = torch.arange(sp.seq_len)
            for rec in part.itertuples():
                p = int(pos[rec.slot])
                assert rec.position == p
                row, col = d[b, rec.head, p], d[b, rec.head, :, p]
                want = {"mean_distance": (row * (p - i).abs()).sum(), "entropy": -torch.special.xlogy(row, row).sum(),
                        "self_mass": row[p], "global_mass": row[pos].sum(), "received_sum": col.sum(),
                        "received_mean": col.sum() / n_valid}
                for name, value in want.items():
                    assert math.isclose(getattr(rec, name), value.item(), rel_tol=1e-4, abs_tol=1e-5), \
                        f"layer {sp.layer} head {rec.head} slot {rec.slot} {name}: {getattr(rec, name)} vs {value.item()}"


def test_cross_attention_views(run):
    """Cross-attention map, overview and source mass == direct reductions of the tensors."""
    cross = run["cross"]
    B, H, T, N = cross[0].shape
    for b in range(B):
        stack = torch.stack([c[b] for c in cross])  # (L, H, T, N)
        _close(A.cross_attention_map(cross, batch=b), stack.mean((0, 1)), "cross mean")
        _close(A.cross_attention_map(cross, batch=b, reduce="max"), stack.amax((0, 1)), "cross max")
        _close(A.cross_attention_map(cross, batch=b, layers=[1], heads=[0]), stack[1, 0], "cross layer 1 head 0")
        for reduce in A.REDUCES:
            for bins in ((2, 5), 4, 1000):
                br, bc = (bins, bins) if isinstance(bins, int) else bins
                want = _pool(stack.mean((0, 1)), A.bin_size(T, br), A.bin_size(N, bc), reduce)
                _close(A.cross_attention_overview(cross, bins, reduce, batch=b), want, f"cross overview {bins} {reduce}")
        _close(A.source_mass(cross, batch=b), stack.mean((0, 1)).mean(0), "source mass")
        # rows are distributions over the non-padding source
        _close(A.cross_attention_map(cross, batch=b).sum(-1), torch.ones(T), "cross rows sum to 1", tol=1e-4)


@pytest.mark.parametrize("add_identity", [True, False])
def test_rollout_matches_dense_products(run, add_identity):
    """Sparse rollout == the product of dense (A + I)-normalized head means."""
    layers, dense = run["layers"], run["dense"]
    B, H, N, _ = dense[0].shape
    for b in range(B):
        n_valid = int(layers[0].attention_mask[b].sum())
        for token in sorted({0, 2, 5, n_valid - 1}):
            v = torch.zeros(N)
            v[token] = 1.0
            for d in reversed(dense):
                a = d[b].mean(0)
                if add_identity:
                    a = a + torch.eye(N)
                    a = a / a.sum(-1, keepdim=True)
                v = v @ a
            got = A.rollout(layers, token, batch=b, add_identity=add_identity)
            _close(got, v, f"{run['name']} rollout b{b} token {token} identity={add_identity}")
            total = got.sum().item()
            assert abs(total - 1.0) < 1e-3, f"rollout total {total} (should stay 1; float16 rows drift ~1e-4)"
    # chosen heads
    v = torch.zeros(N)
    v[1] = 1.0
    for d in reversed(dense):
        a = d[0, [1]].mean(0) + torch.eye(N)
        v = v @ (a / a.sum(-1, keepdim=True))
    _close(A.rollout(layers, 1, heads=[1]), v, "rollout of head 1")


# ---------------------------------------------------------------------------------------------
# words and sentences
# ---------------------------------------------------------------------------------------------

TEXT = "The cat sat.  It purred!\nDogs bark"
# byte-level BPE style (trimmed offsets): <s>, words split into pieces, a whitespace-only token, </s>
OFFSETS = [(0, 0), (0, 3), (4, 7), (8, 11), (11, 12), (12, 13), (14, 16), (17, 20), (20, 23), (23, 24),
           (25, 29), (30, 34), (0, 0)]


def test_token_groups_words_and_sentences():
    """Offsets map tokens to words and sentences (special and whitespace tokens included)."""
    words = A.token_groups(TEXT, OFFSETS, unit="word")
    assert words.labels == ["[0]", "The", "cat", "sat.", "It", "purred!", "Dogs", "bark", "[12]"]
    # "sat" + "." share a word; the whitespace token (12, 13) joins the next word "It"
    assert words.index.tolist() == [0, 1, 2, 3, 3, 4, 4, 5, 5, 5, 6, 7, 8]
    sentences = A.token_groups(TEXT, OFFSETS, unit="sentence", special="drop")
    assert sentences.labels == ["The cat sat.", "It purred!", "Dogs bark"]
    assert sentences.index.tolist() == [-1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, -1]
    assert A.sentence_spans("Why?! Yes... ok\n\nno") == [(0, 5), (6, 12), (13, 15), (17, 19)]
    assert A.word_spans(" a  bc ") == [(1, 2), (4, 6)]
    assert A.token_groups(TEXT, torch.tensor([OFFSETS]), unit="word").index.tolist() == words.index.tolist()


@pytest.mark.parametrize("row_reduce", ["mean", "sum"])
def test_group_attention_matches_dense(run, row_reduce):
    """Group attention == P A P^T from the dense map (rows mean or sum, columns sum)."""
    sp, dense = run["layers"][1], run["dense"][1]
    N = sp.seq_len
    g = torch.Generator().manual_seed(5)
    # random contiguous groups, some tokens left out
    index = torch.cumsum(torch.rand(N, generator=g) < 0.4, 0) - 1
    index[3] = -1
    G = int(index.max()) + 1
    groups = A.TokenGroups(index, [str(k) for k in range(G)], [(0, 0)] * G)
    for b in range(sp.batch_size):
        got = A.group_attention(sp, groups, batch=b, row_reduce=row_reduce, chunk_rows=5)
        keep = (index >= 0) & sp.attention_mask[b]
        P = torch.zeros(G, N)
        P[index[keep], torch.arange(N)[keep]] = 1.0  # rows: member tokens (non-padding)
        Pc = torch.zeros(G, N)
        Pc[index[index >= 0], torch.arange(N)[index >= 0]] = 1.0  # columns: every member token
        want = P @ dense[b] @ Pc.T  # (H, G, G)
        if row_reduce == "mean":
            want = want / P.sum(1).clamp(min=1)[None, :, None]
        _close(got, want, f"{run['name']} group attention ({row_reduce}) b{b}")
    with pytest.raises(InputError, match="groups make"):
        A.group_attention(sp, groups, max_groups=2)


# ---------------------------------------------------------------------------------------------
# store and exports
# ---------------------------------------------------------------------------------------------

def _layers_equal(a: list[SparseAttention], b: list[SparseAttention], what: str, tol: float = 0.0) -> None:
    """Assert two lists of SparseAttention hold the same tensors (within tol)."""
    assert [x.layer for x in a] == [y.layer for y in b], what
    for x, y in zip(a, b):
        for name in ("band", "global_cols", "global_rows"):
            t, u = getattr(x, name), getattr(y, name)
            assert t.dtype == u.dtype and t.shape == u.shape, f"{what} layer {x.layer} {name}"
            diff = (t.float() - u.float()).abs().max().item() if t.numel() else 0.0
            assert diff <= tol, f"{what} layer {x.layer} {name}: max diff {diff:.3e}"
        assert torch.equal(x.global_positions, y.global_positions) and torch.equal(x.attention_mask, y.attention_mask)


def test_store_as_sink_of_our_encoder():
    """ledviz's encoder calls sink(layer, local, global); the store equals the unfolded outputs."""
    model = _ours()
    ids, am, gm = _inputs()
    store = E.AttentionStore(gm, am, dtype=torch.bfloat16, overview_bins=4, stats=True,
                             reducers={"row_sums": lambda sp: sp.row_sums(), "head_mean": A.aggregate})
    with torch.no_grad():
        out = model.get_encoder()(input_ids=ids, attention_mask=am, global_attention_mask=gm,
                                  output_attentions=True, attention_sink=store)
    _layers_equal(store.run.sparse_layers(), sparse_from_outputs(out, gm, am, dtype=torch.bfloat16), "store vs outputs")
    for sp in sparse_from_outputs(out, gm, am):  # reductions come from the float32 probabilities
        over = torch.stack([A.overview(sp, 4, batch=b) for b in range(sp.batch_size)])
        _close(store.run.overviews[sp.layer], over, f"store overview layer {sp.layer}")
        for name, t in A.head_stats(sp).items():
            _close(store.run.stats[sp.layer][name], t, f"store stats {name}")
        assert torch.equal(store.extras[sp.layer]["row_sums"], sp.row_sums())
    # rollout from the head means the store kept equals rollout from all heads
    means = [store.extras[l]["head_mean"] for l in sorted(store.extras)]
    full = sparse_from_outputs(out, gm, am)
    for b, token in [(0, 3), (1, 2), (2, 10)]:
        _close(A.rollout(means, token, batch=b), A.rollout(full, token, batch=b), f"rollout from head means b{b}")


def test_store_options_from_transformers_outputs():
    """Fed layer by layer from transformers' outputs (un-trimmed globals): chosen layers, reduce-only mode."""
    model = _tf_led()
    ids, am, gm = _inputs()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=am, global_attention_mask=gm, decoder_input_ids=ids[:, :2],
                    output_attentions=True)
    store = E.AttentionStore(gm, am, layers=[1], keep_sparse=False, overview_bins=5, overview_reduce="max", stats=True)
    for l, (loc, glob) in enumerate(zip(out.encoder_attentions, out.encoder_global_attentions)):
        store(l, loc, glob)
    assert store.run.layers == {} and list(store.run.overviews) == [1] and list(store.run.stats) == [1]
    sp = sparse_from_outputs(out, gm, am, layers=[1])[0]
    over = torch.stack([A.overview(sp, 5, "max", batch=b) for b in range(3)])
    _close(store.run.overviews[1], over, "reduce-only overview")
    assert store.nbytes == over.numel() * 4 + 4 * 3 * 2 * 4  # overview + 4 stats of (B, H) float32
    store.clear()
    assert store.run.overviews == {} and store.nbytes == 0


def test_memory_estimates_for_led_large():
    """The figures the store's design rests on: LED-large at 16,384 tokens, 1 global token."""
    fp32 = sparse_nbytes(12, 16, 16384, 1024, 1, torch.float32)
    assert 12.8e9 < fp32 < 13.0e9, fp32
    assert sparse_nbytes(12, 16, 16384, 1024, 1, torch.float16) * 2 == fp32
    overview_only = 12 * 16 * 512 * 512 * 4
    assert overview_only < 0.25e9


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_npz_round_trip(tmp_path, dtype):
    """save_npz / load_npz keep layers, overviews, statistics and metadata in every storage dtype."""
    layers, am, gm, _ = _run_synthetic()
    store = E.AttentionStore(gm, am, dtype=dtype, overview_bins=8, stats=True)
    for sp in layers:  # replay the synthetic run through the sink
        dense_local = torch.cat([sp.global_cols, sp.band], -1).float()
        store(sp.layer, dense_local, sp.global_rows.float().transpose(2, 3))
    meta = E.run_metadata("tiny-synthetic", [4, 8, 6], gm, am, text="x y", offsets=[[(0, 1), (2, 3)]], note="test")
    path = E.save_npz(tmp_path / "run", store, meta)
    assert path.exists()
    back = E.load_npz(path)
    _layers_equal(back.sparse_layers(), store.run.sparse_layers(), f"npz {dtype}")
    assert back.metadata == meta and back.metadata["global_positions"] == [[0, 20], [5]]
    for l in store.run.overviews:
        assert torch.equal(back.overviews[l], store.run.overviews[l])
        for name in A.STAT_NAMES:
            assert torch.equal(back.stats[l][name], store.run.stats[l][name])
    pd.testing.assert_frame_equal(back.stats_table(), store.run.stats_table())


def test_parquet_round_trip(tmp_path):
    """save_parquet / load_parquet keep the tables and metadata; entries rebuild the dense maps."""
    layers, am, gm, _ = _run_synthetic()
    run = E.AttentionRun(layers={sp.layer: sp for sp in layers},
                         overviews={sp.layer: torch.stack([A.overview(sp, 6, batch=b) for b in range(2)]) for sp in layers},
                         stats={sp.layer: A.head_stats(sp) for sp in layers},
                         metadata=E.run_metadata("tiny", [4, 8, 6], gm, am))
    paths = E.save_parquet(tmp_path / "pq", run, include_entries=True)
    assert set(paths) == {"head_stats", "overviews", "entries"}
    tables, meta = E.load_parquet(tmp_path / "pq")
    want = E.run_tables(run, include_entries=True)
    for name, df in want.items():
        pd.testing.assert_frame_equal(tables[name], df, check_dtype=False)
    assert meta["model_name"] == "tiny" and meta["attention_window"] == [4, 8, 6]
    for l, t in run.overviews.items():
        _close(E.overview_from_table(tables["overviews"], l, meta["overview_shapes"][str(l)]), t, f"overview {l}")
    # entries rebuild the dense maps
    ent = tables["entries"]
    for sp in layers:
        part = ent[ent.layer == sp.layer]
        dense = torch.zeros(sp.batch_size, sp.num_heads, sp.seq_len, sp.seq_len)
        idx = [torch.tensor(part[c].to_numpy()) for c in ("batch", "head", "query", "key")]
        dense[idx[0], idx[1], idx[2], idx[3]] = torch.tensor(part["value"].to_numpy(), dtype=torch.float32)
        _close(dense, sp.to_dense(), f"entries of layer {sp.layer}")


def test_parquet_without_pyarrow_says_so(tmp_path, monkeypatch):
    """Without pyarrow, Parquet export raises ImportError naming the fix."""
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match="pip install pyarrow"):
        E.save_parquet(tmp_path, E.AttentionRun())


def test_to_bertviz(run):
    """to_bertviz gives (1, H, n, n) dense maps per layer, padding cut off."""
    layers, dense = run["layers"], run["dense"]
    for b in range(layers[0].batch_size):
        n = int(layers[0].attention_mask[b].sum())
        maps = E.to_bertviz(layers, batch=b)
        assert isinstance(maps, tuple) and len(maps) == len(layers)
        for m, d in zip(maps, dense):
            _close(m, d[b: b + 1, :, :n, :n], f"bertviz b{b}")
    assert E.to_bertviz(layers, trim_padding=False)[0].shape[-1] == layers[0].seq_len
    with pytest.raises(InputError, match="too many"):
        E.to_bertviz(layers, max_tokens=4)


def test_head_stats_entropy_of_long_rows_and_slices_match_the_definition(monkeypatch):
    """head_stats reads the band a slice of rows at a time with p log max(p, 1e-30): the same statistics as
    the dense definition (zeros in the rows included), whatever the slice, and its input is left as it was."""
    N, W = 300, 64
    am = torch.ones(2, N, dtype=torch.long)
    am[1, 250:] = 0
    gm = torch.zeros(2, N, dtype=torch.long)
    gm[:, [0, 17]] = 1
    local, glob = synthetic_attention(3, W, am, gm, generator=torch.Generator().manual_seed(3))
    local[:, :, :, 5:9] = 0.0  # exact zeros inside the band: 0 log 0 = 0
    local = local / local.sum(-1, keepdim=True).clamp_min(1e-12)
    sp = SparseAttention.from_layer(local, glob, gm, am)
    before = sp.band.clone()
    want = _dense_stats(sp.to_dense(), sp.attention_mask, sp.is_global)
    for slice_bytes in (1 << 20, 7 * (2 * 32 + 1) * 2 * 4):  # one slice; slices of 7 rows with a ragged last one
        monkeypatch.setattr(A, "STATS_SLICE_BYTES", slice_bytes)  # one thread
        monkeypatch.setattr(A, "STATS_SLICE_BYTES_THREADED", slice_bytes)  # several
        got = A.head_stats(sp)
        for name in A.STAT_NAMES:
            _close(got[name], want[name], f"{name} with slices of {slice_bytes} bytes", tol=1e-4)
    assert torch.equal(sp.band, before)


def test_from_layer_keeps_the_band_as_a_view_when_nothing_is_converted():
    """No copy of the largest tensor when the dtype and device stay: the band reads the model output's memory."""
    N = 40
    am = torch.ones(1, N, dtype=torch.long)
    gm = torch.zeros(1, N, dtype=torch.long)
    gm[0, 0] = 1
    local, glob = synthetic_attention(2, 8, am, gm, dtype=torch.float16)
    sp = SparseAttention.from_layer(local, glob, gm, am)
    assert sp.band.data_ptr() == local[..., 1:].data_ptr() and torch.equal(sp.band, local[..., 1:])
    converted = SparseAttention.from_layer(local, glob, gm, am, dtype=torch.float32)
    assert converted.band.is_contiguous() and torch.equal(converted.band, local[..., 1:].float())
