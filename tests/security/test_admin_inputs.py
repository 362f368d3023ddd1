"""A careless (or hostile) operator at the admin API: every bad input is a 4xx naming what is wrong, an
import is checked like an insert and is all or nothing, and the data directory stays usable."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest
import yaml
from security_support import ADMIN, assert_openai_error, auth, chat_body

from cache.transfer import FORMAT, VERSION
from engine.cli import main as cli_main

DEEP = '{"a":' * 1000 + "1" + "}" * 1000


def _export(client: httpx.Client) -> list[dict[str, Any]]:
    r = client.get("/admin/cache/export", headers=ADMIN)
    assert r.status_code == 200
    return [msgspec.json.decode(line) for line in r.content.splitlines() if line.strip()]


def _jsonl(lines: list[Any]) -> bytes:
    return b"".join(msgspec.json.encode(x) + b"\n" for x in lines)


@pytest.fixture
def seeded(gateway: Any) -> tuple[Any, httpx.Client, list[dict[str, Any]]]:
    """A gateway with two cached answers, and its export (header + records)."""
    gw = gateway()
    client = httpx.Client(base_url=gw.url, timeout=15)
    for text in ("what is the capital of france", "how do I reverse a list in python"):
        assert client.post("/v1/chat/completions", json=chat_body(text), headers=auth()).status_code == 200
    client.get("/admin/stats", headers=ADMIN)  # waits for the cache writes in flight
    lines = _export(client)
    assert len(lines) == 3, lines[:1]
    return gw, client, lines


def _vector(record: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(record["vector"]), np.float32).copy()


def _with_vector(record: dict[str, Any], vec: np.ndarray) -> dict[str, Any]:
    return {**record, "vector": base64.b64encode(vec.astype(np.float32).tobytes()).decode()}


# Entry is array-like: [partition, exact_key, namespace, text, response, created, expires_at, hits, last_hit,
# model, cost_usd, tokens_in, tokens_out, size]
def _with_entry(record: dict[str, Any], index: int, value: Any) -> dict[str, Any]:
    entry = list(record["entry"])
    entry[index] = value
    return {**record, "entry": entry}


BAD_RECORDS: list[tuple[str, Any, str]] = [
    ("vector not unit length", lambda r: _with_vector(r, _vector(r) * 3.0), "vector"),
    ("vector with nan", lambda r: _with_vector(r, np.full(_vector(r).shape, np.nan)), "vector"),
    ("vector of another dimension", lambda r: _with_vector(r, _vector(r)[:10]), "vector"),
    ("vector bytes not float32", lambda r: {**r, "vector": base64.b64encode(b"abc").decode()}, "vector"),
    ("expiry 1e300 after creation", lambda r: _with_entry(r, 6, 1e300), "expires_at"),
    ("expiry before creation", lambda r: _with_entry(r, 6, 5.0), "expires_at"),
    ("negative cost", lambda r: _with_entry(r, 10, -1.0), "cost_usd"),
    ("created in the far future", lambda r: _with_entry(r, 5, 4e9), "created"),
    ("short partition key", lambda r: _with_entry(r, 0, base64.b64encode(b"abc").decode()), "partition"),
    ("empty namespace", lambda r: _with_entry(r, 2, ""), "namespace"),
    ("negative token count", lambda r: _with_entry(r, 11, -5), "tokens_in"),
    ("stored answer is not a chat response", lambda r: _with_entry(r, 4, base64.b64encode(b"[1,2").decode()),
     "response"),
]


@pytest.mark.parametrize(("why", "spoil", "field"), BAD_RECORDS, ids=[b[0] for b in BAD_RECORDS])
def test_import_refuses_a_bad_record_and_imports_nothing(seeded: Any, gateway: Any, why: str, spoil: Any,
                                                         field: str) -> None:
    _, _, lines = seeded
    header, first, second = lines
    gw = gateway()  # an empty cache to import into
    client = httpx.Client(base_url=gw.url, timeout=15)
    body = _jsonl([header, first, spoil(second)])  # the good record comes first: it must not land either
    r = client.post("/admin/cache/import", headers=ADMIN, content=body)
    err = assert_openai_error(r, 400)
    assert "line 3" in err["message"] and field in err["message"], err["message"]
    assert gw.engine.cache.stats().entries == 0
    # The untouched export still imports: the cache is usable after the refusal.
    r = client.post("/admin/cache/import", headers=ADMIN, content=_jsonl(lines))
    assert r.status_code == 200 and r.json() == {"imported": 2}


def test_import_with_a_foreign_encoder_is_409(seeded: Any) -> None:
    _, client, lines = seeded
    header = {**lines[0], "encoder": "someone-elses-encoder"}
    r = client.post("/admin/cache/import", headers=ADMIN, content=_jsonl([header, *lines[1:]]))
    err = assert_openai_error(r, 409)
    assert "someone-elses-encoder" in err["message"]
    bad = client.post("/admin/cache/import", headers=ADMIN, content=b"not json at all\n")
    assert "header" in assert_openai_error(bad, 400)["message"]


def test_a_refused_import_leaves_a_data_dir_that_restarts(seeded: Any, gateway: Any) -> None:
    gw, client, lines = seeded
    nan_ttl = _with_entry(lines[1], 6, 1e400)  # encodes as a JSON number that decodes to inf
    r = client.post("/admin/cache/import", headers=ADMIN, content=_jsonl([lines[0], nan_ttl]))
    assert_openai_error(r, 400)
    data_dir = gw.engine.settings.data_dir
    gw.stop()
    again = gateway(data_dir=data_dir)
    c2 = httpx.Client(base_url=again.url, timeout=15)
    r = c2.post("/v1/chat/completions", json=chat_body("what is the capital of france"), headers=auth())
    assert r.status_code == 200 and r.headers["x-thrifty-cache"] == "exact"


def test_cli_cache_import_applies_the_same_checks(seeded: Any, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _, _, lines = seeded
    cfg_path = tmp_path / "cli.yaml"
    cfg = {"data_dir": str(tmp_path / "cli-data"), "cache": {"encoder": "hashing"}}
    cfg_path.write_text(yaml.safe_dump(cfg))
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(_jsonl([lines[0], lines[1], _with_vector(lines[2], _vector(lines[2]) * 2)]))
    assert cli_main(["--config", str(cfg_path), "cache", "import", str(bad)]) == 1
    assert "line 3" in capsys.readouterr().err
    good = tmp_path / "good.jsonl"
    good.write_bytes(_jsonl(lines))
    assert cli_main(["--config", str(cfg_path), "cache", "import", str(good)]) == 0
    assert "imported 2 entries" in capsys.readouterr().out


@pytest.mark.parametrize("entry_id", ["-1", "abc", "1e3", "99999999999999999999999", "１２"])
def test_delete_entry_with_a_bad_id_is_400(gateway: Any, entry_id: str) -> None:
    gw = gateway()
    r = httpx.delete(f"{gw.url}/admin/cache/entries/{entry_id}", headers=ADMIN)
    assert "entry id" in assert_openai_error(r, 400)["message"]
    ok = httpx.delete(f"{gw.url}/admin/cache/entries/12345", headers=ADMIN)
    assert ok.status_code == 200 and ok.json() == {"deleted": False}


@pytest.mark.parametrize(("since", "status"), [
    ("abc", 400), ("nan", 400), ("inf", 400), ("2026-13-45", 400),
    ("1700000000", 200), ("1700000000.5", 200), ("2024-01-31", 200), ("2024-01-31T12:00:00+02:00", 200),
])
def test_stats_since_is_a_timestamp_or_an_iso_date(gateway: Any, since: str, status: int) -> None:
    gw = gateway()
    r = httpx.get(f"{gw.url}/admin/stats", params={"since": since}, headers=ADMIN)
    if status == 400:
        assert "since" in assert_openai_error(r, 400)["message"]
    else:
        assert r.status_code == 200 and "totals" in r.json()


def test_admin_bodies_nested_too_deep_are_400(gateway: Any) -> None:
    gw = gateway()
    c = httpx.Client(base_url=gw.url, timeout=15)
    rules = c.put("/admin/routing/rules", headers=ADMIN, content=f'[{{"when": {DEEP}}}]')
    assert "nested" in assert_openai_error(rules, 400)["message"]
    purge = c.post("/admin/cache/purge", headers=ADMIN, content=f'{{"namespace": {DEEP}}}')
    assert "nested" in assert_openai_error(purge, 400)["message"]
    # Still serving, and the rules in force are unchanged.
    assert c.get("/admin/routing/rules", headers=ADMIN).status_code == 200
    assert c.post("/v1/chat/completions", json=chat_body(), headers=auth()).status_code == 200


def test_export_of_a_cache_holds_only_finite_ttls(seeded: Any) -> None:
    """A bad TTL can no longer reach the cache, so an export always re-imports (finding 8)."""
    _, _, lines = seeded
    for record in lines[1:]:
        created, expires = record["entry"][5], record["entry"][6]
        assert np.isfinite(expires) and (expires == 0 or 0 < expires - created <= 10 * 365 * 86400)
    assert (lines[0]["format"], lines[0]["version"]) == (FORMAT, VERSION)
