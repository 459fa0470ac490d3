"""The analysis journal: every image the analysis observed, on disk as it goes, so that an interrupted analysis
resumes where it stopped instead of generating its images again.

An analysis asks its lab (probe/analysis/lab.py) for images by (prompt, seed) in a fixed order; the lab generates
them in batches, classifies them and has the intervention check read them. Each batch's observations are written
here as one file, atomically (``<n>.npz`` under ``.probe-journal/<key>/``, numpy arrays only: loaded with
``allow_pickle=False``, so a crafted file can carry numbers, never code). ``key`` is a digest of everything an
observation depends on (the engine's ``journal_key``: analysis and sampling settings, generator, classifiers,
check, the unit's classes and their token files), so a journal is only read back by the same analysis of the same
tokens. A later analysis asks for the same images in the same order and gets the journalled ones back; the first
image it does not find is generated as before. The unit's journal is removed once its records are written, and
every journal once the run's findings are decided.

A file that is damaged, or whose arrays do not have the shapes the reader expects, is skipped (its images are
generated again): the journal is a cache, and nothing in it is trusted beyond its numbers.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probe.files import write_bytes

__all__ = ["JOURNAL", "Journal", "Journalled"]

JOURNAL = ".probe-journal"  # the run's journals, one folder per key (".probe": bookkeeping, not a class or a report)


@dataclass(frozen=True)
class Journalled:
    """One observed image: its classifiers' probability vectors, what the check read (``reading``: attribute ->
    value, None without a check; ``scores``: a concept model's raw scores over its phrases) and the evidence PNG
    saved for it (run-relative), if any."""

    probs: tuple[np.ndarray, ...]
    reading: dict[str, str] | None
    scores: np.ndarray | None
    evidence: str | None


class Journal:
    """The journal of one analysis unit, in ``folder``; ``widths``: the class count of each classifier the lab
    holds (a record with other shapes is not read back)."""

    def __init__(self, folder: Path, widths: tuple[int, ...]):
        self.folder, self.widths = Path(folder), tuple(int(w) for w in widths)
        self._records: dict[tuple[str, int, int | None], Journalled] | None = None
        self._next = 0
        self.skipped_files = 0  # damaged or foreign files, not read back

    def get(self, prompt: str, seed: int, steps: int | None) -> Journalled | None:
        """The observation of (prompt, seed) drawn at ``steps`` sampling steps that an earlier process journalled,
        or None (what this object appends is not read back here: its writer already holds it)."""
        if self._records is None:
            self._read()
        return self._records.get((prompt, int(seed), None if steps is None else int(steps)))

    def __len__(self) -> int:
        if self._records is None:
            self._read()
        return len(self._records)

    def append(self, entries: list[tuple[str, int, int | None, Journalled]]) -> None:
        """Write one batch's observations as one file (atomically: a batch is in the journal whole or not at all)."""
        if not entries:
            return
        if self._records is None:
            self._read()
        arrays = {
            "prompts": np.array([e[0] for e in entries], dtype=np.str_),
            "seeds": np.array([int(e[1]) for e in entries], dtype=np.int64),
            "steps": np.array([-1 if e[2] is None else int(e[2]) for e in entries], dtype=np.int64),
            "evidence": np.array([e[3].evidence or "" for e in entries], dtype=np.str_),
            "readings": np.array(json.dumps([e[3].reading for e in entries]), dtype=np.str_),
        }
        for k in range(len(self.widths)):
            arrays[f"probs{k}"] = np.stack([np.asarray(e[3].probs[k], dtype=np.float32) for e in entries])
        scores = [e[3].scores for e in entries]
        if all(s is not None for s in scores) and len({np.asarray(s).shape for s in scores}) == 1:
            arrays["scores"] = np.stack([np.asarray(s, dtype=np.float32) for s in scores])
        elif any(s is not None for s in scores):  # rows of different lengths (phrases added between reads): one each
            for i, s in enumerate(scores):
                if s is not None:
                    arrays[f"scores_{i}"] = np.asarray(s, dtype=np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_bytes(self.folder / f"{self._next:07d}.npz", buffer.getvalue())
        self._next += 1  # not kept in memory too: the lab that wrote them holds them (a 1000-class run: 4 KB an image)

    def clear(self) -> None:
        """Remove this unit's journal (its records are written)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self._records, self._next = {}, 0

    # ------------------------------------------------------------------------------------------ reading
    def _read(self) -> None:
        self._records = {}
        files = sorted(self.folder.glob("*.npz")) if self.folder.is_dir() else []
        for file in files:
            try:
                if not file.is_file() or file.is_symlink():  # a FIFO would hang np.load; a link may lead out of the run
                    raise ValueError("not a regular file of this journal")
                self._records.update(self._read_file(file))
            except Exception:  # noqa: BLE001 - any damage (an empty or foreign file: EOFError, BadZipFile, ...) skips it
                self.skipped_files += 1
        numbers = [int(f.stem) for f in files if f.stem.isascii() and f.stem.isdigit()]  # "²".isdigit() too
        self._next = max(numbers) + 1 if numbers else 0

    def _read_file(self, file: Path) -> dict:
        with np.load(file, allow_pickle=False) as data:
            prompts, seeds, steps = data["prompts"], data["seeds"], data["steps"]
            evidence, readings = data["evidence"], json.loads(str(data["readings"]))
            n = len(prompts)
            probs = [np.asarray(data[f"probs{k}"], dtype=np.float32) for k in range(len(self.widths))]
            if f"probs{len(self.widths)}" in data.files:
                raise ValueError("journalled for another number of classifiers")
            scores = np.asarray(data["scores"], dtype=np.float32) if "scores" in data.files else None
            rows = {i: np.asarray(data[f"scores_{i}"], dtype=np.float32) for i in range(n) if f"scores_{i}" in data.files}
        if not (len(seeds) == len(steps) == len(evidence) == len(readings) == n) or not isinstance(readings, list):
            raise ValueError("arrays of different lengths")
        for p, width in zip(probs, self.widths):
            if p.shape != (n, width) or not np.isfinite(p).all():
                raise ValueError("probabilities of another shape, or not finite")
        if scores is not None and (scores.ndim != 2 or len(scores) != n or not np.isfinite(scores).all()):
            raise ValueError("concept scores of another shape, or not finite")
        out = {}
        for i in range(n):
            reading = readings[i]
            if reading is not None and not (isinstance(reading, dict) and all(
                    isinstance(k, str) and isinstance(v, str) for k, v in reading.items())):
                raise ValueError("a reading that is not {attribute: value}")
            row = scores[i] if scores is not None else rows.get(i)
            if row is not None and (row.ndim != 1 or not np.isfinite(row).all()):
                raise ValueError("a concept score row that is not a finite vector")
            path = str(evidence[i]) or None
            step = int(steps[i])
            out[(str(prompts[i]), int(seeds[i]), None if step < 0 else step)] = Journalled(
                tuple(p[i] for p in probs), reading, row, path)
        return out
