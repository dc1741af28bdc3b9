"""The Hub path as the app's own install runs it: every test here needs only requirements.txt (no
transformers), and is marked app_install. `.ci/run app` runs them in a fresh virtual environment made
from requirements.txt alone, where huggingface_hub is 1.0 or later (sending through an httpx Client:
`httpx`, or `httpx2` in huggingface_hub 2); the main job runs them on requirements-test.txt's 0.36
(through requests). No test reaches the network: the "Hub" is a server of the test's own on
127.0.0.1, a port where nothing listens, a socket that never answers, or a name lookup made to fail.
"""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import threading
import time

import pytest

import ledviz
from hub_cache import _hub_cache
from ledviz import loading, pipeline

pytestmark = pytest.mark.app_install

REPO = "tiny-org/tiny-led"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def online(monkeypatch):
    """Not offline, with a fresh reachability check and fresh Hub sessions; returns `use(endpoint)`,
    which points huggingface_hub at an endpoint of the test's."""
    import huggingface_hub.utils
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(loading, "_reach_seen", {})
    reset = getattr(huggingface_hub.utils, "reset_sessions", None)  # (below 1.0: a session made offline stays so)
    if reset is not None:
        reset()

    import huggingface_hub.file_download

    # a name lookup of any host but this machine's fails, whatever a huggingface_hub version builds
    # its addresses from: the tests here never reach the network, even when one of them goes wrong
    real_getaddrinfo = socket.getaddrinfo

    def local_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: not looked up by the tests (local only)")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)

    def use(endpoint: str) -> str:
        template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        if hasattr(huggingface_hub.file_download, "HUGGINGFACE_CO_URL_TEMPLATE"):  # below 1.0: its own copy
            monkeypatch.setattr(huggingface_hub.file_download, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        return endpoint

    yield use
    if reset is not None:
        reset()


@pytest.fixture
def no_waiting(monkeypatch):
    """huggingface_hub waits 1+2+4+8+8 s between its retries of a failed request: not in a test."""
    monkeypatch.setattr(time, "sleep", lambda seconds: None)


class FakeHub:
    """A server on 127.0.0.1 that answers as the Hub does for a few repos (by name): 'gated' (403,
    GatedRepo), 'missing' (401, RepoNotFound), 'broken' (500), 'flaky' (a file's metadata, then the
    connection dropped when the file is fetched), 'moved' (the root redirects to `redirect_to`);
    any other repo exists and has no files (404, EntryNotFound). `hits` lists (method, path)."""

    def __init__(self):
        self.hits: list[tuple[str, str]] = []
        self.redirect_to: str | None = None
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # (quiet)
                pass

            def do_HEAD(self):
                hub.answer(self)

            def do_GET(self):
                hub.answer(self)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, request):
        self.hits.append((request.command, request.path))
        path = request.path
        headers = {"Content-Length": "0"}
        if path == "/" and self.redirect_to:
            status, headers["Location"] = 302, self.redirect_to
        elif "/gated/" in path:
            status, headers["X-Error-Code"] = 403, "GatedRepo"
            headers["X-Error-Message"] = "Access to model org/gated is restricted"
        elif "/missing/" in path:
            status, headers["X-Error-Code"] = 401, "RepoNotFound"
            headers["X-Error-Message"] = "Repository not found"
        elif "/broken/" in path:
            status = 500
        elif "/flaky/" in path and request.command == "GET":
            request.close_connection = True  # no answer at all
            return
        elif "/flaky/" in path:
            status = 200
            headers.update({"X-Repo-Commit": COMMIT, "ETag": '"0123abcd"', "Content-Length": "10"})
        elif "/resolve/" in path:
            status, headers["X-Error-Code"] = 404, "EntryNotFound"
            headers["X-Error-Message"] = "Entry not found"
        else:
            status = 200
        request.send_response(status)
        for key, value in headers.items():
            request.send_header(key, value)
        request.end_headers()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub():
    hub = FakeHub()
    yield hub
    hub.close()


def _cached_demo(tmp_path) -> str:
    """The embedded demo model, laid out in a Hub cache as REPO; returns the cache folder."""
    return _hub_cache(tmp_path, REPO, pipeline.default_model_dir())


def _load_config(cache, name=REPO, **kwargs):
    """Load the config alone, timed: (seconds, the CheckpointError's message or None)."""
    start = time.monotonic()
    try:
        ledviz.LEDConfig.from_pretrained(name, cache_dir=cache, **kwargs)
        message = None
    except ledviz.CheckpointError as e:
        message = str(e)
    return time.monotonic() - start, message


# ---- offline ------------------------------------------------------------------------------------

def test_offline_a_cached_hub_id_loads_model_and_tokenizer(tmp_path, monkeypatch):
    cache = _cached_demo(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = pipeline.load_model(REPO, cache_dir=cache)
    embedded = pipeline.load_model(None)
    keys = ("vocab_size", "d_model", "encoder_layers", "decoder_layers", "attention_window")
    assert loaded.source == "hub" and [getattr(loaded.config, k) for k in keys] == [getattr(embedded.config, k) for k in keys]
    text = "The project lead signed the report."
    assert loaded.tokenizer(text)["input_ids"] == embedded.tokenizer(text)["input_ids"]


def test_offline_hub_only_loads_the_hub_model_not_a_local_folder_of_that_name(tmp_path, monkeypatch):
    """pipeline.load_model(hub_only=True), as the app's server loads a typed Hub id: the model was
    refused with a TypeError (from_pretrained took no hub_only), and the config of a local folder
    of the same name must not be read."""
    cache = _cached_demo(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    local = tmp_path / REPO
    shutil.copytree(pipeline.default_model_dir(), local)
    config = json.loads((local / "config.json").read_text())
    config["encoder_ffn_dim"] = 7  # a model that cannot load the weights
    (local / "config.json").write_text(json.dumps(config))
    loaded = pipeline.load_model(REPO, hub_only=True, cache_dir=cache)
    assert loaded.source == "hub" and loaded.config.encoder_ffn_dim == pipeline.load_model(None).config.encoder_ffn_dim
    assert pipeline.load_config(REPO, hub_only=True, cache_dir=cache).encoder_ffn_dim != 7
    with pytest.raises(ledviz.CheckpointError, match="has shape"):  # the local folder, read without hub_only
        pipeline.load_model(REPO)


def test_offline_not_cached_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seconds, message = _load_config(str(tmp_path / "empty"))
    assert message and f"{REPO!r} is not in the local Hub cache" in message and "HF_HUB_OFFLINE=1" in message
    assert "local checkpoint folder" in message and seconds < 3


def test_force_download_while_offline_names_the_arguments_not_the_id(tmp_path, monkeypatch):
    cache = _cached_demo(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, message = _load_config(cache, force_download=True)
    assert message and "force_download" in message and "valid Hub model id" not in message


# ---- no answer from the Hub -----------------------------------------------------------------------

def test_refused_connection_fails_fast_and_the_cache_still_loads(tmp_path, online):
    online("http://127.0.0.1:9")  # the discard port: nothing listens there
    seconds, message = _load_config(str(tmp_path / "empty"))
    assert message and f"{REPO!r} is not in the local Hub cache" in message and seconds < 3, (seconds, message)
    assert "no answer from http://127.0.0.1:9: the connection was refused" in message and "HF_HUB_OFFLINE=1" in message
    start = time.monotonic()
    loaded = pipeline.load_model(REPO, cache_dir=_cached_demo(tmp_path))
    assert loaded.source == "hub" and time.monotonic() - start < 10


def test_failed_name_lookup_fails_after_one_lookup(tmp_path, online, monkeypatch):
    online("http://hub.invalid")
    lookups = []

    def no_such_name(host, *args, **kwargs):
        lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    seconds, message = _load_config(str(tmp_path / "empty"))
    assert message and "no answer from http://hub.invalid: the name lookup failed" in message, message
    assert lookups == ["hub.invalid"] and seconds < 3  # one check, no retries
    assert pipeline.load_model(REPO, cache_dir=_cached_demo(tmp_path)).source == "hub"
    assert lookups == ["hub.invalid"]  # the check's answer is kept for the files that follow


def test_silent_server_times_out_once(tmp_path, online, monkeypatch):
    silent = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        online(f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setattr(loading, "_REACH_TIMEOUT", 0.5)
        seconds, message = _load_config(str(tmp_path / "empty"))
    finally:
        silent.close()
    assert message and "no answer within 0.5 s" in message and f"{REPO!r} is not in the local Hub cache" in message
    assert seconds < 3, seconds


# ---- the Hub answers --------------------------------------------------------------------------------

def test_gated_missing_repo_and_missing_file(tmp_path, online, fake_hub):
    online(fake_hub.url)
    empty = str(tmp_path / "empty")
    _, message = _load_config(empty, "org/gated")
    # (huggingface-cli is not in a user's install of huggingface_hub 1.0 and later: `hf` is, and below 1.0 too)
    assert message and message.startswith("the Hub repo 'org/gated' is gated") and "hf auth login" in message
    assert "log in (huggingface-cli login)" not in message
    _, message = _load_config(empty, "org/missing")
    assert message and message.startswith("no model 'org/missing' on the Hub (or it is private): check the id")
    _, message = _load_config(empty, "org/empty")
    assert message == "the Hub repo 'org/empty' has no file config.json"
    assert fake_hub.hits.count(("HEAD", "/")) == 1  # one reachability check for the three


def test_server_error_is_not_called_offline(tmp_path, online, fake_hub, no_waiting):
    online(fake_hub.url)
    _, message = _load_config(str(tmp_path / "empty"), "org/broken")
    assert message and "the Hub answered HTTP 500 for config.json" in message and "offline" not in message


def test_connection_dropped_while_fetching_a_file(tmp_path, online, fake_hub, no_waiting):
    online(fake_hub.url)
    _, message = _load_config(str(tmp_path / "empty"), "org/flaky")
    assert message and message.startswith("could not fetch config.json of 'org/flaky' from the Hub: the connection "
                                          "failed (the server closed the connection without an answer)"), message
    assert ("GET", "/org/flaky/resolve/main/config.json") in fake_hub.hits


def test_reachability_check_follows_no_redirect(online, fake_hub):
    """Any answer, a redirect too, says the Hub is there: the check must not go on to another host
    (the httpx Client of huggingface_hub 1.0 and later follows redirects unless a request says not to)."""
    elsewhere = FakeHub()
    try:
        fake_hub.redirect_to = elsewhere.url + "/"
        online(fake_hub.url)
        assert loading._hub_unreachable() is None
        assert fake_hub.hits == [("HEAD", "/")] and elsewhere.hits == []
    finally:
        elsewhere.close()



def test_the_app_with_local_folders_off_loads_a_cached_hub_id(tmp_path, monkeypatch):
    """The app of a shared server (LEDVIZ_LOCAL_FOLDERS=off) loads a typed Hub id with hub_only: it
    showed "Something went wrong while loading the model: TypeError: ... 'hub_only'" for every id."""
    from huggingface_hub import constants

    from app_driver import load_hub_id, messages, open_app

    cache = _cached_demo(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", cache)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", cache)
    monkeypatch.setenv("LEDVIZ_LOCAL_FOLDERS", "off")
    at = open_app()
    load_hub_id(at, REPO)
    assert not at.exception and not messages(at, "error"), messages(at, "error")
    assert at.session_state["model.active"] == REPO
    assert at.session_state["model.loaded"].name == REPO and at.session_state["model.loaded"].source == "hub"
    load_hub_id(at, "nobody/not-cached")
    assert any("'nobody/not-cached' is not in the local Hub cache" in e for e in messages(at, "error"))
    assert at.session_state["model.loaded"].name == REPO  # the loaded model stays in use
