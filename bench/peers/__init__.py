"""The peers thrifty is compared with, each installed from PyPI into its own virtual environment.

A peer is data: a pinned requirements file, packages installed first (torch, pinned, so nothing pulls an
unpinned one), and the command that runs it. ``ensure(name, root)`` creates ``root/<name>/`` with
``python -m venv`` and ``pip install -r``, once: a stamp file holding the requirements' hash makes the
next call free, and a changed pin reinstalls.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_ROOT = Path("results") / "tmp" / "peers"  # ignored by git; venvs are large (LiteLLM ~0.7 GB)


class PeerSetupError(Exception):
    """A peer's virtual environment could not be created or its packages installed."""


@dataclass(frozen=True)
class PeerSpec:
    name: str
    requirements: Path
    first: tuple[str, ...] = ()  # installed alone, before the requirements


PEERS: dict[str, PeerSpec] = {
    "litellm": PeerSpec("litellm", HERE / "requirements-litellm.txt"),
    "gptcache": PeerSpec("gptcache", HERE / "requirements-gptcache.txt", first=("torch==2.13.0",)),
}


def _digest(spec: PeerSpec) -> str:
    h = hashlib.sha256(spec.requirements.read_bytes())
    h.update("\0".join(spec.first).encode())
    return h.hexdigest()[:16]


def venv_python(name: str, root: Path = DEFAULT_ROOT) -> Path:
    return Path(root) / name / "bin" / "python"


def _pip(python: Path, args: list[str], log: Path) -> None:
    cmd = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    if rc != 0:
        raise PeerSetupError(f"`{' '.join(cmd)}` failed with exit code {rc}; see {log}")


def ensure(name: str, root: Path = DEFAULT_ROOT, *, python: str = sys.executable) -> Path:
    """The peer's venv python, creating and installing it when missing or when its pins changed."""
    try:
        spec = PEERS[name]
    except KeyError:
        raise PeerSetupError(f"unknown peer {name!r}; known: {', '.join(sorted(PEERS))}") from None
    venv = Path(root) / name
    py = venv_python(name, root)
    stamp = venv / ".thrifty-installed"
    digest = _digest(spec)
    if py.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return py
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / f"{name}-install.log"
    if not py.exists():
        rc = subprocess.call([python, "-m", "venv", str(venv)])
        if rc != 0:
            raise PeerSetupError(f"`{python} -m venv {venv}` failed with exit code {rc}")
    if spec.first:
        _pip(py, list(spec.first), log)
    _pip(py, ["-r", str(spec.requirements)], log)
    stamp.write_text(digest + "\n")
    return py


def installed_version(python: Path, package: str) -> str | None:
    out = subprocess.run([str(python), "-c", f"from importlib import metadata; print(metadata.version({package!r}))"],
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or None if out.returncode == 0 else None


def litellm_config(upstream_base_url: str, models: list[str]) -> dict[str, Any]:
    """A LiteLLM proxy config serving ``models`` from the same OpenAI-compatible fake upstream."""
    return {
        "model_list": [
            {"model_name": m, "litellm_params": {"model": f"openai/{m}", "api_base": upstream_base_url,
                                                  "api_key": "sk-fake"}}
            for m in models
        ],
        "litellm_settings": {"drop_params": True},
        # No master key, like thrifty's bench config with no virtual keys: neither side authenticates.
        "general_settings": {"dangerously_permit_weak_or_unset_master_key": True},
    }


# Environment for the LiteLLM proxy: no network fetch of its price map at start (none is reachable).
LITELLM_ENV: dict[str, str] = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
                               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def litellm_command(python: Path, config: Path, port: int) -> list[str]:
    return [str(python.parent / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", "1"]


def gptcache_command(python: Path, job: Path, out: Path) -> list[str]:
    return [str(python), str(HERE / "gptcache_runner.py"), str(job), str(out)]
