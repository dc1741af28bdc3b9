"""The package: `python -m ledviz` / the `ledviz` command, and `pip install -e .` in a fresh virtual environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ledviz import cli

ROOT = Path(__file__).resolve().parents[1]


def ledviz_module(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ledviz", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_python_m_ledviz_help_lists_the_commands():
    res = ledviz_module("--help")
    assert res.returncode == 0, res.stderr
    for command in cli.COMMANDS:
        assert command in res.stdout


def test_unknown_command_is_an_error_naming_it():
    res = ledviz_module("frobnicate")
    assert res.returncode == 2
    assert "invalid choice: 'frobnicate'" in res.stderr


def test_a_command_gets_its_options_unchanged():
    res = ledviz_module("evaluate", "--help")
    assert res.returncode == 0, res.stderr
    assert "--model" in res.stdout  # ledviz.demo.evaluate's own help


def test_a_missing_module_is_a_clear_message(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "nothing", ("ledviz.not_a_module", "for this test"))
    with pytest.raises(SystemExit) as stop:
        cli.main(["nothing", "run"])
    assert "no ledviz.not_a_module module" in str(stop.value)


def test_the_app_is_found_beside_the_package():
    assert cli.find_app() == ROOT / "app.py"


def test_pyproject_declares_the_command_the_model_and_the_extras():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["scripts"] == {"ledviz": "ledviz.cli:main"}
    assert meta["tool"]["setuptools"]["package-data"]["ledviz.demo"] == ["model/*"]
    assert (ROOT / "ledviz" / "demo" / "model" / "model.safetensors").is_file()
    assert "torch==2.13.0" in meta["project"]["dependencies"]
    extras = meta["project"]["optional-dependencies"]
    assert {"app", "test", "cluster"} <= set(extras)
    # the README's two set-up commands install through the requirements files: the same extras
    assert "-e .[app]" in (ROOT / "requirements.txt").read_text().splitlines()
    assert "-e .[test]" in (ROOT / "requirements-test.txt").read_text().splitlines()


@pytest.mark.slow
def test_editable_install_in_a_fresh_venv_gives_the_ledviz_command(tmp_path):
    """pip install -e . (a copy of the repository, offline: the dependencies come from this
    interpreter's site-packages), then `ledviz --help` from the venv's bin folder."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "app.py"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("ledviz", "pages", ".streamlit"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    res = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", "-e", str(src)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run([str(venv / "bin" / "ledviz"), "--help"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "train-demo" in res.stdout
    # the installed package is the copy, and `ledviz app` finds the copy's app.py
    where = subprocess.run([str(python), "-c", "import ledviz.cli; print(ledviz.cli.find_app())"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert where.stdout.strip() == str(src / "app.py"), where.stderr
