"""Inference speed of a run and of its exports: Keras, SavedModel, LiteRT, onnxruntime.

For each run directory and each export of it (folders written by ``cifar-cnn export``),
in a fresh process per runtime: batch-1 latency (p50 / p99 over ``--calls`` single-image
calls, after warm-up) and batch-256 throughput (median of ``--repeats`` passes over 2,560
test images), plus the file size and the export's test accuracy and agreement with Keras
from its ``parity.json`` (the full test set, run when it was exported). Probabilities are
the model's own (calibrated for exports, raw for Keras); no test-time augmentation.

Writes ``benchmarks/results/export_speed-<UTC time>.json``.

Usage:
    cifar-cnn export runs/fast94 --format litert --quantize int8 \\
        --out runs/fast94-export/litert-int8   # and so on for each format
    python -m benchmarks.export_speed runs/fast94=runs/fast94-export \\
        runs/baseline=runs/baseline-export --data ../shared/datasets/cifar10
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import run_child, write_result


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(
        p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(model_path: str, data: str | None, calls: int, repeats: int) -> dict[str, Any]:
    """Time one model (a run directory or an export) in this process."""
    import numpy as np

    from cifar_cnn.data import load_cifar10
    from cifar_cnn.predict import Classifier

    clf = Classifier.load(model_path)
    model = clf.model
    x = load_cifar10(data).x_test
    rng = np.random.default_rng(0)
    batch = x[rng.permutation(len(x))[:2560]]

    def one(i: int) -> None:
        if hasattr(model, "predict_on_batch"):
            model.predict_on_batch(batch[i:i + 1])
        else:
            model.predict(batch[i:i + 1], batch_size=1)

    for i in range(10):  # warm-up: tracing, kernel set-up
        one(i)
    latencies = []
    for i in range(calls):
        t0 = time.perf_counter()
        one(i % len(batch))
        latencies.append(time.perf_counter() - t0)
    latencies.sort()
    model.predict(batch[:256], batch_size=256, verbose=0)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.predict(batch, batch_size=256, verbose=0)
        rates.append(len(batch) / (time.perf_counter() - t0))
    return {"batch1_p50_ms": round(1e3 * latencies[len(latencies) // 2], 2),
            "batch1_p99_ms": round(1e3 * latencies[int(0.99 * (len(latencies) - 1))], 2),
            "batch256_images_per_second": round(statistics.median(rates), 1),
            "batch256_all": [round(r, 1) for r in rates]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", metavar="RUN=EXPORTS",
                   help="a run directory and the folder holding its exports")
    p.add_argument("--data", default=None)
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.data, args.calls, args.repeats)))
        return
    if not args.runs:
        p.error("give at least one RUN=EXPORTS")

    results: dict[str, Any] = {}
    for spec in args.runs:
        run, _, exports = spec.partition("=")
        rows: dict[str, Any] = {}
        targets = [("keras", Path(run), Path(run) / "model.keras")]
        targets += [(d.name, d, d) for d in sorted(Path(exports).iterdir()) if d.is_dir()]
        for name, path, files in targets:
            row = run_child(["benchmarks.export_speed", "--child", str(path),
                             "--calls", str(args.calls), "--repeats", str(args.repeats),
                             *(["--data", args.data] if args.data else [])])
            row["size_mb"] = round(_size(files) / 1e6, 2)
            parity = path / "parity.json"
            if parity.is_file():
                row["parity"] = json.loads(parity.read_text())
            rows[name] = row
            print(Path(run).name, name, {k: v for k, v in row.items() if k != "parity"},
                  file=sys.stderr, flush=True)
        results[Path(run).name] = rows
    path = write_result("export_speed", {"calls": args.calls, "repeats": args.repeats,
                                         "runs": results})
    print(f"-> {path}")


if __name__ == "__main__":
    main()
