"""The prediction service: a trained model behind an HTTP API (``cifar-cnn serve``).

::

    from cifar_cnn.serve import create_app
    app = create_app("runs/fast94")  # any ASGI server runs it: uvicorn.run(app)

See `create_app` for the routes, `DynamicBatcher` for how concurrent requests share model
calls, and `run_server` for what ``cifar-cnn serve`` adds (graceful shutdown, one line once
the server listens).
"""

from cifar_cnn.serve.app import create_app
from cifar_cnn.serve.batcher import DynamicBatcher
from cifar_cnn.serve.server import run_server
from cifar_cnn.serve.service import Limits, ModelService

__all__ = ["DynamicBatcher", "Limits", "ModelService", "create_app", "run_server"]
