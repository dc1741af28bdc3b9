"""What the last stranger's walk noticed and left, fixed: repeated global positions are said, not
quietly merged; a question the app cannot read gets a hint that fits the document; the sidebar says
what "window 64" means; the Model page says where a failed load's reason is; an empty checkpoint
folder is named by the most basic thing it lacks."""

from __future__ import annotations

from app_driver import assert_clean, load_folder, open_app, paste


# ---- global positions listed more than once -----------------------------------------------------

def test_repeated_positions_are_found_with_how_often():
    from ledviz.pipeline import parse_positions, repeated_positions, repeated_positions_note

    assert parse_positions("0,0,0") == [0]
    assert repeated_positions("0,0,0") == [(0, 0, 3)]
    assert repeated_positions("0-10, 5-15") == [(5, 10, 2)]
    assert repeated_positions("1,1,2,2, 9") == [(1, 2, 2)]
    assert repeated_positions("0-3, 2-5, 3") == [(2, 2, 2), (3, 3, 3)]
    assert repeated_positions("0, 10-20") == [] and repeated_positions_note("0, 10-20") is None
    assert repeated_positions_note("0,0,0").startswith("0 was listed 3 times: each position is one global token")
    assert repeated_positions_note("0-10, 5-15").startswith("5-10 were listed twice")
    assert "(and 1 more repeat)" in repeated_positions_note("1 1 3 3 5 5 7 7")


def test_positions_0_0_0_say_they_are_one_global_token():
    at = open_app("pages/summarize.py")
    paste(at)
    at.selectbox(key="summarize.settings.global").set_value("positions").run()
    at.text_input(key="summarize.settings.global_positions").set_value("0,0,0").run()
    assert_clean(at)
    captions = [c.value for c in at.caption]
    assert any(c.startswith("0 was listed 3 times") for c in captions), captions
    assert "1 global token." in captions
    at.text_input(key="summarize.settings.global_positions").set_value("0, 5").run()
    assert not any("was listed" in c for c in at.caption)


# ---- a question with no words: a hint that fits the document ------------------------------------

def test_the_hint_for_a_question_with_no_words_fits_the_document():
    from types import SimpleNamespace

    from ledviz.demo.data import report_kind, sample_documents
    from ledviz.pipeline import EMBEDDED, question_hint

    samples = sample_documents()
    assert [report_kind(t) for t in samples.values()] == ["project", "company", "expedition"]
    assert report_kind("Dear aunt, the garden is fine.") is None
    demo, other = SimpleNamespace(source=EMBEDDED), SimpleNamespace(source="hub")
    project, company, expedition = samples.values()
    assert "“Who is the project lead?”" in question_hint(demo, project)
    assert "“Who is the chief executive?”" in question_hint(demo, company)
    assert "“Who is the expedition leader?”" in question_hint(demo, expedition)
    for loaded, text in [(demo, "Dear aunt, the garden is fine."), (other, project), (other, "A letter.")]:
        hint = question_hint(loaded, text)
        assert "e.g." not in hint and "project" not in hint, hint


def test_qa_page_question_with_no_words_gets_a_hint_for_this_document():
    at = open_app("pages/qa.py")
    at.text_input(key="qa.question").set_value("?!?").run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "has no words" in errors[0] and "project lead" in errors[0], errors
    at.selectbox(key="doc.sample").set_value("Company report (about 2.5K tokens)").run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "chief executive" in errors[0] and "project" not in errors[0], errors
    at.segmented_control(key="doc.source").set_value("Paste").run()
    at.text_area(key="doc.pasted").set_value("Dear aunt, the garden is fine and the roses are out. " * 3).run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "has no words" in errors[0] and "project" not in errors[0], errors
    assert "ask about something it says" in errors[0], errors


# ---- the sidebar's window, in tokens each side -----------------------------------------------------

def test_window_words_say_tokens_each_side():
    from ledviz.pipeline import window_words

    assert window_words([64, 64]) == "window 64 (32 tokens each side)"
    assert window_words([32, 64]) == "windows 32 to 64 (16 to 32 tokens each side, by layer)"
    assert window_words([512] * 12) == "window 512 (256 tokens each side)"


def test_the_sidebar_says_what_the_window_means():
    at = open_app()
    summary = [c.value for c in at.sidebar.caption if "layers ×" in c.value]
    assert summary and "windows 32 to 64 (16 to 32 tokens each side, by layer)" in summary[0], summary


# ---- the Model page after a failed load says why, on the page ------------------------------------

def test_the_model_page_says_why_the_load_failed_not_only_in_the_sidebar(tmp_path):
    """Below 640 px wide the sidebar starts closed: "the sidebar says why" sent a phone user looking."""
    at = open_app("pages/model.py")
    load_folder(at, tmp_path / "no-such-folder")
    assert not at.exception
    warnings = [w.value for w in at.main.warning]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("The model asked for last could not be loaded. There is no folder"), warnings
    assert "no\\-such\\-folder" in warnings[0] or "no-such-folder" in warnings[0], warnings
    assert "sidebar" not in warnings[0] and "the embedded demo model" in warnings[0], warnings


# ---- a checkpoint folder lacking files: the most basic thing missing first -------------------------

def test_a_checkpoint_folder_names_the_most_basic_thing_missing(tmp_path):
    import pytest

    from ledviz.errors import CheckpointError
    from ledviz.loading import checkpoint_folder_problem
    from ledviz.pipeline import load_config, load_model

    folder = tmp_path / "ck"
    folder.mkdir()
    holds = "a checkpoint folder holds config.json, the weights (model.safetensors or pytorch_model.bin"
    said = checkpoint_folder_problem(str(folder))
    assert said.startswith(f"the folder {str(folder)!r} is empty: {holds}"), said
    for load in (load_model, load_config):  # (load_model said "no LED tokenizer" for an empty folder)
        with pytest.raises(CheckpointError, match="is empty: a checkpoint folder holds config.json"):
            load(str(folder))
    (folder / "tokenizer.json").write_text("{}")
    assert checkpoint_folder_problem(str(folder)).startswith(
        f"there is no config.json in the folder {str(folder)!r} (it holds tokenizer.json): {holds}")
    with pytest.raises(CheckpointError, match="there is no config.json"):
        load_model(str(folder))
    (folder / "config.json").write_text('{"model_type": "led"}')
    assert checkpoint_folder_problem(str(folder)).startswith("there are no weights in the folder")
    with pytest.raises(CheckpointError, match="there are no weights in the folder"):
        load_model(str(folder))
    (folder / "tokenizer.json").unlink()
    (folder / "model.safetensors").write_bytes(b"")
    assert checkpoint_folder_problem(str(folder)).startswith("there is no tokenizer in the folder")
    (folder / "vocab.json").write_text("{}")
    (folder / "merges.txt").write_text("")
    assert checkpoint_folder_problem(str(folder)) is None


def test_an_empty_folder_given_in_the_sidebar_is_called_empty(tmp_path):
    from app_driver import messages

    (tmp_path / "ck").mkdir()
    at = open_app()
    load_folder(at, tmp_path / "ck")
    assert not at.exception
    errors = sorted(set(messages(at, "error")))
    assert len(errors) == 1 and errors[0].startswith(f"The folder '{tmp_path / 'ck'}' is empty: a checkpoint "
                                                     "folder holds config.json"), errors
    assert "tokenizer" in errors[0] and "weights" in errors[0], errors


def test_stacking_starts_on_for_a_phone_s_browser():
    """Streamlit does not tell the server the window's width: the side-by-side maps and panels started that
    way on a phone too (titles running into each other at 400 px) until the user found "Stack the ...". A
    phone's User-Agent now starts them stacked; any other browser (or none) side by side."""
    from pages.common import is_phone_agent

    phones = ["Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Version/17.0 Mobile/15E148 Safari/604.1",
              "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 "
              "Mobile Safari/537.36"]
    desktops = ["Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36",
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:130.0) Gecko/20100101 Firefox/130.0", "", None]
    assert all(is_phone_agent(a) for a in phones)
    assert not any(is_phone_agent(a) for a in desktops)
    # an AppTest run has no browser behind it: side by side, and the user's choice is kept
    at = open_app("pages/how_it_works.py")
    assert at.toggle(key="hiw.stacked").value is False
    at.toggle(key="hiw.stacked").set_value(True).run()
    assert at.toggle(key="hiw.stacked").value is True and not at.exception
