"""The plan of a run: what it starts from, the image size, the batch and the length,
chosen for the data at hand and printed before training.

The registered recipes were written for CIFAR-10's 50,000 images. On a folder of a few
thousand photos the same batch of 2,000 makes one optimizer step an epoch, and 12 epochs
are 12 steps: far too few. So a run on fewer images than the recipe was written for keeps
the recipe's rates per image and its schedule's shape, and sizes its batch and epochs to
the data (`size_schedule`); on photos larger than CIFAR's it trains at a larger side
(`image_size_for`); on classes of its own it starts from the packaged model
(`choose_start`), training the new head alone first. Each rule and the measurements behind
it: benchmarks/README.md, "Own photos". Every choice is printed (`Plan.describe`) and
recorded in the run's card under ``"plan"``; ``--epochs``, ``--batch-size``,
``--image-size``, ``--init`` and ``--freeze-epochs`` override them.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cifar_cnn.data import DataInfo
from cifar_cnn.errors import ConfigError, RunError
from cifar_cnn.recipes import Recipe, get_recipe, list_recipes
from cifar_cnn.training.config import TrainConfig
from cifar_cnn.training.finetune import InitSource, init_source

# The size the registered recipes were written (and measured) for: CIFAR-10's training set
# less what a run holds out (5,000 for validation at most). At or above it a run keeps the
# recipe's batch and epochs exactly.
RECIPE_SCALE = 45_000
# A batch is about this fraction of the training set (rounded down to a power of two,
# between MIN_BATCH and the recipe's): enough steps per epoch for the schedule to act on.
BATCH_FRACTION = 1 / 10
MIN_BATCH = 32
# Optimizer steps a run makes at least from scratch; starting from trained weights, a step
# per `IMAGES_PER_STEP` training images between `MIN_STEPS_FINETUNE` and the scratch figure
# (a few hundred photos need few steps: the features are there; 5,000 images of new
# classes gained 1.1 points from 152 to 418 steps, as many as from scratch).
MIN_STEPS_SCRATCH = 400
MIN_STEPS_FINETUNE = 150
IMAGES_PER_STEP = 12
# ... but never more than this many passes over the data (small sets overfit, and the
# clock runs), nor fewer than the recipe's own epochs.
MAX_EPOCHS = 100
# Fine-tuning trains the new head alone for this share of the epochs first (at least one):
# random head gradients would otherwise pull the trained features around (LP-FT, Kumar et
# al. 2022; fastai's fine_tune freezes for an epoch).
FREEZE_FRACTION = 0.2
# Image sides a photo folder may train at, and the photos' median short side each needs.
IMAGE_SIDES = (32, 48, 64)
# Training throughput as a share of the host's dense matmul speed in the run's precision
# (measured: fast94's step on a 2-core AMD EPYC ran at about 0.8 of its bfloat16 matmul).
MATMUL_EFFICIENCY = 0.8


def _pow2_floor(x: float) -> int:
    return 2 ** max(0, math.floor(math.log2(max(x, 1.0))))


def finetune_steps(num_train: int) -> int:
    """The steps fine-tuning makes at least on `num_train` images."""
    return min(MIN_STEPS_SCRATCH, max(MIN_STEPS_FINETUNE, num_train // IMAGES_PER_STEP))


def size_schedule(r: Recipe, num_train: int, *, fine_tune: bool) -> tuple[int, int]:
    """``(batch size, epochs)`` for `r` on `num_train` images.

    The recipe's own at `RECIPE_SCALE` images and above. Below: a batch of about a tenth of
    the images (a power of two, `MIN_BATCH` to the recipe's), and enough epochs for
    `MIN_STEPS_SCRATCH` steps, at least the recipe's; fine-tuning, enough for
    `finetune_steps`, however few epochs that is. At most `MAX_EPOCHS`.
    """
    if num_train >= RECIPE_SCALE:
        return r.batch_size, r.epochs
    batch = min(r.batch_size, max(MIN_BATCH, _pow2_floor(num_train * BATCH_FRACTION)))
    batch = min(batch, num_train)
    steps_per_epoch = max(1, num_train // batch)
    if fine_tune:  # the features are there: the steps decide, not the recipe's epochs
        return batch, min(MAX_EPOCHS, math.ceil(finetune_steps(num_train) / steps_per_epoch))
    epochs = math.ceil(MIN_STEPS_SCRATCH / steps_per_epoch)
    return batch, min(max(MAX_EPOCHS, r.epochs), max(r.epochs, epochs))


def image_size_for(short_sides: Sequence[int]) -> int:
    """The side to train photos at: the largest of `IMAGE_SIDES` that the photos' median
    short side reaches (32 for CIFAR-sized images; never an upscale of most photos)."""
    if not short_sides:
        return IMAGE_SIDES[0]
    median = sorted(short_sides)[len(short_sides) // 2]
    return max([s for s in IMAGE_SIDES if s <= median] or [IMAGE_SIDES[0]])


@functools.cache
def matmul_gflops(dtype: str = "float32", size: int = 1024, repeats: int = 8) -> float:
    """This machine's dense matmul speed in GFLOP/s for `dtype` (TensorFlow; cached)."""
    import tensorflow as tf

    a = tf.cast(tf.random.stateless_normal((size, size), seed=(0, 0)), dtype)
    matmul = tf.function(lambda: tf.matmul(a, a))
    matmul().numpy()
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = matmul()
    out.numpy()
    return 2 * size**3 * repeats / (time.perf_counter() - t0) / 1e9


# Per run (building, tracing, the whitening's data) and per epoch (checkpoint, logs).
START_SECONDS = 5.0
EPOCH_SECONDS = 0.2


def estimate_seconds(train_flops: float, precision: str, *, epochs: int,
                     eval_flops: float = 0.0) -> float:
    """Training seconds on this machine: `train_flops` at `MATMUL_EFFICIENCY` of its matmul
    speed, the monitored split's forward passes (`eval_flops`) at twice that, and fixed
    costs per run and epoch."""
    dtype = "bfloat16" if "bfloat16" in precision else "float32"
    rate = MATMUL_EFFICIENCY * matmul_gflops(dtype) * 1e9
    return START_SECONDS + EPOCH_SECONDS * epochs + train_flops / rate + eval_flops / (2 * rate)


@dataclass(frozen=True)
class Plan:
    """What a run chose for the user, and why (printed before training, recorded in
    metadata.json under ``"plan"``).

    Attributes:
        num_train: training images.
        image_size: side of the model's input.
        batch_size, epochs, steps: the training length (``steps`` in all).
        init: what the network starts from: "default" (the packaged model), a path, or None.
        seconds: the estimated training time on this machine, or None.
        chosen: for each of image_size, batch_size, epochs and init, what decided it: "the
            data" (a rule of this module), "the recipe", or the option that set it.
        notes: one line each for the choices worth a sentence.
    """

    num_train: int
    image_size: int
    batch_size: int
    epochs: int
    steps: int
    init: str | None = None
    seconds: float | None = None
    chosen: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    freeze_epochs: int = 0

    def describe(self) -> str:
        """One line, e.g. ``"2,400 images at 64x64: batch 256, 16 epochs = 144 steps,
        about 4 min"``, then the notes."""
        when = ""
        if self.seconds is not None:
            when = (f", about {max(1, round(self.seconds / 60))} min" if self.seconds >= 90
                    else f", about {max(5, round(self.seconds, -1)):.0f} s")
        epochs = f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}"
        steps = f"{self.steps:,} step{'s' if self.steps != 1 else ''}"
        head = (f" (the new head alone for the first {self.freeze_epochs})"
                if self.freeze_epochs else "")
        line = (f"Plan: {self.num_train:,} images at {self.image_size}x{self.image_size}: "
                f"batch {self.batch_size}, {epochs} = {steps}{head}{when}")
        overridden = [f"--{k.replace('_', '-')}" for k, v in self.chosen.items()
                      if v.startswith("--") and k in ("image_size", "batch_size", "epochs",
                                            "freeze_epochs")]
        if overridden:
            line += f" ({', '.join(overridden)} as given)"
        return "\n".join([line, *self.notes])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        if self.seconds is not None:
            d["seconds"] = round(self.seconds, 1)
        return d


@dataclass
class Start:
    """What a new run starts from: its recipe (the network of the model it starts from),
    that model or None, and what decided each (see `Plan.chosen`)."""

    recipe: Recipe
    source: InitSource | None
    chosen: dict[str, str]
    notes: list[str]


def _head_free_shapes(model: str, options: dict[str, Any]) -> list[tuple[int, ...]]:
    """The weight shapes of a network (at 32x32, 2 classes), but its head's."""
    from cifar_cnn.models import create_model

    net = create_model(model, num_classes=2, input_shape=(32, 32, 3), **options)
    return [tuple(w.shape) for w in net.weights][:-1]


def _same_network(r: Recipe, source: InitSource) -> bool:
    """Whether `source`'s weights load fully into `r`'s network (the head aside)."""
    if source.network != r.model:
        return False
    if source.model_options == r.model_options:
        return True
    return (_head_free_shapes(r.model, r.model_options)
            == _head_free_shapes(r.model, source.model_options))


def _check_fits(r: Recipe, source: InitSource) -> None:
    """Raise unless `source`'s weights (its head aside) have the shapes of `r`'s network."""
    import keras

    trained = keras.saving.load_model(source.model_file, compile=False, safe_mode=True)
    theirs = [tuple(w.shape) for w in trained.weights][:-1]
    if theirs != _head_free_shapes(r.model, r.model_options):
        raise ConfigError(f"--init {source.model_file} records no network, and its weights "
                          f"do not fit {_network(r)} (they differ in number or shape). Give "
                          "the recipe (or --model) it was trained with, or train from scratch "
                          "with --init none.")


def _network(r: Recipe) -> str:
    options = ", ".join(f"{k}={v}" for k, v in sorted(r.model_options.items()))
    return f"{r.model}({options})" if options else r.model


def choose_start(config: TrainConfig, info: DataInfo) -> Start:
    """The recipe and trained model a new run starts from.

    Without ``--init``, a run on data of its own (not CIFAR, and not the packaged model's
    own classes) starts from the packaged model when the recipe's network is that model's
    (or no recipe was given: then the recipe is the one the packaged model was trained
    with); CIFAR data trains the recipe from scratch, ``baseline`` when none was given.
    ``--init MODEL`` (and the default) takes the network and its options from MODEL, with
    the recipe's schedule.

    Raises:
        ConfigError: ``--model`` names another network than ``--init``'s.
    """
    chosen: dict[str, str] = {}
    notes: list[str] = []
    given = None if config.recipe is None else (
        get_recipe(config.recipe) if isinstance(config.recipe, str) else config.recipe)
    if given is not None:
        given = given.replace(model=config.model)
    try:
        packaged: InitSource | None = init_source("default")
    except RunError:  # installed without the packaged model
        packaged = None
    # CIFAR itself, or the packaged model's own classes: what the recipes were written for.
    cifar = info.is_cifar or (packaged is not None
                              and tuple(info.class_names) == packaged.class_names)
    source: InitSource | None = None
    if config.init == "none":
        chosen["init"] = "--init"
    elif config.init is not None:
        source = init_source(config.init)
        chosen["init"] = "--init"
    elif not info.is_cifar and packaged is not None:
        chosen["init"] = "the data"
        if cifar:
            notes.append("Training from scratch: the data has the packaged model's own "
                         "classes (CIFAR-10's); --init default fine-tunes it.")
        elif given is not None and (config.model is not None
                                    or not _same_network(given, packaged)):
            notes.append(f"Training from scratch: {_network(given)} is not the packaged "
                         f"model's network ({packaged.network}); --init default would train "
                         f"{given.name}'s schedule on that network.")
        else:
            source = packaged
            notes.append(f"Starting from the packaged model ({packaged.recipe}, trained on "
                         f"CIFAR-10's {len(packaged.class_names)} classes) with a new head for "
                         f"your {len(info.class_names)}; --init none trains from scratch.")
    if given is not None:
        r, chosen["recipe"] = given, "--recipe"
    elif source is not None and source.recipe in list_recipes():
        r, chosen["recipe"] = get_recipe(source.recipe), "the model"
    elif not cifar:  # data of its own: the recipe the packaged model was trained with
        name = packaged.recipe if packaged is not None else None
        r, chosen["recipe"] = get_recipe(name if name in list_recipes() else "fast94"), "the data"
    else:
        r, chosen["recipe"] = get_recipe("baseline"), "the data"
    if source is None:
        if config.freeze_epochs:
            raise ConfigError("freeze_epochs trains the head alone on top of trained "
                              "weights, and this run starts from scratch; give --init. "
                              f"Received: freeze_epochs={config.freeze_epochs}, "
                              f"init={config.init!r}")
        r = r.replace(model=config.model)
    elif source.network is None:  # a bare .keras file: it must be the recipe's network
        _check_fits(r, source)
    else:
        if config.model is not None and config.model != source.network:
            raise ConfigError(f"--model {config.model} and --init {config.init} disagree: "
                              f"the model to start from is a {source.network!r} network. "
                              "Drop --model, or train from scratch with --init none.")
        if (r.model, r.model_options) != (source.network, source.model_options):
            mine = r.replace(model=source.network, model_options=source.model_options)
            notes.append(f"Network: {_network(mine)}, the one of the model started from, "
                         f"with {r.name}'s schedule (it builds {_network(r)}).")
            r = mine
    return Start(r, source, chosen, notes)


def choose_image_size(config: TrainConfig, info: DataInfo) -> tuple[int, str, str | None]:
    """The input side: ``--image-size``, else `image_size_for` the photos of a folder, else
    the arrays' own side; with what decided it and a note for a chosen photo size."""
    if config.image_size is not None:
        return config.image_size, "--image-size", None
    if info.short_sides:
        side = image_size_for(info.short_sides)
        median = sorted(info.short_sides)[len(info.short_sides) // 2]
        note = (f"Image size {side}: the photos' median short side is {median} px "
                "(--image-size to change)") if side != IMAGE_SIDES[0] else None
        return side, "the data", note
    return info.image_side or IMAGE_SIDES[0], "the data", None


def size_run(r: Recipe, num_train: int, config: TrainConfig, *, fine_tune: bool,
             image_size: int, chosen: dict[str, str], notes: Sequence[str],
             init: str | None, seconds: Any = None) -> tuple[Recipe, Plan]:
    """The recipe with its batch and epochs for `num_train` images (`size_schedule` for a
    recipe named or chosen; a `Recipe` object's own; ``--batch-size`` / ``--epochs`` as
    given), and the `Plan` that says so.

    Args:
        seconds: a function of the sized recipe returning its estimated seconds, or None.
    """
    # A `Recipe` built in Python is taken as it is: its batch and epochs were chosen.
    sized = num_train < RECIPE_SCALE and not isinstance(config.recipe, Recipe)
    batch, epochs = (size_schedule(r, num_train, fine_tune=fine_tune) if sized
                     else (r.batch_size, r.epochs))
    rule = "the data" if sized else "the recipe"
    chosen = {**chosen, "batch_size": rule, "epochs": rule}
    notes = list(notes)
    if config.batch_size is not None:
        batch, chosen["batch_size"] = config.batch_size, "--batch-size"
        if config.epochs is None and sized:
            epochs = size_schedule(r.replace(batch_size=batch), num_train,
                                   fine_tune=fine_tune)[1]
    if batch > num_train:  # per-image rates follow the batch
        notes.append(f"Batch size {batch} is more than the {num_train} training images: "
                     f"using {num_train}.")
        batch = num_train
    if config.epochs is not None:
        epochs, chosen["epochs"] = config.epochs, "--epochs"
    r = r.replace(batch_size=batch, epochs=epochs)
    freeze = 0
    if fine_tune:
        freeze = (config.freeze_epochs if config.freeze_epochs is not None
                  else max(1, round(FREEZE_FRACTION * epochs)) if epochs > 1 else 0)
        freeze = min(freeze, epochs)
        chosen["freeze_epochs"] = ("--freeze-epochs" if config.freeze_epochs is not None
                                   else "the data")
    whole = r.augmentation == "alternating_flip_translate"
    steps = epochs * max(1, num_train // batch if whole else math.ceil(num_train / batch))
    plan = Plan(num_train, image_size, batch, epochs, steps, init,
                seconds(r) if seconds is not None else None,
                {"image_size": chosen.get("image_size", "the data"), **chosen},
                tuple(notes), freeze)
    return r, plan
