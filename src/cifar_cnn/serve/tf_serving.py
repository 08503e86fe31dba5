"""The TensorFlow Serving REST predict API's bodies, so TF Serving clients work unchanged.

See https://www.tensorflow.org/tfx/serving/api_rest. A request is
``{"signature_name"?: ..., "instances": [...]}`` (row format, answered with
``{"predictions": [...]}``) or ``{"inputs": ...}`` (columnar, answered with
``{"outputs": [...]}``). The model has one input, an image, which an instance gives as

- ``{"b64": "<base64 of an image file>"}``,
- an object with one named field holding that, e.g. ``{"image_bytes": {"b64": "..."}}``,
- or an HxWx3 nested list of 0..255 pixel values.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cifar_cnn.serve.errors import PayloadTooLargeError, RequestError

SIGNATURE_NAME = "serving_default"

# The request body's schema, for the OpenAPI document.
REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "signature_name": {"type": "string", "enum": [SIGNATURE_NAME]},
        "instances": {"type": "array", "description": (
            'Row format. Each item: {"b64": "<base64 image file>"}, an object with one field '
            'holding that (e.g. {"image_bytes": {"b64": "..."}}), or an HxWx3 list of 0..255.'),
            "items": {}},
        "inputs": {"description": (
            "Columnar format: the list of images as in `instances`, or an object with one "
            "field holding that list.")},
    },
    "example": {"signature_name": SIGNATURE_NAME,
                "instances": [{"b64": "iVBORw0KGgoAAAANSUhEUgAA..."}]},
}

HOW = ('Send {"instances": [{"b64": "<base64 of an image file>"}, ...]} as TensorFlow '
       "Serving's REST API does (or an HxWx3 list of 0..255 pixel values per instance).")


def parse_predict_request(body: bytes, *, max_files: int,
                          max_bytes: int) -> tuple[str, list[tuple[str, bytes | list]]]:
    """The images of a TF Serving predict request, and the key its answer goes under.

    Returns:
        ``(key, images)``: key is "predictions" (row format) or "outputs" (columnar); images
        are ``(name, image)`` pairs, an image being file bytes or a nested pixel list, and the
        name saying where it was (``instances[2]``) for error messages.

    Raises:
        RequestError: for malformed JSON, bad base64, a missing or empty ``instances``, an
            unknown signature, or an instance of another shape.
        PayloadTooLargeError: for more than `max_files` images or one over `max_bytes`.
    """
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(f"The body is not valid JSON ({e}). {HOW}") from None
    if not isinstance(request, dict):
        raise RequestError(f"The body must be a JSON object. Received: a JSON "
                           f"{type(request).__name__}. {HOW}")
    signature = request.get("signature_name", SIGNATURE_NAME)
    if signature != SIGNATURE_NAME:
        raise RequestError(f"Unknown signature_name {signature!r}; this model has one "
                           f"signature, {SIGNATURE_NAME!r} (the default when left out).")
    if ("instances" in request) == ("inputs" in request):
        raise RequestError("The body must have either 'instances' (row format) or 'inputs' "
                           f"(columnar format), not {'both' if 'inputs' in request else 'neither'}"
                           f". {HOW}")
    if "instances" in request:
        key, where, items = "predictions", "instances", request["instances"]
    else:
        key, where, items = "outputs", "inputs", request["inputs"]
        if isinstance(items, dict) and set(items) != {"b64"}:  # {input name: the list}
            if len(items) != 1:
                raise RequestError(f"'inputs' names {len(items)} inputs ({', '.join(items)});"
                                   " this model has one, the image.")
            (name, items), = items.items()
            where = f"inputs.{name}"
        if isinstance(items, dict):  # one image
            items = [items]
    if not isinstance(items, list) or not items:
        raise RequestError(f"'{where}' must be a non-empty list of images. {HOW}")
    if len(items) > max_files:
        raise PayloadTooLargeError(f"{len(items)} images is over the limit of {max_files} per "
                                   "request; send them in several requests, or start the "
                                   "server with a larger --max-files.")
    return key, [_image(f"{where}[{i}]", item, max_bytes) for i, item in enumerate(items)]


def _image(name: str, item: Any, max_bytes: int) -> tuple[str, bytes | list]:
    """One instance, named for errors: the bytes of an image file, or a nested pixel list."""
    if isinstance(item, dict) and set(item) != {"b64"} and len(item) == 1:
        (field, item), = item.items()  # {"image_bytes": {"b64": ...}}
        name = f"{name}.{field}"
    if isinstance(item, list):
        return name, item
    if not (isinstance(item, dict) and set(item) == {"b64"}):
        got = (f"an object with fields {', '.join(map(repr, item))}" if isinstance(item, dict)
               else f"a JSON {type(item).__name__}")
        raise RequestError(f'{name}: expected {{"b64": "<base64 of an image file>"}}, an '
                           "object with one field holding that, or an HxWx3 list of 0..255 "
                           f"values. Received: {got}")
    text = item["b64"]
    if not isinstance(text, str):
        raise RequestError(f"{name}: 'b64' must be a string of base64. Received: a JSON "
                           f"{type(text).__name__}")
    text = "".join(text.split())  # line breaks, as `base64` writes them
    if len(text) // 4 * 3 > max_bytes + 2:
        raise PayloadTooLargeError(f"{name}: about {len(text) // 4 * 3:,} bytes, over the limit "
                                   f"of {max_bytes:,} bytes per image; send a smaller image, "
                                   "or start the server with a larger --max-bytes.")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:  # the URL-safe alphabet (- and _), which some clients send
            data = base64.b64decode(text, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError) as e:
            raise RequestError(f"{name}: 'b64' is not valid base64 ({e}).") from None
    if len(data) > max_bytes:
        raise PayloadTooLargeError(f"{name}: {len(data):,} bytes is over the limit of "
                                   f"{max_bytes:,} bytes per image; send a smaller image, or "
                                   "start the server with a larger --max-bytes.")
    return name, data
