"""The `ledviz` command: the app, and the library's command-line entry points under one name.

    ledviz app [streamlit options]     # the Streamlit app, offline on the embedded model
    ledviz evaluate [options]          # python -m ledviz.demo.evaluate
    ledviz train-demo [options]        # python -m ledviz.demo.train
    ledviz study run|report [options]  # python -m ledviz.study

Everything after the command goes to it unchanged (`ledviz evaluate --help` shows its options).
"""

from __future__ import annotations

import argparse
import importlib.util
import runpy
import subprocess
import sys
import sysconfig
from pathlib import Path

# command -> (the module it runs, what it does); the app is run by Streamlit, not as a module
COMMANDS = {
    "app": (None, "start the Streamlit app (streamlit run app.py); it runs the embedded model offline"),
    "evaluate": ("ledviz.demo.evaluate", "evaluate a demo checkpoint on held-out synthetic documents"),
    "train-demo": ("ledviz.demo.train", "train the embedded demo model on synthetic documents"),
    "study": ("ledviz.study", "corpus studies of global-attention settings: run, report"),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ledviz", description=__doc__.split("\n\n")[0],
                                epilog="`ledviz COMMAND --help` shows the options of a command.")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return p


def _version() -> str:
    from . import __version__

    return __version__


def find_app() -> Path:
    """app.py (with pages/ beside it): the source checkout this package lives in, else the copy
    the package installed (share/ledviz/app)."""
    candidates = [Path(__file__).resolve().parents[1]]  # a clone, or an editable install
    for scheme_dir in {sysconfig.get_path("data"), sys.prefix}:
        candidates.append(Path(scheme_dir) / "share" / "ledviz" / "app")
    for folder in candidates:
        if (folder / "app.py").is_file() and (folder / "pages").is_dir():
            return folder / "app.py"
    raise SystemExit("ledviz app: app.py was not found beside the package nor in share/ledviz/app; "
                     "reinstall ledviz (pip install 'ledviz[app]', or pip install -e '.[app]' in a clone)")


def run_app(args: list[str]) -> int:
    """`streamlit run app.py ARGS` in the app's folder (so its .streamlit/config.toml applies)."""
    if importlib.util.find_spec("streamlit") is None:
        raise SystemExit("ledviz app needs Streamlit: pip install 'ledviz[app]'")
    app = find_app()
    command = [sys.executable, "-m", "streamlit", "run", str(app), *args]
    try:
        return subprocess.call(command, cwd=app.parent)
    except KeyboardInterrupt:
        return 130


def run_module(name: str, command: str, args: list[str]) -> int:
    """Run `python -m name ARGS` in this process, as `ledviz command ARGS`."""
    try:
        found = importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise SystemExit(f"ledviz {command}: this installation of ledviz has no {name} module "
                         f"(it comes with a newer ledviz: update it, or pip install -e . in an up-to-date clone)")
    saved = sys.argv
    sys.argv = [f"ledviz {command}", *args]
    try:
        runpy.run_module(name, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else _print_exit(stop.code))
    finally:
        sys.argv = saved
    return 0


def _print_exit(message) -> int:
    print(message, file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        _parser().parse_args(argv)  # help, version, or an error naming the unknown command
        return 2
    command, args = argv[0], argv[1:]  # the command's own options go to it unchanged
    module, _ = COMMANDS[command]
    if module is None:
        return run_app(args)
    return run_module(module, command, args)


if __name__ == "__main__":
    sys.exit(main())
