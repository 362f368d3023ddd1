"""Results writing for every ``thrifty bench`` suite: a rich table on the terminal, and JSON + Markdown +
PNG plots in a results folder, each stamped with the machine's description and package versions.

    report = Report("proxy", out_dir)            # default results/proxy/
    report.table("sequential", ["target", "p50 ms"], rows)
    report.plot("sweep", draw)                   # draw(ax) -> None, matplotlib Axes
    report.data["sweep"] = {...}
    report.write()                               # proxy.json, proxy.md, sweep.png
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES: tuple[str, ...] = (
    "thrifty", "numpy", "msgspec", "faiss-cpu", "lmdb", "torch", "sentence-transformers", "onnxruntime",
    "httpx", "aiohttp", "starlette", "uvicorn", "uvloop", "httptools", "pytest-benchmark",
)

Cell = str | int | float | None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def versions(packages: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    ram = _ram_bytes()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(ram / 2**30, 1) if ram else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "packages": versions(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def cmdline(suite: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces a run, however it was started (``thrifty bench`` or ``python -m``)."""
    return " ".join(["thrifty", "bench", suite, *(argv or [])])


def fmt(value: Cell, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str | None = None

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("| " + " | ".join("---" if i == 0 else "---:" for i in range(len(self.columns))) + " |")
        lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def rich(self) -> Any:
        from rich.table import Table as RichTable

        t = RichTable(title=self.title, caption=self.note)
        for i, col in enumerate(self.columns):
            t.add_column(col, justify="left" if i == 0 else "right")
        for row in self.rows:
            t.add_row(*(fmt(c) for c in row))
        return t


@dataclass
class Report:
    """One suite's results: tables, plots and raw data, written together."""

    suite: str
    out_dir: Path | None = None
    command: str = ""  # how to reproduce the run; see cmdline()
    data: dict[str, Any] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: dict[str, Callable[[Any], None]] = field(default_factory=dict)
    quiet: bool = False

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir or Path("results") / self.suite)
        self.command = self.command or f"thrifty bench {self.suite}"
        self.machine = machine()

    def table(self, title: str, columns: list[str], rows: Sequence[Sequence[Any]], note: str | None = None) -> Table:
        t = Table(title, columns, [list(r) for r in rows], note)
        self.tables.append(t)
        if not self.quiet:
            from rich.console import Console

            Console().print(t.rich())
        return t

    def plot(self, name: str, draw: Callable[[Any], None]) -> None:
        self.plots[name] = draw

    def note(self, text: str) -> None:
        self.notes.append(text)

    def write(self) -> Path:
        assert self.out_dir is not None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        pngs = [self._draw(name, draw) for name, draw in self.plots.items()]
        doc = {"suite": self.suite, "command": self.command, "machine": self.machine,
               "notes": self.notes, "results": self.data,
               "tables": [{"title": t.title, "columns": t.columns, "rows": t.rows} for t in self.tables]}
        json_path = self.out_dir / f"{self.suite}.json"
        # NaN (no sample) becomes null: strict JSON that any reader accepts.
        text = json.dumps(_clean(json.loads(json.dumps(doc, default=_jsonable))), indent=2, allow_nan=False)
        json_path.write_text(text + "\n")
        (self.out_dir / f"{self.suite}.md").write_text(self._markdown(pngs))
        if not self.quiet:
            print(f"results written to {self.out_dir}/ ({json_path.name}, {self.suite}.md"
                  + "".join(f", {p}" for p in pngs) + ")")
        return self.out_dir

    def _markdown(self, pngs: list[str]) -> str:
        m = self.machine
        pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
        lines = [f"# thrifty bench {self.suite}", "",
                 f"Command: `{self.command}`", "",
                 f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}, "
                 f"Python {m['python']}; measured {m['time_utc']}.", "", f"Packages: {pk}.", ""]
        lines += [f"- {n}" for n in self.notes]
        if self.notes:
            lines.append("")
        lines += [t.markdown() for t in self.tables]
        lines += [f"![{p}]({p})\n" for p in pngs]
        return "\n".join(lines)

    def _draw(self, name: str, draw: Callable[[Any], None]) -> str:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        assert self.out_dir is not None
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        try:
            draw(ax)
            ax.grid(True, alpha=0.3)
            fig.tight_layout()
            fig.savefig(self.out_dir / f"{name}.png")
        finally:
            plt.close(fig)
        return f"{name}.png"


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextmanager
def progress(description: str, total: int, *, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A rich progress bar; yields ``advance(n)``. Disabled, it yields a no-op (tests, CI logs)."""
    if not enabled or not sys.stderr.isatty():
        def nothing(n: int = 1) -> None:
            return None

        yield nothing
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance
