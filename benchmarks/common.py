"""What every benchmark records beside its numbers: commit, machine, command, versions."""

from __future__ import annotations

import datetime as dt
import functools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def commit() -> str:
    """The current git commit, with '-dirty' if the tree has uncommitted changes."""
    from cifar_cnn.environment import source_commit

    return source_commit() or "unknown"


# Read when the benchmark starts: the code that ran, even if the tree moves on meanwhile.
START_COMMIT = commit()


def matmul_gflops(size: int = 4096, repeats: int = 8) -> dict[str, float]:
    """This machine's dense matmul speed in GFLOP/s (TensorFlow, float32 and bfloat16).

    Hosts of the same nominal kind differ: a 2-core Zen 4 measured here half the speed of
    the Zen 5 that earlier figures came from. Recorded beside every timing so that timings
    from different hosts can be told apart and scaled, never silently compared.
    """
    import tensorflow as tf

    speeds = {}
    for dtype in ("float32", "bfloat16"):
        a = tf.cast(tf.random.stateless_normal((size, size), seed=(0, 0)), dtype)
        matmul = tf.function(lambda a=a: tf.matmul(a, a))
        matmul().numpy()
        t0 = time.perf_counter()
        for _ in range(repeats):
            out = matmul()
        out.numpy()
        speeds[dtype] = round(2 * size**3 * repeats / (time.perf_counter() - t0) / 1e9, 1)
    return speeds


def write_result(kind: str, numbers: dict[str, Any], path: Path | None = None) -> Path:
    """Write ``results/<kind>-<UTC time>.json`` with the context of the measurement.

    Given the ``path`` an earlier call returned, replaces that file instead (atomically): a
    long benchmark writes what it has after each run, so an interrupted one keeps its runs.
    """
    from cifar_cnn.environment import environment_info
    from cifar_cnn.files import write_text

    env = environment_info()
    end_commit = commit()
    record = {
        "benchmark": kind,
        "commit": START_COMMIT,
        **({"commit_at_end": end_commit} if end_commit != START_COMMIT else {}),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": env["cpu"],
        "tensorflow": env["tensorflow"],
        "keras": env["keras"],
        "matmul_gflops": _matmul_gflops_once(),  # this host's speed, measured at the first write
        "environment": env,
        **numbers,
    }
    if path is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS / f"{kind}-{stamp}.json"
    write_text(path, json.dumps(record, indent=2) + "\n")
    return path


@functools.cache
def _matmul_gflops_once() -> dict[str, float]:
    return matmul_gflops()


def run_child(args: list[str]) -> dict[str, Any]:
    """Run ``python -m <args>`` in a fresh process; echo its output, return its last line.

    Each measured training gets its own process: clean TensorFlow state (a second
    ``model.fit`` in one process can fall into a slow mode here) and an honest peak RSS.
    The child prints its result as JSON on its last line of stdout.
    """
    cmd = [sys.executable, "-m", *args]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=RESULTS.parents[1]) as child:
        lines = []
        for line in child.stdout or ():  # echo the child's progress, keep its last line
            print(line, end="", file=sys.stderr, flush=True)
            lines.append(line)
    if child.returncode or not lines:
        raise SystemExit(f"{' '.join(args)} failed (exit {child.returncode})")
    return json.loads(lines[-1])
