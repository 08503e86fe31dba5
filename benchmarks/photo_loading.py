"""Loading a folder of ordinary photos: first scan and decode, then the cached load.

Writes the 10,000 CIFAR-10 test images upscaled to 640x480 (bicubic) as JPEG files
(quality 90) in a flat ``<class>/`` folder, then times `cifar_cnn.data.load_dataset` on it
(32x32, centre crop, 20% held out): ``--repeats`` cold loads, each into an empty cache
(every file opened, decoded and resized), and as many cached loads (the decoded arrays
read back, the folder listing checked). Targets (issue "Your own images"): >= 500 images/s
first time on 2 cores, >= 20,000 images/s cached.

Writes ``benchmarks/results/photo_loading-<UTC time>.json``.

Usage:
    python -m benchmarks.photo_loading --data ../shared/datasets/cifar10
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from benchmarks.common import write_result


def write_photos(data: str | None, folder: Path, size: tuple[int, int], quality: int) -> int:
    """The test set as ``folder/<class>/<index>.jpg`` photos of `size`; returns how many."""
    from cifar_cnn.data import load_cifar10

    ds = load_cifar10(data)
    for name in ds.class_names:
        (folder / name).mkdir(parents=True, exist_ok=True)

    def one(i: int) -> None:
        im = Image.fromarray(ds.x_test[i]).resize(size, Image.Resampling.BICUBIC)
        im.save(folder / ds.class_names[ds.y_test[i]] / f"{i:05d}.jpg", quality=quality)

    with ThreadPoolExecutor() as pool:
        list(pool.map(one, range(len(ds.x_test))))
    return len(ds.x_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="CIFAR-10 (for its test images)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--quality", type=int, default=90)
    args = parser.parse_args()

    from cifar_cnn.data import load_dataset

    with tempfile.TemporaryDirectory(prefix="photos-") as tmp:
        folder = Path(tmp) / "photos"
        t0 = time.perf_counter()
        n = write_photos(args.data, folder, (args.width, args.height), args.quality)
        write_seconds = time.perf_counter() - t0
        megabytes = sum(f.stat().st_size for f in folder.rglob("*.jpg")) / 1e6
        cold, cached = [], []
        for i in range(args.repeats):
            cache = Path(tmp) / f"cache-{i}"  # empty: every image decoded
            t0 = time.perf_counter()
            ds = load_dataset(folder, cache_dir=cache)
            cold.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            again = load_dataset(folder, cache_dir=cache)
            cached.append(time.perf_counter() - t0)
            assert again.fingerprint == ds.fingerprint
        loaded = len(ds.x_train) + len(ds.x_val)
        assert loaded == n, (loaded, n)
    numbers = {
        "images": n, "photo_size": [args.width, args.height], "jpeg_quality": args.quality,
        "folder_megabytes": round(megabytes, 1), "write_seconds": round(write_seconds, 2),
        "cold_seconds": [round(s, 3) for s in cold],
        "cached_seconds": [round(s, 4) for s in cached],
        "cold_images_per_sec_median": round(n / statistics.median(cold), 1),
        "cached_images_per_sec_median": round(n / statistics.median(cached), 1),
        "targets": {"cold_images_per_sec": 500, "cached_images_per_sec": 20000},
    }
    path = write_result("photo_loading", numbers)
    print(f"{n} photos {args.width}x{args.height}: cold {numbers['cold_images_per_sec_median']}"
          f" images/s, cached {numbers['cached_images_per_sec_median']} images/s -> {path}")


if __name__ == "__main__":
    main()
