"""Run directories, exports and the packaged model: every file name, and what a path is.

The one owner of artifacts' paths: the names of every file a run or an export holds,
reading and writing those files (what ``metadata.json`` means, and a run's lifecycle, are
the model card's: `cifar_cnn.card`), and `resolve_artifact`, which says what any model
argument is (a run directory, a ``.keras`` file, an export, or the packaged default model).

A run directory is the interface between training, evaluation, prediction and export::

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

An export folder (``cifar-cnn export``) holds the model (a SavedModel folder's
``saved_model.pb``, or ``model.tflite`` / ``model.onnx``), ``metadata.json`` (with the same
input spec and class names) and ``parity.json``.

The names are the constants below; code elsewhere uses them (or the `RunDir` and
`Artifact` properties), never literals.
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from importlib import resources
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
EXPORT_DIR = "export"  # RUN/export/FORMAT[-QUANTIZE]/, the default place of exports

# An export folder:
EXPORT_METADATA_FILE = "metadata.json"  # beside the model (inside a SavedModel folder)
PARITY_FILE = "parity.json"
SAVEDMODEL_FILE = "saved_model.pb"
EXPORT_FILES = {"litert": "model.tflite", "onnx": "model.onnx"}
_EXPORT_SUFFIXES = {".tflite": "litert", ".onnx": "onnx"}

# Data named rather than given as a path (see `cifar_cnn.data.load_dataset`).
DOWNLOADABLE_DATA = ("cifar10", "cifar100")

# The packaged default model: a run directory inside the installed package.
DEFAULT_MODEL = "robust"

# Run statuses in metadata.json.
RUNNING, INTERRUPTED, FAILED, COMPLETE = "running", "interrupted", "failed", "complete"


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
    meta = run.read_metadata() if run.metadata.is_file() else {}
    status = meta.get("status", "")
    if status == FAILED:  # even with a model.keras: it may be a diverged one
        error = str(meta.get("error", "see its output")).rstrip(".")
        raise RunError(f"{run.path}: training failed: {error}. Fix that and train again.")
    if not run.model.is_file():
        hint = (f" Training did not finish (status: {status}); continue it with "
                f"`cifar-cnn train --resume {run.path}`." if status else "")
        raise RunError(f"{run.path} has no {MODEL_FILE}.{hint}")
    return run


def default_run() -> Path:
    """The run directory of the packaged default model.

    Raises:
        RunError: if the package was installed without it.
    """
    path = Path(str(resources.files("cifar_cnn") / "pretrained" / DEFAULT_MODEL))
    if not (path / MODEL_FILE).is_file():
        raise RunError(f"The default model is missing from this installation ({path}). "
                       "Reinstall cifar-cnn, or give a run directory.")
    return path


def export_format(path: str | os.PathLike[str]) -> str | None:
    """"savedmodel", "litert" or "onnx" for an exported model at `path`, else None.

    `path` may be the SavedModel folder, the .tflite/.onnx file, or the folder
    `cifar-cnn export` wrote it into.
    """
    p = Path(path)
    if p.suffix.lower() in _EXPORT_SUFFIXES:
        return _EXPORT_SUFFIXES[p.suffix.lower()]
    if (p / SAVEDMODEL_FILE).is_file():
        return "savedmodel"
    for fmt, name in EXPORT_FILES.items():
        if (p / name).is_file():
            return fmt
    return None


@dataclass(frozen=True)
class Artifact:
    """A trained model, whatever form it takes, and where its description lives.

    Attributes:
        kind: "run" (a run directory), "keras" (a ``.keras`` file), "export" (written by
            ``cifar-cnn export``) or "packaged" (the default model inside the package).
        format: "keras", "savedmodel", "litert" or "onnx".
        model: the model file (or the SavedModel folder).
        run: the run directory whose metadata.json and calibration.json describe the
            model (None for an export, and for a ``.keras`` file without them beside it).
    """

    kind: str
    format: str
    model: Path
    run: RunDir | None = None

    @property
    def metadata_file(self) -> Path:
        """metadata.json: the run's, or the export's beside its model."""
        if self.run is not None:
            return self.run.metadata
        folder = self.model if self.format == "savedmodel" else self.model.parent
        return folder / (EXPORT_METADATA_FILE if self.kind == "export" else METADATA_FILE)

    def read_metadata(self) -> dict[str, Any]:
        """The metadata.json describing the model; ``{}`` if there is none."""
        f = self.metadata_file
        if not f.is_file():
            return {}
        try:
            return read_json(f)
        except (OSError, ValueError) as e:
            raise RunError(f"{f} is unreadable ({e}).") from e

    @property
    def name(self) -> str:
        """A short name: the run folder's, or the model file's stem."""
        if self.run is not None and self.kind in ("run", "packaged"):
            return self.run.name
        return self.model.stem if self.model.is_file() else self.model.name


def resolve_artifact(path: str | os.PathLike[str] | None = None) -> Artifact:
    """What a model argument is: a run directory, a ``.keras`` file (described by a
    metadata.json beside it, if any), an export (SavedModel folder, ``.tflite``/``.onnx``
    file or the folder holding one), or, for None, the packaged default model.

    Raises:
        RunError: if there is no model at `path`, saying what was expected.
    """
    if path is None:
        run = RunDir(default_run())
        return Artifact("packaged", "keras", run.model, run)
    p = Path(path)
    fmt = export_format(p)
    if fmt is not None:
        if fmt != "savedmodel" and p.is_dir():
            p = p / EXPORT_FILES[fmt]
        if not p.exists():
            raise RunError(f"No exported model at {p}.")
        return Artifact("export", fmt, p)
    if p.is_dir():
        run = RunDir(p)
        try:
            packaged = p.resolve() == default_run().resolve()
        except RunError:  # installed without the default model
            packaged = False
        if not run.model.is_file() or run.metadata.is_file():
            open_run(p)  # raises, saying why (missing, failed, unfinished)
        return Artifact("packaged" if packaged else "run", "keras", run.model, run)
    if not p.is_file():
        raise RunError(f"No trained model at {p}. Give a run directory written by "
                       "`cifar-cnn train`, a .keras model file, or an export.")
    beside = RunDir(p.parent)
    return Artifact("keras", "keras", p, beside if beside.metadata.is_file() else None)


def is_model_path(arg: str | os.PathLike[str]) -> bool:
    """Whether a command-line argument names a model (run, ``.keras`` file or export)
    rather than an image, a folder of images or a pattern."""
    p = Path(arg)
    if export_format(p) is not None:
        return True
    if p.is_dir():
        return (p / MODEL_FILE).is_file() or (p / METADATA_FILE).is_file()
    return p.suffix == ".keras"


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
