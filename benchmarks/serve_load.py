"""Load on `cifar-cnn serve`: N concurrent clients on 127.0.0.1 for a fixed time.

For each run, starts ``cifar-cnn serve RUN`` in its own process, waits until it is ready,
then for each client count keeps that many connections busy for ``--seconds``: each client
sends one test image per request (a quality-90 JPEG of a CIFAR-10 test image, raw body,
``POST /v1/predict``) and waits for the answer before sending the next. Reports requests/s,
images/s, p50/p99 latency, errors (anything but a 200 with ten probabilities summing to 1)
and the accuracy of the answers. With ``--bad`` one more client sends bad inputs in a loop
(non-image, truncated JPEG, empty body, decompression bomb, wrong content type, malformed
TF Serving JSON and base64, too large a file), one per 10 ms, beside the largest number of
good clients: each must get a 4xx, and the good requests' error count must stay 0.

The clients are a few lines of asyncio over raw HTTP/1.1 keep-alive connections, so that
they take as little of the 2 cores as possible from the server.

Writes ``benchmarks/results/serve_load-<UTC time>.json``.

Usage:
    python -m benchmarks.serve_load default runs/baseline --clients 1,8,64 --seconds 20 \\
        --data ../shared/datasets/cifar10 --bad
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
import subprocess
import sys
import time
import urllib.request
import zlib
from typing import Any

from PIL import Image

from benchmarks.common import write_result

HOST = "127.0.0.1"


def jpeg_bodies(data: str | None, n: int) -> tuple[list[bytes], list[str]]:
    """The first `n` test images as quality-90 JPEG files, and their class names."""
    from cifar_cnn.data import load_cifar10

    ds = load_cifar10(data)
    bodies = []
    for img in ds.x_test[:n]:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=90)
        bodies.append(buf.getvalue())
    return bodies, [ds.class_names[int(y)] for y in ds.y_test[:n]]


def _png_bomb() -> bytes:
    """A tiny PNG whose header declares 30,000 x 30,000 pixels."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (len(payload).to_bytes(4, "big") + kind + payload
                + zlib.crc32(kind + payload).to_bytes(4, "big"))

    header = (30000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


def bad_requests(good: bytes, model: str) -> list[tuple[str, str, str, bytes]]:
    """(what, path, content type, body) of requests that must each get a 4xx."""
    tf_path = f"/v1/models/{model}:predict"
    return [
        ("not an image", "/v1/predict", "image/png", b"this is not an image"),
        ("truncated JPEG", "/v1/predict", "image/jpeg", good[: len(good) // 2]),
        ("empty body", "/v1/predict", "image/jpeg", b""),
        ("decompression bomb", "/v1/predict", "image/png", _png_bomb()),
        ("wrong content type", "/v1/predict", "text/plain", b"hello"),
        ("too large", "/v1/predict", "image/jpeg", good + b"\0" * 11_000_000),
        ("malformed JSON", tf_path, "application/json", b'{"instances": [{"b64": '),
        ("bad base64", tf_path, "application/json", b'{"instances": [{"b64": "***"}]}'),
    ]


def _request(path: str, content_type: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    length = int({k.lower(): v for k, v in headers.items()}.get("content-length", 0))
    return status, await reader.readexactly(length)


async def _client(port: int, requests: list[tuple[bytes, str | None]], start: int,
                  deadline: float, out: list[tuple[float, int, bool, bool]],
                  pause: float = 0.0) -> None:
    """Send `requests` round-robin until `deadline`, `pause` seconds apart after each
    answer; record (latency, status, ok, right)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    i = start
    while time.perf_counter() < deadline:
        if pause:
            await asyncio.sleep(pause)
        request, label = requests[i % len(requests)]
        i += 1
        t0 = time.perf_counter()
        try:
            writer.write(request)
            await writer.drain()
            status, body = await _response(reader)
        except (OSError, asyncio.IncompleteReadError):  # the server closed: reconnect
            writer.close()
            reader, writer = await asyncio.open_connection(HOST, port)
            out.append((time.perf_counter() - t0, 0, False, False))
            continue
        latency = time.perf_counter() - t0
        ok = right = False
        if status == 200 and label is not None:
            (pred,) = json.loads(body)["predictions"]
            ok = len(pred["probabilities"]) == 10 and abs(
                sum(pred["probabilities"].values()) - 1) < 1e-4
            right = pred["label"] == label
        out.append((latency, status, ok, right))
    writer.close()


async def _load(port: int, clients: int, seconds: float, good: list[tuple[bytes, str]],
                bad: list[tuple[bytes, str | None]], bad_pause: float = 0.01,
                ) -> tuple[list, list]:
    deadline = time.perf_counter() + seconds
    good_out: list = []
    bad_out: list = []
    tasks = [_client(port, good, k * 97, deadline, good_out) for k in range(clients)]
    if bad:
        tasks.append(_client(port, bad, 0, deadline, bad_out, pause=bad_pause))
    await asyncio.gather(*tasks)
    return good_out, bad_out


def _summary(good_out: list, bad_out: list, seconds: float) -> dict[str, Any]:
    """Requests/s, latency percentiles, errors and accuracy of one measurement."""
    latencies = sorted(r[0] for r in good_out)
    n = len(good_out)
    row: dict[str, Any] = {
        "requests": n,
        "requests_per_second": round(n / seconds, 1),
        "images_per_second": round(n / seconds, 1),  # one image per request
        "p50_ms": round(1e3 * latencies[n // 2], 1) if n else None,
        "p99_ms": round(1e3 * latencies[min(n - 1, int(0.99 * n))], 1) if n else None,
        "errors": sum(not r[2] for r in good_out),
        "accuracy": round(sum(r[3] for r in good_out) / n, 4) if n else None,
    }
    if bad_out:
        row["bad_requests"] = len(bad_out)
        row["bad_not_4xx"] = sum(not 400 <= r[1] < 500 for r in bad_out)
    return row


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=5) as r:
        return json.loads(r.read())


def measure_run(run: str, args: argparse.Namespace, bodies: list[bytes],
                labels: list[str]) -> dict[str, Any]:
    port = _free_port()
    cmd = [sys.executable, "-m", "cifar_cnn", "serve", *([] if run == "default" else [run]),
           "--host", HOST, "--port", str(port), *args.serve_option]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                raise SystemExit(f"{' '.join(cmd)} exited: {server.stderr.read().decode()}")
            try:
                if _get(port, "/readyz").get("status") == "ready":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not become ready in 300 s")
            time.sleep(0.2)
        model = _get(port, "/v1/model")
        good = [(_request("/v1/predict", "image/jpeg", b), lab)
                for b, lab in zip(bodies, labels, strict=True)]
        bad_specs = bad_requests(bodies[0], model["name"]) if args.bad else []
        bad = [(_request(path, ctype, body), None) for _, path, ctype, body in bad_specs]
        asyncio.run(_load(port, 4, 3.0, good, []))  # warm-up, not recorded
        rows = {str(c): _summary(*asyncio.run(_load(port, c, args.seconds, good, [])),
                                 args.seconds) for c in args.clients}
        for c, row in rows.items():
            print(run, c, row, flush=True)
        if args.bad:  # the largest client count again, one bad request per 10 ms mixed in
            c = max(args.clients)
            rows[f"{c}+bad"] = _summary(*asyncio.run(_load(port, c, args.seconds, good, bad)),
                                        args.seconds)
            print(run, f"{c}+bad", rows[f"{c}+bad"], flush=True)
        return {"model": {k: model.get(k) for k in ("name", "version")},
                "serve_command": " ".join(cmd[1:]), "clients": rows}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help='run directories; "default" for the packaged model')
    p.add_argument("--clients", type=lambda s: [int(c) for c in s.split(",")],
                   default=[1, 8, 64])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--images", type=int, default=500, help="distinct test images sent")
    p.add_argument("--data", default=None)
    p.add_argument("--bad", action="store_true", help="one more client sending bad inputs")
    p.add_argument("--serve-option", action="append", default=[],
                   help="passed to `cifar-cnn serve` (repeat; e.g. --serve-option=--tta=none)")
    args = p.parse_args()
    bodies, labels = jpeg_bodies(args.data, args.images)
    results = {run: measure_run(run, args, bodies, labels) for run in args.runs}
    summary = {run: {c: (r["images_per_second"], r["p99_ms"], r["errors"])
                     for c, r in res["clients"].items()} for run, res in results.items()}
    path = write_result("serve_load", {"seconds": args.seconds, "images": args.images,
                                       "bad_inputs": args.bad, "runs": results})
    print(f"(images/s, p99 ms, errors) per client count: {summary} -> {path}")


if __name__ == "__main__":
    main()
