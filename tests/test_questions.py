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


def test_a_missed_last_letter_is_mended_only_towards_a_word_of_the_document():
    # "budge" lacks the last letter of the document's "budget" (a missed last letter was never read before)
    assert read_question("What is the approved budge?", DOC, VOCAB).text == "What is the approved budget?"
    assert read_question("whats the budge", DOC, VOCAB).changes == (Change("spelling", "budge", "budget"),)
    # towards a word only the tokenizer knows ("leader" for "leade"), nothing: it may be a word of its own
    assert read_question("Who is the leade?", DOC + " The lead is Rohan.", VOCAB).text == "Who is the leade?"
    # an ending that makes another word ("Name" -> "Named", "plan" -> "plans") or a short word: left as typed
    named = DOC + " The bridge is named Brigde. Two plans were drawn. The fund was set up."
    for q in ("Name the site.", "Which plan?", "Which fun?"):
        assert read_question(q, named, VOCAB).changes == (), q
    # an ordinary slip still wins: "projet" is "project" with an inner letter missed
    assert read_question("Who is the projet lead?", DOC, VOCAB).text == "Who is the project lead?"


def test_words_that_are_known_odd_names_or_ambiguous_are_left_as_typed():
    # "Brigde" is one swap from the known word "bridge", but the document spells its place so
    for q in ("Where is Brigde Point?", "WHERE IS BRIGDE POINT?"):
        read = read_question(q, DOC, VOCAB)
        assert "Brigde Point" in read.text and not [c for c in read.changes if c.kind == "spelling"], read
    # a capitalized word that the document lacks is taken for a name: never mended to a tokenizer word
    assert read_question("Who painted the Mona Lisa?", DOC, VOCAB).changes == ()
    # "crsw" is one neighbouring key from both "crew" and "craw": no single best word, left alone
    assert read_question("How big is the crsw?", DOC, VOCAB).text == "How big is the crsw?"
    # short words (but a common one's last two letters swapped, below), and words one slip from nothing
    # known, stay as typed; the first letter is never the slip
    assert read_question("Who is hte lead?", DOC, VOCAB).changes == ()
    assert read_question("Who is the zyxwv?", DOC, VOCAB).changes == ()


def test_a_three_letter_swap_is_mended_only_towards_a_common_word_of_the_document():
    read = read_question("Who is teh lead?", DOC, VOCAB)  # "the" is far more than 0.5% of DOC's words
    assert read.text == "Who is the lead?" and read.changes == (Change("spelling", "teh", "the"),)
    assert read_question("TEH BUDGET?", DOC, VOCAB).text == "The budget?"
    # a document in which "the" is one word in 301 (under 0.5%): "teh" is left as typed
    rare = "The " + "budget " * 300
    assert read_question("Who is teh lead?", rare, VOCAB).changes == ()
    # only the last two letters swapped back, and never a word either list knows
    assert read_question("Who is eht lead?", DOC, VOCAB).changes == ()
    assert read_question("Who is the lead?", DOC, Vocabulary(["teh"])).changes == ()


def test_a_two_piece_slip_is_mended_only_towards_a_document_phrase_with_its_neighbour():
    two = Vocabulary(VOCAB.casings, pieces=lambda w: 2)  # every unknown word split in two by the tokenizer
    read = read_question("who is teh projcet leed", DOC, two)
    assert read.text == "who is the project lead"  # the document writes "project lead"
    assert [(c.before, c.after) for c in read.changes] == [("teh", "the"), ("projcet", "project"), ("leed", "lead")]
    assert read_question("Who is the project leed?", DOC, two).text == "Who is the project lead?"
    assert read_question("Who is the leed, project?", DOC, two).changes == ()  # not side by side in the question
    # "leed" is a vowel from "lead", but "he lead" / "lead the" are not the document's: left as typed
    assert read_question("Did he leed the budget?", DOC, two).changes == ()
    # a word the tokenizer splits into three pieces is left to the one-slip rule (which finds no single word)
    three = Vocabulary(VOCAB.casings, pieces=lambda w: 3)
    assert read_question("Who is the project leed?", DOC, three).changes == ()
    # two words of the document would each make a phrase: no single best word, left alone
    doc = DOC + " The project lede is short."  # "lede": "leed" with its last two letters swapped
    assert read_question("Who is the project leed?", doc, two).changes == ()


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


def test_a_question_with_three_slips_is_read_whole_and_answered_right():
    """A stranger's "who is teh projct leed" on the project report: all three words mended (a
    three-letter swap, a slip of three pieces, a two-piece slip in the document's phrase "project
    lead"), and the app's pipeline answers the lead."""
    from ledviz.demo import data
    from ledviz.pipeline import load_model, prepare_document, read_question as pipeline_read, run

    loaded = load_model(None)
    title = "Project report (about 1K tokens)"
    text, lead = data.sample_documents()[title], data.sample_examples()[title].facts["lead"]
    read = pipeline_read(loaded.tokenizer, "who is teh projct leed", text)
    assert read.text == "who is the project lead"
    assert read.describe() == "“teh” read as “the”; “projct” read as “project”; “leed” read as “lead”"
    result = run(loaded, prepare_document(loaded, text, question=read.text), task="qa", max_new_tokens=24,
                 answer_from_document=True)
    assert data.exact_match(result.output_text, lead), (result.output_text, lead)
    # an unrelated two-piece word ("state", a slip from the document's "stage") next to words the
    # document never writes beside "stage" stays as typed
    assert pipeline_read(loaded.tokenizer, "Is the budget state approved?", text).changes == ()


def test_questions_asked_without_a_slip_are_read_as_asked():
    """A sample of the validation seed's questions (never the test seed's): each family but the
    shouted and the slipped ones, and the plain reports' and unseen values' suggested questions,
    given to the model exactly as asked."""
    from ledviz.demo import data, evaluate
    from ledviz.pipeline import load_model, read_question as pipeline_read

    tok = load_model(None).tokenizer
    sets = evaluate.question_sets(data.VALID_SEED, 4, (1000, 2000, 4000))
    asked = [ex for name, exs in sets.items() if name not in ("upper", "typos", "unanswerable") for ex in exs]
    assert len(asked) == 36
    for ex in asked:
        read = pipeline_read(tok, ex.question, ex.document)
        assert read.text == ex.question and not read.changed, read
