"""`run_server`: uvicorn for ``cifar-cnn serve``, with a clear error for a busy port and a
clean exit after SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from cifar_cnn.errors import ConfigError


class _Server(uvicorn.Server):
    """uvicorn's server, calling `on_ready` once it listens (after the app's startup)."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._on_ready()


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: any free port).

    Raises:
        ConfigError: if the host is unknown or the port is taken or not allowed.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, OverflowError) as e:
        raise ConfigError(f"Cannot listen on {host}:{port} ({e}); give an IP address or "
                          "host name of this machine and a port in 0..65535.") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise ConfigError(f"Cannot listen on {host}:{port} ({e.strerror or e}); choose another "
                          "--port, or stop what uses this one.") from None
    sock.set_inheritable(True)
    return sock


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Stands in for the default handlers while serving: uvicorn raises the signal it shut
    down for again once it is done, which would otherwise kill the process (exit -15) or
    raise KeyboardInterrupt after a clean shutdown."""


def run_server(app: Any, host: str = "127.0.0.1", port: int = 8000, *,
               on_ready: Callable[[str], None] | None = None, log_level: str = "warning",
               access_log: bool = False) -> None:
    """Serve `app` with uvicorn until SIGTERM or Ctrl-C, then shut down gracefully.

    On the signal the server stops accepting connections, lets requests in flight finish,
    runs the app's shutdown, and returns.

    Args:
        app: an ASGI app, e.g. from `create_app`.
        host: the address to listen on (127.0.0.1: this machine only; 0.0.0.0: everywhere).
        port: the TCP port (0: any free one).
        on_ready: called with the server's URL once it listens and the app has started.
        log_level: uvicorn's log level.
        access_log: log one line per request.

    Raises:
        ConfigError: if it cannot listen on `host`:`port`, or the app failed to start (the
            log says why).
    """
    sock = listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound_port}"
    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="on")
    server = _Server(config, lambda: on_ready(url) if on_ready else None)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if not server.started and getattr(getattr(server, "lifespan", None), "startup_failed",
                                      False):
        raise ConfigError(f"The server on {bound_host}:{bound_port} did not start; the log "
                          "above says why.")
