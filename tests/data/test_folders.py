"""Folders of your own images: layouts, any format and size, class errors, the cache,
the summary and the stratified hold-out; all on small folders made inside the tests."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_cnn.data import (
    CifarData,
    DataSummary,
    DataWarning,
    load_cifar10,
    load_dataset,
    stratified_holdout,
)
from cifar_cnn.data import folders as folders_mod
from cifar_cnn.errors import ConfigError, DataError

RED, GREEN, BLUE = (220, 20, 20), (20, 200, 20), (20, 20, 220)


def _pngs(folder: Path, n: int, colour: tuple[int, int, int] = RED, size: int = 8) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (size, size), colour).save(folder / f"img_{i:03d}.png")


def _exif_jpeg(path: Path) -> None:
    """80x40 stored top red / bottom blue; EXIF orientation 6 displays it rotated 90 degrees
    clockwise: 40x80, left half blue, right half red."""
    im = Image.new("RGB", (80, 40), RED)
    im.paste(Image.new("RGB", (80, 20), BLUE), (0, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(path, quality=95, exif=exif.tobytes())


def make_mixed_folder(root: Path) -> Path:
    """3 classes (flat layout), 9 readable images of mixed sizes (20x20 to 800x600) and
    formats, one truncated image, a text file, a hidden file and a hidden folder."""
    cat, dog, fox = root / "cat", root / "dog", root / "fox"
    for d in (cat, dog, fox, root / ".thumbs"):
        d.mkdir(parents=True)
    _exif_jpeg(cat / "a_exif.jpg")
    Image.new("RGBA", (50, 50), (0, 0, 0, 0)).save(cat / "b_alpha.png")  # transparent
    Image.new("L", (20, 20), 100).save(cat / "c_gray.png")
    full = root / "full.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(full)
    data = full.read_bytes()
    (cat / "d_truncated.png").write_bytes(data[: len(data) // 2])
    full.unlink()
    Image.new("RGB", (30, 30), GREEN).convert("P", palette=Image.Palette.ADAPTIVE).save(
        dog / "a_palette.gif")
    Image.new("CMYK", (800, 600), (0, 255, 255, 0)).save(dog / "b_cmyk.jpg", quality=95)
    Image.new("RGB", (640, 480), BLUE).save(dog / "c_photo.jpg", quality=90)
    (dog / "notes.txt").write_text("not an image")
    Image.fromarray(np.full((48, 64), 32768, np.uint16)).save(fox / "a_16bit.png")
    Image.new("RGB", (20, 20), RED).save(fox / "b_small.png")
    Image.new("RGB", (800, 600), GREEN).save(fox / "c_big.png")
    (fox / ".DS_Store").write_bytes(b"\0\0")
    Image.new("RGB", (8, 8)).save(root / ".thumbs" / "x.png")
    return root


def _by_file(ds: CifarData) -> dict[str, np.ndarray]:
    out = {}
    for split, x in (("train", ds.x_train), ("val", ds.x_val), ("test", ds.x_test)):
        for name, img in zip((ds.files or {}).get(split, ()), x, strict=True):
            out[name] = img
    return out


def test_mixed_folder_loads_every_format_and_skips_what_it_cannot(tmp_path: Path) -> None:
    root = make_mixed_folder(tmp_path / "mixed")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # nothing here deserves a warning
        ds = load_dataset(root)
    assert ds.class_names == ("cat", "dog", "fox")
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape[1:] == (32, 32, 3)
    assert ds.y_train.dtype == np.uint8
    # 9 readable images: 3 per class, one of each held out for validation (no test split).
    assert len(ds.x_train) == 6 and len(ds.x_val) == 3 and len(ds.x_test) == 0
    assert ds.has_val and not ds.has_test
    assert ds.summary.counts == {"train": (2, 2, 2), "val": (1, 1, 1)}
    images = _by_file(ds)
    assert len(images) == 9 and "cat/d_truncated.png" not in images
    r, b = (images["cat/a_exif.jpg"][:, :, c].astype(int) for c in (0, 2))
    assert b[:, :12].mean() > 150 > r[:, :12].mean()  # left blue: EXIF rotation applied
    assert r[:, 20:].mean() > 150 > b[:, 20:].mean()  # right red
    assert (images["cat/b_alpha.png"] == 255).all()  # transparent over white
    assert (images["cat/c_gray.png"] == 100).all()  # grayscale to RGB
    assert np.abs(images["dog/a_palette.gif"].astype(int) - GREEN).max() <= 2
    cmyk = images["dog/b_cmyk.jpg"].astype(int)
    assert cmyk[..., 0].mean() > 200 and cmyk[..., 1:].mean() < 60  # CMYK red
    assert np.abs(images["dog/c_photo.jpg"].astype(int) - BLUE).max() <= 8
    assert (images["fox/a_16bit.png"] == 128).all()  # 16-bit scaled to 8 bits
    assert (images["fox/b_small.png"] == RED).all() and (images["fox/c_big.png"] == GREEN).all()
    # Skipped: counted by kind and listed with the reason.
    skipped = {s.path: s for s in ds.summary.skipped}
    assert skipped["cat/d_truncated.png"].kind == "unreadable"
    assert "truncated" in skipped["cat/d_truncated.png"].reason
    assert skipped["dog/notes.txt"].kind == "not-image"
    assert skipped["fox/.DS_Store"].kind == "hidden" and skipped[".thumbs"].kind == "hidden"
    assert ds.summary.skipped_counts() == {"unreadable": 1, "not-image": 1, "hidden": 2}
    assert [s.path for s in ds.summary.unreadable] == ["cat/d_truncated.png"]
    table = ds.summary.table()
    assert "cat" in table and "dog/notes.txt" in table and "skipped 4" in table
    assert "cat/d_truncated.png: not a readable image" in table
    assert DataSummary.from_dict(ds.summary.to_dict()) == ds.summary


def test_strict_makes_unreadable_images_an_error_listing_them(tmp_path: Path) -> None:
    root = make_mixed_folder(tmp_path / "mixed")
    with pytest.raises(DataError, match=r"1 image file\(s\) under .*mixed cannot be read:"
                                        r"\n  cat/d_truncated\.png: .*truncated"):
        load_dataset(root, strict=True)
    load_dataset(root)  # lenient: cached with the skipped file ...
    with pytest.raises(DataError, match=r"d_truncated\.png"):
        load_dataset(root, strict=True)  # ... and strict still refuses it from the cache


def test_train_val_test_layout_maps_classes_by_name(tmp_path: Path) -> None:
    _pngs(tmp_path / "train/b_dog", 3, GREEN)
    _pngs(tmp_path / "train/a_cat", 2, RED)
    _pngs(tmp_path / "Validation/b_dog", 1, GREEN)
    _pngs(tmp_path / "Validation/a_cat", 1, RED)
    _pngs(tmp_path / "test/a_cat", 2, RED)  # no test images of dog: a warning
    (tmp_path / "README.md").write_text("about")
    with pytest.warns(DataWarning, match=r"test has no images of class\(es\) b_dog"):
        ds = load_dataset(tmp_path)
    assert ds.class_names == ("a_cat", "b_dog")
    assert ds.y_train.tolist() == [0, 0, 1, 1, 1]
    assert ds.y_val.tolist() == [0, 1] and ds.y_test.tolist() == [0, 0]
    assert ds.holdout is None  # the val folder is the validation split
    assert ds.files["val"] == ("Validation/a_cat/img_000.png", "Validation/b_dog/img_000.png")
    assert set(ds.fingerprint) == {"train_images", "train_labels", "test_images",
                                   "test_labels", "val_images", "val_labels"}
    assert ds.summary.counts == {"train": (2, 3), "val": (1, 1), "test": (2, 0)}
    assert ds.summary.skipped == ()  # files beside the split folders are not data


def test_train_folder_alone_gets_a_holdout(tmp_path: Path) -> None:
    _pngs(tmp_path / "train/cat", 5)
    _pngs(tmp_path / "train/dog", 5)
    ds = load_dataset(tmp_path, val_split=0.4, seed=1)
    assert len(ds.y_train) == 6 and np.bincount(ds.y_val).tolist() == [2, 2]
    assert all(f.startswith("train/") for f in ds.files["val"])


def test_image_size_and_resize_policy(tmp_path: Path) -> None:
    _pngs(tmp_path / "cat", 2, RED, size=40)
    (tmp_path / "dog").mkdir()
    Image.new("RGB", (64, 32), GREEN).save(tmp_path / "dog/wide.png")
    Image.new("RGB", (64, 32), GREEN).save(tmp_path / "dog/wide2.png")
    ds = load_dataset(tmp_path, image_size=16, resize="pad", val_split=0)
    assert ds.x_train.shape == (4, 16, 16, 3) and ds.x_val is None
    wide = ds.x_train[2]
    assert (wide[0] == 0).all() and (wide[8] == GREEN).all()  # padded with black bars
    assert ds.summary.image_size == 16 and ds.summary.resize == "pad"
    with pytest.raises(ConfigError, match="resize"):
        load_dataset(tmp_path, resize="stretch")
    with pytest.raises(ConfigError, match="val_split"):
        load_dataset(tmp_path, val_split=1.0)


def test_images_over_the_pixel_limit_are_skipped(tmp_path: Path) -> None:
    _pngs(tmp_path / "cat", 2, size=8)
    _pngs(tmp_path / "dog", 2, size=8)
    Image.new("RGB", (100, 100)).save(tmp_path / "dog/huge.png")
    ds = load_dataset(tmp_path, max_pixels=1000, val_split=0)
    (skip,) = ds.summary.unreadable
    assert skip.path == "dog/huge.png" and "over the limit of 1,000 pixels" in skip.reason
    assert len(ds.x_train) == 4


def test_thread_pool_keeps_the_order_of_one_thread(tmp_path: Path) -> None:
    for c, name in enumerate(("cat", "dog")):
        (tmp_path / name).mkdir()
        for i in range(45):  # several chunks of the decoding pool
            Image.new("RGB", (12, 9), (i, c * 100, 255 - i)).save(tmp_path / name / f"{i}.png")
    one = load_dataset(tmp_path, workers=1, val_split=0, use_cache=False)
    many = load_dataset(tmp_path, workers=4, val_split=0, use_cache=False)
    np.testing.assert_array_equal(one.x_train, many.x_train)
    assert one.files == many.files
    assert one.files["train"][:3] == ("cat/0.png", "cat/1.png", "cat/10.png")  # byte order
    assert one.x_train[2, 0, 0].tolist() == [10, 0, 245]


# --- class errors -------------------------------------------------------------------------

def test_single_class_is_an_error(tmp_path: Path) -> None:
    _pngs(tmp_path / "cat", 3)
    with pytest.raises(DataError, match=r"single class folder \(cat\).*at least two classes"):
        load_dataset(tmp_path)


def test_class_without_training_images_is_an_error(tmp_path: Path) -> None:
    _pngs(tmp_path / "train/cat", 2)
    (tmp_path / "train/dog").mkdir()
    (tmp_path / "train/dog/readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"no training images for class\(es\) dog .*train/dog"):
        load_dataset(tmp_path)


def test_class_whose_images_are_all_unreadable_is_an_error(tmp_path: Path) -> None:
    _pngs(tmp_path / "cat", 2)
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog/broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match=r"class\(es\) dog .* could be read: dog/broken\.jpg"):
        load_dataset(tmp_path)


def test_val_or_test_class_that_training_lacks_is_an_error(tmp_path: Path) -> None:
    _pngs(tmp_path / "train/cat", 2)
    _pngs(tmp_path / "train/dog", 2)
    _pngs(tmp_path / "val/cat", 1)
    _pngs(tmp_path / "val/eel", 1)
    with pytest.raises(DataError, match=r"val has class folder\(s\) eel that .*train lacks"):
        load_dataset(tmp_path)


def test_layout_errors_name_the_folder(tmp_path: Path) -> None:
    (tmp_path / "a/train").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "a/train/loose.png")
    with pytest.raises(DataError, match=r"a/train has no class folders"):
        load_dataset(tmp_path / "a")
    _pngs(tmp_path / "b/test/cat", 1)
    with pytest.raises(DataError, match=r"b has test/ but no train/ folder"):
        load_dataset(tmp_path / "b")
    for split in ("train", "val", "valid"):
        _pngs(tmp_path / "c" / split / "cat", 1)
    with pytest.raises(DataError, match=r"c has several val folders \(val, valid\)"):
        load_dataset(tmp_path / "c")


def test_many_classes_and_single_image_classes(tmp_path: Path) -> None:
    for i in range(300):
        _pngs(tmp_path / f"class_{i:03d}", 1, size=2)
    with pytest.warns(DataWarning, match="no image could be held out"):
        ds = load_dataset(tmp_path)
    assert ds.num_classes == 300 and ds.y_train.dtype == np.int32
    assert ds.y_train.tolist() == list(range(300)) and ds.x_val is None


# --- cache --------------------------------------------------------------------------------

def test_cache_hit_does_not_decode_and_changes_miss(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_mixed_folder(tmp_path / "mixed")
    first = load_dataset(root)

    def boom(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folders_mod, "try_load_image", boom)
    again = load_dataset(root)
    np.testing.assert_array_equal(again.x_train, first.x_train)
    np.testing.assert_array_equal(again.x_val, first.x_val)
    assert again.fingerprint == first.fingerprint and again.files == first.files
    assert again.summary == first.summary and again.holdout == first.holdout
    assert load_dataset(root, val_split=0.5, seed=3).x_val is not None  # no decode: a hit
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(root, resize="squish")
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(root, image_size=24)
    os.utime(root / "dog/c_photo.jpg", ns=(1, 1))  # touched: a miss
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(root)


def test_cache_miss_when_a_file_is_added(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _pngs(tmp_path / "cat", 2)
    _pngs(tmp_path / "dog", 2)
    load_dataset(tmp_path)
    monkeypatch.setattr(folders_mod, "try_load_image",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded")))
    load_dataset(tmp_path)
    _pngs(tmp_path / "eel", 2)
    with pytest.raises(AssertionError, match="decoded"):
        load_dataset(tmp_path)


# --- the stratified hold-out ----------------------------------------------------------------

def test_stratified_holdout_rules() -> None:
    y = np.repeat(np.arange(5), [1, 2, 3, 10, 100])
    keep, held = stratified_holdout(y, 0.2, seed=0)
    assert np.bincount(y[held], minlength=5).tolist() == [0, 1, 1, 2, 20]
    assert sorted([*keep, *held]) == list(range(len(y)))  # a partition
    assert (np.diff(held) > 0).all() and (np.diff(keep) > 0).all()
    np.testing.assert_array_equal(stratified_holdout(y, 0.2, seed=0)[1], held)
    assert not np.array_equal(stratified_holdout(y, 0.2, seed=1)[1], held)
    # Never a whole class, even with a large fraction.
    keep9, held9 = stratified_holdout(y, 0.9, seed=0)
    assert np.bincount(y[keep9], minlength=5).tolist() == [1, 1, 1, 1, 10]
    assert np.bincount(y[held9], minlength=5).tolist() == [0, 1, 2, 9, 90]
    assert len(stratified_holdout(y, 0.0)[1]) == 0
    with pytest.raises(ConfigError, match="val_split"):
        stratified_holdout(y, 1.0)


def test_holdout_of_a_class_does_not_depend_on_other_classes() -> None:
    y = np.repeat([0, 1], [20, 20])
    held = stratified_holdout(y, 0.25, seed=4)[1]
    y2 = np.concatenate([y, np.full(7, 2)])  # a new class appended
    held2 = stratified_holdout(y2, 0.25, seed=4)[1]
    np.testing.assert_array_equal(held2[held2 < 40], held)


def test_load_records_which_files_were_held_out(tmp_path: Path) -> None:
    _pngs(tmp_path / "cat", 6, RED)
    _pngs(tmp_path / "dog", 4, GREEN)
    ds = load_dataset(tmp_path, val_split=0.25, seed=7)
    assert ds.holdout["method"] == "stratified"
    assert ds.holdout["val_split"] == 0.25 and ds.holdout["seed"] == 7
    assert ds.holdout["num_images"] == len(ds.files["val"]) == 3
    digest = hashlib.sha256("\n".join(ds.files["val"]).encode()).hexdigest()
    assert ds.holdout["files_sha256"] == digest
    assert set(ds.files["train"]).isdisjoint(ds.files["val"])
    assert len(ds.files["train"]) + len(ds.files["val"]) == 10
    again = load_dataset(tmp_path, val_split=0.25, seed=7, use_cache=False)
    assert again.files == ds.files and again.fingerprint == ds.fingerprint
    for name, label in zip(ds.files["val"], ds.y_val, strict=True):
        assert name.split("/")[0] == ds.class_names[label]
    assert ds.summary.holdout == ds.holdout and "held out of train" in ds.summary.table()
    assert load_dataset(tmp_path, val_split=0).x_val is None


def test_load_cifar10_is_load_dataset(folder_dataset: Path) -> None:
    a = load_cifar10(folder_dataset)
    b = load_dataset(folder_dataset)
    assert a.fingerprint == b.fingerprint and a.x_val is None and b.holdout is None
    assert set(a.fingerprint) == {"train_images", "train_labels", "test_images",
                                  "test_labels"}
    assert a.source.startswith("folders:") and a.summary.counts["test"] == (4,) * 10
