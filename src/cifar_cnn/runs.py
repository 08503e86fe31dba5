"""The run directory: the interface between training, evaluation, prediction and export.

::

    runs/<name>/
      model.keras      the trained model; takes raw RGB pixels (0..255)
      metadata.json    class names, input spec, recipe, seed, data fingerprint, versions, metrics
      history.csv      one row per epoch
      calibration.json a temperature per test-time augmentation mode
      checkpoints/     what --resume needs (weights + optimiser state + epoch)
      tensorboard/     event files
      report/          written by `cifar-cnn evaluate`
        metrics.json   the metrics, as `cifar_cnn.evaluate` returns them
        report.html    one self-contained page: metrics, plots and run facts
        *.png          the plots the page shows

The names are the constants below; code elsewhere uses them (or the `RunDir` properties),
never literals.
"""

from __future__ import annotations

import csv
import math
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar_cnn.errors import RunError
from cifar_cnn.files import read_json, write_json

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
HISTORY_FILE = "history.csv"
CALIBRATION_FILE = "calibration.json"
CHECKPOINTS_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
REPORT_DIR = "report"
# Inside REPORT_DIR:
METRICS_FILE = "metrics.json"
REPORT_HTML_FILE = "report.html"


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    path: Path

    @property
    def model(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def metadata(self) -> Path:
        return self.path / METADATA_FILE

    @property
    def history(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD_DIR

    @property
    def report(self) -> Path:
        return self.path / REPORT_DIR

    @property
    def metrics(self) -> Path:
        """``report/metrics.json``, written by `cifar_cnn.evaluate`."""
        return self.report / METRICS_FILE

    @property
    def report_html(self) -> Path:
        """``report/report.html``, written by `cifar_cnn.evaluate`."""
        return self.report / REPORT_HTML_FILE

    @property
    def calibration(self) -> Path:
        return self.path / CALIBRATION_FILE

    @property
    def name(self) -> str:
        return self.path.name

    def read_metadata(self) -> dict[str, Any]:
        """The run's metadata.json.

        Raises:
            RunError: if it is missing or unreadable.
        """
        if not self.metadata.is_file():
            raise RunError(f"{self.path} is not a cifar-cnn run directory: {METADATA_FILE} is "
                           "missing. Point at a folder written by `cifar-cnn train`.")
        try:
            return read_json(self.metadata)
        except (OSError, ValueError) as e:
            raise RunError(f"{self.metadata} is unreadable ({e}).") from e

    def write_metadata(self, metadata: dict[str, Any]) -> None:
        write_json(self.metadata, metadata)

    def read_history(self) -> dict[str, list[float]]:
        """The run's history.csv as columns (see `read_history_csv`); ``{}`` if the run has
        none.

        Raises:
            RunError: if the file exists but cannot be read or has no data rows yet (a run
                stopped before its first epoch ended).
        """
        return read_history_csv(self.history) if self.history.is_file() else {}

    def read_metrics(self) -> dict[str, Any]:
        """The metrics of the last `cifar-cnn evaluate` (report/metrics.json); ``{}`` if the
        run has not been evaluated."""
        return read_json(self.metrics) if self.metrics.is_file() else {}


def read_history_csv(path: str | os.PathLike[str]) -> dict[str, list[float]]:
    """Read a Keras ``CSVLogger`` file into a dict of float columns.

    Cells that are empty or not numbers become NaN, so a partly written row does not break
    plotting.

    Args:
        path: the ``history.csv`` file.

    Returns:
        ``{column name: list of floats}`` in file order, e.g. ``{"epoch": [0.0, 1.0], ...}``.

    Raises:
        RunError: naming the file if it cannot be read, has no header or has no data rows.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [row for row in reader if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise RunError(f"could not read training history {path}: {err}") from err
    if not rows:
        raise RunError(f"training history {path} is empty; expected a CSV header and rows.")
    header = [name.strip() for name in rows[0]]
    if len(rows) < 2:
        raise RunError(
            f"training history {path} has a header ({', '.join(header)}) but no data rows."
        )
    columns: dict[str, list[float]] = {name: [] for name in header}
    for row in rows[1:]:
        for i, name in enumerate(header):
            cell = row[i].strip() if i < len(row) else ""
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            columns[name].append(value)
    return columns


def open_run(path: str | os.PathLike[str]) -> RunDir:
    """A run directory that must exist and hold a trained model.

    Raises:
        RunError: if the folder or its model file is missing.
    """
    run = RunDir(Path(path))
    if not run.path.is_dir():
        raise RunError(f"Run directory {run.path} does not exist.")
    if not run.model.is_file():
        status = ""
        if run.metadata.is_file():
            status = run.read_metadata().get("status", "")
        hint = (f" Training did not finish (status: {status}); continue it with "
                f"`cifar-cnn train --resume {run.path}`." if status else "")
        raise RunError(f"{run.path} has no {MODEL_FILE}.{hint}")
    return run


def new_run_dir(root: str | os.PathLike[str], name: str) -> RunDir:
    """A fresh run folder ``root/name``, or ``name-2``, ``name-3``... if taken."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise RunError(f"Run names may use letters, digits, '.', '_' and '-'. Received: {name!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    candidate, n = root / name, 1
    while True:
        try:
            candidate.mkdir()
            return RunDir(candidate)
        except FileExistsError:
            n += 1
            candidate = root / f"{name}-{n}"


def environment_info() -> dict[str, str | None]:
    """Library versions and machine facts recorded with every run."""
    import keras
    import numpy
    import tensorflow as tf

    from cifar_cnn import __version__

    return {
        "cifar_cnn": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "commit": source_commit(),
    }


def source_commit() -> str | None:
    """The git commit of the cifar-cnn source in use, with ``-dirty`` if it has uncommitted
    changes; None when it is not a git checkout (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=root,
                              check=False).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except OSError:  # no git program
        return None
    return (sha + ("-dirty" if dirty else "")) if sha else None


def _cpuinfo() -> dict[str, str]:
    """The first CPU's fields in /proc/cpuinfo; empty where there is none (not Linux)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_name() -> str:
    """The CPU model name with its family and model numbers, from /proc/cpuinfo if there.

    Virtual machines often report a bare "AMD EPYC"; the family/model numbers still tell the
    generations apart (family 25 is Zen 3/4, 26 is Zen 5), which matters for timings.
    """
    fields = _cpuinfo()
    if "model name" in fields:
        ids = ", ".join(f"{k} {fields[k]}" for k in ("cpu family", "model") if k in fields)
        return f"{fields['model name']} ({ids + '; ' if ids else ''}{os.cpu_count()} cores)"
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of the CPU (x86 ``flags``, Arm ``Features``); empty if unknown."""
    fields = _cpuinfo()
    return frozenset((fields.get("flags") or fields.get("Features") or "").split())
