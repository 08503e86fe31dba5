"""Starting a run from trained weights (``--init``): the packaged model, a run or a .keras file.

Keras' transfer-learning practice: take every weight of the trained network that fits the
new one, give the new classes a new head, optionally train that head alone first
(``freeze_epochs``), then fine-tune everything at a fraction of the recipe's rates, with
batch-norm statistics frozen when the data is small (a few hundred images per class cannot
re-estimate them without losing what they learned from 50,000).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cifar_cnn.card import read_card
from cifar_cnn.errors import ConfigError, RunError
from cifar_cnn.models import leaf_layers
from cifar_cnn.recipes import Recipe
from cifar_cnn.runs import resolve_artifact
from cifar_cnn.training.config import BN_CHOICES, SMALL_DATA


@dataclass(frozen=True)
class InitSource:
    """The trained model a run starts from, and what it was trained on."""

    model_file: Path
    network: str | None  # the registered network it was built by (None: not recorded)
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...] | None
    model_options: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None  # the name of the recipe it was trained with

    @property
    def packaged(self) -> bool:
        """Whether this is the packaged default model."""
        from cifar_cnn.runs import default_run

        try:
            return self.model_file.resolve() == (default_run() / "model.keras").resolve()
        except RunError:
            return False


def init_source(init: str | os.PathLike[str]) -> InitSource:
    """The model named by ``--init``: "default" (the packaged model), a run directory or a
    ``.keras`` file.

    Raises:
        RunError: if there is no Keras model there (an export cannot be fine-tuned).
    """
    art = resolve_artifact(None if str(init) == "default" else init)
    if art.format != "keras":
        raise RunError(f"--init needs a Keras model (a run directory or a .keras file); "
                       f"{art.model} is a {art.format} export. Received: init={str(init)!r}")
    card = read_card(art)
    r = card.recipe
    return InitSource(art.model, card.network, card.class_names, card.input.shape,
                      dict(r.model_options) if r is not None else {},
                      r.name if r is not None else None)


def head_layer(net: keras.Model) -> keras.layers.Layer:
    """The classifier head: the last layer with weights."""
    layers = [layer for layer in leaf_layers(net) if layer.weights]
    if not layers:
        raise ConfigError(f"Network {net.name!r} has no layer with weights.")
    return layers[-1]


@dataclass
class InitReport:
    """What `load_matching_weights` did, recorded in the run's metadata."""

    source: str
    copied: int = 0
    total: int = 0
    new_head: bool = False
    num_classes: int = 0

    def describe(self) -> str:
        """E.g. "loaded 26 of 27 weight tensors; new head for 3 classes"."""
        head = (f"; new head for {self.num_classes} classes" if self.new_head
                else "; the head too (the same classes)")
        return f"loaded {self.copied} of {self.total} weight tensors{head}"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "weights_copied": self.copied,
                "weights_total": self.total, "new_head": self.new_head}


def load_matching_weights(net: keras.Model, source: InitSource, *,
                          class_names: Sequence[str]) -> InitReport:
    """Copy every weight of `source` into `net`, in order, but the head's when the classes
    differ (other names or order): that head stays new.

    Raises:
        ConfigError: if any other weight differs in shape or number (another network: a
            partial load would train a network that is neither); nothing is copied then.
    """
    trained = keras.saving.load_model(source.model_file, compile=False, safe_mode=True)
    keep_head = tuple(class_names) == tuple(source.class_names)
    head = {id(v) for v in head_layer(net).weights}
    if len(trained.weights) != len(net.weights):
        raise ConfigError(f"--init {source.model_file} has {len(trained.weights)} weight "
                          f"tensors, this run's network {len(net.weights)}: not the same "
                          "network. Train from scratch (--init none) or start from a model "
                          "of this network.")
    pairs = [(mine, theirs) for mine, theirs in zip(net.weights, trained.weights, strict=True)
             if keep_head or id(mine) not in head]
    wrong = [f"{mine.path} {tuple(theirs.shape)} -> {tuple(mine.shape)}"
             for mine, theirs in pairs if tuple(mine.shape) != tuple(theirs.shape)]
    if wrong:
        raise ConfigError(f"--init {source.model_file}: {len(wrong)} weight tensor(s) differ "
                          f"in shape from this run's network ({'; '.join(wrong[:3])}): not "
                          "the same network. Train from scratch (--init none) or start from a "
                          "model of this network.")
    for mine, theirs in pairs:
        mine.assign(np.asarray(keras.ops.convert_to_numpy(theirs), dtype=mine.dtype))
    return InitReport(str(source.model_file), copied=len(pairs), total=len(net.weights),
                      new_head=not keep_head, num_classes=len(class_names))


def set_trainable(net: keras.Model, *, head_only: bool, freeze_bn: bool) -> None:
    """Make only the head trainable, or everything (batch-norm layers frozen if asked:
    a frozen Keras batch norm normalises with its moving statistics and keeps them)."""
    head = head_layer(net)
    for layer in leaf_layers(net):
        if head_only:
            layer.trainable = layer is head
        else:
            layer.trainable = not (freeze_bn and isinstance(
                layer, keras.layers.BatchNormalization))


def freeze_bn_default(bn: str | None, init: str | None, num_train: int) -> bool:
    """Whether batch-norm statistics are frozen: `bn` if given, else when fine-tuning on
    fewer than `SMALL_DATA` images."""
    if bn is not None:
        if bn not in BN_CHOICES:
            raise ConfigError(f"bn must be one of {', '.join(BN_CHOICES)}. Received: bn={bn!r}")
        return bn == "frozen"
    return init is not None and num_train < SMALL_DATA


@dataclass(frozen=True)
class FineTune:
    """How a run starts from trained weights (`TrainConfig.init` and its companions)."""

    source: InitSource
    freeze_epochs: int
    lr_mult: float
    freeze_bn: bool

    def phases(self, r: Recipe) -> list[tuple[int, Recipe, bool]]:
        """``(until epoch, recipe of the phase, head only)``: the head alone for
        `freeze_epochs`, then everything at `lr_mult` of the recipe's rates; each phase's
        schedule runs over its own epochs."""
        out: list[tuple[int, Recipe, bool]] = []
        if self.freeze_epochs:
            until = min(self.freeze_epochs, r.epochs)
            out.append((until, r.replace(epochs=until), True))
        if r.epochs > self.freeze_epochs:
            out.append((r.epochs, r.with_rates_scaled(self.lr_mult).replace(
                epochs=r.epochs - self.freeze_epochs), False))
        return out
