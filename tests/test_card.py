"""`ModelCard`: what a model knows about itself, read and written in one place; files from
before it (schema version 1) are read by the one converter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import cifar_cnn
from cifar_cnn.card import SCHEMA_VERSION, ModelCard, load_card
from cifar_cnn.errors import RunError
from cifar_cnn.runs import default_run


def test_the_packaged_model_of_schema_version_1_reads_as_a_card() -> None:
    raw = json.loads((default_run() / "metadata.json").read_text())
    assert "schema_version" not in raw  # packed before the card: the fixture of version 1
    card = cifar_cnn.load_card()
    assert card.schema_version == 1 and card.name == "robust"
    assert len(card.class_names) == 10 and card.input.shape == (32, 32, 3)
    assert card.recipe.name == "robust" and card.network == "airbench"
    assert card.default_tta == "flip_translate"
    assert set(card.temperatures) == {"none", "flip", "flip_translate"}
    assert card.provenance["model_sha256"] and card.export is None
    assert cifar_cnn.Classifier.load().card == card


def test_a_card_round_trips_through_metadata() -> None:
    card = load_card()
    again = ModelCard.from_metadata(card.to_metadata())
    assert again.schema_version == SCHEMA_VERSION
    assert again.replace(schema_version=1) == card
    assert card.to_metadata()["schema_version"] == SCHEMA_VERSION
    public = card.public()
    assert "settings" not in public and "environment" not in public  # paths, host facts
    assert public["class_names"] == list(card.class_names)


def test_an_export_of_schema_version_1_is_converted() -> None:
    old = {"format": "litert", "quantization": "int8", "model_file": "model.tflite",
           "class_names": ["a", "b"], "input": {"shape": [48, 48, 3], "resize": "pad"},
           "output": {"name": "probs", "calibrated": True, "temperature": 0.5, "tta": None},
           "source": {"run": "/x/runs/r", "name": "r", "recipe": "fast94"},
           "parity": "top-1 agreement 100.00%", "environment": {"keras": "3"}}
    card = ModelCard.from_metadata(old, name="model")
    assert card.export["format"] == "litert" and card.export["quantization"] == "int8"
    assert card.baked_temperature == 0.5 and card.default_tta is None
    assert card.input.shape == (48, 48, 3) and card.input.resize == "pad"
    assert card.class_names == ("a", "b") and not card.extra
    written = card.to_metadata()
    assert written["export"]["parity"] == old["parity"] and "format" not in written


def test_a_recipe_recorded_in_part_is_kept_and_a_newer_schema_refused() -> None:
    card = ModelCard.from_metadata({"class_names": ["a", "b"],
                                    "recipe": {"name": "mine", "tta": "flip"}})
    assert card.recipe is None and card.recipe_name == "mine" and card.default_tta == "flip"
    assert card.to_metadata()["recipe"] == {"name": "mine", "tta": "flip"}
    with pytest.raises(RunError, match="schema version 99"):
        ModelCard.from_metadata({"schema_version": 99})


@pytest.mark.slow  # predicts through the CLI in a fresh process
def test_an_old_format_export_still_loads_and_predicts(trained_run, tiny_data,
                                                        tmp_path: Path) -> None:
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    from cifar_cnn.export import export_run

    result = export_run(trained_run, "litert", out=tmp_path / "new", data=tiny_data)
    old = tmp_path / "old"
    shutil.copytree(result.path.parent, old)
    meta = json.loads((old / "metadata.json").read_text())
    v1 = {k: v for k, v in meta.items() if k not in ("schema_version", "export")}
    v1.update(meta["export"])  # version 1 kept the export's entries at the top level
    (old / "metadata.json").write_text(json.dumps(v1))
    image = tmp_path / "a.png"
    Image.fromarray(tiny_data.x_test[0]).save(image)
    got = [subprocess.run([sys.executable, "-m", "cifar_cnn", "predict", str(folder),
                           str(image), "--json"], capture_output=True, text=True,
                          timeout=300) for folder in (old, result.path.parent)]
    assert all(r.returncode == 0 for r in got), [r.stderr for r in got]
    old_probs, new_probs = (np.array(list(json.loads(r.stdout)[0]["probabilities"].values()))
                            for r in got)
    np.testing.assert_allclose(old_probs, new_probs, atol=1e-6)
    assert cifar_cnn.load_card(old).export["format"] == "litert"
