"""Corpus studies: compare global-attention choices over a whole data set, on one machine or Ray.

    from ledviz.study import StudySpec, run_study, load_study
    spec = StudySpec(corpus="demo:100", settings=["first", "none", "every_k:32"], task="summarize")
    run_study(spec, "runs/first-vs-none")          # resumable; engine="ray" for a cluster
    study = load_study("runs/first-vs-none")       # rows, manifest, summary and paired differences

The command line is `python -m ledviz.study run|report` (see `python -m ledviz.study --help`).
Ray is imported only when engine="ray" is asked for.
"""

from .corpus import Corpus, Record, read_corpus
from .evaluate import COLUMNS, COST_COLUMNS, KEY_COLUMNS, METRICS, RESULT_COLUMNS, Evaluator, token_f1
from .report import Study, bootstrap_interval, load_study, paired_differences, summary_table, write_report
from .runner import RunSummary, run_study
from .spec import StudySpec, parse_setting, setting_text

__all__ = [
    "COLUMNS", "COST_COLUMNS", "Corpus", "Evaluator", "KEY_COLUMNS", "METRICS", "RESULT_COLUMNS", "Record",
    "RunSummary", "Study", "StudySpec", "bootstrap_interval", "load_study", "paired_differences",
    "parse_setting", "read_corpus", "run_study", "setting_text", "summary_table", "token_f1", "write_report",
]
