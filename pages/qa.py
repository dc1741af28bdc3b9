"""Question answering: a question about a document, with global attention on the question tokens;
the answer, where in the document it came from (cross-attention of the answer tokens, and where
the answer's text occurs), and where the question tokens looked."""

import streamlit as st

from ledviz import answering, pipeline, plots, provenance
from ledviz.errors import LedvizError
from ledviz.text import token_range
from ledviz.views import View
from pages.common import (
    as_typed,
    attention_kept_input,
    document_input,
    document_status,
    most_new_tokens,
    read_question_input,
    render_page,
    require_model,
    run_panel,
    run_settings,
    run_summary,
    sample_questions,
    show_error,
    show_errors,
    show_output,
)
from pages.views import (
    attention_views,
    cross_attention_view,
    cross_map,
    faithfulness_marks,
    figure,
    highlighted_document,
    passages,
    plot,
    result_view,
    show_passages,
    token_row,
)

KEY = "qa"
MAX_TOKENS = 256  # the most answer tokens asked for (fewer where the model's decoder has fewer positions)


def _use_suggestion() -> None:
    """A suggested question clicked: it becomes the question. The pills are required, so a click on the
    selected pill does nothing in the browser (a double click sent as one message used to select and clear
    it in one step, and the question box stayed empty); a cleared pill that still arrives is a click on
    the suggestion shown, so each click of a pill sets its question: the same suggestion clicked again
    after an edit brings it back, and the second click of a fast double click, which reaches the server
    with the question box's value from before the first click, keeps the question (the box's stale value
    would otherwise win). The callback runs after the browser's values are applied."""
    choice = st.session_state.get(f"{KEY}.suggested") or st.session_state.get(f"{KEY}.suggestion_shown")
    if choice:
        st.session_state[f"{KEY}.question"] = choice
        st.session_state[f"{KEY}.suggestion_shown"] = choice


def question_input(sample: str | None) -> str:
    """The question, with the sample document's suggested questions one click away; the pill of the
    question in the box, if it is a suggestion, shows selected (none for a question of one's own)."""
    suggestions = sample_questions().get(sample, []) if sample else []
    if suggestions:
        asked = st.session_state.get(f"{KEY}.question")
        shown = asked if asked in suggestions else None
        st.session_state[f"{KEY}.suggested"] = st.session_state[f"{KEY}.suggestion_shown"] = shown
        st.pills("Suggested questions", suggestions, key=f"{KEY}.suggested", on_change=_use_suggestion, wrap=True,
                 required=True)
    return st.text_input("Question", key=f"{KEY}.question", persist_state="session",
                         placeholder="Ask about a fact in the document").strip()


def answer_source(result, loaded) -> None:
    """Cross-attention of the answer tokens on the document, and where the answer's text occurs."""
    cm = cross_map(result)
    source = None if cm is None else provenance.answer_source(result, cm, loaded.tokenizer.all_special_ids,
                                                              passages(result))
    if source is None:
        st.info("The model gave no answer tokens to trace back.")
        return
    kept = bool(result.settings.get("answer_from_document"))
    if provenance.declined(result):
        st.info(as_typed(answering.decline_note(result.answer, kept)), icon=":material/block:")
    elif source.matches:
        s = source.matches[0][0]
        first, last = source.match_tokens or (None, None)
        where = token_range(first, last) if source.match_tokens else "beyond the part the model read"
        found = (f"The answer occurs {len(source.matches):,}× in the document; first at character {s:,} ({where}). "
                 + ("The passage with the most cross-attention contains it." if source.in_top_passage else
                    "It is not in the passage with the most cross-attention."))
        if kept:
            # found by construction: no success to report, only where the constrained span lies
            st.info("The answer was kept to a span of the document (constrained decoding), so it is in the "
                    "document whether or not it answers the question. " + found, icon=":material/input:")
        else:  # a fact about the text, not a verdict: an off-topic question can be answered from the document
            st.info("The model's free answer occurs word for word in the document (which does not make it the "
                    "answer to the question). " + found, icon=":material/find_in_page:")
    else:
        st.info("The answer does not occur word for word in the document.", icon=":material/search_off:")
    if not kept and not provenance.declined(result):  # a span-kept answer is made of the document's tokens
        faithfulness_marks(result, provenance.output_pieces(result, loaded.tokenizer), what=None)
    show_passages(source.passages, "Passages the answer tokens attended to most")
    highlighted_document(result, source.weights, outline=source.matches, label="cross-attention of the answer",
                         height=360)


def _span(answer) -> str:
    """The weighed span as shown: "…" after one that ran to the token limit without ending."""
    return (answer.span_text or "") + ("…" if answer.unfinished else "")


def decline_weighing(result) -> None:
    """How the kept answer was chosen: where a span begun inside a name was begun at the name's
    first word, and the best span weighed against the decline (ledviz.answering), with the margin;
    nothing for a run without either (no decline rule, or a free answer)."""
    answer = result.answer
    if start := answering.start_explanation(answer, as_typed):  # the start rule (ledviz.answering)
        st.caption(start)
    if answer is None or answer.margin() is None:
        return
    rule = answer.rule
    unit = answering.SCORE_NAMES[rule.score]
    if answer.answerable is not None:  # a trained answerability head decided (ledviz.answerability)
        decision, weighed = answering.head_explanation(answer, _span(answer), as_typed)
        st.caption(decision)
        plot(figure(plots.answerability_figure, answer.answerable, rule.head.threshold, answer.declined),
             key=f"{KEY}.answerable")
        st.caption(weighed)
        span, decline = answer.scores()
        plot(figure(plots.decline_figure, _span(answer), span, decline, None, unit, answer.declined,
                    percent=answering.percent if rule.score == "first" else None), key=f"{KEY}.decline")
        return
    st.caption(answering.margin_explanation(answer, _span(answer), as_typed))
    span, decline = answer.scores()
    plot(figure(plots.decline_figure, _span(answer), span, decline, rule.margin, unit, answer.declined),
         key=f"{KEY}.decline")


def question_looked(result) -> None:
    """Where the question tokens looked: the mean of their attention rows over the document."""
    q = result.document.question_tokens()
    if not q:
        st.info("This run has no question tokens.")
        return
    view = result_view(result)
    on_doc, _ = provenance.question_attention(result, [token_row(result, i, "from", view) for i in q])
    # a share of the attention is a share of the mean rows (each sums to 1); max rows do not sum to 1
    mean_view = View(view.layer, view.heads, "mean")
    _, share = provenance.question_attention(result, [token_row(result, i, "from", mean_view) for i in q])
    globals_ = set(result.global_positions)
    if not all(i in globals_ for i in q):
        st.caption("Some question tokens are not global: they see only their window, which barely reaches "
                   "the document. Give them global attention to see them read it all.")
    st.caption(f"{share:.0%} of the question tokens' attention goes to the document"
               + (" (averaged over the heads and layers shown; the map below shows their max)."
                  if view.reduce == "max" else ".")
               + (" ▼ in red: the global tokens." if result.global_positions else ""))
    plot(figure(plots.profile_figure, on_doc, value_name="attention", height=170,
                global_positions=result.global_positions),
         key=f"{KEY}.question_profile")
    highlighted_document(result, on_doc, label="attention from the question", height=300)


def main() -> None:
    st.title("Question answering")
    st.caption("LED reads the question and the document together, with global attention on the question "
               "tokens: they see the whole document, and every document token sees them.")
    loaded = require_model()
    source = document_input("doc")
    if source is not None and (note := pipeline.demo_model_note(loaded, source.text)):
        st.info(note, icon=":material/info:")  # the embedded model on a text unlike its training reports
    asked = question_input(source.sample if source is not None else None)
    if note := pipeline.demo_question_note(loaded):
        st.caption(note)
    question = read_question_input(KEY, loaded, asked, None if source is None else source.text)
    if source is not None and not question:
        doc = None
        try:  # an empty document says so at once, as on Summarize, not only once a question is typed
            pipeline.check_document_text(source.text)
            st.info("Type a question (or pick a suggested one).")
        except LedvizError as err:
            show_error(err)
    else:
        doc = document_status(loaded, None if source is None else source.text, question)
    kind, mask, max_new, beams = run_settings(KEY, doc, default_global="question", label="Max answer tokens",
                                              max_tokens=MAX_TOKENS, default_tokens=24)
    if doc is not None and mask is not None and (note := pipeline.demo_global_note(loaded, doc, mask)):
        st.info(note, icon=":material/public:")
    from_document = st.checkbox(
        "Answer with a span of the document", True, key=f"{KEY}.from_document", persist_state="session",
        help="Constrained decoding: each answer token must continue a passage of the document, so the answer "
             "is always found in it word for word. The model still chooses the passage. Clear it to see the "
             "model's unconstrained answer (it can slip on a digit or mix two names).")
    kept = attention_kept_input(KEY, loaded)
    result = run_panel(KEY, loaded, doc, mask, task="qa", max_new_tokens=max_new, num_beams=beams,
                       button_label="Answer", stream_label="Answer",
                       settings=dict(global_tokens=kind, document=None if source is None else source.label,
                                     **({"question_asked": asked} if asked != question else {})),
                       generation=dict(answer_from_document=from_document, **kept))
    if result is None:
        return
    st.divider()
    st.subheader("Answer")
    show_output(result, "#### ", setting="Max answer tokens")
    asked_as = result.settings.get("question_asked")
    st.caption(f"Question: {as_typed(result.document.question)}"  # as typed: no Markdown (`$`, `_`, `*`)
               + (f" (asked as: {as_typed(asked_as)})" if asked_as else ""))
    run_summary(result, "Max answer tokens", most_new_tokens(loaded, MAX_TOKENS))
    with show_errors("showing how the answer was chosen"):
        decline_weighing(result)
    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("Where the answer came from")
        with show_errors("tracing the answer back to the document"):
            answer_source(result, loaded)
    with right:
        st.subheader("Where the question looked")
        with show_errors("following the question's attention"):
            question_looked(result)
    st.subheader("Encoder attention")
    first_question_token = (result.document.question_tokens() or [0])[0]
    attention_views(result, loaded, f"{KEY}.views", default_token=first_question_token,
                    extra={"Cross-attention": lambda: cross_attention_view(result, loaded, f"{KEY}.cross")},
                    wide=True)


render_page(main, "the Question answering page")
