"""Pack a trained run as the package's default model and record its provenance.

Packs RUN compactly (`cifar_cnn.pretrained.pack_run`) into src/cifar_cnn/pretrained/<name>/,
measures the packed model on the full 10,000-image test set (with the recipe's TTA,
calibrated) and on the fixed 1,000-image subset the tests check (the first 100 test images
of each class), and writes both, the SHA-256s and how it was trained into its metadata.json.

Usage (see README "The default model" for how the shipped model was made):
    cifar-cnn train --recipe robust --seed 0 --data ../shared/datasets/cifar10 --name robust-seed0
    python scripts/make_default_model.py runs/robust-seed0 --data ../shared/datasets/cifar10
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import numpy as np

SUBSET_PER_CLASS = 100


def subset_indices(labels: np.ndarray, per_class: int = SUBSET_PER_CLASS) -> np.ndarray:
    """The first `per_class` indices of each class, in class order."""
    return np.concatenate([np.flatnonzero(labels == c)[:per_class]
                           for c in range(int(labels.max()) + 1)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--data", required=True)
    p.add_argument("--name", default=None,
                   help="the folder under pretrained/ (default: the package's DEFAULT_MODEL)")
    p.add_argument("--trained-commit", default=None,
                   help="the cifar-cnn commit RUN was trained with (default: from its metadata)")
    p.add_argument("--trained-with", default=None,
                   help="the command that trained RUN, when it was not `cifar-cnn train "
                        "--recipe R --seed S` (e.g. a benchmark that kept its run)")
    args = p.parse_args()

    from cifar_cnn import evaluate
    from cifar_cnn.card import read_run_card, write_run_card
    from cifar_cnn.data import load_cifar10
    from cifar_cnn.files import sha256_file
    from cifar_cnn.predict import Classifier
    from cifar_cnn.pretrained import pack_run
    from cifar_cnn.runs import DEFAULT_MODEL, RunDir

    args.name = args.name or DEFAULT_MODEL
    out = Path(__file__).resolve().parents[1] / "src" / "cifar_cnn" / "pretrained" / args.name
    packed = pack_run(args.run, out)
    metrics = evaluate(packed.path, data=args.data, report=False)
    ds = load_cifar10(args.data)
    idx = subset_indices(ds.y_test)
    clf = Classifier.load(packed.path)
    subset_acc = float((clf.predict(ds.x_test[idx]).argmax(1) == ds.y_test[idx]).mean())
    source = read_run_card(RunDir(args.run))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    trained_commit = args.trained_commit or source.environment.get("commit", "?")
    default_command = f"cifar-cnn train --recipe {source.recipe_name} --seed {source.seed}"
    provenance = {
        "trained_with": (f"{args.trained_with or default_command} (cifar-cnn commit "
                         f"{trained_commit})"),
        "packed_by": f"python scripts/make_default_model.py (commit {commit})",
        "cpu": source.environment.get("cpu"),
        "train_seconds": source.train_seconds,
        "source_model_sha256": sha256_file(RunDir(args.run).model),
        "model_sha256": sha256_file(packed.model),
        "weights": "float16 for arrays of 4,096+ values, float32 for the rest",
        "test_accuracy": metrics["accuracy"],
        "test_accuracy_note": (f"all {metrics['num_images']} test images, TTA "
                               f"{metrics.get('tta') or 'none'}, the packed model"),
        "test_ece_calibrated": metrics.get("ece_calibrated"),
        "subset_accuracy": subset_acc,
        "subset": f"first {SUBSET_PER_CLASS} test images of each class (1,000), recipe's TTA",
    }
    write_run_card(packed, read_run_card(packed).replace(name=args.name, provenance=provenance))
    print(f"{packed.model}: {packed.model.stat().st_size / 1e6:.2f} MB, sha256 "
          f"{provenance['model_sha256']}; test accuracy {metrics['accuracy']:.4f}, "
          f"subset {subset_acc:.4f}")


if __name__ == "__main__":
    main()
