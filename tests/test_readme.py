"""The README's library example runs as printed: its Python block, on the embedded model laid out in a
Hub cache under the id the example names (offline), gives what its comments say. And what the README
says that could drift from the code is checked against it: the set-up commands, the page list
(app.py), the Repository table (ledviz/ and pages/), the extras (pyproject.toml), the `ledviz`
commands (ledviz/cli.py), every `ledviz.x.y` it names, its links, the settings example
(ledviz/settings.py) and the embedded model's figures (its model card and files)."""

from __future__ import annotations

import pathlib
import re

import pytest
import torch

from hub_cache import _hub_cache

ROOT = pathlib.Path(__file__).parent.parent
EXAMPLE_ID = "allenai/led-base-16384"


def library_example() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## The library", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "the README's library section has no Python example"
    return blocks[0]


@pytest.mark.app_install  # also in CI's job on the app's own install (its huggingface_hub)
def test_library_example_is_the_one_tested():
    code = library_example()
    # the test below stands in for exactly these names: a change to the example must change the test
    assert f'from_pretrained("{EXAMPLE_ID}")' in code
    assert "long_text" in code and "overview" in code and "layers" in code


@pytest.mark.app_install
def test_readme_library_example_runs(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from ledviz.demo import data
    cache = _hub_cache(tmp_path, EXAMPLE_ID, ROOT / "ledviz" / "demo" / "model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", cache)
    long_text = next(iter(data.sample_documents().values()))
    scope = {"long_text": long_text}
    exec(compile(library_example(), "README.md (The library)", "exec"), scope)

    enc, model, out, layers, overview = (scope[k] for k in ("enc", "model", "out", "layers", "overview"))
    config = model.config
    n = enc.input_ids.shape[1]
    assert n > 512  # long enough that the overview bins tokens
    assert scope["ids"].shape[0] == 1 and scope["ids"].shape[1] > 1
    assert len(layers) == config.encoder_layers
    # "(H, K, K) binned map, K <= 512": the README's comment
    heads = config.encoder_attention_heads
    assert overview.shape[0] == heads and overview.shape[1] == overview.shape[2] <= 512
    # each query row's attention sums to 1, so the binned map's mass is the number of tokens
    torch.testing.assert_close(overview.sum(dim=(1, 2)), torch.full((heads,), float(n)), rtol=1e-4, atol=1e-2)
    assert out.encoder_attentions[0].shape[-1] == 1 + config.attention_window[0] + 1  # one global column


def bash_commands(prefix: str) -> list[list[str]]:
    """The README's shell commands (in its bash blocks, continuation lines joined, comments dropped)
    that start with `prefix`, as argument lists."""
    import shlex

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:len(prefix.split())] == prefix.split():
                commands.append(words[len(prefix.split()):])
    return commands


def test_readme_study_commands_parse():
    from ledviz.study.__main__ import parser
    from ledviz.study.spec import parse_setting

    commands = bash_commands("python -m ledviz.study")
    assert len(commands) >= 3, commands
    for argv in commands:
        args = parser().parse_args(argv)  # an unknown flag exits with status 2
        for setting in getattr(args, "settings", None) or []:
            parse_setting(setting)


# --- what in the README could drift from the code: each test fails where the two disagree ---

def readme_section(title: str) -> str:
    """The text under the README heading `title` (## or ###), up to the next heading of any level."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)", readme, flags=re.S | re.M)
    assert match, f"the README has no section {title!r}"
    return match.group(1)


def test_readme_set_up_is_the_two_commands():
    blocks = re.findall(r"```bash\n(.*?)```", readme_section("Set-up"), flags=re.S)
    assert [b.strip() for b in blocks] == [
        "python3 -m pip install -r requirements.txt && streamlit run app.py",
        "python3 -m pip install -r requirements-test.txt && python3 -m pytest",
    ]
    for name in ("requirements.txt", "requirements-test.txt", "app.py"):
        assert (ROOT / name).is_file(), name


def app_page_titles() -> list[str]:
    """The titles of the pages app.py hands to st.navigation (its st.Page(..., title=...) calls)."""
    import ast

    titles = []
    for node in ast.walk(ast.parse((ROOT / "app.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Page":
            titles += [k.value.value for k in node.keywords if k.arg == "title"]
    return titles


def test_readme_lists_the_apps_pages():
    titles = app_page_titles()
    assert len(titles) >= 6, titles
    listed = re.findall(r"^- \*\*(.+?)\*\*:", readme_section("The app"), flags=re.M)
    assert sorted(listed) == sorted(titles), "README's page list (section 'The app') against app.py's pages"


def repository_table_paths() -> set[str]:
    """Every file the README's Repository table names, as a path from the repository root: a bare
    name in a row stands in the folder of the first path of that row (`ledviz/modeling.py`,
    `pretrained.py` -> ledviz/pretrained.py; `pages/common.py` ... `summarize.py` -> pages/)."""
    paths = set()
    for row in readme_section("Repository").splitlines():
        if not row.startswith("| `"):
            continue
        cells = row.split("|")[1:3]
        for n, cell in enumerate(cells):
            folder = ""  # the what-cell also names files (`pages/common.py`, ...), but only files
            for name in re.findall(r"`([\w./-]+)`" if n == 0 else r"`([\w./-]+\.(?:py|cpp))`", cell):
                if name.endswith("/"):
                    folder = name
                elif "/" in name:
                    folder = name.rsplit("/", 1)[0] + "/"
                elif name != "pyproject.toml":
                    name = folder + name
                paths.add(name)
    return paths


def test_readme_repository_table_names_every_module_and_page():
    paths = repository_table_paths()
    missing = [p for p in sorted(paths) if not (ROOT / p).exists()]
    assert not missing, f"the README's Repository table names files that do not exist: {missing}"
    code = {f"ledviz/{p.name}" for p in (ROOT / "ledviz").iterdir()
            if p.suffix in (".py", ".cpp") and p.name != "__init__.py"}
    code |= {f"ledviz/{p.name}/" for p in (ROOT / "ledviz").iterdir() if (p / "__init__.py").is_file()}
    code |= {f"pages/{p.name}" for p in (ROOT / "pages").glob("*.py")}
    unnamed = sorted(code - paths)
    assert not unnamed, f"files of ledviz/ and pages/ the README's Repository table does not name: {unnamed}"


def test_readme_extras_are_pyprojects():
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    said = re.search(r"extras ((?:`\w+`,? ?)+) in\s+`pyproject.toml`", readme_section("The library"))
    assert said, "the README no longer says which extras pyproject.toml has"
    assert set(re.findall(r"`(\w+)`", said.group(1))) == extras


def test_readme_ledviz_commands_are_the_clis():
    from ledviz import cli

    bullet = re.search(r"^- \*\*The package and the `ledviz` command\*\*:(.*?)(?=^- |\Z)",
                       readme_section("The library"), flags=re.S | re.M)
    assert bullet
    said = set(re.findall(r"`ledviz ([\w-]+)", bullet.group(1)))
    assert said == set(cli.COMMANDS), (said, set(cli.COMMANDS))


def test_readme_dotted_names_exist():
    """Every `ledviz.x.y` the README names (outside file names) imports, or is an attribute of what does."""
    import importlib

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    names = {n for n in re.findall(r"`(ledviz(?:\.\w+)+)", readme) if not n.endswith((".py", ".md", ".json"))}
    assert len(names) >= 10, names
    broken = []
    for name in sorted(names):
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            try:
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                broken.append(name)
            break
    assert not broken, f"the README names what ledviz does not have: {broken}"


def test_readme_links_to_files_that_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(((?!https?:|#)[^)\s]+)\)", readme)
    assert links  # the study report's image at least
    assert [link for link in links if not (ROOT / link).is_file()] == []


def test_readme_settings_example_is_the_settings():
    import tomllib

    from ledviz.settings import Settings

    block = re.search(r"```toml\n(.*?)```", readme_section("A classroom on one machine: deployment settings"), flags=re.S)
    assert block
    table = tomllib.loads(block.group(1))["ledviz"]
    assert sorted(table) == sorted(Settings.names())
    Settings.from_sources({}, table)  # every value of the example is accepted
    defaults = Settings()
    for name, default in re.findall(r"^(\w+) *=.*# .*?default (\d+)\b", block.group(1), flags=re.M):
        assert getattr(defaults, name) == int(default), name
    # the memory budget's default: the margin memory.memory_budget leaves
    import inspect

    from ledviz.memory import memory_budget
    said = re.search(r"^memory_budget_mb *=.*# default: available memory now, less (\d+)% of it or (\d+) GB, "
                     r"whichever is more$", block.group(1), flags=re.M)
    assert said, "the README's memory_budget_mb default is not the one this test reads"
    params = inspect.signature(memory_budget).parameters
    assert int(said.group(1)) / 100 == params["margin"].default
    assert int(said.group(2)) * 1024 == params["min_margin_mb"].default


def test_readme_embedded_model_figures_are_the_model_cards():
    import json

    section = readme_section("The embedded model")
    card = (ROOT / "ledviz" / "demo" / "model" / "README.md").read_text(encoding="utf-8")
    figures = set(re.findall(r"\d+(?:\.\d+)?%|\d+/\d+|\d+\.\d+–\d+\.\d+|\d+\.\d+ s\b|\b0\.\d{3}\b", section))
    assert len(figures) >= 30, figures
    assert sorted(f for f in figures if f not in card) == [], "figures the README gives that the model card lacks"
    # and those the README takes from the model's own files
    model = ROOT / "ledviz" / "demo" / "model"
    head = json.loads((model / "answerability.json").read_text())
    n_params = sum(len(v) if isinstance(v[0], (int, float)) else sum(len(r) for r in v)
                   for layer in head["layers"] for v in layer.values() if isinstance(v, list))
    assert f"{n_params:,} parameters in `answerability.json`" in section
    assert re.search(rf"ROC area {head['about']['valid_auc']:.3f} against", section), head["about"]["valid_auc"]
    margin = json.loads((model / "generation_config.json").read_text())["decline_margin"]
    assert f"embedded model: {margin:g} on the first token" in section


def test_readme_upload_types_are_the_uploaders():
    from ledviz.uploads import UPLOAD_TYPES

    bullet = re.search(r"^  - Uploads:(.*?)(?=^  - )", readme_section("The app"), flags=re.S | re.M)
    assert bullet, "the README's Summarize bullet no longer lists the upload types"
    assert sorted(re.findall(r"`\.(\w+)`", bullet.group(1))) == sorted(UPLOAD_TYPES)


def test_readme_embedded_model_size_is_the_weights():
    import math

    from safetensors import safe_open

    weights = ROOT / "ledviz" / "demo" / "model" / "model.safetensors"
    with safe_open(str(weights), "pt") as f:
        n = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    said = re.search(r"is a ([\d.]+)M-parameter LED \(([\d.]+) MB of float16 weights\)", readme_section("The embedded model"))
    assert said, "the README no longer gives the embedded model's size as this test reads it"
    assert float(said.group(1)) == round(n / 1e6, 1)
    assert float(said.group(2)) == round(weights.stat().st_size / 1e6, 1)
