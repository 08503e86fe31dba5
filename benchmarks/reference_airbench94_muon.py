"""Reference: the airbench94_muon CIFAR-10 recipe in PyTorch, ported to run on a CPU.

This is our own re-implementation of Keller Jordan's published "airbench94_muon" training
recipe (https://github.com/KellerJordan/cifar10-airbench, ``airbench94_muon.py``), written
for this project as the side-by-side speed/accuracy reference for the Keras recipes. It is
not part of the ``cifar_cnn`` package, and PyTorch is not a dependency of cifar-cnn: install
it in a separate virtual environment (the CPU build; torchvision is not used)::

    python3 -m venv /work/torchenv
    /work/torchenv/bin/pip install torch==2.13.0 numpy pillow

and run, from the repository root::

    /work/torchenv/bin/python benchmarks/reference_airbench94_muon.py \\
        --data ../shared/datasets/cifar10 --seed 0

The recipe: a frozen 2x2 patch-whitening conv, three conv groups (64, 256, 256 wide) with
BatchNorm and GELU, a linear head; label-smoothed cross-entropy; Muon for the conv filters,
Nesterov SGD for the biases and the head; 8 epochs at batch 2000 with alternating flips and
2-pixel translations; test-time augmentation with mirrors and 1-pixel translations.

Differences from the GPU original, forced by the CPU: float32 weights with bfloat16 autocast
(the original keeps float16 weights), ``torch.compile`` in its default mode (not
``max-autotune``) and no separate warm-up run, so compilation is inside the timed training;
the class-sorted folder data is put in a fixed shuffled order once, so that "the first 5000
training images" used to initialise the whitening layer are a mix of classes, as they are in
the official order the original uses.

Timing follows the original: whitening initialisation and training are timed
(``train_seconds``), data loading is not; ``total_seconds`` adds the test evaluation with
test-time augmentation. Writes ``<out>/reference_airbench94_muon-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

NAME = "reference_airbench94_muon"
REPO = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "cifar-cnn-reference"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
# SHA-256 of the uint8 train/test images stacked in class-then-file-name order (dataset README).
TRAIN_SHA256 = "61bea91e73ac2b02dfb856e685981dce64abe13d4e780aa98a1ac1e7c056d03b"
TEST_SHA256 = "52a9dc125982c0440d5eed87474b2f521e96c45a98df08e4329aa42c692b9d9d"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")

# The published hyperparameters.
BIAS_LR = 0.053
HEAD_LR = 0.67
MUON_LR = 0.24
SGD_MOMENTUM = 0.85
MUON_MOMENTUM = 0.6
WD_PER_IMAGE = 2e-6
WHITEN_EPOCHS = 3
LABEL_SMOOTHING = 0.2
WIDTHS = (64, 256, 256)


# ----------------------------------------------------------------------------- data


def _split_files(root: Path) -> tuple[list[Path], list[int]]:
    """Image files of one split, by sorted class folder, then byte-wise file name."""
    files: list[Path] = []
    labels: list[int] = []
    classes = sorted(d.name for d in (root.parent / "train").iterdir() if d.is_dir())
    for label, name in enumerate(classes):
        folder = root / name
        names = sorted(
            (e.name for e in os.scandir(folder)
             if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)),
            key=os.fsencode,
        )
        files.extend(folder / n for n in names)
        labels.extend([label] * len(names))
    return files, labels


def _decode(path: Path) -> np.ndarray:
    """One image as a uint8 (32, 32, 3) RGB array."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    if arr.shape != (32, 32, 3):
        raise ValueError(f"{path} is {arr.shape[1]}x{arr.shape[0]}, expected 32x32")
    return arr


def load_cifar10(data: Path) -> dict[str, np.ndarray]:
    """CIFAR-10 from ``train/<class>/*`` and ``test/<class>/*`` folders, cached as .npz."""
    data = data.expanduser().resolve()
    listing = {split: _split_files(data / split) for split in ("train", "test")}
    key = hashlib.sha256(str(data).encode())
    for files, _ in listing.values():
        for f in files:
            st = f.stat()
            key.update(f"{f.relative_to(data)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    cache = CACHE / f"cifar10-{key.hexdigest()[:16]}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    arrays: dict[str, np.ndarray] = {}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for split, (files, labels) in listing.items():
            if not files:
                raise SystemExit(f"no images under {data / split}")
            arrays[f"x_{split}"] = np.stack(list(pool.map(_decode, files, chunksize=256)))
            arrays[f"y_{split}"] = np.asarray(labels, dtype=np.int64)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(cache)
    return arrays


def check_fingerprints(arrays: dict[str, np.ndarray]) -> bool:
    """Whether the images are byte-identical to the ones the dataset README fingerprints."""
    return (hashlib.sha256(arrays["x_train"].tobytes()).hexdigest() == TRAIN_SHA256
            and hashlib.sha256(arrays["x_test"].tobytes()).hexdigest() == TEST_SHA256)


def normalise(images_u8: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 NHWC -> normalised NCHW in channels_last memory format."""
    x = images_u8.permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.to(dtype=dtype, memory_format=torch.channels_last)


class TrainLoader:
    """Batches of augmented training images: alternating flips and random translations."""

    def __init__(self, images_u8: Tensor, labels: Tensor, batch_size: int, pad: int = 2):
        self.labels = labels
        self.batch_size = batch_size
        self.pad = pad
        # bfloat16 storage: autocast casts the first conv's input to bfloat16 anyway.
        x = normalise(images_u8, torch.bfloat16)
        # Epoch 0 sees a fixed random half flipped; odd epochs flip everything relative to it.
        flip = torch.rand(len(x)) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        self.padded = F.pad(x, (pad,) * 4, mode="reflect")  # padded once, cropped per epoch
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def _translate(self) -> Tensor:
        """A random crop of every padded image: shifts of -pad..pad pixels on each axis."""
        n, c, size = len(self.padded), self.padded.shape[1], self.padded.shape[-1] - 2 * self.pad
        dy = torch.randint(0, 2 * self.pad + 1, (n,))
        dx = torch.randint(0, 2 * self.pad + 1, (n,))
        rows = torch.empty((n, c, size, size + 2 * self.pad), dtype=self.padded.dtype)
        for s in range(2 * self.pad + 1):
            idx = (dy == s).nonzero().squeeze(1)
            rows[idx] = self.padded[idx, :, s:s + size, :]
        out = torch.empty((n, c, size, size), dtype=self.padded.dtype)
        for s in range(2 * self.pad + 1):
            idx = (dx == s).nonzero().squeeze(1)
            out[idx] = rows[idx, :, :, s:s + size]
        return out

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        images = self._translate()
        if self.epoch % 2 == 1:
            images = images.flip(-1)
        images = images.contiguous(memory_format=torch.channels_last)
        self.epoch += 1
        order = torch.randperm(len(images))
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield images[idx], self.labels[idx]


# ----------------------------------------------------------------------------- model


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm with a frozen unit scale; running stats kept as 0.6 old + 0.4 batch."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)


class Conv(nn.Conv2d):
    """3x3 'same' conv without bias; identity init of its first in_channels filters."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            nn.init.dirac_(self.weight[: self.in_channels])


class ConvGroup(nn.Module):
    """conv -> maxpool 2 -> BN -> GELU -> conv -> BN -> GELU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = Conv(cin, cout)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(cout)
        self.conv2 = Conv(cout, cout)
        self.norm2 = BatchNorm(cout)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class Net(nn.Module):
    """Whitening conv, three conv groups, global max-pool, linear head scaled by 1/width."""

    def __init__(self) -> None:
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, kernel_size=2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        groups = []
        cin = self.whiten.out_channels
        for width in WIDTHS:
            groups.append(ConvGroup(cin, width))
            cin = width
        self.layers = nn.Sequential(nn.GELU(), *groups, nn.MaxPool2d(3))
        self.head = nn.Linear(cin, 10, bias=False)
        with torch.no_grad():
            self.head.weight /= self.head.weight.std()

    @torch.no_grad()
    def init_whiten(self, images: Tensor, eps: float = 5e-4) -> None:
        """Filters from the eigenvectors of the 2x2 patch covariance, and their negatives."""
        k = self.whiten.kernel_size
        patches = F.unfold(images.float().contiguous(), kernel_size=k)  # (N, 3*2*2, L)
        patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])
        cov = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        scale = torch.sqrt(eigenvalues + eps).view(-1, 1, 1, 1)
        filters = eigenvectors.T.reshape(-1, 3, *k) / scale
        self.whiten.weight.copy_(torch.cat([filters, -filters]))

    def forward(self, x: Tensor, whiten_bias_grad: bool = True) -> Tensor:
        bias = self.whiten.bias if whiten_bias_grad else self.whiten.bias.detach()
        x = self.layers(F.conv2d(x, self.whiten.weight, bias))
        x = x.flatten(1)
        return self.head(x) / x.shape[1]


# ----------------------------------------------------------------------------- optimiser


def newton_schulz(g: Tensor, steps: int = 3, eps: float = 1e-7) -> Tensor:
    """Approximately orthogonalise a 2-D matrix with the quintic Newton-Schulz iteration."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.to(torch.bfloat16)
    x = x / (x.norm() + eps)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        s = x @ x.T
        x = a * x + (b * s + c * (s @ s)) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """Momentum, then an orthogonalised update, on weights renormalised to norm sqrt(out)."""

    def __init__(self, params: Any, lr: float, momentum: float, nesterov: bool = True):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov))

    @torch.no_grad()
    def step(self) -> None:  # type: ignore[override]
        for group in self.param_groups:
            m = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "buf" not in state:
                    state["buf"] = torch.zeros_like(p.grad)
                buf = state["buf"]
                buf.mul_(m).add_(p.grad)
                g = p.grad.add(buf, alpha=m) if group["nesterov"] else buf
                p.mul_(p.shape[0] ** 0.5 / p.norm())
                update = newton_schulz(g.reshape(len(g), -1)).reshape(g.shape)
                p.add_(update.to(p.dtype), alpha=-group["lr"])


# ----------------------------------------------------------------------------- running


class Forward:
    """Calls the compiled model, falling back to eager mode for good if compilation fails."""

    def __init__(self, model: nn.Module, compile_model: bool):
        self.model = model
        self.fn: Callable[..., Tensor] = torch.compile(model) if compile_model else model
        self.compiled = compile_model

    def fall_back(self, error: Exception) -> None:
        """Switch to eager mode for the rest of the run, saying why."""
        first_line = (str(error).strip().splitlines() or [""])[0]
        print(f"torch.compile failed, falling back to eager mode (rerun with --no-compile to "
              f"skip compiling): {type(error).__name__}: {first_line}", flush=True)
        self.fn, self.compiled = self.model, False

    def __call__(self, x: Tensor, **kwargs: Any) -> Tensor:
        if not self.compiled:
            return self.fn(x, **kwargs)
        try:
            return self.fn(x, **kwargs)
        except Exception as e:
            self.fall_back(e)
            return self.fn(x, **kwargs)


@torch.no_grad()
def evaluate(forward: Forward, images: Tensor, labels: Tensor,
             batch: int = 2000) -> tuple[float, float]:
    """Test accuracy without and with mirror+translate test-time augmentation."""
    forward.model.eval()
    plain, tta = [], []

    def mirror(x: Tensor) -> tuple[Tensor, Tensor]:
        a = forward(x).float()
        return a, 0.5 * a + 0.5 * forward(x.flip(-1)).float()

    with torch.autocast("cpu", dtype=torch.bfloat16):
        for x in images.split(batch):
            logits, mirrored = mirror(x)
            padded = F.pad(x, (1,) * 4, mode="reflect")
            shifted = [padded[:, :, i:i + 32, i:i + 32].contiguous(
                memory_format=torch.channels_last) for i in (0, 2)]
            translated = torch.stack([mirror(s)[1] for s in shifted]).mean(0)
            plain.append(logits)
            tta.append(0.5 * mirrored + 0.5 * translated)
    acc = (torch.cat(plain).argmax(1) == labels).float().mean().item()
    acc_tta = (torch.cat(tta).argmax(1) == labels).float().mean().item()
    return acc, acc_tta


def train_and_evaluate(args: argparse.Namespace, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Whitening init and training (timed), then the test evaluation (timed separately)."""
    torch.manual_seed(args.seed)
    x_train = torch.from_numpy(arrays["x_train"])
    y_train = torch.from_numpy(arrays["y_train"])
    # A fixed order (the same for every seed): the folders are sorted by class, the official
    # order the original reads its "first 5000 images" from is not.
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(x_train)))
    x_train, y_train = x_train[order], y_train[order]
    if args.train_subset:
        x_train, y_train = x_train[: args.train_subset], y_train[: args.train_subset]
    x_test = normalise(torch.from_numpy(arrays["x_test"]))
    y_test = torch.from_numpy(arrays["y_test"])

    loader = TrainLoader(x_train, y_train, args.batch_size)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise SystemExit(f"batch size {args.batch_size} exceeds the {len(x_train)} images")
    total_steps = args.epochs * steps_per_epoch
    whiten_steps = WHITEN_EPOCHS * steps_per_epoch
    last_step = min(total_steps, args.max_steps or total_steps)

    model = Net().to(memory_format=torch.channels_last)
    forward = Forward(model, not args.no_compile)
    wd = WD_PER_IMAGE * args.batch_size
    norm_biases = [p for n, p in model.named_parameters() if "norm" in n and p.requires_grad]
    sgd = torch.optim.SGD(
        [dict(params=[model.whiten.bias], lr=BIAS_LR, weight_decay=wd / BIAS_LR),
         dict(params=norm_biases, lr=BIAS_LR, weight_decay=wd / BIAS_LR),
         dict(params=[model.head.weight], lr=HEAD_LR, weight_decay=wd / HEAD_LR)],
        momentum=SGD_MOMENTUM, nesterov=True)
    filters = [p for p in model.parameters() if p.ndim == 4 and p.requires_grad]
    muon = Muon(filters, lr=MUON_LR, momentum=MUON_MOMENTUM, nesterov=True)
    initial = [[g["lr"] for g in opt.param_groups] for opt in (sgd, muon)]

    def forward_backward(inputs: Tensor, labels: Tensor, whiten_bias_grad: bool) -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = forward(inputs, whiten_bias_grad=whiten_bias_grad)
        loss = F.cross_entropy(outputs.float(), labels, label_smoothing=LABEL_SMOOTHING,
                               reduction="sum")
        loss.backward()
        return outputs

    t0 = time.perf_counter()
    model.init_whiten(normalise(x_train[:5000]))
    step, first_step_seconds = 0, 0.0
    for epoch in range(args.epochs):
        model.train()
        for inputs, labels in loader:
            try:
                outputs = forward_backward(inputs, labels, step < whiten_steps)
            except Exception as e:  # the backward graph is compiled at the first backward
                if not forward.compiled:
                    raise
                forward.fall_back(e)
                model.zero_grad(set_to_none=True)
                outputs = forward_backward(inputs, labels, step < whiten_steps)
            sgd.param_groups[0]["lr"] = initial[0][0] * (1 - step / whiten_steps)
            decay = 1 - step / total_steps
            for group, lr in zip(sgd.param_groups[1:], initial[0][1:], strict=True):
                group["lr"] = lr * decay
            for group, lr in zip(muon.param_groups, initial[1], strict=True):
                group["lr"] = lr * decay
            sgd.step()
            muon.step()
            model.zero_grad(set_to_none=True)
            step += 1
            if step == 1:
                first_step_seconds = time.perf_counter() - t0
            if step >= last_step:
                break
        train_acc = (outputs.detach().argmax(1) == labels).float().mean().item()
        print(f"epoch {epoch + 1:2d}  step {step:4d}  train_acc(last batch) {train_acc:.4f}  "
              f"seconds {time.perf_counter() - t0:8.2f}", flush=True)
        if step >= last_step:
            break
    train_seconds = time.perf_counter() - t0

    t1 = time.perf_counter()
    acc, acc_tta = evaluate(forward, x_test, y_test)
    eval_seconds = time.perf_counter() - t1
    print(f"test_accuracy {acc:.4f}  test_accuracy_tta {acc_tta:.4f}  "
          f"train_seconds {train_seconds:.2f}  eval_seconds {eval_seconds:.2f}", flush=True)
    return {
        "seed": args.seed,
        "epochs": args.epochs,
        "epochs_done": round(step / steps_per_epoch, 3),
        "batch_size": args.batch_size,
        "steps": step,
        "num_train": len(x_train),
        "compiled": forward.compiled,
        "test_accuracy": acc,
        "test_accuracy_tta": acc_tta,
        "train_seconds": round(train_seconds, 2),
        "first_step_seconds": round(first_step_seconds, 2),
        "eval_seconds": round(eval_seconds, 2),
        "total_seconds": round(train_seconds + eval_seconds, 2),
        "images_per_second": round(step * args.batch_size / train_seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def git_commit() -> str:
    """The current git commit, with '-dirty' if the tree has uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              cwd=REPO).stdout.strip()

    sha = git("rev-parse", "HEAD") or "unknown"
    return sha + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, with the core count."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def write_json(out: Path, numbers: dict[str, Any], data_ok: bool) -> Path:
    """Write ``<out>/reference_airbench94_muon-<UTC time>.json`` with the run's context."""
    now = dt.datetime.now(dt.timezone.utc)
    record = {
        "benchmark": NAME,
        "commit": git_commit(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": now.isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "environment": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu": cpu_name(),
            "threads": torch.get_num_threads(),
        },
        "data_matches_fingerprints": data_ok,
        "timing": "train_seconds = whitening init + training, including torch.compile "
                  "compilation (no separate warm-up); total_seconds adds test evaluation "
                  "with TTA; data loading excluded",
        **numbers,
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{NAME}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def main() -> None:
    """Parse arguments, load the data (untimed), train, evaluate and write the result."""
    fallback = REPO.parent / "shared" / "datasets" / "cifar10"
    default_data = os.environ.get("CIFAR_CNN_DATA") or str(fallback)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path(default_data),
                   help="folder with train/<class>/ and test/<class>/ images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=2000)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps")
    p.add_argument("--train-subset", type=int, default=0, help="train on this many images")
    p.add_argument("--no-compile", action="store_true", help="run the model eagerly")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    t = time.perf_counter()
    arrays = load_cifar10(args.data)
    data_ok = check_fingerprints(arrays)
    print(f"data: {len(arrays['x_train'])} train, {len(arrays['x_test'])} test images in "
          f"{time.perf_counter() - t:.1f} s (untimed); README fingerprints "
          f"{'match' if data_ok else 'DO NOT match'}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)
    numbers = train_and_evaluate(args, arrays)
    print(f"wrote {write_json(args.out, numbers, data_ok)}")


if __name__ == "__main__":
    main()
