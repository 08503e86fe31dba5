"""Exceptions raised by cifar-cnn for problems a user can fix."""

from __future__ import annotations


class CifarCnnError(Exception):
    """Base class: a clear, user-facing problem (bad input, missing file, wrong setting)."""


class DataError(CifarCnnError):
    """A dataset source is missing, unreadable or not in a layout cifar-cnn understands."""


class RunError(CifarCnnError):
    """A run directory or model file is missing, incomplete or inconsistent."""


class WorkerLostError(RunError):
    """A worker of a multi-worker job stopped or cannot be reached; the job must be restarted."""


class ImageError(CifarCnnError):
    """An image file given for prediction could not be read."""


class ImageTooLargeError(ImageError):
    """An image has more pixels than allowed (checked before decoding it)."""


class ConfigError(CifarCnnError, ValueError):
    """A setting is invalid: an unknown recipe, model or augmentation, or an out-of-range value."""


class ExportParityError(CifarCnnError):
    """An exported model does not predict as its Keras model does; nothing was written."""

    def __init__(self, message: str, report: dict | None = None) -> None:
        super().__init__(message)
        self.report = report or {}
