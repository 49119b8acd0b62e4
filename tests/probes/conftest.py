"""Shared fixtures of the probe tests; the models themselves live in ``_probe_models``."""

from __future__ import annotations

import pytest
from _probe_models import ModAddMLP, Setup, modadd_data, seeded, train_one_step


@pytest.fixture
def setup() -> Setup:
    """The seed-000 model after one AdamW step, in a mixed train/eval mode pattern."""
    train, test = modadd_data()
    model = seeded(ModAddMLP)
    optimizer = train_one_step(model, train)
    model.train()
    model.mlp[2].eval()
    return Setup(model, optimizer, train, test)
