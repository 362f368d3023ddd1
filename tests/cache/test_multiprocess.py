"""Real subprocesses: sharing one cache directory, and a writer killed with SIGKILL mid-insert."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from cache_helpers import CosinePolicy, request

from cache import CacheConfig, HashingEncoder, SemanticCache, scope

ROOT = Path(__file__).resolve().parents[2]
ENC = HashingEncoder(64)

WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from cache_helpers import CosinePolicy, request
    from cache import CacheConfig, EntryMeta, HashingEncoder, SemanticCache, scope
    enc = HashingEncoder(64)
    c = SemanticCache.open({path!r}, "hashing-64", 64, CacheConfig(durable={durable}), policy=CosinePolicy())
    print("ready", flush=True)
    i = 0
    while i < {count}:
        s = scope(request(f"shared question {{i}}"))
        c.insert(s, enc.encode([s.text])[0], (f"answer {{i}} " * 200).encode(), EntryMeta(model="m"))
        i += 1
        if {announce}:
            print(i, flush=True)
    print("done", flush=True)
    time.sleep({linger})
    """
)


def spawn(path: Path, count: int, announce: bool = False, durable: bool = False, linger: float = 0) -> subprocess.Popen[str]:
    code = WRITER.format(tests=str(Path(__file__).parent), path=str(path), count=count, announce=announce,
                         durable=durable, linger=linger)
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def open_here(path: Path) -> SemanticCache:
    return SemanticCache.open(path, "hashing-64", 64, CacheConfig(durable=False, refresh_interval_s=0.1),
                              policy=CosinePolicy())


def test_another_process_sees_writes_within_one_second(tmp_path: Path) -> None:
    path = tmp_path / "shared"
    here = open_here(path)  # opened first: its index must catch up through the change log
    proc = spawn(path, 5, announce=True, linger=5)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    for i in range(5):
        assert proc.stdout.readline().strip() == str(i + 1)
        committed = time.monotonic()
        s = scope(request(f"shared question {i} ?"))  # not exact: must come through the vector index
        want = f"answer {i} ".encode()
        hit = None
        while time.monotonic() - committed < 1.0:
            # Poll until this entry shows up (an older, similar one may answer before it does).
            hit = here.lookup(s, ENC.encode([s.text])[0], threshold=0.8)
            if hit is not None and hit.response.startswith(want):
                break
            time.sleep(0.01)
        assert hit is not None and hit.response.startswith(want), f"entry {i} not visible within 1 s"
    proc.kill()
    proc.wait()
    here.close()


def test_sigkill_mid_insert_leaves_a_consistent_cache(tmp_path: Path) -> None:
    path = tmp_path / "crash"
    proc = spawn(path, 10**9, announce=True, durable=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    last = 0
    while last < 40:
        last = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)  # in the middle of the insert loop
    proc.wait()
    for line in proc.stdout.read().split():  # commits announced before the kill landed
        last = int(line)
    assert proc.returncode == -signal.SIGKILL
    c = open_here(path)
    entries = c.stats().entries
    assert entries >= last and entries <= last + 1, "lost a committed entry or kept more than the in-flight one"
    for entry_id, entry in c.store.iter_entries():
        i = int(entry.text.rsplit(" ", 1)[1])
        assert entry.response == (f"answer {i} " * 200).encode(), "partial entry"
        exact = c.lookup_exact(scope(request(entry.text)))
        assert exact is not None and exact.id == entry_id
    assert len(c._index) == entries
    s = scope(request("shared question 7"))
    assert c.lookup(s, ENC.encode([s.text])[0]) is not None
    c.insert(s, np.ones(64, np.float32) / 8.0, b"after the crash")  # still writable
    c.close()
