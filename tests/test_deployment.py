"""The app as a shared server: deployment settings applied (local folders off really reads no typed
path, allowed Hub ids, document limits, wrong settings stop the app), the queue's place and
running state drawn for a user, a full queue refusing with a message."""

from __future__ import annotations

import builtins
import os
import threading

import pytest

from app_driver import APP, kept, load_folder, load_hub_id, messages, readable, when_waiting
from app_driver import open_app as start


def _stand_in_folder(path):
    """A folder that looks like a checkpoint (its files are never to be opened)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "led"}')
    return path


@pytest.fixture
def spy_paths(monkeypatch):
    """Every path the process stats or opens that contains 'typed-by-a-user', outside the Hub
    cache (whose folders are named models--<org>--<name>: looking there is what a Hub id does)."""
    seen: list[str] = []
    real_stat, real_open = os.stat, builtins.open

    def typed(path) -> bool:
        if not isinstance(path, (str, os.PathLike)):
            return False
        path = os.fspath(path)
        return "typed-by-a-user" in path and "models--" not in path

    def stat(path, *a, **kw):
        if typed(path):
            seen.append(os.fspath(path))
        return real_stat(path, *a, **kw)

    def open_(file, *a, **kw):
        if typed(file):
            seen.append(os.fspath(file))
        return real_open(file, *a, **kw)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(builtins, "open", open_)
    return seen


def test_local_folders_off_reads_no_typed_path(tmp_path, monkeypatch, spy_paths):
    folder = _stand_in_folder(tmp_path / "typed-by-a-user" / "model")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEDVIZ_LOCAL_FOLDERS", "off")
    at = start()
    assert "local" not in at.sidebar.radio(key="model.source").options
    at.sidebar.radio(key="model.source").set_value("hub").run()
    for typed in (str(folder), "typed-by-a-user/model", "../typed-by-a-user/model", "~/typed-by-a-user"):
        at.sidebar.text_input(key="model.hub_id").set_value(typed).run()
        at.sidebar.button(key="model.load_hub").click().run()
        errors = messages(at, "error")
        assert errors and ("not a valid Hub model id" in errors[0] or "not in the local Hub cache" in errors[0]), errors
        assert at.session_state["model.active"] == "embedded"  # the embedded model stays in use
    assert spy_paths == []  # nothing under a typed name was looked at on the server's disk


def test_local_folders_off_the_study_page_reads_no_folder(tmp_path, monkeypatch, spy_paths):
    folder = tmp_path / "typed-by-a-user" / "study"
    (folder / "rows").mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    monkeypatch.setenv("LEDVIZ_LOCAL_FOLDERS", "off")
    at = start()
    at.session_state["study.path"] = str(folder)  # as if typed before (the page keeps it per session)
    at.switch_page("pages/study.py").run()
    assert not at.exception
    assert not [t for t in at.text_input if t.key == "study.path"]
    assert any("does not read folders on its disk" in m for m in messages(at, "info"))
    assert spy_paths == []


def test_local_folders_on_still_loads_a_folder(tmp_path, monkeypatch):
    """The control: with local folders on (the default) the same typed folder is read."""
    folder = _stand_in_folder(tmp_path / "typed-by-a-user" / "model")
    at = start()
    load_folder(at, folder)
    errors = messages(at, "error")
    assert errors and "typed-by-a-user" in errors[0]  # it tried the folder (and found no weights)


def test_loading_a_model_waits_its_turn_in_the_shared_queue(tmp_path):
    """Another user's run holds the only worker: a folder's model waits (place 1) in the same queue
    as the runs, then loads; thirty users typing thirty ids load one model at a time."""
    import shutil

    from ledviz import pipeline
    from pages.running import server

    folder = tmp_path / "checkpoint"
    shutil.copytree(pipeline.default_model_dir(), folder)
    at = start()
    with when_waiting(server(), "load ") as seen:
        load_folder(at, folder)
    assert not at.exception and not messages(at, "error"), messages(at, "error")
    assert seen == {"label": f"load {folder}", "place": 1}
    assert at.session_state["model.active"] == str(folder)
    assert any(str(folder) in readable(c.value) for c in at.sidebar.caption)


def test_a_model_too_big_for_the_free_memory_is_refused_before_its_weights_are_read(tmp_path, monkeypatch):
    import json

    from ledviz import memory

    folder = tmp_path / "led-base-shaped"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(dict(
        model_type="led", d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
        decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, attention_window=1024,
        max_encoder_position_embeddings=16384, max_decoder_position_embeddings=1024, vocab_size=50265)))
    at = start()
    monkeypatch.setattr(memory, "available_memory", lambda: 1024 * memory.MB)
    load_folder(at, folder)
    assert not at.exception
    errors = sorted(set(messages(at, "error")))
    assert len(errors) == 1 and errors[0].startswith(f"Not loading {folder}: its weights take 6"), errors
    assert "only 1.0 GB of memory is free right now" in errors[0] and "embedded demo model" in errors[0]
    assert at.session_state["model.active"] == "embedded"  # (the folder has no weights: none were looked for)


def test_a_missing_folder_is_named_as_a_folder(tmp_path):
    at = start()
    load_folder(at, tmp_path / "no-such-folder")
    assert not at.exception
    errors = sorted(set(messages(at, "error")))
    assert len(errors) == 1 and errors[0].startswith(f"There is no folder '{tmp_path / 'no-such-folder'}' on the server")
    assert at.session_state["model.active"] == "embedded"


def test_allowed_hub_ids_refuse_others(monkeypatch):
    monkeypatch.setenv("LEDVIZ_ALLOWED_HUB_IDS", "allenai/led-base-16384")
    at = start()
    load_hub_id(at, "allenai/led-large-16384")
    assert any("does not load 'allenai/led-large-16384'" in e for e in messages(at, "error"))


def test_wrong_settings_stop_the_app_naming_them(monkeypatch):
    monkeypatch.setenv("LEDVIZ_QUEUE_LENGTH", "5")
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    errors = messages(at, "error")
    assert errors and "LEDVIZ_QUEUE_LENGTH" in errors[0] and "LEDVIZ_QUEUE_SIZE" in errors[0]


def test_document_length_limits(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LEDVIZ_MAX_DOCUMENT_CHARS", "50")
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    assert any("this server reads at most 50" in e for e in messages(at, "error"))
    monkeypatch.setenv("LEDVIZ_MAX_DOCUMENT_CHARS", "none")
    monkeypatch.setenv("LEDVIZ_MAX_DOCUMENT_TOKENS", "128")
    at = start()
    assert any("at most 128 tokens" in w for w in messages(at, "warning"))
    at.button(key="summarize.run").click().run()
    assert kept(at, "summarize").document.n_tokens == 128


def test_a_full_queue_refuses_with_a_message(monkeypatch):
    monkeypatch.setenv("LEDVIZ_QUEUE_SIZE", "0")
    monkeypatch.setenv("LEDVIZ_WORKERS", "1")
    from pages.running import server

    at = start()
    srv = server()
    assert srv.settings.queue_size == 0
    gate, started = threading.Event(), threading.Event()
    srv.queue.submit(lambda job: (started.set(), gate.wait(60)), owner="another user")
    try:
        assert started.wait(10)
        at.button(key="summarize.run").click().run()
        assert any("the server is busy" in e.lower() for e in messages(at, "error")), messages(at, "error")
    finally:
        gate.set()


def test_a_waiting_user_sees_their_place_then_the_running_state():
    """poll() with the worker held by other users' jobs: the place counts down, then it runs."""
    from ledviz.serving import Server
    from ledviz.settings import Settings
    from pages.running import poll

    srv = Server(Settings(workers=1, queue_size=5), budget=2**33)
    gates = [threading.Event() for _ in range(2)]
    seen_running = threading.Event()
    try:
        first_started = threading.Event()
        srv.queue.submit(lambda job: (first_started.set(), gates[0].wait(60)), owner="other0")
        assert first_started.wait(10)
        srv.queue.submit(lambda job: gates[1].wait(60), owner="other1")

        def mine(job):
            job.report("encoding the document", 0.05)
            assert seen_running.wait(60)
            return "summary"

        job = srv.queue.submit(mine, owner="me")

        class Slot:
            def __init__(self):
                self.shown = []

            def info(self, text, **kw):
                self.shown.append(("info", text))
                if len(self.shown) == 1:
                    gates[0].set()  # the job ahead finishes: one place up
                elif "number 1 in" in text:
                    gates[1].set()

            def progress(self, fraction, text):
                self.shown.append(("progress", text))
                seen_running.set()

            def markdown(self, text):
                pass

        status = Slot()
        poll(job, srv, status=status, stream=Slot(), stream_text=lambda j: "x")
        infos = [t for kind, t in status.shown if kind == "info"]
        assert infos[0].startswith("Waiting: you are number 2 in the queue (1 running, 2 waiting")
        assert any(t.startswith("Waiting: you are number 1 in the queue") for t in infos)
        assert any(kind == "progress" and t.startswith("Running: encoding the document… ")
                   for kind, t in status.shown)
        assert job.outcome() == "summary"
    finally:
        for g in gates:
            g.set()
        seen_running.set()
        srv.close()


@pytest.mark.app_install  # (also in .ci/run app: requirements.txt's huggingface_hub)
def test_hub_only_loading_never_reads_a_local_folder_of_that_name(tmp_path, monkeypatch):
    """pipeline.load_model(hub_only=True): a real checkpoint folder at the typed relative path is
    not loaded (offline and not in the Hub cache: a clear error); without hub_only it would be."""
    import shutil

    from ledviz import pipeline
    from ledviz.errors import CheckpointError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    shutil.copytree(pipeline.default_model_dir(), tmp_path / "some-org" / "model")
    assert pipeline.load_model("some-org/model").source == "local"
    with pytest.raises(CheckpointError, match="not in the local Hub cache"):
        pipeline.load_model("some-org/model", hub_only=True)
    with pytest.raises(CheckpointError, match="not a Hub model id"):
        pipeline.load_model(str(tmp_path / "some-org" / "model"), hub_only=True)


def test_keeping_the_last_layer_only_runs_and_draws_the_views():
    """The memory refusal offers fewer layers: the page has the control, and the views draw a run
    that kept one layer (with the sidebar on another layer too)."""
    at = start()
    at.selectbox(key="summarize.attention_layers").set_value("last").run()
    at.button(key="summarize.run").click().run()
    assert not at.exception and not messages(at, "error"), messages(at, "error")
    result = kept(at, "summarize")
    last = at.session_state["model.loaded"].config.encoder_layers - 1
    assert sorted(result.layers) == [last]
    at.sidebar.selectbox(key="view.layer").set_value(0).run()  # a layer the run did not keep
    assert not at.exception and not messages(at, "error"), messages(at, "error")
    assert len(at.get("plotly_chart")) >= 2
