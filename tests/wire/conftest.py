"""Wire tests: one live proxy per provider wire format per module, the session's fake upstream behind it,
and a summary of what was validated printed at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from client_matrix import MATRIX
from wire_references import CONFORMANCE
from wire_support import proxy


class _Proxies(dict[str, Any]):
    """{provider kind: (live server, engine)}, each proxy started on first use and kept for the module."""

    def __init__(self, stack: ExitStack, upstream: Any, root: Path, encoder: Any) -> None:
        super().__init__()
        self._start = lambda kind: stack.enter_context(proxy(kind, upstream, root / kind, encoder))

    def __missing__(self, kind: str) -> Any:
        self[kind] = self._start(kind)
        return self[kind]


@pytest.fixture(scope="module")
def proxies(_fake_upstream: Any, minilm: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A live proxy per provider wire format (see PROVIDERS), the session's fake upstream behind it."""
    with ExitStack() as stack:
        yield _Proxies(stack, _fake_upstream, tmp_path_factory.mktemp("wire"), minilm)


@pytest.fixture
def fake(_fake_upstream: Any) -> Iterator[Any]:
    """The session's fake upstream, its scripts and recorded requests cleared; at the end of the test every
    request thrifty sent it is validated by its format's reference."""
    _fake_upstream.reset()
    yield _fake_upstream
    CONFORMANCE.upstream_requests(list(_fake_upstream.requests))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if CONFORMANCE.counts or CONFORMANCE.failures:
        terminalreporter.section("wire conformance: documents validated (OpenAPI schema and SDK types)")
        terminalreporter.write_line(CONFORMANCE.table())
    if MATRIX.cells:
        terminalreporter.section("client matrix")
        terminalreporter.write_line(MATRIX.table())
