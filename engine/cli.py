"""The ``thrifty`` command line. Every subcommand imports what it needs when it runs, not before."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _settings(args: argparse.Namespace) -> Any:
    from engine.config import load

    return load(args.config)


# ---------------------------------------------------------------------------------------------- serve
def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    if args.config:
        os.environ["THRIFTY_CONFIG"] = str(Path(args.config).resolve())
    settings = _settings(args)
    host = args.host or settings.raw.server.host
    port = args.port or settings.raw.server.port
    workers = args.workers or settings.raw.server.workers
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("thrifty").setLevel(logging.INFO)
    if workers > 1:
        mp = settings.data_dir / "metrics"
        mp.mkdir(parents=True, exist_ok=True)
        for f in mp.glob("*.db"):
            f.unlink()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(mp)
    for note in settings.notes:
        print(f"thrifty: {note}", file=sys.stderr)
    print(f"thrifty: serving on http://{host}:{port}/v1 (config: {settings.source}, data: {settings.data_dir})",
          file=sys.stderr)
    uvicorn.run("engine.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                loop="uvloop", http="httptools", log_level=args.log_level, access_log=False,
                # No X-Forwarded-* rewriting and no Server header: work per request that nothing here reads.
                proxy_headers=False, server_header=False)
    return 0


# ---------------------------------------------------------------------------------------------- models / route
def cmd_models(args: argparse.Namespace) -> int:
    from rich.console import Console

    from engine.wiring import build_catalog
    from models.render import catalog_table

    catalog = build_catalog(_settings(args))
    Console().print(catalog_table(catalog, capability=args.capability, provider=args.provider,
                                  max_price=args.max_price))
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    import asyncio

    from rich.console import Console

    from engine.engine import Engine
    from router.explain import decision_table
    from router.types import ChatRequest, Message, ThriftyOptions

    engine = Engine(_settings(args))
    req = ChatRequest(messages=[Message(role="user", content=args.prompt)], model=args.model,
                      max_tokens=args.max_tokens)
    opts = ThriftyOptions(policy=args.policy, task=args.task, max_cost_usd=args.max_cost)
    vector = asyncio.run(engine.embed(args.prompt))
    decision = engine.rank(req, vector, tenant=args.tenant, options=opts, policy=args.policy)
    Console().print(decision_table(decision))
    return 0


# ---------------------------------------------------------------------------------------------- cache
def _open_cache(args: argparse.Namespace) -> Any:
    from engine.wiring import build_components

    return build_components(_settings(args)).open_cache()


def cmd_cache(args: argparse.Namespace) -> int:
    import msgspec

    from cache import export_jsonl, import_jsonl

    cache = _open_cache(args)
    try:
        if args.action == "stats":
            print(msgspec.json.format(msgspec.json.encode(cache.stats()), indent=2).decode())
        elif args.action == "purge":
            print(f"purged {cache.purge(args.namespace)} entries from namespace {args.namespace!r}")
        elif args.action == "export":
            with open(args.file, "wb") as f:
                n = export_jsonl(cache, f)
            print(f"exported {n} entries to {args.file}")
        elif args.action == "import":
            with open(args.file, "rb") as f:
                n = import_jsonl(cache, f)
            print(f"imported {n} entries from {args.file}")
    finally:
        cache.close()
    return 0


# ---------------------------------------------------------------------------------------------- usage
def cmd_usage(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console
    from rich.table import Table

    from engine.ledger import Ledger

    settings = _settings(args)
    ledger = Ledger(settings.data_dir / "ledger.sqlite3")
    since = time.time() - args.days * 86400 if args.days else None
    s = ledger.summary(since=since, tenant=args.tenant)
    console = Console()
    t = s["totals"]
    console.print(f"requests {t['requests']}  spend ${t['spend_usd']:.4f}  saved ${t['saved_usd']:.4f}  "
                  f"hit rate {t['hit_rate']:.1%}  errors {t['errors'] or 0}")
    for dim in args.by:
        table = Table(title=f"spend by {dim}")
        for col in ("key", "requests", "spend (USD)", "saved (USD)"):
            table.add_column(col, justify="left" if col == "key" else "right")
        for row in s[f"by_{dim}"]:
            table.add_row(str(row["key"]), str(row["requests"]), f"{row['spend_usd']:.6f}", f"{row['saved_usd']:.6f}")
        console.print(table)
    ledger.close()
    return 0


# ---------------------------------------------------------------------------------------------- bench
def cmd_bench(args: argparse.Namespace) -> int:
    import importlib

    module = importlib.import_module(f"bench.{args.suite_module}")
    rc = module.main(args.rest)
    return rc if isinstance(rc, int) else 0  # some suites return their results


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="thrifty", description="Semantic cache and cost-aware router for LLM calls")
    p.add_argument("--config", help="YAML config file (default: $THRIFTY_CONFIG, else embedded defaults)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the OpenAI-compatible proxy")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int)
    s.add_argument("--log-level", default="warning")
    s.set_defaults(fn=cmd_serve)

    m = sub.add_parser("models", help="print the model catalog")
    m.add_argument("--capability", help="tools | vision | json_mode | reasoning | streaming")
    m.add_argument("--provider")
    m.add_argument("--max-price", type=float, help="max input price, USD per 1M tokens")
    m.set_defaults(fn=cmd_models)

    r = sub.add_parser("route", help="show the routing decision for a prompt")
    r.add_argument("prompt")
    r.add_argument("--model", default="auto")
    r.add_argument("--policy", choices=["quality", "balanced", "cost", "target"])
    r.add_argument("--task")
    r.add_argument("--tenant", default="default")
    r.add_argument("--max-tokens", type=int)
    r.add_argument("--max-cost", type=float)
    r.set_defaults(fn=cmd_route)

    c = sub.add_parser("cache", help="inspect or manage the cache")
    c.add_argument("action", choices=["stats", "purge", "export", "import"])
    c.add_argument("target", nargs="?", help="namespace (purge) or file (export/import)")
    c.set_defaults(fn=cmd_cache)

    u = sub.add_parser("usage", help="spend report from the ledger")
    u.add_argument("--days", type=float, default=30)
    u.add_argument("--tenant")
    u.add_argument("--by", nargs="*", default=["model", "tenant", "day"],
                   choices=["model", "provider", "tenant", "day", "cache"])
    u.set_defaults(fn=cmd_usage)

    b = sub.add_parser("bench", help="benchmarks and evaluations")
    b.add_argument("suite", choices=sorted(BENCH_SUITES))
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(fn=cmd_bench)
    return p


BENCH_SUITES: dict[str, str] = {
    "cache": "cache_quality",
    "router": "router_eval",
    "proxy": "proxy_bench",
    "overhead": "overhead",
    "scale": "scale",
    "compare": "compare",
    "loadgen": "loadgen",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "cache":
        if args.action == "purge":
            args.namespace = args.target or "default"
        elif args.action in ("export", "import"):
            if not args.target:
                print(f"thrifty cache {args.action}: a FILE is required", file=sys.stderr)
                return 2
            args.file = args.target
    if args.command == "bench":
        args.suite_module = BENCH_SUITES[args.suite]
    fn: Callable[[argparse.Namespace], int] = args.fn
    try:
        return fn(args)
    except Exception as exc:
        from engine.errors import ThriftyError

        if isinstance(exc, ThriftyError) or type(exc).__name__.endswith("Error"):
            print(f"thrifty: error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
