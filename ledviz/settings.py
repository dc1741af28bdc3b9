"""Deployment settings of the app (a public demo, a classroom server): what users may load, how
long a document may be, how many runs queue and run at once, how much memory runs may take.

Read from environment variables (`LEDVIZ_<NAME>`, e.g. LEDVIZ_LOCAL_FOLDERS=off) and from the
`[ledviz]` table of `.streamlit/secrets.toml` (the app passes `st.secrets["ledviz"]`); the
environment wins. An unknown name in either place is an error naming it, as is a value that
does not parse. No Streamlit here.

    [ledviz]
    allowed_hub_ids = ["allenai/led-base-16384"]   # or "any" (the default)
    local_folders = false                          # no path typed in a browser is read
    max_document_tokens = 4096
    max_document_chars = 200000
    queue_size = 30
    workers = 1
    threads_per_run = 1                            # torch threads a run uses
    memory_budget_mb = 8000                        # default: available memory less a margin
    results_per_user = 3
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from typing import Any, Mapping

from .errors import ConfigError

ENV_PREFIX = "LEDVIZ_"
# environment variables ledviz reads that are not deployment settings
OTHER_ENV = {"LEDVIZ_MODEL": "the embedded model's folder", "LEDVIZ_STAND_IN": "the tests' stand-in model",
             "LEDVIZ_FUSED_KERNEL": "the compiled band kernel: auto or off (ledviz/fused.py)",
             "LEDVIZ_KERNEL_CACHE": "where the compiled band kernel is cached (ledviz/fused.py)"}
ANY = "any"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def default_workers() -> int:
    """One run at a time per 4 cores, at least one (a run already uses 2 cores' worth of threads)."""
    return max(1, (os.cpu_count() or 1) // 4)


def default_threads(workers: int) -> int:
    """Torch threads per run: half the cores a worker has, at least one. More threads than free
    cores make a run many times slower (threads wait for each other at every step), and the
    pages' drawing needs a core too."""
    return max(1, (os.cpu_count() or 1) // max(1, workers) // 2)


@dataclass(frozen=True)
class Settings:
    """The deployment settings (see the module doc); the defaults suit one user on a laptop."""

    allowed_hub_ids: tuple[str, ...] | None = None  # None: any Hub id
    local_folders: bool = True
    max_document_tokens: int | None = None  # None: the model's own limit
    max_document_chars: int | None = None  # None: no limit
    queue_size: int = 32
    workers: int = 0  # 0: default_workers()
    threads_per_run: int = 0  # 0: default_threads(workers)
    memory_budget_mb: float | None = None  # None: available memory less a margin
    results_per_user: int = 3

    def __post_init__(self) -> None:
        if self.workers == 0:
            object.__setattr__(self, "workers", default_workers())
        if self.threads_per_run == 0:
            object.__setattr__(self, "threads_per_run", default_threads(self.workers))

    # -- reading --------------------------------------------------------------------------------
    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_sources(cls, environ: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None) -> "Settings":
        """Settings from a secrets table (`[ledviz]` of secrets.toml) and the environment (wins)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if secrets:
            unknown = [k for k in secrets if k not in cls.names()]
            if unknown:
                raise ConfigError(f"unknown setting(s) {', '.join(map(repr, sorted(unknown)))} in the [ledviz] table of "
                                  f".streamlit/secrets.toml; known settings: {', '.join(cls.names())}")
            for k, v in secrets.items():
                values[k] = _parse(k, v, "secrets.toml")
        unknown_env = [k for k in environ if k.startswith(ENV_PREFIX) and k not in OTHER_ENV
                       and k[len(ENV_PREFIX):].lower() not in cls.names()]
        if unknown_env:
            raise ConfigError(f"unknown environment variable(s) {', '.join(sorted(unknown_env))}; ledviz reads "
                              f"{', '.join(ENV_PREFIX + n.upper() for n in cls.names())} (and "
                              f"{', '.join(OTHER_ENV)})")
        for name in cls.names():
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = _parse(name, raw, f"the environment variable {ENV_PREFIX + name.upper()}")
        return cls(**values)

    # -- using ----------------------------------------------------------------------------------
    def check_hub_id(self, name: str) -> str:
        """`name` as a Hub id this server may load; ConfigError (naming what is allowed) if not."""
        name = name.strip()
        if not _HUB_ID.match(name) or ".." in name:
            raise ConfigError(f"{name!r} is not a valid Hub model id (like 'allenai/led-base-16384'): letters, digits, "
                              "'-', '_' and '.', with at most one '/'")
        if self.allowed_hub_ids is not None and name not in self.allowed_hub_ids:
            allowed = ", ".join(self.allowed_hub_ids) or "none"
            raise ConfigError(f"this server does not load {name!r}; the Hub models it allows: {allowed}")
        return name

    def check_local_folder(self) -> None:
        """ConfigError when local folders are off (before anything looks at the path)."""
        if not self.local_folders:
            raise ConfigError("this server does not read folders on its disk (local folders are off): "
                              "use the embedded model or a Hub id")

    def document_limits(self) -> str:
        parts = []
        if self.max_document_tokens:
            parts.append(f"{self.max_document_tokens:,} tokens")
        if self.max_document_chars:
            parts.append(f"{self.max_document_chars:,} characters")
        return " and ".join(parts)


def _parse(name: str, value: Any, where: str) -> Any:
    """One setting's value from TOML (typed) or an environment variable (text)."""
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{name} in {where} must be {expected}, got {value!r}")

    if name == "allowed_hub_ids":
        if isinstance(value, str):
            if value.strip().lower() in (ANY, "*"):
                return None
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = [str(v).strip() for v in value]
        else:
            raise bad(f"a list of Hub ids or {ANY!r}")
        wrong = [v for v in items if not _HUB_ID.match(v)]
        if wrong:
            raise ConfigError(f"allowed_hub_ids in {where}: {', '.join(map(repr, wrong))} are not Hub ids "
                              "(like 'allenai/led-base-16384')")
        return tuple(items)
    if name == "local_folders":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise bad("on or off (true/false)")
    if name in ("max_document_tokens", "max_document_chars", "queue_size", "workers", "threads_per_run",
                "results_per_user"):
        if isinstance(value, str) and name.startswith("max_") and value.strip().lower() in ("", "none", "off"):
            return None
        try:
            number = int(str(value).strip().replace("_", "")) if not isinstance(value, bool) else None
        except ValueError:
            number = None
        lowest = 0 if name == "queue_size" else 1
        if number is None or number < lowest:
            raise bad(f"a whole number of at least {lowest}")
        return number
    if name == "memory_budget_mb":
        if isinstance(value, str) and value.strip().lower() in ("", "auto", "none"):
            return None
        try:
            number = float(value) if not isinstance(value, bool) else 0.0
        except (TypeError, ValueError):
            number = 0.0
        if not number > 0:
            raise bad("a positive number of megabytes, or 'auto'")
        return number
    raise ConfigError(f"unknown setting {name!r}")  # pragma: no cover - names are checked first
