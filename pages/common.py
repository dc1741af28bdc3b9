"""The app's frame, shared by every page: errors, the page runner, the model, the sidebar's view
controls, document input, and running the model with progress and cancel. The attention views
every page draws from a run are in `pages.views`.

Pages import what they need (`from pages.common import ...`). The numbers and texts come from the
library (`ledviz.pipeline`, `ledviz.runs`, `ledviz.uploads`, `ledviz.views`), the figures from
`ledviz.plots`; this module only arranges widgets and caches.

The API, by section:

- pages and errors: `render_page(main, what)` (the last line of every page), `show_errors(what)`
  (context manager), `show_error(err, what)`, `stay_in_app_frame()`.
- the model: `model_sidebar()` (app.py), `require_model()` / `get_model()` (pages),
  `load_model_cached(name, status)`.
- the view: `attention_sidebar(loaded)` (app.py), `current_view()`, `select_head(layer, head)`.
- documents: `document_input(key)`, `prepared_document(loaded, text, question)`,
  `read_question_input(key, loaded, question, document)`, `document_status(loaded, text, question)`,
  `global_tokens_input(key, doc, default)`, `global_count(kind, mask)`, `global_choice_options(prefix, kind, ...)`,
  `run_settings(key, doc, ...)`, `new_tokens_input(...)`, `most_new_tokens(loaded, max_tokens)`, `sample_questions()`.
- runs: `run_panel(key, loaded, doc, mask, ...)`, `run_summary(result, setting, most)`, `show_output(result)`.
- widget state: `keep_valid(key, valid)`, `index_state(key, n, default)`, `clamp_state(key, lo, hi)`.
- messages: `sentence(message)`, `count(n, thing)` and `as_typed(text)` (ledviz.text, for the pages): every
  text from a user, a document, a model or a library message that quotes them goes into Markdown (st.markdown,
  st.caption, st.info/warning/error, labels) through `as_typed`, so it shows as typed, with no formatting or links.

Session-state keys: "model.*" (the checkpoint), "view.*" (layer/heads), "<key>.*" per page or
widget group (pages choose their key; "doc" is the document shared by Summarize and QA).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import streamlit as st
import torch

from ledviz import device, pipeline, plots
from ledviz.errors import InputError, LedvizError
from ledviz.loading import did_you_mean, file_not_folder
from ledviz.memory import model_nbytes
from ledviz.pipeline import Document, LoadedModel, RunResult
from ledviz.runs import cut_note, empty_output_note, one_token_note, run_facts, run_fingerprint, stale_note
from ledviz.text import as_typed, count
from ledviz.tokenization import broken_note
from ledviz.uploads import UPLOADER_TYPES, decode_upload
from ledviz.views import View
from pages.running import (
    cancel_job,
    follow_job,
    job_running,
    kept as kept_result,
    poll,
    server,
    session_owner,
    show_cancelled_or_error,
    start_job,
)

log = logging.getLogger("ledviz.app")

HUB_EXAMPLES = ("allenai/led-base-16384", "allenai/led-large-16384", "allenai/led-large-16384-arxiv")
MODEL_SOURCES = {"embedded": "Embedded demo model (offline)", "hub": "Hugging Face Hub id", "local": "Local folder"}
ALL_LAYERS = -1
HEAD_MODES = {"all": "All", "one": "One", "some": "Chosen"}


# ---------------------------------------------------------------------------------------------
# pages and errors: a message, never a traceback
# ---------------------------------------------------------------------------------------------

_PHONE_AGENT = re.compile(r"Mobi|Android|iPhone|iPod|Windows Phone")


def is_phone_agent(user_agent: str | None) -> bool:
    """Whether a browser's User-Agent is a phone's (or a small tablet's): "Mobi" (the token browsers put in
    their mobile agents), Android, iPhone, iPod, Windows Phone."""
    return bool(user_agent) and _PHONE_AGENT.search(user_agent) is not None


def stack_toggle(label: str, key: str, help: str) -> bool:
    """A "Stack the ..." toggle, on at first for a phone's browser. Streamlit does not tell the server the
    window's width, so panels side by side start that way on every screen; on a phone (its User-Agent) they
    were cramped until the user found the toggle. Once set by the user, the user's choice stays."""
    if key not in st.session_state:
        try:
            agent = st.context.headers.get("User-Agent")
        except Exception:  # no request behind the run (an AppTest), or a Streamlit without st.context
            agent = None
        st.session_state[key] = is_phone_agent(agent)
    return st.toggle(label, key=key, help=help, persist_state="session")


def sentence(message: str) -> str:
    """A message as a sentence: its first letter upper-case (library messages start lower-case,
    as Python's exception messages do)."""
    return message[:1].upper() + message[1:]


def error_text(err: BaseException, what: str = "") -> str:
    """An exception as show_error words it (Markdown, the message as typed): ledviz's own messages as
    they are (as a sentence), a missing package as such, anything else in one line."""
    if isinstance(err, LedvizError):
        return as_typed(sentence(str(err)))
    if isinstance(err, ImportError):
        return f"A package is missing{' for ' + what if what else ''}: {as_typed(str(err))}"
    return f"Something went wrong{' while ' + what if what else ''}: {type(err).__name__}: {as_typed(str(err))}"


def show_error(err: BaseException, what: str = "", where: Any = None) -> None:
    """st.error for an exception, worded by error_text (the traceback of one not ledviz's own and not
    a missing package goes to the server log). The message shows as typed (`as_typed`): it quotes the
    user's text (a pattern, a path, a document's words), which Markdown would format."""
    where = where or st
    if not isinstance(err, (LedvizError, ImportError)):
        log.error("unexpected error while %s", what or "running", exc_info=err)
    where.error(error_text(err, what), icon=":material/error:")


@contextlib.contextmanager
def show_errors(what: str = "", where: Any = None) -> Iterator[None]:
    """Run a block; an exception ends the block and shows as st.error (Streamlit's own control
    flow, st.stop / st.rerun, passes through: it is not an Exception)."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - the point is to catch everything
        show_error(err, what, where)


def stay_in_app_frame() -> None:
    """Make sure app.py's frame (st.navigation and the sidebar) runs, not a page on its own.

    Why this touches Streamlit's private `PagesManager`: Streamlit (checked with 1.67) decides
    whether an app is a legacy "pages/ folder" app from whether a folder named `pages` sits next
    to the main script, and keeps that verdict (a class attribute) until st.navigation runs. Our
    pages live in pages/ (the repository's layout) and are listed by st.navigation in app.py.
    While the verdict stands, a run for a page's URL executes that page's file alone: no sidebar,
    and a navigation listing every file of pages/. That happens on a server's first run when the
    first visitor opens a bookmarked page (say /qa), and in Streamlit's AppTest on every run after
    `switch_page`, because AppTest resets the verdict before each run. No public setting turns the
    legacy mode off, and st.navigation cannot run before the page does. So app.py and every page
    (through `render_page`) call this first: it switches the legacy mode off and reruns, and the
    rerun goes through app.py. The one place the app touches Streamlit's internals.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def render_page(main: Callable[[], None], what: str) -> None:
    """Draw a page: inside app.py's frame, with any error shown as a message ("drawing `what`")."""
    stay_in_app_frame()
    with show_errors(f"drawing {what}"):
        main()


# ---------------------------------------------------------------------------------------------
# the model: one per checkpoint for all sessions
# ---------------------------------------------------------------------------------------------

class _ModelSlot:
    """Holds one checkpoint's model once loaded, and the queued job loading it meanwhile (every
    session asking for the checkpoint follows that one job); the lock guards both."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.loaded: LoadedModel | None = None
        self.job = None  # a ledviz.runqueue.Job while the load waits or runs


@st.cache_resource(max_entries=2, show_spinner=False)
def _model_slot(name: str, model_dir: str) -> _ModelSlot:
    """The cache entry of a checkpoint (keyed by its name, and for the embedded model its folder).

    The slot is created empty and filled by the load job `load_model_cached` queues, outside the
    cached function, so the loading progress can be drawn on the page (Streamlit would otherwise
    record those progress updates for replay); a failed load leaves it empty and the next call retries.
    """
    return _ModelSlot()


def load_model_cached(name: str, status: Any = None, kind: str | None = None) -> LoadedModel:
    """The model for a checkpoint name ("embedded", a Hub id or a folder), loaded once per process.

    The deployment settings apply before anything is read: with local folders off a name is only
    ever a Hub id (nothing on the server's disk is looked at under it), and a Hub id must be one
    the server allows. `kind` ("hub" or "local") is what the user chose the name as.

    A model not loaded yet is loaded by a job of the server's shared queue, like a run: thirty
    users asking for thirty models load them one after the other, each seeing its place, and a
    model whose weights (from its config.json alone) would not fit in the memory free is refused
    before anything else is read (MemoryRefused). `status` (an st.empty) shows the place and the
    loading progress."""
    hub_only = False
    srv = server()
    if name != pipeline.EMBEDDED:
        settings = srv.settings
        if kind == "local":
            settings.check_local_folder()
            if os.path.isfile(os.path.expanduser(name)):
                raise InputError(file_not_folder(name))
            if not os.path.isdir(os.path.expanduser(name)):
                hint = did_you_mean(name, hub=False)  # close names among the folders beside it
                raise InputError(f"there is no folder {name!r} on the server: the path is read on the server's "
                                 "disk; give the folder that holds config.json and the weights"
                                 + (f"; {hint}" if hint else ""))
        if kind == "hub" or not settings.local_folders:
            name = settings.check_hub_id(name)
            hub_only = not settings.local_folders
    slot = _model_slot(name, pipeline.default_model_dir() if name == pipeline.EMBEDDED else "")
    with slot.lock:
        if slot.loaded is not None:
            return slot.loaded
        job = slot.job
        if job is None or job.done:  # (a failed load is tried again)
            nbytes = model_nbytes(pipeline.load_config(name, hub_only=hub_only))

            def load(job) -> LoadedModel:
                steps = iter(range(1, 100))
                loaded = pipeline.load_model(name, hub_only=hub_only,
                                             progress=lambda message: job.report(message, min(0.95, next(steps) / 6)))
                with slot.lock:
                    slot.loaded, slot.job = loaded, None
                return loaded

            job = slot.job = srv.submit_load(load, owner=session_owner(), what=name, nbytes=nbytes)
    if status is not None:
        poll(job, srv, status=status, cancel=False)  # (a load is shared by every session asking for it)
    job.wait()
    return job.outcome()


def _describe(loaded: LoadedModel) -> str:
    c = loaded.config
    name = "embedded demo model" if loaded.source == pipeline.EMBEDDED else loaded.name
    text = (f"**{as_typed(name)}** · {count(c.encoder_layers, 'layer')} × {count(c.encoder_attention_heads, 'head')} · "
            f"{pipeline.window_words(c.attention_windows())} · up to {loaded.max_tokens:,} tokens · "
            f"loaded in {loaded.load_seconds:.1f} s")
    if loaded.source == pipeline.EMBEDDED:
        # what the small model can and cannot do, wherever its outputs are shown
        text += ("  \nTrained on synthetic reports only (the sample documents are of that kind): on them it "
                 "states the key facts and answers questions about them; on any other text its output is "
                 "meaningless. Scores and limits: ledviz/demo/model/README.md.")
    return text


def _clear_model_error() -> None:
    st.session_state.pop("model.error", None)


def _request(name: str, kind: str | None = None) -> None:
    st.session_state["model.requested"] = name
    st.session_state["model.requested_kind"] = kind


def model_sidebar() -> LoadedModel | None:
    """The sidebar's model choice (embedded, Hub id, local folder) and loading, with progress and
    a message when it fails. Call once per run, in app.py; pages use `require_model()`."""
    ss = st.session_state
    ss.setdefault("model.active", pipeline.EMBEDDED)
    with st.sidebar:
        st.subheader("Model")
        sources = [k for k in MODEL_SOURCES if k != "local" or server().settings.local_folders]
        keep_valid("model.source", sources)
        source = st.radio("Checkpoint", sources, format_func=MODEL_SOURCES.get, key="model.source",
                          on_change=_clear_model_error, label_visibility="collapsed")
        if source == "embedded":
            _request(pipeline.EMBEDDED)
        elif source == "hub":
            hub_id = st.text_input("Hub model id", value=HUB_EXAMPLES[0], key="model.hub_id",
                                   help="e.g. " + ", ".join(HUB_EXAMPLES) + ". Downloaded once into the "
                                        "Hugging Face cache (led-base is about 650 MB).")
            st.button("Load from the Hub", key="model.load_hub", on_click=_request, args=(hub_id.strip(), "hub"),
                      width="stretch", disabled=not hub_id.strip())  # an empty id would load nothing
        else:
            folder = st.text_input("Folder with config.json and weights", key="model.folder",
                                   placeholder="/path/to/checkpoint")
            st.button("Load folder", key="model.load_folder", on_click=_request, args=(folder.strip(), "local"),
                      width="stretch", disabled=not folder.strip())
        requested = ss.pop("model.requested", None)
        kind = ss.pop("model.requested_kind", None)
        bar = st.empty()
        if requested and requested != ss["model.active"]:
            try:
                load_model_cached(requested, bar, kind)
                ss["model.active"] = requested
                _clear_model_error()
            except Exception as err:  # noqa: BLE001 - shown below, the previous model stays in use
                ss["model.error"] = err
        loaded = None
        try:
            loaded = load_model_cached(ss["model.active"], bar)
        except Exception as err:  # noqa: BLE001
            ss["model.error"] = err
        bar.empty()
        if "model.error" in ss:
            show_error(ss["model.error"], "loading the model")
        if loaded is not None:
            st.caption(("In use: " if ss.get("model.error") else "") + _describe(loaded))
            for note in loaded.notes:  # ignored settings of the checkpoint: said, not only logged
                st.warning(as_typed(sentence(note)), icon=":material/warning:")
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
# the view: which layers and heads, and how they combine (ledviz.views.View)
# ---------------------------------------------------------------------------------------------

def keep_valid(key: str, valid: Sequence) -> None:
    """Reset a widget's state that no longer fits (another model has fewer layers or heads, a shorter
    output): the value is dropped, so the widget starts again from its own default (writing the
    default here as well would have Streamlit warn that the widget got its value twice); a list
    keeps what still fits, or is dropped when nothing does."""
    value = st.session_state.get(key)
    if isinstance(value, list):
        kept = [v for v in value if v in valid]
        if kept != value:
            if kept:
                st.session_state[key] = kept
            else:
                del st.session_state[key]
    elif value is not None and value not in valid:
        del st.session_state[key]


def index_state(key: str, n: int, default: int = 0) -> None:
    """Before a selectbox over options range(n) whose labels can change (e.g. the lab's settings):
    put a valid index in its state, every run.

    Why every run: the browser keeps the label it last showed and sends it back; when the labels
    have changed since, Streamlit cannot find it among the options and hands the label itself
    (a str) to the script, and the box goes on showing the old label. An index set here before the
    widget is drawn wins over the browser's value and is sent to it with the current labels. (No
    `index=` on such a selectbox: the state is its default.)"""
    value = st.session_state.get(key, default)
    if not isinstance(value, int) or not 0 <= value < n:
        value = default if 0 <= default < n else 0
    st.session_state[key] = value


def clamp_state(key: str, lo: int, hi: int) -> None:
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
        keep_valid("view.layer", [ALL_LAYERS, *range(L)])
        keep_valid("view.head", list(range(H)))
        keep_valid("view.head_set", list(range(H)))
        st.session_state.setdefault("view.head_set", [0])  # the multiselect's start (here only, not as a default)
        with st.sidebar:
            st.subheader("Attention view")
            layer = st.selectbox("Encoder layer", [ALL_LAYERS, *range(L)], key="view.layer",
                                 format_func=lambda l: "All layers" if l == ALL_LAYERS else f"Layer {l}")
            st.session_state.setdefault("view.heads_mode", "all")  # the start, here only: select_head sets it too
            mode = st.segmented_control("Heads", list(HEAD_MODES), format_func=HEAD_MODES.get,
                                        required=True, key="view.heads_mode", persist_state="session")
            heads: tuple[int, ...] | None = None
            if mode == "one":
                heads = (st.selectbox("Head", list(range(H)), key="view.head", persist_state="session"),)
            elif mode == "some":
                chosen = st.multiselect("Heads to combine", list(range(H)), key="view.head_set",
                                        persist_state="session")
                heads = tuple(sorted(chosen)) or None
            several = layer == ALL_LAYERS or heads is None or len(heads) > 1
            reduce = "mean"
            if several:
                reduce = st.radio("Combine heads/layers by", ["mean", "max"], horizontal=True, key="view.reduce",
                                  persist_state="session")
            view = View(None if layer == ALL_LAYERS else layer, heads, reduce)
            if mode == "some" and heads is None:  # an emptied "Heads to combine" shows every head: say so
                st.caption(f"No head chosen: showing {view.label()}; pick heads to combine.")
            else:
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


_INPUT_ERROR = "_document_input.error"  # this run's document_input said what is wrong with its input


def document_input(key: str = "doc") -> DocumentInput | None:
    """Choose a bundled sample, paste, or upload (ledviz.uploads.UPLOADER_TYPES: the kinds read, and common kinds
    not read, which get a message saying so). Returns None (with a
    message for a bad upload or a blank paste, after which document_status adds no message of its
    own) when there is no text yet. `key` prefixes the widget keys: pages passing the same key share the document."""
    st.session_state[_INPUT_ERROR] = False
    samples = _samples()
    source = st.segmented_control("Document", ["Sample", "Paste", "Upload"], default="Sample", required=True,
                                  key=f"{key}.source", persist_state="session")
    if source == "Sample":
        title = st.selectbox("Sample document", list(samples), key=f"{key}.sample", persist_state="session",
                             help="Synthetic reports like those the embedded model was trained on.")
        text = samples[title]
        with st.expander("Read the document"):
            st.html(plots.text_box_html(text))
        return DocumentInput(text, title, sample=title)
    if source == "Paste":
        text = st.text_area("Paste a document", key=f"{key}.pasted", height=220, persist_state="session",
                            placeholder="Paste a long text here (reports, articles, papers)…")
        if text and not text.strip():  # not nothing pasted: something that reads as nothing
            st.info("The pasted text is blank (only spaces or line breaks): paste the document's text.")
            st.session_state[_INPUT_ERROR] = True
        return DocumentInput(text, "pasted text") if text.strip() else None
    upload = st.file_uploader("Upload a document (text, PDF or HTML)", type=list(UPLOADER_TYPES), key=f"{key}.upload",
                              help="Text files in any common encoding; PDFs with a text layer (scans need OCR "
                                   "first); web pages saved as HTML.")
    if upload is not None:
        try:
            uploaded = decode_upload(upload.name, upload.getvalue())
        except InputError as err:
            st.session_state.pop(f"{key}.uploaded", None)
            show_error(err)
            st.session_state[_INPUT_ERROR] = True
            return None
        st.session_state[f"{key}.uploaded"] = uploaded
    # the decoded text outlives the uploader, which forgets its file when the page changes
    uploaded = st.session_state.get(f"{key}.uploaded")
    if uploaded is None:
        return None
    st.caption(f"Using {as_typed(uploaded.name)} ({count(len(uploaded.text), 'character')})"
               + ("" if upload is not None else ", uploaded earlier") + ".")
    for note in uploaded.notes:
        st.caption(as_typed(note))
    for warning in uploaded.warnings:
        st.warning(as_typed(warning), icon=":material/warning:")
    return DocumentInput(uploaded.text, uploaded.name)


@st.cache_data(max_entries=16, show_spinner=False)
def _prepare(model_key: str, text: str, question: str | None, max_tokens: int, _loaded: LoadedModel) -> Document:
    return pipeline.prepare_document(_loaded, text, question, max_tokens=max_tokens)


def prepared_document(loaded: LoadedModel, text: str, question: str | None = None) -> Document:
    """pipeline.prepare_document, cached per model, text and question (InputError for empty input)."""
    srv = server()
    srv.check_document(text)
    with st.spinner("Tokenizing…"):
        return _prepare(loaded.key, text, question, srv.max_tokens(loaded), loaded)


@st.cache_data(max_entries=32, show_spinner=False)
def _read_question(model_key: str, question: str, document: str, _loaded: LoadedModel) -> pipeline.ReadQuestion:
    return pipeline.read_question(_loaded.tokenizer, question, document)


def read_question_input(key: str, loaded: LoadedModel, question: str, document: str | None) -> str:
    """The question as the model will be given it: read first (pipeline.read_question, cached per
    model, question and document, so a rerun does not read the document's words again) when the
    setting is on, with "Read as: …" and what changed; the question as typed when it is off. On by
    default for the embedded model; off for a model of your own, which gets what you typed unless
    you turn it on. The Question answering page and the lab's question answering both read this way."""
    embedded = loaded.source == pipeline.EMBEDDED
    on = st.checkbox(
        "Read the question first (capitals, letter slips)", embedded,
        key=f"{key}.read_question.{'embedded' if embedded else 'own'}", persist_state="session",
        help="Before the model sees it, a question in capitals is put in sentence case, "
             "words of the document written as the document writes them (names, acronyms), and a misspelt "
             "word is mended when exactly one best word is one slip away: a word of the document, or a "
             "word this model's tokenizer knows whole. Anything else is left as typed. The model was "
             "trained on questions in sentence case; clear this to give it your question exactly as typed. "
             "On by default for the embedded model, off for other models.")
    if not on or not question or document is None:
        return question
    read = _read_question(loaded.key, question, document, loaded)
    if read.changed:
        st.caption(f"Read as: **{as_typed(read.text)}** ({as_typed(read.describe())}).")
    return read.text


def document_status(loaded: LoadedModel, text: str | None, question: str | None = None) -> Document | None:
    """Tokenize, then show the token count against the model's limit and what was cut, if anything.
    Returns None (after showing why) when the input cannot be run; with no text after an upload's
    error (document_input showed it), nothing more."""
    if text is None:
        if not st.session_state.get(_INPUT_ERROR):
            st.info("Choose, paste or upload a document.")
        return None
    try:
        doc = prepared_document(loaded, text, question)
    except LedvizError as err:
        show_error(err)
        return None
    n_doc = len(doc.document_tokens())
    n_question = len(doc.question_tokens())
    n_special = doc.n_tokens - n_doc - n_question  # <s>, </s>: why the count is not the document's alone
    extra = " (" + (f"{n_question} of them the question, " if doc.question else "") + \
        f"{n_special} the model's markers <s> and </s>)"
    whole = (f"{count(n_doc + doc.truncated_tokens, 'token')} ({n_doc:,} of them read)" if doc.truncated_tokens
             else count(n_doc, "token"))  # the whole document's count, not what is left after the cut
    st.caption(f"{doc.n_tokens:,} tokens{extra} of the model's limit of {doc.limit:,}; "
               f"the document has {whole} and {count(len(doc.text), 'character')}.")
    message = doc.truncation_message()
    if message:
        st.warning(as_typed(message), icon=":material/content_cut:")  # it quotes the document's last words read
    return doc


GLOBAL_HELP = ("Global tokens attend to every token and every token attends to them; the rest only "
               "see a window of neighbours.")


def global_choice_options(prefix: str, kind: str, *, k: int = 64, positions: str = "0",
                          require_positions: bool = False) -> dict[str, Any] | None:
    """The widgets a global-attention choice needs (k, positions or a pattern), keyed `prefix` + name.

    Returns their values as keyword arguments of pipeline.global_attention_mask, or None after
    showing why they cannot be used. k takes 1 to pipeline.K_MAX: the input has no bounds of its own
    (the browser pulled a number outside them back without a word), so a number outside gets a message."""
    if kind == "every_k":
        value = st.number_input("k", value=k, step=1, key=f"{prefix}k", persist_state="session",
                                help=f"Every k-th token is global (0, k, 2k, ...): k from 1 to {pipeline.K_MAX:,}.")
        try:
            return {"k": pipeline.check_k(value)}
        except LedvizError as err:
            show_error(err)
            return None
    if kind == "positions":
        raw = st.text_input("Token positions (commas; ranges like 10-20)", positions, key=f"{prefix}positions",
                            persist_state="session", help="Whole numbers from 0 (the first token <s>) and ranges "
                                                          "with both ends included: '0, 10-20' is 0 and 10 to 20.")
        try:
            values = pipeline.parse_positions(raw)
        except LedvizError as err:
            show_error(err)
            return None
        if require_positions and not values:
            st.error("Give at least one token position.")
            return None
        if note := pipeline.repeated_positions_note(raw):  # "0,0,0" is 1 global token: said, not quietly
            st.caption(note)
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
    keep_valid(f"{key}.global", choices)
    kind = st.selectbox("Global attention on", choices, index=choices.index(default), key=f"{key}.global",
                        format_func=pipeline.GLOBAL_CHOICES.get, help=GLOBAL_HELP, persist_state="session")
    kwargs = global_choice_options(f"{key}.global_", kind)
    # what the choice needs (k, positions, pattern), for the run's settings (run_panel): its settings file says them
    st.session_state[f"{key}.global_options"] = kwargs or {}
    if kwargs is None:
        return kind, None
    if doc is None:
        return kind, None
    try:
        mask = pipeline.global_attention_mask(doc, kind, **kwargs)
    except LedvizError as err:
        show_error(err)
        return kind, None
    st.caption(global_count(kind, mask, kwargs.get("k")))
    return kind, mask


def global_count(kind: str, mask: torch.Tensor, k: int | None = None) -> str:
    """The caption under a global-attention choice: how many tokens it makes global (for every k-th token,
    of how many and which: pipeline.every_k_note), and where a pattern or a choice matched none, that the
    run is then one without global tokens."""
    n = int(mask.sum())
    if n and n == mask.numel():  # (k = 1, a pattern such as "."): the window then does nothing
        return (f"{count(n, 'global token')}: every token is global, so this is full attention (each token sees all "
                f"{n:,}), with full attention's cost, which grows with the square of the length.")
    if kind == "every_k" and k is not None:
        return sentence(pipeline.every_k_note(k, mask.shape[-1])) + "."
    if n or kind == "none":
        return f"{count(n, 'global token')}."
    return ("0 global tokens: no token matches this choice, so it runs as one without global tokens."
            if kind == "pattern" else "0 global tokens: this choice runs as one without global tokens.")


def lab_settings_state(got: dict) -> dict[str, Any]:
    """The Attention lab's session-state keys ("lab.*") for settings read by compare.read_lab_settings (what the
    file does not say is left as it is); set in a callback, before the lab's widgets are drawn."""
    state: dict[str, Any] = {}
    if got.get("task"):
        state["lab.task"] = got["task"]
    if got.get("question") is not None:
        state["lab.question"] = got["question"]
    settings = got["settings"]
    if len(settings) >= 2:
        state["lab.count"] = len(settings)
    for n, setting in enumerate(settings):
        key = f"lab.s{n}"
        state[f"{key}.kind"] = setting.kind
        state[f"{key}.kind_default"] = None  # a kind from the file is the user's: not replaced by a task's default
        if setting.kind == "every_k":
            state[f"{key}.k"] = setting.k
        elif setting.kind == "positions":
            state[f"{key}.positions"] = pipeline.format_positions(setting.positions)
        elif setting.kind == "pattern":
            state[f"{key}.pattern"] = setting.pattern
    for name, widget in (("reference", "reference"), ("max_new_tokens", "max_new"), ("generate", "generate")):
        if got.get(name) is not None:
            state[f"lab.{widget}"] = got[name]
    return state


LAB_MAX_NEW = 512  # the Attention lab's most output tokens (the study page opens a document in the lab with no more)


def most_new_tokens(loaded: LoadedModel | None, max_tokens: int) -> int:
    """The most new tokens a run may ask for: `max_tokens`, or fewer where the model's decoder has fewer
    positions (one is the decoder's start token)."""
    return max_tokens if loaded is None else min(max_tokens, loaded.config.max_decoder_position_embeddings - 1)


def new_tokens_input(where: Any, key: str, label: str, loaded: LoadedModel | None, max_tokens: int,
                     default: int) -> int:
    """The number of new tokens a run may write (a number input in `where`, e.g. a column): 1 to
    `most_new_tokens(loaded, max_tokens)`, starting at `default` (or the most, if fewer); a number kept
    from a model with a longer decoder is pulled back to this one's most."""
    most = most_new_tokens(loaded, max_tokens)
    st.session_state.setdefault(key, min(default, most))  # the start, set here only (not also as a value)
    clamp_state(key, 1, most)
    value = int(where.number_input(label, 1, most, key=key, persist_state="session",
                                   help=f"At most {most:,}" + (f": this model writes at most {most:,} tokens (its "
                                                               "decoder's positions)." if most < max_tokens else ".")))
    if most < max_tokens:  # the browser pulls a larger number back to `most` without a word: say it here
        where.caption(f"At most {most:,} for this model: its decoder's position limit.")
    if value == 1:  # one token is LED's start marker: a run would show no text
        where.caption(one_token_note(label))
    return value


def run_settings(key: str, doc: Document | None, *, default_global: str, label: str, max_tokens: int,
                 default_tokens: int) -> tuple[str, torch.Tensor | None, int, int]:
    """Global tokens and generation settings in one row; returns (global kind, mask, max new tokens, beams).
    The most new tokens is `max_tokens`, or fewer where the model's decoder has fewer positions (a
    caption under the input says so: the browser pulls a larger number typed in back to it)."""
    c1, c2, c3 = st.columns([2, 1, 1])
    with c1:
        kind, mask = global_tokens_input(f"{key}.settings", doc, default=default_global)
    max_new = new_tokens_input(c2, f"{key}.max_new", label, get_model(), max_tokens, default_tokens)
    beams = c3.number_input("Beams", 1, 8, 1, key=f"{key}.beams", persist_state="session",
                            help="1 = greedy decoding, streamed token by token.")
    return kind, mask, int(max_new), int(beams)


def attention_kept_input(key: str, loaded: LoadedModel) -> dict:
    """Which encoder layers' attention a run keeps: all, or the last only (for long documents on a
    server short of memory); returns pipeline.run keyword arguments."""
    n = loaded.config.encoder_layers
    if n < 2:
        return {}
    choice = st.selectbox("Attention kept", ["all", "last"], key=f"{key}.attention_layers", persist_state="session",
                          format_func={"all": f"all {n} encoder layers",
                                       "last": f"the last layer only (1/{n} of the memory)"}.get,
                          help="Keeping fewer layers' attention lets a long document fit in memory; the views "
                               "then show the kept layer.")
    if choice == "last":
        st.caption(kept_layers_note(loaded.config))
    return {"attention_layers": [n - 1]} if choice == "last" else {}


def kept_layers_note(config) -> str:
    """What "the last layer only" keeps: encoder layer n - 1, and the decoder's attention whole (its self- and
    cross-attention over the output's few tokens are small, so every decoder layer's is kept)."""
    n, d = config.encoder_layers, config.decoder_layers
    return (f"Kept: encoder layer {n - 1} only (the last of 0 to {n - 1}); the views show it. The decoder keeps "
            f"its self- and cross-attention for all {count(d, 'layer')} (small: the output is short).")


# ---------------------------------------------------------------------------------------------
# running the model: a job of the shared queue (pages.running) the page polls; Cancel leaves or stops it
# ---------------------------------------------------------------------------------------------

def _start_job(key: str, loaded: LoadedModel, doc: Document, mask: torch.Tensor, task: str,
               max_new_tokens: int, num_beams: int, settings: dict, generation: dict | None = None) -> None:
    """Queue the run on the server's shared queue (refused at once, with a message, when the queue
    is full or the run would not fit in memory)."""
    start_job(key, lambda: server().submit_run(
        owner=session_owner(), slot=key, loaded=loaded, doc=doc, global_mask=mask, settings=settings,
        task=task, max_new_tokens=max_new_tokens, num_beams=num_beams, **(generation or {})))


def run_panel(key: str, loaded: LoadedModel, doc: Document | None, global_mask: torch.Tensor | None, *,
              task: str, max_new_tokens: int, num_beams: int = 1, button_label: str = "Run",
              settings: dict | None = None, stream_label: str = "Output",
              generation: dict | None = None) -> RunResult | None:
    """The run and cancel buttons, the progress bar and the streamed output; returns the page's
    latest result (kept in session_state[f"{key}.result"], one per page) or None. `generation`
    holds further keyword arguments of pipeline.run (answer_from_document, ...).

    Why the page polls a job: a click on Cancel reruns the page, and the rerun's on_click callback
    cancels the job (see ledviz.runs). Other clicks (a layer, a tab) also rerun the page; the new
    run finds the job still going and goes on polling it. (st.fragment(run_every=...) could poll
    as well, but the whole page has to redraw when the result arrives anyway.)"""
    ss = st.session_state
    # the global choice's k, positions or pattern (global_tokens_input, under run_settings' key), as global_k, ...
    options = {f"global_{name}": value for name, value in (ss.get(f"{key}.settings.global_options") or {}).items()}
    settings = dict(settings or {}, **options, task=task, max_new_tokens=max_new_tokens, num_beams=num_beams,
                    **(generation or {}))
    running = job_running(key)
    ready = doc is not None and global_mask is not None
    fingerprint = run_fingerprint(loaded, doc, settings, global_mask) if ready else None
    b1, b2, b3 = st.columns([1.3, 1, 4], vertical_alignment="center")
    b1.button(button_label, type="primary", key=f"{key}.run", disabled=running or not ready,
              on_click=_start_job, width="stretch",
              args=(key, loaded, doc, global_mask, task, max_new_tokens, num_beams,
                    dict(settings, fingerprint=fingerprint), generation))
    b2.button("Cancel", key=f"{key}.cancel", disabled=not running, on_click=cancel_job, args=(key,),
              width="stretch", help="Leave the queue, or stop generating (the tokens so far are kept).")
    if num_beams > 1:
        b3.caption("Beam search shows the output when it ends (streaming needs 1 beam).")
    # its place in the shared queue while it waits, then a progress bar and the streamed tokens
    follow_job(key, lambda j: (f"**{stream_label}** (streaming): {as_typed(''.join(j.pieces))} ▌" if j.pieces
                               else None))
    if f"{key}.error" in ss:
        show_cancelled_or_error(ss[f"{key}.error"], show_error, "running the model")
    result: RunResult | None = kept_result(key)
    if result is not None and result.settings.get("fingerprint") != fingerprint:
        st.info(stale_note(button_label, ready), icon=":material/history:")
    return result


def precision_setting(key: str, doc: Document | None) -> str:
    """The run's precision for pipeline.run: "fast (bfloat16)" is offered for long documents on a CPU
    where bfloat16 is fast (ledviz.device); float32 stays the default, and the only choice elsewhere."""
    if doc is None or doc.n_tokens < device.LONG_DOCUMENT_TOKENS:
        return "float32"
    cap = device.cpu_capability()
    if not cap.fast_bfloat16:
        st.caption(f"Precision: float32. This CPU has {cap.detail}, so bfloat16 would be slower than float32 here.")
        return "float32"
    choice = st.radio("Precision", ["float32", "fast (bfloat16)"], horizontal=True, key=f"{key}.precision",
                      help=f"This CPU multiplies bfloat16 fast, with {cap.detail}: a long document encodes several "
                           "times faster. Attention probabilities stay within about 0.01 of float32's; the "
                           "output may differ now and then.")
    return "bfloat16" if choice.startswith("fast") else "float32"


def show_output(result: RunResult, prefix: str = "", setting: str | None = None) -> None:
    """The generated text (as typed: no Markdown, no links), or a note on why there is none (runs.empty_output_note;
    `setting` names the token limit's control, the fix of an output cut before its first word). `prefix`: e.g. '#### '."""
    if result.output_text:
        st.markdown(prefix + as_typed(result.output_text))
        if note := broken_note(result.output_tokens):
            st.caption(as_typed(note))
    else:
        st.markdown(f"_{as_typed(empty_output_note(result, setting))}_")


def run_summary(result: RunResult, setting: str | None = None, most: int | None = None) -> None:
    """One line of facts about a run (ledviz.runs.run_facts), and a warning when it stopped early, or
    ran to its token limit unfinished (ledviz.runs.cut_note: `setting` names the limit's control,
    `most` its largest value)."""
    st.caption(" · ".join(run_facts(result)))
    cut = cut_note(result, setting, most) if setting else None
    if cut:
        st.warning(cut, icon=":material/content_cut:")
    if result.settings.get("precision_note"):
        st.info(result.settings["precision_note"], icon=":material/memory:")
    if result.stopped_early:
        st.warning("Stopped early (cancelled): the output is what was generated until then.",
                   icon=":material/stop_circle:")
