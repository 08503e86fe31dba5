"""SavedModel export: uint8 pixels in, calibrated probabilities out; encoded images too.

Signatures:

- ``serving_default`` (also ``serve``): ``pixels`` uint8 ``(N, 32, 32, 3)`` -> ``probs``.
- ``serve_bytes``: ``images`` tf.string ``(N,)``, each a whole PNG/JPEG/GIF/BMP file,
  decoded, centre-cropped and resized in the graph as `cifar_cnn.images.prepare_image`
  does with Pillow (see `decode_like_pillow`) -> ``probs``.

The variables are held by a plain ``tf.Module``: Keras' ``ExportArchive`` stores each one
twice (16.0 MB against 8.0 MB for the default model, with the same outputs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cifar_cnn.calibration import PROB_FLOOR

SIGNATURES = ("serving_default", "serve", "serve_bytes")


def calibrated(probs: Any, temperature: float) -> Any:
    """``softmax(log(probs) / T)`` in TensorFlow, as `cifar_cnn.calibration.apply_temperature`."""
    import tensorflow as tf

    if temperature == 1.0:
        return probs
    return tf.nn.softmax(tf.math.log(tf.maximum(probs, PROB_FLOOR)) / temperature, axis=-1)


def _decode_jpeg_drafted(data: Any, side_limit: int) -> Any:
    """A JPEG decoded as Pillow's ``draft()`` does in `cifar_cnn.images`: at the
    largest of 1/8, 1/4, 1/2 scale whose short side stays above `side_limit`, ISLOW IDCT."""
    import tensorflow as tf

    hw = tf.io.extract_jpeg_shape(data)[:2]
    side = tf.reduce_min(hw)
    target = tf.cast(tf.cast(hw, tf.float64) * (side_limit / tf.cast(side, tf.float64)),
                     tf.int32) + 1  # Pillow asks for (int(w * scale) + 1, int(h * scale) + 1)
    q = tf.reduce_min(hw // target)
    idx = tf.where(side > side_limit,
                   tf.where(q >= 8, 3, tf.where(q >= 4, 2, tf.where(q >= 2, 1, 0))), 0)
    return tf.switch_case(idx, [
        lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r, dct_method="INTEGER_ACCURATE")
        for r in (1, 2, 4, 8)])


def decode_like_pillow(data: Any, size: int = 32) -> Any:
    """One encoded image -> uint8 ``(size, size, 3)``, as close to `prepare_image` as TF gets.

    Pillow's ``ImageOps.fit`` crops with a fractional box and resizes with an antialiased
    bicubic filter; ``ScaleAndTranslate`` with the Keys cubic kernel does both in one step.
    Measured against Pillow (``tests/export``; metadata.json records it): within a few
    levels, while ``decode_image`` + integer crop + ``tf.image.resize`` is up to 24 off.
    Not covered: EXIF orientation, alpha composited over white (TF drops alpha), 16-bit.
    """
    import tensorflow as tf

    is_jpeg = tf.strings.substr(data, 0, 3) == b"\xff\xd8\xff"
    img = tf.cond(is_jpeg, lambda: _decode_jpeg_drafted(data, 4 * size),
                  lambda: tf.io.decode_image(data, channels=3, dtype=tf.uint8,
                                             expand_animations=False))
    hw = tf.cast(tf.shape(img)[:2], tf.float32)
    side = tf.reduce_min(hw)
    s = size / side
    out = tf.raw_ops.ScaleAndTranslate(
        images=tf.cast(img, tf.float32)[None], size=[size, size], scale=tf.stack([s, s]),
        translation=-(hw - side) / 2.0 * s, kernel_type="keyscubic", antialias=True)[0]
    return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)


def write_savedmodel(model: Any, path: str | os.PathLike[str], *,
                     temperature: float = 1.0, resize: str = "crop") -> Path:
    """Save float32 `model` with the signatures above; `temperature` is baked into ``probs``.

    ``serve_bytes`` decodes as `decode_like_pillow`: a centre crop, so it is left out of a
    model whose input spec resizes otherwise (`resize` "squish" or "pad").
    """
    import tensorflow as tf

    h, w, c = (int(d) for d in model.input_shape[1:])

    def probs(pixels: Any) -> Any:
        return calibrated(model(tf.cast(pixels, tf.float32), training=False), temperature)

    module = tf.Module()
    module.variables_ = list(model.variables)  # tracked once
    module.serve = tf.function(
        lambda pixels: {"probs": probs(pixels)},
        input_signature=[tf.TensorSpec([None, h, w, c], tf.uint8, name="pixels")])
    module.serve_bytes = tf.function(
        lambda images: {"probs": probs(tf.map_fn(
            lambda d: decode_like_pillow(d, h), images,
            fn_output_signature=tf.TensorSpec([h, w, c], tf.uint8)))},
        input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    signatures = {"serving_default": module.serve, "serve": module.serve}
    if resize == "crop":
        signatures["serve_bytes"] = module.serve_bytes
    tf.saved_model.save(module, str(path), signatures=signatures)
    return Path(path)
