"""bench/cache_quality.py runs on any files of the documented formats (a hashing encoder keeps it fast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench import cache_quality as cq


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_writes_numbers_and_plot(tmp_path: Path) -> None:
    pairs = _write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"a": "How do I reverse a list in Python?", "b": "how to reverse a python list", "label": 1},
            {"a": "Convert 5 km to miles", "b": "Convert 50 km to miles", "label": 0},
            {"a": "What is the capital of Austria?", "b": "What is the capital of Australia?", "label": 0},
            {"a": "Explain recursion simply", "b": "Explain recursion in simple terms", "label": 1},
        ],
    )
    positives = _write_jsonl(
        tmp_path / "paraphrases.jsonl",
        [{"a": "Who wrote Hamlet?", "b": "Which author wrote Hamlet?", "domain": "factual", "label": 1}],
    )
    negatives = _write_jsonl(
        tmp_path / "near.jsonl",
        [
            {
                "a": "How do I enable dark mode?",
                "b": "How do I disable dark mode?",
                "kind": "negation",
                "label": 0,
            }
        ],
    )
    clusters = tmp_path / "clusters.json"
    clusters.write_text(
        json.dumps(
            [["How do I install numpy?", "how to install numpy"], ["What is Milvus?", "Explain Milvus"]]
        )
    )
    out = tmp_path / "out"
    argv = ["--pairs", str(pairs), "--pairs", str(positives), "--negatives", str(negatives)]
    argv += ["--clusters", str(clusters), "--out", str(out), "--cache-dir", str(tmp_path / "emb")]
    assert cq.main([*argv, "--encoder", "hashing"]) == 0
    results = json.loads((out / "quality.json").read_text())
    assert (out / "quality.png").stat().st_size > 1000
    assert set(results["pair_sets"]) == {"paraphrases+near", "pairs", "pairs:heldout"}
    pooled = results["pair_sets"]["paraphrases+near"]
    assert pooled["pairs"] == 2 and pooled["positives"] == 1
    for res in results["pair_sets"].values():
        for key in ("cosine", "policy"):
            curve = res[key]["curve"]
            # the cosine sweeps cosine thresholds, the (learned) default probability thresholds
            grid = cq.THRESHOLDS if key == "cosine" else cq.PROB_THRESHOLDS
            assert len(curve["precision"]) == len(grid) == len(curve["threshold"])
            assert all(0.0 <= v <= 1.0 for v in curve["recall"] + curve["false_hit_rate"])
    # the guards refuse both near-misses of the pair file whatever their similarity
    assert results["pair_sets"]["pairs"]["policy"]["curve"]["false_hit_rate"][0] == 0.0
    assert results["replay"]["policy_verified"]["seed0"]["lookups"] == 4
    assert results["replay"]["policy_cosine"]["seed0"]["lookups"] == 4
    # the default judged is the learned one; every preset is reported
    assert results["config"]["learned"] and set(results["presets"]) == set(cq.PRESETS)
    # a rerun reads the embeddings back instead of encoding again
    shards = list((tmp_path / "emb").rglob("*.npz"))
    assert len(shards) == 1
    assert cq.main([*argv, "--encoder", "hashing", "--no-clusters"]) == 0
    assert list((tmp_path / "emb").rglob("*.npz")) == shards


def test_whole_files_and_each_negatives_file_are_sets_of_their_own(tmp_path: Path) -> None:
    para = [{"a": "Who wrote Hamlet?", "b": "Which author wrote Hamlet?", "label": 1}]
    near = [{"a": "Who wrote Hamlet?", "b": "Who wrote Macbeth?", "label": 0}]
    mixed = para + near
    sets = cq.load_pairs(
        [_write_jsonl(tmp_path / "para.jsonl", para)],
        [_write_jsonl(tmp_path / "old.jsonl", near), _write_jsonl(tmp_path / "fresh.jsonl", near + near)],
        [_write_jsonl(tmp_path / "held.jsonl", mixed)],
    )
    sizes = {s.name: (len(s.a), sum(s.label)) for s in sets}
    assert sizes == {"paraphrases+old": (2, 1), "paraphrases+fresh": (3, 1), "held": (2, 1)}


def test_presets_differing_in_threshold_share_their_scores() -> None:
    scored = cq._scored_presets()
    assert scored["cosine"]._memo is scored["balanced"]._memo is scored["strict"]._memo
    assert scored["precise"]._memo is scored["verified"]._memo  # the same but for the threshold
    assert scored["verified"]._memo is not scored["cosine"]._memo
    assert scored["reach"]._memo is not scored["verified"]._memo  # another first bar
    assert scored["learned"]._memo is not scored["verified"]._memo  # another top_k


def test_missing_input_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert cq.main(["--pairs", str(tmp_path / "nope.jsonl"), "--no-clusters", "--out", str(tmp_path)]) == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_replay_counts_hits_inside_clusters_only() -> None:
    vecs = {
        "a1": np.array([1.0, 0.0], np.float32),
        "a2": np.array([1.0, 0.0], np.float32),
        "b1": np.array([0.0, 1.0], np.float32),
        "b2": np.array([0.8, 0.6], np.float32),
    }
    res = cq.replay([["a1", "a2"], ["b1", "b2"]], vecs, lambda q, c, s: s >= 0.5, 1, None)
    # a2 hits a1 (right, a2 is not inserted); b2 is nearer a1 (0.8) than b1 (0.6): a wrong hit
    assert res["hits"] == 2 and res["hit_precision"] == 0.5 and res["lookups"] == 4


def test_scored_decomposition_matches_verify() -> None:
    """The evaluation scores each pair once at threshold -1 and derives every threshold from it."""
    from cache.policy import PRESETS, HitPolicy

    pairs = [
        ("How do I reverse a list in Python?", "how to reverse a python list", 0.91),
        ("How do I reverse a list in Python?", "how to reverse a python list", 0.62),
        ("Convert 5 km to miles", "Convert 50 km to miles", 0.97),
        ("What is the capital of France?", "Which city is the capital of France?", 0.93),
        ("How do I install Docker?", "How do I uninstall Docker?", 0.93),
        ("Same", "same", 0.1),
        ("How is Milvus used?", "How is Milvus utilised?", 0.55),
    ]
    for name in ("verified", "reach", "balanced", "recall", "learned"):
        sc = cq.Scored(HitPolicy(PRESETS[name]))
        vs = sc.verdicts([a for a, _, _ in pairs], [b for _, b, _ in pairs], np.array([c for *_, c in pairs]))
        for (a, b, c), v in zip(pairs, vs, strict=True):
            for t in (0.3, 0.5, 0.6, 0.78, 0.9, 0.95):
                assert sc.accepts(v, c, t) == sc.policy.verify(a, b, c, threshold=t).accept, (
                    name,
                    a,
                    b,
                    c,
                    t,
                )
