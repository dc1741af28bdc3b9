"""Corpus studies (ledviz.study): rows and their metrics, both engines agreeing, kill and resume,
bad input from the command line, the report's intervals against a hand computation, and the
Study page under AppTest. The studies are tiny (6 synthetic documents x 2 settings)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app_driver import ROOT, TIMEOUT, readable

from ledviz.errors import InputError
from ledviz.study import (KEY_COLUMNS, RESULT_COLUMNS, StudySpec, bootstrap_interval, load_study,
                          paired_differences, read_corpus, run_study, summary_table, token_f1)
from ledviz.study.store import read_rows

CORPUS = "demo:6:200-400"
SETTINGS = ["first", "every_k:16"]
SAME = KEY_COLUMNS + RESULT_COLUMNS  # every column but time, memory and which worker


def spec(**kw) -> StudySpec:
    return StudySpec(**{**dict(corpus=CORPUS, settings=SETTINGS, max_new_tokens=24), **kw})


@pytest.fixture(scope="module")
def local_study(tmp_path_factory):
    """The reference run: the local engine, in this process, uninterrupted."""
    out = tmp_path_factory.mktemp("study") / "local"
    summary = run_study(spec(), out, progress=False)
    return out, summary


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "ledviz.study", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def assert_clean_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in proc.stderr, (n, proc.stderr)


# ---------------------------------------------------------------------------------------------
# the rows
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_study_writes_one_row_per_document_and_setting(local_study):
    out, summary = local_study
    study = load_study(out)
    rows = study.rows
    assert len(rows) == 12 and summary.written == 12 and summary.already_done == 0 and study.complete
    assert rows.groupby("doc_index").size().eq(2).all()
    layers = study.manifest["model"]["encoder_layers"]
    ref, other = rows[rows.setting_index == 0], rows[rows.setting_index == 1]
    # the reference compared with itself: no distance, its own output scored as the reference output
    assert (ref.tv_to_reference == 0).all() and ref.is_reference.all()
    assert np.allclose(ref.reference_output_log_likelihood, ref.log_likelihood)
    assert (other.tv_to_reference > 0).all() and not other.is_reference.any()
    for col in ("layer_global_mass", "layer_entropy", "layer_attention_distance", "layer_tv_to_reference"):
        assert all(len(v) == layers for v in rows[col])
    assert np.allclose(rows.global_mass, [np.mean(v) for v in rows.layer_global_mass])
    # every 16th token global: more global tokens, more attention on them, than <s> alone
    assert (ref.global_tokens == 1).all()
    assert (other.global_tokens.to_numpy() == [math.ceil(n / 16) for n in other.n_tokens]).all()
    assert (other.global_mass.to_numpy() > ref.global_mass.to_numpy()).all()
    # task metrics: ROUGE against the reference summary, key-fact recall from the document's facts
    for col in ("rouge1", "rouge2", "rougeL", "key_fact_recall"):
        assert rows[col].between(0, 1).all(), col
    assert rows.exact_match.isna().all()  # summaries: no QA metrics
    from rouge_score import rouge_scorer

    r0 = rows.iloc[0]
    doc = study.record(int(r0.doc_index))
    expect = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(doc.reference, r0.output)["rougeL"]
    assert r0.rougeL == pytest.approx(expect.fmeasure)
    assert rows.reference_log_likelihood.lt(0).all() and rows.total_s.gt(0).all()
    assert rows.truncated_tokens.eq(0).all() and rows.error.isna().all()
    m = study.manifest
    assert len(m["model"]["weights_sha256"]) == 64 and m["seed"] == 0 and m["packages"]["torch"]
    assert m["spec"]["settings"] == SETTINGS and m["runs"][0]["engine"] == "local"
    # its times say where they were taken and how busy the machine was (the page showed seconds without either)
    run = m["runs"][0]
    assert run["machine"]["cores"] == os.cpu_count() and run["machine"]["load"] is not None and run["load_end"] is not None
    said = study.status()
    assert f"times taken on {run['machine']['cpu']} ({os.cpu_count()} cores), load average" in said, said
    assert "at the end (local, 1 worker × " in said and "(s)" not in said, said
    from ledviz.study.store import describe_machine

    assert describe_machine(None) == "a machine not recorded (a study run before ledviz recorded it)"


@pytest.mark.slow
def test_rerunning_a_finished_study_writes_nothing(local_study):
    out, _ = local_study
    parts = sorted((out / "rows").iterdir())
    again = run_study(spec(), out, progress=False)
    assert again.written == 0 and again.already_done == 12
    assert sorted((out / "rows").iterdir()) == parts


@pytest.mark.slow
def test_ray_engine_gives_the_same_rows(local_study, tmp_path):
    ray = pytest.importorskip("ray")
    out, _ = local_study
    ray.init(num_cpus=2, object_store_memory=80 * 2**20, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}})
    try:
        summary = run_study(spec(), tmp_path / "ray", engine="ray", workers=2, progress=False)
    finally:
        ray.shutdown()
    assert summary.written == 12
    a, b = read_rows(out), read_rows(tmp_path / "ray")
    pd.testing.assert_frame_equal(a[SAME], b[SAME])
    assert not b.worker.str.endswith(f":{os.getpid()}").any()  # the rows came from Ray's actors
    assert load_study(tmp_path / "ray").manifest["runs"][0]["engine"] == "ray"


@pytest.mark.slow
def test_a_process_pool_gives_the_same_rows(local_study, tmp_path):
    out, _ = local_study
    summary = run_study(spec(), tmp_path / "pool", workers=2, batch_size=2, progress=False)
    assert summary.written == 12
    rows = read_rows(tmp_path / "pool")
    pd.testing.assert_frame_equal(read_rows(out)[SAME], rows[SAME])
    assert not rows.worker.str.endswith(f":{os.getpid()}").any()  # the pool's processes wrote them
    assert len(list((tmp_path / "pool" / "rows").glob("part-*"))) == 3  # one part per batch of 2 documents


@pytest.mark.slow
def test_a_killed_run_resumes_to_exactly_the_uninterrupted_rows(local_study, tmp_path):
    out, _ = local_study
    target = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "ledviz.study", "run", "--corpus", CORPUS, "--out", str(target),
            "--max-new-tokens", "24", "--quiet", *sum((["--setting", s] for s in SETTINGS), [])]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 240
        while time.monotonic() < end and len(list((target / "rows").glob("part-*"))) < 2:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # at any moment: perhaps while writing a part
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = read_rows(target)
    assert 4 <= len(before) < 12
    resumed = run_study(spec(), target, progress=False)
    assert resumed.already_done == len(before) and resumed.written == 12 - len(before)
    pd.testing.assert_frame_equal(read_rows(out)[SAME], read_rows(target)[SAME])  # no duplicates: read_rows checks
    assert not list((target / "rows").glob(".tmp-*"))
    assert len(load_study(target).manifest["runs"]) == 2


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_malformed_jsonl_line_names_its_line_then_stops_or_skips(tmp_path):
    f = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "One."}, '{"id": "b", "text": ', {"id": "c", "text": "Two."}])
    proc = cli("run", "--corpus", str(f), "--out", str(tmp_path / "out"))
    assert_clean_error(proc, "line 2", "not valid JSON", "--on-error skip")
    corpus = read_corpus(str(f), on_error="skip")
    assert [r.id for r in corpus.records] == ["a", "c"]
    assert len(corpus.skipped) == 1 and "line 2" in corpus.skipped[0]


@pytest.mark.slow
def test_empty_texts_duplicate_ids_and_missing_columns(tmp_path):
    empty = write_jsonl(tmp_path / "e.jsonl", [{"id": "a", "text": "One."}, {"id": "b", "text": "   "}])
    with pytest.raises(InputError, match=r"line 2 \(id b\): the text is empty"):
        read_corpus(str(empty))
    assert [r.id for r in read_corpus(str(empty), on_error="skip").records] == ["a"]
    dup = write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "text": "One."}, {"id": "a", "text": "Two."}])
    assert_clean_error(cli("run", "--corpus", str(dup), "--out", str(tmp_path / "o")),
                       "'a' is used twice", "lines 1 and 2")
    with pytest.raises(InputError, match="used twice"):
        read_corpus(str(dup), on_error="skip")  # never skipped: results are keyed by id
    csv = tmp_path / "c.csv"
    csv.write_text("id,body\n1,hello\n", encoding="utf-8")
    with pytest.raises(InputError, match="no 'text' column.*--text-column"):
        read_corpus(str(csv))
    assert read_corpus(str(csv), text_column="body").records[0].text == "hello"
    pq = tmp_path / "c.parquet"
    pd.DataFrame({"text": ["a doc", "another"], "question": ["q?", None]}).to_parquet(pq)
    with pytest.raises(InputError, match="row 2.*needs a 'question'"):
        read_corpus(str(pq), task="qa")
    (tmp_path / "c.txt").write_text("text\nhello\n")
    with pytest.raises(InputError, match="cannot tell the format"):
        read_corpus(str(tmp_path / "c.txt"))


@pytest.mark.slow
def test_unknown_settings_and_arguments_are_named(tmp_path):
    proc = cli("run", "--corpus", CORPUS, "--out", str(tmp_path / "o"), "--setting", "first", "--setting", "evry_k:4")
    assert_clean_error(proc, "unknown setting 'evry_k:4'", "every_k:K")
    proc = cli("run", "--corpus", CORPUS, "--out", str(tmp_path / "o"), "--setting", "first", "--setting", "question")
    assert_clean_error(proc, "'question' setting needs questions")
    proc = cli("run", "--corpus", CORPUS, "--out", str(tmp_path / "o"), "--setings", "first")
    assert_clean_error(proc, "--setings")
    for bad, needle in [("every_k:x", "whole number"), ("positions:", "at least one position"),
                        ("pattern:(", "not a valid regular expression"), ("none:3", "takes no argument")]:
        with pytest.raises(InputError, match=needle):
            StudySpec(corpus=CORPUS, settings=["first", bad])
    with pytest.raises(InputError, match="reference 'none' is not one of the settings"):
        StudySpec(corpus=CORPUS, settings=["first", "every_k:8"], reference="none")
    assert not (tmp_path / "o").exists()  # nothing was started


@pytest.mark.slow
def test_a_folder_of_another_study_is_refused(local_study, tmp_path):
    out, _ = local_study
    with pytest.raises(InputError, match=r"different study.*settings: \['first', 'every_k:16'\] in the folder"):
        run_study(spec(settings=["first", "none"]), out, progress=False)
    proc = cli("run", "--corpus", CORPUS, "--out", str(out), "--max-new-tokens", "25",
               *sum((["--setting", s] for s in SETTINGS), []))
    assert_clean_error(proc, "different study", "max_new_tokens: 24 in the folder, 25 now")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        run_study(spec(), tmp_path / "full", progress=False)
    assert_clean_error(cli("report", str(tmp_path / "full")), "not a study results folder")


@pytest.mark.slow
def test_documents_past_the_limit_are_cut_and_recorded(tmp_path):
    f = write_jsonl(tmp_path / "long.jsonl", [{"id": "long", "text": " ".join(["The budget was large."] * 60),
                                               "reference": "The budget was large."}])
    summary = run_study(StudySpec(corpus=str(f), settings=["first", "positions:0,40"], max_tokens=64,
                                  max_new_tokens=8), tmp_path / "out", progress=False)
    rows = read_rows(tmp_path / "out")
    assert (rows.truncated_tokens > 0).all() and (rows.n_tokens == 64).all()
    assert "documents past the model's limit, cut to fit: 2 rows (column truncated_tokens)" in summary.text()
    # a setting that cannot run on a document is a row with its error, not a crash
    summary = run_study(StudySpec(corpus=str(f), settings=["first", "positions:0,500"], max_tokens=64,
                                  max_new_tokens=8), tmp_path / "out2", progress=False)
    bad = read_rows(tmp_path / "out2").iloc[1]
    assert "outside the document" in bad.error and pd.isna(bad.rougeL) and summary.errors == 1
    assert "settings that could not run on their document: 1 row (column error)" in summary.text(), summary.text()


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------

def test_bootstrap_interval_against_hand_computation():
    # two documents scoring 0 and 1: resampled means are 0, 0.5, 1 with chances 1/4, 1/2, 1/4,
    # so the 2.5% and 97.5% quantiles are 0 and 1
    assert bootstrap_interval([0.0, 1.0]) == (0.5, 0.0, 1.0)
    assert bootstrap_interval([0.3] * 7) == pytest.approx((0.3, 0.3, 0.3))
    assert bootstrap_interval([2.0]) == (2.0, 2.0, 2.0)
    assert all(math.isnan(x) for x in bootstrap_interval([float("nan")]))
    # the same resampling written out by hand
    v = np.array([0.2, 0.9, 0.4, 0.4, 1.0, 0.0, 0.7])
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 7, size=(500, 7))
    means = [sum(v[j] for j in row) / 7 for row in idx]
    lo, hi = np.quantile(means, [0.025, 0.975])
    assert bootstrap_interval(v, n_boot=500, seed=5) == pytest.approx((v.mean(), lo, hi))
    # and a large sample's interval is close to the normal one, mean +- 1.96 sd / sqrt(n)
    big = np.random.default_rng(1).normal(3.0, 2.0, 400)
    m, lo, hi = bootstrap_interval(big)
    half = 1.96 * big.std(ddof=1) / math.sqrt(big.size)
    assert lo == pytest.approx(m - half, abs=0.03) and hi == pytest.approx(m + half, abs=0.03)


def test_summary_and_paired_differences_on_a_fixed_table():
    table = pd.DataFrame({
        "doc_index": [0, 0, 1, 1, 2, 2],
        "setting_index": [0, 1] * 3,
        "setting": ["first <s>", "none"] * 3,
        "rougeL": [0.5, 0.25, 1.0, 1.0, 0.75, np.nan],
    })
    s = summary_table(table, ["rougeL"]).set_index("setting")
    assert s.loc["first <s>", "n"] == 3 and s.loc["first <s>", "mean"] == pytest.approx(0.75)
    assert s.loc["none", "n"] == 2 and s.loc["none", "mean"] == pytest.approx(0.625)
    # none - first on the documents with both: -0.25 and 0.0; resampled means -0.25, -0.125, 0
    d = paired_differences(table, 0, ["rougeL"]).iloc[0]
    assert d.n == 2 and d.mean_difference == pytest.approx(-0.125)
    assert (d.low, d.high) == pytest.approx((-0.25, 0.0)) and not d.excludes_zero
    assert token_f1("the lead was Ana Ok", "Ana Ok") == pytest.approx(2 * (2 / 4) * 1 / (2 / 4 + 1))
    assert token_f1("", "") == 1.0 and token_f1("x", "y") == 0.0


@pytest.mark.slow
def test_report_cli_prints_tables_and_writes_html(local_study, tmp_path):
    out, _ = local_study
    proc = cli("report", str(out), "--html", str(tmp_path / "r.html"), "--bootstrap", "200")
    assert proc.returncode == 0, proc.stderr
    assert "paired differences vs. the reference (first <s>)" in proc.stdout and "ROUGE-L F" in proc.stdout
    page = (tmp_path / "r.html").read_text()
    assert page.count("plotly-graph-div") >= 4 and "Paired differences" in page
    assert "[" in page and "key-fact recall" in page


# ---------------------------------------------------------------------------------------------
# the Study page
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_study_page_shows_the_study_and_opens_a_document_in_the_lab(local_study, tmp_path):
    from streamlit.testing.v1 import AppTest

    out, _ = local_study
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.switch_page("pages/study.py").run()
    assert not at.exception, at.exception
    assert any("Give a study's results folder" in i.value for i in at.info)
    at.text_input(key="study.path").set_value(str(tmp_path / "nowhere")).run()
    assert not at.exception and any("There is no folder" in readable(e.value) for e in at.error)
    at.text_input(key="study.path").set_value(str(out)).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 4 and len(at.dataframe) == 2
    assert any("6 documents × 2 settings: 12 of 12 rows (complete)" in readable(c.value) for c in at.caption)
    at.selectbox(key="study.doc").set_value(3).run()
    assert at.selectbox(key="study.setting").value == 1  # the first setting that is not the reference
    at.button(key="study.open").click().run()
    assert not at.exception, at.exception
    ss = at.session_state
    study = load_study(out)
    assert ss["doc.pasted"] == study.record(3).text and ss["doc.source"] == "Paste"
    assert ss["lab.s0.kind"] == "every_k" and ss["lab.s0.k"] == 16 and ss["lab.s1.kind"] == "first"
    assert ss["lab.reference"] == 1
    assert any(t.value == "Global-attention lab" for t in at.title)  # the lab page is drawing
    assert at.text_area(key="doc.pasted").value == study.record(3).text
    assert at.selectbox(key="lab.s0.kind").value == "every_k"


def test_load_study_tells_a_missing_folder_from_a_file(tmp_path):
    """A path that is not there says so (the server reads its own disk), a file says it is a file: both
    read "is not a folder" before, which for a typo did not say that nothing is there."""
    with pytest.raises(InputError, match=r"There is no folder .*nowhere on the server: .*--out FOLDER"):
        load_study(tmp_path / "nowhere")
    (tmp_path / "rows.txt").write_text("x")
    with pytest.raises(InputError, match=r"rows\.txt is a file, not a folder: give the results folder"):
        load_study(tmp_path / "rows.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no manifest.json"):
        load_study(tmp_path / "empty")
