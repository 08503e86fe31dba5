"""The pieces of the fast recipes: Muon/SGD optimiser, alternating-flip data, shift TTA."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cifar_cnn.data.augment import AlternatingFlipTranslate, make_train_dataset
from cifar_cnn.errors import ConfigError
from cifar_cnn.optimizers import MuonSGD, orthogonalize
from cifar_cnn.recipes import get_recipe
from cifar_cnn.tta import predict_probs, tta_mode


def test_orthogonalize_flattens_the_spectrum() -> None:
    g = np.random.default_rng(0).normal(size=(64, 16)) * np.linspace(0.5, 5, 16)
    before = np.linalg.svd(g, compute_uv=False)
    after = np.linalg.svd(np.asarray(orthogonalize(keras.ops.convert_to_tensor(g), 5)),
                          compute_uv=False)
    assert before.max() / before.min() > 10
    assert after.max() < 1.3 and after.min() > 0.5  # all ~1 (Newton-Schulz is rough)


def _tiny_net() -> keras.Model:
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(scale=False, name="bn")(x)
    x = keras.layers.Dense(2, name="head")(keras.layers.Flatten()(x))
    return keras.Model(inputs, x)


def test_muon_sgd_steps() -> None:
    keras.utils.set_random_seed(0)
    net = _tiny_net()
    opt = MuonSGD(learning_rate=0.1, sgd_learning_rate=0.5, sgd_learning_rates={"head": 0.0},
                  stop_after_steps={"bn": 2})
    net.compile(optimizer=opt, loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 2)).astype("float32")
    y = np.random.default_rng(1).normal(size=(8, 2)).astype("float32")
    head = np.asarray(net.get_layer("head").kernel).copy()
    betas = []
    for _ in range(4):
        net.train_on_batch(x, y)
        betas.append(np.asarray(net.get_layer("bn").beta).copy())
        kernel = np.asarray(net.get_layer("conv").kernel)
        # Muon renormalises the kernel to norm sqrt(filters) before each step of norm ~lr
        assert abs(np.linalg.norm(kernel) - np.sqrt(3)) < 0.2
    np.testing.assert_array_equal(np.asarray(net.get_layer("head").kernel), head)  # rate 0
    assert not np.allclose(betas[0], betas[1])  # trained over its first 2 steps ...
    np.testing.assert_array_equal(betas[1], betas[3])  # ... and frozen after
    config = opt.get_config()
    assert config["stop_after_steps"] == {"bn": 2} and config["sgd_learning_rates"]["head"] == 0


def test_muon_sgd_without_muon_is_nesterov_sgd_everywhere() -> None:
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    net = _tiny_net()
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 2)).astype("float32")
    y = np.random.default_rng(1).normal(size=(8, 2)).astype("float32")
    kernel = net.get_layer("conv").kernel
    w0 = np.asarray(kernel).copy()
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(keras.losses.mean_squared_error(y, net(x, training=True)))
    g = np.asarray(tape.gradient(loss, kernel))
    net.compile(optimizer=MuonSGD(learning_rate=0.1, sgd_learning_rate=0.0, muon=False,
                                  sgd_learning_rates={"conv": 0.05}, sgd_momentum=0.5),
                loss="mse")
    net.train_on_batch(x, y)
    # the first Nesterov step from zero momentum: w - rate * (g + momentum * g)
    np.testing.assert_allclose(np.asarray(kernel), w0 - 0.05 * 1.5 * g, rtol=1e-4, atol=1e-6)
    assert net.optimizer.get_config()["muon"] is False


def test_alternating_flips_and_shifts() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    y = np.arange(40) % 10
    ds = AlternatingFlipTranslate(x, y, batch_size=16, translate=2, seed=3, one_hot=10)
    assert len(ds) == 2  # the remainder of 8 images is left out of each epoch
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")

    def epoch_views() -> dict[int, tuple[bool, tuple[int, int]]]:
        views = {}
        for b in range(len(ds)):
            images, labels = ds[b]
            for img, lab in zip(images, labels, strict=True):
                for i in np.flatnonzero(y == lab.argmax()):
                    for flipped in (False, True):
                        for dy in range(5):
                            for dx in range(5):
                                view = padded[i, dy:dy + 8, dx:dx + 8]
                                if np.array_equal(view[:, ::-1] if flipped else view, img):
                                    views[int(i)] = (flipped, (dy, dx))
        return views

    first = epoch_views()
    ds.on_epoch_end()
    second = epoch_views()
    assert len(first) == len(second) == 32  # every batched image is a shifted view
    common = set(first) & set(second)
    assert common and all(first[i][0] != second[i][0] for i in common)  # flips alternate
    assert len({s for _, s in first.values()}) > 5  # shifts vary


def test_random_flips_and_no_shifts_on_request() -> None:
    x = np.random.default_rng(0).integers(0, 256, (200, 4, 4, 3), dtype=np.uint8)
    ds = make_train_dataset(x, np.arange(200), 200, "alternating_flip_translate",
                            options={"translate": 0, "alternate": False})
    flips = []
    for _ in range(2):
        images, labels = ds[0]
        same = np.array([np.array_equal(img, x[i]) for img, i in zip(images, labels,
                                                                     strict=True)])
        mirrored = np.array([np.array_equal(img, x[i, :, ::-1]) for img, i in
                             zip(images, labels, strict=True)])
        assert (same | mirrored).all()  # no shifts: each image as it is, or mirrored
        flips.append(dict(zip(labels.tolist(), mirrored.tolist(), strict=True)))
        ds.on_epoch_end()
    both = sum(flips[0][i] == flips[1][i] for i in range(200))
    assert 60 < both < 140  # independent coin tosses, not alternation (which gives 0)
    with pytest.raises(ConfigError, match="takes no option"):
        make_train_dataset(x, np.arange(200), 10, "flip", options={"translate": 0})


def test_airbench_augmentation_is_chosen_by_name() -> None:
    x = np.zeros((20, 8, 8, 3), np.uint8)
    ds = make_train_dataset(x, np.zeros(20, int), 5, "alternating_flip_translate",
                            first_epoch=3)
    assert isinstance(ds, AlternatingFlipTranslate) and ds.epoch == 3
    with pytest.raises(ConfigError, match="batch_size 50 is larger"):
        AlternatingFlipTranslate(x, np.zeros(20, int), 50)


class _ColumnModel:
    """A stand-in model whose 'probabilities' are its inputs' first column and top row."""

    def predict(self, x: np.ndarray, batch_size: int, verbose: int) -> np.ndarray:
        return np.stack([x[:, 0, 0, 0], x[:, 1, 0, 0], x[:, 0, 1, 0]], 1).astype("float64")


def test_flip_and_translate_tta_weights() -> None:
    x = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
    m = _ColumnModel()
    plain = predict_probs(m, x, tta=None)
    flip = predict_probs(m, x, tta="flip")
    mirrored = x[:, :, ::-1]
    np.testing.assert_allclose(flip, (m.predict(x, 1, 0) + m.predict(mirrored, 1, 0)) / 2)
    both = predict_probs(m, x, tta="flip_translate")
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    up_left, down_right = padded[:, :4, :4], padded[:, 2:, 2:]
    expected = 0.5 * flip + 0.25 * (predict_probs(m, up_left, tta="flip")
                                    + predict_probs(m, down_right, tta="flip"))
    np.testing.assert_allclose(both, expected)
    assert not np.allclose(both, flip) and not np.allclose(flip, plain)
    assert tta_mode(True, "flip_translate") == "flip_translate" and tta_mode(True) == "flip"
    assert tta_mode(None, "flip") == "flip" and tta_mode(False, "flip") is None
    with pytest.raises(ValueError, match="Unknown test-time augmentation 'rotate'"):
        tta_mode("rotate")


def test_linear_schedule_and_optimizer_from_recipe() -> None:
    r = get_recipe("fast94")
    opt = r.build_optimizer(steps_per_epoch=25)
    assert isinstance(opt, MuonSGD) and opt.stop_after_steps == {"whiten": 75}
    schedule = r.learning_rate_for(25)
    total = r.epochs * 25  # a linear decay to zero over the recipe's epochs
    np.testing.assert_allclose([float(schedule(s)) for s in (0, total // 2, total)],
                               [0.24, 0.12, 0.0], atol=1e-7)
    with pytest.raises(ConfigError, match="Unknown test-time augmentation 'rotate'"):
        r.replace(tta="rotate")


def test_quick_is_fast94_on_a_smaller_network() -> None:
    quick, fast = get_recipe("quick"), get_recipe("fast94")
    assert quick.model == fast.model and quick.model_options == {"widths": (32, 128, 128)}
    assert quick.resolved_optimizer_options()["sgd_learning_rate"] == pytest.approx(
        fast.resolved_optimizer_options()["sgd_learning_rate"] * quick.batch_size
        / fast.batch_size)


@pytest.mark.parametrize("batch", [2000, 500, 64])
def test_per_image_rates_follow_the_batch_size(batch: int) -> None:
    opt = get_recipe("fast94").replace(batch_size=batch).build_optimizer(steps_per_epoch=10)
    assert opt.sgd_learning_rate == pytest.approx(0.053 * batch)  # airbench's per-image rates
    assert opt.sgd_learning_rates == {"head": pytest.approx(0.67 * batch)}
    assert opt.sgd_weight_decay == pytest.approx(2e-6 * batch)
    assert float(opt._learning_rate(0)) == pytest.approx(0.24)  # Muon's: normalised, unscaled


@pytest.mark.parametrize("recipe", ["fast94", "quick"])
def test_fast_recipe_run_predicts_with_its_tta(recipe: str, tiny_data, one_epoch_run) -> None:
    from cifar_cnn import Classifier

    run = one_epoch_run(recipe)  # train(recipe, epochs=1, batch_size=64) on tiny_data
    clf = Classifier.load(run.path)
    assert clf.tta == "flip_translate"
    # --batch-size reached the optimizer the run was trained with, per image
    saved = keras.saving.load_model(run.model)
    assert saved.optimizer.sgd_learning_rate == pytest.approx(0.053 * 64)
    probs = clf.predict(tiny_data.x_test[:3])
    assert probs.shape == (3, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_jpeg_roundtrip_of_a_mosaic_matches_single_images() -> None:
    import io

    from PIL import Image

    from cifar_cnn.data.augment import jpeg_roundtrip

    rng = np.random.default_rng(0)
    smooth = rng.integers(0, 256, (7, 4, 4, 3)).astype(np.float32)
    x = np.stack([np.asarray(keras.ops.image.resize(s, (32, 32))) for s in smooth])
    x = np.clip(x, 0, 255).astype(np.uint8)
    out = jpeg_roundtrip(x, 50)
    for img, got in zip(x, out, strict=True):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=50, subsampling="4:2:0")
        alone = np.asarray(Image.open(buf).convert("RGB")).astype(int)
        # identical inside; chroma smoothing may reach across a tile's outermost pixels
        assert np.array_equal(alone[2:-2, 2:-2], got[2:-2, 2:-2])
        assert np.abs(alone - got).mean() < 3.0  # tiles unlike their neighbours here
    assert np.abs(out.astype(int) - x).mean() > 0.5  # the artefacts are there


def test_jpeg_and_soften_augmentation_options() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    plain = make_train_dataset(x, np.arange(64) % 10, 64, "alternating_flip_translate",
                               seed=1, options={"translate": 0})
    lossy = make_train_dataset(x, np.arange(64) % 10, 64, "alternating_flip_translate",
                               seed=1, options={"translate": 0, "jpeg": 1.0,
                                                "jpeg_quality": (40, 60), "soften": 0.5})
    (a, ya), (b, yb) = plain[0], lossy[0]
    np.testing.assert_array_equal(ya, yb)  # same order, same flips
    changed = np.abs(a.astype(int) - b).reshape(64, -1).mean(1)
    assert (changed > 1).all()  # every image compressed
    early = make_train_dataset(x, np.arange(64) % 10, 64, "alternating_flip_translate",
                               seed=1, options={"translate": 0, "jpeg": 1.0, "jpeg_epochs": 1})
    assert not np.array_equal(early[0][0], a)  # compressed in epoch 0 ...
    early.on_epoch_end()
    plain.on_epoch_end()
    np.testing.assert_array_equal(early[0][0], plain[0][0])  # ... lossless from epoch 1
    with pytest.raises(ConfigError, match="shares of a batch"):
        make_train_dataset(x, np.arange(64), 64, "alternating_flip_translate",
                           options={"jpeg": 1.5})


def test_jpeg_only_in_the_full_size_epochs() -> None:
    """With ``jpeg_full_size_only`` the downscaled epochs see lossless images, the full-size
    ones the JPEG share."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    y = np.arange(64) % 10

    def batches(**options: object) -> list[np.ndarray]:
        seq = make_train_dataset(x, y, 64, "alternating_flip_translate", seed=1,
                                 sizes=(16, 32), size_mode="resize",
                                 options={"translate": 0, **options})
        out = []
        for _ in range(3):  # 16 px, 32 px, then full size past the list
            out.append(seq[0][0])
            seq.on_epoch_end()
        return out

    plain = batches()
    full_only = batches(jpeg=1.0, jpeg_full_size_only=True)
    everywhere = batches(jpeg=1.0)
    assert [b.shape[1] for b in full_only] == [16, 32, 32]
    np.testing.assert_array_equal(full_only[0], plain[0])  # lossless while downscaled
    assert not np.array_equal(everywhere[0], plain[0])
    for i in (1, 2):  # compressed at full size
        assert np.abs(full_only[i].astype(int) - plain[i]).mean() > 1
