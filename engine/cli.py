"""The ``thrifty`` command line. Every subcommand imports what it needs when it runs, not before."""

from __future__ import annotations

import argparse
import contextlib
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
    banner = f"serving on http://{host}:{port}/v1 (config: {settings.source}, data: {settings.data_dir})"
    config = uvicorn.Config("engine.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                            # httptools with header limits and read timeouts from `server:` (engine.http_limits)
                            loop="uvloop", http="engine.http_limits:GuardedHttpTools", log_level=args.log_level,
                            access_log=False,
                            # No X-Forwarded-* rewriting and no Server header: per-request work nothing reads.
                            proxy_headers=False, server_header=False)
    return _run_server(config, banner)


def _run_server(config: Any, banner: str) -> int:
    """Run uvicorn and say "serving on" only once requests are accepted: after the socket is bound and
    the engine warm (one worker), or from each worker once it is warm (the parent binds the socket)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if config.workers > 1:
        os.environ["THRIFTY_ANNOUNCE"] = banner  # read by each worker's lifespan (engine.server)
        sock = config.bind_socket()
        with contextlib.suppress(KeyboardInterrupt):
            Multiprocess(config, sockets=[sock]).run()
        return 0

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                print(f"thrifty: {banner}", file=sys.stderr, flush=True)

    server = AnnouncingServer(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        print("thrifty: error: the server did not start (see the message above)", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------------- models / route
def cmd_models(args: argparse.Namespace) -> int:
    from rich.console import Console

    from engine.wiring import build_catalog
    from models.render import catalog_table

    catalog = build_catalog(_settings(args))
    if args.provider is not None and args.provider not in catalog.providers:
        print(f"thrifty models: no model is routed to provider {args.provider!r}; providers: "
              f"{', '.join(catalog.providers)}", file=sys.stderr)
        return 2
    console = Console()
    console.print(catalog_table(catalog, capability=args.capability, provider=args.provider,
                                max_price=args.max_price, width=console.width))
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    import asyncio

    from rich.console import Console

    from engine.engine import Engine
    from router.explain import decision_table
    from router.types import ChatRequest, Message, ThriftyOptions

    engine = Engine(_settings(args))
    if args.model not in ("auto", "") and args.model not in engine.catalog:
        print(f"thrifty route: unknown model {args.model!r}; `thrifty models` lists the catalog", file=sys.stderr)
        return 2
    req = ChatRequest(messages=[Message(role="user", content=args.prompt)], model=args.model,
                      max_tokens=args.max_tokens)
    opts = ThriftyOptions(policy=args.policy, task=args.task, max_cost_usd=args.max_cost)
    vector = asyncio.run(engine.embed(args.prompt))
    decision = engine.rank(req, vector, tenant=args.tenant, options=opts, policy=args.policy)
    console = Console()
    console.print(decision_table(decision, width=console.width))
    return 0


# ---------------------------------------------------------------------------------------------- cache
def _open_cache(args: argparse.Namespace) -> Any:
    from engine.wiring import build_components

    return build_components(_settings(args)).open_cache()


def cmd_cache(args: argparse.Namespace) -> int:
    from cache import export_jsonl, import_jsonl

    if args.action == "purge" and not args.target and not _confirm_purge_all(args):
        return 2
    cache = _open_cache(args)
    try:
        if args.action == "stats":
            print(_cache_stats(args, cache))
        elif args.action == "purge":
            spaces = [_space_label(args, args.target)] if args.target else sorted(
                {e.namespace for _, e in cache.store.iter_entries()})
            for space in spaces:
                print(f"purged {cache.purge(space)} entries from namespace {space!r}")
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


def _space_label(args: argparse.Namespace, target: str) -> str:
    """``tenant/namespace`` as given (``/namespace``: a shared one); a bare tenant: its default namespace."""
    from cache import space

    if "/" in target:
        return target
    cfg = _settings(args).raw.tenants.get(target)
    return space(target, cfg.namespace if cfg is not None and cfg.namespace else "default")


def _confirm_purge_all(args: argparse.Namespace) -> bool:
    """``cache purge`` with no namespace empties every namespace: only after a yes, typed or ``--yes``."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print("thrifty cache purge: name a NAMESPACE to purge, or pass --yes to purge every namespace",
              file=sys.stderr)
        return False
    answer = input("Purge EVERY namespace of the cache? Type 'yes' to confirm: ")
    if answer.strip().lower() != "yes":
        print("nothing purged", file=sys.stderr)
        return False
    return True


def _cache_stats(args: argparse.Namespace, cache: Any) -> str:
    """What is stored (from the cache) and how it has served (from the ledger, which every worker
    writes; the cache's own hit counters live in the serving process and start at zero here)."""
    import msgspec

    from engine.ledger import Ledger

    stored = cache.stats()
    from engine.feedback import quality

    ledger = Ledger(_settings(args).data_dir / "ledger.sqlite3")
    try:
        s = ledger.summary()
        per_namespace = quality(ledger)  # hit rate, saved, false-hit estimate (shadow + feedback labels)
    finally:
        ledger.close()
    served = {row["key"]: row["requests"] for row in s["by_cache"]}
    lookups = sum(served.get(k, 0) for k in ("exact", "hit", "miss"))
    hits = served.get("exact", 0) + served.get("hit", 0)
    out = {
        "entries": stored.entries, "bytes": stored.bytes, "partitions": stored.partitions,
        "requests": {k: served.get(k, 0) for k in ("exact", "hit", "miss", "bypass")},
        "hit_rate": round(hits / lookups, 4) if lookups else 0.0,
        "saved_usd": round(float(sum(row["saved_usd"] for row in s["by_cache"])), 8),
        "namespaces": [{
            "tenant": q["tenant"], "namespace": q["namespace"], "requests": q["requests"],
            "hit_rate": round(q["hit_rate"], 4), "saved_usd": round(float(q["saved_usd"]), 8),
            "labelled": q["labelled"],
            "false_hit_rate": None if q["false_hit_rate"] is None else round(q["false_hit_rate"], 4),
            "false_hit_interval_95": None if q["false_hit_interval"] is None else
            [round(x, 4) for x in q["false_hit_interval"]],
        } for q in per_namespace],
    }
    return msgspec.json.format(msgspec.json.encode(out), indent=2).decode()


# ---------------------------------------------------------------------------------------------- usage
def cmd_usage(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console
    from rich.table import Table

    from engine.ledger import Ledger

    settings = _settings(args)
    if args.action == "export":
        return _usage_export(args, settings.data_dir / "ledger.sqlite3")
    ledger = Ledger(settings.data_dir / "ledger.sqlite3")
    since = time.time() - args.days * 86400 if args.days else None
    s = ledger.summary(since=since, tenant=args.tenant)
    console = Console()
    t = s["totals"]
    console.print(f"requests {t['requests']}  spend ${t['spend_usd']:.6f}  saved ${t['saved_usd']:.6f}  "
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


def _usage_export(args: argparse.Namespace, ledger_path: Any) -> int:
    """``thrifty usage export``: the ledger as a Parquet, CSV or JSONL file (engine/export.py), to a file
    written whole (temp file + rename) or to stdout."""
    from engine.errors import RequestError
    from engine.export import export, parse_time

    if not args.since:
        raise RequestError("usage export needs --since (an ISO date or datetime, a unix timestamp, or 7d / 24h)")
    since = parse_time(args.since, param="--since")
    until = parse_time(args.until, param="--until") if args.until else None
    out = args.out or f"usage.{args.format}"
    if out != "-" and not (Path(out).parent.is_dir()):
        raise RequestError(f"--out: no such directory: {Path(out).parent}")
    pieces = export(ledger_path, since=since, until=until, fmt=args.format)
    if out == "-":
        for piece in pieces:
            sys.stdout.buffer.write(piece)
        sys.stdout.buffer.flush()
        return 0
    tmp = Path(f"{out}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            for piece in pieces:
                f.write(piece)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {out}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------- experiments
def cmd_experiment(args: argparse.Namespace) -> int:
    """``thrifty experiment list`` / ``thrifty experiment report NAME [--png F] [--json] [--since S]``."""
    from engine import _experiment_report as report_mod
    from engine.errors import RequestError
    from engine.experiments import ExperimentSet
    from engine.export import parse_time
    from engine.ledger import Ledger

    settings = _settings(args)
    exps = ExperimentSet(settings.raw.experiments, settings.data_dir)
    if args.action == "list":
        for d in exps.list():
            shares = ", ".join(f"{k} {v:.0%}" for k, v in d["shares"].items())
            print(f"{d['name']}  ({d['source']})  {d['state'].get('status', 'running')}  {shares}")
        return 0
    if not args.name:
        raise RequestError("thrifty experiment report needs the experiment's NAME")
    cfg = exps.config(args.name)
    since = parse_time(args.since, param="--since") if args.since else None
    ledger = Ledger(settings.data_dir / "ledger.sqlite3")
    try:
        rep = report_mod.build(ledger, cfg.name, control=cfg.control, arms=[a.name for a in cfg.arms],
                               shares=exps.weights(cfg.name), alpha=cfg.alpha, since=since, state=exps.state(cfg.name))
        if args.json:
            import msgspec

            print(msgspec.json.format(msgspec.json.encode(report_mod.as_builtins(rep)), indent=2).decode())
        else:
            print(report_mod.render(rep), end="")
        if args.png:
            report_mod.plot(ledger, cfg.name, [a.name for a in cfg.arms], Path(args.png), since=since)
            print(f"wrote {args.png}", file=sys.stderr)
    finally:
        ledger.close()
    return 0


def cmd_whatif(args: argparse.Namespace) -> int:
    """``thrifty whatif --model X --since 7d [--tenant T] [--json]``: the ledger re-priced (engine/whatif.py)."""
    from engine.export import parse_time
    from engine.ledger import Ledger
    from engine.whatif import as_dict, render, whatif
    from engine.wiring import build_catalog

    settings = _settings(args)
    catalog = build_catalog(settings)
    since = parse_time(args.since, param="--since") if args.since else None
    ledger = Ledger(settings.data_dir / "ledger.sqlite3")
    try:
        result = whatif(ledger, catalog, args.model, since=since, tenant=args.tenant)
    finally:
        ledger.close()
    if args.json:
        import msgspec

        print(msgspec.json.format(msgspec.json.encode(as_dict(result)), indent=2).decode())
    else:
        print(render(result), end="")
    return 0


# ---------------------------------------------------------------------------------------------- bench
def cmd_bench(args: argparse.Namespace) -> int:
    import importlib

    module = importlib.import_module(f"bench.{args.suite_module}")
    rc = module.main(args.rest)
    return rc if isinstance(rc, int) else 0  # some suites return their results


def _parser() -> argparse.ArgumentParser:
    config_help = "YAML config file (default: $THRIFTY_CONFIG, else embedded defaults)"
    p = argparse.ArgumentParser(prog="thrifty", description="Semantic cache and cost-aware router for LLM calls")
    p.add_argument("--config", help=config_help)
    # ``--config`` is accepted after the subcommand too; SUPPRESS keeps a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the OpenAI-compatible proxy", parents=[common])
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int)
    s.add_argument("--log-level", default="warning")
    s.set_defaults(fn=cmd_serve)

    m = sub.add_parser("models", help="print the model catalog", parents=[common])
    m.add_argument("--capability", help="tools | vision | json_mode | reasoning | streaming")
    m.add_argument("--provider")
    m.add_argument("--max-price", type=float, metavar="USD",
                   help="max blended list price: the mean of input and output USD per 1M tokens (the 'blend' column)")
    m.set_defaults(fn=cmd_models)

    r = sub.add_parser("route", help="show the routing decision for a prompt", parents=[common])
    r.add_argument("prompt")
    r.add_argument("--model", default="auto")
    r.add_argument("--policy", choices=["quality", "balanced", "cost", "target"])
    r.add_argument("--task")
    r.add_argument("--tenant", default="default")
    r.add_argument("--max-tokens", type=int)
    r.add_argument("--max-cost", type=float)
    r.set_defaults(fn=cmd_route)

    c = sub.add_parser("cache", help="inspect or manage the cache", parents=[common])
    c.add_argument("action", choices=["stats", "purge", "export", "import"])
    c.add_argument("target", nargs="?", help="tenant/namespace or tenant (purge; none = every namespace, after a yes) or file "
                   "(export/import)")
    c.add_argument("--yes", action="store_true", help="purge: no question asked")
    c.set_defaults(fn=cmd_cache)

    u = sub.add_parser("usage", help="spend report from the ledger, or the ledger exported as a file",
                       parents=[common])
    u.add_argument("action", nargs="?", choices=["report", "export"], default="report")
    u.add_argument("--since", help="export: ISO date/datetime, unix timestamp, or a span back (7d, 24h)")
    u.add_argument("--until", help="export: end (exclusive), same forms as --since")
    u.add_argument("--format", choices=["parquet", "csv", "jsonl"], default="parquet", help="export: file format")
    u.add_argument("--out", help="export: output file, '-' for stdout (default usage.<format>)")
    u.add_argument("--days", type=float, default=30)
    u.add_argument("--tenant")
    u.add_argument("--by", nargs="*", default=["model", "tenant", "day"],
                   choices=["model", "provider", "tenant", "day", "cache"])
    u.set_defaults(fn=cmd_usage)

    x = sub.add_parser("experiment", help="experiments: list them, or one's report (and a PNG)", parents=[common])
    x.add_argument("action", choices=["list", "report"])
    x.add_argument("name", nargs="?")
    x.add_argument("--png", help="report: also write the metrics over time to this PNG file")
    x.add_argument("--json", action="store_true", help="report: JSON instead of tables")
    x.add_argument("--since", help="report: only requests since (ISO date/datetime, unix timestamp, 7d, 24h)")
    x.set_defaults(fn=cmd_experiment)

    w = sub.add_parser("whatif", help="what logged traffic would have cost on another model", parents=[common])
    w.add_argument("--model", required=True, help="a catalog model id or alias")
    w.add_argument("--since", default="7d", help="ISO date/datetime, unix timestamp, or a span back (7d, 24h)")
    w.add_argument("--tenant")
    w.add_argument("--json", action="store_true")
    w.set_defaults(fn=cmd_whatif)

    sub.add_parser("tune", help="sweep cache thresholds and guards on labelled data; recommend one under "
                   "--max-error (thrifty tune --help)", add_help=False)

    b = sub.add_parser("bench", help="benchmarks and evaluations")
    b.add_argument("suite", choices=sorted(BENCH_SUITES))
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(fn=cmd_bench)
    return p


def _tune_argv(argv: list[str]) -> list[str] | None:
    """``thrifty [--config F] tune ...`` -> tune's own arguments (the config passed on), else None."""
    head: list[str] = []
    if argv[:1] == ["--config"] and len(argv) > 2:
        head, argv = argv[:2], argv[2:]
    return [*head, *argv[1:]] if argv[:1] == ["tune"] else None


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
    tune_args = _tune_argv(list(sys.argv[1:] if argv is None else argv))
    if tune_args is not None:  # bench/tune.py parses its own options
        from bench.tune import main as tune_main

        return tune_main(tune_args)
    args = _parser().parse_args(argv)
    if args.command == "cache" and args.action in ("export", "import"):
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
        if _expected(exc):
            print(f"thrifty: error: {exc}", file=sys.stderr)
            return 1
        raise


def _expected(exc: BaseException) -> bool:
    """A user's mistake or the environment's (bad config, unknown model, missing file): a message, not a
    traceback. Anything else is a bug, and its traceback is what a report needs."""
    from cache.errors import CacheError
    from engine.errors import ThriftyError
    from models.errors import CatalogError
    from router.errors import RouterError

    return isinstance(exc, ThriftyError | RouterError | CatalogError | CacheError | OSError)


if __name__ == "__main__":
    sys.exit(main())
