"""CIFAR-10-C corruptions (`cifar_cnn.evaluation.corruptions`): each one checked against
properties it must have on small synthetic images, the seeded generation, the score, and
``evaluate --corruptions`` on a tiny trained run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cifar_cnn.errors import ConfigError, DataError
from cifar_cnn.evaluation import corruptions as C

NAMES = list(C.CORRUPTIONS)
# No random numbers: the same images whatever the seed.
DETERMINISTIC = {"defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate",
                 "jpeg_compression", "gaussian_blur", "saturate"}
# Blurs and resampling: a one-colour image is a fixed point (the identity cases).
FLAT_FIXED = {"defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur",
              "contrast", "elastic_transform", "pixelate"}
# Pixels move further from the clean image at each severity (mean absolute change).
MONOTONE = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "defocus_blur",
            "zoom_blur", "gaussian_blur", "fog", "brightness", "contrast", "pixelate",
            "jpeg_compression"]


def textured(n: int = 12, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients with edges and mild noise, like downscaled photographs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(0.2, 0.8, 3)
        img = np.stack([a + 0.3 * xx - 0.2 * yy, b - 0.25 * xx + 0.2 * yy, c + 0.2 * xx * yy],
                       -1)
        r0, c0 = rng.integers(4, 20, 2)
        img[r0:r0 + 10, c0:c0 + 10] = rng.uniform(0, 1, 3)  # an object with edges
        img += rng.normal(0, 0.02, img.shape)
        out.append(img)
    return np.clip(np.rint(np.array(out) * 255), 0, 255).astype(np.uint8)


def flat(colours=((90, 140, 200), (128, 128, 128), (10, 250, 30), (0, 0, 0))) -> np.ndarray:
    return np.broadcast_to(np.array(colours, np.uint8)[:, None, None, :],
                           (len(colours), 32, 32, 3)).copy()


def change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int64) - b.astype(np.int64)).mean())


# --------------------------------------------------------------------------------------------
# the registry


def test_registry_is_the_paper_s() -> None:
    assert len(C.BENCHMARK) == 15 and len(C.HELD_OUT) == 4
    assert C.HELD_OUT == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    assert {f: len(m) for f, m in C.FAMILIES.items()} == {"noise": 3, "blur": 4, "weather": 4,
                                                          "digital": 4}
    assert sum(C.FAMILIES.values(), ()) == C.BENCHMARK  # the paper's order
    for name, (family, function) in C.CORRUPTIONS.items():
        assert family in C.FAMILIES and callable(function)
        assert len(C.PARAMS[name]) == 5 and name in C.DIFFERENCES
    # spot checks against make_cifar_c.py
    assert C.PARAMS["gaussian_noise"] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert C.PARAMS["jpeg_compression"] == (80, 65, 58, 50, 40)
    assert [len(z) for z in C.PARAMS["zoom_blur"]] == [7, 12, 16, 21, 26]  # np.arange's ends


def test_resolve_corruptions() -> None:
    assert C.resolve_corruptions(True) == C.BENCHMARK + C.HELD_OUT
    assert C.resolve_corruptions("fog, gaussian-noise") == ("gaussian_noise", "fog")
    assert C.resolve_corruptions(["noise", "held_out"]) == (
        "gaussian_noise", "shot_noise", "impulse_noise", *C.HELD_OUT)
    assert C.resolve_corruptions("benchmark") == C.BENCHMARK
    with pytest.raises(ConfigError, match="Unknown corruption 'rain'"):
        C.resolve_corruptions("fog,rain")
    with pytest.raises(ConfigError):
        C.resolve_corruptions("")


def test_bad_arguments_are_explained() -> None:
    x = textured(2)
    with pytest.raises(ConfigError, match="severity"):
        C.corrupt(x, "fog", 6)
    with pytest.raises(ConfigError, match="Unknown"):
        C.corrupt(x, "rain", 1)
    with pytest.raises(DataError, match="32x32"):
        C.corrupt(np.zeros((2, 28, 28, 3), np.uint8), "fog", 1)
    with pytest.raises(DataError, match="uint8"):
        C.corrupt(x.astype(np.float32), "fog", 1)


# --------------------------------------------------------------------------------------------
# every corruption


@pytest.mark.parametrize("name", NAMES)
def test_shape_range_and_determinism(name: str) -> None:
    x = textured(C.BLOCK + 3)  # two blocks, the second one partial
    out = C.corrupt(x, name, 3, seed=7)
    assert out.shape == x.shape and out.dtype == np.uint8
    assert change(out, x) > 0.5  # it does something
    np.testing.assert_array_equal(out, C.corrupt(x, name, 3, seed=7))
    # Image i depends on image i and its position only: a prefix is corrupted alike.
    np.testing.assert_array_equal(out[:5], C.corrupt(x[:5], name, 3, seed=7))
    np.testing.assert_array_equal(out[C.BLOCK:], C.corrupt(x, name, 3, seed=7)[C.BLOCK:])
    other = C.corrupt(x[:5], name, 3, seed=8)
    assert np.array_equal(other, out[:5]) == (name in DETERMINISTIC)


@pytest.mark.parametrize("name", NAMES)
def test_no_wrap_around_on_white_and_black(name: str) -> None:
    white = np.full((3, 32, 32, 3), 255, np.uint8)
    black = np.zeros_like(white)
    for severity in C.SEVERITIES:
        assert C.corrupt(white, name, severity).mean() > 160
        assert C.corrupt(black, name, severity).mean() < 90


@pytest.mark.parametrize("name", sorted(FLAT_FIXED))
def test_a_flat_image_is_a_fixed_point(name: str) -> None:
    x = flat()
    for severity in C.SEVERITIES:
        np.testing.assert_array_equal(C.corrupt(x, name, severity), x)


@pytest.mark.parametrize("name", MONOTONE)
def test_severity_ordering(name: str) -> None:
    x = textured(24)
    changes = [change(C.corrupt(x, name, s, seed=3), x) for s in C.SEVERITIES]
    assert changes == sorted(changes), changes


# --------------------------------------------------------------------------------------------
# known properties, per corruption


def test_gaussian_speckle_and_shot_noise_have_their_spread() -> None:
    x = np.full((C.BLOCK, 32, 32, 3), 128, np.uint8)  # mid grey: no clipping
    for severity, c in enumerate(C.PARAMS["gaussian_noise"], 1):
        d = (C.corrupt(x, "gaussian_noise", severity).astype(float) - 128) / 255
        assert d.std() == pytest.approx(c, rel=0.02) and abs(d.mean()) < 0.002
    for severity, c in enumerate(C.PARAMS["speckle_noise"], 1):
        d = (C.corrupt(x, "speckle_noise", severity).astype(float) - 128) / 255
        assert d.std() == pytest.approx(c * 128 / 255, rel=0.03)
    for severity, c in enumerate(C.PARAMS["shot_noise"], 1):
        v = C.corrupt(x, "shot_noise", severity).astype(float) / 255
        assert v.var() == pytest.approx(128 / 255 / c, rel=0.05)  # Poisson: var = mean / c


def test_impulse_noise_flips_its_share_of_values_to_black_or_white() -> None:
    x = np.full((C.BLOCK, 32, 32, 3), 128, np.uint8)
    for severity, amount in enumerate(C.PARAMS["impulse_noise"], 1):
        out = C.corrupt(x, "impulse_noise", severity)
        assert set(np.unique(out)) <= {0, 128, 255}
        assert (out != 128).mean() == pytest.approx(amount, rel=0.1)
        assert (out == 0).mean() == pytest.approx((out == 255).mean(), rel=0.2)


def test_contrast_scales_around_each_channel_mean() -> None:
    x = textured(8)
    for severity, c in enumerate(C.PARAMS["contrast"], 1):
        out = C.corrupt(x, "contrast", severity).astype(float)
        np.testing.assert_allclose(out.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=0.6)
        np.testing.assert_allclose(out.std(axis=(1, 2)), c * x.std(axis=(1, 2)), rtol=0.02,
                                   atol=0.3)


def test_brightness_adds_to_hsv_value_and_saturate_scales_saturation() -> None:
    x = textured(8).astype(float)
    v = x.max(-1)
    s = np.where(v > 0, (v - x.min(-1)) / np.maximum(v, 1), 0)
    for severity, c in enumerate(C.PARAMS["brightness"], 1):
        out = C.corrupt(x.astype(np.uint8), "brightness", severity).astype(float)
        np.testing.assert_allclose(out.max(-1), np.minimum(v + c * 255, 255), atol=1)
    for severity, (a, b) in enumerate(C.PARAMS["saturate"], 1):
        out = C.corrupt(x.astype(np.uint8), "saturate", severity).astype(float)
        vo = out.max(-1)
        np.testing.assert_allclose(vo, v, atol=1)  # value kept
        so = (vo - out.min(-1)) / np.maximum(vo, 1)
        keep = v > 64  # well-defined saturation
        np.testing.assert_allclose(so[keep], np.clip(s * a + b, 0, 1)[keep], atol=0.03)
    grey = flat(((128, 128, 128),))
    for severity in (1, 2, 3):  # no offset: grey stays grey
        np.testing.assert_array_equal(C.corrupt(grey, "saturate", severity), grey)
    red = C.corrupt(grey, "saturate", 5)[0, 0, 0]  # as scikit-image's hue 0 makes it
    assert red[0] == 128 and red[1] == red[2] < 128


def test_white_is_the_brightness_identity() -> None:
    white = np.full((2, 32, 32, 3), 255, np.uint8)
    for severity in C.SEVERITIES:
        np.testing.assert_array_equal(C.corrupt(white, "brightness", severity), white)


def test_jpeg_and_pixelate_are_pillow_s() -> None:
    from PIL import Image

    x = textured(4)
    for severity, quality in enumerate(C.PARAMS["jpeg_compression"], 1):
        np.testing.assert_array_equal(C.corrupt(x, "jpeg_compression", severity),
                                      C.jpeg_roundtrip(x, quality))
    out = C.corrupt(x, "pixelate", 5)
    size = int(32 * C.PARAMS["pixelate"][4])
    small = Image.fromarray(x[0]).resize((size, size), Image.Resampling.BOX)
    np.testing.assert_array_equal(out[0], np.asarray(small.resize((32, 32),
                                                                  Image.Resampling.BOX)))
    assert np.abs(C.jpeg_roundtrip(flat(), 50).astype(int) - flat()).max() <= 3


def test_blurs_remove_fine_detail() -> None:
    x = textured(12)

    def detail(images: np.ndarray) -> float:  # mean horizontal gradient
        return float(np.abs(np.diff(images.astype(float), axis=2)).mean())

    for name in ("defocus_blur", "motion_blur", "zoom_blur", "gaussian_blur"):
        details = [detail(C.corrupt(x, name, s)) for s in C.SEVERITIES]
        assert max(details) < detail(x), name
    assert detail(C.corrupt(x, "gaussian_blur", 5)) < detail(C.corrupt(x, "gaussian_blur", 1))


def test_glass_blur_only_moves_pixels_up_and_left() -> None:
    """Severity 1 blurs with sigma 0.05 (no blur at all): each pixel from row and column 2
    on takes the value of itself or of a neighbour up/left, as make_cifar_c.py's loop does."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (C.BLOCK, 32, 32, 3), dtype=np.uint8)
    out = C.corrupt(x, "glass_blur", 1)
    np.testing.assert_array_equal(out[:, :2], x[:, :2])
    np.testing.assert_array_equal(out[:, :, :2], x[:, :, :2])
    candidates = np.stack([x[:, 2 - dy:32 - dy, 2 - dx:32 - dx]
                           for dy in (0, 1) for dx in (0, 1)])
    assert (candidates == out[None, :, 2:, 2:]).all(-1).any(0).all()


def test_weather_adds_light_or_haze() -> None:
    x = textured(12)
    for severity in C.SEVERITIES:
        # snow blends towards a brighter grey and adds flakes: never darker
        assert (C.corrupt(x, "snow", severity).astype(int) >= x.astype(int) - 1).all()
        # frost: a * image + b * texture (texture in [0, 255])
        a, b = C.PARAMS["frost"][severity - 1]
        out = C.corrupt(x, "frost", severity).astype(float)
        xf = x.astype(float)
        assert (out >= np.floor(a * xf) - 1).all() and (out <= a * xf + b * 255 + 1).all()
        # fog lowers contrast: smaller spread than the image
        assert C.corrupt(x, "fog", severity).std() < x.std()
    for severity in (1, 2, 3):  # water: only adds turquoise light
        assert (C.corrupt(x, "spatter", severity).astype(int) >= x.astype(int) - 1).all()
    for severity in (4, 5):  # mud: pixels kept or mixed towards brown (63, 42, 20)
        out = C.corrupt(x, "spatter", severity)
        moved = (out != x).any(-1)
        assert moved.mean() > 0.005
        assert (out[moved].astype(int)[:, 0] >= out[moved].astype(int)[:, 2] - 40).all()


def test_frost_texture_is_frost_coloured() -> None:
    t = C.frost_texture(500, np.random.default_rng(0))
    assert t.shape == (500, 32, 32, 3) and t.min() >= 0 and t.max() <= 255
    means = t.reshape(-1, 3).mean(0)
    assert means[2] > means[0]  # blue-ish white, as the photographs are
    assert 100 < means.mean() < 200


def test_elastic_transform_keeps_the_picture() -> None:
    x = textured(12)
    for severity in C.SEVERITIES:
        out = C.corrupt(x, "elastic_transform", severity)
        assert abs(out.mean() - x.mean()) < 6 and 1 < change(out, x) < 40


# --------------------------------------------------------------------------------------------
# scoring


def _brightness_model(images: np.ndarray) -> np.ndarray:
    """A 3-class 'model': the class is the image's brightness tercile (softened one-hot)."""
    level = np.clip((images.mean(axis=(1, 2, 3)) / 256 * 3).astype(int), 0, 2)
    probs = np.full((len(images), 3), 0.05)
    probs[np.arange(len(images)), level] = 0.9
    return probs


def test_score_corruptions() -> None:
    x = np.concatenate([textured(30, seed=s) for s in range(2)])
    y = np.clip((x.mean(axis=(1, 2, 3)) / 256 * 3).astype(int), 0, 2)
    lines = []
    result = C.score_corruptions(_brightness_model, x, y, names="noise,contrast,saturate",
                                 seed=1, progress=lines.append)
    assert result["clean"]["accuracy"] == 1.0 and result["images"] == 60
    assert list(result["per_corruption"]) == ["gaussian_noise", "shot_noise", "impulse_noise",
                                              "contrast", "saturate"]
    assert len(lines) == 5
    for r in result["per_corruption"].values():
        assert len(r["accuracy"]) == len(r["ece"]) == 5
        assert all(0 <= a <= 1 for a in r["accuracy"])
        assert r["mean_accuracy"] == pytest.approx(np.mean(r["accuracy"]))
    assert result["per_corruption"]["saturate"]["benchmark"] is False
    assert set(result["per_family"]) == {"noise", "digital"}
    noise = result["per_family"]["noise"]
    assert noise["mean_accuracy"] == pytest.approx(np.mean(
        [result["per_corruption"][n]["mean_accuracy"] for n in C.FAMILIES["noise"]]))
    mean = result["mean"]
    assert mean["complete"] is False and len(mean["corruptions"]) == 4
    assert mean["accuracy_drop"] == pytest.approx(1.0 - mean["mean_accuracy"])
    assert result["held_out"]["corruptions"] == ["saturate"]
    assert set(result["jpeg"]) == {"95", "75", "50"}
    # low contrast pulls images towards their mean: the brightness model barely minds
    assert result["per_corruption"]["contrast"]["mean_accuracy"] > 0.8
    json.dumps(result)  # JSON-ready
    table = C.format_corruption_table(result)
    assert "gaussian_noise" in table and "saturate" in table and "held-out*" in table
    assert "JPEG round trip" in table and "benchmark mean" in table
    again = C.score_corruptions(_brightness_model, x, y, names="noise,contrast,saturate",
                                seed=1)
    assert again["per_corruption"] == result["per_corruption"]


# --------------------------------------------------------------------------------------------
# evaluate and the command line, on a tiny trained run


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    """A copy of the shared run, so that its report here is nobody else's business."""
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    shutil.rmtree(run / "report", ignore_errors=True)  # from tests evaluating the shared run
    return run


def test_evaluate_with_corruptions(run_copy: Path, tiny_data) -> None:
    import cifar_cnn

    plain = cifar_cnn.evaluate(run_copy, data=tiny_data, tta=False, report=False)
    assert "corruptions" not in plain  # metrics.json as before without corruptions
    metrics = cifar_cnn.evaluate(run_copy, data=tiny_data, tta=False,
                                 corruptions=["spatter", "fog"], corruption_images=20, seed=3)
    result = metrics["corruptions"]
    assert result["images"] == 20 and result["seed"] == 3
    assert list(result["per_corruption"]) == ["fog", "spatter"]  # the registry's order
    assert list(result["per_family"]) == ["weather"] and result["mean"]["complete"] is False
    assert result["probabilities"].startswith("calibrated")
    assert 0 <= result["clean"]["accuracy"] <= 1
    on_disk = json.loads((run_copy / "report/metrics.json").read_text())
    assert on_disk["corruptions"]["per_corruption"]["fog"]["accuracy"] == (
        result["per_corruption"]["fog"]["accuracy"])
    assert (run_copy / "report/corruptions.png").stat().st_size > 5000
    html = (run_copy / "report/report.html").read_text()
    assert "Robustness to common corruptions" in html and "spatter *" in html
    assert 'id="jpeg-sweep"' in html
    for key in ("accuracy", "ece", "per_class"):  # the rest of the metrics are as before
        assert metrics[key] == plain[key]
    with pytest.raises(ConfigError, match="Unknown corruption"):
        cifar_cnn.evaluate(run_copy, data=tiny_data, corruptions="rain")


def test_the_corruption_subset_takes_every_class_in_its_share() -> None:
    from cifar_cnn.data.split import stratified_subset

    y = np.repeat(np.arange(10), 100)  # class by class, as a folder tree loads
    sub = stratified_subset(y, 200, seed=3)
    assert list(np.bincount(y[sub])) == [20] * 10
    assert np.array_equal(sub, np.sort(sub)) and len(set(sub)) == 200
    assert np.array_equal(sub, stratified_subset(y, 200, seed=3))
    assert not np.array_equal(sub, stratified_subset(y, 200, seed=4))
    assert np.array_equal(stratified_subset(y, 5000), np.arange(1000))  # all of them
    assert len(set(stratified_subset(y, 4, seed=0))) == 4  # fewer than the classes


def test_cli_evaluate_corruptions(run_copy: Path, folder_dataset: Path, capsys) -> None:
    from cifar_cnn import cli

    code = cli.main(["evaluate", str(run_copy), "--data", str(folder_dataset), "--no-tta",
                     "--corruptions", "gaussian_noise,spatter", "--corruption-images", "8",
                     "--corruption-seed", "2", "--no-report"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Corruptions: 8 images, seed 2" in out
    assert "gaussian_noise" in out and "spatter" in out and "held-out*" in out
    assert "JPEG round trip: quality 95" in out
    assert not (run_copy / "report").exists()
    code = cli.main(["evaluate", str(run_copy), "--data", str(folder_dataset), "--no-tta",
                     "--corruption-images", "8", "--json", "--no-report"])
    assert code == 0 and "corruptions" not in json.loads(capsys.readouterr().out)
