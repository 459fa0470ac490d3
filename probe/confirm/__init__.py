"""Confirm a run's findings on the user's own labelled images (``probe confirm``, ``probe audit --val-data``).

- ``read_val_data(spec, labels)`` (from :mod:`probe.valdata`, which the audit loop also reads before any model
  loads): an ImageFolder folder, a CSV of path,label, a list of (path, label), a torch Dataset or a Hugging Face
  datasets.Dataset, checked against the classifier's labels
- ``confirm``: ``confirm_run(run_dir, val_data, ...)``: the algorithm (cue presence read by the run's kind of check,
  every image classified once, per finding the slices, intervals, test and verdict) -> confirmation.json;
  ``confirm_audit(result, val_data, ...)``: the same at the end of an audit, its report rendered again
- ``stats``: Newcombe intervals, Fisher's exact test, how many images would decide

The record it writes is ``probe.run.confirmation.Confirmation`` (read back with ``RunDir(run).read_confirmation()``).
"""

from probe.confirm.confirm import ClassifierSource, ConfirmConfig, ConfirmError, confirm_audit, confirm_run
from probe.valdata import ValData, ValDataError, read_val_data

__all__ = ["confirm_run", "confirm_audit", "ConfirmConfig", "ConfirmError", "ClassifierSource", "read_val_data", "ValData",
           "ValDataError"]
