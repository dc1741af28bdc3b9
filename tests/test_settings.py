"""Deployment settings (ledviz.settings): environment, secrets table, unknown names, bad values."""

from __future__ import annotations

import pytest

from ledviz.errors import ConfigError
from ledviz.settings import Settings


def test_defaults():
    s = Settings.from_sources({}, {})
    assert s.allowed_hub_ids is None and s.local_folders is True
    assert s.max_document_tokens is None and s.queue_size == 32 and s.workers >= 1
    assert s.results_per_user == 3 and s.memory_budget_mb is None


def test_secrets_table_and_environment_which_wins():
    secrets = {"allowed_hub_ids": ["allenai/led-base-16384"], "local_folders": False, "max_document_tokens": 4096,
               "max_document_chars": 100_000, "queue_size": 30, "workers": 2, "memory_budget_mb": 8000,
               "results_per_user": 2}
    s = Settings.from_sources({}, secrets)
    assert s.allowed_hub_ids == ("allenai/led-base-16384",) and s.local_folders is False
    assert (s.max_document_tokens, s.max_document_chars, s.queue_size, s.workers) == (4096, 100_000, 30, 2)
    assert s.memory_budget_mb == 8000.0 and s.results_per_user == 2
    env = {"LEDVIZ_LOCAL_FOLDERS": "on", "LEDVIZ_ALLOWED_HUB_IDS": "any", "LEDVIZ_WORKERS": "3",
           "LEDVIZ_MAX_DOCUMENT_TOKENS": "none", "LEDVIZ_MODEL": "/somewhere", "PATH": "/bin"}
    s = Settings.from_sources(env, secrets)
    assert s.local_folders is True and s.allowed_hub_ids is None and s.workers == 3
    assert s.max_document_tokens is None and s.queue_size == 30
    s = Settings.from_sources({"LEDVIZ_ALLOWED_HUB_IDS": "a/b, c"}, None)
    assert s.allowed_hub_ids == ("a/b", "c")


def test_unknown_names_are_errors_naming_them():
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) 'local_folder', 'queue' in the \[ledviz\] table"):
        Settings.from_sources({}, {"local_folder": False, "queue": 3})
    with pytest.raises(ConfigError, match="LEDVIZ_QUEUE_LENGTH") as err:
        Settings.from_sources({"LEDVIZ_QUEUE_LENGTH": "3"}, {})
    assert "LEDVIZ_QUEUE_SIZE" in str(err.value)  # and says what it reads


@pytest.mark.parametrize("name, value, match", [
    ("local_folders", "maybe", "local_folders in the environment variable LEDVIZ_LOCAL_FOLDERS must be on or off"),
    ("workers", "0", "workers .* at least 1"),
    ("queue_size", "ten", "queue_size .* whole number"),
    ("memory_budget_mb", "-5", "positive number"),
    ("allowed_hub_ids", "../etc,ok/x", "'../etc' are not Hub ids"),
])
def test_bad_values_name_the_setting(name, value, match):
    with pytest.raises(ConfigError, match=match):
        Settings.from_sources({"LEDVIZ_" + name.upper(): value}, {})


def test_hub_ids_and_local_folders():
    s = Settings(allowed_hub_ids=("allenai/led-base-16384",), local_folders=False)
    assert s.check_hub_id(" allenai/led-base-16384 ") == "allenai/led-base-16384"
    with pytest.raises(ConfigError, match="does not load 'allenai/led-large-16384'.*allows: allenai/led-base-16384"):
        s.check_hub_id("allenai/led-large-16384")
    for path in ("/etc/passwd", "../x", "~/models", "a/b/c", "not a valid id!!"):
        with pytest.raises(ConfigError, match="not a valid Hub model id"):
            s.check_hub_id(path)
    with pytest.raises(ConfigError, match="does not read folders"):
        s.check_local_folder()
    Settings().check_local_folder()  # on by default
