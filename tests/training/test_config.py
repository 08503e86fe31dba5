"""TrainConfig: the one typed list of training options, the CLI generated from it."""

from __future__ import annotations

import dataclasses

import pytest

from cifar_cnn.cli import build_parser
from cifar_cnn.errors import ConfigError
from cifar_cnn.training.config import TrainConfig, cli_options, config_from_args


def test_every_field_is_a_train_option_and_parses_back() -> None:
    flags = [flag for flag, _ in cli_options()]
    assert len(flags) == len(dataclasses.fields(TrainConfig))
    args = build_parser().parse_args([
        "train", "--recipe", "fast94", "--epochs", "3", "--lr", "0.5", "--precision",
        "float32", "--no-monitor", "--quiet", "--devices", "CPU:0,CPU:1", "--strategy",
        "mirrored", "--image-size", "48", "--resize", "pad", "--val-split", "0.1", "--strict",
        "--class-weight", "balanced", "--init", "default", "--freeze-epochs", "1", "--bn",
        "frozen", "--verbose"])
    config = config_from_args(args)
    assert config == TrainConfig(
        recipe="fast94", epochs=3, learning_rate=0.5, precision="float32", monitor_test=False,
        verbose=0, devices=("CPU:0", "CPU:1"), strategy="mirrored", image_size=48,
        resize="pad", val_split=0.1, strict=True, class_weight="balanced", init="default",
        freeze_epochs=1, bn="frozen")
    assert config_from_args(build_parser().parse_args(["train"])) == TrainConfig()


def test_choices_come_from_the_library() -> None:
    from cifar_cnn.export import FORMATS
    from cifar_cnn.recipes.base import PRECISIONS
    from cifar_cnn.tta import TTA_CHOICES

    options = dict(cli_options())
    assert options["--precision"]["choices"] == PRECISIONS
    parser = build_parser()
    for argv in (["serve", "--tta", "none"], ["predict", "--tta", "flip", "x.png"],
                 ["evaluate", "r", "--tta", "default"], ["export", "r", "--format", "onnx"]):
        parser.parse_args(argv)
    assert "default" in TTA_CHOICES and set(FORMATS) == {"savedmodel", "litert", "onnx"}
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--tta", "recipe"])


def test_keyword_options_and_errors() -> None:
    config = TrainConfig.from_options("fast94", epochs=2)
    assert TrainConfig.from_options(config, seed=3) == TrainConfig(recipe="fast94", epochs=2,
                                                                   seed=3)
    with pytest.raises(ConfigError, match="Similar: epochs"):
        TrainConfig.from_options("baseline", epoch=3)
    with pytest.raises(ConfigError, match="freeze_epochs"):
        TrainConfig(freeze_epochs=2, init="none")  # needs a model to start from
    with pytest.raises(ConfigError, match="val_split"):
        TrainConfig(val_split=1.0)
    d = TrainConfig(data="x", init="default").to_dict()
    assert d["recipe"] is None and d["data"].endswith("/x") and d["init"] == "default"
