"""The run directory: the interface between training, evaluation, prediction and export.

::

    runs/<name>/
      model.keras      the trained model; takes raw RGB pixels (0..255)
      metadata.json    class names, input spec, recipe, seed, data fingerprint, versions, metrics
      history.csv      one row per epoch
      checkpoints/     what --resume needs (weights + optimiser state + epoch)
      tensorboard/     event files
      report/          written by `cifar-cnn evaluate`
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar_cnn.errors import RunError
from cifar_cnn.files import read_json, write_json

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
HISTORY_FILE = "history.csv"
CALIBRATION_FILE = "calibration.json"


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
        return self.path / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def report(self) -> Path:
        return self.path / "report"

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


def environment_info() -> dict[str, str]:
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
    }


def cpu_name() -> str:
    """The CPU model name with its family and model numbers, from /proc/cpuinfo if there.

    Virtual machines often report a bare "AMD EPYC"; the family/model numbers still tell the
    generations apart (family 25 is Zen 3/4, 26 is Zen 5), which matters for timings.
    """
    try:
        fields: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        if "model name" in fields:
            ids = ", ".join(f"{k} {fields[k]}" for k in ("cpu family", "model") if k in fields)
            return f"{fields['model name']} ({ids + '; ' if ids else ''}{os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
