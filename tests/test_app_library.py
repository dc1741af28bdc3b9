"""The library behind the app, without Streamlit (uploads: tests/test_uploads.py): runs and fingerprints, the views'
numbers, provenance, the run's downloads, and the figures. Runs use the embedded demo model on
a short document; every number is checked against the dense attention or a hand computation."""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from ledviz import analysis, explain, export, pipeline, plots, provenance, views
from ledviz.errors import InputError
from ledviz.text import WORD_JOINER, as_typed
from ledviz.runs import (RunJob, cut_note, empty_output_note, fingerprint, one_token_note, run_facts,
                         run_fingerprint, run_id, size_text)
from ledviz.views import View

TEXT = ("Project Bluefinch report. The project lead is Maren Okafor. The site is Velmora. "
        "The budget is 4,312 crowns. Each section repeats a few facts.")
QUESTION = "Who is the project lead?"


@pytest.fixture(scope="module")
def loaded():
    return pipeline.load_model(pipeline.EMBEDDED)


@pytest.fixture(scope="module")
def qa_run(loaded):
    """A question-answering run with global attention on the question and two extra document tokens."""
    doc = pipeline.prepare_document(loaded, TEXT, QUESTION)
    mask = pipeline.global_attention_mask(doc, "question")
    mask[0, doc.document_tokens()[3]] = 1
    mask[0, doc.document_tokens()[10]] = 1
    return pipeline.run(loaded, doc, mask, task="qa", max_new_tokens=6)


def dense(result, layer: int) -> torch.Tensor:
    """(H, N, N) float32 dense attention of one encoder layer."""
    return result.layers[layer].to_dense()[0].float()


# ---------------------------------------------------------------------------------------------
# fingerprints and runs
# ---------------------------------------------------------------------------------------------

def test_run_keeps_the_encoders_probabilities_and_their_statistics(loaded, qa_run):
    """The run's kept attention is the encoder's own output in float16 (written so by the encoder), and its
    per-head statistics are those of the kept attention (within float16's rounding of the float32 ones).
    The run's encoder computes the statistics as it writes and a plain call does not: the fused kernel's two
    routes may order a row's float32 sums differently, so a kept value may sit one float16 step from the
    plain call's value rounded (a relative 2**-10), never further."""
    doc = qa_run.document
    with torch.no_grad():
        out = loaded.model.get_encoder()(doc.input_ids, attention_mask=doc.attention_mask,
                                          global_attention_mask=qa_run.global_mask, output_attentions=True)
    full = {sp.layer: sp for sp in export.sparse_from_outputs(out, qa_run.global_mask, doc.attention_mask)}
    assert sorted(qa_run.layers) == sorted(full)
    for layer, sp in full.items():
        kept = qa_run.layers[layer]
        assert kept.band.dtype == torch.float16
        for mine, plain in ((kept.band, sp.band), (kept.global_rows, sp.global_rows)):
            assert mine.dtype == torch.float16
            step = (plain.abs() * 2**-10).clamp_min(2**-24)  # one float16 step at the plain value's size
            assert ((mine.float() - plain).abs() <= step).all(), layer
        for name, value in analysis.head_stats(sp).items():
            assert torch.allclose(qa_run.head_stats[layer][name], value, atol=2e-3, rtol=1e-3), (layer, name)



def test_text_that_spells_a_special_token_is_read_as_text(loaded):
    """A "</s>" or "<pad>" written in a pasted document or question (an HTML tag, a tokenizer example) was
    tokenized as the special token: the model saw the document end in the middle. Now it is plain text;
    the only special tokens are those the tokenizer adds around the question and the document."""
    tok = loaded.tokenizer
    text = "The lead is <pad> Maren </s> Okafor. <mask> <s> end"
    doc = pipeline.prepare_document(loaded, text, "Who is </s> the lead?")
    ids = doc.input_ids[0].tolist()
    specials = [i for i, t in enumerate(ids) if t in tok.all_special_ids]
    q = doc.question_tokens()
    assert specials == [0, q[-1] + 1, q[-1] + 2, len(ids) - 1], doc.tokens  # <s> question </s></s> document </s>
    assert tok.decode(doc.input_ids[0, doc.document_tokens()]) == text
    assert tok.decode(doc.input_ids[0, doc.question_tokens()]) == "Who is </s> the lead?"


@pytest.mark.parametrize("question", ["???", " ?! ", "…"])
def test_a_question_without_words_is_refused_with_the_fix(loaded, question):
    with pytest.raises(InputError, match="has no words: type a question about the document"):
        pipeline.prepare_document(loaded, TEXT, question)
    with pytest.raises(InputError, match=r"the document is empty \(it has no text\): paste a text, upload a text, "
                                         "PDF or HTML file"):
        pipeline.prepare_document(loaded, " \n ", QUESTION)


def test_fingerprint_tells_inputs_apart():
    base = fingerprint("doc", "question", torch.tensor([[1, 0, 0]]), {"task": "qa", "beams": 1})
    assert base == fingerprint("doc", "question", torch.tensor([[1, 0, 0]]), {"beams": 1, "task": "qa"})
    assert len({
        base,
        fingerprint("doc.", "question", torch.tensor([[1, 0, 0]]), {"task": "qa", "beams": 1}),
        fingerprint("doc", "question", torch.tensor([[0, 1, 0]]), {"task": "qa", "beams": 1}),
        fingerprint("doc", "question", torch.tensor([1, 0, 0]), {"task": "qa", "beams": 1}),  # shape
        fingerprint("doc", "question", torch.tensor([[1, 0, 0]], dtype=torch.int32), {"task": "qa", "beams": 1}),
        fingerprint("doc", "question", torch.tensor([[1, 0, 0]]), {"task": "qa", "beams": 2}),
    }) == 6
    assert fingerprint("ab", "c") != fingerprint("a", "bc")  # parts do not run into each other
    assert fingerprint("x") != fingerprint(b"x") != fingerprint(["x"])


def test_run_fingerprint_covers_model_document_question_mask_and_settings(loaded, qa_run):
    doc, mask = qa_run.document, qa_run.global_mask
    fp = run_fingerprint(loaded, doc, {"task": "qa"}, mask)
    assert fp == run_fingerprint(loaded, doc, {"task": "qa"}, mask.clone())
    assert run_fingerprint(loaded, None, {"task": "qa"}, mask) is None
    other_doc = dataclasses.replace(doc, text=doc.text + " ")
    other_question = dataclasses.replace(doc, question="Where is the site?")
    other_mask = mask.clone()
    other_mask[0, -2] = 1 - other_mask[0, -2]
    other_model = dataclasses.replace(loaded, name="another")
    assert len({fp, run_fingerprint(loaded, other_doc, {"task": "qa"}, mask),
                run_fingerprint(loaded, other_question, {"task": "qa"}, mask),
                run_fingerprint(loaded, doc, {"task": "qa"}, other_mask),
                run_fingerprint(loaded, doc, {"task": "summarize"}, mask),
                run_fingerprint(other_model, doc, {"task": "qa"}, mask)}) == 6


def test_run_job_streams_records_settings_and_stops(loaded, qa_run):
    doc, mask = qa_run.document, qa_run.global_mask
    job = RunJob(loaded, doc, mask, task="qa", max_new_tokens=4, num_beams=1, settings={"document": "x"})
    assert not job.done and job.elapsed == 0.0
    job.run()
    assert job.done and job.error is None and job.elapsed > 0
    assert job.result.settings["document"] == "x" and job.result.settings["run_id"] == job.id == run_id(job.result)
    assert job.text == job.result.output_text  # the streamed pieces are the output, special tokens left out
    stopped = RunJob(loaded, doc, mask, task="qa", max_new_tokens=30, num_beams=1)
    stopped.cancel()
    stopped.start().thread.join(60)
    assert stopped.done and stopped.result.stopped_early and len(stopped.result.output_ids) <= 3
    broken = RunJob(loaded, doc, mask[:, :3], task="qa", max_new_tokens=2, num_beams=1)
    broken.run()  # a wrong mask: the error is kept for the page, not raised
    assert broken.done and broken.result is None and broken.error is not None


def test_a_decline_is_told_apart_from_an_answer(qa_run):
    assert not provenance.declined(dataclasses.replace(qa_run, output_text="Maren Okafor"))
    for text in ("not in the document", " Not in the document.", "not in the document "):
        assert provenance.declined(dataclasses.replace(qa_run, output_text=text))
    assert not provenance.declined(dataclasses.replace(qa_run, output_text="not in the document at all"))
    assert not provenance.declined(dataclasses.replace(qa_run, task="summarize", output_text="not in the document"))


def test_streamed_text_is_whole_characters(loaded):
    """Byte-level BPE splits an accented letter over tokens: the stream pipeline.run hands to
    on_token (pipeline.TextStream) shows no U+FFFD half characters, and what it shows is always a
    prefix of the decoded output."""
    tok = loaded.tokenizer
    text = " Noémi Zhou, Eíríkur Þórsson: 7,500,000 € in São Paulo"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert any("\ufffd" in tok.decode([i]) for i in ids)  # some token alone is half a character
    stream = pipeline.TextStream(tok)
    pieces, seen = [], []
    for i in [tok.bos_token_id, *ids, tok.eos_token_id]:
        pieces.append(stream.add(i))
        seen.append("".join(pieces))
        assert "\ufffd" not in seen[-1] and text.startswith(seen[-1])
    assert seen[-1] == text


def test_run_facts(qa_run):
    facts = run_facts(qa_run)
    assert facts[0] == f"{qa_run.document.n_tokens:,} input tokens"
    assert facts[1] == f"{len(qa_run.global_positions):,} global"
    assert facts[2] == f"{len(qa_run.output_ids) - 1} output tokens"
    # one output token is "1 output token" (the decoder start and one token), none is "0 output tokens"
    assert run_facts(dataclasses.replace(qa_run, output_ids=qa_run.output_ids[:2]))[2] == "1 output token"
    assert run_facts(dataclasses.replace(qa_run, output_ids=qa_run.output_ids[:1]))[2] == "0 output tokens"
    one = dataclasses.replace(qa_run, settings={"max_new_tokens": 1}, ended=False, answer=None)
    assert cut_note(one, "Max answer tokens", 256).startswith("The answer was cut at 1 token: raise"), cut_note(one, "x")
    # the whole answer's, said so (the QA page draws one token's log-probability beside it)
    n = len(qa_run.output_ids) - 1
    assert f"the whole answer's log-likelihood {qa_run.log_likelihood:.2f} (its {n} tokens summed)" in facts, facts
    # the kept attention's size is never rounded to nothing: a short run keeps a few hundredths of a MB
    mb = qa_run.memory["attention_mb"]
    assert 0 < mb < 1 and f"attention kept {mb:.2g} MB" in facts and "attention kept 0 MB" not in facts, facts
    assert "attention kept 4,312 MB" in run_facts(dataclasses.replace(qa_run, memory={"attention_mb": 4312.4}))
    assert [size_text(mb) for mb in (0.0594, 7.94, 4312.4, 12_000, 6_105_011.0, 3e8)] == [
        "0.059 MB", "7.9 MB", "4,312 MB", "11.7 GB", "5.8 TB", "286.1 TB"]
    # a sure answer (the decline, often) reads 0.00, not "-0.00"
    sure = dataclasses.replace(qa_run, token_logprobs=[-1e-4] * len(qa_run.token_logprobs))
    assert f"the whole answer's log-likelihood 0.00 (its {n} tokens summed)" in run_facts(sure), run_facts(sure)
    kept = dataclasses.replace(qa_run, settings={"answer_from_document": True})
    assert run_facts(kept)[-1] == "answer kept to a span of the document (or declined)"
    assert not [f for f in facts if "kept to a span" in f]


def test_an_output_without_text_says_why(qa_run):
    """Max tokens = 1: LED's one token is its start marker <s>, and the page read "(empty: the model ended at
    once)" above a warning that the output was cut and did not end. The line now says it was cut, what the one
    token is and the fix; a cancelled run and a run the model ended say so in their own words."""
    start = qa_run.output_tokens[0]
    cut = dataclasses.replace(qa_run, output_text="", output_ids=[2, 0], output_tokens=[start, "<s>"], ended=False,
                              stopped_early=False, answer=None)
    note = empty_output_note(cut, "Max answer tokens")
    assert note == ("(no text yet: the answer was cut at 1 token, and its only token is the model's marker <s>, "
                    "which is not text: raise Max answer tokens)"), note
    assert "ended at once" not in note
    ended = dataclasses.replace(cut, output_ids=[2, 2], output_tokens=[start, "</s>"], ended=True)
    assert empty_output_note(ended) == "(empty: the model ended at once)"
    both = dataclasses.replace(cut, output_ids=[2, 0, 2], output_tokens=[start, "<s>", "</s>"], ended=True)
    assert empty_output_note(both) == "(no text: its 2 tokens are the model's markers (<s>, </s>), which are not text)"
    stopped = dataclasses.replace(cut, stopped_early=True)
    assert empty_output_note(stopped).startswith("(no text: cancelled before the model wrote a word")
    assert empty_output_note(dataclasses.replace(stopped, output_ids=[2], output_tokens=[start])) == \
        "(no text: cancelled before the model wrote a token)"
    assert empty_output_note(qa_run) is None  # an output with text
    assert one_token_note("Max summary tokens").startswith("Max summary tokens = 1: the output is a single token")


def test_a_cut_inside_a_word_says_so(loaded):
    """A document cut to the model's limit in the middle of a word of several tokens: the message quoted the cut
    part from mid-word ("orvandel. The site ...") as if the app had mangled it. It now names the word and the part
    the model read; a cut between words says nothing more."""
    from ledviz.pipeline import prepare_document

    text = "The site is Zyxqorvandel. " * 40
    mid = prepare_document(loaded, text, max_tokens=10)
    assert mid.cut_word() == ("Zyxqor", "Zyxqorvandel")
    assert mid.truncation_message().endswith(
        "The cut falls inside the word “Zyxqorvandel”: the model read its first part, “Zyxqor”."), mid.truncation_message()
    between = prepare_document(loaded, text, max_tokens=16)
    assert between.truncated_tokens and between.cut_word() is None
    assert "inside the word" not in between.truncation_message()
    assert prepare_document(loaded, "The site is Zyxqorvandel.").cut_word() is None  # nothing cut


def test_size_text_chooses_the_unit_after_rounding():
    """Each size in the unit its rounded number belongs to: 1,048,575.99 MB read "1,024.0 GB" and
    9,999.6 MB "10,000 MB" (the unit chosen before rounding); a tiny size read "1.2e-05 MB"."""
    said = {mb: size_text(mb) for mb in (0, 1.2e-05, 0.0594, 1.0, 9.94, 9.96, 9.996, 10, 9_999.4, 9_999.5, 9_999.6,
                                         1024 * 1023.94, 1_048_575.99, 1024 * 1024)}
    assert said == {0: "0 MB", 1.2e-05: "0.000012 MB", 0.0594: "0.059 MB", 1.0: "1 MB", 9.94: "9.9 MB",
                    9.96: "10 MB", 9.996: "10 MB", 10: "10 MB", 9_999.4: "9,999 MB", 9_999.5: "9.8 GB",
                    9_999.6: "9.8 GB", 1024 * 1023.94: "1,023.9 GB", 1_048_575.99: "1.0 TB",
                    1024 * 1024: "1.0 TB"}, said


def test_small_values_read_as_decimals_not_exponents_or_zeros():
    """Python's "g" wrote a long document's small attention as "3.052e-05" (the highlighted text's hover, the colour
    legend's top), and How-it-works' ".3f" wrote a scored cell of 0.0004 as "0.000", like a cell never scored."""
    from ledviz.text import decimal

    assert [decimal(x) for x in (0.0000305, 0.0004, 1 / 3, 0.09996, 1234.5, 0, 2.0, -0.00123)] == [
        "0.0000305", "0.0004", "0.333", "0.1", "1,234", "0", "2", "-0.00123"]
    assert "e-05" not in plots.legend_html("a", 0.0000305) and "0.0000305" in plots.legend_html("a", 0.0000305)
    ex = explain.build_example(40, 12, [0])
    small = ((ex.dense > 0) & (ex.dense < 0.0005)).nonzero().tolist()
    assert small  # scored cells this small exist in the example
    i, j = small[0]
    said = ex.describe("absolute", i, j)
    assert ": 0.000," not in said and decimal(ex.dense[i, j]) in said, said
    # the tokens are named inside the sentence as position and text, not the axis labels' "12:."
    assert said.startswith(f"query {i} “{ex.tokens[i]}” → key {j} “{ex.tokens[j]}”: "), said


def test_marked_words_are_listed_once_each():
    """The free summary of the expedition sample wrote "Revenue" twice, and the caption listed
    "Not in the document: “Revenue”, “Revenue”", as if two words; each is now listed once, with its count."""
    marks = provenance.unsupported_words("Distance: 5, Revenue: 5, Revenue: 5, Sponsor: Zorb.", "Distance: 5 km.")
    assert [m.text for m in marks].count("Revenue") == 2
    assert provenance.distinct_marks(marks)[0] == ("Revenue", 2)
    assert provenance.distinct_marks([]) == []


def test_token_ranges_read_in_words():
    """A zoom of one query token was titled "Tokens 5–5 → 0–63"; ranges now read "token 5", "tokens 10–20"."""
    from ledviz.text import token_range
    from ledviz.views import zoom_title

    assert token_range(5, 5) == "token 5" and token_range(10, 20) == "tokens 10–20"
    assert token_range(1000, 1200) == "tokens 1,000–1,200"
    assert zoom_title((0, 64), (0, 64)) == "Queries and keys: tokens 0–63"
    assert zoom_title((5, 6), (0, 64)) == "Queries: token 5 → keys: tokens 0–63"
    assert 'title="token 3: ' in plots.attention_html("a b c d e", [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)],
                                                       np.array([0.0, 0.0, 0.0, 1.0, 0.0]))


def test_as_typed_escapes_markdown_and_breaks_autolinks():
    """Text from a user or a document shows as typed in st.markdown / st.caption: Markdown's, LaTeX's and
    Streamlit's characters escaped, and a WORD JOINER where the autolinker looks (backslashes alone leave
    "www.example.com" a link: seen in Chromium)."""
    wj = WORD_JOINER
    assert as_typed("**bold** $5 and $6 <b>x</b>") == r"\*\*bold\*\* \$5 and \$6 \<b\>x\</b\>"
    assert as_typed("www.example.com WWW.X.ORG") == f"www{wj}\\.example\\.com WWW{wj}\\.X\\.ORG"
    assert as_typed("a@b.org") == f"a@{wj}b\\.org"
    assert as_typed("https://x.org") == f"https\\://{wj}x\\.org"
    assert as_typed(":smile: :red[x] &copy; # h") == r"\:smile\: \:red\[x\] \&copy; \# h"
    # lines stay lines; a line's leading spaces stay (as no-break spaces: four would start a code block)
    assert as_typed("a\n\n    b\r\nc") == "a  \n  \n\u00a0\u00a0\u00a0\u00a0b  \nc"
    # nothing is lost: undoing the escapes (CommonMark drops a backslash before ASCII punctuation) gives the text
    every = "".join(chr(c) for c in range(33, 127)) + " www.a.b x@y http://z é"
    undone = re.sub(r"\\(.)", r"\1", as_typed(every)).replace(wj, "")
    assert undone == every and "\\" + "\\" in as_typed("\\")


def test_run_id_is_stable():
    result = type("R", (), {"settings": {}})()
    assert run_id(result) == run_id(result) and len(run_id(result)) == 12


# ---------------------------------------------------------------------------------------------
# the views' numbers, against the dense attention
# ---------------------------------------------------------------------------------------------

def test_view_label_clip_and_fit(qa_run):
    assert View().label() == "all layers, all heads (mean)"
    assert View(1, (2,), "max").label() == "layer 1, head 2"
    assert View(0, (1, 3), "max").label() == "layer 0, heads 1, 3 (max)"
    assert View(5, (1, 7)).clip(2, 4) == View(None, (1,))
    assert View(1, (9,)).clip(2, 4) == View(1, None)
    L, H = len(qa_run.layers), next(iter(qa_run.layers.values())).num_heads
    assert View(L, (H,)).fit(qa_run) == View()


def test_the_max_view_says_how_much_attention_it_shows(qa_run):
    """The max over heads gives a token's row more than 1 (each head's row sums to 1): its map's colour bar,
    "attention mass", read as a share. The map now says how much a row holds here; the mean view and one head
    need no such line."""
    from ledviz import views

    agg = views.aggregated(qa_run, View(None, None, "max"))
    m, _ = views.overview_map(agg, 64)
    n = qa_run.document.n_tokens
    per_token = float(m.sum()) / n
    assert per_token > 1.05  # more than one head's 1
    note = View(None, None, "max").max_mass_note(float(m.sum()), n)
    assert note.startswith("Max view:") and f"holds {per_token:.1f} of attention on average" in note, note
    assert View().max_mass_note(float(m.sum()), n) is None
    assert View(1, (2,), "max").max_mass_note(1.0 * n, n) is None  # one head: its rows sum to 1


@pytest.mark.parametrize("view", [View(1, (2,)), View(0, (1, 3)), View(), View(None, (0,), "max")])
def test_aggregated_view_matches_the_dense_maps(qa_run, view):
    maps = torch.stack([dense(qa_run, l) for l in sorted(qa_run.layers)])  # (L, H, N, N)
    layers = list(range(maps.shape[0])) if view.layer is None else [view.layer]
    heads = list(range(maps.shape[1])) if view.heads is None else list(view.heads)
    picked = maps[layers][:, heads].flatten(0, 1)
    want = picked.amax(0) if view.reduce == "max" else picked.mean(0)  # (N, N)
    agg = views.aggregated(qa_run, view)
    n = qa_run.document.n_tokens
    for i in (0, 5, n - 1):
        np.testing.assert_allclose(views.token_row(agg, i, "from"), want[i].numpy(), atol=2e-3)
        np.testing.assert_allclose(views.token_row(agg, i, "to"), want[:, i].numpy(), atol=2e-3)
    np.testing.assert_allclose(views.zoom_map(agg, (2, 9), (4, 12)), want[2:9, 4:12].numpy(), atol=2e-3)
    m, edges = views.overview_map(agg, 4)
    assert edges[0] == 0 and edges[-1] >= n and len(edges) == m.shape[0] + 1 == 5
    for a in range(4):
        for b in range(4):
            block = want[edges[a]:edges[a + 1], edges[b]:edges[b + 1]].sum()
            assert abs(m[a, b] - float(block)) < 1e-2, (a, b)
    with pytest.raises(ValueError, match="'from' or 'to'"):
        views.token_row(agg, 0, "sideways")


def test_on_document_zeroes_question_and_special_tokens(qa_run):
    doc = qa_run.document
    w = views.on_document(qa_run, np.ones(doc.n_tokens))
    assert w.sum() == len(doc.document_tokens())
    assert w[doc.question_tokens()].sum() == 0 and w[0] == 0 and w[-1] == 0


def test_cross_map_for_a_view(qa_run):
    cross = [c.float() for c in qa_run.cross_attentions]  # per layer (H, T, N)
    np.testing.assert_allclose(views.cross_map(qa_run, View(1, (2,))), cross[1][2].numpy(), atol=1e-3)
    everything = torch.stack(cross).mean((0, 1)).numpy()
    np.testing.assert_allclose(views.cross_map(qa_run, View(7, (40,))), everything, atol=1e-3)  # out of range: all
    none = dataclasses.replace(qa_run, cross_attentions=())
    assert views.cross_map(none, View()) is None


def test_binned_rows_keep_each_rows_mass():
    rows = torch.rand(3, 50)
    m, edges = views.binned_rows(rows, 50, 8)
    assert m.shape == (3, 8) and len(edges) == 9 and edges[-1] >= 50
    np.testing.assert_allclose(m.sum(1), rows.sum(1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(m[:, 0], rows[:, edges[0]:edges[1]].sum(1).numpy(), rtol=1e-5)
    m, edges = views.binned_rows(rows[:, :5], 5, 8)  # never more bins than tokens
    assert m.shape == (3, 5)


def test_global_stats_and_rows_for_a_view(qa_run):
    positions = qa_run.global_positions
    per_layer = analysis.global_token_stats([qa_run.layers[l] for l in sorted(qa_run.layers)])
    one = views.global_stats(qa_run, View(1, (2,)))
    want = per_layer[(per_layer.layer == 1) & (per_layer["head"] == 2)].sort_values("position")
    assert list(one.position) == positions
    np.testing.assert_allclose(one.received_mean, want.received_mean, rtol=1e-6)
    top = views.global_stats(qa_run, View(None, None, "max"))
    np.testing.assert_allclose(top.entropy, per_layer.groupby("position").entropy.max(), rtol=1e-6)
    calls = []
    views.global_stats(qa_run, View(0), lambda l: calls.append(l) or analysis.global_token_stats([qa_run.layers[l]]))
    assert calls == [0]  # the app's cached per-layer statistics are used
    agg = views.aggregated(qa_run, View(0, (1,)))
    rows = views.global_rows(agg, positions[-2:])
    np.testing.assert_allclose(rows.numpy(), dense(qa_run, 0)[1, positions[-2:]].numpy(), atol=2e-3)
    not_global = next(i for i in range(qa_run.document.n_tokens) if i not in positions)
    with pytest.raises(ValueError, match="not global tokens"):
        views.global_rows(agg, [not_global])


def test_stat_grid(qa_run):
    table = analysis.stats_table(dict(sorted(qa_run.head_stats.items())))
    grid = views.stat_grid(table, "entropy")
    assert list(grid.index) == sorted(qa_run.layers) and grid.shape[1] == next(iter(qa_run.layers.values())).num_heads
    assert grid.loc[1, 2] == pytest.approx(float(table[(table.layer == 1) & (table["head"] == 2)].entropy.mean()))
    with pytest.raises(ValueError, match="stat must be one of"):
        views.stat_grid(table, "loudness")


# ---------------------------------------------------------------------------------------------
# provenance
# ---------------------------------------------------------------------------------------------

def test_answer_spans():
    text = "The lead is Maren  Okafor.\nMAREN OKAFOR again; maren okafo no."
    assert provenance.answer_spans(text, "maren okafor.") == [(12, 25), (27, 39)]
    assert provenance.answer_spans(text, "  ") == []
    assert provenance.answer_spans("a (b) c", "(b)") == [(2, 5)]  # regex characters are literal


def test_top_passages_ranks_sentences_by_attention(qa_run):
    doc = qa_run.document
    groups = provenance.sentence_groups(doc)
    assert groups.num_groups == 5 and groups.labels[1] == "The project lead is Maren Okafor."
    inside = [i for i in doc.document_tokens() if int(groups.index[i]) == 1]
    w = np.zeros(doc.n_tokens, dtype=np.float32)
    w[inside[0]] = 3.0
    w[doc.document_tokens()[0]] = 1.0  # in sentence 0
    w[doc.question_tokens()[0]] = 50.0  # the question is in no passage
    top = provenance.top_passages(groups, w, 3)
    assert [t[2] for t in top] == [groups.labels[1], groups.labels[0]]  # sentences holding nothing are left out
    assert [round(t[1], 6) for t in top] == [0.75, 0.25]
    assert top[0][0] == groups.spans[1] and doc.text[slice(*top[0][0])] == groups.labels[1]
    assert provenance.top_passages(groups, np.zeros(doc.n_tokens), 3) == []


def test_answer_source_traces_answer_tokens(qa_run):
    doc = qa_run.document
    groups = provenance.sentence_groups(doc)
    lead = [i for i in doc.document_tokens() if int(groups.index[i]) == 1]
    site = [i for i in doc.document_tokens() if int(groups.index[i]) == 2]
    run = dataclasses.replace(qa_run, output_ids=[2, 100, 101, 2], output_text="Maren Okafor")
    cross = np.zeros((3, doc.n_tokens), dtype=np.float32)
    cross[0, lead[2]] = 1.0
    cross[1, lead[3]] = 1.0
    cross[2, site[0]] = 1.0  # the end-of-sequence step: not an answer token
    source = provenance.answer_source(run, cross, [0, 1, 2], groups)
    np.testing.assert_allclose(source.weights, cross[:2].mean(0))
    start = doc.text.index("Maren Okafor")
    assert source.matches == [(start, start + len("Maren Okafor"))]
    first, last = source.match_tokens
    assert doc.text_spans()[first][0] <= start < doc.text_spans()[first][1]
    assert doc.text[doc.text_spans()[last][0]:doc.text_spans()[last][1]] in "Maren Okafor"
    assert source.in_top_passage and source.passages[0][2] == groups.labels[1]
    cross[:2] = 0
    cross[:2, site[0]] = 1.0  # looking elsewhere: the answer is not in the top passage
    elsewhere = provenance.answer_source(run, cross, [0, 1, 2], groups)
    assert elsewhere.matches and not elsewhere.in_top_passage
    assert provenance.answer_source(dataclasses.replace(run, output_ids=[2, 2]), cross, [0, 1, 2]) is None


def test_question_attention(qa_run):
    doc = qa_run.document
    rows = [np.full(doc.n_tokens, 1.0 / doc.n_tokens, dtype=np.float32), np.zeros(doc.n_tokens, dtype=np.float32)]
    on_doc, share = provenance.question_attention(qa_run, rows)
    assert on_doc[doc.question_tokens()].sum() == 0 and on_doc[0] == 0
    assert share == pytest.approx(len(doc.document_tokens()) / doc.n_tokens)  # of the rows' total


def test_question_attention_share_is_a_share_for_mean_and_max_views(qa_run):
    doc = qa_run.document
    q = doc.question_tokens()
    for reduce in ("mean", "max"):
        agg = views.aggregated(qa_run, View(None, None, reduce))
        rows = [views.token_row(agg, i) for i in q]
        on_doc, share = provenance.question_attention(qa_run, rows)
        assert 0 < share <= 1, (reduce, share)
        if reduce == "mean":  # mean rows sum to 1: the share is the mass on the document
            assert share == pytest.approx(float(on_doc.sum()), rel=1e-4)
        else:  # max rows sum to more than 1 (the old caption's "294%")
            assert float(np.mean(rows, axis=0).sum()) > 1


def test_output_pieces_and_steps(loaded, qa_run):
    pieces = provenance.output_pieces(qa_run, loaded.tokenizer)
    assert len(pieces) == len(qa_run.output_ids) - 1
    assert provenance.output_pieces(qa_run) == list(qa_run.output_tokens[1:])
    run = dataclasses.replace(qa_run, output_ids=[2, 7, 0, 8, 2])
    assert provenance.output_steps(run, [0, 2]) == [1, 3]


# ---------------------------------------------------------------------------------------------
# the run's downloads
# ---------------------------------------------------------------------------------------------

def test_run_downloads_read_back(qa_run, tmp_path):
    run = dataclasses.replace(qa_run, settings={"model": "embedded", "task": "qa", "fingerprint": "abc"})
    data = json.loads(export.run_settings_json(run, View(1, (0,), "mean")))
    assert data["settings"] == {"model": "embedded", "task": "qa"}  # the fingerprint is internal
    assert data["view"] == {"layer": 1, "heads": [0], "reduce": "mean"}
    assert data["document"]["tokens"] == qa_run.document.n_tokens and data["document"]["question"] == QUESTION
    (tmp_path / "run.npz").write_bytes(export.run_npz_bytes(run))
    back = export.load_npz(tmp_path / "run.npz")
    assert sorted(back.layers) == sorted(qa_run.layers)
    assert torch.equal(back.layers[1].band, qa_run.layers[1].band)
    assert back.metadata["text"] == TEXT and back.metadata["question"] == QUESTION
    assert back.metadata["global_positions"] == [qa_run.global_positions]
    assert back.metadata["attention_window"] == [2 * qa_run.layers[l].window for l in sorted(qa_run.layers)]
    assert export.parquet_available()
    (tmp_path / "run.zip").write_bytes(export.run_parquet_zip(run, bins=8))
    with zipfile.ZipFile(tmp_path / "run.zip") as z:
        assert {"head_stats.parquet", "overviews.parquet", "global_tokens.parquet"} <= set(z.namelist())
        z.extract("global_tokens.parquet", tmp_path)
    stats = pd.read_parquet(tmp_path / "global_tokens.parquet")
    assert sorted(set(stats.position)) == qa_run.global_positions


def _named_run(task="summarize", output_ids=(2, 5, 7), **settings):
    from types import SimpleNamespace

    return SimpleNamespace(task=task, settings=settings, document=SimpleNamespace(text=TEXT),
                           output_ids=list(output_ids))


@pytest.mark.parametrize("task, document, run_id, name", [
    ("summarize", "Annual Report 2023", "3fa9c2d1e5b7", "ledviz-summary-annual-report-2023-3fa9c2d1.json"),
    ("qa", "Bericht Über Märkte.PDF", "abc", "ledviz-qa-bericht-uber-markte-abc.json"),  # accents, extension
    ("qa", "../../etc/passwd; rm -rf *.txt", "abc", "ledviz-qa-etc-passwd-rm-rf-abc.json"),  # nothing unsafe
    ("summarize", "pasted text", "abc", "ledviz-summary-pasted-text-abc.json"),
    ("summarize", "報告書.txt", "abc", "ledviz-summary-document-abc.json"),  # nothing left of the name
    ("summarize", None, "abc", "ledviz-summary-document-abc.json"),
    ("summarize", "x" * 30 + " " + "y" * 30, "abc", "ledviz-summary-" + "x" * 30 + "-abc.json"),  # cut at a word
])
def test_run_file_names_say_task_and_document_in_safe_characters(task, document, run_id, name):
    assert export.run_file_name(_named_run(task, document=document, run_id=run_id), ".json") == name


def test_run_file_names_differ_by_run_and_format():
    a = _named_run(document="Annual Report 2023", run_id="3fa9c2d1e5b7")
    assert export.run_file_name(a, ".npz") == "ledviz-summary-annual-report-2023-3fa9c2d1.npz"
    assert export.run_file_name(a, "-parquet.zip") == "ledviz-summary-annual-report-2023-3fa9c2d1-parquet.zip"
    # no run id: a digest of document and output, the same for the same run, another for another output
    b, c = _named_run(document="doc"), _named_run(document="doc", output_ids=(2, 9))
    assert re.fullmatch(r"ledviz-summary-doc-[0-9a-f]{8}\.json", export.run_file_name(b, ".json"))
    assert export.run_file_name(b, ".json") == export.run_file_name(_named_run(document="doc"), ".json")
    assert export.run_file_name(b, ".json") != export.run_file_name(c, ".json")
    with pytest.raises(ValueError, match="suffix must be one of"):
        export.run_file_name(a, ".exe")


# ---------------------------------------------------------------------------------------------
# figures and HTML
# ---------------------------------------------------------------------------------------------

def test_escape_is_the_one_label_escaper():
    assert plots.escape("<s> & </s>") == "&lt;s&gt; &amp; &lt;/s&gt;"
    assert plots.escape('say "hi"') == 'say "hi"' and plots.escape(3) == "3"
    texts = ["<s>", "line\nbreak", "an extraordinarily long token", "x"]
    assert plots.token_axis_labels(texts, [0, 1, 2]) == ["0 &lt;s&gt;", "1 line⏎break", "2 an extraordin…"]
    assert plots.output_axis_labels(["Maren", " ", "<b>"]) == ["1 Maren", "2 ' '", "3 &lt;b&gt;"]
    html = plots.passages_html([((0, 3), 0.5, "a <b> c")], "Top & more")
    assert "a &lt;b&gt; c" in html and "Top &amp; more:" in html and "<b>50%</b>" in html
    # a long document spreads attention thin: a small share reads "<1%", not "0%"
    small = plots.passages_html([((0, 3), 0.003, "a"), ((3, 5), 0.0, "b"), ((5, 9), 0.006, "c")], "Top")
    assert "<b>&lt;1%</b>" in small and "<b>0%</b>" in small and "<b>1%</b>" in small
    assert "&lt;tag&gt;" in plots.text_box_html("<tag>")


def test_lab_figures():
    df = pd.DataFrame({"setting": ["first <s>", "none"], "encode_s": [0.5, 0.7], "generate_s": [None, None]})
    fig = plots.bars_figure(df, {"encode_s": "encode", "generate_s": "generate", "absent": "x"}, "Time", "s",
                            stacked=True)
    assert [t.name for t in fig.data] == ["encode"] and list(fig.data[0].y) == ["first &lt;s&gt;", "none"]
    assert fig.layout.barmode == "stack" and fig.layout.height == 300
    # horizontal, the first setting on top: its label reads in full beside the bars (slanted under them it was cut)
    assert fig.data[0].orientation == "h" and fig.layout.yaxis.autorange == "reversed"
    assert fig.layout.xaxis.title.text == "s"
    table = pd.DataFrame({"a": [0.1, 0.2], "b <x>": [0.3, 0.1]}, index=[0, 1])
    fig = plots.layer_distance_figure(table, ["a", "b <x>"], reference=0)
    assert [t.name for t in fig.data] == ["b &lt;x&gt;"] and "“a”" in fig.layout.title.text
    fig = plots.binned_map_figure(np.array([[0.5, -0.25], [0.0, 0.1]]), [0, 4, 8], "A − B", diverging=True)
    assert fig.data[0].zmin == -0.5 and fig.data[0].zmax == 0.5 and list(fig.data[0].x) == [0, 4]
    fig = plots.token_distance_figure(np.array([0.0, 0.2, 0.4]), [([0, 2], "#111", "global in <A>"),
                                                                  (list(range(401)), "#222", "too many")])
    assert len(fig.data) == 2 and fig.data[1].name == "global in &lt;A&gt;" and fig.data[1].y[0] == pytest.approx(0.42)


def test_the_overview_map_sits_beside_its_colour_bar():
    """On a wide screen (2560 px) the square map is narrower than the figure: it was drawn in the middle, far from
    its colour bar at the right edge. Its x axis now keeps it against the right side, by the bar."""
    fig = plots.overview_figure(np.ones((4, 4)) / 4, [0, 4, 8, 12, 16], title="t")
    assert fig.layout.xaxis.constraintoward == "right" and fig.layout.xaxis.constrain == "domain"
    assert fig.layout.yaxis.scaleanchor == "x"  # still square


def test_explain_and_cost_figures():
    ex = explain.build_example(10, 2, [0, 4])
    fig, curves = plots.explain_figure(ex, ("absolute", 5, 4))
    assert sorted(curves.values()) == ["absolute", "global", "local"]
    for number, part in curves.items():  # every cell has its invisible marker with the cell's description
        n_cols = {"local": ex.width, "global": ex.x, "absolute": ex.n}[part]
        assert len(fig.data[number].x) == ex.n * n_cols
        assert fig.data[number].text[0] == plots.escape(ex.describe(part, 0, 0))
    assert len(fig.layout.shapes) == 1 + (ex.partner("absolute", 5, 4) is not None)
    fig, curves = plots.explain_figure(explain.build_example(10, 2, []))
    assert sorted(curves.values()) == ["absolute", "local"]  # no global tokens, no global view
    pairs, memory = plots.cost_figures(explain.cost_table(64, 1, heads=12, layers=6), 64, 12, 6, "float16")
    assert len(pairs.data) == 3 and pairs.layout.xaxis.type == "log" and "12 heads × 6 layers" in memory.layout.title.text


def test_the_cost_figures_name_the_crossover_and_fit_a_narrow_screen():
    """The dotted line where LED's band and full attention cost the same is a named series of the legend (its
    annotation was drawn off the plot: the line read as nothing), and the titles are two short lines (the
    memory figure's one line was cut at 400 px: "… 6 layers, floa")."""
    pairs, memory = plots.cost_figures(explain.cost_table(512, 1, heads=12, layers=6), 512, 12, 6, "float32")
    names = [t.name for t in pairs.data]
    assert len(names) == 3 and names[2].startswith("crossover N = 2w + 1 = 1,025"), names
    assert list(pairs.data[2].x) == [1025, 1025] and pairs.data[2].line.dash == "dot"
    for fig in (pairs, memory):
        lines = fig.layout.title.text.split("<br>")
        assert len(lines) == 2 and max(map(len, lines)) <= 34, lines
        assert fig.layout.margin.t >= 50  # room for both lines


def test_model_figures(loaded):
    table = explain.parameter_table(loaded.model)
    per_layer = explain.parameters_per_layer(table)
    cfg = loaded.config
    assert len(per_layer) == cfg.encoder_layers + cfg.decoder_layers and per_layer.index[0] == "enc 0"
    assert int(per_layer.sum().sum()) == int(table[table.layer.notna()].params.sum())
    fig = plots.parameters_figure(per_layer)
    assert fig.layout.barmode == "stack" and len(fig.data) == per_layer.shape[1]
    by_component = explain.parameters_by_component(table)
    assert by_component.params.sum() == table.params.sum() and by_component.share.sum() == pytest.approx(1.0)
    assert list(dict.fromkeys(by_component.part)) == [p for p in explain.PARTS if p in set(table.part)]
    fig = plots.windows_figure(cfg.attention_windows())
    assert list(fig.data[0].y) == list(cfg.attention_windows())
    fig = plots.attention_memory_figure(explain.attention_memory(cfg, 4096, 2))
    assert [t.name for t in fig.data] == ["float32", "float16"] and fig.layout.barmode == "group"
    assert isinstance(fig, go.Figure)


def test_colour_bars_name_the_quantity_not_the_scale():
    z = np.array([[0.5, 0.25], [0.0, 0.1]])
    for scale, title in [("clipped", "attention mass<br>(top 0.5% clipped)"), ("linear", "attention mass"),
                         ("log", "log10 attention mass")]:
        fig = plots.overview_figure(z, [0, 4, 8], scale=scale)
        assert fig.data[0].colorbar.title.text == title
    assert plots.rows_figure(z, ["a", "b"], [0, 4, 8], value_name="attention mass").data[0].colorbar.title.text \
        .startswith("attention mass")
    assert plots.token_heatmap_figure(z, ["0 a", "1 b"], ["0 a", "1 b"]).data[0].colorbar.title.text == "attention"
    for diverging, title in [(True, "difference"), (False, "mean attention")]:
        fig = plots.binned_map_figure(z, [0, 4, 8], "A", diverging=diverging)
        assert fig.data[0].colorbar.title.text == title


@pytest.mark.parametrize("make", [
    lambda g: plots.rows_figure(np.ones((3, 4)), ["1 a", "2 b", "3 c"], [0, 250, 500, 750, 1000], global_positions=g),
    lambda g: plots.profile_figure(np.ones(1000), marks=[(5, "token")], global_positions=g),
], ids=["rows: cross-attention and global rows", "profile: where tokens look"])
def test_global_tokens_are_marked_above_the_document_axis(make):
    """The cross-attention map, the global tokens' rows and the attention profiles have the document
    along x and something else along y: a ▼ over each global position, on a 0-1 axis of its own
    laid over the figure's, at its top (the map's rows still run downwards)."""
    fig = make([617, 0, 617])
    marks = [t for t in fig.data if t.type == "scatter" and t.yaxis == "y2"]
    assert len(marks) == 1 and list(marks[0].customdata) == [0, 617]
    offset = marks[0].x[0]
    assert [x - offset for x in marks[0].x] == [0, 617] and offset in (0, 0.5)
    assert list(marks[0].y) == [1.0, 1.0] and marks[0].marker.color == plots.GLOBAL_MARK
    assert fig.layout.yaxis2.overlaying == "y" and tuple(fig.layout.yaxis2.range) == (0, 1)
    assert fig.layout.yaxis2.autorange in (None, False)  # top is top on the overlaid axis
    assert not any(t.yaxis == "y2" for t in make([]).data)  # no global tokens: no marks


def test_the_profile_runs_along_token_positions():
    """x is the input's token positions (the QA profile's question tokens come first, at 0), not
    "document token" as it read while the ▼ marked the question's positions on it."""
    fig = plots.profile_figure(np.ones(12), global_positions=[1, 2, 3])
    assert fig.layout.xaxis.title.text == "token position" and list(fig.data[0].x) == list(range(12))
    # the global tokens' rows and the cross-attention run along the same raw positions: their axis read
    # "document token" (global rows) and "input token" (cross-attention) beside the profile's "token position"
    rows = plots.rows_figure(np.ones((2, 3)), ["0 <s>", "5 a"], [0, 4, 8, 12], global_positions=[0, 5])
    assert rows.layout.xaxis.title.text == "token position"


def test_global_tokens_are_marked_on_every_map():
    z = np.random.default_rng(0).random((4, 4))
    fig = plots.overview_figure(z, [0, 250, 500, 750, 1000], global_positions=[0, 617, 617])
    marks = [t for t in fig.data if t.type == "scatter"]
    assert len(marks) == 2  # above the key columns, beside the query rows
    assert [x - 0.5 for x in marks[0].x] == [0, 617] and list(marks[0].customdata) == [0, 617]
    assert [y - 0.5 for y in marks[1].y] == [0, 617] and all(t.marker.color == plots.GLOBAL_MARK for t in marks)
    assert len(plots.overview_figure(z, [0, 250, 500, 750, 1000]).data) == 1  # none: no marks
    fig = plots.binned_map_figure(z, [0, 250, 500, 750, 1000], "A", global_positions=[3])
    assert sum(t.type == "scatter" for t in fig.data) == 2
    labels = plots.token_axis_labels(["<s>", "a", "b"], [0, 1, 2], global_positions=[0])
    assert labels[0].startswith("<b") and plots.GLOBAL_SYMBOL in labels[0] and "0 &lt;s&gt;" in labels[0]
    assert labels[1:] == ["1 a", "2 b"] and len(set(labels)) == 3
    ex = explain.build_example(12, 2, [0, 5])
    fig, _ = plots.explain_figure(ex)
    ticks = fig.layout.yaxis.ticktext
    assert [i for i, t in enumerate(ticks) if plots.GLOBAL_SYMBOL in t] == [0, 5]
    assert [i for i, t in enumerate(fig.layout.xaxis3.ticktext) if plots.GLOBAL_SYMBOL in t] == [0, 5]
    assert all(plots.GLOBAL_SYMBOL in t for t in fig.layout.xaxis2.ticktext)  # the global view's columns


def test_explain_maps_stack_for_a_narrow_screen():
    """Stacked, each map is the figure's full width, under its own title, with its own token labels and
    the picked cell framed in it (side by side at 400 px the three titles overlapped)."""
    ex = explain.build_example(24, 3, [0, 5])
    side, _ = plots.explain_figure(ex, ("absolute", 5, 4))
    fig, curves = plots.explain_figure(ex, ("absolute", 5, 4), stacked=True)
    assert sorted(curves.values()) == ["absolute", "global", "local"]
    layout = fig.layout.to_plotly_json()
    assert [layout[a]["domain"] for a in ("xaxis", "xaxis2", "xaxis3")] == [[0.0, 1.0]] * 3
    rows = [layout[a]["domain"] for a in ("yaxis", "yaxis2", "yaxis3")]
    assert all(a[0] > b[1] for a, b in zip(rows, rows[1:]))  # top to bottom, not overlapping
    assert all(len(layout[a]["ticktext"]) == ex.n for a in ("yaxis", "yaxis2", "yaxis3"))
    titles = sorted(fig.layout.annotations, key=lambda t: -t.y)
    assert [t.text.split("<br>")[0] for t in titles] == ["raw: encoder_attentions", "raw: global_attentions",
                                                          "unfolded N × N"]
    assert fig.layout.height == 3 * side.layout.height
    axis = {"local": "y", "global": "y2", "absolute": "y3"}  # the picked cell and its partner, each in its map
    assert {s.yref for s in fig.layout.shapes} == {"y3", axis[ex.partner("absolute", 5, 4)[0]]}


@pytest.mark.parametrize("n,w,globals_", [(explain.MAX_TOKENS, 3, [0]), (explain.MAX_TOKENS, 1, [0]),
                                           (24, 3, [0, 5]), (explain.MAX_TOKENS, 12, [])])
def test_explain_subplots_are_wide_enough_for_their_titles(n, w, globals_):
    fig, _ = plots.explain_figure(explain.build_example(n, w, globals_))
    layout = fig.layout.to_plotly_json()
    domains = [layout[name]["domain"] for name in ("xaxis", "xaxis2", "xaxis3") if name in layout]
    assert len(domains) == 2 + bool(globals_)
    for a, b in domains:  # each subplot at least a fifth of the width (less the gaps): its title fits
        assert b - a >= plots.EXPLAIN_MIN_SHARE - 0.03, (a, b)
    titles = sorted(fig.layout.annotations, key=lambda t: t.x)
    for left, right in zip(titles, titles[1:]):  # centred titles at least a fifth of the width apart
        assert right.x - left.x >= plots.EXPLAIN_MIN_SHARE - 0.03


def test_example_sizes_match_the_slider():
    assert explain.MAX_TOKENS == len(explain.example_tokens(explain.MAX_TOKENS))
    with pytest.raises(InputError, match=f"8 to {explain.MAX_TOKENS} tokens"):
        explain.example_tokens(explain.MAX_TOKENS + 1)


# ---------------------------------------------------------------------------------------------
# faithfulness marks
# ---------------------------------------------------------------------------------------------

DOC = ("Project Bluefinch report. The project lead is Maren Okafor. The site is Velmora. The budget is "
       "4,312 crowns. The deadline is 14 March 2034. Each section repeats a few well-known facts.")


@pytest.mark.parametrize("output,flagged", [
    ("The lead is Maren Okafor; the budget is 4312 crowns.", []),  # numbers by value, not by format
    ("Lead: MAREN OKAFOR, budget 4,312.0 crowns, deadline 14 March.", []),  # case, value
    ("The project's facts: Bluefinch's site, well-known.", []),  # possessive, plural, hyphenated
    ("Lead: Maren Okafer, budget 98,712 crowns in Paris.", ["Okafer", "98,712", "Paris"]),
    ("The deadline is 140 March 2034 or 14,000.", ["140", "14,000"]),  # 14 does not support 140
    ("It is what they would have been.", []),  # stopwords are never flagged
    ("Café Velmora", ["Café"]),
])
def test_unsupported_words(output, flagged):
    marks = provenance.unsupported_words(output, DOC)
    assert [m.text for m in marks] == flagged
    for m in marks:
        assert output[m.start:m.end] == m.text and m.kind == ("number" if m.text[0].isdigit() else "word")


def test_the_embedded_model_on_a_text_unlike_its_reports_gets_a_note():
    """demo_model_note: the embedded demo model on a text that is no report of the kinds it was
    trained on (an article) gets a note that its output is likely meaningless; its training and
    sample reports, another model, and no text get none."""
    from types import SimpleNamespace

    from ledviz.demo import data

    embedded, other = SimpleNamespace(source=pipeline.EMBEDDED), SimpleNamespace(source="hub")
    article = ("Photosynthesis is the process by which green plants turn light, water and carbon dioxide into "
               "sugar and oxygen. It takes place in the chloroplasts.")
    for text in (article, "Maren Okafor leads the project. The site is Velmora."):
        note = pipeline.demo_model_note(embedded, text)
        assert note and "trained on" in note and "meaningless" in note, text
        assert pipeline.demo_model_note(other, text) is None
    reports = [data.make_example(seed, "summarize", 300, kind=kind).document
               for seed in range(3) for kind in data.REPORT_KINDS]
    for text in [*reports, *(ex.document for ex in data.sample_examples().values()), DOC, "", "  \n"]:
        assert pipeline.demo_model_note(embedded, text) is None, text[:80]


def test_an_output_cut_by_a_cancel_is_not_flagged_for_its_cut_last_word():
    """A cancelled (or token-limited) output may stop inside its last word ("Lead: Mar" of "Maren"):
    that word is checked as the start of a document word, not reported as made up; an ended output's
    last word, or an open one that no document word begins with, still is."""
    from types import SimpleNamespace

    def result(text, ended):
        return SimpleNamespace(output_text=text, ended=ended, derived={},
                               document=SimpleNamespace(text=DOC, kept_chars=0))

    for cut in ("Lead: Mar", "Budget: 43", "Deadline: 14 March 20"):
        assert provenance.run_unsupported_words(result(cut, ended=False)) == [], cut
        assert provenance.open_last_word(result(cut, ended=False)) == cut.split()[-1]
        assert [m.text for m in provenance.run_unsupported_words(result(cut, ended=True))] == [cut.split()[-1]]
        assert provenance.open_last_word(result(cut, ended=True)) is None
    # only the last word, and only where nothing follows it; one no document word begins with is flagged
    assert [m.text for m in provenance.run_unsupported_words(result("Lead: Mar Okaf", ended=False))] == ["Mar"]
    assert [m.text for m in provenance.run_unsupported_words(result("Lead: Mar.", ended=False))] == ["Mar"]
    assert provenance.open_last_word(result("Lead: Mar.", ended=False)) is None
    assert [m.text for m in provenance.run_unsupported_words(result("Lead: Zed", ended=False))] == ["Zed"]
    # a label cut before its colon is the format, in a label's place only
    assert provenance.run_unsupported_words(result("Lead: Maren. Destination", ended=False)) == []
    assert provenance.run_unsupported_words(result("Lead: Maren. Destin", ended=False)) == []
    assert [m.text for m in provenance.run_unsupported_words(result("Lead: Destination", ended=False))] == \
        ["Destination"]


def test_fact_list_labels_are_format_not_claims():
    """The embedded model's summaries are "Label: value." lists; a label (CEO, Founded, ...) absent
    from the document is not a hallucination, but only in a label's place."""
    from ledviz.demo.data import SCHEMAS, summary_for

    labels = pipeline.fact_labels()
    assert {"CEO", "Founded", "Lead", "Budget", "Headquarters", "Sponsor"} <= set(labels)
    facts = {s.name: "Maren Okafor" for s in SCHEMAS["company"].slots}
    summary = summary_for("company", facts)  # "CEO: Maren Okafor. Headquarters: Maren Okafor. ..."
    assert summary.startswith("CEO: Maren Okafor.")
    assert provenance.unsupported_words(summary, DOC) == []
    assert [m.text for m in provenance.unsupported_words(summary, DOC, labels=())][:2] == ["CEO", "Headquarters"]
    # the same words outside a label's place are checked as any word
    assert [m.text for m in provenance.unsupported_words("Founded: 14 March 2034. The CEO is Maren.", DOC)] == ["CEO"]
    assert [m.text for m in provenance.unsupported_words("Lead: Maren. Founded in Paris.", DOC)] == ["Founded", "Paris"]
    assert [m.text for m in provenance.unsupported_words("Maren, CEO: yes.", DOC)] == ["CEO", "yes"]
    assert [m.text for m in provenance.unsupported_words("Motto: Maren.", DOC)] == ["Motto"]  # not a label of the format
    # the value after a label is still checked
    assert [m.text for m in provenance.unsupported_words("CEO: Ada Lovelace. Revenue: 98,712.", DOC)] == \
        ["Ada", "Lovelace", "98,712"]


def test_accents_and_case_fold_both_ways():
    assert provenance.unsupported_words("cafe CRÈME", "Le Café crème.") == []


def test_flagged_steps_point_at_the_tokens_of_unsupported_words():
    text = "Lead: Maren Okafer in Paris."
    pieces = ["Lead", ":", " Maren", " Ok", "afer", " in", " Paris", ".", "</s>"]
    marks = provenance.unsupported_words(text, DOC)
    assert provenance.piece_spans(text, pieces)[3] == (12, 14) and provenance.piece_spans(text, pieces)[8] is None
    assert provenance.flagged_steps(text, pieces, marks) == {4: "Okafer", 5: "Okafer", 7: "Paris"}


def test_faithfulness_html_marks_and_escapes():
    text = "Maren <b>Okafer</b> & co"
    html = plots.faithfulness_html(text, provenance.unsupported_words(text, DOC))
    assert html.count("wavy") == 2  # "b" is one letter: not flagged; Okafer and co
    assert "&lt;b&gt;" in html and "&amp;" in html and "does not occur in the document" in html


# ---------------------------------------------------------------------------------------------
# figure export
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def streamlit_default_template(monkeypatch):
    """Plotly's default template as it is in the app: importing Streamlit makes it Streamlit's placeholder one."""
    import plotly.io as pio
    from streamlit.elements.lib.streamlit_plotly_theme import configure_streamlit_plotly_theme

    default = pio.templates.default
    configure_streamlit_plotly_theme()
    monkeypatch.setattr(pio.templates, "default", "streamlit")
    yield
    pio.templates.default = default


def _whole_document_map() -> go.Figure:
    n = 982
    edges = [*range(0, n, 4), n]
    title = "Whole document: 982 tokens<br><span style='font-size:12px'>all layers</span>"
    return plots.overview_figure(np.random.default_rng(0).random((len(edges) - 1,) * 2), edges, title=title,
                                 zoom=((0, 64), (0, 64)), global_positions=[0])


def test_exported_figures_do_not_carry_streamlits_placeholder_template(streamlit_default_template):
    # Streamlit's template has no axis settings (no automargin: the x tick labels fell off the exported
    # map) and placeholder colours only Streamlit's browser code replaces
    fig = _whole_document_map()
    assert fig.layout.template.layout.colorway[0] == "#000001"  # built as in the app
    out = plots.exported_figure(fig)
    assert out.layout.template.layout.xaxis.automargin and out.layout.template.layout.yaxis.automargin
    assert not any(c.startswith("#0000") for c in out.layout.template.layout.colorway)
    assert out.layout.margin == fig.layout.margin and out.layout.xaxis.title.text == "key token"
    assert fig.layout.template.layout.colorway[0] == "#000001"  # the app's (cached, shared) figure unchanged
    assert "#000001" not in plots.figure_html(fig)


@pytest.mark.slow
def test_exported_svg_of_the_whole_document_map_keeps_its_x_tick_labels(streamlit_default_template):
    problem = plots.image_export_problem()
    if problem is not None:
        pytest.skip(f"IMAGE EXPORT TEST SKIPPED: {problem}")
    fig = _whole_document_map()
    svg = plots.figure_image(fig, "svg").decode()
    ticks = re.findall(r'class="xtick"><text[^>]*? y="([0-9.]+)"[^>]*>([^<]*)<', svg)
    assert [t for _, t in ticks] == ["0", "200", "400", "600", "800"], ticks
    title_y = float(re.search(r'class="xtitle"[^>]*? y="([0-9.]+)"', svg).group(1))
    tick_y = max(float(y) for y, _ in ticks)
    assert tick_y + 10 < title_y <= fig.layout.height, (tick_y, title_y)  # the title below the labels, inside


@pytest.mark.slow
def test_png_and_svg_export_with_kaleido_and_the_system_chromium():
    problem = plots.image_export_problem()
    if problem is not None:
        pytest.skip(f"IMAGE EXPORT TEST SKIPPED: {problem}")
    fig = plots.overview_figure(np.eye(4), [0, 2, 4, 6, 8], title="Whole document", global_positions=[0])
    png = plots.figure_image(fig, "png", scale=1)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000
    assert int.from_bytes(png[20:24], "big") == fig.layout.height  # the figure's own height, scale 1
    svg = plots.figure_image(fig, "svg").decode()
    assert svg.lstrip().startswith("<svg") and "Whole document" in svg and "key token" in svg
    export = plots.ImageExport()
    export.thread.join(120)
    assert export.status() == "ready"
    with pytest.raises(ValueError, match="format must be one of"):
        plots.figure_image(fig, "jpeg")


@pytest.mark.slow
@pytest.mark.parametrize("wait", [10.0, 0.0])
def test_a_process_that_exits_while_the_export_check_runs_leaves_nothing_and_prints_nothing(tmp_path, wait):
    """The export check's browser may still run when the process exits (a test, a server stopped at once).
    Its profile used to be removed by TemporaryDirectory's own clean-up at exit, racing the browser's writes:
    now and then "OSError: [Errno 39] Directory not empty" with a traceback. The exit now lets the check end
    (wait 10 s) or stops its browser (wait 0), and removes the profiles' folder: no traceback, nothing left."""
    import subprocess
    import sys

    if plots.image_export_problem() is not None:
        pytest.skip(f"IMAGE EXPORT TEST SKIPPED: {plots.image_export_problem()}")
    script = (f"import time\nfrom ledviz import plots\nplots._remove_profiles.__defaults__ = ({wait},)\n"
              "plots.ImageExport.shared()\n"
              "while plots._profiles is None or not __import__('os').listdir(plots._profiles):\n"
              "    time.sleep(0.05)  # the browser has begun writing its profile\n"
              "print(plots._profiles, flush=True)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=str(Path(plots.__file__).parents[1]))
    assert done.returncode == 0 and "Traceback" not in done.stderr and "Errno" not in done.stderr, done.stderr
    folder = done.stdout.split()[-1]
    assert folder.startswith(tempfile.gettempdir()) and not os.path.exists(folder), os.listdir(folder)


def test_image_export_says_what_is_missing(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kaleido" else real(name, *a))
    assert "kaleido" in plots.image_export_problem()
    export = plots.ImageExport()
    assert export.thread is None and "requirements-export.txt" in export.status()
    monkeypatch.undo()
    monkeypatch.setattr(plots, "_browser_path", lambda: None)
    if importlib.util.find_spec("kaleido") is not None:
        assert "Chrome or Chromium" in plots.image_export_problem()


def test_run_unsupported_words_checks_against_what_the_model_read(qa_run):
    run = dataclasses.replace(qa_run, output_text="Maren Okafor crowns Zanzibar")
    assert [m.text for m in provenance.run_unsupported_words(run)] == ["Zanzibar"]
    cut = dataclasses.replace(run, document=dataclasses.replace(run.document, kept_chars=TEXT.index("The budget")))
    assert [m.text for m in provenance.run_unsupported_words(cut)] == ["crowns", "Zanzibar"]  # after the cut
    assert [m.text for m in provenance.run_unsupported_words(run)] == ["Zanzibar"]  # each run its own, kept
    assert provenance.run_unsupported_words(run) is provenance.run_unsupported_words(run)


def test_image_export_probe_that_never_answers_is_reported(monkeypatch):
    import threading

    never = threading.Event()
    monkeypatch.setattr(plots, "image_export_problem", lambda: None)
    monkeypatch.setattr(plots, "figure_image", lambda *a, **k: never.wait(30) and b"")
    export = plots.ImageExport()
    assert export.status() == "checking"
    export.started -= plots.ImageExport.TIMEOUT + 1
    assert "did not answer within" in export.status()
    never.set()


def test_figure_file_names_say_run_and_figure():
    # the figures' PNG/SVG/HTML downloads were "attention-overview.png" whatever the run
    a = _named_run(document="Annual Report 2023", run_id="3fa9c2d1e5b7")
    assert (export.figure_file_stem(a, "attention-overview")
            == "ledviz-summary-annual-report-2023-3fa9c2d1-attention-overview")
    assert export.figure_file_stem(a, "heads-Entropy (bits)") == "ledviz-summary-annual-report-2023-3fa9c2d1-heads-entropy-bits"
    assert export.figure_file_stem(a, "x").startswith(export.run_file_name(a, ".json")[:-len(".json")])
    with pytest.raises(ValueError, match="must name the figure"):
        export.figure_file_stem(a, "..//")


def test_demo_summary_global_note_only_for_the_demo_model_with_globals_past_s():
    import dataclasses

    loaded = pipeline.load_model()
    s_only, none, more = torch.zeros(1, 50, dtype=torch.long), torch.zeros(1, 50, dtype=torch.long), None
    s_only[0, 0] = 1
    more = s_only.clone()
    more[0, 17] = 1
    assert pipeline.demo_summary_global_note(loaded, s_only) is None
    assert pipeline.demo_summary_global_note(loaded, none) is None
    assert pipeline.demo_summary_global_note(loaded, None) is None
    assert "not in the document" in pipeline.demo_summary_global_note(loaded, more)
    other = dataclasses.replace(loaded, source="local")
    assert pipeline.demo_summary_global_note(other, more) is None
