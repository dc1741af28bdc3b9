"""What a stranger's walk through the Model, Lab and Corpus study pages found: loading messages (a config
that does not fit the weights, a damaged Hub cache, a typo'd Hub id or folder), global-attention inputs
(every k, position ranges), the lab's settings file and timing note, and a damaged study folder."""

from __future__ import annotations

import json
import os

import pytest
import torch

import ledviz
from conftest import make_reference
from app_driver import load_folder, run_lab_encoder_only
from browser_fixtures import browser, server  # noqa: F401 (fixtures)
from hub_cache import _hub_cache
from ledviz import loading
from ledviz.pretrained import config_mismatches


# ---- loading ----------------------------------------------------------------------------------------

def test_config_mismatches_lists_every_field_by_key():
    cfg = ledviz.LEDConfig(vocab_size=50, d_model=16, encoder_layers=2, decoder_layers=1, encoder_ffn_dim=32,
                           decoder_ffn_dim=32, max_encoder_position_embeddings=64, max_decoder_position_embeddings=32,
                           encoder_attention_heads=2, decoder_attention_heads=2, attention_window=4)
    state = {"led.shared.weight": torch.zeros(40, 16), "final_logits_bias": torch.zeros(1, 40),
             "led.encoder.embed_positions.weight": torch.zeros(128, 16),
             "led.encoder.layers.0.fc1.weight": torch.zeros(24, 16),
             "led.encoder.layers.2.fc1.weight": torch.zeros(24, 16),
             "led.decoder.layers.0.fc1.weight": torch.zeros(32, 16)}
    lines = config_mismatches(cfg, state)
    assert lines == ["encoder_ffn_dim: 32 in config.json, 24 in the weights",
                     "encoder_layers: 2 in config.json, 3 in the weights",
                     "max_encoder_position_embeddings: 64 in config.json, 128 in the weights",
                     "vocab_size: 50 in config.json, 40 in the weights"]
    fitting = {"led.shared.weight": torch.zeros(50, 16), "led.encoder.layers.1.fc1.weight": torch.zeros(32, 16)}
    assert config_mismatches(cfg, fitting) == []


def test_a_config_that_does_not_fit_names_its_fields(tmp_path):
    make_reference("LEDForConditionalGeneration", tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["vocab_size"] += 10
    cfg["encoder_ffn_dim"] *= 2
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ledviz.CheckpointError) as err:
        ledviz.LEDForConditionalGeneration.from_pretrained(str(tmp_path / "ck"))
    message = str(err.value)
    assert message.startswith("the checkpoint's config.json does not fit its weights (2 fields: ")
    assert f"vocab_size: {cfg['vocab_size']} in config.json, {cfg['vocab_size'] - 10} in the weights" in message
    assert f"encoder_ffn_dim: {cfg['encoder_ffn_dim']} in config.json" in message


def test_a_damaged_hub_cache_names_the_folder_to_delete(tmp_path, monkeypatch):
    make_reference("LEDForConditionalGeneration", tmp_path / "src")
    cache = _hub_cache(tmp_path, "tiny-org/tiny-led", tmp_path / "src")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = next((tmp_path / "hub").rglob("model.safetensors"))
    os.truncate(os.path.realpath(snapshot), 100)  # an interrupted download
    with pytest.raises(ledviz.CheckpointError) as err:
        ledviz.LEDForConditionalGeneration.from_pretrained("tiny-org/tiny-led", cache_dir=cache)
    folder = os.path.join(cache, "models--tiny-org--tiny-led")
    assert f"delete the folder {folder} and load the model again" in str(err.value)
    assert loading.hub_cache_folder(str(snapshot)) == folder
    assert loading.hub_cache_folder(str(tmp_path / "src" / "model.safetensors")) is None
    os.truncate(tmp_path / "src" / "model.safetensors", 100)  # a local folder's file: no Hub to fetch it from
    with pytest.raises(ledviz.CheckpointError, match=r"replace it with a complete copy \(save or download"):
        ledviz.LEDForConditionalGeneration.from_pretrained(str(tmp_path / "src"))


def test_a_typo_gets_close_names_among_cached_repos_and_sibling_folders(tmp_path, monkeypatch):
    make_reference("LEDForConditionalGeneration", tmp_path / "src")
    cache = _hub_cache(tmp_path, "tiny-org/tiny-led", tmp_path / "src")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert loading.cached_repos(cache) == ["tiny-org/tiny-led"]
    with pytest.raises(ledviz.CheckpointError, match=r"did you mean 'tiny-org/tiny-led'\?"):
        ledviz.LEDConfig.from_pretrained("tiny-org/tiny-lde", cache_dir=cache)
    with pytest.raises(ledviz.CheckpointError, match=r"did you mean 'tiny-org/tiny-led'\?"):  # as the app asks
        ledviz.LEDConfig.from_pretrained("Tiny-org/tiny-led2", cache_dir=cache, hub_only=True)
    with pytest.raises(ledviz.CheckpointError) as err:  # nothing close: no suggestion
        ledviz.LEDConfig.from_pretrained("someone/else", cache_dir=cache)
    assert "did you mean" not in str(err.value)
    (tmp_path / "checkpoints" / "led-demo").mkdir(parents=True)
    typo = str(tmp_path / "checkpoints" / "led-dmeo") + "?"  # a path that is no Hub id either
    with pytest.raises(ledviz.CheckpointError, match="did you mean .*led-demo'"):
        ledviz.LEDConfig.from_pretrained(typo, cache_dir=cache)
    assert loading.did_you_mean(str(tmp_path / "checkpoints" / "led-demo2"), hub=False) == \
        f"did you mean {str(tmp_path / 'checkpoints' / 'led-demo')!r}?"
    assert loading.did_you_mean(str(tmp_path / "nowhere" / "x")) is None


# ---- global attention: every k, positions -----------------------------------------------------------

def test_positions_accept_ranges_and_name_what_is_wrong():
    from ledviz.errors import InputError
    from ledviz.pipeline import parse_positions

    assert parse_positions("0, 10-13") == [0, 10, 11, 12, 13]
    assert parse_positions(" 5; 3 , 4 - 5,,") == [3, 4, 5]
    from ledviz.compare import Setting
    from ledviz.pipeline import format_positions

    assert format_positions([20, 0, 10, 11, 12, 13, 21]) == "0, 10-13, 20, 21"
    assert parse_positions(format_positions(range(5, 900, 3))) == list(range(5, 900, 3))
    assert Setting("positions", positions=(0, *range(10, 21))).label == "positions 0,10-20"
    for typed, said in [("5-2", "the range '5-2' runs backwards: write it smallest first, '2-5'"),
                        ("0, x", "'x' is not a token position"), ("-3", "is negative"),
                        ("0-5000000", "more than 1,000,000 tokens")]:
        with pytest.raises(InputError, match=said):
            parse_positions(typed)


def test_every_k_accepts_1_to_100000_and_says_how_many_tokens_it_marks():
    from ledviz.errors import InputError
    from ledviz.pipeline import K_MAX, check_k, every_k_note

    assert K_MAX == 100_000 and check_k(1) == 1 and check_k(100_000) == 100_000
    for bad in (0, -1, 100_001, 2.5):
        with pytest.raises(InputError, match="from 1 to 100,000"):
            check_k(bad)
    assert every_k_note(64, 300) == "5 of the input's 300 tokens are global, one every 64 (0, 64, 128, ...)"
    assert every_k_note(1, 300) == "all 300 tokens are global (k = 1)"
    assert every_k_note(5000, 300) == "1 of the input's 300 tokens is global: k = 5,000 reaches past its end, " \
        "so only the first (0)"


def test_lab_every_k_out_of_range_and_position_ranges_in_the_page():
    from app_driver import assert_clean, messages, open_app, paste

    at = open_app("pages/lab.py")
    paste(at)
    caption = [c.value for c in at.caption if "tokens are global, one every 64 (0, 64, 128, ...)" in c.value]
    assert caption and caption[0][0].isdigit(), [c.value for c in at.caption]
    for k in (0, 100_001):
        at.number_input(key="lab.s2.k").set_value(k).run()
        assert_clean(at, errors_ok=True)
        assert any("from 1 to 100,000" in m for m in messages(at, "error")), messages(at, "error")
        assert at.button(key="lab.run").disabled
    at.number_input(key="lab.s2.k").set_value(100_000).run()
    assert_clean(at)
    assert any("reaches past its end, so only the first (0)" in c.value for c in at.caption)
    at.selectbox(key="lab.s1.kind").set_value("positions").run()
    at.text_input(key="lab.s1.positions").set_value("0, 10-20").run()
    assert_clean(at)
    assert any(c.value == "12 global tokens." for c in at.caption)
    at.text_input(key="lab.s1.positions").set_value("5-2").run()
    assert any("runs backwards" in m for m in messages(at, "error"))


def test_keeping_the_last_layer_says_what_is_kept():
    from app_driver import assert_clean, open_app

    at = open_app("pages/summarize.py")
    at.selectbox(key="summarize.attention_layers").set_value("last").run()
    assert_clean(at)
    assert any(c.value.startswith("Kept: encoder layer 1 only (the last of 0 to 1)") and "all 2 layers" in c.value
               for c in at.caption), [c.value for c in at.caption]


# ---- a damaged study folder ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    from ledviz.study import StudySpec, run_study

    out = tmp_path_factory.mktemp("study") / "s"
    run_study(StudySpec(corpus="demo:2:200-300", settings=["first", "none"], max_new_tokens=8), out, progress=False)
    return out


def _copy(src, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage,said", [
    ("manifest_cut", r"manifest.json is damaged \(.*\): it cannot be read; .*run the study afresh into a new folder"),
    ("manifest_keys", r"manifest.json is not a study's manifest \(it lacks spec, documents\).*--out NEW_FOLDER"),
    ("part_cut", r"the row file .*part-.*\.parquet is damaged \(.*\): delete it and run the same study command "
                 r"again \(python -m ledviz.study run \.\.\. --out .*copy\): it redoes only the rows that are missing"),
    ("documents_cut", r"documents.parquet is damaged \(.*\); .*run the study afresh into a new folder"),
])
def test_a_damaged_study_folder_names_the_file_and_the_fix(small_study, tmp_path, damage, said):
    from ledviz.errors import InputError
    from ledviz.study import load_study

    folder = _copy(small_study, tmp_path)
    if damage == "manifest_cut":
        (folder / "manifest.json").write_text('{"spec": ')
    elif damage == "manifest_keys":
        (folder / "manifest.json").write_text('{"format": 1}')
    elif damage == "part_cut":
        os.truncate(sorted((folder / "rows").glob("part-*.parquet"))[0], 100)
    else:
        (folder / "documents.parquet").write_bytes(b"junk")
    with pytest.raises(InputError, match=said):
        load_study(folder)


def test_the_study_page_shows_a_damaged_folder_as_a_message_and_a_typo_gets_close_folders(small_study, tmp_path):
    from app_driver import assert_clean, messages, open_app

    folder = _copy(small_study, tmp_path)
    os.truncate(sorted((folder / "rows").glob("part-*.parquet"))[0], 100)
    at = open_app("pages/study.py")
    at.text_input(key="study.path").set_value(str(folder)).run()
    assert_clean(at, errors_ok=True)
    errors = messages(at, "error")
    assert len(errors) == 1 and "is damaged" in errors[0] and "Something went wrong" not in errors[0], errors
    at.text_input(key="study.path").set_value(str(tmp_path / "cpoy")).run()
    assert any(f"did you mean {str(folder)!r}?" in m for m in messages(at, "error")), messages(at, "error")


# ---- the lab's times: which machine, how busy ------------------------------------------------------------

def test_timing_note_says_the_machine_and_its_load():
    from ledviz import device

    busy = device.timing_note(1.9, 2.3, 2, "AMD EPYC")
    assert busy.startswith("Times taken on AMD EPYC (2 cores), load average 1.9 at the start, 2.3 at the end: "
                           "the machine was busy (load 2.3 on 2 cores)")
    assert "mostly idle" in device.timing_note(0.2, 0.3, 2, "AMD EPYC")
    assert "load is not known" in device.timing_note(None, None, 2, "AMD EPYC")
    load = device.load_average()
    assert load is None or load >= 0


def test_lab_results_say_the_machine_load_under_the_times(monkeypatch):
    from app_driver import assert_clean, open_app
    from ledviz import device

    loads = iter([3.5, 4.25])
    monkeypatch.setattr(device, "load_average", lambda: next(loads, 4.25))
    at = open_app("pages/lab.py")
    run_lab_encoder_only(at)
    assert_clean(at)
    notes = [c.value for c in at.caption if c.value.startswith("Times taken on")]
    assert len(notes) == 1 and "load average 3.5 at the start, 4.2 at the end" in notes[0].replace("\\", ""), notes


def test_lab_stack_the_panels_puts_settings_and_results_one_under_another():
    from app_driver import assert_clean, open_app, paste

    at = open_app("pages/lab.py")
    paste(at)
    at.checkbox(key="lab.generate").uncheck().run()
    at.button(key="lab.run").click().run()
    assert_clean(at)
    side_by_side = len(at.columns)
    at.toggle(key="lab.stacked").set_value(True).run()
    assert_clean(at)
    # the three settings' cards, the three outputs, the three charts and the three maps are no longer columns
    assert len(at.columns) == side_by_side - 12, (side_by_side, len(at.columns))
    assert len(at.get("plotly_chart")) >= 6


def test_model_page_says_which_model_it_shows_after_a_failed_load(tmp_path):
    """A folder that failed to load left the Model page showing the embedded model's numbers without a word:
    a stranger read them as the folder's."""
    from app_driver import messages, open_app

    (tmp_path / "ck").mkdir()
    at = open_app("pages/model.py")
    load_folder(at, tmp_path / "ck")
    assert not at.exception
    assert any(f"The folder '{tmp_path / 'ck'}' is empty" in m for m in messages(at, "error")), messages(at, "error")
    warned = [w for w in messages(at, "warning") if w.startswith("The model asked for last could not be loaded")]
    assert warned and warned[0].endswith("This page shows the model still in use, the embedded demo model."), warned
    at.sidebar.radio(key="model.source").set_value("embedded").run()  # choosing again clears the error
    assert not [w for w in messages(at, "warning") if "could not be loaded" in w]


# ---- the lab's settings file ----------------------------------------------------------------------------

def test_lab_settings_file_round_trip_and_unknown_keys():
    from ledviz.compare import Setting, lab_settings_json, read_lab_settings
    from ledviz.errors import InputError

    settings = [Setting("first"), Setting("every_k", k=7), Setting("positions", positions=(0, 10, 11, 12)),
                Setting("pattern", pattern=r"^\d")]
    text = lab_settings_json(task="summarize", settings=settings, reference=1, max_new_tokens=40, generate=False)
    data = json.loads(text)
    assert data["settings"][1] == {"kind": "every_k", "global_k": 7}
    assert data["settings"][2] == {"kind": "positions", "positions": "0, 10-12"}  # as typed: ranges kept short
    got = read_lab_settings(text)
    assert got["settings"] == settings and got["reference"] == 1 and got["max_new_tokens"] == 40
    assert got["generate"] is False and got["task"] == "summarize"
    data["settings"][2]["positions"] = "0, 10-12"
    assert read_lab_settings(json.dumps(data))["settings"][2].positions == (0, 10, 11, 12)
    for change, said in [
        (lambda d: d.update(colour="red", seed=1), r"unknown keys 'colour', 'seed': the keys are format, task"),
        (lambda d: d["settings"][1].update(k=5), r"setting 2 of .* has unknown key 'k': the keys are kind, global_k"),
        (lambda d: d["settings"][1].update(global_k=0), r"setting 2 of .*from 1 to 100,000"),
        (lambda d: d["settings"][2].update(positions="5-2"), r"setting 3 of .*runs backwards"),
        (lambda d: d["settings"][0].update(kind="question"), r"needs the task 'qa'"),
        (lambda d: d.update(reference=9), r"the reference 9"),
    ]:
        bad = json.loads(text)
        change(bad)
        with pytest.raises(InputError, match=said):
            read_lab_settings(json.dumps(bad))
    with pytest.raises(InputError, match="is not JSON"):
        read_lab_settings(b"{not json")
    with pytest.raises(InputError, match="is 2,000,000 bytes: a settings file is a few hundred"):
        read_lab_settings(b" " * 2_000_000)


def test_a_summarize_run_settings_file_carries_global_k_and_loads_into_the_lab():
    from app_driver import assert_clean, kept, open_app, paste
    from ledviz import export
    from ledviz.compare import read_lab_settings

    at = open_app("pages/summarize.py")
    paste(at)
    at.selectbox(key="summarize.settings.global").set_value("every_k").run()
    at.number_input(key="summarize.settings.global_k").set_value(9).run()
    at.button(key="summarize.run").click().run()
    assert_clean(at)
    result = kept(at, "summarize")
    assert result.settings["global_tokens"] == "every_k" and result.settings["global_k"] == 9
    text = export.run_settings_json(result)
    got = read_lab_settings(text)
    assert got["settings"][0].kind == "every_k" and got["settings"][0].k == 9 and got["task"] == "summarize"


def test_lab_takes_a_settings_file_into_its_widgets_and_shows_its_errors():
    """The file's settings as the lab's upload callback puts them (pages.common.lab_settings_state) draw the
    lab with them; a file's error shows as a message. (AppTest has no file uploader: the browser walk
    uploaded files through the real widget.)"""
    from app_driver import assert_clean, messages, open_app, paste
    from ledviz.compare import Setting, lab_settings_json, read_lab_settings
    from ledviz.errors import InputError
    from pages.common import lab_settings_state

    at = open_app("pages/lab.py")
    at.segmented_control(key="lab.task").set_value("qa").run()  # setting 1 starts on the question
    paste(at)
    good = lab_settings_json(task="qa", settings=[Setting("none"), Setting("every_k", k=5)], reference=1,
                             max_new_tokens=20, generate=False, question="Who is the project lead?")
    for key, value in lab_settings_state(read_lab_settings(good)).items():
        at.session_state[key] = value
    at.run()
    assert_clean(at)
    assert at.number_input(key="lab.count").value == 2
    assert at.selectbox(key="lab.s0.kind").value == "none"  # the file's kind, not the task's default
    assert at.number_input(key="lab.s1.k").value == 5 and at.checkbox(key="lab.generate").value is False
    assert at.text_input(key="lab.question").value == "Who is the project lead?"
    assert at.selectbox(key="lab.reference").value == 1
    at.session_state["lab.settings_file_error"] = InputError("“bad.json” has unknown key 'colour': the keys are ...")
    at.run()
    assert any("unknown key 'colour'" in m for m in messages(at, "error")), messages(at, "error")


def test_study_figure_titles_are_broken_into_lines(small_study):
    """Four panels side by side at 1300 px ran their one-line titles into each other."""
    from ledviz.study import load_study
    from ledviz.study.report import distribution_figure

    fig = distribution_figure(load_study(small_study))
    titles = [a.text for a in fig.layout.annotations]
    assert any("<br>" in t for t in titles), titles
    assert all(len(line) <= 26 for t in titles for line in t.split("<br>")), titles


def test_study_figures_stack_their_panels_on_request(small_study):
    from app_driver import assert_clean, open_app
    from ledviz.study import load_study
    from ledviz.study.report import figures

    study = load_study(small_study)
    for name, fig in figures(study, stacked=True).items():
        domains = {tuple(fig.layout[a].domain) for a in fig.layout if a.startswith("xaxis")}
        assert domains == {(0.0, 1.0)}, (name, domains)  # every panel the figure's full width
    side = figures(study)["distributions"]
    assert len({tuple(side.layout[a].domain) for a in side.layout if a.startswith("xaxis")}) > 1
    at = open_app("pages/study.py")
    at.text_input(key="study.path").set_value(str(small_study)).run()
    at.toggle(key="study.stacked").set_value(True).run()
    assert_clean(at)
    assert len(at.get("plotly_chart")) == 4


def test_a_file_given_for_the_checkpoint_folder_names_its_folder(tmp_path):
    from app_driver import messages, open_app

    make_reference("LEDForConditionalGeneration", tmp_path / "ck")
    weights = str(tmp_path / "ck" / "model.safetensors")
    with pytest.raises(ledviz.CheckpointError, match=r"is a file, not a checkpoint folder: give the folder .*/ck'$"):
        ledviz.LEDForConditionalGeneration.from_pretrained(weights)
    at = open_app("pages/model.py")
    load_folder(at, weights)
    said = messages(at, "error")
    assert any("is a file, not a checkpoint folder" in m and str(tmp_path / "ck") in m for m in said), said


# ---- in a real browser: the lab's settings file through the file uploader --------------------------------

@pytest.mark.browser
@pytest.mark.slow
def test_lab_settings_file_in_a_browser(server, browser, tmp_path):
    from playwright.sync_api import expect

    from browser_fixtures import idle, no_failure
    from ledviz.compare import Setting, lab_settings_json

    good = tmp_path / "good.json"
    good.write_text(lab_settings_json(task="summarize", settings=[Setting("first"), Setting("every_k", k=7),
                                                                   Setting("positions", positions=(0, *range(10, 21)))],
                                      reference=0, max_new_tokens=32, generate=True))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dict(json.loads(good.read_text()), colour="red")))
    page = browser.new_page()
    page.goto(server + "/lab")
    idle(page)
    k = page.get_by_role("spinbutton", name="k", exact=True)
    k.fill("0")
    k.press("Enter")
    idle(page)
    expect(page.get_by_text("'every k-th token' takes k from 1 to 100,000")).to_be_visible()
    expect(page.get_by_role("button", name="Compare")).to_be_disabled()
    page.get_by_text("Save or load these settings (JSON)").click()
    upload = page.locator("[data-testid='stFileUploaderDropzoneInput']")
    upload.set_input_files(str(bad))
    idle(page)
    expect(page.get_by_text("has unknown key 'colour'")).to_be_visible()
    upload.set_input_files(str(good))
    idle(page)
    page.screenshot(path=str(tmp_path / "lab-settings-file.png"), full_page=True)
    no_failure(page)
    expect(page.get_by_text("Loaded 3 settings from")).to_be_visible()
    expect(page.get_by_role("spinbutton", name="k", exact=True)).to_have_value("7")
    expect(page.get_by_role("textbox", name="Token positions (commas; ranges like 10-20)")).to_have_value("0, 10-20")
    expect(page.get_by_role("button", name="Compare")).to_be_enabled()
    # on question answering the file keeps the question as typed (the model's input is the read one)
    page.get_by_text("Question answering", exact=True).last.click()
    idle(page)
    question = page.get_by_role("textbox", name="Question")
    question.fill("who is teh projct leed")
    question.press("Enter")
    idle(page)
    expect(page.get_by_text("Read as:")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the settings").click()
    saved = json.loads(open(download.value.path(), encoding="utf-8").read())
    assert saved["task"] == "qa" and saved["question"] == "who is teh projct leed", saved
    assert saved["settings"][1] == {"kind": "every_k", "global_k": 7}


def test_a_question_answering_study_opens_its_setting_in_a_lab_visited_before(tmp_path):
    """The lab, visited first on summarize, had left "first" in place as setting 1's default; a question-answering
    study's "first" opened there was then taken for that default and replaced by "question"."""
    from app_driver import assert_clean, open_app
    from ledviz.study import StudySpec, run_study

    out = tmp_path / "qa"
    run_study(StudySpec(corpus="demo:2:200-300", task="qa", settings=["none", "first"], max_new_tokens=8), out,
              progress=False)
    at = open_app("pages/lab.py")
    at.switch_page("pages/study.py").run()
    at.text_input(key="study.path").set_value(str(out)).run()
    assert at.selectbox(key="study.setting").value == 1  # "first <s>", next to the reference "none"
    at.button(key="study.open").click().run()
    assert_clean(at)
    assert at.session_state["lab.task"] == "qa"
    assert at.selectbox(key="lab.s0.kind").value == "first" and at.selectbox(key="lab.s1.kind").value == "none"



def test_model_page_says_when_global_tokens_exceed_the_document():
    from app_driver import assert_clean, open_app

    at = open_app("pages/model.py")
    at.number_input(key="model_page.n").set_value(10).run()
    at.number_input(key="model_page.x").set_value(100).run()
    assert_clean(at)
    assert any(c.value == "100 global tokens is more than the document's 10: counted as 10 (every token global)."
               for c in at.caption), [c.value for c in at.caption]


def test_study_settings_take_ranges_and_ks_as_the_lab_does():
    from ledviz.errors import InputError
    from ledviz.study import parse_setting, setting_text

    s = parse_setting("positions:0,10-12")
    assert s.positions == (0, 10, 11, 12)
    assert setting_text(s) == "positions:0,10,11,12"  # as before: a study's identity is unchanged
    with pytest.raises(InputError, match=r"setting 'positions:5-2': the range '5-2' runs backwards"):
        parse_setting("positions:5-2")
    with pytest.raises(InputError, match=r"setting 'every_k:200000': .*from 1 to 100,000"):
        parse_setting("every_k:200000")
