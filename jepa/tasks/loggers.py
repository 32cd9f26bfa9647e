"""A CSV logger that keeps a run's history when the run resumes into the same folder.

Lightning's `CSVLogger` deletes ``metrics.csv`` when its folder is not empty ("Previous log files in this directory
will be deleted", PITFALLS 13), so a resumed run loses every row before the resumed step. `ResumableCSVLogger` keeps
the file and appends. Rows the interrupted run logged after its last checkpoint are logged again by the resumed run
(it repeats those steps), so the first new row drops the old rows at and after its step: every step appears once.
"""

from __future__ import annotations

import csv
import os
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only


class AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV experiment writer, appending to an existing ``metrics.csv`` instead of deleting it."""

    def __init__(self, log_dir: str) -> None:
        self._resume_pending = False
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        # Lightning deletes the old file here; keep it, and continue its header.
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = list(csv.DictReader(f).fieldnames or [])
            self._resume_pending = True

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        if self._resume_pending and step is not None:
            self._drop_rows_from(step)
        super().log_metrics(metrics_dict, step)

    def _drop_rows_from(self, step: int) -> None:
        """Remove the old rows at ``step`` and later (steps the resumed run repeats)."""
        self._resume_pending = False
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            rows = list(csv.DictReader(f))
        kept = [row for row in rows if not row.get("step") or int(float(row["step"])) < step]
        if len(kept) == len(rows):
            return
        tmp = self.metrics_file_path + ".tmp"
        with self._fs.open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, self.metrics_file_path)


class ResumableCSVLogger(CSVLogger):
    """`lightning.pytorch.loggers.CSVLogger` (same arguments) whose ``metrics.csv`` survives a resume.

    Rows are also written to disk with the first row after each checkpoint (the checkpoint step's own), not only every
    ``flush_logs_every_n_steps``: a run killed outright (SIGKILL, out of memory) resumes from its last checkpoint,
    and every row up to that checkpoint is then already on disk.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flush_after_next_row = False

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        super().log_metrics(metrics, step)
        if self._flush_after_next_row:
            self.save()
            self._flush_after_next_row = False

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        # The checkpoint step's own row is logged right after the save (Lightning logs after the batch-end hooks).
        self._flush_after_next_row = True

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment
