"""Words the app shows, as pure text (no Streamlit, no model): a number with its noun. Here, below
every other module, so that any of them can use it (`memory` as well as `runs`).
"""

from __future__ import annotations


def count(n: int, thing: str) -> str:
    """"1 global token", "2,466 global tokens": a number and a noun, the plural where it is not one."""
    return f"{n:,} {thing}{'' if n == 1 else 's'}"
