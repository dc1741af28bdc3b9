"""Corpus study: open the results folder of `python -m ledviz.study run`, see its tables with 95%
intervals and its figures, and open any of its documents in the Attention lab with a chosen setting
next to the study's reference. Everything shown is computed by `ledviz.study`; this page renders it.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from ledviz.errors import LedvizError
from ledviz.pipeline import format_positions
from ledviz.study import load_study, parse_setting
from ledviz.study.report import METRIC_NAMES, Study, figures, wide
from pages.common import (LAB_MAX_NEW, as_typed, count, get_model, most_new_tokens, render_page, show_error, show_errors,
                          stack_toggle)
from pages.views import plot
from pages.running import server

KEY = "study"
LAB = "pages/lab.py"


def _stamp(path: str) -> tuple:
    """What changes when a running study writes: the part files and the manifest."""
    p = Path(os.path.expanduser(path))
    parts = sorted((p / "rows").glob("part-*.parquet")) if (p / "rows").is_dir() else []
    manifest = p / "manifest.json"
    return len(parts), parts[-1].name if parts else "", manifest.stat().st_mtime if manifest.exists() else 0


@st.cache_data(max_entries=4, show_spinner="Reading the study…")
def _load(path: str, stamp: tuple, stacked: bool = False) -> tuple[Study, dict]:
    study = load_study(path)
    return study, figures(study, stacked=stacked) if not study.rows.empty else {}


def lab_state(study: Study, doc_index: int, setting_index: int, loaded) -> dict:
    """The Attention lab's session-state keys that open document `doc_index` with the study's
    setting `setting_index` (setting 1) next to its reference (setting 2, the lab's reference)."""
    record = study.record(doc_index)
    spec = study.manifest["spec"]
    chosen = [setting_index] + ([study.reference] if setting_index != study.reference else [])
    if len(chosen) == 1:  # the reference alone: the lab compares two at least; add "none" (or "first")
        other = "none" if parse_setting(study.settings[setting_index]).kind != "none" else "first"
        settings = [parse_setting(study.settings[setting_index]), parse_setting(other)]
    else:
        settings = [parse_setting(study.settings[n]) for n in chosen]
    limit = most_new_tokens(loaded, LAB_MAX_NEW)
    state = {"doc.source": "Paste", "doc.pasted": record.text, "lab.task": study.task,
             "lab.count": 2, "lab.reference": 1, "lab.max_new": max(1, min(int(spec["max_new_tokens"]), limit)),
             "lab.generate": True}
    if study.task == "qa":
        state["lab.question"] = record.question or ""
    for n, s in enumerate(settings):
        state[f"lab.s{n}.kind"] = s.kind
        # the study's kind is not a task's default: a lab visited before on summarize had left "first" as setting
        # 1's default in place, and a question-answering study's "first" was then replaced by "question"
        state[f"lab.s{n}.kind_default"] = None
        if s.kind == "every_k":
            state[f"lab.s{n}.k"] = int(s.k)
        elif s.kind == "positions":
            state[f"lab.s{n}.positions"] = format_positions(s.positions)
        elif s.kind == "pattern":
            state[f"lab.s{n}.pattern"] = s.pattern
    return state


def open_in_lab(study: Study) -> None:
    """Pick a document and a setting; the button opens them in the lab."""
    rows = study.rows
    metric = study.primary_metric()
    docs = rows.drop_duplicates("doc_index")[["doc_index", "doc_id"]]
    ref = rows[rows["setting_index"] == study.reference].set_index("doc_index")[metric]
    names = {int(i): f"{d}  ·  {METRIC_NAMES.get(metric, metric)} under the reference: "
             + ("–" if i not in ref.index or ref[i] != ref[i] else f"{ref[i]:.3f}")
             for i, d in zip(docs["doc_index"], docs["doc_id"])}
    c1, c2 = st.columns([3, 2])
    doc_index = c1.selectbox("Document", list(names), format_func=names.get, key=f"{KEY}.doc")
    labels = study.labels
    setting_index = c2.selectbox("Setting", list(range(len(labels))), format_func=lambda n: labels[n],
                                 key=f"{KEY}.setting", index=min(1, len(labels) - 1) if study.reference == 0 else 0)
    pair = rows[(rows["doc_index"] == doc_index) & (rows["setting_index"] == setting_index)]
    if not pair.empty:
        row = pair.iloc[0]
        if isinstance(row["error"], str) and row["error"]:
            st.warning(f"This setting could not run on this document: {as_typed(row['error'])}")
        else:
            st.markdown(f"**Output under {as_typed(labels[setting_index])}:** "
                        + (as_typed(row["output"]) if row["output"] else "_(empty)_"))
            if row["truncated_tokens"]:
                st.caption(f"The study cut this document to fit the model ({count(int(row['truncated_tokens']), 'token')} cut).")
    with_ref = "" if setting_index == study.reference else f" next to the reference ({as_typed(labels[study.reference])})"
    # the click fills the lab's widgets in a callback and is kept as a request in the session (a
    # button's own value lasts one run, and a run may be handed back to app.py's frame before it
    # gets here: see pages.common.stay_in_app_frame)
    st.button(f"Open in the Attention lab{with_ref}", key=f"{KEY}.open", type="primary", on_click=_open_in_lab,
              args=(study, int(doc_index), int(setting_index)))
    if st.session_state.pop(f"{KEY}.to_lab", False):
        st.switch_page(LAB)


def _open_in_lab(study: Study, doc_index: int, setting_index: int) -> None:
    for key, value in lab_state(study, doc_index, setting_index, get_model()).items():
        st.session_state[key] = value
    st.session_state[f"{KEY}.to_lab"] = True


def main() -> None:
    st.title("Corpus study")
    st.caption("Where to put global attention, over a whole corpus: open the results folder of "
               "`python -m ledviz.study run` to see each setting's metrics with 95% intervals, the paired "
               "differences against the reference setting, and the attention per layer.")
    if not server().settings.local_folders:  # a deployment setting: no typed path is read here
        st.info("This server does not read folders on its disk (local folders are off in its deployment "
                "settings), so it cannot open a study's results folder. Run the app on your own machine to "
                "open one.", icon=":material/folder_off:")
        return
    path = st.text_input("Results folder", key=f"{KEY}.path", persist_state="session",
                         placeholder="runs/my-study",
                         help="The --out folder of `python -m ledviz.study run` (on the machine running this app).")
    if not path.strip():
        st.info("Give a study's results folder. Make one with, for example: "
                "`python -m ledviz.study run --corpus demo:100 --setting first --setting none --out runs/demo`")
        return
    try:
        study, figs = _load(path.strip(), _stamp(path.strip()), bool(st.session_state.get(f"{KEY}.stacked")))
    except LedvizError as err:
        show_error(err)
        return
    st.caption(as_typed(study.status() + "."))  # it names the settings, the model and the folder
    if study.rows.empty:
        st.info("This study has no rows yet: its run has not finished a document. Run it (again) to fill it.")
        return
    skipped = study.manifest.get("skipped") or []
    if skipped:
        st.warning(f"Skipped when the study was run: {count(len(skipped), 'corpus line')}: "
                   + as_typed("; ".join(skipped[:3])))
    errors = int(study.rows["error"].notna().sum())
    if errors:
        st.warning(f"Settings that could not run on their document: {count(errors, 'row')} (see the error column).")
    st.subheader("Per setting: mean [95% interval]")
    st.dataframe(wide(study.summary()), key=f"{KEY}.summary")
    st.subheader(f"Paired differences against the reference ({as_typed(study.labels[study.reference])})")
    diff = wide(study.differences(), "mean_difference")
    if diff.empty:
        st.info("One setting only: nothing to compare.")
    else:
        st.dataframe(diff, key=f"{KEY}.diff")
    stack_toggle("Stack the panels", key=f"{KEY}.stacked",
                 help="Each figure's panels one under another, each the page's width, instead of side by side: for "
                      "a narrow window, where four panels side by side cannot be read (on at first on a phone).")
    for name, fig in figs.items():
        with show_errors(f"drawing the {name} figure"):
            plot(fig, key=f"{KEY}.fig.{name}")
    st.subheader("Open a document in the lab")
    with show_errors("choosing a document"):
        open_in_lab(study)


render_page(main, "the study page")
