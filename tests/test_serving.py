"""A server's runs (ledviz.serving): real model runs through the shared queue, places while a
worker is busy, cancel, the memory guard at submission, kept results, document limits."""

from __future__ import annotations

import threading

import pytest

from ledviz import pipeline
from ledviz.errors import InputError
from ledviz.memory import GB, MB, MemoryRefused
from ledviz.runqueue import QueueFull
from ledviz.serving import Server
from ledviz.settings import Settings


@pytest.fixture(scope="module")
def loaded():
    return pipeline.load_model()


@pytest.fixture(scope="module")
def doc(loaded):
    from ledviz.demo.data import sample_documents

    return pipeline.prepare_document(loaded, next(iter(sample_documents().values())))


@pytest.fixture
def server():
    s = Server(Settings(workers=1, queue_size=3, results_per_user=2), budget=4 * GB)
    yield s
    s.close()


def hold(server):
    """Occupy the only worker until the returned event is set."""
    gate, started = threading.Event(), threading.Event()
    server.queue.submit(lambda job: (started.set(), gate.wait(30)), owner="someone else")
    assert started.wait(5)
    return gate


def test_runs_wait_their_turn_with_places_then_deliver_results(server, loaded, doc):
    gate = hold(server)
    mask = pipeline.global_attention_mask(doc, "first")
    jobs = [server.submit_run(owner=f"user{n}", slot="summarize", loaded=loaded, doc=doc, global_mask=mask,
                              max_new_tokens=4, settings={"who": n}) for n in range(3)]
    assert [j.place for j in jobs] == [1, 2, 3]
    with pytest.raises(QueueFull, match="busy"):
        server.submit_run(owner="late", slot="summarize", loaded=loaded, doc=doc, global_mask=mask, max_new_tokens=4)
    gate.set()
    for n, job in enumerate(jobs):
        assert job.wait(60)
        result = server.results.get(job.outcome())
        assert isinstance(result, pipeline.RunResult) and result.settings["who"] == n
        # streamed by the one RunJob (ledviz.runs) the queued job runs: its id is the result's run_id
        assert job.run.done and job.run.result is result and result.settings["run_id"] == job.run.id
        assert job.pieces is job.run.pieces and job.run.text == result.output_text
        assert "".join(job.pieces) == "".join(
            t for t in (loaded.tokenizer.decode([i]) for i in result.output_ids
                        if i not in loaded.tokenizer.all_special_ids))
    assert jobs[0].finished <= jobs[1].started  # one at a time, in order


def test_cancel_a_waiting_run_and_a_running_one(server, loaded, doc):
    gate = hold(server)
    mask = pipeline.global_attention_mask(doc, "first")
    first = server.submit_run(owner="a", slot="s", loaded=loaded, doc=doc, global_mask=mask, max_new_tokens=100)
    second = server.submit_run(owner="b", slot="s", loaded=loaded, doc=doc, global_mask=mask, max_new_tokens=4)
    second.cancel()
    assert second.done and second.place is None and first.place == 1
    started = threading.Event()
    first.report = lambda message, fraction: started.set() if message == "generating" else None
    gate.set()
    assert started.wait(30)
    first.cancel()
    assert first.wait(60)
    result = server.results.get(first.outcome())
    assert result.stopped_early and len(result.output_ids) < 100


def test_a_run_that_cannot_fit_is_refused_before_it_queues(loaded, doc):
    server = Server(Settings(workers=1), budget=2 * MB)
    try:
        mask = pipeline.global_attention_mask(doc, "first")
        with pytest.raises(MemoryRefused, match="would not fit in memory.*per run"):
            server.submit_run(owner="a", slot="s", loaded=loaded, doc=doc, global_mask=mask, max_new_tokens=64)
        assert server.queue.waiting_count == 0
    finally:
        server.close()


def test_kept_results_are_bounded_per_user(server, loaded, doc):
    mask = pipeline.global_attention_mask(doc, "first")
    handles = []
    for slot in ("summarize", "qa", "lab"):
        job = server.submit_run(owner="u", slot=slot, loaded=loaded, doc=doc, global_mask=mask, max_new_tokens=2)
        assert job.wait(60)
        handles.append(job.outcome())
    assert server.results.get(handles[0]) is None and "at most 2" in server.results.why_dropped(handles[0])
    assert all(server.results.get(h) is not None for h in handles[1:])


def test_document_limits(loaded):
    server = Server(Settings(max_document_chars=100, max_document_tokens=64), budget=GB)
    try:
        with pytest.raises(InputError, match="101 characters; this server reads at most 100"):
            server.check_document("x" * 101)
        server.check_document("x" * 100)
        assert server.max_tokens(loaded) == 64
    finally:
        server.close()


def test_a_comparison_is_a_queued_job_with_its_place_and_cancel(server, loaded, doc):
    from ledviz.runqueue import Cancelled, Stopped

    gate = hold(server)
    settings = [dict(kind="first"), dict(kind="sentences")]
    waiting = server.submit_comparison(owner="a", slot="lab", loaded=loaded, doc=doc, settings=settings,
                                       max_new_tokens=4)
    also = server.submit_comparison(owner="b", slot="lab", loaded=loaded, doc=doc, settings=settings,
                                    max_new_tokens=2, wrap=lambda comp: ("fingerprint", comp))
    assert [waiting.place, also.place] == [1, 2] and server.queue.waiting_jobs() == [waiting, also]
    waiting.cancel()  # while waiting: it leaves the queue
    assert waiting.done and isinstance(waiting.error, Cancelled) and also.place == 1
    gate.set()
    assert also.wait(120)
    fp, comp = server.results.get(also.outcome())
    assert fp == "fingerprint" and comp.labels == ["first <s>", "sentence starts"]
    # while running: the comparison stops at its next step, with nothing kept
    started, gate = threading.Event(), hold(server)
    running = server.submit_comparison(owner="a", slot="lab", loaded=loaded, doc=doc, settings=settings,
                                       max_new_tokens=120)
    running.report = lambda message, fraction: started.set() if "sentence starts" in message else None
    gate.set()
    assert started.wait(120)
    running.cancel()
    assert running.wait(120)
    assert isinstance(running.error, Stopped) and "stopped before it finished" in str(running.error)


def test_a_comparison_is_estimated_as_all_its_runs_kept_and_refused_when_too_big(loaded, doc):
    from ledviz import compare
    from ledviz.serving import comparison_nbytes

    settings = [dict(kind="first"), dict(kind="sentences"), dict(kind="every_k", k=16)]
    server = Server(Settings(workers=1), budget=4 * GB)
    try:
        masks = [compare.Setting.of(s).mask(doc) for s in settings]
        encoder_only = compare.compare_settings(loaded, doc, settings, generate=False, warmup=False)
        est = server.comparison_estimate(loaded, doc, settings, max_new_tokens=8, generate=False)
        assert est.parts["encoder_attention"] == comparison_nbytes(encoder_only)  # measured: exact
        assert est.settings["runs"] == 3 and est.settings["n_global"] == max(int(m.sum()) for m in masks)
        generated = compare.compare_settings(loaded, doc, settings, max_new_tokens=8, warmup=False)
        est = server.comparison_estimate(loaded, doc, settings, max_new_tokens=8)
        assert comparison_nbytes(generated) <= est.kept
        each = [server.estimate(loaded, doc, m, max_new_tokens=8) for m in masks]
        assert est.kept == sum(e.kept for e in each) and est.transient == max(e.transient for e in each)
    finally:
        server.close()
    single = max(e.peak for e in each)
    assert single < est.peak
    small = Server(Settings(workers=1), budget=int(single + est.peak))  # one run fits its share, three kept do not
    small.guard.live_check = False
    try:
        small.guard.check(each[1])
        with pytest.raises(MemoryRefused, match="3 runs kept together.*compare fewer settings"):
            small.submit_comparison(owner="a", slot="lab", loaded=loaded, doc=doc, settings=settings,
                                    max_new_tokens=8)
        assert small.queue.waiting_count == 0
    finally:
        small.close()


def test_a_model_load_waits_its_turn_and_is_refused_when_its_weights_cannot_fit(server, loaded):
    from ledviz import LEDConfig
    from ledviz.memory import model_nbytes

    nbytes = model_nbytes(loaded.config)
    gate = hold(server)
    job = server.submit_load(lambda job: (job.report("reading the weights", 0.5), "the model")[1], owner="u",
                             what="some/model", nbytes=nbytes)
    assert job.place == 1 and job.label == "load some/model"
    gate.set()
    assert job.wait(30) and job.outcome() == "the model"
    small = Server(Settings(workers=1), budget=3 * nbytes // 2)  # the weights fit, not twice
    small.guard.live_check = False
    try:
        with pytest.raises(MemoryRefused, match=r"Not loading some/model: its weights take .* loading holds them "
                                                r"twice .* memory budget is .*embedded demo model always fits"):
            small.submit_load(lambda job: pytest.fail("must not load"), owner="u", what="some/model", nbytes=nbytes)
        assert small.queue.waiting_count == 0 and small.queue.running_count == 0
    finally:
        small.close()
    # an LED-base-shaped config: about 162 million parameters, told before any weight is read
    base = LEDConfig(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                     decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, attention_window=1024,
                     max_encoder_position_embeddings=16384, max_decoder_position_embeddings=1024, vocab_size=50265)
    assert 600 * MB < model_nbytes(base) < 700 * MB
