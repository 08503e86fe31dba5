"""Step time of distributed training: one process against 2 workers on this machine.

Trains fast94's network on a class-folder subset of the real CIFAR-10 (the first images
of each class) with the same global batch three ways, each in fresh processes, one after
the other: ``default`` (one process, Keras ``fit``), ``multi-worker`` with 1 worker (the
``strategy.run`` loop alone) and ``multi-worker`` with 2 workers on 127.0.0.1 (both
sharing this machine's cores, so it cannot be faster here: the figure shows the cost of
the loop, synchronised batch norm and the gRPC all-reduce). Step time is the global batch
over the images per second that ``history.csv`` records for each epoch; the first epoch
(tracing) is left out.

Writes ``benchmarks/results/distributed-<UTC time>.json``.

Usage:
    python -m benchmarks.distributed --data ../shared/datasets/cifar10
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import write_result


def subset(source: Path, root: Path, per_class: int) -> Path:
    """Symlinks to the first `per_class` training images of each class (and 100 test)."""
    for split, n in (("train", per_class), ("test", 100)):
        for folder in sorted((source / split).iterdir()):
            (root / split / folder.name).mkdir(parents=True)
            for f in sorted(folder.iterdir())[:n]:
                (root / split / folder.name / f.name).symlink_to(f.resolve())
    return root


def train(args: list[str], workers: int, cwd: Path) -> None:
    """``cifar-cnn train ARGS`` in `workers` processes (0: one plain process)."""
    cmd = [sys.executable, "-m", "cifar_cnn", "train", *args]
    if not workers:
        subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        return
    socks = [socket.socket() for _ in range(workers)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    hosts = [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    for s in socks:
        s.close()
    procs = []
    for i in range(workers):
        env = {**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}})}
        procs.append(subprocess.Popen([*cmd, "--strategy", "multi-worker"], cwd=cwd, env=env,
                                      stdout=subprocess.DEVNULL))
    try:
        codes = [p.wait(timeout=1800) for p in procs]
    finally:
        for p in procs:
            p.kill()
    if any(codes):
        raise SystemExit(f"a worker failed: exit codes {codes}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="CIFAR-10 as class folders of images")
    p.add_argument("--per-class", type=int, default=400)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=500)
    args = p.parse_args()

    setups = {"default": 0, "multi-worker x1": 1, "multi-worker x2": 2}
    numbers: dict = {"recipe": "fast94", "epochs": args.epochs, "batch_size": args.batch_size,
                     "train_images": args.per_class * 10, "setups": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = subset(Path(args.data), Path(tmp) / "data", args.per_class)
        for name, workers in setups.items():
            run = f"run{workers}"
            train(["--recipe", "fast94", "--epochs", str(args.epochs), "--batch-size",
                   str(args.batch_size), "--data", str(data), "--runs-dir", "runs", "--name",
                   run, "--no-monitor", "--quiet", "--calibration-size", "0"],
                  workers, Path(tmp))
            with open(Path(tmp) / "runs" / run / "history.csv", newline="") as f:
                ips = [float(r["images_per_sec"]) for r in csv.DictReader(f)][1:]
            steps = [args.batch_size / v for v in ips]
            numbers["setups"][name] = {
                "workers": workers or 1,
                "step_seconds_median": round(statistics.median(steps), 3),
                "step_seconds": [round(s, 3) for s in steps],
                "images_per_second_median": round(statistics.median(ips), 1),
            }
            print(name, numbers["setups"][name], flush=True)
    path = write_result("distributed", numbers)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
