"""The run directory's one owner: its file names and format version, the typed checks of every record, the one
reader and writer (``RunDir``), the vocabulary of findings and the one formatter of their numbers.

Everything else reads and writes runs only through this package. It imports no torch, so ``probe check``,
``probe compare``, ``probe report`` and ``probe.open_run`` stay light. Format: docs/run-format.md.

- ``directory``: ``RunDir`` (paths, reads and writes of every file, locks and class claims), the file names
- ``types``: the typed records RunDir writes and reads (``RunConfig`` with its ``EffectiveSettings``, ``ClassRecord``,
  ``AnalysisSummary`` with its ``PairRecord``s, ``Finding``)
- ``records``: one check per record kind (finding, metrics, analysis, config, labels), the vocabulary
- ``format``: effects, intervals, p and q as every surface prints them
- ``confirmation``: confirmation.json's records (the findings checked on the user's own images, ``probe confirm``)
"""

from probe.run.directory import (ANALYSIS, CLASSES, CONFIG, CONFIRMATION, CONFIRMATION_DIR, FINDINGS, FINDINGS_TABLE, FORMAT_VERSION, HISTORY, LABELS,
                                 LOCK, METRICS, SUMMARY, TOKEN, RunDir, RunFormatError, class_index_of, enclosing_run,
                                 is_internal, load_json)
from probe.run.types import (AnalysisSummary, ClassRecord, EffectiveSettings, EvalScores, Finding, PairRecord, RunConfig,
                             Scores, Stage)

__all__ = ["RunDir", "RunFormatError", "FORMAT_VERSION", "CONFIG", "CONFIRMATION", "CONFIRMATION_DIR", "LABELS", "SUMMARY", "FINDINGS", "FINDINGS_TABLE",
           "ANALYSIS", "METRICS", "HISTORY", "TOKEN", "LOCK", "CLASSES", "class_index_of", "enclosing_run", "is_internal", "load_json",
           "RunConfig", "EffectiveSettings", "ClassRecord", "Scores", "EvalScores", "AnalysisSummary", "PairRecord", "Stage",
           "Finding"]
