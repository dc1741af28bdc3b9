"""Finding checkpoint files (local folders or the Hub cache) and reading/writing their weights."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from typing import Any

import torch

from .errors import CheckpointError

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_WEIGHTS = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"

_HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "force_download")


def _looks_like_hub_id(name: str) -> bool:
    """An 'org/name' or 'name' string that is not an existing local path."""
    parts = name.split("/")
    return len(parts) <= 2 and all(parts) and not name.startswith((".", "~")) and "\\" not in name


def resolve_file(name_or_path: str | os.PathLike, filename: str, *, required: bool = True,
                 progress=None, **hub_kwargs: Any) -> str | None:
    """Local path of `filename` in a checkpoint: a folder on disk, or a Hub id through the Hub cache.

    A Hub id goes through huggingface_hub, so its cache and HF_HUB_OFFLINE apply. Returns None
    when the file does not exist and `required` is False; raises CheckpointError otherwise.
    """
    name = os.fspath(name_or_path)
    if os.path.isdir(name):
        path = os.path.join(name, filename)
        if os.path.isfile(path):
            return path
        if required:
            raise CheckpointError(f"{filename} not found in the folder {name!r}; is this an LED checkpoint folder?")
        return None
    if os.path.isfile(name) and os.path.basename(name) == filename:
        return name
    if not _looks_like_hub_id(name):
        raise CheckpointError(
            f"{name!r} is neither a local folder nor a Hub model id (like 'allenai/led-base-16384'); "
            "check the path"
        )
    return _hub_download(name, filename, required=required, progress=progress, **hub_kwargs)


def _hub_download(repo_id: str, filename: str, *, required: bool, progress=None, **hub_kwargs: Any) -> str | None:
    """Fetch one file of a Hub repo through huggingface_hub (cache first)."""
    try:
        import huggingface_hub
        from huggingface_hub.utils import (
            EntryNotFoundError,
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:  # pragma: no cover - huggingface_hub is a runtime dependency
        raise CheckpointError(
            f"{repo_id!r} is not a local folder, and huggingface_hub is not installed to fetch it "
            "from the Hub: pip install huggingface_hub, or pass a local checkpoint folder"
        ) from None
    kwargs = {k: v for k, v in hub_kwargs.items() if k in _HUB_KWARGS}
    if progress is not None:
        progress(f"fetching {filename} from {repo_id}")
    try:
        return huggingface_hub.hf_hub_download(repo_id, filename, **kwargs)
    except LocalEntryNotFoundError:  # (a subclass of EntryNotFoundError: caught first)
        # offline (HF_HUB_OFFLINE=1 or no network) and not in the cache
        if not required and _repo_is_cached(repo_id, kwargs.get("cache_dir")):
            return None
        raise CheckpointError(
            f"{repo_id!r} is not in the local Hub cache and the Hub cannot be reached (offline, or "
            f"HF_HUB_OFFLINE=1): connect to the network once to download it, or pass a local "
            f"checkpoint folder (missing file: {filename})"
        ) from None
    except GatedRepoError:
        raise CheckpointError(
            f"the Hub repo {repo_id!r} is gated: log in (huggingface-cli login) with access to it"
        ) from None
    except RepositoryNotFoundError:
        raise CheckpointError(
            f"no model {repo_id!r} on the Hub (or it is private): check the id, e.g. allenai/led-base-16384"
        ) from None
    except RevisionNotFoundError:
        raise CheckpointError(f"the Hub repo {repo_id!r} has no revision {kwargs.get('revision')!r}") from None
    except EntryNotFoundError:
        if required:
            raise CheckpointError(f"the Hub repo {repo_id!r} has no file {filename}") from None
        return None
    except OSError as e:  # network errors, disk errors
        raise CheckpointError(f"could not fetch {filename} of {repo_id!r} from the Hub: {e}") from None


def _repo_is_cached(repo_id: str, cache_dir: str | None) -> bool:
    """Whether the Hub cache holds any snapshot of this repo."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover
        return False
    root = cache_dir or constants.HF_HUB_CACHE
    folder = os.path.join(root, "models--" + repo_id.replace("/", "--"), "snapshots")
    return os.path.isdir(folder) and bool(os.listdir(folder))


# ---- reading weights ---------------------------------------------------------------------

def _load_safetensors(path: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({e}): the download may be incomplete; "
            "delete it and fetch the checkpoint again"
        ) from None


def _load_bin(path: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path} is not a readable PyTorch weights file ({type(e).__name__}: {e}); the download may be "
            "incomplete or the file is not a plain state dict: fetch the checkpoint again"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a dict of tensors (a state dict)")
    return state


def _load_index(index_path: str, name_or_path: str, loader, **hub_kwargs: Any) -> dict[str, torch.Tensor]:
    try:
        with open(index_path, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index_path} is not a valid shard index ({e})") from None
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        state.update(loader(resolve_file(name_or_path, shard, **hub_kwargs)))
    return state


def load_state_dict(name_or_path: str | os.PathLike, progress=None, **hub_kwargs: Any) -> dict[str, torch.Tensor]:
    """All weights of a checkpoint: safetensors (single or sharded) first, then pytorch_model.bin."""
    name = os.fspath(name_or_path)
    kw = dict(hub_kwargs, progress=progress)
    for filename, loader, sharded in (
        (SAFE_WEIGHTS, _load_safetensors, False),
        (SAFE_INDEX, _load_safetensors, True),
        (BIN_WEIGHTS, _load_bin, False),
        (BIN_INDEX, _load_bin, True),
    ):
        path = resolve_file(name, filename, required=False, **kw)
        if path is None:
            continue
        if progress is not None:
            progress(f"reading {os.path.basename(path)}")
        return _load_index(path, name, loader, **kw) if sharded else loader(path)
    raise CheckpointError(
        f"no weights found for {name!r}: expected {SAFE_WEIGHTS}, {SAFE_INDEX}, {BIN_WEIGHTS} or {BIN_INDEX}"
    )


def save_state_dict(state: dict[str, torch.Tensor], save_directory: str | os.PathLike) -> str:
    """Write `state` as model.safetensors (contiguous, shared storage de-duplicated by the caller)."""
    from safetensors.torch import save_file

    os.makedirs(save_directory, exist_ok=True)
    path = os.path.join(save_directory, SAFE_WEIGHTS)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, path, metadata={"format": "pt"})
    return path
