"""The real CIFAR-10, read once per test session by the integration tests that need it."""

from __future__ import annotations

import pytest

from cifar_cnn.data import CifarData, load_cifar10
from tests.conftest import shared_cifar10


@pytest.fixture(scope="session")
def cifar10() -> CifarData:
    return load_cifar10(shared_cifar10())
