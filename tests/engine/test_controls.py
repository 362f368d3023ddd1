from __future__ import annotations

import pytest

from engine.controls import merge, options_from_headers, validate
from engine.errors import RequestError
from router.types import ThriftyOptions


def test_headers_become_options() -> None:
    opts = merge(None, options_from_headers({
        "x-thrifty-cache-mode": "read-only", "x-thrifty-namespace": "ns", "x-thrifty-ttl": "60",
        "x-thrifty-task": "code", "x-thrifty-policy": "cost",
    }))
    assert opts == ThriftyOptions(cache_mode="read-only", namespace="ns", ttl=60.0, task="code", policy="cost")


def test_body_wins_over_headers() -> None:
    opts = merge(ThriftyOptions(namespace="body"), options_from_headers({"x-thrifty-namespace": "hdr",
                                                                          "x-thrifty-ttl": "5"}))
    assert opts is not None and opts.namespace == "body" and opts.ttl == 5.0


def test_cache_control() -> None:
    assert options_from_headers({"cache-control": "no-store"})["cache_mode"] == "read-only"
    assert options_from_headers({"cache-control": "no-cache"})["cache_mode"] == "write-only"


def test_bad_values_name_the_header() -> None:
    with pytest.raises(RequestError, match="x-thrifty-ttl"):
        options_from_headers({"x-thrifty-ttl": "soon"})
    with pytest.raises(RequestError, match="x-thrifty-cache-mode"):
        merge(None, options_from_headers({"x-thrifty-cache-mode": "sometimes"}))
    with pytest.raises(RequestError, match="ttl"):
        validate(ThriftyOptions(ttl=-1))
