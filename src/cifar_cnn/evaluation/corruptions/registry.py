"""The registry of corruptions and the seeded entry point that applies one.

`CORRUPTIONS` maps each name to its family and function, in the paper's order: the 15
benchmark corruptions (`BENCHMARK`, grouped by `FAMILIES`) then the 4 held-out ones
(`HELD_OUT`). `resolve_corruptions` turns a user's selection into names; `corrupt` applies
one corruption with random numbers drawn per block of `BLOCK` images (`block_rng`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np

from cifar_cnn.errors import ConfigError, DataError
from cifar_cnn.evaluation.corruptions.blur import (
    defocus_blur,
    gaussian_blur,
    glass_blur,
    motion_blur,
    zoom_blur,
)
from cifar_cnn.evaluation.corruptions.digital import (
    contrast,
    elastic_transform,
    jpeg_compression,
    pixelate,
    saturate,
)
from cifar_cnn.evaluation.corruptions.noise import (
    gaussian_noise,
    impulse_noise,
    shot_noise,
    speckle_noise,
)
from cifar_cnn.evaluation.corruptions.numeric import Images
from cifar_cnn.evaluation.corruptions.parameters import SEVERITIES, SIZE
from cifar_cnn.evaluation.corruptions.weather import brightness, fog, frost, snow, spatter

BLOCK = 100  # images per random-number block (see `corrupt`)

CorruptionFn = Callable[[Images, int, np.random.Generator], Images]


class Corruption(NamedTuple):
    """A registry entry: the family and ``function(images, severity, rng) -> images``."""

    family: str
    function: CorruptionFn


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": Corruption("noise", gaussian_noise),
    "shot_noise": Corruption("noise", shot_noise),
    "impulse_noise": Corruption("noise", impulse_noise),
    "defocus_blur": Corruption("blur", defocus_blur),
    "glass_blur": Corruption("blur", glass_blur),
    "motion_blur": Corruption("blur", motion_blur),
    "zoom_blur": Corruption("blur", zoom_blur),
    "snow": Corruption("weather", snow),
    "frost": Corruption("weather", frost),
    "fog": Corruption("weather", fog),
    "brightness": Corruption("weather", brightness),
    "contrast": Corruption("digital", contrast),
    "elastic_transform": Corruption("digital", elastic_transform),
    "pixelate": Corruption("digital", pixelate),
    "jpeg_compression": Corruption("digital", jpeg_compression),
    "speckle_noise": Corruption("noise", speckle_noise),
    "gaussian_blur": Corruption("blur", gaussian_blur),
    "spatter": Corruption("weather", spatter),
    "saturate": Corruption("digital", saturate),
}
BENCHMARK: tuple[str, ...] = tuple(list(CORRUPTIONS)[:15])
HELD_OUT: tuple[str, ...] = tuple(list(CORRUPTIONS)[15:])
FAMILIES: dict[str, tuple[str, ...]] = {  # the benchmark corruptions of each family
    family: tuple(n for n in BENCHMARK if CORRUPTIONS[n].family == family)
    for family in ("noise", "blur", "weather", "digital")
}
# Names `resolve_corruptions` accepts besides the corruptions' own.
GROUPS: dict[str, tuple[str, ...]] = {
    "all": BENCHMARK + HELD_OUT, "benchmark": BENCHMARK, "held_out": HELD_OUT, **FAMILIES,
}


def resolve_corruptions(spec: bool | str | Iterable[str]) -> tuple[str, ...]:
    """Corruption names in registry order, for True (all 19), a comma-separated string or a
    sequence of names; corruption names, family names, "benchmark", "held_out" or "all"
    (a family stands for its benchmark corruptions).

    Raises:
        ConfigError: for an unknown name or an empty selection.
    """
    if spec is True:
        return GROUPS["all"]
    tokens = spec.split(",") if isinstance(spec, str) else list(spec or ())
    chosen: set[str] = set()
    for token in (t.strip().lower().replace("-", "_") for t in tokens):
        if not token:
            continue
        if token in GROUPS:
            chosen.update(GROUPS[token])
        elif token in CORRUPTIONS:
            chosen.add(token)
        else:
            raise ConfigError(
                f"Unknown corruption {token!r}; choose from {', '.join(CORRUPTIONS)} or "
                f"{', '.join(GROUPS)}.")
    if not chosen:
        raise ConfigError("No corruptions chosen. Received: " + repr(spec))
    return tuple(n for n in CORRUPTIONS if n in chosen)


def _check_images(images: Any) -> Images:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (SIZE, SIZE, 3):
        raise DataError(
            "Corruptions are defined for uint8 RGB images of 32x32 pixels (N, 32, 32, 3), as "
            f"CIFAR's. Received: {images.dtype} {images.shape}.")
    return images


def block_rng(seed: int, name: str, severity: int, block: int) -> np.random.Generator:
    """The generator of images ``block*BLOCK .. (block+1)*BLOCK - 1`` for one corruption and
    severity: independent of every other (seed, corruption, severity, block)."""
    key = [int(seed), zlib.crc32(name.encode()), int(severity), int(block)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))


def corrupt(images: Any, name: str, severity: int, *, seed: int = 0) -> Images:
    """``images`` (uint8 ``(N, 32, 32, 3)``) with corruption ``name`` at ``severity`` 1..5.

    Deterministic: the same seed gives the same images, and image ``i`` of the result depends
    only on image ``i``, ``i // BLOCK`` and the arguments, never on the other images or on N.

    Raises:
        ConfigError: an unknown name or severity. DataError: images of another shape or type.
    """
    if name not in CORRUPTIONS:
        raise ConfigError(f"Unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}.")
    if severity not in SEVERITIES:
        raise ConfigError(f"severity must be 1..5. Received: severity={severity!r}")
    if int(seed) < 0:
        raise ConfigError(f"seed must be >= 0. Received: seed={seed!r}")
    images = _check_images(images)
    function = CORRUPTIONS[name].function
    out = np.empty_like(images)
    for block, start in enumerate(range(0, len(images), BLOCK)):
        part = images[start:start + BLOCK]
        if len(part) < BLOCK:  # always a full block, so draws never depend on N
            part = np.concatenate([part, np.zeros((BLOCK - len(part), *part.shape[1:]),
                                                  np.uint8)])
        result = function(part, severity, block_rng(seed, name, severity, block))
        out[start:start + BLOCK] = result[:len(out) - start]
    return out
