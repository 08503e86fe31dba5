"""Reading the images of a POST /v1/predict body, within the server's limits.

Two ways to send images: multipart/form-data with one ``files`` (or ``file``) field per
image, as an HTML form or ``curl -F files=@cat.jpg`` sends them, or one image as the raw
body (``Content-Type: image/*`` or ``application/octet-stream``). Sizes are checked while
the body streams in, so an oversized upload is refused without being read whole.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from cifar_cnn.serve.errors import (
    PayloadTooLargeError,
    RequestError,
    UnsupportedMediaTypeError,
)
from cifar_cnn.serve.limits import Limits

FILE_FIELDS = ("files", "file")
RAW_BODY_NAME = "body"  # what errors call an image sent as the raw body

# The request body's description, for the OpenAPI document.
REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": ("One or several image files (PNG, JPEG, BMP, GIF, WebP, TIFF...): "
                    "multipart/form-data with a `files` field per image, or one image as the "
                    "raw body."),
    "content": {
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["files"],
            "properties": {"files": {"type": "array",
                                     "items": {"type": "string", "format": "binary"}}}}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}


class _BodyTooLarge(Exception):
    pass


async def read_images(request: Request, limits: Limits) -> list[tuple[str, bytes]]:
    """``(file name, file bytes)`` for every image in the request, in order.

    Raises:
        UnsupportedMediaTypeError: for a body that is neither multipart nor an image.
        PayloadTooLargeError: for a file over `limits.max_bytes`, more than
            `limits.max_files` files, or a body over `limits.max_request_bytes`.
        RequestError: for a malformed multipart body, or one without image files.
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return await _read_form(request, limits)
    if media.startswith("image/") or media == "application/octet-stream":
        body = await _read_body(request, limits.max_bytes, _file_too_large(RAW_BODY_NAME,
                                                                            limits))
        return [(RAW_BODY_NAME, body)]
    raise UnsupportedMediaTypeError(
        f"Content-Type {media or '(none)'} is not accepted here. Send multipart/form-data "
        "with a `files` field per image (curl -F files=@cat.jpg), or one image as the body "
        "with Content-Type image/* or application/octet-stream.")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 once it passes `limit` bytes."""
    return await _read_body(request, limit, PayloadTooLargeError(
        f"The request body is over the limit of {limit:,} bytes; send fewer or smaller "
        "images per request, or start the server with larger --max-bytes/--max-files."))


def _file_too_large(name: str, limits: Limits) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"{name}: over the limit of {limits.max_bytes:,} bytes per file; send a smaller "
        "image, or start the server with a larger --max-bytes.")


def _check_length(request: Request, limit: int, error: Exception) -> None:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise error


async def _read_body(request: Request, limit: int, error: Exception) -> bytes:
    _check_length(request, limit, error)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise error
        chunks.append(chunk)
    return b"".join(chunks)


def _limited(receive: Callable[[], Awaitable[dict]], limit: int) -> Callable[[], Awaitable[dict]]:
    """`receive` that raises `_BodyTooLarge` once the body passes `limit` bytes."""
    size = 0

    async def limited_receive() -> dict:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise _BodyTooLarge
        return message

    return limited_receive


async def _read_form(request: Request, limits: Limits) -> list[tuple[str, bytes]]:
    too_large = PayloadTooLargeError(
        f"The request body is over the limit of {limits.max_request_bytes:,} bytes (up to "
        f"{limits.max_files} files of {limits.max_bytes:,} bytes); send fewer or smaller "
        "images per request, or start the server with larger --max-bytes/--max-files.")
    _check_length(request, limits.max_request_bytes, too_large)
    limited = Request(request.scope, _limited(request.receive, limits.max_request_bytes))
    try:
        form = await limited.form(max_files=limits.max_files, max_fields=100)
    except _BodyTooLarge:
        raise too_large from None
    except HTTPException as e:  # Starlette's words for a malformed body or too many files
        if str(e.detail).startswith("Too many files"):
            raise PayloadTooLargeError(
                f"Too many files: at most {limits.max_files} per request; send them in several "
                "requests, or start the server with a larger --max-files.") from None
        raise RequestError(f"Malformed multipart/form-data body ({e.detail}).") from None
    try:
        uploads: list[UploadFile] = []
        for key, value in form.multi_items():
            if key in FILE_FIELDS:
                if not isinstance(value, UploadFile):
                    raise RequestError(f"Field {key!r} holds text, not a file; attach image "
                                       f"files to it (curl -F {key}=@cat.jpg).")
                uploads.append(value)
            elif isinstance(value, UploadFile):
                raise RequestError(f"File field {key!r} is not read: name image fields "
                                   "`files` (one per image) or `file`.")
        if not uploads:
            raise RequestError("No image in the request: add one or more `files` fields "
                               "holding image files (curl -F files=@cat.jpg).")
        files = []
        for i, upload in enumerate(uploads):
            name = upload.filename or f"files[{i}]"
            if upload.size is not None and upload.size > limits.max_bytes:
                raise _file_too_large(name, limits)
            files.append((name, await upload.read()))
        return files
    finally:
        await form.close()
