"""`TrainConfig`: every option of a training run, in one typed place.

`cifar_cnn.train` takes it (or its fields as keyword arguments), the ``cifar-cnn train``
options are generated from its fields (their help, choices and flags live in each field's
metadata), and a run's metadata.json records it under ``"settings"``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifar_cnn.errors import ConfigError
from cifar_cnn.images import DEFAULT_RESIZE, RESIZE_POLICIES
from cifar_cnn.recipes import Recipe, get_recipe
from cifar_cnn.recipes.base import PRECISIONS
from cifar_cnn.runs import DOWNLOADABLE_DATA

# tf.distribute: one device, the devices of this machine, or several machines.
STRATEGIES = ("default", "mirrored", "multi-worker")
CLASS_WEIGHTS = ("balanced",)
BN_CHOICES = ("train", "frozen")
# Below this many training images, fine-tuning freezes batch-norm statistics by default.
SMALL_DATA = 10_000


def _devices(text: str) -> tuple[str, ...]:
    return tuple(d for d in text.split(",") if d)


def _option(default: Any, help: str, **cli: Any) -> Any:
    """A field with its command-line form: `help`, and ``flag``, ``choices``, ``type``,
    ``metavar``, ``action``/``const`` (for flags that set a value), ``dest`` where the default
    ``--field-name VALUE`` does not fit; ``cli=False`` keeps a field off the command line."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class TrainConfig:
    """What to train, on what, and where the run goes.

    Example:
        >>> config = TrainConfig(recipe="fast94", epochs=8, seed=1)
        >>> config.replace(seed=2).seed
        2
    """

    recipe: str | Recipe | None = _option(
        None, "named recipe (see `cifar-cnn models`; default: baseline on CIFAR, on your own "
        "images the recipe of the model they start from)")
    model: str | None = _option(None, "network name, overriding the recipe's")
    epochs: int | None = _option(
        None, "training epochs (default: the recipe's on CIFAR-sized data, else sized to the "
        "data: see the plan training prints)", type=int)
    batch_size: int | None = _option(
        None, "images per step (default: the recipe's on CIFAR-sized data, else sized to "
        "the data)", type=int)
    learning_rate: float | None = _option(
        None, "override the recipe's learning rate", type=float, flag="--lr")
    precision: str | None = _option(
        None, "override the recipe's precision policy (auto: mixed_bfloat16 where the CPU or "
        "GPU computes bfloat16 natively, else float32)", choices=PRECISIONS)
    data: str | os.PathLike[str] | Any | None = _option(
        None, "the images: a folder (DIR/train/<class>/ with optional val/ and test/, or "
        "DIR/<class>/) of any image files, the CIFAR-10 or CIFAR-100 archive or its "
        "extracted folder, or cifar10 / cifar100 to download it once (default: "
        "$CIFAR_CNN_DATA, else cifar10); in Python also a CifarData")
    val_size: int = _option(
        0, "hold out N training images (stratified) for validation and calibration; 0 "
        "monitors the test set, as the TF tutorial does", type=int)
    monitor_test: bool = _option(
        True, "without --val-size: do not evaluate the test set after each epoch (the "
        "fastest; used for timing)", flag="--no-monitor", action="store_false")
    calibration_size: int | None = _option(
        None, "without --val-size: training images held out to calibrate the probabilities "
        "after training (default: the recipe's, 1000; at most a tenth of the training set; "
        "0: none)", type=int)
    image_size: int | None = _option(
        None, "side of the model's square input; images of other sizes are brought to it by "
        "--resize (default: the data's own size for CIFAR and arrays; for a folder of "
        "photos 32, 48 or 64, the largest the photos' median short side reaches)", type=int)
    resize: str = _option(
        DEFAULT_RESIZE, "how an image of another shape is brought to the input size: crop "
        "(centre crop, then resize; default), squish or pad", choices=tuple(RESIZE_POLICIES))
    val_split: float = _option(
        0.2, "for an image folder without test/ (or val/): the share of each class held out "
        "(stratified, seeded) to evaluate on (default 0.2)", type=float)
    strict: bool = _option(
        False, "stop at the first unreadable image of an image folder instead of listing "
        "and skipping it", action="store_true")
    class_weight: str | None = _option(
        None, "balanced: weight each class's loss by the inverse of its share of the "
        "training images (for uneven classes)", choices=CLASS_WEIGHTS)
    init: str | None = _option(
        None, "start from trained weights: default (the packaged model), a run directory or "
        "a .keras file (its network, with the recipe's schedule; a new head for new "
        "classes), or none (from scratch). Default: the packaged model on images of your "
        "own, from scratch on CIFAR", metavar="MODEL")
    freeze_epochs: int | None = _option(
        None, "fine-tuning: train the head alone for the first N epochs (default: a fifth "
        "of the epochs; 0: none)", type=int, metavar="N")
    finetune_lr_mult: float = _option(
        0.1, "with --init: the recipe's learning rates are multiplied by this once the whole "
        "network trains (default 0.1)", type=float)
    bn: str | None = _option(
        None, "batch-norm statistics: train, or frozen (default: frozen when fine-tuning on "
        f"fewer than {SMALL_DATA:,} images, else train)", choices=BN_CHOICES)
    seed: int = _option(0, "random seed of weights, shuffling, augmentation and the "
                           "held-out splits (default 0)", type=int)
    runs_dir: str | os.PathLike[str] = _option("runs", "parent folder for runs (default runs/)")
    name: str | None = _option(None, "run folder name (default: the recipe's name, numbered "
                                     "if taken)")
    resume: str | os.PathLike[str] | None = _option(
        None, "continue an interrupted run from its last checkpoint; its other settings are "
        "read from its metadata.json", metavar="RUN")
    verbose: int | str = _option(
        "auto", "no progress output", flag="--quiet", action="store_const", const=0,
        dest="quiet")  # not "verbose": every command's --verbose shows TensorFlow's logs
    strategy: str = _option(
        "default", "tf.distribute: one device (default), all GPUs of this machine (mirrored), "
        "or several machines configured by TF_CONFIG (multi-worker; README: Training on "
        "several machines)", choices=STRATEGIES)
    devices: Sequence[str] = _option(
        (), "with --strategy mirrored: devices such as GPU:0,GPU:1 (more CPU:n than the "
        "machine has split its CPU, to try it out)", type=_devices, metavar="LIST")

    def __post_init__(self) -> None:
        object.__setattr__(self, "devices", tuple(self.devices))
        if isinstance(self.recipe, str):
            get_recipe(self.recipe)  # an unknown name fails here, before any data is read
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}. "
                              f"Received: strategy={self.strategy!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}. "
                              f"Received: precision={self.precision!r}")
        if self.val_size < 0:
            raise ConfigError(f"val_size must be >= 0. Received: val_size={self.val_size}")
        if not 0.0 <= self.val_split < 1.0:
            raise ConfigError(f"val_split must be in [0, 1). Received: val_split={self.val_split}")
        if self.image_size is not None and self.image_size < 8:
            raise ConfigError(f"image_size must be >= 8. Received: image_size={self.image_size}")
        if self.resize not in RESIZE_POLICIES:
            raise ConfigError(f"resize must be one of {', '.join(RESIZE_POLICIES)}. "
                              f"Received: resize={self.resize!r}")
        if self.class_weight not in (None, *CLASS_WEIGHTS):
            raise ConfigError(f"class_weight must be one of {', '.join(CLASS_WEIGHTS)}. "
                              f"Received: class_weight={self.class_weight!r}")
        if self.bn not in (None, *BN_CHOICES):
            raise ConfigError(f"bn must be one of {', '.join(BN_CHOICES)}. "
                              f"Received: bn={self.bn!r}")
        if self.freeze_epochs is not None and (
                self.freeze_epochs < 0 or (self.freeze_epochs and self.init == "none")):
            raise ConfigError("freeze_epochs must be >= 0, and needs init (the head is trained "
                              f"alone on top of trained weights). Received: freeze_epochs="
                              f"{self.freeze_epochs}, init={self.init!r}")
        if self.finetune_lr_mult <= 0:
            raise ConfigError("finetune_lr_mult must be > 0. Received: "
                              f"finetune_lr_mult={self.finetune_lr_mult}")

    @classmethod
    def from_options(cls, recipe: str | Recipe | TrainConfig | None = None,
                     **options: Any) -> TrainConfig:
        """A config from `train`'s arguments: a config, recipe or recipe name, and fields.

        Raises:
            ConfigError: for an option that is no field, naming the closest ones.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        for key in options:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=3)
                hint = f" Similar: {', '.join(close)}." if close else ""
                raise ConfigError(f"Unknown training option {key!r}.{hint} Options: "
                                  f"{', '.join(names)}.")
        if isinstance(recipe, TrainConfig):
            return recipe.replace(**options)
        return cls(recipe=recipe, **options)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with the given fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def recipe_name(self) -> str | None:
        """The recipe's name, or None when the run chooses it (see `training.plan`)."""
        return self.recipe if isinstance(self.recipe, str | None) else self.recipe.name

    def to_dict(self) -> dict[str, Any]:
        """The JSON form recorded in a run's metadata.json (paths as strings; data given as
        arrays is recorded as None)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["recipe"] = self.recipe_name
        d["devices"] = list(self.devices)
        for key in ("data", "runs_dir", "resume"):
            v = d[key]
            d[key] = str(Path(v).resolve()) if isinstance(v, str | os.PathLike) else None
        if self.data in DOWNLOADABLE_DATA and not Path(self.data).exists():
            d["data"] = self.data  # a name, not a path
        if self.init not in (None, "default", "none"):
            d["init"] = str(Path(self.init).resolve())
        return d


def cli_options() -> list[tuple[str, dict[str, Any]]]:
    """``(flag, argparse keyword arguments)`` for each `TrainConfig` field, in order; the
    destination of each is the field's name unless its metadata names another."""
    out = []
    for f in dataclasses.fields(TrainConfig):
        meta: Mapping[str, Any] = f.metadata
        if meta.get("cli") is False:
            continue
        kwargs: dict[str, Any] = {"dest": meta.get("dest", f.name), "help": meta["help"]}
        for key in ("choices", "type", "metavar", "action", "const"):
            if key in meta:
                kwargs[key] = meta[key]
        kwargs["default"] = f.default
        out.append((meta.get("flag", "--" + f.name.replace("_", "-")), kwargs))
    return out


def config_from_args(args: Any) -> TrainConfig:
    """The `TrainConfig` of parsed command-line arguments (see `cli_options`)."""
    dests = {f.name: f.metadata.get("dest", f.name) for f in dataclasses.fields(TrainConfig)
             if f.metadata.get("cli") is not False}
    return TrainConfig(**{name: getattr(args, dest) for name, dest in dests.items()})
