"""`cifar-cnn serve` in a real process: ready, answers, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import image_bytes

pytestmark = pytest.mark.slow  # every test here starts a `cifar-cnn serve` process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(*args: str) -> subprocess.Popen:
    env = os.environ.copy()
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it
    return subprocess.Popen([sys.executable, "-m", "cifar_cnn", "serve", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def first_line(proc: subprocess.Popen, timeout: float = 300) -> str:
    """The first line the server prints (or "" if it exits first)."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_serve_answers_then_stops_cleanly_on_sigterm_letting_a_request_finish(
        tiny_run: Path) -> None:
    """One server: it announces itself, answers a request, then gets SIGTERM while a second
    request is in flight; that request is still answered and the server exits 0, quietly."""
    port = free_port()
    # A lone image waits 1.5 s for company in the batcher: long enough to be in flight.
    proc = serve(str(tiny_run), "--port", str(port), "--max-wait-ms", "1500")
    try:
        line = first_line(proc)
        assert re.fullmatch(rf"Serving tiny \([0-9a-f]{{12}}\) on http://127\.0\.0\.1:{port}\n",
                            line), (line, proc.poll())
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while httpx.get(f"{base}/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        r = httpx.post(f"{base}/v1/predict",
                       files=[("files", ("cat.png", image_bytes(), "image/png"))], timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"][0]["file"] == "cat.png"

        answers: list[httpx.Response] = []
        request = threading.Thread(target=lambda: answers.append(httpx.post(
            f"{base}/v1/predict", files=[("files", ("dog.png", image_bytes(), "image/png"))],
            timeout=60)))
        request.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        request.join(timeout=60)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [a.status_code for a in answers] == [200], err
    assert answers[0].json()["predictions"][0]["file"] == "dog.png"
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "error" not in err.lower(), err


def test_garbage_model_is_refused_with_one_clear_line(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "broken"
    shutil.copytree(tiny_run, run)
    (run / "model.keras").write_bytes(b"this is not a zip archive")
    proc = serve(str(run), "--port", str(free_port()))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert "Traceback" not in err and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and "could not be loaded as a Keras model" in line


def test_busy_port_is_refused_with_one_clear_line(tiny_run: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = serve(str(tiny_run), "--port", str(port))
        out, err = proc.communicate(timeout=300)
    assert out == ""
    assert proc.returncode == 2, err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: Cannot listen on 127.0.0.1:{port}") and "--port" in line
