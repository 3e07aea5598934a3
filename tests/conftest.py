"""Shared test fixtures."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Single-threaded torch for the test: small models and the data chain only lose to thread contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
