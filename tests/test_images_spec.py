"""The model's input spec: written with the model, read back by one function, and the one
way images are prepared for it (resize policies included)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cifar_cnn.card import ModelCard
from cifar_cnn.errors import ConfigError, ImageError
from cifar_cnn.images import InputSpec, prepare_image


def test_spec_round_trips_through_metadata() -> None:
    spec = InputSpec(24, 40, resize="pad", class_names=("cat", "dog"))
    meta = {"input": spec.to_metadata(), "class_names": list(spec.class_names)}
    assert ModelCard.from_metadata(meta).input == spec
    assert spec.size == (40, 24) and spec.shape == (24, 40, 3)


def test_spec_of_older_runs_and_bare_models() -> None:
    # Runs from before the spec: shape only; the model's own shape wins; names by count.
    old = {"input": {"shape": [32, 32, 3], "dtype": "uint8"}}
    spec = ModelCard.from_metadata(old, model_shape=(None, 28, 28, 3), num_classes=3).input
    assert (spec.shape, spec.resize, spec.class_names) == (
        (28, 28, 3), "crop", ("class_0", "class_1", "class_2"))
    ten = ModelCard.from_metadata({}, num_classes=10, default_class_names=tuple("abcdefghij"))
    assert ten.class_names == tuple("abcdefghij")
    with pytest.raises(ConfigError, match="resize"):
        InputSpec(resize="stretch")


def _wide() -> Image.Image:
    """A 90x30 image: red left third, green middle, blue right third."""
    a = np.zeros((30, 90, 3), np.uint8)
    a[:, :30, 0] = a[:, 30:60, 1] = a[:, 60:, 2] = 255
    return Image.fromarray(a)


def test_resize_policies() -> None:
    crop = prepare_image(_wide(), (30, 30), resize="crop")
    assert crop[:, :, 1].min() > 200 and crop[:, :, 0].max() < 60  # the green centre only
    squish = prepare_image(_wide(), (30, 30), resize="squish")
    assert squish[15, 2, 0] > 200 and squish[15, 15, 1] > 200 and squish[15, 27, 2] > 200
    pad = prepare_image(_wide(), (30, 30), resize="pad")
    assert pad[:5].max() == 0 and pad[-5:].max() == 0  # black bars above and below
    assert pad[15, 2, 0] > 200 and pad[15, 27, 2] > 200  # the whole width kept


def test_spec_prepares_every_kind_of_input(tmp_path) -> None:
    spec = InputSpec(16, 16, resize="squish")
    path = tmp_path / "w.png"
    _wide().save(path)
    from_file = spec.batch([str(path)])
    assert from_file.shape == (1, 16, 16, 3) and from_file.dtype == np.uint8
    np.testing.assert_array_equal(spec.batch(_wide()), from_file)
    np.testing.assert_array_equal(spec.decode(path.read_bytes(), "w.png")[None], from_file)
    np.testing.assert_array_equal(spec.from_array(np.asarray(_wide()).tolist(), "w")[None],
                                  from_file)
    ready = np.zeros((2, 16, 16, 3), np.uint8)
    assert spec.batch(ready) is ready or np.shares_memory(spec.batch(ready), ready)
    with pytest.raises(ImageError, match="w: pixel values must be finite"):
        spec.from_array([[[300, 0, 0]]], "w")
