"""ledviz.sentences: the one sentence rule, and its four users agreeing on it (analysis.sentence_spans,
the "sentences" global-attention choice, AttentionFocus's sentence of a token, questions.DocumentWords)."""

from __future__ import annotations

import pytest

from ledviz import analysis, pipeline, questions
from ledviz.sentences import Sentences, sentence_ends, sentence_spans
from ledviz.tokenization import token_bytes


def split(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


@pytest.mark.parametrize("text, sentences", [
    # terminators: a run of them, closing quotes and brackets after, then a blank or the end
    ("The cat sat. It purred! Why? ", ["The cat sat.", "It purred!", "Why?"]),
    ("Why?! Yes... ok\n\nno", ["Why?!", "Yes...", "ok", "no"]),
    ('He said "Go!" Then he left.', ['He said "Go!"', "Then he left."]),
    ("He said “Go.” She left (quietly.) Done.", ["He said “Go.”", "She left (quietly.)", "Done."]),
    ("She said 'fine.' He nodded.", ["She said 'fine.'", "He nodded."]),
    # no blank after: no end
    ("end.Next one", ["end.Next one"]),
    ("Visit example.com today. Then rest.", ["Visit example.com today.", "Then rest."]),
    # numbers
    ("Pi is 3.14 and the sum 1,234.56 here. Next.", ["Pi is 3.14 and the sum 1,234.56 here.", "Next."]),
    ("Version 2.0.1 ships in 2030. It is late.", ["Version 2.0.1 ships in 2030.", "It is late."]),
    # initials
    ("J. R. R. Tolkien wrote it. U. Bui read it.", ["J. R. R. Tolkien wrote it.", "U. Bui read it."]),
    ("The chief is Salma K. Bui. Visit San Kampala.", ["The chief is Salma K. Bui.", "Visit San Kampala."]),
    ("É. Zola wrote. Ö. Pamuk too.", ["É. Zola wrote.", "Ö. Pamuk too."]),
    # abbreviations, as written
    ("Dr. Smith met Mr. Li and Mrs. Ode. They talked.", ["Dr. Smith met Mr. Li and Mrs. Ode.", "They talked."]),
    ("Fruit, e.g. apples, i.e. food, etc. and more. Next.", ["Fruit, e.g. apples, i.e. food, etc. and more.",
                                                               "Next."]),
    ("Us vs. them, cf. page two. Next.", ["Us vs. them, cf. page two.", "Next."]),
    ("(Dr. Smith) agreed. Yes.", ["(Dr. Smith) agreed.", "Yes."]),
    ("I saw the dr. Then I left.", ["I saw the dr.", "Then I left."]),  # case matters
    ("I ate a fig. Then I left.", ["I ate a fig.", "Then I left."]),
    # numbered ones only before a digit
    ("See No. 5 and Fig. 3 here. The answer was No. Then it was yes.",
     ["See No. 5 and Fig. 3 here.", "The answer was No.", "Then it was yes."]),
    # a closing mark after the abbreviation's stop: the sentence ends
    ("(see the work of Dr.) Next one.", ["(see the work of Dr.)", "Next one."]),
    # the documented trade-off: one of these at a real sentence end does not end it
    ("He moved to the U.S. Then he left.", ["He moved to the U.S. Then he left."]),
    # line breaks, whatever kind
    ("Title\nBody text\r\nMore\u2028Last", ["Title", "Body text", "More", "Last"]),
    ("  Lead in.  \n\n  Next  ", ["Lead in.", "Next"]),
    # nothing
    ("", []),
    (" \n\t \n", []),
    # unicode text
    ("Überall Ärger. Ça va? 東京は大きい。 Oui.", ["Überall Ärger.", "Ça va?", "東京は大きい。 Oui."]),
])
def test_the_rule(text, sentences):
    assert split(text) == sentences


def test_every_character_but_a_blank_is_in_exactly_one_sentence():
    text = ' "Dr. J. Okafor" met U. Bui.\n\nThey paid 1,234.56 (approx.)! Did they? Yes...  done\r\nEnd'
    spans = sentence_spans(text)
    owners = [sum(a <= c < b for a, b in spans) for c in range(len(text))]
    assert all(n == 1 if not ch.isspace() else n <= 1 for n, ch in zip(owners, text))
    assert all(not text[a].isspace() and not text[b - 1].isspace() for a, b in spans)
    assert sentence_ends(text) == [28, 29, 59, 69, 76, 82, 83]  # each stop, each line break; not the end of the text


def test_positions_begins_and_the_sentence_holding_a_position():
    text = 'One. "Two" is (here).\n  (Three) x. '
    s = Sentences(text)
    assert [text[a:b] for a, b in s.spans] == ["One.", '"Two" is (here).', "(Three) x."]
    assert s.starts == [0, 5, 24]
    assert [s.index_at(p) for p in (0, 3, 4, 5, 20, 21, 23, 24, 33, 34)] == [0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    assert s.begins(0) and s.begins(6) and s.begins(25)  # after the opening quote / bracket
    assert not s.begins(2) and not s.begins(11) and not s.begins(16)  # "e", "is", "here" inside
    assert not s.begins(4)  # the blank after "One."
    assert Sentences("").index_at(0) is None and not Sentences("").begins(0) and len(Sentences("  ")) == 0


def test_bytes_are_refused_with_the_fix():
    with pytest.raises(TypeError, match="decode bytes first"):
        Sentences(b"One. Two.")


# ---------------------------------------------------------------------------------------------
# its users agree
# ---------------------------------------------------------------------------------------------

TEXT = ("Annual Report\nThe chief is Salma K. Bui. Dr. Okafor met J. R. Smith on 3.5 June, e.g. at noon! "
        '"Why?" asked the board. The budget is 1,234.56 (approx.) Its lead (Mr. Li) agreed.\n'
        "Überall Ärger. In the U.S. Then more.\n\nEnd")


@pytest.fixture(scope="module")
def loaded():
    return pipeline.load_model()  # the embedded demo model


def test_analysis_reads_the_modules_sentences():
    assert analysis.sentence_spans is sentence_spans
    offsets = [(a, b) for a, b in sentence_spans(TEXT)]
    groups = analysis.token_groups(TEXT, offsets, unit="sentence")
    assert groups.spans == sentence_spans(TEXT) and groups.index.tolist() == list(range(len(offsets)))


@pytest.mark.parametrize("question", [None, "Who is the chief?"])
def test_the_global_sentences_choice_marks_each_sentences_first_token(loaded, question):
    doc = pipeline.prepare_document(loaded, TEXT, question)
    mask = pipeline.global_attention_mask(doc, "sentences")[0].tolist()
    marked = [i for i in doc.document_tokens() if mask[i]]
    firsts = []
    for a, _ in sentence_spans(TEXT):  # the first document token whose characters reach the sentence's first
        firsts.append(next(i for i in doc.document_tokens() if doc.offsets[i][0] <= a < doc.offsets[i][1]))
    assert marked == firsts and len(firsts) == 10
    assert mask[0] == 1 and sum(mask) == len(firsts) + 1  # and the <s> token, nothing else (no question token)
    for word in ("Bui", "Okafor", "Smith", "June", "at noon", "Li", "Then"):  # the old rule's starts: no more
        at = TEXT.index(" " + word) + 1
        assert not any(mask[i] for i in doc.document_tokens() if doc.offsets[i][0] <= at < doc.offsets[i][1]), word


def test_attention_focus_reads_the_same_sentences_from_the_tokens_bytes(loaded):
    """PieceSentences (AttentionFocus.sentence_mask) on a document's token bytes: the sentence of each
    token is its sentence_spans sentence, in non-blank bytes; multi-byte characters and a token
    split inside one ('東' is three bytes over two tokens) included."""
    tok = loaded.tokenizer
    text = TEXT + " 東京. Ça."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    pieces = [token_bytes(p) for p in tok.convert_ids_to_tokens(ids)]
    assert b"".join(pieces).decode() == text
    assert any(len(p) and not _whole_utf8(p) for p in pieces)  # a token that is part of a character
    found = pipeline.PieceSentences(pieces)
    sentences = Sentences(text)
    char_of_byte = [k for k, c in enumerate(text) for _ in c.encode()]  # the character each byte is part of
    seen = set()
    for j in range(len(pieces)):
        k = sentences.index_at(char_of_byte[len(b"".join(pieces[:j]))])
        a, b = sentences.spans[k]
        assert found.of(j) == (_solid_of(text, a), _solid_of(text, b)), (j, pieces[j])
        seen.add(k)
    assert seen == set(range(len(sentences)))
    assert pipeline.PieceSentences([]).of(0) == (0, 0) and pipeline.PieceSentences([b" ", b"\n"]).of(1) == (0, 0)


def _whole_utf8(piece: bytes) -> bool:
    try:
        piece.decode()
        return True
    except UnicodeDecodeError:
        return False


def _solid_of(text: str, char: int) -> int:
    """Non-blank bytes before character `char`."""
    return sum(b not in b" \t\n\r\x0b\x0c" for b in text[:char].encode())


def test_document_words_take_a_sentences_first_word_by_the_same_rule():
    """A word that begins a sentence says nothing of its casing; one after an initial or an
    abbreviation is inside its sentence, and so is one after a stop with no blank."""
    words = questions.DocumentWords('Gold is here. "Silver" too.\nCopper wins. Ask Dr. Tin and J. Lead.end.Zinc')
    assert "gold" not in words.casing and "silver" not in words.casing and "copper" not in words.casing
    assert words.casing["tin"] == "Tin" and words.casing["lead"] == "Lead" and words.casing["zinc"] == "Zinc"
    assert "ask" not in words.casing  # "Copper wins. Ask": a first word
    doc = questions.DocumentWords(TEXT)
    for word in ("Salma", "Bui", "Okafor", "Smith", "June", "Li", "Ärger"):  # inside sentences
        assert doc.casing[word.lower()] == word
    for word in ("Why", "Its", "Überall"):  # first words (after a quote; after "(approx.)"; a line's)
        assert word.lower() not in doc.casing, word
