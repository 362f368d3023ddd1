"""The scheduled export: one file per UTC hour, ``usage-YYYYMMDDTHH.<format>``, in a directory that a
warehouse picks up from.

An hour is written once it is over plus ``delay_s`` (rows land in the ledger within a flush interval of
their request ending; the delay covers that). Each file is written to a temporary name in the same
directory, fsynced, then renamed into place: a reader sees a whole file or none. Every check writes each
missing hour of the last ``catch_up_hours`` (from the ledger's first row on), so hours missed while the
server was down are written after a restart. Several workers may share a data_dir: the one holding the
directory's ``.export.lock`` (flock) writes, the others skip that check; a file that exists is never
rewritten.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, RequestError
from engine.export import check_format, export

log = logging.getLogger("thrifty.export")
HOUR = 3600


def file_name(hour_start: float, fmt: str) -> str:
    return "usage-" + time.strftime("%Y%m%dT%H", time.gmtime(hour_start)) + f".{fmt}"


class HourlyExport:
    def __init__(self, ledger_path: Path, directory: Path, fmt: str, *, delay_s: float = 60.0,
                 catch_up_hours: int = 168, check_s: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.ledger_path = ledger_path
        self.dir = directory
        self.fmt = fmt
        self.delay_s = delay_s
        self.catch_up_hours = catch_up_hours
        self.check_s = check_s
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ one check
    def due_hours(self, now: float) -> list[float]:
        """The starts of the hours that are over (plus the delay), within the catch-up window and not
        before the ledger's first row, whose file does not exist yet."""
        last = (now - self.delay_s) // HOUR * HOUR - HOUR  # the latest hour that is over
        first = max(last - (self.catch_up_hours - 1) * HOUR, self._first_row_hour())
        hours, h = [], first
        while h <= last:
            if not (self.dir / file_name(h, self.fmt)).exists():
                hours.append(h)
            h += HOUR
        return hours

    def _first_row_hour(self) -> float:
        if not self.ledger_path.exists():
            return float("inf")
        conn = sqlite3.connect(f"{self.ledger_path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
        try:
            row = conn.execute("SELECT MIN(ts) FROM requests").fetchone()
        except sqlite3.OperationalError:  # no table yet
            return float("inf")
        finally:
            conn.close()
        return float("inf") if row[0] is None else row[0] // HOUR * HOUR

    def run_once(self, now: float | None = None) -> list[str]:
        """Write every due hour, if this process holds the lock; the names of the files written."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / ".export.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return []  # another worker is writing; its files will be there at the next check
            written = []
            for hour in self.due_hours(self.clock() if now is None else now):
                written.append(self._write(hour))
            return written
        finally:
            os.close(fd)  # releases the lock

    def _write(self, hour: float) -> str:
        name = file_name(hour, self.fmt)
        tmp = self.dir / f".{name}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as f:
                for piece in export(self.ledger_path, since=hour, until=hour + HOUR, fmt=self.fmt):
                    f.write(piece)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.dir / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return name

    # ------------------------------------------------------------------------------------------ thread
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="thrifty-export", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self) -> None:
        while True:
            try:
                for name in self.run_once():
                    log.info("usage export: wrote %s", name)
            except Exception as exc:  # a full disk or a bad directory must not end the loop
                log.error("usage export to %s failed: %s", self.dir, exc)
            if self._stop.wait(self.check_s):
                return


def scheduled_export(settings: Any) -> HourlyExport | None:
    """The configured hourly export (``export: {dir:, format:}``), or None when it is off."""
    cfg = settings.raw.export
    if cfg.dir is None:
        return None
    try:
        check_format(cfg.format)
    except RequestError as exc:
        raise ConfigError(f"export.format: {exc.message}") from None
    directory = Path(cfg.dir).expanduser()
    if not directory.is_absolute():
        directory = settings.data_dir / directory
    return HourlyExport(settings.data_dir / "ledger.sqlite3", directory, cfg.format, delay_s=cfg.delay_s,
                        catch_up_hours=cfg.catch_up_hours)
