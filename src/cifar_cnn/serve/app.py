"""`create_app`: the prediction service's HTTP routes, over one `ModelService`.

Routes (all described at /docs and /openapi.json):

- ``POST /v1/predict``: image files in (multipart or a raw body), labels and probabilities out.
- ``POST /v1/models/{name}:predict`` (and ``.../versions/{version}:predict``),
  ``GET /v1/models/{name}``: TensorFlow Serving's REST API.
- ``GET /v1/model``: the model's card; ``GET /healthz``, ``GET /readyz``: for probes.
- ``GET /``: a page to try the model in a browser; ``GET /static/...``: its files.

Every error is ``{"error": "<what was wrong and what to do>"}``, as TF Serving words its
own, with a 4xx status for anything wrong with the request.
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' annotations at
# runtime, and they refer to names local to `create_app`.
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from cifar_cnn import __version__
from cifar_cnn.errors import CifarCnnError, ImageTooLargeError
from cifar_cnn.serve import schemas
from cifar_cnn.serve.errors import ModelNotFoundError, NotReadyError
from cifar_cnn.serve.limits import Limits
from cifar_cnn.serve.service import ModelService
from cifar_cnn.serve.tf_serving import REQUEST_SCHEMA, parse_predict_request
from cifar_cnn.serve.uploads import REQUEST_BODY, read_body, read_images
from cifar_cnn.tta import TTA_CHOICES

STATIC_DIR = Path(str(resources.files("cifar_cnn.serve") / "static"))
# Swagger UI's and ReDoc's files, from the fastapi-offline package: /docs and /redoc load
# nothing from a CDN, so they work offline.
DOCS_ASSETS_DIR = Path(str(resources.files("fastapi_offline") / "static"))
PLACEHOLDER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cifar-cnn</title></head>
<body><h1>cifar-cnn prediction service</h1>
<p>POST images to <code>/v1/predict</code>; the API is described at <a href="docs">/docs</a>.</p>
</body></html>
"""

# Error responses, for the OpenAPI document.
_ERROR = {"model": schemas.ErrorBody}
_PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {**_ERROR, "description": "not an image, a truncated or corrupt one, an empty body, "
                                   "a malformed body, or calibrated=true without calibration"},
    413: {**_ERROR, "description": "a file over --max-bytes, an image over --max-pixels, or "
                                   "more than --max-files images"},
    422: {**_ERROR, "description": "an invalid query option"},
    503: {**_ERROR, "description": "the model is not loaded yet"},
}

TtaOption = Literal[TTA_CHOICES]  # the same choices as the CLI's --tta


def create_app(run: str | os.PathLike[str] | None, *, tta: bool | str | None = None,
               **limits: Any) -> FastAPI:
    """The prediction service for one trained model, as an ASGI app.

    The model is loaded here (so a bad run fails now, not at the first request); it is
    warmed up on a dummy batch when the app starts (its lifespan), after which
    ``GET /readyz`` answers 200. Images of concurrent requests share model calls (see
    `DynamicBatcher`); decoding runs in a thread per CPU core, never on the event loop.

    Args:
        run: a run directory (written by ``cifar-cnn train``) or a ``.keras`` file.
        tta: the test-time augmentation of requests that leave ``tta`` at "default": None
            for the run's own (its recipe's), else "none", "flip" or "flip_translate".
        **limits: `Limits` fields (``max_bytes``, ``max_files``, ``max_pixels``,
            ``max_batch_size``, ``max_wait_ms``); None or left out: the default.

    Returns:
        A FastAPI app; run it with any ASGI server (``uvicorn.run(app)``).

    Raises:
        RunError: if the model cannot be loaded.
        ConfigError: for an unknown limit, or one below 1 (or a negative `max_wait_ms`).

    Example:
        >>> app = create_app("runs/fast94")  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    service = ModelService(run, Limits.from_options(**limits), tta=tta)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="cifar-cnn prediction service", version=__version__, lifespan=lifespan,
        description=(f"Serves the model **{service.name}** (version {service.version}): "
                     f"{', '.join(service.classifier.class_names)}. Every error is "
                     '`{"error": "..."}`.'),
        docs_url=None, redoc_url=None)  # served by `_add_docs`, from local files
    app.state.service = service
    _add_error_handlers(app)
    _add_docs(app)

    @app.post("/v1/predict", response_model=schemas.PredictResponse, responses=_PREDICT_ERRORS,
              openapi_extra={"requestBody": REQUEST_BODY}, tags=["predict"],
              summary="Label one or several images")
    async def predict(
        request: Request,
        top_k: Annotated[int, Query(ge=1, le=service.num_classes,
                                    description="how many of the most likely classes to list")
                         ] = 3,
        tta: Annotated[TtaOption, Query(
            description="test-time augmentation: the server's (default; see `serve --tta`), "
                        "none, flip (the image and its mirror) or flip_translate (six "
                        "views)")] = "default",
        calibrated: Annotated[bool | None, Query(
            description="temperature-scaled probabilities (default: when the run has "
                        "calibration; true on a run without is an error)")] = None,
    ) -> JSONResponse:
        """Send image files as multipart/form-data (a `files` field per image:
        `curl -F files=@cat.jpg -F files=@dog.png`) or one image as the raw body
        (`curl --data-binary @cat.jpg -H 'Content-Type: image/jpeg'`). Any size and format
        Pillow reads; each is centre-cropped and resized to the model's input. If any file
        is unusable the request fails, naming it."""
        ask = service.ask(tta, calibrated, top_k)
        records = await service.predict(await read_images(request, service.limits), ask)
        return JSONResponse({"model": {"name": service.name, "version": service.version},
                             "predictions": [r.to_dict() for r in records]})

    async def tf_predict(request: Request, name: str, version: str | None, tta: str,
                         calibrated: bool | None) -> JSONResponse:
        _check_model(service, name, version)
        ask = service.ask(tta, calibrated)
        body = await read_body(request, service.limits.max_request_bytes)
        key, images = await run_in_threadpool(
            parse_predict_request, body, max_files=service.limits.max_files,
            max_bytes=service.limits.max_bytes)
        records = await service.predict(images, ask)
        return JSONResponse({key: [list(r.probabilities.values()) for r in records]})

    tf_doc = dict(
        response_model=schemas.TFServingPredictResponse, tags=["TensorFlow Serving"],
        responses={**_PREDICT_ERRORS, 404: {**_ERROR, "description": "another model name"}},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": REQUEST_SCHEMA}}}},
        description=(
            "TensorFlow Serving's REST predict API: "
            '`{"signature_name": "serving_default", "instances": [{"b64": "..."}]}` '
            '(an instance may also be `{"image_bytes": {"b64": "..."}}` or an HxWx3 list '
            'of 0..255) gives `{"predictions": [[p_0, ..., p_N-1], ...]}` (a probability per '
            'class); a columnar '
            '`{"inputs": [...]}` gives `{"outputs": [...]}`. Probabilities are calibrated '
            "unless calibrated=false."))
    tta_query = Query(description="test-time augmentation, as on /v1/predict")
    calibrated_query = Query(description="as on /v1/predict")

    @app.post("/v1/models/{name}:predict", summary="Predict (TensorFlow Serving API)",
              **tf_doc)
    async def tf_serving_predict(request: Request, name: str,
                                 tta: Annotated[TtaOption, tta_query] = "default",
                                 calibrated: Annotated[bool | None, calibrated_query] = None
                                 ) -> JSONResponse:
        return await tf_predict(request, name, None, tta, calibrated)

    @app.post("/v1/models/{name}/versions/{version}:predict",
              summary="Predict with a version (TensorFlow Serving API)", **tf_doc)
    async def tf_serving_predict_version(request: Request, name: str, version: str,
                                         tta: Annotated[TtaOption, tta_query] = "default",
                                         calibrated: Annotated[bool | None,
                                                               calibrated_query] = None
                                         ) -> JSONResponse:
        return await tf_predict(request, name, version, tta, calibrated)

    @app.get("/v1/models/{name}", response_model=schemas.ModelStatus, tags=["TensorFlow Serving"],
             responses={404: _ERROR}, summary="Model status (TensorFlow Serving API)")
    async def tf_serving_status(name: str) -> dict[str, Any]:
        return _status(service, name, None)

    @app.get("/v1/models/{name}/versions/{version}", response_model=schemas.ModelStatus,
             tags=["TensorFlow Serving"], responses={404: _ERROR},
             summary="Model version status (TensorFlow Serving API)")
    async def tf_serving_version_status(name: str, version: str) -> dict[str, Any]:
        return _status(service, name, version)

    @app.get("/v1/model", response_model=schemas.ModelInfo, tags=["model"],
             summary="The model's card: classes, input, recipe, plan, metrics, calibration, limits")
    async def model_info() -> JSONResponse:
        return JSONResponse(service.info())

    @app.get("/healthz", response_model=schemas.Status, tags=["probes"],
             summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", response_model=schemas.Status, tags=["probes"],
             responses={503: {**_ERROR, "description": "loading or warming up"}},
             summary="Readiness: the model is loaded and warmed up")
    async def readyz() -> dict[str, str]:
        if not service.ready:
            raise NotReadyError("Not ready: the model is loading or warming up, or the server "
                                "is shutting down.")
        return {"status": "ready"}

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        index = STATIC_DIR / "index.html"
        return FileResponse(index) if index.is_file() else HTMLResponse(PLACEHOLDER_PAGE)

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _add_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their files at ``/docs-assets``, no CDN.

    URLs are relative to the page, so the docs also work behind a proxy's path prefix.
    """
    assets, openapi = "docs-assets", (app.openapi_url or "/openapi.json").lstrip("/")
    app.mount(f"/{assets}", StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters)

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url=openapi, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{assets}/redoc.standalone.js",
                              redoc_favicon_url=f"{assets}/favicon.png",
                              with_google_fonts=False)
        # ReDoc's footer logo is an image on cdn.redoc.ly: not fetched (ReDoc hides it).
        page.headers["Content-Security-Policy"] = "img-src 'self' data:"
        return page


def _check_model(service: ModelService, name: str, version: str | None) -> None:
    if name != service.name:
        raise ModelNotFoundError(f"Model {name!r} is not served here; this server serves "
                                 f"{service.name!r} (POST /v1/models/{service.name}:predict).")
    if version is not None and version != service.version:
        raise ModelNotFoundError(f"Model {name!r} has no version {version!r}; the one served "
                                 f"is {service.version!r}.")


def _status(service: ModelService, name: str, version: str | None) -> dict[str, Any]:
    _check_model(service, name, version)
    return {"model_version_status": [{
        "version": service.version, "state": "AVAILABLE" if service.ready else "LOADING",
        "status": {"error_code": "OK", "error_message": ""}}]}


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": message}``: 4xx for the request's faults, 500 for ours."""

    @app.exception_handler(CifarCnnError)
    async def cifar_cnn_error(_: Request, exc: CifarCnnError) -> JSONResponse:
        status = getattr(exc, "status_code", 413 if isinstance(exc, ImageTooLargeError) else 400)
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404 and message == "Not Found":
            message = f"Nothing at {where}; the API is described at /docs."
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"{where} is not allowed; use {allowed or 'another method'} (see /docs)."
        return JSONResponse({"error": message}, status_code=exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        kinds = {"query": "query parameter", "path": "path parameter", "body": "body",
                 "header": "header"}
        problems = []
        for e in exc.errors():
            kind, *field = e.get("loc", ()) or ("request",)
            label = f"{kinds.get(kind, kind)} {'.'.join(map(str, field))}".strip()
            received = f". Received: {e['input']!r}" if "input" in e else ""
            problems.append(f"{label}: {e.get('msg', 'invalid')}{received}")
        return JSONResponse({"error": "; ".join(problems) + " (see /docs)."}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises it after this answer, so the server logs the traceback.
        return JSONResponse({"error": f"Internal error ({type(exc).__name__}: {exc}); this is "
                                      "a bug in the server, not in the request."},
                            status_code=500)
