"""What the last stranger's walk noticed and left, fixed: repeated global positions are said, not
quietly merged; a question the app cannot read gets a hint that fits the document; the sidebar says
what "window 64" means; the Model page says where a failed load's reason is; an empty checkpoint
folder is named by the most basic thing it lacks."""

from __future__ import annotations

from app_driver import assert_clean, open_app, paste


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
