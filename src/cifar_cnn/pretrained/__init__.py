"""The model shipped inside the package, and how any run is packed that compactly.

`default_run()` is where ``cifar-cnn predict IMAGE`` and ``cifar-cnn serve`` look when no
run is given. It is a run directory like any other (model.keras, metadata.json,
calibration.json); its metadata's ``provenance`` says how it was trained and measured
(``scripts/make_default_model.py`` made it).
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

from cifar_cnn.errors import RunError
from cifar_cnn.files import atomic_path
from cifar_cnn.runs import (
    CALIBRATION_FILE,
    DEFAULT_MODEL,
    METADATA_FILE,
    RunDir,
    default_run,
    open_run,
)

__all__ = ["DEFAULT_MODEL", "default_run", "pack_run"]

_WEIGHTS = "model.weights.h5"  # the weights' member of a .keras archive


def _halve_weights(keras_file: Path, min_size: int) -> None:
    """Store the float32 arrays of at least `min_size` values in a .keras file as float16.

    Keras casts them back to each variable's dtype when it loads the file, so the result
    loads anywhere the original does; small arrays (biases, batch-norm statistics) keep
    float32, where float16's range or precision could matter.
    """
    import h5py
    import numpy as np

    with zipfile.ZipFile(keras_file) as z:
        members = {info: z.read(info.filename) for info in z.infolist()}
    (info,) = [i for i in members if i.filename == _WEIGHTS]
    out = io.BytesIO()
    with h5py.File(io.BytesIO(members[info]), "r") as src, h5py.File(out, "w") as dst:
        dst.attrs.update(src.attrs)

        def copy(name: str, obj: h5py.Group | h5py.Dataset) -> None:
            if isinstance(obj, h5py.Group):
                dst.require_group(name).attrs.update(obj.attrs)
                return
            a = obj[()]
            if getattr(a, "dtype", None) == np.float32 and a.size >= min_size:
                a = a.astype(np.float16)
            dst.create_dataset(name, data=a).attrs.update(obj.attrs)

        src.visititems(copy)
    members[info] = out.getvalue()
    with atomic_path(keras_file) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for member, data in members.items():
            z.writestr(member, data)


def pack_run(run: str | os.PathLike[str], out: str | os.PathLike[str], *,
             min_size: int = 4096) -> RunDir:
    """A compact copy of a trained run in `out`: the model without optimizer state, its
    large weight arrays in float16, with the run's metadata.json and calibration.json.

    Raises:
        RunError: if `run` holds no trained model, or `out` exists and is not empty.
    """
    import keras

    src = open_run(run)
    dst = RunDir(Path(out))
    if dst.path.exists() and any(dst.path.iterdir()):
        raise RunError(f"{dst.path} is not empty; pack into a new folder.")
    dst.path.mkdir(parents=True, exist_ok=True)
    model = keras.saving.load_model(src.model, compile=False, safe_mode=True)
    with atomic_path(dst.model) as tmp:
        model.save(tmp)
        _halve_weights(tmp, min_size)
    for name in (METADATA_FILE, CALIBRATION_FILE):
        if (src.path / name).is_file():
            shutil.copyfile(src.path / name, dst.path / name)
    return dst
