"""The published parameters of the CIFAR-10-C corruptions and what differs from them.

`PARAMS` holds, per corruption and severity 1..5, the numbers of the paper's CIFAR script
(``make_cifar_c.py``); `DIFFERENCES` says, per corruption, how the implementation here
departs from that script. `SIZE` and `SEVERITIES` are the image side and the severities the
parameters are for. The other modules of the package read these; this one imports none of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SEVERITIES = (1, 2, 3, 4, 5)
SIZE = 32

# The published parameters of make_cifar_c.py, severities 1..5.
PARAMS: dict[str, tuple[Any, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # noise std
    "shot_noise": (500, 250, 100, 75, 50),  # photons per unit of intensity
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # salt-and-pepper amount
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # radius, alias
    # sigma, max_delta, iterations
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),  # radius, sigma
    "zoom_blur": tuple(np.arange(1, stop, 0.01) for stop in (1.06, 1.11, 1.16, 1.21, 1.26)),
    # loc, scale, zoom, threshold, blur radius, blur sigma, blend
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
             (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
             (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),  # image, frost
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),  # strength, wibble decay
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to HSV value
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # factor around the per-channel mean
    # alpha, sigma, affine (times the image size)
    "elastic_transform": tuple((SIZE * a, SIZE * s, SIZE * f) for a, s, f in (
        (0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
        (0.1, 0.03, 0.03))),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # size factor
    "jpeg_compression": (80, 65, 58, 50, 40),  # quality
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),  # multiplicative noise std
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1),  # sigma
    # loc, scale, sigma, threshold, intensity, mud (0: water)
    "spatter": ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0),
                (0.65, 0.3, 1, 0.69, 0.5, 0), (0.65, 0.1, 0.7, 0.69, 0.6, 1),
                (0.65, 0.1, 0.5, 0.68, 0.6, 1)),
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),  # HSV S * a + b
}

# What differs from make_cifar_c.py, beyond the rounding and random numbers (package doc).
DIFFERENCES: dict[str, str] = {
    "gaussian_noise": "",
    "shot_noise": "",
    "impulse_noise": "scikit-image's random_noise('s&p') re-implemented: per channel value.",
    "defocus_blur": "the same anti-aliased disk kernel (OpenCV's 3x3 Gaussian of it) and "
                    "reflect-101 border, applied with scipy instead of cv2.filter2D.",
    "glass_blur": "vectorised: the original's pixel 'swap' is a numpy view-aliasing no-op "
                  "for one of the two pixels, so each pixel takes the value of a random "
                  "up/left neighbour (or keeps its own); reproduced as it behaves.",
    "motion_blur": "ImageMagick's MotionBlurImage re-implemented (one-sided Gaussian kernel "
                   "of 2*radius+1 taps, rounded offsets along the angle, edge pixels), "
                   "without its PNG round trip.",
    "zoom_blur": "",
    "snow": "motion blur of the snow layer as for motion_blur (no ImageMagick).",
    "frost": "procedural: the script overlays a random 32x32 crop of one of five frost "
             "photographs (frost1-5; frost3 is frost2 again), not shipped here; this draws "
             "a texture with that photo's statistics at the 0.2 scale the script uses (mean "
             "colour, colour covariance, and the autocorrelation of its main colour axis as "
             "a mix of white noise, three Gaussian-smoothed fields and a per-crop offset); "
             "the blend weights are the paper's.",
    "fog": "",
    "brightness": "scikit-image's HSV round trip replaced by its exact closed form "
                  "(each pixel scaled by V'/V).",
    "contrast": "",
    "elastic_transform": "cv2.warpAffine re-implemented (its fixed-point coordinates, "
                         "bilinear weights, reflect-101 border).",
    "pixelate": "",
    "jpeg_compression": "",
    "speckle_noise": "",
    "gaussian_blur": "",
    "spatter": "OpenCV re-implemented (Canny with L1 gradients and hysteresis, the 5x5 "
               "chamfer distance transform, box blurs in float32, histogram equalisation, "
               "the emboss filter); liquid above 1 wraps around in its uint8 cast, as the "
               "script's does on x86.",
    "saturate": "scikit-image's HSV round trip replaced by its exact closed form (grey "
                "pixels keep the hue 0, red, that scikit-image gives them).",
}
