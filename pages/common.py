"""Shared UI for every page of the ledviz app: the model, the sidebar's view controls, document
input, running the model with progress and cancel, the attention views, export, error display.

Pages import what they need (`from pages.common import ...`). The numbers all come from
`ledviz.pipeline` / `ledviz.analysis`; the figures from `ledviz.plots`. This module only
arranges widgets and caches.

The API, by section:

- errors: `show_errors(what)` (context manager), `show_error(err, what)`.
- the model: `model_sidebar()` (app.py), `require_model()` / `get_model()` (pages),
  `load_model_cached(name, progress)`.
- the view: `View`, `attention_sidebar(loaded)` (app.py), `current_view()`.
- documents: `decode_upload(name, data)`, `document_input(key)`, `prepared_document(loaded, text, question)`,
  `document_status(loaded, text, question)`, `global_tokens_input(key, doc, default)`,
  `global_choice_options(prefix, kind, ...)`, `run_settings(key, doc, ...)`,
  `token_texts(doc)`, `token_labels(doc, positions)`, `top_passages(result, weights, k)`.
- runs: `RunJob`, `run_panel(key, loaded, doc, mask, ...)`, `run_id(result)`, `run_summary(result)`.
- numbers for views (cached per run): `aggregated(result, view)`, `overview_map`, `zoom_map`,
  `token_row`, `cross_map`, `global_stats`.
- views: `attention_views(result, loaded, key)` (tabs with all of the below),
  `map_view`, `text_view`, `heads_view`, `global_tokens_view`, `export_view`,
  `cross_attention_view`, `source_view`, `highlighted_document`, `figure_export`.

Session-state keys: "model.*" (the checkpoint), "view.*" (layer/heads), "<key>.*" per page or
widget group (pages choose their key; "doc" is the document shared by Summarize and QA).
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import io
import json
import logging
import os
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import streamlit as st
import torch

from ledviz import analysis, export, plots
from ledviz import pipeline
from ledviz.errors import InputError, LedvizError
from ledviz.pipeline import Document, LoadedModel, RunResult

log = logging.getLogger("ledviz.app")

HUB_EXAMPLES = ("allenai/led-base-16384", "allenai/led-large-16384", "allenai/led-large-16384-arxiv")
MODEL_SOURCES = {"embedded": "Embedded demo model (offline)", "hub": "Hugging Face Hub id", "local": "Local folder"}
ALL_LAYERS = -1
HEAD_MODES = {"all": "All", "one": "One", "some": "Chosen"}
STATS = {
    "mean_distance": "mean distance (tokens)",
    "entropy": "entropy (nats)",
    "global_mass": "mass on global tokens",
    "self_mass": "mass on itself",
}
OVERVIEW_BINS = 256  # the default: a 560-pixel map shows no more, and 512 x 512 takes a browser 4x longer to draw
BIN_CHOICES = [128, 256, 512]
MAX_ZOOM = 512  # the most tokens a token-level heatmap shows
MAX_GLOBAL_ROWS = 100
UPLOAD_TYPES = ("txt", "md")


# ---------------------------------------------------------------------------------------------
# errors: a message, never a traceback
# ---------------------------------------------------------------------------------------------

def show_error(err: BaseException, what: str = "", where: Any = None) -> None:
    """st.error for an exception: ledviz's own messages as they are, anything else in one line
    (the traceback goes to the server log)."""
    where = where or st
    if isinstance(err, LedvizError):
        where.error(str(err), icon=":material/error:")
    elif isinstance(err, ImportError):
        where.error(f"A package is missing{' for ' + what if what else ''}: {err}", icon=":material/error:")
    else:
        log.error("unexpected error while %s", what or "running", exc_info=err)
        where.error(f"Something went wrong{' while ' + what if what else ''}: {type(err).__name__}: {err}",
                    icon=":material/error:")


@contextlib.contextmanager
def show_errors(what: str = "", where: Any = None) -> Iterator[None]:
    """Run a block; an exception ends the block and shows as st.error (Streamlit's own control
    flow, st.stop / st.rerun, passes through: it is not an Exception)."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - the point is to catch everything
        show_error(err, what, where)


# ---------------------------------------------------------------------------------------------
# the model: one per checkpoint for all sessions
# ---------------------------------------------------------------------------------------------

class _ModelSlot:
    """Holds one checkpoint's model once loaded; the lock makes concurrent sessions load it once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded: LoadedModel | None = None


@st.cache_resource(max_entries=2, show_spinner=False)
def _model_slot(name: str, model_dir: str) -> _ModelSlot:
    """The cache entry of a checkpoint (keyed by its name, and for the embedded model its folder).

    The slot is created empty and filled by `load_model_cached` outside the cached function,
    so the loading progress can be drawn on the page (Streamlit would otherwise record those
    progress updates for replay); a failed load leaves it empty and the next call retries.
    """
    return _ModelSlot()


def load_model_cached(name: str, progress: Callable[[str], None] | None = None) -> LoadedModel:
    """The model for a checkpoint name ("embedded", a Hub id or a folder), loaded once per process."""
    slot = _model_slot(name, pipeline.default_model_dir() if name == pipeline.EMBEDDED else "")
    with slot.lock:
        if slot.loaded is None:
            slot.loaded = pipeline.load_model(name, progress=progress)
    return slot.loaded


def _loading_progress(slot, name: str) -> Callable[[str], None]:
    """A load_model progress callback drawing a bar in `slot` (an st.empty) that moves a step per
    message (loading reports no fractions). Nothing is drawn when the model is already loaded."""
    steps = {"n": 0}

    def update(message: str) -> None:
        steps["n"] += 1
        slot.progress(min(0.95, steps["n"] / 6), text=f"{name}: {message}…")

    return update


def _describe(loaded: LoadedModel) -> str:
    c = loaded.config
    name = "embedded demo model" if loaded.source == pipeline.EMBEDDED else loaded.name
    text = (f"**{name}** · {c.encoder_layers} layers × {c.encoder_attention_heads} heads · "
            f"window {max(c.attention_windows())} · up to {loaded.max_tokens:,} tokens · "
            f"loaded in {loaded.load_seconds:.1f} s")
    if loaded.source == pipeline.EMBEDDED:
        # what the small model can and cannot do, wherever its outputs are shown
        text += ("  \nTrained on synthetic reports only (the sample documents are of that kind): on them it "
                 "states the key facts and answers questions about them; on any other text its output is "
                 "meaningless. Scores and limits: ledviz/demo/model/README.md.")
    return text


def _clear_model_error() -> None:
    st.session_state.pop("model.error", None)


def _request(name: str) -> None:
    st.session_state["model.requested"] = name


def model_sidebar() -> LoadedModel | None:
    """The sidebar's model choice (embedded, Hub id, local folder) and loading, with progress and
    a message when it fails. Call once per run, in app.py; pages use `require_model()`."""
    ss = st.session_state
    ss.setdefault("model.active", pipeline.EMBEDDED)
    with st.sidebar:
        st.subheader("Model")
        source = st.radio("Checkpoint", list(MODEL_SOURCES), format_func=MODEL_SOURCES.get, key="model.source",
                          on_change=_clear_model_error, label_visibility="collapsed")
        if source == "embedded":
            _request(pipeline.EMBEDDED)
        elif source == "hub":
            hub_id = st.text_input("Hub model id", value=HUB_EXAMPLES[0], key="model.hub_id",
                                   help="e.g. " + ", ".join(HUB_EXAMPLES) + ". Downloaded once into the "
                                        "Hugging Face cache (led-base is about 650 MB).")
            st.button("Load from the Hub", key="model.load_hub", on_click=_request, args=(hub_id.strip(),),
                      width="stretch")
        else:
            folder = st.text_input("Folder with config.json and weights", key="model.folder",
                                   placeholder="/path/to/checkpoint")
            st.button("Load folder", key="model.load_folder", on_click=_request, args=(folder.strip(),),
                      width="stretch", disabled=not folder.strip())
        requested = ss.pop("model.requested", None)
        bar = st.empty()
        if requested and requested != ss["model.active"]:
            try:
                load_model_cached(requested, _loading_progress(bar, requested))
                ss["model.active"] = requested
                _clear_model_error()
            except Exception as err:  # noqa: BLE001 - shown below, the previous model stays in use
                ss["model.error"] = err
        loaded = None
        try:
            loaded = load_model_cached(ss["model.active"], _loading_progress(bar, ss["model.active"]))
        except Exception as err:  # noqa: BLE001
            ss["model.error"] = err
        bar.empty()
        if "model.error" in ss:
            show_error(ss["model.error"], "loading the model")
        if loaded is not None:
            st.caption(("In use: " if ss.get("model.error") else "") + _describe(loaded))
    ss["model.loaded"] = loaded
    return loaded


def get_model() -> LoadedModel | None:
    """The model the sidebar loaded in this run (None if loading failed)."""
    return st.session_state.get("model.loaded")


def require_model() -> LoadedModel:
    """The loaded model, or a message and st.stop() when there is none."""
    loaded = get_model()
    if loaded is None:
        st.info("No model is loaded: choose one in the sidebar (the embedded demo model works offline).")
        st.stop()
    return loaded


# ---------------------------------------------------------------------------------------------
# the view: which layers and heads, and how they combine
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class View:
    """What the attention views show: one encoder layer or all, all/one/some heads, mean or max."""

    layer: int | None = None  # None: every layer
    heads: tuple[int, ...] | None = None  # None: every head
    reduce: str = "mean"

    @property
    def layers(self) -> list[int] | None:
        return None if self.layer is None else [self.layer]

    @property
    def key(self) -> tuple:
        return (self.layer, self.heads, self.reduce)

    def clip(self, num_layers: int, num_heads: int) -> "View":
        """The same view for a model of another size (out-of-range choices fall back to all)."""
        layer = self.layer if self.layer is not None and self.layer < num_layers else None
        heads = tuple(h for h in self.heads if h < num_heads) if self.heads is not None else None
        return View(layer, heads or None, self.reduce)

    def label(self) -> str:
        layer = "all layers" if self.layer is None else f"layer {self.layer}"
        if self.heads is None:
            heads = "all heads"
        elif len(self.heads) == 1:
            heads = f"head {self.heads[0]}"
        else:
            heads = "heads " + ", ".join(map(str, self.heads))
        several = self.layer is None or self.heads is None or len(self.heads) > 1
        return f"{layer}, {heads}" + (f" ({self.reduce})" if several else "")


def _keep_valid(key: str, valid: Sequence, default: Any) -> None:
    """Reset a widget's state that no longer fits (another model has fewer layers or heads)."""
    value = st.session_state.get(key)
    if isinstance(value, list):
        kept = [v for v in value if v in valid]
        if kept != value:
            st.session_state[key] = kept or default
    elif value is not None and value not in valid:
        st.session_state[key] = default


def _clamp_state(key: str, lo: int, hi: int) -> None:
    """Pull a stored slider / number value back into [lo, hi] (a new document may be shorter)."""
    value = st.session_state.get(key)
    if isinstance(value, (tuple, list)):
        new: Any = tuple(min(max(int(x), lo), hi) for x in value)
    elif isinstance(value, (int, float)):
        new = min(max(int(value), lo), hi)
    else:
        return
    if new != value:
        st.session_state[key] = new


def attention_sidebar(loaded: LoadedModel | None) -> View:
    """The sidebar's layer / head / aggregation controls, shared by every page (app.py calls it)."""
    if loaded is None:
        view = View()
    else:
        L, H = loaded.config.encoder_layers, loaded.config.encoder_attention_heads
        _keep_valid("view.layer", [ALL_LAYERS, *range(L)], ALL_LAYERS)
        _keep_valid("view.head", list(range(H)), 0)
        _keep_valid("view.head_set", list(range(H)), [0])
        with st.sidebar:
            st.subheader("Attention view")
            layer = st.selectbox("Encoder layer", [ALL_LAYERS, *range(L)], key="view.layer",
                                 format_func=lambda l: "All layers" if l == ALL_LAYERS else f"Layer {l}")
            mode = st.segmented_control("Heads", list(HEAD_MODES), format_func=HEAD_MODES.get, default="all",
                                        required=True, key="view.heads_mode", persist_state="session")
            heads: tuple[int, ...] | None = None
            if mode == "one":
                heads = (st.selectbox("Head", list(range(H)), key="view.head", persist_state="session"),)
            elif mode == "some":
                chosen = st.multiselect("Heads to combine", list(range(H)), default=[0], key="view.head_set",
                                        persist_state="session")
                heads = tuple(sorted(chosen)) or None
            several = layer == ALL_LAYERS or heads is None or len(heads) > 1
            reduce = "mean"
            if several:
                reduce = st.radio("Combine heads/layers by", ["mean", "max"], horizontal=True, key="view.reduce",
                                  persist_state="session")
            view = View(None if layer == ALL_LAYERS else layer, heads, reduce)
            st.caption(f"Showing {view.label()}.")
    st.session_state["view.current"] = view
    return view


def current_view() -> View:
    """The view chosen in the sidebar in this run."""
    return st.session_state.get("view.current", View())


def select_head(layer: int | None, head: int | None) -> None:
    """Make the sidebar show this layer (None: all) and head (None: all). For callbacks only
    (e.g. a click on the heads grid): widget state can change only before the widgets are drawn."""
    st.session_state["view.layer"] = ALL_LAYERS if layer is None else layer
    if head is None:
        st.session_state["view.heads_mode"] = "all"
    else:
        st.session_state["view.heads_mode"] = "one"
        st.session_state["view.head"] = head


# ---------------------------------------------------------------------------------------------
# documents
# ---------------------------------------------------------------------------------------------

def decode_upload(name: str, data: bytes) -> str:
    """The text of an uploaded .txt/.md file; InputError (with what to do) for anything else."""
    ext = os.path.splitext(name)[1].lower().lstrip(".")
    if ext not in UPLOAD_TYPES:
        raise InputError(f"{name!r} is not a .txt or .md file: upload plain text, or paste it")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    elif b"\x00" not in data[:8192]:
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            pass
    raise InputError(f"{name!r} is not readable text (not UTF-8; binary content?): save it as UTF-8 "
                     "plain text, or paste the text instead")


@st.cache_data(show_spinner=False)
def _samples() -> dict[str, str]:
    from ledviz.demo.data import sample_documents

    return sample_documents()


@st.cache_data(show_spinner=False)
def sample_questions() -> dict[str, list[str]]:
    """Suggested questions for each bundled sample document."""
    from ledviz.demo.data import sample_questions as questions

    return questions()


@dataclass
class DocumentInput:
    """The text a page works on and where it came from (a sample's title, 'pasted text', a file name)."""

    text: str
    label: str
    sample: str | None = None


def document_input(key: str = "doc") -> DocumentInput | None:
    """Choose a bundled sample, paste, or upload (.txt/.md). Returns None (with a message for a bad
    upload) when there is no text yet. `key` prefixes the widget keys: pages passing the same key
    share the document."""
    samples = _samples()
    source = st.segmented_control("Document", ["Sample", "Paste", "Upload"], default="Sample", required=True,
                                  key=f"{key}.source", persist_state="session")
    if source == "Sample":
        title = st.selectbox("Sample document", list(samples), key=f"{key}.sample", persist_state="session",
                             help="Synthetic reports like those the embedded model was trained on.")
        text = samples[title]
        with st.expander("Read the document"):
            st.html(f'<div style="white-space:pre-wrap;max-height:300px;overflow-y:auto;font-size:0.9rem">'
                    f"{html.escape(text)}</div>")
        return DocumentInput(text, title, sample=title)
    if source == "Paste":
        text = st.text_area("Paste a document", key=f"{key}.pasted", height=220, persist_state="session",
                            placeholder="Paste a long text here (reports, articles, papers)…")
        return DocumentInput(text, "pasted text") if text.strip() else None
    upload = st.file_uploader("Upload a text file", type=list(UPLOAD_TYPES), key=f"{key}.upload")
    if upload is not None:
        try:
            text = decode_upload(upload.name, upload.getvalue())
        except InputError as err:
            st.session_state.pop(f"{key}.uploaded", None)
            show_error(err)
            return None
        st.session_state[f"{key}.uploaded"] = (upload.name, text)
    # the decoded text outlives the uploader, which forgets its file when the page changes
    name, text = st.session_state.get(f"{key}.uploaded", (None, None))
    if name is None:
        return None
    st.caption(f"Using {name} ({len(text):,} characters)" + ("" if upload is not None else ", uploaded earlier") + ".")
    return DocumentInput(text, name)


@st.cache_data(max_entries=16, show_spinner=False)
def _prepare(model_key: str, text: str, question: str | None, _loaded: LoadedModel) -> Document:
    return pipeline.prepare_document(_loaded, text, question)


def _model_key(loaded: LoadedModel) -> str:
    return f"{loaded.source}:{loaded.name}:{pipeline.default_model_dir() if loaded.source == pipeline.EMBEDDED else ''}"


def prepared_document(loaded: LoadedModel, text: str, question: str | None = None) -> Document:
    """pipeline.prepare_document, cached per model, text and question (InputError for empty input)."""
    with st.spinner("Tokenizing…"):
        return _prepare(_model_key(loaded), text, question, loaded)


def document_status(loaded: LoadedModel, text: str | None, question: str | None = None) -> Document | None:
    """Tokenize, then show the token count against the model's limit and what was cut, if anything.
    Returns None (after showing why) when the input cannot be run."""
    if text is None:
        st.info("Choose, paste or upload a document.")
        return None
    try:
        doc = prepared_document(loaded, text, question)
    except LedvizError as err:
        show_error(err)
        return None
    n_doc = len(doc.document_tokens())
    extra = f" ({len(doc.question_tokens())} of them the question)" if doc.question else ""
    st.caption(f"{doc.n_tokens:,} tokens{extra} of the model's limit of {doc.limit:,}; "
               f"the document has {n_doc:,} tokens and {len(doc.text):,} characters.")
    message = doc.truncation_message()
    if message:
        st.warning(message, icon=":material/content_cut:")
    return doc


GLOBAL_HELP = ("Global tokens attend to every token and every token attends to them; the rest only "
               "see a window of neighbours.")


def global_choice_options(prefix: str, kind: str, *, k: int = 64, k_max: int = 4096, positions: str = "0",
                          require_positions: bool = False) -> dict[str, Any] | None:
    """The widgets a global-attention choice needs (k, positions or a pattern), keyed `prefix` + name.

    Returns their values as keyword arguments of pipeline.global_attention_mask, or None after
    showing why they cannot be used."""
    if kind == "every_k":
        return {"k": int(st.number_input("k", 1, k_max, k, key=f"{prefix}k", persist_state="session"))}
    if kind == "positions":
        raw = st.text_input("Token positions (comma-separated)", positions, key=f"{prefix}positions",
                            persist_state="session")
        try:
            values = [int(p) for p in raw.replace(";", ",").split(",") if p.strip()]
        except ValueError:
            st.error(f"Positions must be whole numbers separated by commas, got “{raw}”.")
            return None
        if require_positions and not values:
            st.error("Give at least one token position.")
            return None
        return {"positions": values}
    if kind == "pattern":
        return {"pattern": st.text_input("Regular expression (matched against each token)", r"^\d",
                                         key=f"{prefix}pattern", persist_state="session")}
    return {}


def global_tokens_input(key: str, doc: Document | None, default: str = "first") -> tuple[str, torch.Tensor | None]:
    """Which tokens get global attention (pipeline.GLOBAL_CHOICES): returns (choice, mask or None).
    A bad choice (e.g. an invalid pattern) shows its message and returns a None mask."""
    with_question = default == "question" or (doc is not None and bool(doc.question))
    choices = [c for c in pipeline.GLOBAL_CHOICES if c != "question" or with_question]
    _keep_valid(f"{key}.global", choices, default)
    kind = st.selectbox("Global attention on", choices, index=choices.index(default), key=f"{key}.global",
                        format_func=pipeline.GLOBAL_CHOICES.get, help=GLOBAL_HELP, persist_state="session")
    kwargs = global_choice_options(f"{key}.global_", kind)
    if kwargs is None:
        return kind, None
    if doc is None:
        return kind, None
    try:
        mask = pipeline.global_attention_mask(doc, kind, **kwargs)
    except LedvizError as err:
        show_error(err)
        return kind, None
    st.caption(f"{int(mask.sum())} global token(s).")
    return kind, mask


def run_settings(key: str, doc: Document | None, *, default_global: str, label: str, max_tokens: int,
                 default_tokens: int) -> tuple[str, torch.Tensor | None, int, int]:
    """Global tokens and generation settings in one row; returns (global kind, mask, max new tokens, beams)."""
    c1, c2, c3 = st.columns([2, 1, 1])
    with c1:
        kind, mask = global_tokens_input(f"{key}.settings", doc, default=default_global)
    max_new = c2.number_input(label, 1, max_tokens, default_tokens, key=f"{key}.max_new", persist_state="session")
    beams = c3.number_input("Beams", 1, 8, 1, key=f"{key}.beams", persist_state="session",
                            help="1 = greedy decoding, streamed token by token.")
    return kind, mask, int(max_new), int(beams)


def token_texts(doc: Document) -> list[str]:
    """Each token as it reads in its own text (document or question); special tokens as themselves."""
    out = []
    for i, (s, e) in enumerate(doc.offsets):
        seg = doc.segment[i]
        source = None if seg is None else (doc.question if doc.question and seg == 0 else doc.text)
        out.append(source[s:e] if source is not None and e > s else doc.tokens[i])
    return out


def token_labels(doc: Document, positions: Sequence[int], width: int = 14) -> list[str]:
    """Unique short labels 'position text' for heatmap axes, HTML-escaped: Plotly reads labels as
    HTML, so a token like '<s>' would otherwise vanish into a tag."""
    texts = token_texts(doc)
    out = []
    for p in positions:
        t = texts[p].replace("\n", "⏎")
        out.append(html.escape(f"{p} {t if len(t) <= width else t[: width - 1] + '…'}", quote=False))
    return out


def document_spans(doc: Document) -> list[tuple[int, int] | None]:
    """Per token, its character span in the document text (None for question and special tokens)."""
    return [doc.token_text_span(i) for i in range(doc.n_tokens)]


# ---------------------------------------------------------------------------------------------
# running the model: a worker thread the page polls, so a click on Cancel can stop it
# ---------------------------------------------------------------------------------------------

class RunJob:
    """`pipeline.run` in a worker thread, with its streamed tokens, progress and outcome.

    Why a thread: Streamlit runs the page script top to bottom and handles a click by rerunning
    it. If generation ran in the script itself, a click on Cancel could only take effect after
    generation ended. With the work in a thread kept in session_state, the script just polls it
    (redrawing the streamed text and the progress bar); a click on Cancel interrupts that poll,
    and the rerun's on_click callback sets the job's `stop` event, which `pipeline.run` checks
    after every token. Other clicks (a layer, a tab) also rerun the page; the new run finds the
    job still going and goes on polling it. (st.fragment(run_every=...) could poll as well, but
    the whole page has to redraw when the result arrives anyway.)
    """

    def __init__(self, loaded: LoadedModel, doc: Document, global_mask: torch.Tensor, *, task: str,
                 max_new_tokens: int, num_beams: int, settings: dict | None = None,
                 generation: dict | None = None):
        self.id = uuid.uuid4().hex[:12]
        self.stop = threading.Event()
        self.pieces: list[str] = []
        self.progress: tuple[str, float] = ("starting", 0.0)
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self.started = time.perf_counter()
        self.finished: float | None = None
        self.settings = dict(settings or {})
        self._special = set(loaded.tokenizer.all_special_ids)
        self.thread = threading.Thread(
            target=self._work, name=f"ledviz-run-{self.id}", daemon=True,
            args=(loaded, doc, global_mask, task, max_new_tokens, num_beams, dict(generation or {})))
        self.thread.start()

    def _work(self, loaded, doc, global_mask, task, max_new_tokens, num_beams, generation) -> None:
        try:
            result = pipeline.run(loaded, doc, global_mask, task=task, max_new_tokens=max_new_tokens,
                                  num_beams=num_beams, on_token=self._on_token, stop_event=self.stop,
                                  progress=self._on_progress, **generation)
            result.settings.update(self.settings, run_id=self.id)
            self.result = result
        except BaseException as err:  # noqa: BLE001 - handed to the page, which shows it
            self.error = err
        finally:
            self.finished = time.perf_counter()

    def _on_token(self, token_id: int, text: str) -> None:
        if token_id not in self._special:
            self.pieces.append(text)

    def _on_progress(self, message: str, fraction: float) -> None:
        self.progress = (message, fraction)

    @property
    def done(self) -> bool:
        return self.finished is not None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def elapsed(self) -> float:
        return (self.finished or time.perf_counter()) - self.started


def _start_job(key: str, loaded: LoadedModel, doc: Document, mask: torch.Tensor, task: str,
               max_new_tokens: int, num_beams: int, settings: dict, generation: dict | None = None) -> None:
    old = st.session_state.get(f"{key}.job")
    if old is not None:
        old.stop.set()
    st.session_state.pop(f"{key}.error", None)
    st.session_state[f"{key}.job"] = RunJob(loaded, doc, mask, task=task, max_new_tokens=max_new_tokens,
                                            num_beams=num_beams, settings=settings, generation=generation)


def _cancel_job(key: str) -> None:
    job = st.session_state.get(f"{key}.job")
    if job is not None:
        job.stop.set()


def _fingerprint(doc: Document | None, mask: torch.Tensor | None, settings: dict) -> str | None:
    """Identifies a run's input, to tell when the shown result belongs to another input."""
    if doc is None or mask is None:
        return None
    h = hashlib.sha1()
    h.update(doc.text.encode())
    h.update((doc.question or "").encode())
    h.update(mask.numpy().tobytes())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def run_panel(key: str, loaded: LoadedModel, doc: Document | None, global_mask: torch.Tensor | None, *,
              task: str, max_new_tokens: int, num_beams: int = 1, button_label: str = "Run",
              settings: dict | None = None, stream_label: str = "Output",
              generation: dict | None = None) -> RunResult | None:
    """The run and cancel buttons, the progress bar and the streamed output; returns the page's
    latest result (kept in session_state[f"{key}.result"], one per page) or None. `generation`
    holds further keyword arguments of pipeline.run (answer_from_document, ...)."""
    ss = st.session_state
    settings = dict(settings or {}, task=task, max_new_tokens=max_new_tokens, num_beams=num_beams,
                    **(generation or {}))
    job: RunJob | None = ss.get(f"{key}.job")
    running = job is not None and not job.done
    ready = doc is not None and global_mask is not None
    b1, b2, b3 = st.columns([1.3, 1, 4], vertical_alignment="center")
    b1.button(button_label, type="primary", key=f"{key}.run", disabled=running or not ready,
              on_click=_start_job, width="stretch",
              args=(key, loaded, doc, global_mask, task, max_new_tokens, num_beams,
                    dict(settings, fingerprint=_fingerprint(doc, global_mask, settings)), generation))
    b2.button("Cancel", key=f"{key}.cancel", disabled=not running, on_click=_cancel_job, args=(key,),
              width="stretch", help="Stop generating; the tokens so far are kept.")
    if num_beams > 1:
        b3.caption("Beam search shows the output when it ends (streaming needs 1 beam).")
    job = ss.get(f"{key}.job")
    if job is not None:
        status = st.empty()
        stream = st.empty()
        while not job.done:
            message, fraction = job.progress
            status.progress(min(1.0, max(0.0, fraction)), text=f"{message}… {job.elapsed:.1f} s")
            if job.pieces:
                stream.markdown(f"**{stream_label}** (streaming): {_md_escape(job.text)} ▌")
            time.sleep(0.1)
        ss[f"{key}.job"] = None
        if job.error is not None:
            ss[f"{key}.error"] = job.error
        else:
            ss[f"{key}.result"] = job.result
        st.rerun()  # redraw the page with the buttons enabled and the result's views
    if f"{key}.error" in ss:
        show_error(ss[f"{key}.error"], "running the model")
    result: RunResult | None = ss.get(f"{key}.result")
    if result is not None and result.settings.get("fingerprint") != _fingerprint(doc, global_mask, settings):
        st.info("The result below is for an earlier input or settings: press "
                f"**{button_label}** to run on the current one.", icon=":material/history:")
    return result


def _md_escape(text: str) -> str:
    """Text shown with st.markdown, with Markdown's special characters escaped."""
    for ch in "\\`*_{}[]()#+-.!|<>$~":
        text = text.replace(ch, "\\" + ch)
    return text.replace("\n", "  \n")


def show_output(result: RunResult, prefix: str = "") -> None:
    """The generated text (Markdown-escaped), or a note on why there is none. `prefix`: e.g. '#### '."""
    if result.output_text:
        st.markdown(prefix + _md_escape(result.output_text))
    elif len(result.output_ids) <= 2:
        st.markdown("_(empty: the model ended at once)_")
    else:
        st.markdown(f"_(no text: the model produced {len(result.output_ids) - 1} special tokens only)_")


def run_id(result: RunResult) -> str:
    """A stable id of a run for caching its derived views (set by RunJob; made up if missing)."""
    return result.settings.setdefault("run_id", uuid.uuid4().hex[:12])


def run_summary(result: RunResult) -> None:
    """One line of facts about a run: tokens, time per step, memory, stopped early."""
    t = result.timings
    n_out = max(0, len(result.output_ids) - 1)
    parts = [f"{result.document.n_tokens:,} input tokens", f"{len(result.global_positions)} global",
             f"{n_out} output tokens", f"encode {t.get('encode_s', 0):.2f} s",
             f"generate {t.get('generate_s', 0):.2f} s", f"attention kept {result.memory.get('attention_mb', 0):.0f} MB"]
    if result.token_logprobs:
        parts.append(f"log-likelihood {result.log_likelihood:.2f}")
    if result.settings.get("answer_from_document"):
        parts.append("answer kept to a span of the document")
    st.caption(" · ".join(parts))
    if result.stopped_early:
        st.warning("Stopped early (cancelled): the output is what was generated until then.", icon=":material/stop_circle:")


# ---------------------------------------------------------------------------------------------
# numbers for the views, cached per run and view (changing the view never re-runs the model)
# ---------------------------------------------------------------------------------------------

def _sorted_layers(result: RunResult) -> list:
    return [result.layers[k] for k in sorted(result.layers)]


def result_view(result: RunResult, view: View | None = None) -> View:
    """The view, clipped to the run's number of layers and heads."""
    first = next(iter(result.layers.values()))
    return (view or current_view()).clip(len(result.layers), first.num_heads)


@st.cache_resource(max_entries=8, show_spinner=False)
def _aggregated(rid: str, layer: int | None, heads: tuple[int, ...] | None, reduce: str, _result: RunResult):
    layers = _sorted_layers(_result)
    if layer is None and heads is None and len(layers) == 1 and layers[0].num_heads == 1:
        return layers[0]
    return analysis.aggregate(layers, layers=None if layer is None else [layer],
                              heads=None if heads is None else list(heads), reduce=reduce)


def aggregated(result: RunResult, view: View | None = None):
    """The one-head SparseAttention of the view (mean/max over its heads and layers)."""
    v = result_view(result, view)
    return _aggregated(run_id(result), v.layer, v.heads, v.reduce, result)


@st.cache_data(max_entries=32, show_spinner=False)
def _overview(rid: str, view_key: tuple, bins: int, _result: RunResult) -> tuple[np.ndarray, list[int]]:
    agg = _aggregated(rid, *view_key, _result)
    m = analysis.overview(agg, bins=bins, reduce="sum")[0]
    return m.numpy(), analysis.bin_edges(agg.seq_len, bins)


def overview_map(result: RunResult, view: View | None = None, bins: int = OVERVIEW_BINS):
    """(K, K) binned attention mass of the whole document, and the bins' token edges (K + 1)."""
    v = result_view(result, view)
    return _overview(run_id(result), v.key, bins, result)


@st.cache_data(max_entries=32, show_spinner=False)
def _zoom(rid: str, view_key: tuple, rows: tuple[int, int], cols: tuple[int, int], _result: RunResult) -> np.ndarray:
    return analysis.zoom(_aggregated(rid, *view_key, _result), rows, cols)[0].numpy()


def zoom_map(result: RunResult, rows: tuple[int, int], cols: tuple[int, int], view: View | None = None) -> np.ndarray:
    """Dense attention of queries rows[0]:rows[1] to keys cols[0]:cols[1] for the view."""
    v = result_view(result, view)
    return _zoom(run_id(result), v.key, tuple(rows), tuple(cols), result)


def token_row(result: RunResult, i: int, direction: str = "from", view: View | None = None) -> np.ndarray:
    """(N,) where token i looks (direction 'from': its row) or who looks at it ('to': its column)."""
    agg = aggregated(result, view)
    vec = analysis.row_view(agg, i) if direction == "from" else analysis.col_view(agg, i)
    return vec[0].numpy()


def _cross_select(result: RunResult, view: View) -> dict:
    """The view's layers/heads for the decoder's cross-attention (all of them where out of range)."""
    n_layers = len(result.cross_attentions)
    n_heads = result.cross_attentions[0].shape[0] if n_layers else 0
    v = view.clip(n_layers, n_heads)
    return dict(layers=v.layers, heads=None if v.heads is None else list(v.heads), reduce=v.reduce)


@st.cache_data(max_entries=32, show_spinner=False)
def _cross(rid: str, view_key: tuple, _result: RunResult) -> np.ndarray:
    select = _cross_select(_result, View(*view_key))
    return analysis.cross_attention_map([c[None] for c in _result.cross_attentions], **select).numpy()


def cross_map(result: RunResult, view: View | None = None) -> np.ndarray | None:
    """(T, N) cross-attention of the output onto the input for the view; row t is the step that
    produced output token t + 1 (output_ids[0] is the decoder's start token). None without output."""
    if not result.cross_attentions:
        return None
    return _cross(run_id(result), (view or current_view()).key, result)


@st.cache_data(max_entries=32, show_spinner=False)
def _global_stats(rid: str, layer: int, _result: RunResult) -> pd.DataFrame:
    return analysis.global_token_stats([_result.layers[layer]])


def global_stats(result: RunResult, view: View | None = None) -> pd.DataFrame:
    """Per global token, its statistics in the view: mean over the view's heads and layers."""
    v = result_view(result, view)
    layers = sorted(result.layers) if v.layer is None else [v.layer]
    df = pd.concat([_global_stats(run_id(result), l, result) for l in layers], ignore_index=True)
    if v.heads is not None:
        df = df[df["head"].isin(v.heads)]
    agg = "max" if v.reduce == "max" else "mean"
    return df.drop(columns=["layer", "head", "slot"]).groupby("position", as_index=False).agg(agg)


@st.cache_data(max_entries=16, show_spinner=False)
def _passages(rid: str, _doc: Document) -> analysis.TokenGroups:
    spans = document_spans(_doc)
    offsets = [s if s is not None else (0, 0) for s in spans]
    return analysis.token_groups(_doc.text, offsets, "sentence", special="drop")


def top_passages(result: RunResult, weights: np.ndarray, k: int = 3) -> list[tuple[tuple[int, int], float, str]]:
    """The k sentences of the document holding the most of `weights` (N,): (span, mass, text)."""
    doc = result.document
    groups = _passages(run_id(result), doc)
    if groups.num_groups == 0:
        return []
    idx = groups.index
    keep = idx >= 0
    mass = torch.zeros(groups.num_groups).index_add_(0, idx[keep], torch.as_tensor(weights, dtype=torch.float32)[keep])
    total = float(mass.sum()) or 1.0
    order = torch.argsort(mass, descending=True)[:k].tolist()
    return [(groups.spans[g], float(mass[g]) / total, groups.labels[g]) for g in order if mass[g] > 0]


# ---------------------------------------------------------------------------------------------
# views
# ---------------------------------------------------------------------------------------------

def figure_export(fig, name: str, key: str) -> None:
    """A small 'Export' popover for a figure: HTML always, PNG when kaleido is installed."""
    with st.popover("Export figure", icon=":material/download:"):
        st.download_button("Interactive HTML", data=lambda: plots.figure_html(fig), file_name=f"{name}.html",
                           mime="text/html", key=f"{key}.html", on_click="ignore")
        if plots.png_export_available():
            st.download_button("PNG", data=lambda: plots.figure_png(fig), file_name=f"{name}.png",
                               mime="image/png", key=f"{key}.png", on_click="ignore")
        else:
            st.caption("PNG files need the kaleido package (`pip install kaleido`); the camera icon "
                       "in the figure's toolbar saves a PNG from the browser meanwhile.")


def plot(fig, key: str, **kwargs) -> Any:
    """st.plotly_chart with the app's defaults."""
    return st.plotly_chart(fig, key=key, config={"displaylogo": False}, **kwargs)


def highlighted_document(result: RunResult, weights: np.ndarray, *, focus: Sequence[int] = (),
                         outline: Sequence[tuple[int, int]] = (), label: str = "attention",
                         height: int = 420) -> None:
    """The document text with each token shaded by weights (N,), in a scrolling box."""
    doc = result.document
    w = np.asarray(weights, dtype=np.float32).copy()
    spans = document_spans(doc)
    inside = np.array([s is not None for s in spans])
    w[~inside] = 0.0
    top = float(w.max()) if w.size else 0.0
    # attention is heavy-tailed: a square-root shade keeps the weaker passages visible beside the peaks
    st.html(plots.legend_html(label, top, note="(square-root shading; hover a word for its value)"))
    st.html(plots.attention_html(doc.text, spans, w, focus=focus, outline=outline, gamma=0.5, max_height=height))


def _token_picker(result: RunResult, key: str, label: str, default: int = 0) -> int:
    doc = result.document
    n = doc.n_tokens
    _clamp_state(key, 0, n - 1)
    i = int(st.number_input(label, 0, n - 1, min(default, n - 1), key=key, persist_state="session"))
    st.caption(f"Token {i}: “{token_texts(doc)[i]}”" + (" · global" if i in set(result.global_positions) else ""))
    return i


def map_view(result: RunResult, key: str, view: View | None = None, wide: bool = False) -> None:
    """Binned overview of the whole map with a zoom range, and the token-level map of that range
    (below it, or beside it when `wide`)."""
    v = result_view(result, view)
    doc = result.document
    n = doc.n_tokens
    c1, c2, c3 = st.columns([2.6, 1.5, 1])
    scale = c2.selectbox("Colour scale", list(plots.SCALES), format_func=plots.SCALES.get, key=f"{key}.scale",
                         persist_state="session")
    bins = c3.selectbox("Overview bins", BIN_CHOICES, index=BIN_CHOICES.index(OVERVIEW_BINS), key=f"{key}.bins",
                        persist_state="session", help="Bins per side of the whole-document map (fewer draw faster).")
    default = (0, min(n, 64))
    _clamp_state(f"{key}.rows", 0, n)
    _clamp_state(f"{key}.cols", 0, n)
    with c1:
        rows = st.slider("Zoom: query tokens", 0, n, default, key=f"{key}.rows", persist_state="session",
                         help=f"At most {MAX_ZOOM} tokens are shown token by token.")
        same = st.checkbox("Keys: the same tokens", True, key=f"{key}.same", persist_state="session")
        cols = rows if same else st.slider("Zoom: key tokens", 0, n, default, key=f"{key}.cols",
                                           persist_state="session")
    if rows[1] - rows[0] > MAX_ZOOM or cols[1] - cols[0] > MAX_ZOOM:
        st.caption(f"The token-level map shows the first {MAX_ZOOM} tokens of the range.")
    rows = (rows[0], min(rows[1], rows[0] + MAX_ZOOM))
    cols = (cols[0], min(cols[1], cols[0] + MAX_ZOOM))
    m, edges = overview_map(result, v, bins)
    bins = len(edges) - 1
    title = f"Whole document ({n:,} tokens, {bins}×{bins} bins of {edges[1] - edges[0]}) — {v.label()}"
    fig = plots.overview_figure(m, edges, title=title, scale=scale, zoom=(rows, cols))
    left, right = st.columns(2, gap="medium") if wide else (st.container(), st.container())
    with left:
        plot(fig, key=f"{key}.overview")
        figure_export(fig, "attention-overview", f"{key}.overview_export")
    with right:
        if rows[1] - rows[0] < 1 or cols[1] - cols[0] < 1:
            st.info("Choose a token range to zoom into.")
            return
        z = zoom_map(result, rows, cols, v)
        fig2 = plots.token_heatmap_figure(z, token_labels(doc, range(*rows)), token_labels(doc, range(*cols)),
                                          title=f"Tokens {rows[0]}–{rows[1] - 1} → {cols[0]}–{cols[1] - 1}",
                                          scale="linear" if scale == "clipped" else scale,
                                          height=560 if wide else None)
        plot(fig2, key=f"{key}.zoom")
        figure_export(fig2, "attention-tokens", f"{key}.zoom_export")


def text_view(result: RunResult, key: str, view: View | None = None, default_token: int = 0) -> None:
    """The document coloured by the attention from (or to) a chosen token."""
    c1, c2 = st.columns([1, 1])
    with c1:
        i = _token_picker(result, f"{key}.token", "Token position", default_token)
    direction = c2.radio("Attention", ["from", "to"], key=f"{key}.direction", horizontal=True,
                         format_func={"from": "from this token (where it looks)",
                                      "to": "to this token (who looks at it)"}.get, persist_state="session")
    w = token_row(result, i, direction, view)
    fig = plots.profile_figure(np.where([s is not None for s in document_spans(result.document)], w, 0.0),
                               marks=[(i, "token")], value_name="attention", height=180)
    plot(fig, key=f"{key}.profile")
    highlighted_document(result, w, focus=[i], label=f"attention {direction} token {i}")


def heads_view(result: RunResult, key: str, view: View | None = None) -> None:
    """The layer × head grid of a per-head statistic; a click on a cell shows that head everywhere."""
    v = result_view(result, view)
    table = analysis.stats_table(dict(sorted(result.head_stats.items())))
    if table.empty:
        st.info("This run kept no per-head statistics.")
        return
    stat = st.segmented_control("Statistic", list(STATS), format_func=STATS.get, default="mean_distance",
                                required=True, key=f"{key}.stat", persist_state="session")
    grid = table.pivot_table(index="layer", columns="head", values=stat, aggfunc="mean")
    selected = None
    if v.layer is not None and v.heads is not None and len(v.heads) == 1:
        selected = (list(grid.index).index(v.layer), list(grid.columns).index(v.heads[0]))
    fig = plots.grid_figure(grid.to_numpy(), [f"layer {l}" for l in grid.index], [f"head {h}" for h in grid.columns],
                            value_name=STATS[stat], selected=selected)
    chart_key = f"{key}.grid"

    def picked() -> None:
        points = st.session_state[chart_key]["selection"]["points"]
        if points:  # the invisible cell markers: x = column (head), y = row (layer)
            p = points[0]
            select_head(int(grid.index[int(p["y"])]), int(grid.columns[int(p["x"])]))

    plot(fig, key=chart_key, on_select=picked, selection_mode="points")
    st.caption("Averaged over the document's tokens. Click a cell to show that layer and head in every view "
               "(the sidebar follows).")
    figure_export(fig, f"heads-{stat}", f"{key}.grid_export")
    with st.expander("All statistics as a table"):
        st.dataframe(table.drop(columns=["batch"]), hide_index=True, height=260)


def global_tokens_view(result: RunResult, key: str, view: View | None = None) -> None:
    """The global tokens: their statistics, and where each of them looks over the document."""
    v = result_view(result, view)
    doc = result.document
    positions = result.global_positions
    if not positions:
        st.info("This run has no global tokens: choose some (e.g. the first token) before running.")
        return
    stats = global_stats(result, v)
    texts = token_texts(doc)
    stats.insert(1, "token", [texts[p] for p in stats["position"]])
    shown = stats.nlargest(MAX_GLOBAL_ROWS, "received_mean").sort_values("position") \
        if len(stats) > MAX_GLOBAL_ROWS else stats
    agg = aggregated(result, v)
    used = agg.global_used[0].nonzero(as_tuple=True)[0]
    pos_to_slot = {int(agg.global_positions[0, s]): int(s) for s in used}
    rows = agg.global_rows[0, 0][[pos_to_slot[p] for p in shown["position"]]].float()  # (G, N)
    bins = min(256, doc.n_tokens)
    m = analysis.bin_matrix(rows, (rows.shape[0], bins), reduce="sum").numpy()
    edges = analysis.bin_edges(doc.n_tokens, bins)
    note = f" (the {MAX_GLOBAL_ROWS} most attended of {len(stats)})" if len(stats) > MAX_GLOBAL_ROWS else ""
    fig = plots.rows_figure(m, token_labels(doc, list(shown["position"])), edges,
                            title=f"Where each global token looks{note} — {v.label()}", value_name="attention mass")
    plot(fig, key=f"{key}.rows")
    figure_export(fig, "global-tokens", f"{key}.rows_export")
    st.dataframe(
        stats, hide_index=True, height=260 if len(stats) > 6 else "auto",
        column_config={
            "mean_distance": st.column_config.NumberColumn("mean distance", format="%.1f"),
            "entropy": st.column_config.NumberColumn(format="%.2f"),
            "self_mass": st.column_config.NumberColumn("self", format="%.3f"),
            "global_mass": st.column_config.NumberColumn("on globals", format="%.3f"),
            "received_sum": st.column_config.NumberColumn("received (sum)", format="%.2f"),
            "received_mean": st.column_config.ProgressColumn("received (mean)", format="%.4f", min_value=0.0,
                                                             max_value=float(stats["received_mean"].max() or 1.0)),
        })
    st.caption("received: the attention all tokens pay to it; mean distance and entropy: of its own row.")


def cross_attention_view(result: RunResult, loaded: LoadedModel | None, key: str, view: View | None = None) -> None:
    """Output tokens × document: the decoder's cross-attention for the view, binned along the document."""
    cm = cross_map(result, view)
    if cm is None:
        st.info("No output tokens, so no cross-attention.")
        return
    doc = result.document
    bins = min(512, doc.n_tokens)
    m = analysis.bin_matrix(torch.from_numpy(cm), (cm.shape[0], bins), reduce="sum").numpy()
    labels = output_labels(result, loaded)
    fig = plots.rows_figure(m, labels, analysis.bin_edges(doc.n_tokens, bins), x_title="input token",
                            title="Cross-attention: each output token onto the input", value_name="attention mass")
    plot(fig, key=f"{key}.cross")
    figure_export(fig, "cross-attention", f"{key}.cross_export")


def output_pieces(result: RunResult, loaded: LoadedModel | None) -> list[str]:
    """The generated tokens (after the decoder start token) as text pieces."""
    ids = result.output_ids[1:]
    if loaded is not None:
        return [loaded.tokenizer.decode([t]) for t in ids]
    return list(result.output_tokens[1:])


def output_labels(result: RunResult, loaded: LoadedModel | None) -> list[str]:
    """Unique labels 'k piece' for the generated tokens (k from 1), HTML-escaped for Plotly."""
    return [html.escape(f"{k} {p.strip() or repr(p)}", quote=False)
            for k, p in enumerate(output_pieces(result, loaded), start=1)]


def source_view(result: RunResult, loaded: LoadedModel | None, key: str, view: View | None = None,
                what: str = "summary token") -> None:
    """Pick an output token (or all of them): the document shaded by its cross-attention, and the
    passages (sentences) it drew on most."""
    cm = cross_map(result, view)
    if cm is None:
        st.info("No output tokens, so nothing to trace back.")
        return
    pieces = output_pieces(result, loaded)
    special = set(loaded.tokenizer.all_special_ids) if loaded is not None else set()
    options = [-1] + [k for k, t in enumerate(result.output_ids[1:], start=1) if t not in special]
    names = {-1: f"every {what}", **{k: pieces[k - 1].strip() or "␣" for k in options[1:]}}
    _keep_valid(f"{key}.out_token", options, -1)
    box = st.container(height=150 if len(options) > 24 else "content")
    k = box.pills(f"Which {what}? (the output, token by token)", options, format_func=names.get, default=-1,
                  required=True, key=f"{key}.out_token", persist_state="session", wrap=True)
    if k != -1:
        names[k] = f"token {k} “{names[k]}”"
    weights = cm.mean(0) if k == -1 else cm[k - 1]
    show_passages(top_passages(result, weights, 3))
    highlighted_document(result, weights, label=f"cross-attention of {names[k]}", height=360)


def show_passages(top: Sequence[tuple[tuple[int, int], float, str]], title: str = "Passages it attended to most") -> None:
    """A numbered list of passages (from `top_passages`) with their share of the attention."""
    if not top:
        return
    items = "".join(
        f'<li><b>{mass:.0%}</b> · <span style="background:rgba(230,85,13,0.22)">'
        f'{html.escape(text if len(text) <= 400 else text[:399] + "…")}</span></li>'
        for _, mass, text in top)
    st.html(f'<div style="font-size:0.9rem">{html.escape(title)}:<ol style="margin:4px 0">{items}</ol></div>')


def _settings_json(result: RunResult, view: View) -> str:
    doc = result.document
    data = {
        "settings": {k: v for k, v in result.settings.items() if k != "fingerprint"},
        "view": {"layer": view.layer, "heads": view.heads, "reduce": view.reduce},
        "document": {"characters": len(doc.text), "tokens": doc.n_tokens, "truncated_tokens": doc.truncated_tokens,
                     "question": doc.question},
        "output": result.output_text,
        "timings": result.timings,
        "memory": result.memory,
        "stopped_early": result.stopped_early,
    }
    return json.dumps(data, indent=2, default=str)


def _attention_run(result: RunResult) -> export.AttentionRun:
    doc = result.document
    meta = export.run_metadata(
        model_name=str(result.settings.get("model")), attention_window=[2 * sp.window for sp in _sorted_layers(result)],
        global_attention_mask=result.global_mask, attention_mask=doc.attention_mask, text=doc.text,
        offsets=doc.offsets, question=doc.question, output_text=result.output_text,
        settings={k: v for k, v in result.settings.items() if k != "fingerprint"})
    return export.AttentionRun(layers=dict(result.layers), stats=dict(result.head_stats), metadata=json.loads(json.dumps(meta)))


def _npz_bytes(result: RunResult) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = export.save_npz(os.path.join(tmp, "run.npz"), _attention_run(result))
        return path.read_bytes()


def _parquet_zip(result: RunResult) -> bytes:
    run = _attention_run(result)
    for l, sp in run.layers.items():
        run.overviews[l] = torch.stack([analysis.overview(sp, 256)])  # (1, H, K, K) for the table
    buf = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp:
        paths = export.save_parquet(tmp, run)
        stats = pd.concat([analysis.global_token_stats(sp) for sp in run.sparse_layers()], ignore_index=True)
        stats.to_parquet(os.path.join(tmp, "global_tokens.parquet"), index=False)
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for p in [*paths.values(), os.path.join(tmp, "global_tokens.parquet")]:
                z.write(p, arcname=os.path.basename(str(p)))
    return buf.getvalue()


def _has_pyarrow() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


def export_view(result: RunResult, key: str, view: View | None = None) -> None:
    """Downloads: the run's settings (JSON), its attention maps and statistics (.npz, Parquet)."""
    v = result_view(result, view)
    st.markdown("Files are made when you click (big runs take a moment).")
    c1, c2, c3 = st.columns(3)
    c1.download_button("Settings (JSON)", data=_settings_json(result, v), file_name="ledviz-run.json",
                       mime="application/json", key=f"{key}.json", on_click="ignore", icon=":material/settings:")
    c2.download_button("Maps and statistics (.npz)", data=lambda: _npz_bytes(result), file_name="ledviz-run.npz",
                       mime="application/octet-stream", key=f"{key}.npz", on_click="ignore",
                       icon=":material/data_array:")
    if _has_pyarrow():
        c3.download_button("Tables (Parquet, zip)", data=lambda: _parquet_zip(result), file_name="ledviz-run-parquet.zip",
                           mime="application/zip", key=f"{key}.parquet", on_click="ignore", icon=":material/table:")
    else:
        c3.caption("Parquet needs pyarrow (`pip install pyarrow`); the .npz file has everything.")
    st.caption(f"The .npz holds every encoder layer in band + global form (float16, {result.memory.get('attention_mb', 0):.0f} MB "
               "before compression), the per-head statistics and the text, offsets and settings as JSON; "
               "read it back with `ledviz.export.load_npz`. The Parquet tables hold per-head statistics, "
               "256-bin overviews of every head and the global-token statistics. Figures: the Export button "
               "under each figure.")


VIEW_TABS = {"map": "Map", "text": "Text", "heads": "Heads", "global": "Global tokens", "export": "Export"}


def attention_views(result: RunResult, loaded: LoadedModel | None, key: str, *, tabs: Sequence[str] = tuple(VIEW_TABS),
                    default_token: int = 0, extra: dict[str, Callable[[], None]] | None = None,
                    wide: bool = False) -> None:
    """The encoder attention views of a run in tabs. Only the open tab is computed (tabs with
    on_change="rerun"), so switching views or changing the sidebar redraws quickly. `extra`
    adds tabs {label: draw function} after the standard ones; `wide` (the views span the page)
    sets figures side by side."""
    v = result_view(result)
    labels = [VIEW_TABS[t] for t in tabs] + list(extra or {})
    containers = st.tabs(labels, key=f"{key}.tab", on_change="rerun")
    draw = {
        "map": lambda: map_view(result, f"{key}.map", v, wide),
        "text": lambda: text_view(result, f"{key}.text", v, default_token),
        "heads": lambda: heads_view(result, f"{key}.heads", v),
        "global": lambda: global_tokens_view(result, f"{key}.global", v),
        "export": lambda: export_view(result, f"{key}.export", v),
    }
    fns = [draw[t] for t in tabs] + list((extra or {}).values())
    for label, tab, fn in zip(labels, containers, fns):
        if tab.open is False:
            continue
        with tab, show_errors(f"drawing the {label} view"):
            fn()


def _leave_pages_folder_mode() -> None:
    """Make sure app.py's frame runs, even when a server's first visitor opens a page's URL.

    Streamlit decides on a server's first run whether this is a legacy "pages/ folder" app (a
    pages/ folder exists) and keeps that until st.navigation runs. If that first run is a
    bookmarked page (say /qa), it runs pages/qa.py alone, without app.py's frame and sidebar,
    and lists every file of pages/ (common.py too). Every page imports this module, and the
    first import happens in that first run: it switches the legacy mode off and reruns, so the
    rerun goes through app.py and its st.navigation.
    """
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if PagesManager.uses_pages_directory and get_script_run_ctx() is not None:
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_pages_folder_mode()
