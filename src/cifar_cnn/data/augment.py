"""Batch augmentation for training input pipelines: whole batches, no per-image Python."""

from __future__ import annotations

import inspect
import io
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from cifar_cnn.data.distort import check_shares, distort
from cifar_cnn.errors import ConfigError

AUGMENTATIONS = ("flip", "flip_translate", "alternating_flip_translate")
SIZE_MODES = ("crop", "resize")


def images_per_epoch(num_train: int, batch_size: int, augmentation: str | None) -> int:
    """Training images seen per epoch: `AlternatingFlipTranslate` drops the remainder."""
    if augmentation == "alternating_flip_translate":
        return num_train // batch_size * batch_size
    return num_train


def random_crops(images: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random `size` x `size` window of each image, at the images' own scale."""
    n, h, w, _ = images.shape
    windows = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(1, 2))
    oy = rng.integers(0, h - size + 1, n)
    ox = rng.integers(0, w - size + 1, n)
    return np.ascontiguousarray(windows[np.arange(n), oy, ox].transpose(0, 2, 3, 1))


def downscale(images: np.ndarray, size: int) -> np.ndarray:
    """The images resized to `size` x `size` (area averaging), as uint8."""
    x = tf.image.resize(tf.cast(images, tf.float32), (size, size), "area")
    return np.asarray(tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8))


def jpeg_roundtrip(images: np.ndarray, quality: int) -> np.ndarray:
    """The images after JPEG compression at `quality` (Pillow, 4:2:0 chroma), decoded again.

    The batch is tiled into one mosaic and compressed in a single call: JPEG works on
    independent 8x8 blocks (16x16 with subsampled chroma), so for image sides that are
    multiples of 16 each tile gets the artefacts it would get alone, except that decoding
    smooths chroma across a tile's outermost pixel. One call costs about 20 us per 32x32
    image here against 190 us for one call per image.
    """
    n, h, w, c = images.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    tiles = np.zeros((rows * cols, h, w, c), np.uint8)
    tiles[:n] = images
    mosaic = tiles.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(
        rows * h, cols * w, c)
    buf = io.BytesIO()
    Image.fromarray(mosaic).save(buf, "JPEG", quality=int(quality), subsampling="4:2:0")
    buf.seek(0)
    with Image.open(buf) as im:
        out = np.asarray(im.convert("RGB"))
    return out.reshape(rows, h, cols, w, c).transpose(0, 2, 1, 3, 4).reshape(-1, h, w, c)[:n]


def soften(images: np.ndarray, scale: float) -> np.ndarray:
    """The images shrunk by `scale` and enlarged back (bicubic, antialiased): a softer look."""
    h, w = images.shape[1:3]
    small = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = tf.image.resize(tf.cast(images, tf.float32), small, "bicubic", antialias=True)
    x = tf.image.resize(x, (h, w), "bicubic", antialias=True)
    return np.asarray(tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8))


def check_sizes(sizes: tuple[int, ...], mode: str, image_size: tuple[int, int]) -> None:
    """Raise `ConfigError` unless `sizes` fit in images of `image_size` and `mode` is known."""
    if mode not in SIZE_MODES:
        raise ConfigError(f"size_mode must be one of {', '.join(SIZE_MODES)}. "
                          f"Received: size_mode={mode!r}")
    bad = [s for s in sizes if not 8 <= int(s) <= min(image_size)]
    if bad:
        raise ConfigError(f"Training image sizes must be between 8 and the image side "
                          f"({min(image_size)}). Received: {list(sizes)}")


class AlternatingFlipTranslate(keras.utils.PyDataset):
    """Shuffled batches with airbench's augmentation, made per batch with NumPy.

    Alternating flips: a fixed random half of the images is mirrored in even epochs and the
    other half in odd epochs, so every image is seen both ways every two epochs (more
    diverse than independent coin flips). Each image is also shifted by up to ``translate``
    pixels in each direction (reflect padding), independently each epoch. The remainder that
    does not fill a batch is left out of each epoch (a different one each time).

    Args:
        translate: largest shift in pixels (0: none).
        alternate: False flips each image by an independent coin toss every epoch instead.
        jpeg: share of the images in each batch that are JPEG-compressed (see
            `jpeg_roundtrip`), at qualities drawn uniformly from `jpeg_quality`
            (four qualities per batch, each image of the share at one of them). Photos
            people classify are mostly JPEGs; without this a model trained on lossless
            CIFAR images loses points on them.
        jpeg_quality: ``(lowest, highest)`` JPEG quality.
        jpeg_epochs: compress only in the first this many epochs (None: in every epoch), so
            that the last ones, at the lowest learning rates, see lossless images.
        jpeg_full_size_only: compress only in epochs that train at full size (see `sizes`):
            downscaling a compressed image smooths most of its artefacts away, so in the
            smaller epochs the share would cost lossless images for little robustness.
        soften: share of the images in each batch that are shrunk to between
            `soften_scale` and 1 times their size and enlarged back (see `soften`), as
            soft as a photo downscaled to 32x32 can look. Applied before JPEG.
        distort: share of each batch per robustness distortion of
            `cifar_cnn.data.distort` (``{"augmix": 0.3, "noise": 0.2}``): AugMix-style
            chains, lower contrast, pixel noise. Applied after softening, before JPEG.
        distort_epochs: distort only in the first this many epochs (None: in every
            epoch), as `jpeg_epochs` does for JPEG.
        one_hot: number of classes to one-hot encode labels to (0: keep integer labels).
        first_epoch: the epoch training starts at (after a resume).
        sizes: the side of the training images in each epoch (progressive resizing, which
            saves work where most of the early learning happens); epochs past the list, and
            all of them if it is empty, train at full size. Applied last, after JPEG.
        size_mode: how a smaller image is made: ``"crop"`` (a random window at the
            original scale, so objects keep the size they have at test time) or
            ``"resize"`` (the whole image, downscaled).
        shard: ``(worker index, number of workers)`` in distributed training: every worker
            draws the same shuffled batches of `batch_size` images and keeps its own slice
            of each, so that each image is seen once per epoch across workers; with more
            than one worker, each worker's shifts and JPEG choices get their own seed.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, *, translate: int = 2,
                 alternate: bool = True, jpeg: float = 0.0,
                 jpeg_quality: tuple[int, int] = (30, 95), jpeg_epochs: int | None = None,
                 jpeg_full_size_only: bool = False, soften: float = 0.0,
                 soften_scale: float = 0.5, distort: dict[str, float] | None = None,
                 distort_epochs: int | None = None, seed: int = 0, one_hot: int = 0,
                 first_epoch: int = 0, sizes: tuple[int, ...] = (),
                 size_mode: str = "crop", shard: tuple[int, int] = (0, 1)) -> None:
        super().__init__()
        if len(x) < batch_size:
            raise ConfigError(f"batch_size {batch_size} is larger than the {len(x)} training "
                              "images; lower --batch-size.")
        self.x, self.batch_size, self.translate, self.seed = x, batch_size, translate, seed
        self.y = np.eye(one_hot, dtype="float32")[y] if one_hot else np.asarray(y)
        self.base_flip = np.random.default_rng(seed).random(len(x)) < 0.5
        self.alternate = alternate
        if not (0.0 <= jpeg <= 1.0 and 0.0 <= soften <= 1.0):
            raise ConfigError(f"jpeg and soften are shares of a batch, between 0 and 1. "
                              f"Received: jpeg={jpeg}, soften={soften}")
        lo, hi = jpeg_quality
        if not 1 <= lo <= hi <= 100:
            raise ConfigError("jpeg_quality must be (lowest, highest) within 1..100. "
                              f"Received: jpeg_quality={jpeg_quality}")
        self.jpeg, self.jpeg_quality = jpeg, (int(lo), int(hi))
        self.jpeg_epochs, self.jpeg_full_size_only = jpeg_epochs, jpeg_full_size_only
        self.soften, self.soften_scale = soften, soften_scale
        self.distort = {k: float(v) for k, v in (distort or {}).items() if v}
        check_shares(self.distort)
        self.distort_epochs = distort_epochs
        check_sizes(sizes, size_mode, x.shape[1:3])
        self.worker, self.num_workers = shard
        if batch_size % self.num_workers:
            raise ConfigError(f"batch_size {batch_size} must be a multiple of the "
                              f"{self.num_workers} workers.")
        self.sizes, self.size_mode = tuple(int(s) for s in sizes), size_mode
        self.epoch = first_epoch
        self._start_epoch()

    def _start_epoch(self) -> None:
        self.rng = np.random.default_rng([self.seed, self.epoch])
        self.order = self.rng.permutation(len(self.y))

    def __len__(self) -> int:
        return len(self.y) // self.batch_size

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        key = [self.seed, self.epoch, index]
        if self.num_workers > 1:  # this worker's slice of the global batch
            part = self.batch_size // self.num_workers
            idx, key = idx[self.worker * part:(self.worker + 1) * part], [*key, self.worker]
        images, t = self.x[idx], self.translate
        (h, w), batch = images.shape[1:3], np.empty_like(images)
        padded = np.pad(images, ((0, 0), (t, t), (t, t), (0, 0)), mode="reflect")
        rng = np.random.default_rng(key)
        shifts = rng.integers(0, 2 * t + 1, size=(len(idx), 2))
        for dy in range(2 * t + 1):
            for dx in range(2 * t + 1):
                sel = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
                batch[sel] = padded[sel, dy:dy + h, dx:dx + w]
        flip = (self.base_flip[idx] ^ bool(self.epoch % 2) if self.alternate
                else rng.random(len(idx)) < 0.5)
        batch[flip] = batch[flip, :, ::-1]
        if self.soften:
            sel = np.flatnonzero(rng.random(len(idx)) < self.soften)
            if len(sel):
                batch[sel] = soften(batch[sel], rng.uniform(self.soften_scale, 1.0))
        if self.distort and (self.distort_epochs is None or self.epoch < self.distort_epochs):
            batch = distort(batch, rng, self.distort)
        size = self.sizes[self.epoch] if self.epoch < len(self.sizes) else None
        full_size = size is None or (size, size) == (h, w)
        if (self.jpeg and (self.jpeg_epochs is None or self.epoch < self.jpeg_epochs)
                and (full_size or not self.jpeg_full_size_only)):
            sel = np.flatnonzero(rng.random(len(idx)) < self.jpeg)
            groups = rng.integers(0, 4, len(sel))
            qualities = rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1, 4)
            for g, q in enumerate(qualities):
                part = sel[groups == g]
                if len(part):
                    batch[part] = jpeg_roundtrip(batch[part], q)
        if not full_size:
            batch = (random_crops(batch, size, rng) if self.size_mode == "crop"
                     else downscale(batch, size))
        return batch, self.y[idx]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._start_epoch()

    def to_tf_dataset(self, replicas: int = 1) -> tf.data.Dataset:
        """The batches as a ``tf.data.Dataset``: one pass over it is one epoch.

        Unlike Keras' own wrapping of a ``PyDataset`` (which fixes the image size it sees in
        the first batches), the image height and width may change between epochs, as
        progressive resizing needs. Each pass ends by moving on to the next epoch.

        Args:
            replicas: split each batch into this many equal consecutive parts, yielded one
                after the other (tf.distribute hands consecutive elements to this worker's
                replicas in turn, so together they train on the whole batch).
        """
        images, labels = self[0]
        if len(labels) % replicas:
            raise ConfigError(f"A batch of {len(labels)} images per worker does not split "
                              f"into {replicas} equal parts (one per device); choose a "
                              "batch size that does.")

        def epoch() -> Any:
            for i in range(len(self)):
                xb, yb = self[i]
                yield from zip(np.split(xb, replicas), np.split(yb, replicas), strict=True)
            self.on_epoch_end()

        side = None if self.sizes else images.shape[1]
        signature = (tf.TensorSpec((None, side, side, images.shape[-1]), images.dtype),
                     tf.TensorSpec((None, *labels.shape[1:]), labels.dtype))
        ds = tf.data.Dataset.from_generator(epoch, output_signature=signature)
        return ds.apply(tf.data.experimental.assert_cardinality(len(self) * replicas)).prefetch(
            tf.data.AUTOTUNE)


def make_train_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    augmentation: str | None,
    *,
    seed: int = 0,
    num_classes: int = 0,
    first_epoch: int = 0,
    options: dict[str, Any] | None = None,
    sizes: tuple[int, ...] = (),
    size_mode: str = "crop",
    shard: tuple[int, int] | None = None,
    replicas: int = 1,
) -> tuple[np.ndarray, np.ndarray] | tf.data.Dataset | Any:
    """The training input for ``model.fit``.

    Without augmentation or one-hot labels the arrays are returned as they are, so Keras
    batches and shuffles them itself (the least overhead). Otherwise a tf.data pipeline
    shuffles uint8 images, batches them and augments each batch in one vectorised step:

    - ``"flip"``: random horizontal flips.
    - ``"flip_translate"``: flips plus random shifts of up to 4 pixels (reflect padding),
      the standard CIFAR augmentation.
    - ``"alternating_flip_translate"``: airbench's alternating flips and 2-pixel shifts, see
      `AlternatingFlipTranslate` (a Keras ``PyDataset``; drops each epoch's remainder).

    Args:
        num_classes: if > 0, labels are one-hot encoded (needed for label smoothing).
        options: keyword arguments of `AlternatingFlipTranslate` (``translate``,
            ``alternate``); only that augmentation takes any.
        sizes, size_mode: progressive resizing (see `AlternatingFlipTranslate`); only that
            augmentation does it.
        shard, replicas: for training under a tf.distribute strategy, ``(worker index,
            number of workers)`` and this worker's number of devices. Then the result is a
            ``tf.data.Dataset`` of per-device batches (``batch_size`` is the global batch
            over all devices of all workers): this worker's share of each global batch,
            split into `replicas` consecutive parts, the same number of steps on every
            worker, and augmentation seeded per worker.

    Raises:
        ConfigError: for an unknown augmentation name, or options it does not take.
    """
    if augmentation is not None and augmentation not in AUGMENTATIONS:
        raise ConfigError(f"Unknown augmentation {augmentation!r}; choose from "
                         f"{', '.join(AUGMENTATIONS)} or None.")
    options = dict(options or {})
    known = set(inspect.signature(AlternatingFlipTranslate).parameters) - set(
        inspect.signature(make_train_dataset).parameters) - {"x", "y", "batch_size", "one_hot"}
    if augmentation != "alternating_flip_translate":
        known = set()
    if set(options) - known:
        raise ConfigError(f"Augmentation {augmentation!r} takes no option(s) "
                          f"{', '.join(sorted(set(options) - known))}.")
    if sizes and augmentation != "alternating_flip_translate":
        raise ConfigError("Progressive resizing (train_sizes) needs the "
                          f"'alternating_flip_translate' augmentation, not {augmentation!r}.")
    distributed = shard is not None
    worker, num_workers = shard or (0, 1)
    if batch_size % (num_workers * replicas):
        raise ConfigError(f"batch_size {batch_size} must be a multiple of the number of "
                          f"devices ({num_workers * replicas}) it is split over.")
    if augmentation is None and not num_classes and not distributed:
        return x, y
    if augmentation == "alternating_flip_translate":
        seq = AlternatingFlipTranslate(x, y, batch_size, seed=seed, one_hot=num_classes,
                                       first_epoch=first_epoch, sizes=sizes,
                                       size_mode=size_mode, shard=(worker, num_workers),
                                       **options)
        return seq.to_tf_dataset(replicas) if distributed else seq
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if distributed:  # every worker shuffles alike and keeps its own share
        ds = ds.shard(num_workers, worker).batch(batch_size // num_workers // replicas,
                                                 drop_remainder=True)
        ds = ds.take(len(x) // batch_size * replicas)
        seed += 1000 * worker
    else:
        ds = ds.batch(batch_size)
    if augmentation:
        import keras

        layers = [keras.layers.RandomFlip("horizontal", seed=seed)]
        if augmentation == "flip_translate":
            layers.append(keras.layers.RandomTranslation(
                0.125, 0.125, fill_mode="reflect", seed=seed + 1))
        augment = keras.Sequential(layers, name="augment")
        ds = ds.map(lambda xb, yb: (augment(tf.cast(xb, "float32"), training=True), yb),
                    num_parallel_calls=tf.data.AUTOTUNE)
    if num_classes:
        ds = ds.map(lambda xb, yb: (xb, tf.one_hot(tf.cast(yb, "int32"), num_classes)))
    return ds.prefetch(tf.data.AUTOTUNE)
