"""A recipe: everything that defines a training run, readable in one place."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cifar_cnn.errors import ConfigError
from cifar_cnn.tta import tta_mode

_RECIPES: dict[str, Recipe] = {}
LR_SCHEDULES = ("constant", "warmup_cosine", "linear")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
PER_IMAGE = "_per_image"  # suffix of optimizer options given per image (see build_optimizer)


@dataclass(frozen=True)
class Recipe:
    """Model + optimiser + schedule + epochs + augmentation + precision + TTA + calibration.

    Every field is plain data so the resolved recipe can be written to metadata.json and a
    run can be rebuilt from it (``Recipe.from_dict``).
    """

    name: str
    model: str
    epochs: int
    batch_size: int
    optimizer: str = "adam"  # a Keras optimizer name, or "muon_sgd" (see training.optimizers)
    learning_rate: float = 1e-3
    # "constant", "warmup_cosine" (linear warmup, then cosine decay to 0) or "linear" (to 0)
    lr_schedule: str = "constant"
    warmup_fraction: float = 0.0  # share of all steps spent warming up from lr/10 to lr
    # Keyword arguments of the optimizer. A key ending in "_per_image" (a number, or a dict of
    # numbers) is multiplied by the batch size and passed without the suffix, so that rates
    # set per image (as for a summed loss) stay right for any --batch-size.
    optimizer_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    label_smoothing: float = 0.0
    augmentation: str | None = None  # see cifar_cnn.data.augment
    augmentation_options: dict[str, Any] = field(default_factory=dict)  # ditto
    # Progressive resizing: ((side, until), ...) trains on side x side images until that
    # fraction of the epochs is done, e.g. ((16, 0.25), (24, 0.625)): 16 px for the first
    # quarter, then 24 px until 62.5%, then full size (see `epoch_sizes`). Smaller images
    # cost less work (quadratically) where most of the early learning happens. "crop" takes
    # a random window at the original scale, "resize" downscales the whole image. Needs the
    # "alternating_flip_translate" augmentation and a network that takes any image size.
    train_sizes: tuple[tuple[int, float], ...] = ()
    train_size_mode: str = "crop"
    # A Keras dtype policy ("float32", "mixed_bfloat16", "mixed_float16"), or "auto":
    # mixed_bfloat16 where the hardware computes bfloat16 natively, else float32 (resolved
    # when training starts; see cifar_cnn.training.precision).
    precision: str = "float32"
    # Test-time augmentation at evaluation / prediction: False, "flip" (True means the same)
    # or "flip_translate" (flips of the image and of two 1-pixel shifts of it).
    tta: bool | str = False
    # Training images held out (stratified) to fit the calibration temperature after
    # training, so that predicted probabilities are honest by default; 0: none. A
    # validation split (--val-size), when given, is used instead.
    calibration_size: int = 1000
    description: str = ""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1. Received: epochs={self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1. Received: batch_size={self.batch_size}")
        if self.learning_rate <= 0:
            raise ConfigError(
                f"learning_rate must be > 0. Received: learning_rate={self.learning_rate}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}. "
                              f"Received: lr_schedule={self.lr_schedule!r}")
        tta_mode(self.tta)  # raises ConfigError for an unknown mode
        if self.calibration_size < 0:
            raise ConfigError("calibration_size must be >= 0. "
                              f"Received: calibration_size={self.calibration_size}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ConfigError("warmup_fraction must be in [0, 1). "
                              f"Received: warmup_fraction={self.warmup_fraction}")
        untils = [until for _, until in self.train_sizes]
        if untils != sorted(untils) or not all(0 < u <= 1 for u in untils) or any(
                side < 8 for side, _ in self.train_sizes):
            raise ConfigError("train_sizes must be (side >= 8, until) pairs with fractions "
                              "of the epochs that grow, each in (0, 1]. Received: "
                              f"train_sizes={self.train_sizes}")
        if self.train_sizes and self.augmentation != "alternating_flip_translate":
            raise ConfigError("train_sizes (progressive resizing) needs the "
                              "'alternating_flip_translate' augmentation. Received: "
                              f"augmentation={self.augmentation!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}. "
                              f"Received: precision={self.precision!r}")

    def with_rates_scaled(self, factor: float) -> Recipe:
        """A copy with every learning rate (`learning_rate` and each optimizer option whose
        name holds "learning_rate") multiplied by `factor`: fine-tuning's lower rates."""
        def scale(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: scale(v) for k, v in value.items()}
            return value * factor

        options = {k: scale(v) if "learning_rate" in k else v
                   for k, v in self.optimizer_options.items()}
        return dataclasses.replace(self, learning_rate=self.learning_rate * factor,
                                   optimizer_options=options)

    @property
    def tta_mode(self) -> str | None:
        """The test-time augmentation as a name ("flip", "flip_translate") or None."""
        return tta_mode(self.tta)

    def epoch_sizes(self, full: int) -> list[int]:
        """The training image side in each epoch: `train_sizes`' schedule, then `full`.

        An epoch ``e`` (from 0) uses the first size whose ``until`` fraction of the epochs
        has not been reached (``e < round(until * epochs)``), so the schedule keeps its
        proportions when ``--epochs`` changes.
        """
        return [next((side for side, until in self.train_sizes
                      if e < round(until * self.epochs)), full)
                for e in range(self.epochs)]

    def learning_rate_for(self, steps_per_epoch: int) -> float | Any:
        """The optimizer's learning rate: a float, or a Keras schedule over all steps."""
        if self.lr_schedule == "constant":
            return self.learning_rate
        import keras

        total = self.epochs * steps_per_epoch
        if self.lr_schedule == "linear":
            return keras.optimizers.schedules.PolynomialDecay(
                self.learning_rate, decay_steps=total, end_learning_rate=0.0, power=1.0)
        warmup = int(total * self.warmup_fraction)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=self.learning_rate / 10 if warmup else self.learning_rate,
            decay_steps=max(1, total - warmup), alpha=0.0,
            warmup_target=self.learning_rate if warmup else None, warmup_steps=warmup)

    def build_optimizer(self, steps_per_epoch: int) -> Any:
        """The Keras optimizer, its learning rate scheduled over all steps.

        Options named ``*_per_image`` are multiplied by ``batch_size`` (see
        `optimizer_options`). An option ``stop_after_epochs`` (``{variable path substring:
        epochs}``) of `MuonSGD` is converted to steps here.
        """
        import keras

        from cifar_cnn.optimizers import MuonSGD  # imports Keras: only when training

        options = self.resolved_optimizer_options()
        lr = self.learning_rate_for(steps_per_epoch)
        if self.optimizer == "muon_sgd":
            stop = options.pop("stop_after_epochs", {})
            return MuonSGD(lr, stop_after_steps={k: int(v * steps_per_epoch)
                                                 for k, v in stop.items()}, **options)
        return keras.optimizers.get({"class_name": self.optimizer,
                                     "config": {"learning_rate": lr, **options}})

    def resolved_optimizer_options(self) -> dict[str, Any]:
        """`optimizer_options` with the ``*_per_image`` ones scaled to this batch size."""
        options = {}
        for key, value in self.optimizer_options.items():
            if key.endswith(PER_IMAGE):
                key = key[:-len(PER_IMAGE)]
                value = ({k: v * self.batch_size for k, v in value.items()}
                         if isinstance(value, dict) else value * self.batch_size)
            options[key] = value
        return options

    def replace(self, **changes: Any) -> Recipe:
        """A copy with the given fields changed; ``None`` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: _tuples(v) for k, v in d.items() if k in known}  # JSON made tuples lists
        if "train_sizes" in d:
            d["train_sizes"] = tuple((int(side), float(u)) for side, u in d["train_sizes"])
        return cls(**d)


def _tuples(value: Any) -> Any:
    """`value` with every list, also inside dicts, turned back into a tuple."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def register_recipe(recipe: Recipe | Callable[[], Recipe]) -> Recipe:
    """Register a recipe under its name and return it."""
    r = recipe() if callable(recipe) else recipe
    if r.name in _RECIPES:
        raise ConfigError(f"A recipe named {r.name!r} is already registered.")
    _RECIPES[r.name] = r
    return r


def get_recipe(name: str) -> Recipe:
    """Look a recipe up by name.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    if name not in _RECIPES:
        raise ConfigError(f"Unknown recipe {name!r}. Known recipes: {', '.join(list_recipes())}.")
    return _RECIPES[name]


def list_recipes() -> list[str]:
    """Names of the registered recipes."""
    return sorted(_RECIPES)
