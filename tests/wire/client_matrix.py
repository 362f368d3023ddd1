"""The client matrix's bookkeeping: one cell per (client call, path), passed or failed with the reason."""

from __future__ import annotations

PATHS = ("miss", "exact hit", "semantic hit", "simulated", "via Anthropic")


class Matrix:
    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], str] = {}  # (client call, path) -> "pass" | "FAIL: ..."

    def record(self, call: str, path: str, outcome: str) -> None:
        self.cells[call, path] = outcome

    def table(self) -> str:
        calls = list(dict.fromkeys(call for call, _ in self.cells))
        width = max(len(c) for c in calls) + 2
        lines = [f"{'client call':<{width}}" + "".join(f"{p:<14}" for p in PATHS),
                 "-" * (width + 14 * len(PATHS))]
        for call in calls:
            cells = [self.cells.get((call, p), "-") for p in PATHS]
            lines.append(f"{call:<{width}}" + "".join(f"{('pass' if c == 'pass' else c[:12]):<14}" for c in cells))
        failures = [f"  {call} / {path}: {outcome}" for (call, path), outcome in self.cells.items() if outcome != "pass"]
        return "\n".join(lines + (["failures:", *failures] if failures else []))


MATRIX = Matrix()
