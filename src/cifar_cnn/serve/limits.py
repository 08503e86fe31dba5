"""`Limits`: what one request to the prediction service may send, each default written
once; ``cifar-cnn serve`` makes its options from them (`limit_options`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cifar_cnn.errors import ConfigError
from cifar_cnn.images import MAX_PIXELS


def _limit(default: Any, help: str) -> Any:
    """A field of `Limits` with its command-line help (``cifar-cnn serve --max-...``)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Limits:
    """What one request may send; anything over is refused with a 4xx before the model.
    Each default is written here once: `create_app` and ``cifar-cnn serve`` take them from
    these fields (see `limit_options`).

    Attributes:
        max_bytes: the largest image file, in bytes (a larger one: 413).
        max_files: the most images in one request (more: 413).
        max_pixels: the most pixels in one image, checked before decoding it (more: 413).
        max_batch_size: the most images in one model call (see `DynamicBatcher`).
        max_wait_ms: how long a batch waits for more images after its first.
    """

    max_bytes: int = _limit(10_000_000, "largest image file accepted, in bytes")
    max_files: int = _limit(64, "most images in one request")
    max_pixels: int = _limit(MAX_PIXELS, "refuse images with more pixels than this, before "
                                         "decoding them (decompression bombs)")
    max_batch_size: int = _limit(64, "most images in one model call; concurrent requests "
                                     "share calls")
    max_wait_ms: float = _limit(5.0, "how long a batch waits for more images after its "
                                     "first, in milliseconds")

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_files", "max_pixels", "max_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1. Received: {name}={getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms must be >= 0. Received: max_wait_ms={self.max_wait_ms}")

    @property
    def max_request_bytes(self) -> int:
        """The largest request body: `max_files` files of `max_bytes`, base64-encoded (4/3)
        plus 64 KiB each for multipart headers or JSON around them."""
        return self.max_files * (self.max_bytes * 4 // 3 + 64 * 1024)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "max_request_bytes": self.max_request_bytes}

    @classmethod
    def from_options(cls, **options: Any) -> Limits:
        """Limits from keyword arguments (None: the default).

        Raises:
            ConfigError: for a name that is no limit.
        """
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ConfigError(f"Unknown limit(s) {', '.join(unknown)}; the limits are "
                              f"{', '.join(names)}.")
        return cls(**{k: v for k, v in options.items() if v is not None})


def limit_options() -> list[tuple[str, dict[str, Any]]]:
    """``(flag, argparse keyword arguments)`` for each of `Limits`' fields."""
    return [(f"--{f.name.replace('_', '-')}",
             {"type": type(f.default), "default": None, "dest": f.name,
              "help": f"{f.metadata['help']} (default {f.default:,})"})
            for f in fields(Limits)]
