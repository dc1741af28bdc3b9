"""A checkpoint laid out as the Hugging Face Hub cache lays it out, for offline Hub-path tests."""

from __future__ import annotations

import os
import shutil


def _hub_cache(tmp_path, repo_id: str, source) -> str:
    """Lay out `source`'s files as the Hub cache does: blobs, a snapshot per commit, refs/main."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for i, f in enumerate(sorted(os.listdir(source))):
        blob = repo / "blobs" / f"blob{i}"
        shutil.copy(os.path.join(source, f), blob)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / f)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return str(tmp_path / "hub")
