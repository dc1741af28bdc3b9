"""The teaching example (ledviz.explain) and the global-attention lab's comparisons (ledviz.compare).

The explain example is checked against `ledviz.unfold.to_dense` and against its own partner-cell
mapping in both directions; compare's distances against dense N x N maps on a tiny checkpoint
made in the test (conftest.make_checkpoint; a few seconds on a CPU), and its summary table's columns.
"""

from __future__ import annotations

import pytest
import torch

from ledviz import compare, explain
from ledviz.errors import InputError
from ledviz.unfold import to_dense

from conftest import assert_close, make_checkpoint


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    from ledviz.pipeline import load_model

    return load_model(make_checkpoint(tmp_path_factory.mktemp("tiny-led")))


@pytest.fixture(scope="module")
def doc(loaded):
    from ledviz.demo.data import sample_documents
    from ledviz.pipeline import prepare_document

    text = next(iter(sample_documents().values()))
    return prepare_document(loaded, text[:1500])


# ---------------------------------------------------------------------------------------------
# explain: the raw layout, the unfolded map, the partner cells
# ---------------------------------------------------------------------------------------------

EXAMPLES = [(24, 3, [0]), (32, 2, [0, 5, 31]), (16, 4, []), (40, 6, [3, 4, 20]), (8, 12, [0])]


@pytest.mark.parametrize("n,w,globals_", EXAMPLES)
def test_unfolded_map_is_to_dense_of_the_raw_layout(n, w, globals_):
    ex = explain.build_example(n, w, globals_)
    assert ex.local_raw.shape == (1, ex.num_heads, n, len(globals_) + 2 * w + 1)
    dense = to_dense(ex.local_raw, ex.global_raw, ex.global_attention_mask)[0]
    assert_close(ex.dense_all, dense, "explain's unfolded map vs unfold.to_dense", tol=0)
    assert_close(ex.dense.sum(-1), torch.ones(n), "rows sum to 1")
    assert len(ex.local_column_labels()) == ex.width
    assert ex.local_column_labels()[len(globals_):] == [f"{d:+d}" if d else "0" for d in range(-w, w + 1)]


@pytest.mark.parametrize("n,w,globals_", EXAMPLES)
def test_partner_cells_both_ways(n, w, globals_):
    ex = explain.build_example(n, w, globals_, head=1)
    dense, valid = ex.dense, ex.local_valid()
    # raw -> absolute: the value is the same, and the way back returns the raw cell
    for i in range(n):
        for col in range(ex.width):
            cell = ex.raw_to_absolute(explain.LOCAL, i, col)
            if not valid[i, col]:
                assert float(ex.local[i, col]) == 0.0, f"empty slot ({i}, {col}) holds a value"
                continue
            assert cell is not None
            assert float(dense[cell]) == float(ex.local[i, col]), f"local ({i}, {col}) -> {cell}"
            assert ex.absolute_to_raw(*cell) == (explain.LOCAL, i, col)
        for c in range(ex.x):
            cell = ex.raw_to_absolute(explain.GLOBAL, i, c)
            assert cell == (globals_sorted(globals_)[c], i)
            assert float(dense[cell]) == float(ex.glob[i, c])
            assert ex.absolute_to_raw(*cell) == (explain.GLOBAL, i, c)
    # absolute -> raw: every scored pair has its raw cell, every other pair none (and is zero)
    scored = ex.scored()
    for i in range(n):
        for j in range(n):
            raw = ex.absolute_to_raw(i, j)
            assert (raw is not None) == bool(scored[i, j]), f"({i}, {j})"
            if raw is None:
                assert float(dense[i, j]) == 0.0
                assert ex.partner("absolute", i, j) is None
            else:
                part, r, c = raw
                assert ex.raw_to_absolute(part, r, c) == (i, j)
                assert ex.partner(part, r, c) == ("absolute", i, j)


def globals_sorted(positions):
    return sorted(set(positions))


def test_partner_examples_by_hand():
    ex = explain.build_example(24, 3, [0, 10])  # x = 2: columns g:0, g:10, -3 .. +3
    assert ex.local_column_labels()[:4] == ["g:0", "g:10", "-3", "-2"]
    assert ex.raw_to_absolute(explain.LOCAL, 5, 2 + 3 + 1) == (5, 6)  # offset +1
    assert ex.raw_to_absolute(explain.LOCAL, 5, 1) == (5, 10)  # global column g:10
    assert ex.raw_to_absolute(explain.LOCAL, 1, 2) is None  # key 1 - 3 < 0: outside
    assert ex.absolute_to_raw(9, 10) == (explain.LOCAL, 9, 1)  # a global key in the window: its global column
    assert ex.absolute_to_raw(10, 23) == (explain.GLOBAL, 23, 1)  # a global query's row
    assert ex.absolute_to_raw(5, 20) is None  # far and not global
    assert not ex.local_valid()[9, 2 + 3 + 1]  # the window slot of global key 10 stays empty
    assert "global" in ex.describe(explain.LOCAL, 9, 2 + 3 + 1)


def test_a_window_over_the_whole_text_is_said_to_be_full_attention():
    """N = 8, w = 12: 26 raw columns for 8 tokens, every pair scored; the example says why (it did not)."""
    ex = explain.build_example(8, 12, [0])
    assert ex.width == 26 and bool(ex.scored().all())
    note = ex.window_note()
    assert note is not None and "full attention" in note and "26 columns for 8 tokens" in note, note
    assert explain.build_example(8, 7, [0]).window_note() is not None  # w = N - 1: the first sees the last
    assert explain.build_example(8, 6, [0]).window_note() is None  # token 7 does not reach token 0
    assert not bool(explain.build_example(8, 6, []).scored().all())


def test_example_is_fixed_and_bad_input_is_an_input_error():
    a, b = explain.build_example(20, 2, [0]), explain.build_example(20, 2, [0])
    assert torch.equal(a.local_raw, b.local_raw)
    for kwargs in (dict(n_tokens=3), dict(window=0), dict(global_positions=[99]), dict(head=5)):
        with pytest.raises(InputError):
            explain.build_example(**{"n_tokens": 20, "window": 2, "global_positions": [0], **kwargs})
    with pytest.raises(InputError):
        explain.build_example(20, 2, [0]).raw_to_absolute(explain.LOCAL, 0, 99)


def test_cost_numbers():
    assert explain.led_pairs(4096, 512, 0) == 4096 * 1025
    assert explain.led_pairs(16_384, 512, 2) == 16_384 * 1025 + 4 * 16_384
    assert explain.full_pairs(16_384) == 268_435_456
    table = explain.cost_table(512, 1, heads=12, layers=6, bytes_per_score=4)
    assert list(table.columns) == ["n", "led_pairs", "full_pairs", "led_mb", "full_mb", "ratio"]
    assert table.n.iloc[0] == 64 and table.n.iloc[-1] == 16_384 and table.n.is_monotonic_increasing
    last = table.iloc[-1]
    assert last.led_pairs == 16_384 * (1025 + 2)
    assert last.full_mb == pytest.approx(268_435_456 * 12 * 6 * 4 / 2**20)  # 73,728 MB
    assert last.ratio == pytest.approx(268_435_456 / last.led_pairs)
    # LED is dearer than full attention only while the window is wider than the document
    cheaper = table[table.led_pairs < table.full_pairs].n
    assert cheaper.min() > 1025 - 10 and cheaper.max() == 16_384
    with pytest.raises(InputError):
        explain.cost_table(0)


def test_model_anatomy_adds_up(loaded):
    table = explain.parameter_table(loaded.model)
    summary = explain.parameter_summary(table)
    assert summary["total"] == loaded.model.num_parameters()
    assert summary["total"] == sum(summary[p] for p in explain.PARTS)
    assert summary["other"] == 0 and summary["head"] == 0  # tied LM head, no task head
    assert set(table.component[table.part == "encoder"]) >= {"local q/k/v", "global q/k/v", "feed-forward"}
    dtypes = explain.weights_by_dtype(loaded.model)
    assert dtypes[dtypes.kind == "parameters"].elements.sum() == summary["total"]
    mem = explain.attention_memory(loaded.config, 1000, 2)
    assert list(mem.attention_window) == [16, 32]
    assert mem.entries.iloc[1] == 2 * 1000 * (32 + 1 + 4)
    assert mem.float16_mb.iloc[1] == pytest.approx(mem.float32_mb.iloc[1] / 2)


# ---------------------------------------------------------------------------------------------
# compare: settings, distances from the sparse form, the comparison table
# ---------------------------------------------------------------------------------------------

def test_settings_parse_and_label():
    s = compare.Setting.of(dict(kind="every_k", k=8))
    assert s.label == "every 8th" and s == compare.Setting.of(s)
    # ordinals read as English ("every 1th", "every 2th", "every 22th" before)
    labels = [compare.Setting("every_k", k=k).label for k in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 64, 101, 111)]
    assert labels == ["every token", "every 2nd", "every 3rd", "every 4th", "every 11th", "every 12th", "every 13th",
                      "every 21st", "every 22nd", "every 23rd", "every 64th", "every 101st", "every 111th"]
    assert compare.Setting.of(dict(kind="positions", positions=["1", 2])).positions == (1, 2)
    assert compare.unique_labels([compare.Setting("first"), compare.Setting("first")]) == ["first <s> (1)", "first <s> (2)"]
    for bad in (dict(kind="nope"), dict(k=3), dict(kind="first", window=3), dict(kind="positions", positions=["x"])):
        with pytest.raises(InputError):
            compare.Setting.of(bad)


def _dense_tv(a, b):
    da, db = a.to_dense()[0], b.to_dense()[0]
    return 0.5 * (da - db).abs().sum(-1)  # (H, N)


SETTINGS = [dict(kind="first"), dict(kind="every_k", k=7), dict(kind="sentences"), dict(kind="none"),
            dict(kind="positions", positions=[0, 5, 6, 40]), dict(kind="pattern", pattern=r"^\d")]


@pytest.mark.parametrize("other", SETTINGS[1:], ids=lambda s: s["kind"])
def test_row_distances_match_dense_maps(loaded, doc, other):
    ref_layers, _, _ = compare.encode(loaded, doc, compare.Setting.of(SETTINGS[0]).mask(doc), torch.float32)
    layers, _, _ = compare.encode(loaded, doc, compare.Setting.of(other).mask(doc), torch.float32)
    for layer in ref_layers:
        tv = compare.row_distances(layers[layer], ref_layers[layer])
        assert_close(tv, _dense_tv(layers[layer], ref_layers[layer]), f"layer {layer} row distances", tol=1e-5)
        assert tv.mean() > 0
        # symmetric, and zero against itself
        assert_close(compare.row_distances(ref_layers[layer], layers[layer]), tv, "symmetry", tol=1e-6)
        assert float(compare.row_distances(layers[layer], layers[layer]).abs().max()) == 0.0


def test_attention_difference(loaded, doc):
    a, _, _ = compare.encode(loaded, doc, compare.Setting("first").mask(doc))
    b, _, _ = compare.encode(loaded, doc, compare.Setting("every_k", k=5).mask(doc))
    same = compare.attention_difference(a, a, layer=1, head=0, bins=16)
    assert same.mean_tv == 0.0 and float(same.binned.abs().max()) == 0.0
    diff = compare.attention_difference(a, b, layer=1, head=None, bins=16)
    assert diff.mean_tv > 0 and diff.binned.shape == (len(diff.edges) - 1,) * 2
    assert diff.edges[-1] == doc.n_tokens and diff.per_token.shape == (doc.n_tokens,)
    assert_close(diff.binned, diff.binned_a - diff.binned_b, "difference of the binned maps", tol=0)
    # a binned map's rows hold the mean attention of a query of that bin: each row sums to 1
    assert_close(diff.binned_a.sum(-1), torch.ones(len(diff.edges) - 1), "binned rows", tol=1e-3)
    # the mean over heads of one layer is the mean of its heads' distances
    per_head = [compare.attention_difference(a, b, 1, h, 16).mean_tv for h in range(2)]
    assert diff.mean_tv == pytest.approx(sum(per_head) / 2, rel=1e-5)
    all_layers = compare.attention_difference(a, b, None, None, 16)
    assert all_layers.layers == [0, 1]
    with pytest.raises(InputError):
        compare.attention_difference(a, b, layer=7)
    with pytest.raises(InputError):
        compare.attention_difference(a, b, layer=0, head=9)


def test_compare_settings_generates_scores_and_tabulates(loaded, doc):
    comp = compare.compare_settings(loaded, doc, [dict(kind="first"), dict(kind="every_k", k=9), dict(kind="first")],
                                    max_new_tokens=5, warmup=False)
    assert list(comp.summary.columns) == compare.SUMMARY_COLUMNS
    assert list(comp.summary.setting) == ["first <s> (1)", "every 9th", "first <s> (3)"]
    ref = comp.results[0]
    assert len(ref.output_ids) >= 2, "the reference produced no output token to score"
    for item in comp.results:
        assert item.reference_log_likelihood is not None and item.reference_log_likelihood < 0
    # the reference output scored under its own setting is its own log-likelihood
    assert ref.reference_log_likelihood == pytest.approx(ref.log_likelihood, abs=1e-4)
    # identical settings: identical attention and numbers; a different one: a positive distance
    tv = comp.summary.set_index("setting")["mean_tv_vs_reference"]
    assert tv["first <s> (1)"] == 0.0 and tv["first <s> (3)"] == 0.0 and tv["every 9th"] > 0
    assert comp.results[2].reference_log_likelihood == pytest.approx(ref.reference_log_likelihood, abs=1e-4)
    layer_table = comp.layer_table()
    assert list(layer_table.columns) == comp.labels and list(layer_table.index) == [0, 1]
    assert set(comp.distances.columns) == {"setting", "layer", "head", "tv"}
    assert comp.summary.global_tokens.tolist()[0] == 1 and comp.summary.scores_mb.gt(0).all()
    assert comp.difference(0, 2, layer=0).mean_tv == 0.0


def test_compare_encoder_only_and_bad_settings(loaded, doc):
    comp = compare.compare_settings(loaded, doc, [dict(kind="none"), dict(kind="sentences")], generate=False,
                                    reference=1, warmup=False)
    assert not comp.generated and comp.summary.output.isna().all()
    assert comp.summary.mean_tv_vs_reference.iloc[1] == 0.0 and comp.summary.mean_tv_vs_reference.iloc[0] > 0
    with pytest.raises(InputError, match="regular expression"):
        compare.compare_settings(loaded, doc, [dict(kind="first"), dict(kind="pattern", pattern="([")])
    with pytest.raises(InputError, match="outside the document"):
        compare.compare_settings(loaded, doc, [dict(kind="positions", positions=[10**6])])
    with pytest.raises(InputError):
        compare.compare_settings(loaded, doc, [dict(kind="first")] * 5)
    with pytest.raises(InputError):
        compare.compare_settings(loaded, doc, [dict(kind="first")], reference=3)


def test_the_window_setting_is_said_in_tokens():
    """The slider "window w (each side; attention_window = 2w)" left the reader to work out what w = 3 covers: the
    line under it says it in tokens, and where the window reaches the whole example."""
    assert explain.window_text(3) == ("w = 3: each token sees the 3 tokens on either side of it, 7 with itself (a "
                                      "model's config writes this as attention_window = 6).")
    assert explain.window_text(1).startswith("w = 1: each token sees the 1 token on either side")
    assert explain.window_text(12, 10).endswith("Here it reaches every one of the 10 tokens.")
    assert "reaches" not in explain.window_text(3, 24)
