"""precision="auto": mixed bfloat16 only where the hardware computes it natively."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest

from cifar_cnn import train
from cifar_cnn.data import CifarData
from cifar_cnn.errors import ConfigError
from cifar_cnn.recipes import get_recipe, list_recipes
from cifar_cnn.training import precision


@pytest.fixture
def cpu(monkeypatch: pytest.MonkeyPatch):
    """Sets the CPU flags that precision="auto" sees (this test machine has no GPU)."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU decides instead of the CPU's flags")

    def set_flags(*flags: str) -> None:
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", *flags}))

    return set_flags


@pytest.mark.parametrize(("flags", "policy"), [(("avx512_bf16",), "mixed_bfloat16"),
                                               (("amx_bf16", "amx_tile"), "mixed_bfloat16"),
                                               ((), "float32")])
def test_auto_takes_bfloat16_only_where_the_cpu_has_it(cpu, flags: tuple[str, ...],
                                                       policy: str) -> None:
    cpu(*flags)
    chosen, reason = precision.resolve_precision("auto")
    assert chosen == policy and reason.startswith("CPU")
    assert precision.resolve_precision("mixed_bfloat16") == ("mixed_bfloat16", None)


def test_airbench_recipes_ask_for_auto() -> None:
    auto = {n for n in list_recipes() if get_recipe(n).precision == "auto"}
    assert {"fast94", "lean94", "quick"} <= auto
    with pytest.raises(ConfigError, match="auto, float32"):
        get_recipe("fast94").replace(precision="bfloat16")


@pytest.mark.parametrize(("flags", "policy"), [(("avx512_bf16",), "mixed_bfloat16"),
                                               ((), "float32")])
def test_a_run_records_and_resumes_with_the_precision_it_used(
        cpu, flags: tuple[str, ...], policy: str, tiny_data: CifarData, tmp_path: Path) -> None:
    cpu(*flags)
    run = train("quick", epochs=1, batch_size=64, data=tiny_data, runs_dir=tmp_path,
                verbose=0)
    meta = json.loads(run.metadata.read_text())
    assert meta["recipe"]["precision"] == policy  # what a resume rebuilds the recipe from
    assert meta["settings"]["precision"]["requested"] == "auto"
    assert meta["settings"]["precision"]["used"] == policy
    model = keras.saving.load_model(run.model, compile=False)
    conv = next(layer for layer in model.layers if "conv" in type(layer).__name__.lower())
    assert conv.dtype_policy.name == policy
