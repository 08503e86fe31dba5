"""Plot test accuracy against training wall time from time_to_accuracy results.

One line per result file: the mean over its seeds of the test accuracy (no TTA) after each
epoch, at the mean training time when that epoch ended; a star marks the final accuracy
with the recipe's test-time augmentation. A reference_airbench94_muon result, if given,
appears as two points (without and with its TTA).

Usage:
    python -m benchmarks.plot_curves benchmarks/results/time_to_accuracy-quick-*.json \\
        benchmarks/results/time_to_accuracy-fast94-*.json -o accuracy_vs_time.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from cifar_cnn.files import atomic_path


def mean_curve(result: dict[str, Any]) -> list[tuple[float, float]]:
    """``(seconds, accuracy)`` per epoch, averaged over the seeds that have a curve."""
    curves = [s["curve"] for s in result["seeds"] if s.get("curve")]
    if not curves:
        return []
    epochs = min(len(c) for c in curves)
    return [(statistics.fmean(c[e]["seconds"] for c in curves),
             statistics.fmean(c[e]["test_accuracy"] for c in curves)) for e in range(epochs)]


def plot(results: list[dict[str, Any]], out: Path, targets: tuple[float, ...] = (0.90, 0.94)
         ) -> Path:
    """Draw the curves of `results` (parsed JSON files) into the PNG `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    lowest = min(targets) - 0.25
    for i, result in enumerate(results):
        color = f"C{i}"
        if result.get("benchmark") == "reference_airbench94_muon":
            minutes = result["train_seconds"] / 60
            label = f"airbench94_muon, PyTorch ({result['test_accuracy_tta']:.2%} with TTA)"
            ax.plot([minutes], [result["test_accuracy"]], "o", color=color, mfc="none")
            ax.plot([minutes], [result["test_accuracy_tta"]], "*", ms=12, color=color,
                    label=label)
            continue
        curve = mean_curve(result)
        if not curve:
            raise SystemExit(f"{result['recipe']}: the result has no per-epoch curve; "
                             "re-run benchmarks.time_to_accuracy to record one.")
        n = len(result["seeds"])
        label = (f"{result['recipe']} ({result['mean_test_accuracy_tta']:.2%} with TTA, "
                 f"{n} seed{'s' * (n > 1)})")
        ax.plot([s / 60 for s, _ in curve], [a for _, a in curve], "-o", ms=4, color=color,
                label=label)
        lowest = min(lowest, min(a for _, a in curve) - 0.02)
        ax.plot([result["mean_train_seconds"] / 60], [result["mean_test_accuracy_tta"]], "*",
                ms=12, color=color)
    for t in targets:
        ax.axhline(t, color="0.6", lw=0.8, ls="--")
    ax.set_ylim(max(0.0, lowest), 1.0 - (1.0 - max(targets)) / 2)
    ax.set_xlim(left=0)
    ax.set_xlabel("training wall time (minutes)")
    ax.set_ylabel("CIFAR-10 test accuracy")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    ax.set_title("Test accuracy after each epoch (lines, no TTA); final with TTA (stars)",
                 fontsize=10)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", type=Path, help="time_to_accuracy / reference JSON")
    p.add_argument("-o", "--out", type=Path, default=Path("accuracy_vs_time.png"))
    args = p.parse_args()
    path = plot([json.loads(f.read_text()) for f in args.results], args.out)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
