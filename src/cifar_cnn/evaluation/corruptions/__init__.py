"""CIFAR-10-C: the common corruptions of Hendrycks & Dietterich (ICLR 2019), made from any
CIFAR-style images, and a robustness score over them.

The 15 benchmark corruptions (`BENCHMARK`) in four families (`FAMILIES`) and the 4 held-out
ones (`HELD_OUT`), each at severities 1..5, with the parameters of the paper's CIFAR script
(``ImageNet-C/create_c/make_cifar_c.py`` in github.com/hendrycks/robustness), implemented
here with numpy, scipy and Pillow (no OpenCV, ImageMagick or scikit-image) and vectorised
over a batch. `CORRUPTIONS` maps each name to ``(family, function)``; a function takes uint8
images ``(N, 32, 32, 3)``, a severity and a `numpy.random.Generator` and returns uint8 images
of the same shape. `PARAMS` holds the published numbers and `DIFFERENCES` says, per
corruption, what differs from the paper's code. Two things differ for all of them: results
are rounded to the nearest integer where the original truncates (its ``np.uint8`` cast,
which darkens every image by half a grey level on average), and the random numbers come from
numpy's `Generator` rather than the global legacy state: the same distributions, other draws.

`corrupt` is the seeded entry point: image ``i`` of ``corrupt(x, name, s, seed=k)`` depends
only on image ``i``, its position, ``name``, ``s`` and ``k`` (random numbers are drawn per
block of `BLOCK` images from a generator derived from those), so a prefix of a set is
corrupted exactly as in the whole set. `score_corruptions` measures a model's accuracy and
calibration on every corruption and severity, per family, as the mean over the 15 benchmark
corruptions (the paper's headline, as accuracy rather than the AlexNet-relative mCE that
CIFAR has no baseline for), over the held-out ones, and after a JPEG round trip at the
qualities in `JPEG_QUALITIES`.

The package is laid out by what each module holds, imports pointing downward:
`~.parameters` (the published numbers) and `~.numeric` (shared numeric helpers) at the
bottom; the four families `~.noise`, `~.blur`, `~.weather` and `~.digital` on them; the
`~.registry` with `corrupt` on the families; `~.scoring` on top. Everything public is
importable from here.
"""

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
    jpeg_roundtrip,
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
from cifar_cnn.evaluation.corruptions.parameters import DIFFERENCES, PARAMS, SEVERITIES, SIZE
from cifar_cnn.evaluation.corruptions.registry import (
    BENCHMARK,
    BLOCK,
    CORRUPTIONS,
    FAMILIES,
    GROUPS,
    HELD_OUT,
    Corruption,
    CorruptionFn,
    block_rng,
    corrupt,
    resolve_corruptions,
)
from cifar_cnn.evaluation.corruptions.scoring import (
    JPEG_QUALITIES,
    format_corruption_table,
    score_corruptions,
)
from cifar_cnn.evaluation.corruptions.weather import (
    brightness,
    fog,
    frost,
    frost_texture,
    snow,
    spatter,
)

__all__ = [
    "BENCHMARK",
    "BLOCK",
    "CORRUPTIONS",
    "DIFFERENCES",
    "FAMILIES",
    "GROUPS",
    "HELD_OUT",
    "JPEG_QUALITIES",
    "PARAMS",
    "SEVERITIES",
    "SIZE",
    "Corruption",
    "CorruptionFn",
    "Images",
    "block_rng",
    "brightness",
    "contrast",
    "corrupt",
    "defocus_blur",
    "elastic_transform",
    "fog",
    "format_corruption_table",
    "frost",
    "frost_texture",
    "gaussian_blur",
    "gaussian_noise",
    "glass_blur",
    "impulse_noise",
    "jpeg_compression",
    "jpeg_roundtrip",
    "motion_blur",
    "pixelate",
    "resolve_corruptions",
    "saturate",
    "score_corruptions",
    "shot_noise",
    "snow",
    "spatter",
    "speckle_noise",
    "zoom_blur",
]
