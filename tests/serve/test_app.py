"""The HTTP API through FastAPI's TestClient: every route, every kind of bad input."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cifar_cnn.calibration import apply_temperature
from cifar_cnn.errors import ConfigError
from cifar_cnn.serve import create_app
from tests.conftest import CLASSES
from tests.serve.conftest import TEMPERATURES, declared_png, image_bytes

RED, BLUE = image_bytes((200, 30, 30)), image_bytes((20, 40, 220), fmt="JPEG", seed=1)
SMALL = image_bytes((200, 30, 30), size=(20, 20))  # under the `strict` server's 3000 bytes


def flat_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 30)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(tiny_run: Path):
    with TestClient(create_app(tiny_run)) as c:
        yield c


@pytest.fixture(scope="module")
def strict(tiny_run: Path):
    """A server with small limits: 3 files, 3000 bytes, 5000 pixels per request."""
    with TestClient(create_app(tiny_run, max_files=3, max_bytes=3000, max_pixels=5000,
                               max_batch_size=2)) as c:
        yield c


def post_files(client: TestClient, *files: tuple[str, bytes], field: str = "files",
               **params):
    return client.post("/v1/predict", params=params,
                       files=[(field, (name, data, "application/octet-stream"))
                              for name, data in files])


def post_body(client: TestClient, data: bytes, content_type: str | None = "image/png", **params):
    headers = {"content-type": content_type} if content_type else {}
    return client.post("/v1/predict", content=data, headers=headers, params=params)


def assert_error(r, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"], body
    for w in words:
        assert w in body["error"], body["error"]


def assert_still_works(client: TestClient) -> None:
    r = post_files(client, ("red.png", SMALL))
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["file"] == "red.png"


def raw_probs(tiny_run: Path, *images: bytes, tta: str | None = None) -> np.ndarray:
    from cifar_cnn.predict import Classifier, decode_image

    clf = Classifier.load(tiny_run)
    return clf.predict(np.stack([decode_image(d, "x") for d in images]), tta=tta,
                       calibrated=False)


# --- POST /v1/predict ---------------------------------------------------------------------

def test_predict_multipart(client: TestClient, tiny_run: Path) -> None:
    r = post_files(client, ("red.png", RED), ("blue.jpg", BLUE))
    assert r.status_code == 200, r.text
    body = r.json()
    version = hashlib.sha256((tiny_run / "model.keras").read_bytes()).hexdigest()[:12]
    assert body["model"] == {"name": "tiny", "version": version}
    preds = body["predictions"]
    assert [p["file"] for p in preds] == ["red.png", "blue.jpg"]
    for p in preds:
        assert set(p) == {"file", "label", "probabilities", "top_k", "calibrated", "tta"}
        assert list(p["probabilities"]) == list(CLASSES)
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
        assert len(p["top_k"]) == 3 and p["label"] == p["top_k"][0]["class"]
        assert [t["probability"] for t in p["top_k"]] == sorted(
            p["probabilities"].values(), reverse=True)[:3]
        assert p["calibrated"] is True and p["tta"] is None
    # Calibrated with the run's temperature for no TTA.
    expected = apply_temperature(raw_probs(tiny_run, RED, BLUE), TEMPERATURES["none"])
    got = np.array([list(p["probabilities"].values()) for p in preds])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_predict_options(client: TestClient, tiny_run: Path) -> None:
    r = post_files(client, ("red.png", RED), top_k=10, tta="flip", calibrated="false")
    assert r.status_code == 200, r.text
    (p,) = r.json()["predictions"]
    assert len(p["top_k"]) == 10 and p["tta"] == "flip" and p["calibrated"] is False
    np.testing.assert_allclose(list(p["probabilities"].values()),
                               raw_probs(tiny_run, RED, tta="flip")[0], atol=1e-5)
    r = post_files(client, ("red.png", RED), tta="flip_translate", calibrated="true", top_k=1)
    (p,) = r.json()["predictions"]
    assert p["tta"] == "flip_translate" and p["calibrated"] is True and len(p["top_k"]) == 1
    np.testing.assert_allclose(
        list(p["probabilities"].values()),
        apply_temperature(raw_probs(tiny_run, RED, tta="flip_translate"),
                          TEMPERATURES["flip_translate"])[0], atol=1e-5)
    r = post_files(client, ("red.png", RED), tta="none")
    assert r.json()["predictions"][0]["tta"] is None


def test_server_wide_tta_is_what_default_means(tiny_run: Path) -> None:
    with TestClient(create_app(tiny_run, tta="flip")) as c:
        assert c.get("/v1/model").json()["default_tta"] == "flip"
        (p,) = post_files(c, ("red.png", RED)).json()["predictions"]
        assert p["tta"] == "flip"
        np.testing.assert_allclose(
            list(p["probabilities"].values()),
            apply_temperature(raw_probs(tiny_run, RED, tta="flip"), TEMPERATURES["flip"])[0],
            atol=1e-5)
        assert post_files(c, ("red.png", RED), tta="none").json()["predictions"][0]["tta"] is None
    with pytest.raises(ConfigError, match="Unknown test-time augmentation"):
        create_app(tiny_run, tta="rotate")


def test_predict_single_file_field_and_raw_bodies(client: TestClient) -> None:
    r = post_files(client, ("one.png", RED), field="file")
    assert [p["file"] for p in r.json()["predictions"]] == ["one.png"]
    for content_type in ("image/png", "image/jpeg", "application/octet-stream"):
        r = post_body(client, RED, content_type)  # the type need not match the bytes
        assert r.status_code == 200, r.text
        assert r.json()["predictions"][0]["file"] == "body"


def test_calibrated_true_without_calibration_is_400(uncalibrated_run: Path) -> None:
    with TestClient(create_app(uncalibrated_run)) as c:
        assert_error(post_files(c, ("red.png", RED), calibrated="true"), 400,
                     "no calibration", "calibrated=false")
        p = post_files(c, ("red.png", RED)).json()["predictions"][0]
        assert p["calibrated"] is False


BAD_REQUESTS = {
    # name: (send(client) -> response, status, words in the error)
    "not an image": (lambda c: post_files(c, ("notes.png", b"hello world")), 400,
                     ["notes.png: not a readable image"]),
    "truncated": (lambda c: post_files(c, ("cut.png", RED[: len(RED) // 2])), 400,
                  ["cut.png: not a readable image", "truncated"]),
    "corrupt jpeg": (lambda c: post_files(c, ("bad.jpg", BLUE[:20] + b"\0" * 200)), 400,
                     ["bad.jpg"]),
    "empty file": (lambda c: post_files(c, ("empty.png", b"")), 400, ["empty.png: is empty"]),
    "empty body": (lambda c: post_body(c, b""), 400, ["body: is empty"]),
    "bomb": (lambda c: post_files(c, ("bomb.png", declared_png(30000, 30000))), 413,
             ["bomb.png", "over the limit of 80,000,000 pixels"]),
    "one bad of several": (lambda c: post_files(c, ("ok.png", RED), ("bad.gif", b"GIF89a"),
                                                ("ok2.jpg", BLUE)), 400, ["bad.gif"]),
    "text/plain": (lambda c: post_body(c, b"hello", "text/plain"), 415, ["text/plain"]),
    "application/json": (lambda c: c.post("/v1/predict", json={"x": 1}), 415,
                         ["application/json"]),
    "no content type": (lambda c: post_body(c, RED, None), 415, ["multipart/form-data"]),
    "multipart without boundary": (lambda c: post_body(c, b"--x\r\n", "multipart/form-data"),
                                   400, ["multipart"]),
    "multipart text, not a file": (
        lambda c: c.post("/v1/predict", files={"files": (None, b"cat.png")}), 400,
        ["'files' holds text"]),
    "multipart without files": (
        lambda c: c.post("/v1/predict", files={"note": (None, b"hi")}), 400,
        ["No image in the request"]),
    "url-encoded form": (lambda c: c.post("/v1/predict", data={"files": "cat.png"}), 415,
                         ["application/x-www-form-urlencoded"]),
    "file under another name": (lambda c: post_files(c, ("a.png", RED), field="image"), 400,
                                ["'image'", "`files`"]),
    "top_k 0": (lambda c: post_files(c, ("a.png", RED), top_k=0), 422, ["top_k"]),
    "top_k 11": (lambda c: post_files(c, ("a.png", RED), top_k=11), 422, ["top_k", "10"]),
    "top_k text": (lambda c: post_files(c, ("a.png", RED), top_k="three"), 422, ["top_k"]),
    "tta unknown": (lambda c: post_files(c, ("a.png", RED), tta="rotate"), 422,
                    ["tta", "flip_translate"]),
    "calibrated unknown": (lambda c: post_files(c, ("a.png", RED), calibrated="maybe"), 422,
                           ["calibrated"]),
    "GET on a POST route": (lambda c: c.get("/v1/predict"), 405, ["POST"]),
    "unknown route": (lambda c: c.get("/v2/predict"), 404, ["/v2/predict", "/docs"]),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_are_4xx_json_and_harmless(client: TestClient, case: str) -> None:
    send, status, words = BAD_REQUESTS[case]
    assert_error(send(client), status, *words)
    assert_still_works(client)


STRICT_REQUESTS = {
    "file over --max-bytes": (lambda c: post_files(c, ("big.png", image_bytes(size=(60, 60)))),
                              413, ["big.png", "3,000 bytes", "--max-bytes"]),
    "body over --max-bytes": (lambda c: post_body(c, image_bytes(size=(60, 60))), 413,
                              ["body", "3,000 bytes"]),
    "over --max-files": (lambda c: post_files(c, *[(f"{i}.png", SMALL) for i in range(4)]), 413,
                         ["at most 3", "--max-files"]),
    "over --max-pixels": (lambda c: post_files(c, ("wide.png", flat_png(100, 60))),
                          413, ["wide.png: 100 x 60 pixels", "5,000 pixels", "--max-pixels"]),
    "TF Serving over --max-files": (
        lambda c: c.post("/v1/models/tiny:predict",
                         json={"instances": [{"b64": base64.b64encode(SMALL).decode()}] * 4}),
        413, ["4 images", "--max-files"]),
    "TF Serving over --max-bytes": (
        lambda c: c.post("/v1/models/tiny:predict", json={"instances": [
            {"b64": base64.b64encode(image_bytes(size=(60, 60))).decode()}]}),
        413, ["instances[0]", "--max-bytes"]),
    "TF Serving body over the request limit": (
        lambda c: c.post("/v1/models/tiny:predict", content=b"[" + b" " * 300_000 + b"]"),
        413, ["request body"]),
}


@pytest.mark.parametrize("case", list(STRICT_REQUESTS))
def test_limits(strict: TestClient, case: str) -> None:
    send, status, words = STRICT_REQUESTS[case]
    assert_error(send(strict), status, *words)
    assert_still_works(strict)


def test_three_files_within_limits_span_two_batches(strict: TestClient) -> None:
    r = post_files(strict, ("a.png", SMALL), ("b.png", SMALL), ("c.png", SMALL))
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3


def test_concurrent_requests_share_model_calls(tiny_run: Path) -> None:
    app = create_app(tiny_run, max_wait_ms=500)
    with TestClient(app) as c:
        batcher = app.state.service._batcher
        sizes, predict_fn = [], batcher.predict_fn

        def recording(x, tta):
            sizes.append(len(x))
            return predict_fn(x, tta)

        batcher.predict_fn = recording
        start = threading.Barrier(6)

        def one(i: int):
            start.wait()
            return post_files(c, (f"{i}.png", image_bytes(seed=i)))

        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(one, range(6)))
    assert all(r.status_code == 200 for r in responses)
    assert [r.json()["predictions"][0]["file"] for r in responses] == [
        f"{i}.png" for i in range(6)]
    assert sum(sizes) == 6 and len(sizes) < 6, sizes


# --- TensorFlow Serving's REST API ----------------------------------------------------------

def test_tf_serving_request_as_its_docs_show(client: TestClient, tiny_run: Path) -> None:
    b64 = base64.b64encode(RED).decode()
    # https://www.tensorflow.org/tfx/serving/api_rest: "Encoding binary values"
    body = {"signature_name": "serving_default", "instances": [{"b64": b64}]}
    r = client.post("/v1/models/tiny:predict", json=body)
    assert r.status_code == 200, r.text
    assert list(r.json()) == ["predictions"]
    (row,) = r.json()["predictions"]
    assert len(row) == 10 and sum(row) == pytest.approx(1.0)
    expected = apply_temperature(raw_probs(tiny_run, RED), TEMPERATURES["none"])[0]
    np.testing.assert_allclose(row, expected, atol=1e-5)

    # A named input holding the b64 object, as TF Serving clients send image bytes.
    named = {"instances": [{"image_bytes": {"b64": b64}},
                           {"image_bytes": {"b64": base64.b64encode(BLUE).decode()}}]}
    r = client.post("/v1/models/tiny:predict", json=named)
    assert r.status_code == 200, r.text
    rows = r.json()["predictions"]
    assert len(rows) == 2 and all(len(p) == 10 for p in rows)
    np.testing.assert_allclose(rows[0], row, atol=1e-9)


def test_tf_serving_other_forms(client: TestClient, tiny_run: Path) -> None:
    b64 = base64.b64encode(RED).decode()
    version = client.get("/v1/model").json()["version"]
    r = client.post(f"/v1/models/tiny/versions/{version}:predict",
                    json={"inputs": {"image_bytes": [{"b64": b64}, {"b64": b64}]}})
    assert r.status_code == 200, r.text
    assert list(r.json()) == ["outputs"] and len(r.json()["outputs"]) == 2
    r = client.post("/v1/models/tiny:predict", json={"inputs": [{"b64": b64}]})
    assert len(r.json()["outputs"]) == 1
    # Raw pixels: a 32x32x3 list, and a larger one (resized as an image file would be).
    pixels = np.asarray(Image.open(io.BytesIO(RED)).convert("RGB"))
    r = client.post("/v1/models/tiny:predict",
                    json={"instances": [pixels.tolist(), pixels[:32, :32].tolist()]})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["predictions"][0],
                               client.post("/v1/models/tiny:predict", json={
                                   "instances": [{"b64": b64}]}).json()["predictions"][0],
                               atol=1e-6)
    # Base64 with line breaks, as the `base64` tool writes it; uncalibrated on request.
    wrapped = "\n".join(b64[i:i + 76] for i in range(0, len(b64), 76))
    r = client.post("/v1/models/tiny:predict", params={"calibrated": "false"},
                    json={"instances": [{"b64": wrapped}]})
    np.testing.assert_allclose(r.json()["predictions"][0], raw_probs(tiny_run, RED)[0],
                               atol=1e-5)


TF_BAD = {
    "wrong model": ("/v1/models/other:predict", {"instances": [{"b64": "AA=="}]}, 404,
                    ["'other'", "tiny"]),
    "wrong version": ("/v1/models/tiny/versions/1:predict", {"instances": []}, 404,
                      ["version '1'"]),
    "malformed JSON": ("/v1/models/tiny:predict", b'{"instances": [', 400, ["not valid JSON"]),
    "not an object": ("/v1/models/tiny:predict", [1, 2], 400, ["JSON object"]),
    "bad base64": ("/v1/models/tiny:predict", {"instances": [{"b64": "not base64!"}]}, 400,
                   ["instances[0]", "base64"]),
    "b64 not a string": ("/v1/models/tiny:predict", {"instances": [{"b64": 5}]}, 400,
                         ["instances[0]", "string"]),
    "missing instances": ("/v1/models/tiny:predict", {"signature_name": "serving_default"},
                          400, ["'instances'", "neither"]),
    "both formats": ("/v1/models/tiny:predict", {"instances": [], "inputs": []}, 400,
                     ["both"]),
    "empty instances": ("/v1/models/tiny:predict", {"instances": []}, 400, ["non-empty"]),
    "unknown signature": ("/v1/models/tiny:predict",
                          {"signature_name": "classify", "instances": [{"b64": "AA=="}]},
                          400, ["'classify'", "serving_default"]),
    "not an image": ("/v1/models/tiny:predict",
                     {"instances": [{"b64": base64.b64encode(b"hello").decode()}]}, 400,
                     ["instances[0]: not a readable image"]),
    "named field not an image": (
        "/v1/models/tiny:predict",
        {"instances": [{"b64": base64.b64encode(RED).decode()},
                       {"image_bytes": {"b64": base64.b64encode(b"x").decode()}}]},
        400, ["instances[1].image_bytes: not a readable image"]),
    "two named inputs": ("/v1/models/tiny:predict",
                         {"instances": [{"a": {"b64": "AA=="}, "b": 1}]}, 400,
                         ["instances[0]", "'a', 'b'"]),
    "a number": ("/v1/models/tiny:predict", {"instances": [3.5]}, 400, ["a JSON float"]),
    "wrong pixel shape": ("/v1/models/tiny:predict", {"instances": [[[1, 2], [3, 4]]]}, 400,
                          ["instances[0]", "HxWx3"]),
    "ragged pixels": ("/v1/models/tiny:predict", {"instances": [[[[1, 2, 3]], [[1, 2]]]]}, 400,
                      ["instances[0]"]),
    "pixels out of range": ("/v1/models/tiny:predict",
                            {"instances": [[[[0, 0, 300]] * 4] * 4]}, 400, ["0..255"]),
    "bomb": ("/v1/models/tiny:predict",
             {"instances": [{"b64": base64.b64encode(declared_png(30000, 30000)).decode()}]},
             413, ["instances[0]", "pixels"]),
}


@pytest.mark.parametrize("case", list(TF_BAD))
def test_tf_serving_bad_requests(client: TestClient, case: str) -> None:
    path, body, status, words = TF_BAD[case]
    if isinstance(body, bytes):
        r = client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        r = client.post(path, json=body)
    assert_error(r, status, *words)
    assert_still_works(client)


def test_tf_serving_model_status(client: TestClient) -> None:
    version = client.get("/v1/model").json()["version"]
    expected = {"model_version_status": [{"version": version, "state": "AVAILABLE",
                                          "status": {"error_code": "OK",
                                                     "error_message": ""}}]}
    assert client.get("/v1/models/tiny").json() == expected
    assert client.get(f"/v1/models/tiny/versions/{version}").json() == expected
    assert_error(client.get("/v1/models/nope"), 404, "'nope'")


# --- Model, probes, page, docs --------------------------------------------------------------

def test_model_metadata(client: TestClient) -> None:
    m = client.get("/v1/model").json()
    assert m["name"] == "tiny" and len(m["version"]) == 12
    assert m["class_names"] == list(CLASSES)
    assert m["input"]["shape"] == [32, 32, 3] and m["recipe"]["tta"] is False
    assert m["final_metrics"]["test_accuracy"] == 0.1
    assert m["calibration"]["modes"]["flip"]["temperature"] == 1.4
    assert m["calibrated"] is True and m["default_tta"] is None
    assert m["limits"]["max_files"] == 64 and m["limits"]["max_bytes"] == 10_000_000
    assert "settings" not in m  # paths of the training host stay private


def test_probes(client: TestClient, tiny_run: Path) -> None:
    assert client.get("/healthz").json() == {"status": "alive"}
    assert client.get("/readyz").json() == {"status": "ready"}
    not_started = TestClient(create_app(tiny_run))  # no `with`: the lifespan has not run
    assert not_started.get("/healthz").status_code == 200
    assert_error(not_started.get("/readyz"), 503, "Not ready")
    assert_error(post_files(not_started, ("a.png", RED)), 503, "/readyz")
    assert not_started.get("/v1/models/tiny").json()["model_version_status"][0]["state"] == (
        "LOADING")


def test_page_and_static_files(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<html" in r.text.lower()
    from cifar_cnn.serve.app import STATIC_DIR

    if (STATIC_DIR / "index.html").is_file():
        assert client.get("/static/index.html").text == r.text
    assert_error(client.get("/static/missing.js"), 404, "/static/missing.js")
    assert_error(client.get("/static/../app.py"), 404)


def test_placeholder_page_without_index_html(client: TestClient, monkeypatch,
                                             tmp_path: Path) -> None:
    from cifar_cnn.serve import app as app_module

    monkeypatch.setattr(app_module, "STATIC_DIR", tmp_path)  # a folder without index.html
    r = client.get("/")
    assert r.status_code == 200 and "/v1/predict" in r.text


def test_openapi_documents_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/models/{name}:predict",
            "/v1/models/{name}/versions/{version}:predict", "/v1/models/{name}", "/v1/model",
            "/healthz", "/readyz"} <= set(spec["paths"])
    predict = spec["paths"]["/v1/predict"]["post"]
    assert {"multipart/form-data", "image/*", "application/octet-stream"} <= set(
        predict["requestBody"]["content"])
    assert {p["name"] for p in predict["parameters"]} == {"top_k", "tta", "calibrated"}
    assert {"200", "400", "413", "422"} <= set(predict["responses"])
    assert "application/json" in spec["paths"]["/v1/models/{name}:predict"]["post"][
        "requestBody"]["content"]
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_their_files_from_the_server(client: TestClient, page: str) -> None:
    """No CDN: the docs work offline, their files served locally (from fastapi-offline)."""
    import re
    from urllib.parse import urljoin, urlsplit

    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    scripts = re.findall(r"""<script[^>]*\ssrc=["']([^"']+)""", r.text)
    links = re.findall(r"""<link[^>]*\shref=["']([^"']+)""", r.text)
    assets = scripts + links
    assert scripts and all(not re.match(r"(?i)(https?:)?//", url) for url in assets), assets
    # Relative to the page, so they also resolve behind a proxy's path prefix.
    assert all(not url.startswith("/") for url in assets), assets
    wanted = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
    if page == "/docs":
        assert {".js", ".css"} <= {Path(urlsplit(url).path).suffix for url in assets}
    for url in assets:
        asset = client.get(urljoin(f"http://testserver{page}", url))
        assert asset.status_code == 200, url
        suffix = Path(urlsplit(url).path).suffix
        assert wanted[suffix] in asset.headers["content-type"], (url, asset.headers)
        assert len(asset.content) > (500 if suffix == ".png" else 50_000), url
    spec_url = re.search(r"""(?:url:|spec-url=)\s*["']([^"']+)""", r.text)
    assert spec_url and not spec_url.group(1).startswith("/")
    spec = client.get(urljoin(f"http://testserver{page}", spec_url.group(1)))
    assert spec.status_code == 200 and "/v1/predict" in spec.json()["paths"]
    assert not any(p.startswith(("/docs", "/redoc")) for p in spec.json()["paths"])
