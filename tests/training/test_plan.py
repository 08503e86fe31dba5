"""The plan of a run: batch and epochs sized to the data, image size from the photos, and
what a run starts from (the packaged model on data of its own, its network)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cifar_cnn.data import CifarData, DataInfo
from cifar_cnn.errors import ConfigError
from cifar_cnn.recipes import get_recipe, list_recipes
from cifar_cnn.training.config import TrainConfig
from cifar_cnn.training.plan import (
    IMAGE_SIDES,
    MAX_EPOCHS,
    MIN_BATCH,
    MIN_STEPS_FINETUNE,
    MIN_STEPS_SCRATCH,
    RECIPE_SCALE,
    Plan,
    choose_image_size,
    choose_start,
    finetune_steps,
    image_size_for,
    size_run,
    size_schedule,
)
from tests.conftest import CLASSES

OWN = DataInfo("flat", ("cats", "dogs", "panda"), short_sides=(160,) * 50)


@pytest.mark.parametrize("recipe", list_recipes())
def test_recipes_are_kept_as_registered_at_cifar_scale(recipe: str) -> None:
    r = get_recipe(recipe)
    for n in (RECIPE_SCALE, 49_000, 50_000):
        for fine_tune in (False, True):
            assert size_schedule(r, n, fine_tune=fine_tune) == (r.batch_size, r.epochs)


@pytest.mark.parametrize("recipe", list_recipes())
@pytest.mark.parametrize("n", [60, 300, 2_400, 20_000])
def test_smaller_data_gets_enough_steps(recipe: str, n: int) -> None:
    r = get_recipe(recipe)
    for fine_tune, target in ((False, MIN_STEPS_SCRATCH), (True, finetune_steps(n))):
        batch, epochs = size_schedule(r, n, fine_tune=fine_tune)
        assert batch == min(n, r.batch_size) or batch & (batch - 1) == 0  # a power of two
        assert min(n, MIN_BATCH, r.batch_size) <= batch <= min(n, r.batch_size)
        assert (1 if fine_tune else r.epochs) <= epochs <= max(MAX_EPOCHS, r.epochs)
        steps = epochs * (n // batch)
        assert steps >= target or epochs == MAX_EPOCHS
        assert steps - n // batch < target or epochs == r.epochs  # no epoch more than needed


def test_image_size_follows_the_photos() -> None:
    assert image_size_for([160] * 9 + [32]) == IMAGE_SIDES[-1]
    assert image_size_for([32] * 10) == 32 and image_size_for([8] * 10) == 32
    assert image_size_for([50, 50, 50, 200]) == 48
    assert image_size_for([]) == 32
    assert choose_image_size(TrainConfig(), OWN)[:2] == (IMAGE_SIDES[-1], "the data")
    assert choose_image_size(TrainConfig(image_size=40), OWN)[:2] == (40, "--image-size")
    cifar = DataInfo("archive", image_side=32)
    assert choose_image_size(TrainConfig(), cifar) == (32, "the data", None)


def test_own_data_starts_from_the_packaged_model() -> None:
    start = choose_start(TrainConfig(), OWN)
    assert start.source is not None and start.source.packaged
    assert start.recipe.name == start.source.recipe and start.chosen["init"] == "the data"
    assert start.recipe.model_options == start.source.model_options
    assert any("--init none" in note for note in start.notes)
    scratch = choose_start(TrainConfig(init="none"), OWN)
    assert scratch.source is None and scratch.recipe.name == start.recipe.name  # the same
    assert scratch.chosen["init"] == "--init"


def test_cifar_data_trains_the_baseline_from_scratch() -> None:
    start = choose_start(TrainConfig(), DataInfo("archive", image_side=32))
    assert start.source is None and start.recipe.name == "baseline" and not start.notes
    with pytest.raises(ConfigError, match="freeze_epochs trains the head alone"):
        choose_start(TrainConfig(freeze_epochs=1), DataInfo("archive", image_side=32))
    ten = choose_start(TrainConfig(), DataInfo("folders", CLASSES, (32,)))
    assert ten.source is None and ten.recipe.name == "baseline"
    assert "packaged model's own classes" in ten.notes[0]


def test_a_recipe_of_another_network_trains_from_scratch_with_a_note() -> None:
    start = choose_start(TrainConfig(recipe="quick"), OWN)  # airbench at other widths
    assert start.source is None and start.recipe.name == "quick"
    assert "not the packaged model's network" in start.notes[0]
    assert choose_start(TrainConfig(recipe="baseline"), OWN).source is None


def test_init_takes_the_network_of_the_model_with_the_recipes_schedule() -> None:
    start = choose_start(TrainConfig(recipe="quick", init="default"), OWN)
    quick = get_recipe("quick")
    assert start.recipe.model_options == start.source.model_options != quick.model_options
    assert (start.recipe.epochs, start.recipe.batch_size) == (quick.epochs, quick.batch_size)
    assert "with quick's schedule" in start.notes[-1]
    baseline = choose_start(TrainConfig(recipe="baseline", init="default"), OWN)
    assert baseline.recipe.model == "airbench" and baseline.recipe.optimizer == "adam"
    with pytest.raises(ConfigError, match=r"--model baseline and --init default disagree"):
        choose_start(TrainConfig(model="baseline", init="default"), OWN)


def test_in_memory_arrays_are_planned_at_their_own_size() -> None:
    rng = np.random.default_rng(0)
    ds = CifarData.from_arrays(rng.integers(0, 255, (20, 40, 40, 3)), np.arange(20) % 2,
                               np.zeros((0, 40, 40, 3)), [], ("a", "b"))
    from cifar_cnn.data import inspect_data

    info = inspect_data(ds)
    assert info.kind == "arrays" and info.image_side == 40 and not info.is_cifar
    assert choose_image_size(TrainConfig(), info)[0] == 40


def test_given_batch_and_epochs_override_the_plan_and_say_so() -> None:
    r = get_recipe("fast94")
    sized, plan = size_run(r, 2_400, TrainConfig(batch_size=100), fine_tune=True,
                           image_size=64, chosen={}, notes=[], init="default")
    assert sized.batch_size == 100 and plan.chosen["batch_size"] == "--batch-size"
    assert plan.chosen["epochs"] == "the data"
    assert plan.steps == sized.epochs * 24 >= finetune_steps(2_400) > MIN_STEPS_FINETUNE
    _, plan = size_run(r, 300, TrainConfig(batch_size=5_000, epochs=2), fine_tune=False,
                       image_size=32, chosen={}, notes=[], init=None)
    assert (plan.batch_size, plan.epochs, plan.steps) == (300, 2, 2)
    assert "Batch size 5000 is more than the 300 training images" in plan.describe()
    assert "(--batch-size, --epochs as given)" in plan.describe()


def test_plan_line_reads_as_a_sentence() -> None:
    plan = Plan(3_453, 64, 256, 40, 520, "default", 185.0, {"epochs": "the data"})
    assert plan.describe() == ("Plan: 3,453 images at 64x64: batch 256, 40 epochs = 520 "
                               "steps, about 3 min")
    assert Plan(60, 32, 32, 1, 1, None, 12.0).describe().endswith("1 epoch = 1 step, about 10 s")
    assert plan.to_dict()["seconds"] == 185.0 and math.isfinite(plan.to_dict()["seconds"])


def test_a_recipe_built_in_python_keeps_its_batch_and_epochs() -> None:
    r = get_recipe("fast94").replace(epochs=3, batch_size=500)
    sized, plan = size_run(r, 2_400, TrainConfig(recipe=r), fine_tune=False, image_size=32,
                           chosen={}, notes=[], init=None)
    assert (sized.batch_size, sized.epochs) == (500, 3)
    assert plan.chosen["epochs"] == plan.chosen["batch_size"] == "the recipe"
    named, _ = size_run(get_recipe("fast94"), 2_400, TrainConfig(recipe="fast94"),
                        fine_tune=False, image_size=32, chosen={}, notes=[], init=None)
    assert named.batch_size < 2_000  # a recipe by name is sized to the data


def test_fine_tuning_trains_the_head_alone_first() -> None:
    r = get_recipe("robust")
    _, plan = size_run(r, 100, TrainConfig(), fine_tune=True, image_size=32, chosen={},
                       notes=[], init="default")
    assert plan.epochs == 50 and plan.freeze_epochs == 10  # a fifth, within the epochs
    assert plan.chosen["freeze_epochs"] == "the data"
    assert "(the new head alone for the first 10)" in plan.describe()
    _, off = size_run(r, 100, TrainConfig(freeze_epochs=0), fine_tune=True, image_size=32,
                      chosen={}, notes=[], init="default")
    assert off.freeze_epochs == 0 and off.chosen["freeze_epochs"] == "--freeze-epochs"
    _, scratch = size_run(r, 100, TrainConfig(), fine_tune=False, image_size=32, chosen={},
                          notes=[], init=None)
    assert scratch.freeze_epochs == 0 and "freeze_epochs" not in scratch.chosen


def test_fine_tuning_steps_grow_with_the_data() -> None:
    assert finetune_steps(60) == finetune_steps(1_800) == MIN_STEPS_FINETUNE
    assert finetune_steps(2_400) == 200 and finetune_steps(5_000) == MIN_STEPS_SCRATCH
    assert finetune_steps(40_000) == MIN_STEPS_SCRATCH
