"""The real CIFAR-10, read once per test session by the integration tests that need it."""

from __future__ import annotations

import pytest

from cifar_cnn.data import CifarData, load_cifar10
from tests.conftest import shared_cifar10


@pytest.fixture(scope="session")
def cifar10(tmp_path_factory: pytest.TempPathFactory) -> CifarData:
    """Decoded into a cache of the session's own: session fixtures start before the autouse
    per-test isolation, and the user's ~/.cache/cifar-cnn is not the tests' to fill."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIFAR_CNN_CACHE", str(tmp_path_factory.mktemp("cifar10-cache")))
        return load_cifar10(shared_cifar10())
