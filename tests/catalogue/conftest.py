"""The ``sandbox`` fixture of the bad-input catalogue (see ``sandbox.py``)."""

from __future__ import annotations

import pytest
from sandbox import Sandbox, make_sandbox


@pytest.fixture
def sandbox(tmp_path, monkeypatch) -> Sandbox:
    return make_sandbox(tmp_path, monkeypatch)
