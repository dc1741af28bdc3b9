"""The README's library example runs as printed: its Python block, on the embedded model laid out in a
Hub cache under the id the example names (offline), gives what its comments say."""

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
