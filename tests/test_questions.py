"""Reading a user's question before the model sees it (ledviz.questions, pipeline.read_question):
shouted questions re-cased with the document's names kept, letter slips mended, everything else
left as typed."""

from __future__ import annotations

import gc
import weakref

import pytest

from ledviz import InputError
from ledviz.questions import Change, Vocabulary, is_shouted, read_question, tokenizer_vocabulary

DOC = ("Project Report: Quietlantern\n\n"
       "The project lead is Rohan Bennett, who joined from NASA last year. The approved budget is 7,500 credits. "
       "The site is Brigde Point, near the river. Bennett reviewed the budget on Friday.")
# a vocabulary as a tokenizer's whole-word tokens would give it (no piece counts: every word may be mended)
VOCAB = Vocabulary(["who", "is", "the", "project", "lead", "leader", "budget", "bridge", "where", "what",
                    "site", "crew", "craw", "list", "painted", "CEO", "report"])


def test_a_shouted_question_is_re_cased_keeping_the_documents_names():
    read = read_question("WHO IS ROHAN BENNETT'S DEPUTY AT NASA?", DOC, VOCAB)
    assert read.text == "Who is Rohan Bennett's deputy at NASA?"  # names and acronyms as the document has them
    assert read.changes == (Change("case", "WHO IS ROHAN BENNETT'S DEPUTY AT NASA?", read.text),)
    assert "capitals" in read.describe()
    # a word the document does not have takes the tokenizer's casing ("CEO"), else lower case
    assert read_question("WHO IS THE CEO OF ACME?", DOC, VOCAB).text == "Who is the CEO of acme?"
    # the title line "Project Report: Quietlantern" does not make "report" a name (the tokenizer knows it in
    # lower case), but a name only the title has keeps the title's casing
    assert read_question("WHAT DOES THE REPORT SAY?", DOC, VOCAB).text == "What does the report say?"
    assert read_question("WHO LEADS QUIETLANTERN?", DOC, VOCAB).text == "Who leads Quietlantern?"
    assert is_shouted("WHO IS THE PROJECT LEAD?") and is_shouted("WHO IS THE PROJECT LEAD, Rohan?")
    assert not is_shouted("Who is the CEO?") and not is_shouted("CEO") and not is_shouted("")


def test_a_letter_slip_is_mended_towards_the_one_best_known_word():
    read = read_question("Who is the projcet lead?", DOC, VOCAB)
    assert read.text == "Who is the project lead?"
    assert read.changes == (Change("spelling", "projcet", "project"),)
    assert read.describe() == "“projcet” read as “project”"
    # a word of the document is the best: "Benett" is one letter short of the document's "Bennett"
    assert read_question("What did Benett review?", DOC, VOCAB).text == "What did Bennett review?"
    # a shouted question with a slip: re-cased, then mended
    read = read_question("WHAT IS THE APPROVED BUGDET?", DOC, VOCAB)
    assert read.text == "What is the approved budget?" and [c.kind for c in read.changes] == ["case", "spelling"]
    # the first letter is kept: "Where" for "Whre", with the capital it had
    assert read_question("Whre is the site?", DOC, VOCAB).text == "Where is the site?"


def test_words_that_are_known_odd_names_or_ambiguous_are_left_as_typed():
    # "Brigde" is one swap from the known word "bridge", but the document spells its place so
    for q in ("Where is Brigde Point?", "WHERE IS BRIGDE POINT?"):
        read = read_question(q, DOC, VOCAB)
        assert "Brigde Point" in read.text and not [c for c in read.changes if c.kind == "spelling"], read
    # a capitalized word that the document lacks is taken for a name: never mended to a tokenizer word
    assert read_question("Who painted the Mona Lisa?", DOC, VOCAB).changes == ()
    # "crsw" is one neighbouring key from both "crew" and "craw": no single best word, left alone
    assert read_question("How big is the crsw?", DOC, VOCAB).text == "How big is the crsw?"
    # short words, and words one slip from nothing known, stay as typed
    assert read_question("Who is teh lead?", DOC, VOCAB).changes == ()
    assert read_question("Who is the zyxwv?", DOC, VOCAB).changes == ()


def test_a_normal_question_and_an_empty_one_are_unchanged():
    for q in ("Who is the project lead?", "What is the approved budget?", "project lead?", "Who is the CEO?"):
        read = read_question(q, DOC, VOCAB)
        assert read.text == q and read.changes == () and not read.changed and read.describe() == ""
    for q in ("", "   "):
        read = read_question(q, DOC, VOCAB)
        assert read.text == q and not read.changed
    assert read_question("Who is the lead?", "", VOCAB).text == "Who is the lead?"  # no document: nothing known from it


def test_the_vocabulary_is_the_tokenizers_whole_words():
    from ledviz.demo import data
    from ledviz.pipeline import default_model_dir

    tok = data.load_tokenizer(default_model_dir())
    vocab = tokenizer_vocabulary(tok)
    assert tokenizer_vocabulary(tok) is vocab  # built once per tokenizer
    assert len(vocab) > 500
    for key in sorted(vocab.casings)[::40]:  # each is one token of the tokenizer after a space
        for form in vocab.casings[key]:
            assert len(tok(" " + form, add_special_tokens=False)["input_ids"]) == 1, form
    # a word the tokenizer splits in two is taken for a real word it lacks, and never mended
    assert vocab.pieces("state") < 3 and read_question("State the budget.", DOC, vocab).changes == ()
    # the cache does not keep a tokenizer alive
    other = data.load_tokenizer(default_model_dir())
    tokenizer_vocabulary(other)
    gone = weakref.ref(other)
    del other
    gc.collect()
    assert gone() is None


def test_the_pipeline_reads_questions_with_the_models_tokenizer():
    from ledviz.demo import data
    from ledviz.pipeline import load_model, prepare_document, read_question as pipeline_read

    loaded = load_model(None)
    text = data.sample_documents()["Project report (about 1K tokens)"]
    read = pipeline_read(loaded.tokenizer, "WHO IS THE PROJECT LEAD?", text)
    assert read.text == "Who is the project lead?" and read.changes[0].kind == "case"
    read = pipeline_read(loaded.tokenizer, "Who is the projcet lead?", text)
    assert read.text == "Who is the project lead?" and read.describe() == "“projcet” read as “project”"
    doc = prepare_document(loaded, text, question=read.text)
    assert doc.question == "Who is the project lead?"
    assert pipeline_read(loaded.tokenizer, "Who is the project lead?", text).changes == ()
    with pytest.raises(InputError, match="question is missing"):
        pipeline_read(loaded.tokenizer, None, text)
