"""Prediction throughput: the CLI over the 10,000 test images saved as JPEG files.

Writes the test set as JPEG files (Pillow, quality 75, 4:2:0, one folder per class) to a
temporary folder, then for each run and test-time augmentation setting measures

- ``shell``: ``cifar-cnn predict RUN FOLDER --jsonl > file`` from a fresh process, wall time
  from start to exit (Python and TensorFlow start-up, model loading, everything);
- ``call``: `Classifier.predict_files` over the same folder inside one process, after the
  model is loaded and warmed up: decoding (in parallel), batching, the model, calibration.

Each is repeated ``--repeats`` times; the JSON keeps every timing and the median. The
accuracy of the predictions (labels from the folder names) is recorded as a check.

Writes ``benchmarks/results/predict_throughput-<UTC time>.json``.

Usage:
    python -m benchmarks.predict_throughput runs/fast94 runs/baseline \\
        --data ../shared/datasets/cifar10
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from benchmarks.common import write_result


def write_jpegs(data: str | None, folder: Path, quality: int) -> int:
    """The test set as JPEG files ``folder/<class>/<index>.jpg``; returns how many."""
    from cifar_cnn.data import load_cifar10

    ds = load_cifar10(data)
    for name in ds.class_names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(ds.x_test, ds.y_test, strict=True)):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=quality, subsampling="4:2:0")
        (folder / ds.class_names[label] / f"{i:05d}.jpg").write_bytes(buf.getvalue())
    return len(ds.y_test)


def measure(run: str, folder: Path, n: int, tta: bool, repeats: int) -> dict[str, Any]:
    from cifar_cnn import Classifier

    flag = "--tta" if tta else "--no-tta"
    shell = []
    for _ in range(repeats):
        with tempfile.TemporaryFile() as out:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cifar_cnn", "predict", run, str(folder),
                            "--jsonl", flag], stdout=out, check=True)
            shell.append(round(time.perf_counter() - t0, 3))
    clf = Classifier.load(run)
    warm = sorted(folder.rglob("*.jpg"))[:1000]
    list(clf.predict_files(warm, tta=tta))  # traces the model's predict function
    call, correct = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        preds = list(clf.predict_files([folder], tta=tta))
        call.append(round(time.perf_counter() - t0, 3))
        correct = sum(p.label == Path(p.file).parent.name for p in preds)
    mode = (clf.tta or "flip") if tta else None
    return {
        "run": run, "recipe": Path(run).name, "tta": mode, "images": n,
        "shell_seconds": shell, "call_seconds": call,
        "shell_images_per_second": round(n / statistics.median(shell), 1),
        "call_images_per_second": round(n / statistics.median(call), 1),
        "accuracy": correct / n,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--data", default=None)
    p.add_argument("--quality", type=int, default=75)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n = write_jpegs(args.data, folder, args.quality)
        for run in args.runs:
            for tta in (False, True):
                results.append(measure(run, folder, n, tta, args.repeats))
                print(results[-1], flush=True)
    path = write_result("predict_throughput", {"jpeg_quality": args.quality,
                                               "repeats": args.repeats, "results": results})
    for r in results:
        print(f"{r['recipe']:<10} TTA {r['tta'] or 'none':<15} shell "
              f"{r['shell_images_per_second']:>8.1f} images/s   call "
              f"{r['call_images_per_second']:>8.1f} images/s   accuracy {r['accuracy']:.4f}")
    print(path)


if __name__ == "__main__":
    main()
