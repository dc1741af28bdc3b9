"""Finding checkpoint files (local folders or the Hub cache) and reading/writing their weights."""

from __future__ import annotations

import difflib
import json
import os
import pickle
import re
import socket
import time
import zipfile
from typing import Any, Iterator

import torch

from .errors import CheckpointError

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_WEIGHTS = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"

# where a checkpoint's files come from: keyword arguments of every from_pretrained (as in transformers).
# For a local folder only `subfolder` matters; the others choose what is fetched from the Hub.
# `hub_only`: the name is a Hub id, never a local path (see resolve_file).
HUB_KWARGS = ("subfolder", "revision", "cache_dir", "token", "local_files_only", "force_download", "hub_only")
_HUB_KWARGS = HUB_KWARGS[1:-1]  # those huggingface_hub's hf_hub_download takes as they are


_HUB_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


def _looks_like_hub_id(name: str) -> bool:
    """An 'owner/name' or 'name' Hub id as the Hub accepts them: letters, digits, '-', '_' and '.',
    starting and ending with a letter or digit, no '--' or '..', at most 96 characters a part."""
    parts = name.split("/")
    return (len(parts) <= 2 and all(_HUB_NAME.fullmatch(p) and len(p) <= 96 for p in parts)
            and "--" not in name and ".." not in name)


def hub_id_problem(name: str) -> str | None:
    """Why `name` (not a local folder) cannot be a Hub model id, in words for the user; None when it can."""
    if _looks_like_hub_id(name):
        return None
    return (f"{name!r} is neither a local folder nor a valid Hub model id: a Hub id is 'owner/name' (or "
            "'name') made of letters, digits, '-', '_' and '.', like 'allenai/led-base-16384'; check the "
            "id or the path")


def resolve_file(name_or_path: str | os.PathLike, filename: str, *, required: bool = True,
                 progress=None, hub_only: bool = False, **hub_kwargs: Any) -> str | None:
    """Local path of `filename` in a checkpoint: a folder on disk, or a Hub id through the Hub cache.

    A Hub id goes through huggingface_hub, so its cache and HF_HUB_OFFLINE apply. Returns None
    when the file does not exist and `required` is False; raises CheckpointError otherwise.
    `hub_only=True`: `name_or_path` is a Hub id and nothing on the local disk is looked at under
    that name (a server whose users type names must not read paths they type).
    """
    name = os.fspath(name_or_path)
    subfolder = hub_kwargs.get("subfolder") or ""
    if not isinstance(subfolder, str):
        raise TypeError(f"subfolder must be a str (a folder inside the checkpoint), got {type(subfolder).__name__}")
    if hub_only:
        if not _looks_like_hub_id(name) or ".." in name:
            raise CheckpointError(f"{name!r} is not a Hub model id (like 'allenai/led-base-16384'); "
                                  "local folders are not read here")
        return _hub_download_or_hint(name, filename, required=required, progress=progress, **hub_kwargs)
    if os.path.isdir(name):
        folder = os.path.join(name, subfolder) if subfolder else name
        if subfolder and not os.path.isdir(folder):
            raise CheckpointError(f"the folder {name!r} has no subfolder {subfolder!r} (subfolder={subfolder!r}): "
                                  f"it holds {sorted(os.listdir(name))[:10]}")
        path = os.path.join(folder, filename)
        if os.path.isfile(path):
            return path
        if required:
            where = f"the subfolder {subfolder!r} of {name!r}" if subfolder else f"the folder {name!r}"
            raise CheckpointError(f"there is no {filename} in {where}: give the folder of an LED checkpoint (its "
                                  "config.json, tokenizer files and weights)")
        return None
    if os.path.isfile(name) and os.path.basename(name) == filename:
        return name
    if os.path.isfile(name):  # a checkpoint's file (its weights, its config) given for the checkpoint
        raise CheckpointError(file_not_folder(name))
    problem = hub_id_problem(name)
    if problem is not None:
        hint = did_you_mean(name, hub_kwargs.get("cache_dir"), hub=False)
        raise CheckpointError(problem + (f"; {hint}" if hint else ""))
    return _hub_download_or_hint(name, filename, required=required, progress=progress, folders=True, **hub_kwargs)


def _hub_download_or_hint(name: str, filename: str, *, folders: bool = False, **kwargs: Any) -> str | None:
    """_hub_download; its error for an id that is not cached gets close names, if any: cached repos, and with
    `folders` (a name that may be a path) the folders beside it."""
    try:
        return _hub_download(name, filename, **kwargs)
    except CheckpointError as err:  # a typo'd id (or a folder's path) that is not cached
        cache_dir = kwargs.get("cache_dir")
        hint = None if _repo_is_cached(name, cache_dir) else did_you_mean(name, cache_dir, folders=folders)
        if hint is None:
            raise
        raise CheckpointError(f"{err}; {hint}") from None


CHECKPOINT_HOLDS = ("config.json, the weights (model.safetensors or pytorch_model.bin, or their sharded "
                    "*.index.json) and the tokenizer (tokenizer.json, or vocab.json and merges.txt)")


def checkpoint_folder_problem(folder: str) -> str | None:
    """What a local checkpoint folder lacks, the most basic thing first (no config.json, then no
    weights, then no tokenizer), naming the folder and what a checkpoint folder holds; None when it
    has all three kinds of file (whether they read is for the loaders to say)."""
    try:
        names = set(os.listdir(folder))
    except OSError as err:
        return f"the folder {folder!r} cannot be read ({err.strerror or err}): give a folder the server may read"
    holds = f"a checkpoint folder holds {CHECKPOINT_HOLDS}"
    if not names:
        return f"the folder {folder!r} is empty: {holds}"
    shown = ", ".join(sorted(names)[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    if "config.json" not in names:
        return f"there is no config.json in the folder {folder!r} (it holds {shown}): {holds}"
    if not names & {SAFE_WEIGHTS, SAFE_INDEX, BIN_WEIGHTS, BIN_INDEX}:
        return f"there are no weights in the folder {folder!r} (it holds {shown}): {holds}"
    if "tokenizer.json" not in names and not {"vocab.json", "merges.txt"} <= names:
        return f"there is no tokenizer in the folder {folder!r} (it holds {shown}): {holds}"
    return None


def file_not_folder(path: str) -> str:
    """The message for a file given where a checkpoint's folder belongs."""
    folder = os.path.dirname(os.path.abspath(os.path.expanduser(path)))
    return (f"{path!r} is a file, not a checkpoint folder: give the folder that holds config.json, the tokenizer "
            f"files and the weights, e.g. {folder!r}")


def cached_repos(cache_dir: str | None = None) -> list[str]:
    """The model ids the local Hub cache holds (any snapshot), e.g. ['allenai/led-base-16384']."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover
        return []
    root = cache_dir or constants.HF_HUB_CACHE
    try:
        entries = os.listdir(root)
    except OSError:
        return []
    repos = (_repo_of_cache_folder(e) for e in entries if e.startswith("models--"))
    return sorted(r for r in repos if _repo_is_cached(r, root))


def _repo_of_cache_folder(name: str) -> str:
    """The repo id of a Hub cache folder's name: 'models--owner--name' -> 'owner/name' (_repo_is_cached's inverse)."""
    return name[len("models--"):].replace("--", "/")


def did_you_mean(name: str, cache_dir: str | None = None, *, hub: bool = True, folders: bool = True) -> str | None:
    """For a checkpoint name that is neither a folder nor a cached Hub id: 'did you mean ...?' naming
    close names among the Hub cache's repos (`hub`) and the folders beside the path typed (`folders`),
    or None when nothing is close."""
    name = os.fspath(name).strip()
    found: list[str] = []
    if hub and _looks_like_hub_id(name):
        repos = cached_repos(cache_dir)
        lowered = {r.lower(): r for r in repos}
        found += [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.75)]
    if folders:
        path = os.path.expanduser(name.rstrip("/\\")) or name
        parent, base = os.path.split(path)
        try:
            siblings = [e for e in os.listdir(parent or ".") if os.path.isdir(os.path.join(parent or ".", e))]
        except OSError:
            siblings = []
        found += [os.path.join(parent, m) for m in difflib.get_close_matches(base, siblings, n=3, cutoff=0.75)]
    found = [f for n, f in enumerate(found) if f not in found[:n] and f != name]
    if not found:
        return None
    return "did you mean " + " or ".join(repr(f) for f in found) + "?"


def _hub_download(repo_id: str, filename: str, *, required: bool, progress=None, **hub_kwargs: Any) -> str | None:
    """Fetch one file of a Hub repo through huggingface_hub (cache first)."""
    try:
        import huggingface_hub
        from huggingface_hub.utils import (
            EntryNotFoundError,
            GatedRepoError,
            HFValidationError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:  # pragma: no cover - huggingface_hub is a runtime dependency
        raise CheckpointError(
            f"{repo_id!r} is not a local folder, and huggingface_hub is not installed to fetch it "
            "from the Hub: pip install huggingface_hub, or pass a local checkpoint folder"
        ) from None
    kwargs = {k: v for k, v in hub_kwargs.items() if k in _HUB_KWARGS and v is not None}
    subfolder = hub_kwargs.get("subfolder") or None
    shown = f"{subfolder}/{filename}" if subfolder else filename
    if progress is not None:
        progress(f"fetching {shown} from {repo_id}")
    unreachable = None
    if not kwargs.get("local_files_only") and not _hub_offline():
        # huggingface_hub retries a failed connection 5 times (1+2+4+8+8 s of waiting): no use when the
        # name does not resolve or nothing answers. One quick request first; unreachable: the cache only.
        unreachable = _hub_unreachable()
        if unreachable is not None:
            if kwargs.get("force_download"):
                raise CheckpointError(
                    f"cannot download {shown} of {repo_id!r} (force_download=True): the Hub cannot be reached "
                    f"({unreachable}); connect to the network, or pass a local checkpoint folder") from None
            kwargs["local_files_only"] = True
    try:
        return huggingface_hub.hf_hub_download(repo_id, filename, subfolder=subfolder, **kwargs)
    except LocalEntryNotFoundError as e:  # (a subclass of EntryNotFoundError: caught first)
        # offline (HF_HUB_OFFLINE=1, local_files_only=True, or no network) and not in the cache
        if not required and _repo_is_cached(repo_id, kwargs.get("cache_dir")):
            return None
        if subfolder and _repo_is_cached(repo_id, kwargs.get("cache_dir")):
            raise CheckpointError(
                f"the cached Hub repo {repo_id!r} has no {shown} (subfolder={subfolder!r}): check the subfolder"
            ) from None
        answered = _hub_error_status(e)
        if unreachable is None and answered is not None:  # the Hub answered with an error (a 5xx after its retries)
            raise CheckpointError(
                f"{repo_id!r} is not in the local Hub cache, and the Hub answered HTTP {answered} for {shown}: "
                "try again later, or pass a local checkpoint folder") from None
        if unreachable is not None:
            why = unreachable + "; set HF_HUB_OFFLINE=1 on a machine without network to skip this check"
        elif hub_kwargs.get("local_files_only"):
            why = "local_files_only=True"
        else:
            why = "offline, or HF_HUB_OFFLINE=1"
        raise CheckpointError(
            f"{repo_id!r} is not in the local Hub cache and the Hub cannot be reached ({why}): connect to the "
            f"network once to download it, or pass a local checkpoint folder (missing file: {shown}"
            + (f", revision {kwargs['revision']!r}" if kwargs.get("revision") else "") + ")"
        ) from None
    except GatedRepoError:
        raise CheckpointError(
            f"the Hub repo {repo_id!r} is gated: ask for access on its Hub page, then log in with hf auth login "
            "(huggingface-cli, its older name, is gone from huggingface_hub 1.0 on) or set HF_TOKEN"
        ) from None
    except RepositoryNotFoundError:
        raise CheckpointError(
            f"no model {repo_id!r} on the Hub (or it is private): check the id, e.g. allenai/led-base-16384"
        ) from None
    except RevisionNotFoundError:
        raise CheckpointError(f"the Hub repo {repo_id!r} has no revision {kwargs.get('revision')!r}") from None
    except EntryNotFoundError:
        if required:
            raise CheckpointError(f"the Hub repo {repo_id!r} has no file {shown}") from None
        return None
    except HFValidationError as e:  # an id (or revision) huggingface_hub does not accept
        raise CheckpointError(f"{repo_id!r} is not a valid Hub model id ({e}); a Hub id looks like "
                              "'allenai/led-base-16384'") from None
    except ValueError as e:  # contradictory arguments, e.g. force_download=True while offline
        raise CheckpointError(f"could not fetch {shown} of {repo_id!r}: {e}") from None
    except Exception as e:
        status = _hub_error_status(e)
        if status is not None:  # the Hub's other HTTP errors (HfHubHTTPError is an OSError below 1.0 only)
            raise CheckpointError(f"could not fetch {shown} of {repo_id!r} from the Hub: it answered HTTP {status} "
                                  f"({e}); try again later, or pass a local checkpoint folder") from None
        if isinstance(e, _transport_errors()):  # the network failed mid-way (httpx's errors are no OSErrors)
            _reach_seen.pop(_endpoint(), None)  # the next file checks the network again
            raise CheckpointError(
                f"could not fetch {shown} of {repo_id!r} from the Hub: the connection failed ({_no_answer(e, None)}); "
                "try again, set HF_HUB_OFFLINE=1 to use the local Hub cache only, or pass a local checkpoint folder"
            ) from None
        if isinstance(e, OSError):  # the disk: a cache folder that cannot be written, a full disk
            raise CheckpointError(f"could not fetch {shown} of {repo_id!r} from the Hub: {e}") from None
        raise


def _causes(error: BaseException | None) -> Iterator[BaseException]:
    """`error`, then what it was raised from, and so on (at most 8: a chain is short; the bound guards
    against a cycle)."""
    for _ in range(8):
        if error is None:
            return
        yield error
        error = error.__cause__ or error.__context__


def _hub_error_status(error: BaseException) -> int | None:
    """The HTTP status of the Hub's answer behind `error` (itself, or what it was raised from), if any."""
    for cause in _causes(error):
        status = getattr(getattr(cause, "response", None), "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE, as huggingface_hub read it at import or as the environment says now."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


_REACH_TIMEOUT = 5.0  # seconds for the one check request
_REACH_KEEP = {True: 60.0, False: 10.0}  # how long a check's answer is reused (reachable / not)
_reach_seen: dict[str, tuple[float, str | None]] = {}  # endpoint -> (when checked, why unreachable or None)


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _hub_unreachable() -> str | None:
    """Why the Hub endpoint cannot be reached (one request, no retries), or None when it answers at all.

    Any HTTP answer counts as reachable (errors of the repo itself come from hf_hub_download), a
    redirect too (it is not followed); only a failed name lookup, connection or timeout counts as
    unreachable. The answer is kept a short while, so loading a checkpoint's several files checks once."""
    from huggingface_hub.utils import get_session

    endpoint = _endpoint()
    now = time.monotonic()
    seen = _reach_seen.get(endpoint)
    if seen is not None and now - seen[0] < _REACH_KEEP[seen[1] is None]:
        return seen[1]
    session = get_session()
    try:
        session.head(endpoint, timeout=_REACH_TIMEOUT, **_no_redirects(session))
        why = None
    except (OSError, *_transport_errors()) as e:  # (an SSL error is an OSError too)
        why = f"no answer from {endpoint}: {_no_answer(e, _REACH_TIMEOUT)}"
    _reach_seen[endpoint] = (time.monotonic(), why)
    return why


def _no_redirects(session) -> dict[str, bool]:
    """The keyword of one request that keeps `session` from following a redirect. The httpx Client of
    huggingface_hub 1.0 and later is made with follow_redirects=True, so each request has to say
    follow_redirects=False; requests' Session.head (below 1.0) follows none unless told to."""
    import inspect

    try:
        names = inspect.signature(session.head).parameters
    except (TypeError, ValueError):  # pragma: no cover - a head() without a signature
        return {}
    return {"follow_redirects": False} if "follow_redirects" in names else {}


def _no_answer(error: BaseException, timeout: float | None) -> str:
    """What went wrong with a request that got no answer (sent with `timeout` seconds, if known), in
    words: the first cause in the chain that says it, else the error's class."""
    for cause in _causes(error):
        if isinstance(cause, socket.gaierror):
            return "the name lookup failed"
        if isinstance(cause, ConnectionRefusedError):
            return "the connection was refused"
        if isinstance(cause, (TimeoutError, socket.timeout)) or "Timeout" in type(cause).__name__:
            return "it timed out" if timeout is None else f"no answer within {timeout:g} s"
        if isinstance(cause, ConnectionResetError) or type(cause).__name__ in ("RemoteDisconnected",
                                                                               "RemoteProtocolError"):
            return "the server closed the connection without an answer"
    return type(error).__name__


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The errors of a request that got no answer (the network's, not the disk's). huggingface_hub below
    1.0 sends through requests (its ConnectionError and Timeout); 1.0 and later through an httpx Client
    -- the package `httpx`, or `httpx2` in huggingface_hub 2 -- whose TransportError is no OSError.
    The library is the one of the session huggingface_hub hands out, and any httpx loaded."""
    import sys

    errors: list[type[BaseException]] = [ConnectionError, TimeoutError, socket.gaierror]
    try:
        from huggingface_hub.utils import get_session

        library = type(get_session()).__module__.partition(".")[0]
    except Exception:  # pragma: no cover - a session that cannot be made fails in the request itself
        library = ""
    for name in dict.fromkeys((library, "requests", "httpx", "httpx2")):
        module = sys.modules.get(name) if name else None
        for attr in ("TransportError", "ConnectionError", "Timeout"):
            error = getattr(module, attr, None)
            if isinstance(error, type) and issubclass(error, BaseException) and error not in errors:
                errors.append(error)
    return tuple(errors)


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
            + _damaged_fix(path)
        ) from None


def hub_cache_folder(path: str) -> str | None:
    """The Hub cache's folder of the repo a file belongs to ('.../models--owner--name'), for a path inside
    one of its snapshots; None for a file elsewhere."""
    parts = os.path.abspath(path).split(os.sep)
    for i in range(len(parts) - 2, 0, -1):
        if parts[i].startswith("models--") and parts[i + 1] == "snapshots":
            return os.sep.join(parts[:i + 1])
    return None


def _damaged_fix(path: str) -> str:
    """What to do about a damaged weights file: in the Hub cache, delete the repo's cached folder (the
    snapshot's file is a link into blobs/: deleting it alone leaves the broken blob, which is not fetched
    again); elsewhere, the file."""
    folder = hub_cache_folder(path)
    if folder is not None:
        repo = _repo_of_cache_folder(os.path.basename(folder))
        return (f"the Hub cache's copy of {repo!r} is damaged: delete the folder {folder} and load the model "
                "again to download it afresh")
    return "replace it with a complete copy (save or download the checkpoint again)"


def _load_bin(path: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path} is not a readable PyTorch weights file ({type(e).__name__}: {e}); the download may be "
            "incomplete or the file is not a plain state dict: " + _damaged_fix(path)
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


def load_state_dict(name_or_path: str | os.PathLike, progress=None, use_safetensors: bool | None = None,
                    **hub_kwargs: Any) -> dict[str, torch.Tensor]:
    """All weights of a checkpoint: safetensors (single or sharded) first, then pytorch_model.bin.

    use_safetensors=True reads only safetensors files, False only pytorch_model.bin (as transformers)."""
    name = os.fspath(name_or_path)
    kw = dict(hub_kwargs, progress=progress)
    candidates = [
        (SAFE_WEIGHTS, _load_safetensors, False),
        (SAFE_INDEX, _load_safetensors, True),
        (BIN_WEIGHTS, _load_bin, False),
        (BIN_INDEX, _load_bin, True),
    ]
    if use_safetensors is not None:
        candidates = [c for c in candidates if (c[1] is _load_safetensors) == bool(use_safetensors)]
    for filename, loader, sharded in candidates:
        path = resolve_file(name, filename, required=False, **kw)
        if path is None:
            continue
        if progress is not None:
            progress(f"reading {os.path.basename(path)}")
        return _load_index(path, name, loader, **kw) if sharded else loader(path)
    expected = " or ".join(c[0] for c in candidates)
    raise CheckpointError(
        f"no weights found for {name!r}" + (f" (subfolder {hub_kwargs['subfolder']!r})" if hub_kwargs.get("subfolder")
                                            else "") + f": expected {expected}"
        + ("" if use_safetensors is None else f" (use_safetensors={use_safetensors})")
    )


def save_state_dict(state: dict[str, torch.Tensor], save_directory: str | os.PathLike, safe: bool = True) -> str:
    """Write `state` as model.safetensors (contiguous, shared storage de-duplicated by the caller);
    safe=False: as pytorch_model.bin."""
    from safetensors.torch import save_file

    os.makedirs(save_directory, exist_ok=True)
    if not safe:
        path = os.path.join(save_directory, BIN_WEIGHTS)
        torch.save({k: v.detach().contiguous().cpu() for k, v in state.items()}, path)
        return path
    path = os.path.join(save_directory, SAFE_WEIGHTS)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, path, metadata={"format": "pt"})
    return path
