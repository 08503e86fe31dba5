"""Where a training step of the airbench network spends its time on this CPU.

Times ``model.fit`` steps (batch 1024, random uint8 images, SGD-Nesterov) for the full
network and for variants with parts removed, under a precision policy. The difference
between variants apportions the step: convolutions (+ pooling) vs batch norm vs GELU vs the
rest. Also reports achieved GFLOP/s against the network's counted conv+dense FLOPs.

Usage:
    python -m benchmarks.profile_step --precision mixed_bfloat16 --steps 8
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
from keras import layers

from benchmarks.common import write_result
from cifar_cnn.models.airbench import CIFAR10_MEAN, CIFAR10_STD, PatchWhitening

WIDTHS = (64, 256, 256)


def build(bn: bool, act: str | None) -> keras.Model:
    """The airbench network with batch norm and/or the activation optionally left out."""
    inputs = keras.Input((32, 32, 3))
    x = layers.Normalization(mean=CIFAR10_MEAN, variance=[s * s for s in CIFAR10_STD])(inputs)
    x = PatchWhitening(name="whiten")(x)
    if act:
        x = layers.Activation(act)(x)
    for w in WIDTHS:
        for i in (1, 2):
            x = layers.Conv2D(w, 3, padding="same", use_bias=False)(x)
            if i == 1:
                x = layers.MaxPooling2D(2)(x)
            if bn:
                x = layers.BatchNormalization(momentum=0.4, epsilon=1e-12, scale=False)(x)
            if act:
                x = layers.Activation(act)(x)
    x = layers.GlobalMaxPooling2D()(x)
    x = layers.Dense(10, use_bias=False)(x)
    outputs = layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs)


def train_flops_per_image() -> float:
    """Multiply-adds of the convs and head, x2 for FLOPs, x3 for forward + two backward."""
    macs, size, cin = 31 * 31 * 24 * 12, 31, 24  # whitening 2x2x3 -> 24 at 31x31
    for w in WIDTHS:
        macs += size * size * 9 * cin * w
        size //= 2
        macs += size * size * 9 * w * w
        cin = w
    macs += 256 * 10
    return 2 * 3 * macs


def images_per_second(model: keras.Model, steps: int, batch: int = 1024) -> float:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * steps, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, batch * steps)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.85, nesterov=True),
                  loss="sparse_categorical_crossentropy")
    model.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, verbose=0)  # trace, warm up
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    return len(x) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precision", default="mixed_bfloat16")
    p.add_argument("--steps", type=int, default=8)
    args = p.parse_args()
    keras.config.set_dtype_policy(args.precision)
    flops = train_flops_per_image()
    variants = {"full": (True, "gelu"), "relu": (True, "relu"), "no_bn": (False, "gelu"),
                "convs_only": (False, None)}
    results = {}
    for name, (bn, act) in variants.items():
        keras.utils.set_random_seed(0)
        ips = images_per_second(build(bn, act), args.steps)
        step_ms = 1024 / ips * 1000
        results[name] = {"images_per_second": round(ips, 1), "step_ms": round(step_ms, 1),
                         "gflops_per_second": round(ips * flops / 1e9, 1)}
        print(name, results[name], flush=True)
    full, convs = results["full"]["step_ms"], results["convs_only"]["step_ms"]
    numbers = {
        "precision": args.precision,
        "batch_size": 1024,
        "steps": args.steps,
        "train_gflop_per_image": round(flops / 1e9, 4),
        "variants": results,
        "conv_share_of_step": round(convs / full, 3),
        "batchnorm_ms": round(full - results["no_bn"]["step_ms"], 1),
        "gelu_vs_relu_ms": round(full - results["relu"]["step_ms"], 1),
    }
    path = write_result("profile_step", numbers)
    print(f"convolutions (+pooling, whitening, head) take {convs / full:.0%} of a "
          f"{full:.0f} ms step -> {path}")


if __name__ == "__main__":
    main()
