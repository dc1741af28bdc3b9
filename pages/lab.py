"""Global-attention lab: one document under two to four global-attention choices, side by side.

Outputs and their log-likelihoods (each under its own setting, and the reference setting's output
scored under every setting, which is the comparable number), time and memory, and how far each
setting's encoder attention is from the reference's: per layer, and as a binned difference map for
the layers and heads chosen in the sidebar. The numbers come from `ledviz.compare`.
"""

from __future__ import annotations

import streamlit as st

from ledviz import compare, pipeline, plots
from ledviz.compare import MAX_SETTINGS, Setting
from ledviz.errors import LedvizError
from ledviz.pipeline import GLOBAL_CHOICES
from ledviz.runs import cut_note, run_fingerprint, stale_note
from pages.common import (
    as_typed,
    stack_toggle,
    lab_settings_state,
    count,
    LAB_MAX_NEW,
    current_view,
    document_input,
    document_status,
    global_count,
    global_choice_options,
    index_state,
    keep_valid,
    most_new_tokens,
    new_tokens_input,
    read_question_input,
    render_page,
    require_model,
    show_error,
    show_errors,
    show_output,
)
from pages.running import (
    cancel_job,
    follow_job,
    job_running,
    kept,
    server,
    session_owner,
    show_cancelled_or_error,
    start_job,
)
from pages.views import figure, plot

KEY = "lab"
# the output tokens a run may write unless the user says otherwise: as many as Summarize's default (the embedded
# model's free summary of a sample report takes 34-36 tokens; 32 cut every one of them, with a warning)
LAB_DEFAULT_NEW = 64
DEFAULTS = [dict(kind="first"), dict(kind="sentences"), dict(kind="every_k", k=64), dict(kind="none")]
TASKS = {"summarize": "Summarize", "qa": "Question answering"}


def panels(n: int, **kwargs) -> list:
    """n places for panels: side by side (st.columns), or one under another, each the page's width, when
    "Stack the panels" is on (for a narrow window, where four cards side by side cut their numbers and
    labels; Streamlit stacks columns by itself only below 640 px)."""
    if st.session_state.get(f"{KEY}.stacked"):
        return [st.container() for _ in range(n)]
    return st.columns(n, **kwargs)


# ---------------------------------------------------------------------------------------------
# the settings
# ---------------------------------------------------------------------------------------------

def default_kind(n: int, task: str) -> str:
    """Setting n's default kind of global tokens: for question answering, setting 1 (the reference by
    default) puts them on the question, as the Question answering page does, so the other choices
    are compared with how the model is meant to read a question (with the summary's defaults alone
    every answer was the model's guess without the question in view)."""
    return "question" if n == 0 and task == "qa" else DEFAULTS[n]["kind"]


def setting_input(n: int, doc, task: str, question: str | None) -> Setting | None:
    """One setting's widgets (in the current column); the Setting, or None after showing why it
    cannot run (its widgets stay, so it can be fixed in place)."""
    default = DEFAULTS[n]
    choices = [c for c in GLOBAL_CHOICES if c != "question" or task == "qa"]
    key = f"{KEY}.s{n}"
    keep_valid(f"{key}.kind", choices)
    # the default follows the task however the lab was opened (on question answering already, or switched
    # to it): a kind still at the default put in place for another task takes this task's; one chosen stays.
    # Through the state, not index=: a widget given both has Streamlit warn on the page
    in_place, wanted = st.session_state.get(f"{key}.kind_default"), default_kind(n, task)
    if st.session_state.get(f"{key}.kind", in_place) == in_place:
        st.session_state[f"{key}.kind"] = wanted
    st.session_state[f"{key}.kind_default"] = wanted
    kind = st.selectbox("Global attention on", choices, key=f"{key}.kind", format_func=GLOBAL_CHOICES.get,
                        persist_state="session")
    options = global_choice_options(f"{key}.", kind, k=default.get("k", 64), positions="0, 10-20",
                                    require_positions=True)
    if options is None:
        return None
    if kind == "question" and not question:
        st.info("The question's tokens: type a question above.", icon=":material/help:")
        return None
    spec: dict = {"kind": kind, **options}
    try:
        setting = Setting.of(spec)
        if doc is not None:
            mask = setting.mask(doc)
            st.caption(global_count(kind, mask, options.get("k")))
    except LedvizError as err:
        show_error(err)
        return None
    return setting


def setting_labels(settings: list[Setting | None]) -> list[str]:
    """'Setting n: label' for each setting (labels made unique when all are valid), or 'Setting n:
    (to fix)' for one that cannot run."""
    valid = [s for s in settings if s is not None]
    unique = iter(compare.unique_labels(valid))
    names = [next(unique) if s is not None else "(to fix)" for s in settings]
    return [f"Setting {n + 1}: {name}" for n, name in enumerate(names)]


def _fingerprint(loaded, doc, settings, task, max_new, reference, generate) -> str | None:
    return run_fingerprint(loaded, doc, dict(settings=settings, task=task, max_new_tokens=int(max_new),
                                             reference=int(reference), generate=bool(generate)))


# ---------------------------------------------------------------------------------------------
# the results
# ---------------------------------------------------------------------------------------------

SUMMARY_CONFIG = {
    "setting": st.column_config.TextColumn("setting"),
    "global_tokens": st.column_config.NumberColumn("global tokens"),
    "output": st.column_config.TextColumn("output", width="large"),
    "output_tokens": st.column_config.NumberColumn("output tokens"),
    "log_likelihood": st.column_config.NumberColumn("own log-lik.", format="%.2f",
                                                    help="log p(its own output | document) under this setting"),
    "logprob_per_token": st.column_config.NumberColumn("own / token", format="%.3f"),
    "reference_log_likelihood": st.column_config.NumberColumn("ref. log-lik.", format="%.2f",
                                                              help="log p(the reference output | document) under "
                                                                   "this setting: comparable across settings"),
    "reference_logprob_per_token": st.column_config.NumberColumn("ref. / token", format="%.3f"),
    "mean_tv_vs_reference": st.column_config.NumberColumn("attention distance", format="%.3f",
                                                          help="mean over layers, heads and tokens of the total "
                                                               "variation between this setting's attention rows "
                                                               "and the reference's (0 = same, 1 = disjoint)"),
    "encode_s": st.column_config.NumberColumn("encode s", format="%.2f"),
    "generate_s": st.column_config.NumberColumn("generate s", format="%.2f"),
    "score_s": st.column_config.NumberColumn("score s", format="%.2f"),
    "total_s": st.column_config.NumberColumn("total s", format="%.2f"),
    "scores_mb": st.column_config.NumberColumn("scores MB", format="%.1f",
                                               help="float32 attention probabilities the encoder computes "
                                                    "(all layers)"),
    "attention_mb": st.column_config.NumberColumn("kept MB", format="%.1f",
                                                  help="attention kept for the views (float16, band + global form)"),
    "rss_growth_mb": st.column_config.NumberColumn("RSS growth MB", format="%.0f",
                                                   help="growth of the process's peak memory during this "
                                                        "setting's run"),
}


def outputs_section(comp: compare.Comparison, most: int | None = None) -> None:
    """Each setting's output and likelihoods, side by side; a setting's output cut at its token
    limit says so (runs.cut_note, as Summarize and QA: `most` is "Max output tokens"'s largest value)."""
    ref = comp.results[comp.reference]
    cols = panels(len(comp.results))
    for n, (col, item) in enumerate(zip(cols, comp.results)):
        with col.container(border=True):
            st.markdown(f"**{as_typed(item.label)}**" + (" · reference" if n == comp.reference else ""))
            st.caption(count(len(item.global_positions), "global token"))
            if comp.generated and item.run is not None:
                show_output(item.run)
                if cut := cut_note(item.run, "Max output tokens", most):
                    st.warning(cut, icon=":material/content_cut:")
                own, refll = item.log_likelihood, item.reference_log_likelihood
                # side by side in a card only where two or one cards share the page: in three or four the two
                # numbers were cut ("-145…")
                m1, m2 = st.columns(2) if len(comp.results) <= 2 or st.session_state.get(f"{KEY}.stacked") \
                    else (st.container(), st.container())
                m1.metric("own log-lik.", "–" if own is None else f"{own:.2f}",
                          help="of this setting's own output; outputs differ, so these are not comparable")
                if n == comp.reference:
                    delta, color = "reference", "off"
                elif refll is None or ref.reference_log_likelihood is None:
                    delta, color = None, "normal"
                else:
                    delta, color = f"{refll - ref.reference_log_likelihood:+.2f}", "normal"
                m2.metric("ref. log-lik.", "–" if refll is None else f"{refll:.2f}", delta, delta_color=color,
                          delta_arrow="off" if n == comp.reference else "auto",
                          help="of the reference output under this setting: comparable across settings; the "
                               "change is against the reference setting's own")
            else:
                st.caption("Encoder only: no output was generated.")


def distance_section(comp: compare.Comparison) -> None:
    """Per layer, how far each setting's attention is from the reference's."""
    table = comp.layer_table()
    if table.empty:
        st.info("No encoder layers to compare.")
        return
    fig = figure(plots.layer_distance_figure, table, comp.labels, comp.reference)
    plot(fig, key=f"{KEY}.layers")
    st.caption("Total variation ½·Σⱼ|aᵢⱼ − bᵢⱼ| between a token's attention rows under the two settings, averaged "
               "over tokens and heads: 0 means the same attention, 1 attention on disjoint keys. Computed from "
               "the band + global form, never an N × N map.")


def difference_section(comp: compare.Comparison) -> None:
    """The binned maps of two settings and their difference, for the sidebar's layers and heads."""
    labels = comp.labels
    if len(labels) < 2:
        st.info("Add a second setting to see where the maps differ.")
        return
    first = next(iter(comp.results[0].layers.values()))
    view = current_view().clip(len(comp.results[0].layers), first.num_heads)
    c1, c2, c3 = st.columns([2, 2, 1])
    other = next(n for n in range(len(labels)) if n != comp.reference)
    index_state(f"{KEY}.diff_a", len(labels), other)
    index_state(f"{KEY}.diff_b", len(labels), comp.reference)
    a = c1.selectbox("Setting A", range(len(labels)), format_func=labels.__getitem__, key=f"{KEY}.diff_a")
    b = c2.selectbox("Setting B", range(len(labels)), format_func=labels.__getitem__, key=f"{KEY}.diff_b")
    bins = c3.select_slider("Bins", [16, 32, 64, 128, 256], value=64, key=f"{KEY}.diff_bins")
    diff = comp.difference(a, b, view.layers, None if view.heads is None else list(view.heads), bins)
    where = view.label().replace(" (max)", " (mean)")
    st.caption(f"Showing {where} (choose layers and heads in the sidebar; heads are averaged). Each cell: the mean "
               f"attention a query of the row's bin pays to the keys of the column's bin. Mean distance "
               f"A vs B: **{diff.mean_tv:.3f}**.")
    top = max(float(diff.binned_a.max()), float(diff.binned_b.max()), 1e-9)
    spread = max(float(diff.binned.abs().max()), 1e-9)
    m1, m2, m3 = panels(3)
    with m1:
        plot(figure(plots.binned_map_figure, diff.binned_a, diff.edges, f"A: {labels[a]}", zmax=top,
                    global_positions=comp.results[a].global_positions), key=f"{KEY}.map_a")
    with m2:
        plot(figure(plots.binned_map_figure, diff.binned_b, diff.edges, f"B: {labels[b]}", zmax=top,
                    global_positions=comp.results[b].global_positions), key=f"{KEY}.map_b")
    with m3:
        plot(figure(plots.binned_map_figure, diff.binned, diff.edges, "A − B (red: more in A)", diverging=True,
                    zmax=spread), key=f"{KEY}.map_diff")
    # where along the document the rows differ, with both settings' global tokens marked
    marks = [(comp.results[n].global_positions, plots.SETTING_COLORS[n], f"global in {labels[n]}") for n in (a, b)]
    fig = figure(plots.token_distance_figure, diff.per_token, marks)
    plot(fig, key=f"{KEY}.per_token")


def results_section(comp: compare.Comparison, most: int | None = None) -> None:
    st.subheader("Outputs")
    outputs_section(comp, most)
    st.subheader("Summary")
    st.dataframe(comp.summary, hide_index=True, column_config=SUMMARY_CONFIG)
    df = comp.summary
    c1, c2, c3 = panels(3)
    with c1:
        if comp.generated:
            plot(figure(plots.bars_figure, df, {"reference_log_likelihood": "reference output",
                                                "log_likelihood": "own output"}, "Log-likelihood", "log p"),
                 key=f"{KEY}.ll")
        else:
            st.info("Outputs and likelihoods need generation (tick “Generate outputs”).")
    with c2:
        plot(figure(plots.bars_figure, df, {"encode_s": "encode", "generate_s": "generate",
                                            "score_s": "score reference"}, "Time", "seconds", stacked=True),
             key=f"{KEY}.time")
    with c3:
        plot(figure(plots.bars_figure, df, {"scores_mb": "scores computed (fp32)", "attention_mb": "kept (fp16)"},
                    "Attention memory", "MB"), key=f"{KEY}.memory")
    st.caption(as_typed(comp.timing_note()), help="The times are wall-clock seconds: other work on the machine "
               "(other users' runs, other programs) takes cores from the model and lengthens them.")
    st.subheader("How different is the attention?")
    with show_errors("comparing the attention maps"):
        distance_section(comp)
    with show_errors("drawing the difference map"):
        difference_section(comp)


# ---------------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------------

def _start_compare(loaded, doc, settings: list[Setting], task: str, max_new: int, reference: int,
                   generate: bool) -> None:
    """Compare's on_click: the comparison goes into the server's shared queue (as Summarize and QA
    runs do), refused at once when the queue is full or it would not fit in memory; the kept value
    is (fingerprint, Comparison), one per user in the server's bounded ResultStore."""
    fp = _fingerprint(loaded, doc, settings, task, max_new, reference, generate)
    start_job(KEY, lambda: server().submit_comparison(
        owner=session_owner(), slot=KEY, loaded=loaded, doc=doc, settings=settings, task=task,
        max_new_tokens=int(max_new), reference=int(reference), generate=bool(generate),
        wrap=lambda comp: (fp, comp)))


def _load_settings_file() -> None:
    """The settings file's on_change: its settings go into the lab's widgets (before they are drawn), or its
    error is kept to be shown (compare.read_lab_settings names what is wrong)."""
    ss = st.session_state
    upload = ss.get(f"{KEY}.settings_file")
    ss.pop(f"{KEY}.settings_file_error", None)
    ss.pop(f"{KEY}.settings_file_note", None)
    if upload is None:
        return
    try:
        got = compare.read_lab_settings(upload.getvalue(), f"“{upload.name}”")
    except LedvizError as err:
        ss[f"{KEY}.settings_file_error"] = err
        return
    ss.update(lab_settings_state(got))
    n = len(got["settings"])
    ss[f"{KEY}.settings_file_note"] = (f"Loaded {n} settings from “{upload.name}”." if n > 1
                                       else f"Loaded setting 1 from the run's settings file “{upload.name}”.")


def settings_file(task: str, settings: list[Setting | None], reference: int, max_new: int, generate: bool,
                  question: str | None) -> None:
    """Save the settings as JSON, or load a file of them (the lab's own, or a Summarize / QA run's)."""
    ss = st.session_state
    with st.expander("Save or load these settings (JSON)"):
        c1, c2 = st.columns([1, 2])
        valid = all(s is not None for s in settings)
        data = compare.lab_settings_json(task=task, settings=settings, reference=reference, max_new_tokens=max_new,
                                         generate=generate, question=question) if valid else ""
        c1.download_button("Download the settings", data=data, file_name="ledviz-lab-settings.json",
                           mime="application/json", key=f"{KEY}.settings_download", disabled=not valid,
                           on_click="ignore", help=None if valid else "Fix the settings marked (to fix) first.")
        c2.file_uploader("Load settings (the lab's file, or a run's Settings (JSON) from Summarize or QA)",
                         type=["json"], key=f"{KEY}.settings_file", on_change=_load_settings_file)
        if f"{KEY}.settings_file_error" in ss:
            show_error(ss[f"{KEY}.settings_file_error"])
        elif ss.get(f"{KEY}.settings_file_note"):
            st.caption(as_typed(ss[f"{KEY}.settings_file_note"]))


def main() -> None:
    st.title("Global-attention lab")
    st.caption("Run one document under two to four choices of global tokens and compare what the model writes, "
               "how likely it finds one common output, what it costs, and how its encoder attention changes.")
    loaded = require_model()
    source = document_input("doc")
    c1, c2 = st.columns([2, 3])
    task = c1.segmented_control("Task", list(TASKS), format_func=TASKS.get, default="summarize", required=True,
                                key=f"{KEY}.task", persist_state="session")
    question = None
    if task == "qa":
        with c2:
            asked = st.text_input("Question", key=f"{KEY}.question", persist_state="session",
                                  placeholder="Ask about a fact in the document").strip()
            question = read_question_input(KEY, loaded, asked, None if source is None else source.text) or None
        if question is None:
            st.info("Type a question for question answering.")
        st.caption("Answers here are the model's own, unconstrained: the lab shows what each choice of global "
                   "tokens does to the model itself (the Question answering page keeps answers to a span of "
                   "the document by default).")
    else:  # the Summarize page keeps each fact's value to the document: its summary can differ from these
        st.caption("Summaries here are the model's own, unconstrained: the lab shows what each choice of global "
                   "tokens does to the model itself (the Summarize page keeps each fact's value to the document by "
                   "default, so its summary of the same document can differ).")
    doc = document_status(loaded, None if source is None else source.text, question) \
        if task != "qa" or question else None

    st.subheader("Settings")
    g1, g2, g3, g4 = st.columns(4)
    n_settings = g1.number_input("How many settings", 2, MAX_SETTINGS, 3, key=f"{KEY}.count",
                                 persist_state="session")
    max_new = new_tokens_input(g2, f"{KEY}.max_new", "Max output tokens", loaded, LAB_MAX_NEW, LAB_DEFAULT_NEW)
    generate = g3.checkbox("Generate outputs", True, key=f"{KEY}.generate", persist_state="session",
                           help="Off: encoder only (attention, time, memory), much faster.")
    stack_toggle("Stack the panels", key=f"{KEY}.stacked",
                 help="One panel under another, each the page's width, instead of side by side: for a narrow "
                      "window, where side-by-side settings, outputs and maps are cramped (on at first on a phone).")
    cols = panels(int(n_settings))
    settings: list[Setting | None] = []
    for n, col in enumerate(cols):
        with col.container(border=True):
            st.markdown(f"**Setting {n + 1}**")
            settings.append(setting_input(n, doc, task, question))
    valid = [s for s in settings if s is not None]
    names = setting_labels(settings)
    # once, under the cards: the demo model reads many global tokens as a question. In a container that is always
    # there, so the elements below keep their places when the note comes and goes (an open expander below
    # would otherwise be drawn anew, closed, on switching the task)
    note_slot = st.container()
    if task == "summarize" and doc is not None:
        notes = [pipeline.demo_summary_global_note(loaded, s.mask(doc)) for s in valid]
        if note := next((n for n in notes if n), None):
            note_slot.info(note, icon=":material/info:")
    index_state(f"{KEY}.reference", len(settings))
    reference = g4.selectbox("Reference", range(len(settings)), key=f"{KEY}.reference", format_func=names.__getitem__,
                             help="Its output is scored under every setting, and every map is compared with its map.")
    # the question as typed (the read one is the model's input: loaded back, it would be read again and shown so)
    settings_file(task, settings, reference, max_new, generate, st.session_state.get(f"{KEY}.question") or None
                  if task == "qa" else None)
    ready = doc is not None and len(valid) == len(settings)
    running = job_running(KEY)
    b1, b2, _ = st.columns([1.3, 1, 4], vertical_alignment="center")
    b1.button("Compare", type="primary", key=f"{KEY}.run", disabled=running or not ready, width="stretch",
              on_click=_start_compare, args=(loaded, doc, valid, task, max_new, reference, generate))
    b2.button("Cancel", key=f"{KEY}.cancel", disabled=not running, on_click=cancel_job, args=(KEY,),
              width="stretch", help="Leave the queue, or stop the comparison (nothing is kept of a stopped one).")
    follow_job(KEY)  # its place in the shared queue while it waits, then a progress bar

    ss = st.session_state
    if f"{KEY}.error" in ss:
        show_cancelled_or_error(ss[f"{KEY}.error"], show_error, "comparing the settings")
    stored = kept(KEY)
    if stored is None:
        return
    fingerprint, comp = stored
    if not ready or fingerprint != _fingerprint(loaded, doc, valid, task, max_new, reference, generate):
        st.info(stale_note("Compare", ready, results=True), icon=":material/history:")
    st.divider()
    results_section(comp, most_new_tokens(loaded, LAB_MAX_NEW))


render_page(main, "the lab")
