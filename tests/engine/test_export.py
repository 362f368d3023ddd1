"""The ledger as analytics data: each export format read back (Parquet with DuckDB), the hourly scheduled
export (hour boundaries on an injected clock, catch-up after a restart, two writers), and the admin route."""

from __future__ import annotations

import csv
import fcntl
import io
import os
import sqlite3
import threading
import time
from pathlib import Path

import duckdb
import httpx
import msgspec
import openai
import pyarrow.parquet as pq
import pytest
import yaml
from engine_support import base_config

from bench.fake_upstream import FakeUpstream
from engine._export_schedule import HOUR, HourlyExport, file_name
from engine.cli import main
from engine.config import ConfigError, load
from engine.errors import RequestError
from engine.export import NAMES, SCHEMA_VERSION, export, parse_time, row_batches
from engine.ledger import Ledger, Routing, UsageRecord

ADMIN = "admin-secret-h"
T0 = 1_790_000_000.0 // HOUR * HOUR  # an hour boundary (2026-09-21T14:00Z)


def _ledger(path: Path, times: list[float]) -> Ledger:
    ledger = Ledger(path)
    for i, ts in enumerate(times):
        ledger.record(UsageRecord(
            request_id=f"r{i:04d}", ts=ts, tenant=f"t{i % 3}", cache="hit" if i % 4 == 0 else "miss", status=200,
            model="gpt-4o-mini", provider="openai", cost_usd=0.001 * (i + 1), prompt_tokens=i, stream=i % 2 == 1,
            stages={"route": 0.1, "dispatch": 2.5}, namespace=f"t{i % 3}/faq" if i % 4 == 0 else None,
            entry_id=i if i % 4 == 0 else None, similarity=0.97 if i % 4 == 0 else None,
            experiment="cheaper" if i % 2 else None, arm=("b" if i % 3 else "a") if i % 2 else None,
            routing=Routing(chosen="openai/gpt-4o-mini", policy="balanced", task="chat",
                            candidates=[("openai/gpt-4o-mini", 0.81, 0.0002)], dropped=[("o1", "too dear")])))
    ledger.flush()
    return ledger


def _ledger_totals(ledger: Ledger, since: float, until: float) -> tuple[int, float]:
    row = ledger.query("SELECT COUNT(*) AS n, SUM(cost_usd) AS s FROM requests WHERE ts >= ? AND ts < ?",
                       (since, until))[0]
    return row["n"], row["s"] or 0.0


def _write(path: Path, fmt: str, since: float | None = None, until: float | None = None) -> Path:
    out = path.parent / f"out.{fmt}"
    with open(out, "wb") as f:
        for piece in export(path, since=since, until=until, fmt=fmt):
            f.write(piece)
    return out


def test_each_format_reads_back_with_the_ledgers_rows_and_cost(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = _ledger(path, [T0 + 37.5 * i for i in range(300)])
    since, until = T0 + 100, T0 + 9000
    n, cost = _ledger_totals(ledger, since, until)
    assert 200 < n < 300

    pq_file = _write(path, "parquet", since, until)
    got_n, got_cost, versions = duckdb.sql(
        f"SELECT COUNT(*), SUM(cost_usd), MIN(schema_version) FROM read_parquet('{pq_file}')").fetchall()[0]
    assert got_n == n and got_cost == pytest.approx(cost, rel=1e-12) and versions == SCHEMA_VERSION
    assert pq.read_schema(pq_file).metadata[b"thrifty.schema_version"] == str(SCHEMA_VERSION).encode()
    first = duckdb.sql(f"SELECT epoch(ts), stream, stages, routing FROM read_parquet('{pq_file}') "
                       "ORDER BY ts LIMIT 1").fetchall()[0]
    assert first[0] >= since and isinstance(first[1], bool)
    assert msgspec.json.decode(first[2]) == {"route": 0.1, "dispatch": 2.5}
    assert msgspec.json.decode(first[3])["dropped"] == [["o1", "too dear"]]

    rows = list(csv.DictReader(io.StringIO(_write(path, "csv", since, until).read_text())))
    assert tuple(rows[0]) == NAMES and len(rows) == n
    assert sum(float(r["cost_usd"]) for r in rows) == pytest.approx(cost)
    assert rows[0]["ts"].endswith("Z") and {r["stream"] for r in rows} == {"true", "false"}

    lines = _write(path, "jsonl", since, until).read_bytes().splitlines()
    recs = [msgspec.json.decode(line) for line in lines]
    assert len(recs) == n and sum(r["cost_usd"] for r in recs) == pytest.approx(cost)
    assert recs[0]["schema_version"] == SCHEMA_VERSION and recs[0]["tenant"] in ("t0", "t1", "t2")
    # version 2's columns: the cache entry served and the experiment arm travel with each row
    by_id = {r["request_id"]: r for r in recs}
    want = {r["request_id"]: r for r in ledger.query(
        "SELECT request_id, namespace, entry_id, similarity, experiment, arm FROM requests WHERE ts >= ? AND ts < ?",
        (since, until))}
    assert {k: {c: by_id[k][c] for c in ("namespace", "entry_id", "similarity", "experiment", "arm")}
            for k in by_id} == {k: {c: v[c] for c in ("namespace", "entry_id", "similarity", "experiment", "arm")}
                                for k, v in want.items()}
    assert {r["arm"] for r in recs} == {None, "a", "b"} and any(r["entry_id"] is not None for r in recs)
    arms = duckdb.sql(f"SELECT arm, count(*) FROM read_parquet('{pq_file}') WHERE experiment = 'cheaper' "
                      "GROUP BY arm ORDER BY arm").fetchall()
    assert [a for a, _ in arms] == ["a", "b"] and sum(c for _, c in arms) == sum(r["experiment"] is not None for r in recs)
    assert [r["ts"] for r in recs] == sorted(r["ts"] for r in recs)
    ledger.close()


def test_keyset_batches_cover_every_row_once_even_with_equal_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = _ledger(path, [T0 + (i // 5) for i in range(53)])  # runs of 5 rows share one ts
    ids = [row[NAMES.index("request_id") - 1] for batch in row_batches(path, T0, None, batch=7) for row in batch]
    assert len(ids) == len(set(ids)) == 53
    ledger.close()


def test_an_empty_range_is_a_valid_file_with_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    _ledger(path, [T0]).close()
    out = _write(path, "parquet", T0 + 10, T0 + 20)
    assert duckdb.sql(f"SELECT COUNT(*) FROM read_parquet('{out}')").fetchall()[0] == (0,)
    assert pq.read_schema(out).names == list(NAMES)
    assert _write(path, "csv", T0 + 10, T0 + 20).read_text().strip() == ",".join(NAMES)


def test_time_forms_and_their_errors() -> None:
    now = 1_800_000_000.0
    assert parse_time("7d", param="since", now=now) == now - 7 * 86400
    assert parse_time("24h", param="since", now=now) == now - 86400
    assert parse_time("1790000000", param="since") == 1_790_000_000
    assert parse_time("2026-01-31", param="since") == parse_time("2026-01-31T00:00:00Z", param="since")
    assert parse_time("2026-01-31T01:00:00+01:00", param="since") == parse_time("2026-01-31", param="since")
    for bad in ("yesterday", "7 days", "nan", "inf", "-3d", ""):
        with pytest.raises(RequestError) as info:
            parse_time(bad, param="since")
        assert info.value.param == "since" and "since must be" in info.value.message
    with pytest.raises(RequestError, match="format must be one of parquet, csv, jsonl"):
        export(Path("unused"), since=None, until=None, fmt="xml")
    with pytest.raises(RequestError, match="until must be later than since"):
        export(Path("unused"), since=10.0, until=5.0, fmt="csv")


def test_cli_export_to_a_file_and_to_stdout(upstream: FakeUpstream, tmp_path: Path,
                                           capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    cfg = tmp_path / "thrifty.yaml"
    cfg.write_text(yaml.safe_dump(base_config(tmp_path, upstream)))
    ledger = _ledger(tmp_path / "data" / "ledger.sqlite3", [time.time() - 3600 * k for k in (1, 2, 50)])
    ledger.close()
    out = tmp_path / "u.parquet"
    assert main(["--config", str(cfg), "usage", "export", "--since", "24h", "--out", str(out)]) == 0
    assert duckdb.sql(f"SELECT COUNT(*) FROM read_parquet('{out}')").fetchall()[0] == (2,)
    assert main(["--config", str(cfg), "usage", "export", "--since", "3d", "--format", "jsonl", "--out", "-"]) == 0
    assert len(capsysbinary.readouterr().out.splitlines()) == 3
    assert main(["--config", str(cfg), "usage", "export", "--since", "last week"]) == 1
    assert b"--since must be a unix timestamp" in capsysbinary.readouterr().err
    assert main(["--config", str(cfg), "usage", "export"]) == 1
    assert b"needs --since" in capsysbinary.readouterr().err


# ---------------------------------------------------------------------------------------------- schedule
def _hour_count(directory: Path, hour: float) -> int:
    return duckdb.sql(f"SELECT COUNT(*) FROM read_parquet('{directory / file_name(hour, 'parquet')}')").fetchall()[0][0]


def test_hourly_files_at_hour_boundaries_and_catch_up(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    # 4 rows in hour 0, 3 in hour 1 (one exactly on its first second), none in hour 2, 2 in hour 3
    times = [T0 + 1, T0 + 600, T0 + 1800, T0 + HOUR - 0.001, T0 + HOUR, T0 + HOUR + 5, T0 + 2 * HOUR - 1,
             T0 + 3 * HOUR + 10, T0 + 3 * HOUR + 20]
    ledger = _ledger(path, times)
    out = tmp_path / "exports"
    clock = [T0 + HOUR + 59]  # hour 0 is over, but not by the delay
    job = HourlyExport(path, out, "parquet", delay_s=60, clock=lambda: clock[0])
    assert job.run_once() == []
    clock[0] = T0 + HOUR + 60
    assert job.run_once() == [file_name(T0, "parquet")] == ["usage-20260921T14.parquet"]
    assert _hour_count(out, T0) == 4
    assert job.run_once() == []  # each hour once

    # "restart" three hours later: hours 1 to 3 are written in one go, the empty hour too
    clock[0] = T0 + 4 * HOUR + 61
    restarted = HourlyExport(path, out, "parquet", delay_s=60, clock=lambda: clock[0])
    assert restarted.run_once() == [file_name(T0 + k * HOUR, "parquet") for k in (1, 2, 3)]
    assert [_hour_count(out, T0 + k * HOUR) for k in range(4)] == [4, 3, 0, 2]
    total = duckdb.sql(f"SELECT COUNT(*), SUM(cost_usd) FROM read_parquet('{out}/usage-*.parquet')").fetchall()[0]
    n, cost = _ledger_totals(ledger, 0, T0 + 10 * HOUR)
    assert total[0] == n == len(times) and total[1] == pytest.approx(cost)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    ledger.close()


def test_catch_up_is_bounded_and_starts_at_the_first_row(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    _ledger(path, [T0 + 10]).close()
    job = HourlyExport(path, tmp_path / "x", "jsonl", delay_s=0, catch_up_hours=5)
    assert job.due_hours(T0 + 3 * HOUR) == [T0, T0 + HOUR, T0 + 2 * HOUR]  # nothing before the first row
    assert job.due_hours(T0 + 100 * HOUR) == [T0 + k * HOUR for k in range(95, 100)]  # the last 5 only


def test_two_writers_one_directory(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    _ledger(path, [T0 + k * 900 for k in range(40)]).close()  # 10 hours of rows
    out = tmp_path / "shared"
    out.mkdir()
    now = T0 + 12 * HOUR
    # while another worker holds the lock, this one writes nothing
    fd = os.open(out / ".export.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    assert HourlyExport(path, out, "csv", delay_s=0).run_once(now) == []
    os.close(fd)
    # two workers at once: every hour is written exactly once between them
    results: list[list[str]] = [[], []]
    barrier = threading.Barrier(2)

    def worker(k: int) -> None:
        job = HourlyExport(path, out, "csv", delay_s=0)
        barrier.wait()
        for _ in range(3):
            results[k] += job.run_once(now)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    written = results[0] + results[1]
    assert sorted(written) == sorted(set(written)) and len(written) == 12
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert files == sorted(written)
    rows = sum(len(p.read_text().splitlines()) - 1 for p in out.glob("usage-*.csv"))
    assert rows == 40


# ---------------------------------------------------------------------------------------------- admin route
def test_admin_export_route_streams_the_ledger(serve, upstream: FakeUpstream, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_ADMIN_KEY", ADMIN)
    live, engine = serve(base_config(tmp_path, upstream))
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0)
    for q in ("first question?", "second question?", "first question?"):
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": q}])
    auth = {"authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=live.url, timeout=30) as h:
        assert h.get("/admin/usage/export?format=csv").status_code == 401
        r = h.get("/admin/usage/export?since=1h&format=parquet", headers=auth)
        assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.parquet"
        out = tmp_path / "route.parquet"
        out.write_bytes(r.content)
        n, cost = _ledger_totals(engine.ledger, 0, 1e12)
        got = duckdb.sql(f"SELECT COUNT(*), SUM(cost_usd), COUNT(routing) FROM read_parquet('{out}')").fetchall()[0]
        assert got[0] == n == 3 and got[1] == pytest.approx(cost) and cost > 0
        assert got[2] == 2  # the two misses were routed; the exact hit was not
        lines = h.get("/admin/usage/export?format=jsonl", headers=auth).content.splitlines()
        assert [msgspec.json.decode(x)["cache"] for x in lines] == ["miss", "miss", "exact"]
        for query, param in (("format=xml", "format"), ("since=soon", "since"), ("until=x", "until"),
                             ("tenant=a", "tenant"), ("since=2d&until=3d", "until")):
            bad = h.get(f"/admin/usage/export?{query}", headers=auth)
            assert bad.status_code == 400 and bad.json()["error"]["param"] == param, (query, bad.text)


def test_the_server_runs_the_configured_export(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    hour = time.time() // HOUR * HOUR
    _ledger(tmp_path / "data" / "ledger.sqlite3", [hour - 2 * HOUR + 5, hour - HOUR + 5, hour - HOUR + 9]).close()
    serve(base_config(tmp_path, upstream, export={"dir": "exports", "format": "jsonl", "delay_s": 0}))
    out = tmp_path / "data" / "exports"
    names = [file_name(hour - 2 * HOUR, "jsonl"), file_name(hour - HOUR, "jsonl")]
    deadline = time.monotonic() + 30
    while not all((out / n).exists() for n in names) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [len((out / n).read_bytes().splitlines()) for n in names] == [1, 2]
    for bad, words in (({"format": "xml"}, "format"), ({"dir": "x", "every": "day"}, "every"),
                       ({"dir": "x", "delay_s": -1}, "delay_s"), ({"dir": "x", "when": 1}, "when")):
        with pytest.raises(ConfigError, match=words):
            load(base_config(tmp_path, upstream, export=bad))


def test_a_ledger_file_from_before_the_routing_column(tmp_path: Path) -> None:
    """An older file has no ``routing`` column (nor version 2's): an export reads it as-is (those null), and opening it as
    a Ledger adds the column with every row kept."""
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE requests (request_id TEXT PRIMARY KEY, ts REAL NOT NULL, day TEXT NOT NULL, "
                 "month TEXT NOT NULL, tenant TEXT NOT NULL, virtual_key TEXT, worker TEXT, route TEXT, model TEXT, "
                 "provider TEXT, task TEXT, stream INTEGER NOT NULL DEFAULT 0, prompt_tokens INTEGER NOT NULL "
                 "DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0, cached_tokens INTEGER NOT NULL DEFAULT 0, "
                 "reasoning_tokens INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0, cost_estimated "
                 "INTEGER NOT NULL DEFAULT 0, saved_usd REAL NOT NULL DEFAULT 0, cache TEXT NOT NULL, status INTEGER "
                 "NOT NULL, error_class TEXT, latency_ms REAL NOT NULL DEFAULT 0, overhead_ms REAL NOT NULL DEFAULT 0, "
                 "stages TEXT, attempts INTEGER NOT NULL DEFAULT 0, budget_action TEXT, prompt TEXT, answer TEXT, "
                 "client_request_id TEXT)")
    conn.execute("INSERT INTO requests (request_id, ts, day, month, tenant, cache, status, cost_usd) "
                 "VALUES ('old1', ?, '2026-09-21', '2026-09', 'acme', 'miss', 200, 0.5)", (T0,))
    conn.commit()
    conn.close()
    recs = [msgspec.json.decode(line) for line in _write(path, "jsonl").read_bytes().splitlines()]
    assert [(r["request_id"], r["cost_usd"], r["routing"], r["arm"]) for r in recs] == [("old1", 0.5, None, None)]
    ledger = Ledger(path)
    ledger.record(UsageRecord(request_id="new1", ts=T0 + 1, tenant="acme", cache="miss", status=200,
                              routing=Routing(chosen="a/b", policy="cost", task="chat")))
    ledger.flush()
    rows = ledger.query("SELECT request_id, routing FROM requests ORDER BY ts")
    assert rows[0] == {"request_id": "old1", "routing": None}
    assert msgspec.json.decode(rows[1]["routing"]) == {"chosen": "a/b", "policy": "cost", "task": "chat"}
    ledger.close()
