"""What a request did wrong, each with the HTTP status it is answered with.

The app turns every `CifarCnnError` into ``{"error": message}``: these with their own
status, an `ImageTooLargeError` with 413, any other (an unreadable image, a bad option)
with 400.
"""

from __future__ import annotations

from cifar_cnn.errors import CifarCnnError


class RequestError(CifarCnnError):
    """A request the service cannot answer as sent (400)."""

    status_code = 400


class PayloadTooLargeError(RequestError):
    """A file, body or number of images over the server's limits (413)."""

    status_code = 413


class UnsupportedMediaTypeError(RequestError):
    """A body of a Content-Type the route does not take (415)."""

    status_code = 415


class ModelNotFoundError(RequestError):
    """A TensorFlow Serving route naming a model or version not served here (404)."""

    status_code = 404


class NotReadyError(RequestError):
    """A request before the model is loaded and warmed up, or after shutdown began (503)."""

    status_code = 503
