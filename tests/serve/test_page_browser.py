"""The web page at ``GET /`` of ``cifar-cnn serve``, end to end in headless Chromium.

Starts a real ``python -m cifar_cnn serve`` subprocess on a free port, opens ``/`` with
Playwright and uploads images through the file input. Needs Playwright for Python and a
Chromium binary (Debian: ``apt-get install chromium``). Without them the test is skipped
locally but fails under CI (``CI`` set), where both are expected to exist.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a server and Chromium

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
STARTUP_TIMEOUT_S = 180.0
RESULT_TIMEOUT_MS = 60_000
BAD_FILE = {"name": "x.png", "mimeType": "image/png", "buffer": b"not an image"}


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must install it")
    pytest.skip(message)


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    _missing(f"no headless browser found (looked for {', '.join(BROWSERS)})")
    raise AssertionError("unreachable")


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, {}


@pytest.fixture(scope="module")
def playwright_browser():
    executable = find_browser()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real ``cifar-cnn serve`` subprocess serving ``tiny_run``."""
    run = Path(getattr(tiny_run, "path", tiny_run))
    port = free_port()
    logs = tmp_path_factory.mktemp("serve-logs")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
               CIFAR_CNN_CACHE=str(tmp_path_factory.mktemp("serve-cache")))
    env.pop("CIFAR_CNN_DATA", None)
    command = [sys.executable, "-m", "cifar_cnn", "serve", str(run),
               "--host", "127.0.0.1", "--port", str(port)]
    with (logs / "serve.log").open("w+b") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    pytest.fail(f"serve exited with {process.returncode}:\n"
                                f"{log.read().decode(errors='replace')[-3000:]}")
                try:
                    if get_json(base + "/readyz")[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"serve not ready after {STARTUP_TIMEOUT_S:.0f}s:\n"
                                f"{log.read().decode(errors='replace')[-3000:]}")
                time.sleep(0.5)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def open_page(playwright_browser, server: str):
    """Opens ``/`` at a viewport; records page errors and any request off the server."""
    pages = []

    def _open(width: int = 1200, height: int = 800):
        page = playwright_browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(RESULT_TIMEOUT_MS)
        page.problems = []
        page.on("pageerror", lambda error: page.problems.append(f"page error: {error}"))
        page.on("request", lambda request: None if request.url.startswith(
            (server, "data:", "blob:")) else page.problems.append(f"external: {request.url}"))
        page.goto(server + "/")
        pages.append(page)
        return page

    yield _open
    for page in pages:
        page.close()


def class_names(tiny_run) -> list[str]:
    run = Path(getattr(tiny_run, "path", tiny_run))
    return list(json.loads((run / "metadata.json").read_text(encoding="utf-8"))["class_names"])


def test_page_classifies_an_uploaded_png(open_page, server, tiny_run, tmp_path: Path) -> None:
    page = open_page()
    _, model = get_json(server + "/v1/model")
    page.wait_for_function(
        "name => document.getElementById('model').textContent.includes(name)",
        arg=str(model["name"]))

    page.set_input_files("input[type=file]", files=[
        {"name": "picture.png", "mimeType": "image/png", "buffer": png_bytes()}])
    card = page.locator("[data-testid=result][data-status=done]")
    card.wait_for()

    label = card.get_attribute("data-label")
    assert label in class_names(tiny_run)
    bars = card.locator("[data-testid=bar]")
    assert bars.count() == 10
    classes = [bars.nth(i).get_attribute("data-class") for i in range(10)]
    probs = [float(bars.nth(i).get_attribute("data-probability")) for i in range(10)]
    assert sorted(classes) == sorted(class_names(tiny_run))
    assert sum(probs) == pytest.approx(1.0, abs=1e-3)
    assert probs == sorted(probs, reverse=True)
    assert label == classes[0]
    assert card.locator(".label").inner_text().lower() == label
    assert page.locator("[data-testid=error]").count() == 0
    assert page.problems == []
    page.wait_for_timeout(500)  # let the bars finish growing
    # What is drawn: each bar's fill spans its probability's share of the track.
    drawn = card.locator("[data-testid=bar] .track").evaluate_all(
        "tracks => tracks.map(t => t.firstElementChild.getBoundingClientRect().width"
        " / t.getBoundingClientRect().width)")
    assert drawn == pytest.approx(probs, abs=0.02)
    page.screenshot(path=str(tmp_path / "serve_page.png"), full_page=True)


def test_page_shows_the_servers_error_for_a_non_image(open_page, server) -> None:
    page = open_page()
    direct = page.request.post(server + "/v1/predict", multipart={"files": BAD_FILE})
    assert 400 <= direct.status < 500
    message = direct.json()["error"]
    assert message

    page.set_input_files("input[type=file]", files=[BAD_FILE])
    error = page.locator("[data-testid=result][data-status=error] [data-testid=error]")
    error.wait_for()
    assert error.inner_text().strip() == message.strip()
    assert [p for p in page.problems if not p.startswith("page error")] == []


def test_page_fits_a_phone_screen(open_page, tmp_path: Path) -> None:
    page = open_page(375, 740)
    page.set_input_files("input[type=file]", files=[
        {"name": "a-rather-long-file-name-from-a-phone-camera-20240101-123456.png",
         "mimeType": "image/png", "buffer": png_bytes()},
        BAD_FILE,
    ])
    page.locator("[data-testid=result][data-status=done]").wait_for()
    page.locator("[data-testid=error]").wait_for()
    page.wait_for_timeout(500)  # let the bars finish growing
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    pick = page.locator("label[for]").first.bounding_box()
    assert pick and pick["height"] >= 44 and pick["width"] >= 200
    page.screenshot(path=str(tmp_path / "serve_page_phone.png"), full_page=True)


def test_docs_page_renders_offline(playwright_browser, server: str, tmp_path: Path) -> None:
    """``/docs`` (Swagger UI) renders with every request to any other host refused."""
    context = playwright_browser.new_context(viewport={"width": 1200, "height": 900},
                                             service_workers="block")
    blocked: list[str] = []

    def only_the_server(route) -> None:
        url = route.request.url
        if url.startswith((server + "/", "data:", "blob:")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", only_the_server)
    try:
        page = context.new_page()
        page.set_default_timeout(RESULT_TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server + "/docs")
        try:
            page.locator(".opblock-summary-path[data-path='/v1/models/{name}:predict']"
                         ).wait_for()
        except Exception as error:
            raise AssertionError(f"/docs did not render; refused requests: {blocked}, "
                                 f"page errors: {errors}") from error

        paths = page.locator(".opblock-summary-path").evaluate_all(
            "spans => spans.map(s => s.getAttribute('data-path'))")
        assert {"/v1/predict", "/v1/models/{name}:predict", "/v1/model", "/readyz"} <= set(paths)
        shown = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/v1/predict" in [text.replace("\u200b", "") for text in shown]  # as drawn
        assert "cifar-cnn prediction service" in page.locator(".info .title").inner_text()
        # Styled by swagger-ui.css (served from /docs-assets), not a bare page.
        rules = page.evaluate("[...document.styleSheets].map(s => s.cssRules.length)")
        assert max(rules) > 100
        assert page.locator(".opblock-post").first.evaluate(
            "e => getComputedStyle(e).borderTopStyle") == "solid"
        assert blocked == [] and errors == []
        page.screenshot(path=str(tmp_path / "serve_docs.png"), full_page=True)
    finally:
        context.close()


def fake_service_page(browser, class_names: list[str], probs: np.ndarray,
                      width: int = 1200, height: int = 800):
    """The page at ``/`` with `/v1/model` and `/v1/predict` answered in the browser, for a
    model of any number of classes (no server, no model). Records any other request."""
    from cifar_cnn.predict.classifier import predictions
    from cifar_cnn.serve.app import STATIC_DIR

    base = "http://service.test"
    record = predictions(["picture.png"], probs[None, :], class_names, k=3, calibrated=True,
                         tta=None)[0].to_dict()
    answers = {
        f"{base}/": ("text/html", (STATIC_DIR / "index.html").read_text(encoding="utf-8")),
        f"{base}/v1/model": ("application/json", json.dumps(
            {"name": "many", "version": "0123456789ab", "class_names": class_names})),
        f"{base}/v1/predict": ("application/json", json.dumps(
            {"model": {"name": "many", "version": "0123456789ab"}, "predictions": [record]})),
    }
    context = browser.new_context(viewport={"width": width, "height": height})
    problems: list[str] = []

    def answer(route) -> None:
        url = route.request.url
        if url in answers:
            content_type, body = answers[url]
            route.fulfill(status=200, content_type=content_type, body=body)
        elif url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            problems.append(f"unexpected request: {url}")
            route.abort()

    context.route("**/*", answer)
    page = context.new_page()
    page.set_default_timeout(RESULT_TIMEOUT_MS)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.goto(base + "/")
    return context, page, problems


@pytest.mark.parametrize("num_classes", [3, 100])
def test_page_shows_the_top_classes_of_many(playwright_browser, tmp_path: Path,
                                            num_classes: int) -> None:
    """Up to 10 classes every class gets a bar; above, the 5 most likely do, one row sums up
    the others and "All N classes" lists every class when opened."""
    names = [f"class_{i}" for i in range(num_classes)]
    names[-1] = "a_rather_long_class_name_that_cannot_fit"
    logits = np.random.default_rng(num_classes).normal(size=num_classes) * 2.0
    probs = np.exp(logits) / np.exp(logits).sum()
    ranked = [names[i] for i in np.argsort(-probs, kind="stable")]
    context, page, problems = fake_service_page(playwright_browser, names, probs, 375, 740)
    try:
        page.wait_for_function("document.getElementById('model').textContent"
                               f".includes('{num_classes} classes')")
        assert page.locator("#nclasses").inner_text() == str(num_classes)
        page.set_input_files("input[type=file]", files=[
            {"name": "picture.png", "mimeType": "image/png", "buffer": png_bytes()}])
        card = page.locator("[data-testid=result][data-status=done]")
        card.wait_for()
        assert card.get_attribute("data-label") == ranked[0]
        bars = card.locator("[data-testid=bar]")
        shown = [bars.nth(i).get_attribute("data-class") for i in range(bars.count())]
        rest = card.locator("[data-testid=bar-rest]")
        if num_classes <= 10:
            assert shown == ranked and rest.count() == 0
            assert card.locator("details").count() == 0
        else:
            assert shown == ranked[:5]
            assert rest.count() == 1
            assert rest.inner_text().startswith(f"{num_classes - 5} others")
            assert float(rest.get_attribute("data-probability")) == pytest.approx(
                float(np.sort(probs)[::-1][5:].sum()), abs=1e-6)
            assert card.locator("[data-testid=bar-all]").count() == 0  # built when opened
            card.locator("details summary").click()
            every = card.locator("[data-testid=bar-all]")
            every.first.wait_for()
            assert every.count() == num_classes
            assert every.evaluate_all("rows => rows.map(r => r.dataset.class)") == ranked
        page.wait_for_timeout(500)  # let the bars finish growing
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        assert problems == []
        page.screenshot(path=str(tmp_path / f"serve_page_{num_classes}.png"), full_page=True)
    finally:
        context.close()
