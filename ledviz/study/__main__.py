"""`python -m ledviz.study run|report`: corpus studies of global-attention choices.

    python -m ledviz.study run --corpus demo:200 --setting first --setting none --setting every_k:32 --out runs/s1
    python -m ledviz.study run --corpus papers.jsonl --model allenai/led-base-16384 --engine ray --out runs/s2
    python -m ledviz.study report runs/s1

Running the same `run` command again resumes it. Errors are one line naming the problem and the fix.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import LedvizError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # an unknown argument is an error naming it, exit 2
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m ledviz.study", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="run (or resume) a study into a results folder")
    r.add_argument("--corpus", required=True,
                   help="a .jsonl, .csv or .parquet file (text column; optional id, question, reference) or demo:N")
    r.add_argument("--out", required=True, help="results folder (created; the same folder resumes the study)")
    r.add_argument("--setting", action="append", dest="settings", metavar="SETTING",
                   help="a global-attention setting, repeatable: none, first, question, sentences, every_k:K, "
                        "positions:P1,P2, pattern:REGEX (default: first and none)")
    r.add_argument("--reference", default=None, help="the reference setting (default: the first one)")
    r.add_argument("--model", default=None, help="embedded (default), a checkpoint folder, or a Hub id")
    r.add_argument("--task", choices=["summarize", "qa"], default="summarize")
    r.add_argument("--max-new-tokens", type=int, default=64)
    r.add_argument("--num-beams", type=int, default=1)
    r.add_argument("--answer-from-document", action="store_true",
                   help="QA: keep each answer to a span of its document (constrained decoding)")
    r.add_argument("--max-tokens", type=int, default=None, help="cut documents to this many tokens (default: the model's limit)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--text-column", default="text")
    r.add_argument("--id-column", default="id")
    r.add_argument("--on-error", choices=["stop", "skip"], default="stop",
                   help="a malformed line or empty text: stop (default) or skip it and list it")
    r.add_argument("--limit", type=int, default=None, help="only the first N documents")
    r.add_argument("--engine", choices=["local", "ray"], default="local")
    r.add_argument("--workers", type=int, default=1, help="processes (local) or actors (ray); default 1")
    r.add_argument("--batch-size", type=int, default=1, help="documents per task and part file (default 1)")
    r.add_argument("--threads", type=int, default=1,
                   help="torch threads per worker (default 1; rows match across engines only with equal threads)")
    r.add_argument("--address", default=None, help="ray: join this cluster (default: start a local one)")
    r.add_argument("--gpus-per-worker", type=float, default=0, help="ray: GPUs per actor (the model runs on cuda)")
    r.add_argument("--quiet", action="store_true", help="no progress line")
    rep = sub.add_parser("report", help="tables with 95%% intervals and an HTML report of a results folder")
    rep.add_argument("path", help="results folder")
    rep.add_argument("--html", default=None, help="where to write the report (default: PATH/report.html)")
    rep.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        return _report(args)
    except LedvizError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished documents are saved; run the same command again to resume", file=sys.stderr)
        return 130


def _run(args) -> int:
    from .runner import run_study
    from .spec import StudySpec

    spec = StudySpec(corpus=args.corpus, settings=args.settings or ["first", "none"],
                     reference=args.reference if args.reference is not None else 0, task=args.task,
                     model=args.model, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams,
                     answer_from_document=args.answer_from_document, max_tokens=args.max_tokens, seed=args.seed,
                     text_column=args.text_column, id_column=args.id_column, on_error=args.on_error,
                     limit=args.limit)
    summary = run_study(spec, args.out, engine=args.engine, workers=args.workers, batch_size=args.batch_size,
                        threads=args.threads, address=args.address, gpus_per_worker=args.gpus_per_worker,
                        progress=not args.quiet)
    print(summary.text())
    print(f"next: python -m ledviz.study report {args.out}")
    return 0


def _report(args) -> int:
    import pandas as pd

    from .report import load_study, wide, write_report

    study = load_study(args.path, n_boot=args.bootstrap)
    print(study.status())
    if study.rows.empty:
        print("no rows yet: run the study first")
        return 1
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.max_colwidth", 40):
        print("\nper setting: mean [95% bootstrap interval]")
        print(wide(study.summary()).T.to_string())
        print(f"\npaired differences vs. the reference ({study.labels[study.reference]}): mean [95% interval]")
        diff = wide(study.differences(), "mean_difference")
        print(diff.T.to_string() if not diff.empty else "(only one setting)")
    target = write_report(args.path, args.html, n_boot=args.bootstrap)
    print(f"\nHTML report: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
