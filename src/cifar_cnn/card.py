"""`ModelCard`: what a model knows about itself, typed, in one place.

Every model cifar-cnn handles (a run directory, a ``.keras`` file beside its metadata, an
export, the packaged model) is described by one card: its classes and input spec, the
network and the resolved recipe, the training settings and the plan the run chose, the
model it started from, calibration (a temperature per test-time augmentation mode), its
status and metrics, provenance, and for an export its format, quantization and baked
temperature. This module alone reads and writes it, as the model's ``metadata.json``
(with a ``schema_version``; files written before it are version 1 and read by the one
converter, `ModelCard.from_metadata`); everything else takes a `ModelCard`, as timm's
``pretrained_cfg`` travels with its model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifar_cnn.calibration import Calibration, read_calibration
from cifar_cnn.environment import environment_info
from cifar_cnn.errors import ConfigError, RunError
from cifar_cnn.images import DEFAULT_RESIZE, InputSpec
from cifar_cnn.recipes.base import Recipe
from cifar_cnn.runs import (
    COMPLETE,
    DOWNLOADABLE_DATA,
    RUNNING,
    Artifact,
    RunDir,
    resolve_artifact,
)
from cifar_cnn.tta import tta_mode

# 1: metadata.json before the card (no "schema_version"); 2: the card.
SCHEMA_VERSION = 2
# The card's entries in metadata.json, in the order they are written.
_KEYS = ("schema_version", "name", "status", "error", "class_names", "input", "recipe",
         "settings", "plan", "init", "dataset", "distribution", "environment", "epochs_done",
         "calibration", "train_seconds", "work", "resumed_from_epoch", "final_metrics",
         "provenance", "export")
# Entries GET /v1/model shows (settings, dataset, init and environment stay private: they
# hold paths and facts of the training host).
PUBLIC = ("class_names", "input", "recipe", "plan", "final_metrics", "calibration",
          "epochs_done", "provenance", "export")


@dataclass(frozen=True)
class ModelCard:
    """What a model is, how it was made and measured. Frozen: change one with `replace`.

    Attributes:
        name: the run's name (or the export's source run's).
        class_names: the classes, in the order of the model's outputs (also in `input`).
        input: what the model takes and how images are prepared for it.
        status: "running", "interrupted", "failed" or "complete" (an export: "complete").
        error: why a failed run failed, one line.
        recipe: the resolved recipe it was trained with (None: not recorded).
        settings: the training options as given and resolved (`TrainConfig.to_dict` and
            what the run decided: precision, monitor, calibration size, init).
        plan: what the run chose for the user and why (`cifar_cnn.training.plan.Plan`).
        init: the trained model it started from, and what was loaded.
        dataset: source, fingerprints and sizes of the data it was trained on.
        calibration: the temperatures fitted after training, or None.
        epochs_done, train_seconds, resumed_from_epoch, work, final_metrics: the training.
        provenance: how a packaged model was made and measured.
        environment: library versions, host and commit of the training.
        export: for an export, its format, quantization, baked temperature, source and
            parity (see `cifar_cnn.export`); None for a Keras model.
        distribution: the tf.distribute set-up of a distributed run.
        extra: entries of metadata.json the card does not know, kept as they are.
        schema_version: the version it was read from (written: `SCHEMA_VERSION`).
    """

    name: str
    input: InputSpec
    status: str = COMPLETE
    error: str | None = None
    recipe: Recipe | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    plan: Mapping[str, Any] | None = None
    init: Mapping[str, Any] | None = None
    dataset: Mapping[str, Any] = field(default_factory=dict)
    calibration: Calibration | None = None
    epochs_done: int | None = None
    train_seconds: float | None = None
    resumed_from_epoch: int | None = None
    work: Mapping[str, Any] | None = None
    final_metrics: Mapping[str, Any] | None = None
    provenance: Mapping[str, Any] | None = None
    environment: Mapping[str, Any] = field(default_factory=dict)
    export: Mapping[str, Any] | None = None
    distribution: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.input.class_names

    @property
    def _recipe(self) -> Mapping[str, Any]:
        """The recipe's fields, also of one recorded in part (kept in `extra`)."""
        return self.recipe.to_dict() if self.recipe is not None else (
            self.extra.get("recipe") or {})

    @property
    def recipe_name(self) -> str | None:
        return self._recipe.get("name")

    @property
    def default_tta(self) -> str | None:
        """The test-time augmentation the model is used with by default (its recipe's; an
        export runs without)."""
        if self.export is not None:
            return None
        return tta_mode(self._recipe.get("tta", False))

    @property
    def temperatures(self) -> dict[str, float]:
        """TTA key -> temperature, fitted after training (empty without calibration)."""
        return dict(self.calibration.temperatures) if self.calibration else {}

    @property
    def baked_temperature(self) -> float | None:
        """The temperature an export applies in its graph, or None."""
        out = (self.export or {}).get("output") or {}
        return out.get("temperature") if out.get("calibrated") else None

    @property
    def network(self) -> str | None:
        """The registered network the model was built by."""
        return self._recipe.get("model")

    @property
    def seed(self) -> int:
        return int(self.settings.get("seed", 0))

    @property
    def monitor(self) -> str:
        """What was scored each epoch: "validation", "test" or "none"."""
        return str(self.settings.get("monitor", "none"))

    @property
    def val_size(self) -> int:
        return int(self.settings.get("val_size") or 0)

    @property
    def data(self) -> str | None:
        """The data the run was trained on, as recorded (a path or a download name)."""
        return self.settings.get("data")

    def recorded_data(self, data: Any = None) -> Any:
        """The data to use with this model: `data` if given, else the path it was trained
        on if it still exists, else None (the default source). The one rule for resume,
        evaluate and export."""
        if data is not None:
            return data
        recorded = self.data
        if recorded in DOWNLOADABLE_DATA and not Path(recorded).exists():
            return recorded  # "cifar10", "cifar100": the official archive, downloaded once
        return recorded if recorded and Path(recorded).exists() else None

    def replace(self, **changes: Any) -> ModelCard:
        """A copy with the given fields changed."""
        return dataclasses.replace(self, **changes)

    # --- metadata.json ---------------------------------------------------------------

    def to_metadata(self) -> dict[str, Any]:
        """The metadata.json form (`SCHEMA_VERSION`); `from_metadata` reads it back."""
        d: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION, "name": self.name, "status": self.status,
            "error": self.error, "class_names": list(self.class_names),
            "input": self.input.to_metadata(),
            "recipe": self.recipe.to_dict() if self.recipe is not None else None,
            "settings": dict(self.settings), "plan": self.plan, "init": self.init,
            "dataset": dict(self.dataset), "distribution": self.distribution,
            "environment": dict(self.environment), "epochs_done": self.epochs_done,
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "train_seconds": self.train_seconds, "work": self.work,
            "resumed_from_epoch": self.resumed_from_epoch,
            "final_metrics": self.final_metrics, "provenance": self.provenance,
            "export": self.export}
        if self.export is not None:  # an export's card says only what it is
            for key in ("settings", "dataset", "epochs_done", "status"):
                d.pop(key)
        out = {k: d[k] for k in _KEYS if k in d and (d[k] is not None or k == "recipe")}
        if out.get("recipe") is None:
            out.pop("recipe", None)
        return {**out, **self.extra}

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], *, name: str = "model",
                      model_shape: Sequence[int | None] | None = None,
                      num_classes: int | None = None,
                      default_class_names: Sequence[str] = ()) -> ModelCard:
        """A card from metadata.json of any version: the one reader (and converter).

        Version 1 (before the card) is the same entries without ``schema_version``;
        exports of version 1 kept their format, quantization, output, source, parity and
        signatures at the top level, read here into `export`.

        Args:
            name: the name when the file records none (the model file's stem).
            model_shape: the model's input shape ``(batch, H, W, C)``; it wins over the
                metadata, which older runs may lack.
            num_classes: the model's number of outputs, for a model without class names:
                `default_class_names` if it has that many, else ``class_0``, ``class_1``...

        Raises:
            RunError: for a file newer than this version of cifar-cnn reads.
        """
        version = int(meta.get("schema_version", 1))
        if version > SCHEMA_VERSION:
            raise RunError(f"metadata.json of {meta.get('name', name)} has schema version "
                           f"{version}; this cifar-cnn reads up to {SCHEMA_VERSION}. Upgrade "
                           "cifar-cnn.")
        rest = dict(meta)
        rest.pop("schema_version", None)
        export = rest.pop("export", None)
        if version == 1 and "format" in rest:  # an export of version 1
            export = {k: rest.pop(k) for k in ("format", "quantization", "model_file",
                                                "output", "source", "parity", "signatures",
                                                "serve_bytes") if k in rest}
        spec = _input_spec(rest.pop("input", None) or {}, rest.pop("class_names", None),
                           model_shape, num_classes, default_class_names)
        recipe = rest.pop("recipe", None)
        calibration = rest.pop("calibration", None)
        known = {f.name for f in dataclasses.fields(cls)} - {"input", "recipe", "calibration",
                                                              "export", "extra",
                                                              "schema_version"}
        fields = {k: rest.pop(k) for k in list(rest) if k in known}
        fields.setdefault("name", str(meta.get("name") or name))
        parsed = None
        if isinstance(recipe, Mapping) and recipe:
            try:
                parsed = Recipe.from_dict(recipe)
            except (TypeError, ValueError, ConfigError):  # written by hand, in part: kept
                rest["recipe"] = recipe
        return cls(input=spec, recipe=parsed,
                   calibration=Calibration.from_dict(calibration) if calibration else None,
                   export=export, extra=rest, schema_version=version, **fields)

    def fitted_to(self, model_shape: Sequence[int | None], num_classes: int, *,
                  default_class_names: Sequence[str] = ()) -> ModelCard:
        """The card with the input shape of the model itself (it wins over the metadata,
        which older runs may lack) and, for a model without class names, `num_classes`
        names (see `from_metadata`)."""
        spec = _input_spec(self.input.to_metadata(), list(self.class_names), model_shape,
                           num_classes, default_class_names)
        return self.replace(input=spec)

    def public(self) -> dict[str, Any]:
        """The entries GET /v1/model shows (see `PUBLIC`)."""
        d = self.to_metadata()
        return {k: d[k] for k in PUBLIC if k in d}


def _input_spec(recorded: Mapping[str, Any], names: Sequence[str] | None,
                model_shape: Sequence[int | None] | None, num_classes: int | None,
                default_class_names: Sequence[str]) -> InputSpec:
    h, w, c = (recorded.get("shape") or [32, 32, 3])[:3]
    if model_shape is not None and None not in tuple(model_shape)[1:4]:
        h, w, c = (int(d) for d in tuple(model_shape)[1:4])
    if not names and num_classes is not None:
        names = (default_class_names if len(default_class_names) == num_classes
                 else [f"class_{i}" for i in range(num_classes)])
    return InputSpec(int(h), int(w), int(c), recorded.get("resize", DEFAULT_RESIZE),
                     tuple(names or ()))


def new_run_card(run: RunDir, *, input_spec: InputSpec, recipe: Recipe,
                 settings: Mapping[str, Any], dataset: Mapping[str, Any],
                 plan: Mapping[str, Any] | None = None) -> ModelCard:
    """The card of a run about to start training."""
    return ModelCard(run.name, input_spec, status=RUNNING, recipe=recipe,
                     settings=dict(settings), plan=plan, dataset=dict(dataset),
                     environment=environment_info(), epochs_done=0)


def read_card(artifact: Artifact, *, model_shape: Sequence[int | None] | None = None,
              num_classes: int | None = None,
              default_class_names: Sequence[str] = ()) -> ModelCard:
    """The card of a model (see `resolve_artifact`): its metadata.json, with a run's
    calibration.json; a bare model file gets a card of its name and input alone.

    Raises:
        RunError: if a file is unreadable.
    """
    card = ModelCard.from_metadata(artifact.read_metadata(), name=artifact.name,
                                   model_shape=model_shape, num_classes=num_classes,
                                   default_class_names=default_class_names)
    if artifact.kind == "export":  # served and reported by its own name
        return card.replace(name=artifact.name)
    calibration = (read_calibration(artifact.run.calibration) if artifact.run is not None
                   else None)
    return card.replace(calibration=calibration)


def load_card(path: str | Path | None = None) -> ModelCard:
    """The `ModelCard` of a run directory, a ``.keras`` file, an export or (None) the
    packaged model, without loading the model.

    Raises:
        RunError: if there is no model there, or its metadata is unreadable.

    Example:
        >>> card = cifar_cnn.load_card()  # the packaged model  # doctest: +SKIP
        >>> card.class_names[:2], card.input.shape, card.default_tta  # doctest: +SKIP
        (('airplane', 'automobile'), (32, 32, 3), 'flip_translate')
    """
    return read_card(resolve_artifact(path))


def read_run_card(run: RunDir) -> ModelCard:
    """The card of a run directory (its metadata.json and calibration.json).

    Raises:
        RunError: if it is missing or unreadable.
    """
    return ModelCard.from_metadata(run.read_metadata(), name=run.name).replace(
        calibration=read_calibration(run.calibration))


def write_run_card(run: RunDir, card: ModelCard) -> None:
    """Write a run's metadata.json from its card."""
    run.write_metadata(card.to_metadata())


def start_run(run: RunDir, card: ModelCard) -> ModelCard:
    """Record a run that has started (or resumed) training; returns its card."""
    card = card.replace(status=RUNNING, error=None)
    write_run_card(run, card)
    return card


def stop_run(run: RunDir, card: ModelCard, status: str, error: str | None = None) -> ModelCard:
    """Record that training stopped: "interrupted", "failed" (with the one-line `error`) or
    "complete"; returns the card written."""
    card = card.replace(status=status, error=error)
    write_run_card(run, card)
    return card


def resumable_run(path: str | Path) -> tuple[RunDir, ModelCard]:
    """An unfinished run directory and its card, for ``train --resume``.

    Raises:
        RunError: if it is missing, unreadable or already complete.
    """
    run = RunDir(Path(path))
    card = read_run_card(run)
    if card.status == COMPLETE:
        raise RunError(f"{run.path} has already finished training ({card.epochs_done} "
                       "epochs); start a new run instead of --resume.")
    if card.recipe is None:
        raise RunError(f"{run.metadata} records no recipe; it cannot be resumed.")
    return run, card
