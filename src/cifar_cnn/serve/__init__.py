"""The prediction service: a trained model behind an HTTP API (``cifar-cnn serve``).

::

    from cifar_cnn.serve import create_app
    app = create_app("runs/fast94")  # any ASGI server runs it: uvicorn.run(app)

See `create_app` for the routes, `DynamicBatcher` for how concurrent requests share model
calls, and `run_server` for what ``cifar-cnn serve`` adds (graceful shutdown, one line once
the server listens).
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use, so that ``cifar-cnn`` reads `Limits` without FastAPI.
_EXPORTS = {"create_app": "cifar_cnn.serve.app", "DynamicBatcher": "cifar_cnn.serve.batcher",
            "run_server": "cifar_cnn.serve.server", "Limits": "cifar_cnn.serve.limits",
            "ModelService": "cifar_cnn.serve.service"}

__all__ = ["DynamicBatcher", "Limits", "ModelService", "create_app", "run_server"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
