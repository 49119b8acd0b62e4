"""Shared fixtures for the top-level tests."""

from __future__ import annotations

import pytest
import torch
from _models import TinyMLP, addition_data


@pytest.fixture
def data():
    return addition_data()


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TinyMLP()
