"""Session-wide fixtures shared by every test folder."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def minilm():  # type: ignore[no-untyped-def]
    """The real all-MiniLM-L6-v2 (fastest back end that loads), loaded once per test session."""
    from cache import default_encoder

    enc = default_encoder()
    enc.encode(["warm up"])
    return enc
