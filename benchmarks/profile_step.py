"""Where a training step of the airbench network spends its time on this CPU.

Two measurements, each variant in a fresh process:

- Whole training steps (``model.fit`` with MuonSGD, label smoothing, random uint8 images)
  of the airbench network and of variants with parts swapped or removed: the difference
  between variants apportions the step to batch norm, the activation, and the rest.
  Each step is timed on its own (a host sync per step) and the median is kept: the mean of
  a second ``fit`` call on this machine sometimes fell into a slow mode that made every
  variant look alike (1.70 s per step for all of them), which had us blaming convolutions.
- The convolutions alone: forward pass plus both gradients of each of the network's six
  3x3 convolutions in plain TensorFlow, at the network's shapes. Their sum is the step time
  if everything but the convolutions were free.
- A ``tf.profiler`` trace of full steps, summed per kind of op (convolution, batch norm,
  pooling, activation, ...): thread time, so ops that TensorFlow runs side by side on its
  two inter-op threads both count, and the shares, not the sums, compare with the step.

Usage:
    python -m benchmarks.profile_step --batch 500
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import write_result

WIDTHS = (64, 256, 256)
QUICK_WIDTHS = (32, 128, 128)  # the quick recipe's network, for the isolated convs only


def _identity(name: str, **_: object) -> object:
    import keras

    return keras.layers.Identity(name=name)


def _keras_gelu(name: str) -> object:
    import keras

    return keras.layers.Activation("gelu", name=name)


# Whole-step variants, as arguments of the airbench builder (`cifar_cnn.models.airbench`):
# "keras_gelu" is Keras' own unfused GELU in place of FusedGELU; "keras_conv" is Keras'
# Conv2D (TensorFlow's own kernel gradient) in place of SmallMapConv2D; "no_bn" replaces
# every batch norm by the identity; "convs_only" also drops the activations.
VARIANTS: dict[str, dict[str, object]] = {
    "full": {},
    "keras_gelu": {"activation": _keras_gelu},
    "keras_conv": {"conv_layer": "Conv2D"},
    "relu": {"activation": "relu"},
    "no_bn": {"norm_layer": _identity},
    "no_bn_relu": {"norm_layer": _identity, "activation": "relu"},
    "convs_only": {"norm_layer": _identity, "activation": "linear"},
}


def conv_shapes(widths: tuple[int, ...] = WIDTHS) -> list[tuple[int, int, int]]:
    """(input size, in channels, out channels) of each 3x3 conv, after the 2x2 whitening."""
    shapes, size, cin = [], 31, 24
    for w in widths:
        shapes.append((size, cin, w))
        size //= 2
        shapes.append((size, w, w))
        cin = w
    return shapes


def train_flops_per_image(widths: tuple[int, ...] = WIDTHS) -> float:
    """Multiply-adds of the convs and head, x2 for FLOPs, x3 for forward + two backward."""
    macs = 31 * 31 * 24 * 12  # whitening 2x2x3 -> 24 at 31x31
    macs += sum(size * size * 9 * cin * cout for size, cin, cout in conv_shapes(widths))
    macs += widths[-1] * 10
    return 2 * 3 * macs


def model_and_batch(variant: str, batch: int, steps: int, precision: str,
                    recipe: str = "fast94") -> tuple:
    """`recipe`'s compiled network with ``variant``'s parts, and a batch of random images."""
    import keras
    import numpy as np

    from cifar_cnn.recipes import get_recipe
    from cifar_cnn.training.trainer import build_model

    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    r = get_recipe(recipe).replace(batch_size=batch)
    r = r.replace(model_options={**r.model_options, **VARIANTS[variant]})
    model = build_model(r, 10, (32, 32, 3), steps_per_epoch=steps)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, batch)]
    return model, x, y


def step_images_per_second(variant: str, batch: int, steps: int, precision: str,
                           recipe: str = "fast94") -> float:
    """Median training speed of one network variant, from per-step wall times."""
    import keras
    import tensorflow as tf

    model, x, y = model_and_batch(variant, batch, steps, precision, recipe)
    times: list[float] = []

    class StepTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # wait for the step to finish
            now = time.perf_counter()
            times.append(now - self.t)
            self.t = now

    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(data, steps_per_epoch=steps + 2, epochs=1, verbose=0, callbacks=[StepTimer()])
    return batch / statistics.median(times[2:])  # the first two steps trace and warm up


def isolated_convs(batch: int, widths: tuple[int, ...] = WIDTHS,
                   repeats: int = 3) -> list[dict]:
    """Forward + input and kernel gradients of each conv alone, bfloat16, in milliseconds.

    Each conv is timed with TensorFlow's kernel gradient (``tensorflow_ms``) and with
    SmallMapConv2D's nine matmuls (``matmul_kernel_grad_ms``); ``ms`` is the one the
    network uses for that shape.
    """
    import tensorflow as tf

    from cifar_cnn.layers.small_map_conv import matmul_grad_conv, matmul_kernel_grad_pays

    def timed(conv, x, w) -> float:
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = conv(x, tf.cast(w, tf.bfloat16))
                loss = tf.reduce_sum(tf.cast(y, tf.float32))
            return tape.gradient(loss, [x, w])

        step()
        t0 = time.perf_counter()
        for _ in range(repeats):
            out = step()
        out[1].numpy()
        return (time.perf_counter() - t0) / repeats

    def tf_conv(x, k):
        return tf.nn.conv2d(x, k, 1, "SAME")

    rows = []
    for size, cin, cout in conv_shapes(widths):
        x = tf.cast(tf.random.stateless_normal((batch, size, size, cin), seed=(0, 1)),
                    tf.bfloat16)
        w = tf.Variable(tf.random.stateless_normal((3, 3, cin, cout), seed=(0, 2)) * 0.05)
        tf_seconds, mm_seconds = timed(tf_conv, x, w), timed(matmul_grad_conv, x, w)
        ours = matmul_kernel_grad_pays(size, size, cin, cout)
        seconds = mm_seconds if ours else tf_seconds
        flops = 3 * 2 * batch * size * size * 9 * cin * cout
        rows.append({"shape": f"{size}x{size}x{cin}->{cout}", "ms": round(seconds * 1e3, 1),
                     "tensorflow_ms": round(tf_seconds * 1e3, 1),
                     "matmul_kernel_grad_ms": round(mm_seconds * 1e3, 1),
                     "network_uses_matmul_kernel_grad": ours,
                     "gflops_per_second": round(flops / seconds / 1e9, 1)})
    return rows


OP_KINDS = (  # (kind, substrings of TensorFlow op types or XLA kernel names), first match wins
    ("convolution", ("Conv2D",)),
    ("batch norm", ("BatchNorm",)),
    ("pooling", ("MaxPool",)),
    ("activation", ("fusion", "Gelu", "Erf", "Relu", "Tanh", "Sigmoid")),  # XLA: FusedGELU
    ("matmul (head, Muon)", ("MatMul", "Einsum")),
)


def op_kind(op_type: str) -> str:
    """Which part of the step a TensorFlow op type or XLA kernel name belongs to."""
    return next((kind for kind, keys in OP_KINDS if any(k in op_type for k in keys)), "other")


def traced_op_times(batch: int, steps: int, precision: str) -> dict:
    """Thread time per kind of op in full training steps, from a ``tf.profiler`` trace."""
    import tempfile
    from collections import Counter

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    from cifar_cnn.layers.small_map_conv import MATMUL_KERNEL_GRAD

    model, x, y = model_and_batch("full", batch, steps, precision)
    for _ in range(2):  # trace and warm up
        model.train_on_batch(x, y)
    with tempfile.TemporaryDirectory() as logdir:
        t0 = time.perf_counter()
        tf.profiler.experimental.start(logdir)
        for _ in range(steps):
            model.train_on_batch(x, y)
        tf.profiler.experimental.stop()
        wall = time.perf_counter() - t0
        space = xplane_pb2.XSpace()
        space.ParseFromString(next(Path(logdir).rglob("*.xplane.pb")).read_bytes())
    per_type: Counter = Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # TensorFlow's inter-op threads
                continue
            events = sorted((e for e in line.events if e.duration_ps > 0),  # not markers
                            key=lambda e: (e.offset_ps, -e.duration_ps))
            for i, ev in enumerate(events):  # leaves only: an event holding the next is a frame
                nxt = events[i + 1] if i + 1 < len(events) else None
                if nxt is not None and nxt.offset_ps < ev.offset_ps + ev.duration_ps:
                    continue
                op_name, _, op_type = plane.event_metadata[ev.metadata_id].name.rpartition(":")
                if MATMUL_KERNEL_GRAD in op_name:  # SmallMapConv2D's kernel gradient
                    op_type = "Conv2DBackpropFilter as matmuls"
                per_type[op_type] += ev.duration_ps / 1e9 / steps
    per_kind: Counter = Counter()
    for op_type, ms in per_type.items():
        per_kind[op_kind(op_type)] += ms
    total = sum(per_kind.values())
    return {
        "traced_step_ms": round(wall / steps * 1e3, 1),  # with the profiler's own overhead
        "thread_ms_per_step": round(total, 1),
        "kinds": {k: {"thread_ms": round(ms, 1), "share": round(ms / total, 3)}
                  for k, ms in per_kind.most_common()},
        "top_op_types": {t: round(ms, 1) for t, ms in per_type.most_common(12)},
        "kernel_grad_as_matmuls_ms": round(per_type["Conv2DBackpropFilter as matmuls"], 1),
    }


def _child(args: argparse.Namespace) -> dict:
    if args.child == "convs":
        return {"convs": isolated_convs(args.batch),
                "convs_quick": isolated_convs(args.batch, QUICK_WIDTHS)}
    if args.child == "trace":
        return traced_op_times(args.batch, args.steps, args.precision)
    return {"images_per_second": step_images_per_second(args.child, args.batch, args.steps,
                                                        args.precision)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precision", default="mixed_bfloat16")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(_child(args)))
        return

    def child(name: str) -> dict:
        cmd = [sys.executable, "-m", "benchmarks.profile_step", "--child", name,
               "--batch", str(args.batch), "--steps", str(args.steps),
               "--precision", args.precision]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[1]).stdout
        return json.loads(out.strip().splitlines()[-1])

    flops = train_flops_per_image()
    variants = {}
    for name in VARIANTS:
        ips = child(name)["images_per_second"]
        variants[name] = {"images_per_second": round(ips, 1),
                          "step_ms": round(args.batch / ips * 1e3, 1),
                          "gflops_per_second": round(ips * flops / 1e9, 1)}
        print(name, variants[name], flush=True)
    trace = child("trace")
    print("trace", trace["kinds"], flush=True)
    isolated = child("convs")
    convs = isolated["convs"]
    conv_ms = sum(c["ms"] for c in convs)
    full = variants["full"]["step_ms"]
    numbers = {
        "precision": args.precision,
        "batch_size": args.batch,
        "steps": args.steps,
        "train_gflop_per_image": round(flops / 1e9, 4),
        "variants": variants,
        "isolated_convs": convs,
        "isolated_convs_ms": round(conv_ms, 1),
        "isolated_convs_quick_widths": isolated["convs_quick"],
        "conv_share_of_step": round(conv_ms / full, 3),
        "batchnorm_ms": round(full - variants["no_bn"]["step_ms"], 1),
        "gelu_vs_relu_ms": round(full - variants["relu"]["step_ms"], 1),
        "keras_gelu_vs_fused_ms": round(variants["keras_gelu"]["step_ms"] - full, 1),
        "keras_conv_vs_small_map_ms": round(variants["keras_conv"]["step_ms"] - full, 1),
        "trace": trace,
    }
    path = write_result("profile_step", numbers)
    print(f"the six 3x3 convolutions alone take {conv_ms:.0f} ms of a {full:.0f} ms step "
          f"({conv_ms / full:.0%}); GELU costs {numbers['gelu_vs_relu_ms']:.0f} ms more than "
          f"ReLU, batch norm {numbers['batchnorm_ms']:.0f} ms; traced, convolution is "
          f"{trace['kinds']['convolution']['share']:.0%} of the ops' thread time -> {path}")


if __name__ == "__main__":
    main()
