"""A quick dev check of a verifier candidate (an exported model dir) before the full `bench cache` run.

    python -m bench.verifier_check MODEL_DIR [--negatives tests/data/near_misses.jsonl]
    python -m bench.verifier_check MODEL_DIR --batch-effect   # why pairs run alone (cache/_verify_model.py)

Pools the shared LLM paraphrases (positives) with a near-miss file (by default the project's own set,
never the fresh one: that set is for the final figure only), runs the guards and the model's *raw*
logit (no calibration, so that candidates trained on other data compare on the same footing), and
prints the median probability of the paraphrases and, for several first cosine bars, the recall at a
false-hit rate <= 1 % and at p >= 0.5.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("THRIFTY_DATA", "../shared/data")) / "cache"


def check(model_dir: Path, negatives: Path, bars: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8)) -> dict:
    from bench._embed_cache import EmbeddingCache
    from cache.policy import HitPolicy, PolicyConfig

    rows = [json.loads(x) for x in (DATA / "llm_paraphrases.jsonl").read_text().splitlines() if x.strip()]
    rows += [json.loads(x) for x in negatives.read_text().splitlines() if x.strip()]
    vecs = EmbeddingCache().embed(sorted({t for r in rows for t in (r["a"], r["b"])}))
    cos = np.array([float(vecs[r["a"]] @ vecs[r["b"]]) for r in rows])
    labels = np.array([int(r["label"]) for r in rows])
    with tempfile.TemporaryDirectory() as tmp:  # the model with an identity calibration: p = sigmoid(logit)
        folder = Path(tmp)
        for name in ("verifier.onnx", "tokenizer.json"):
            (folder / name).symlink_to((model_dir / name).resolve())
        (folder / "learned.json").write_text(json.dumps({"bias": 0.0, "w_logit": 1.0, "w_cosine": 0.0}))
        policy = HitPolicy(PolicyConfig(learned=True, first_bar=0.0, verifier_dir=str(folder)))
        verdicts = policy.verify_pairs([(r["a"], r["b"], c) for r, c in zip(rows, cos, strict=True)], threshold=0.5)
    model_said = np.array([v.reason == "ok" or v.reason.startswith("verifier") for v in verdicts])
    prob = np.where(model_said, [v.score for v in verdicts], -1.0)
    pos = labels == 1
    out: dict = {"model": str(model_dir), "negatives": str(negatives), "paraphrase_median_p": float(np.median(prob[pos]))}
    for bar in bars:
        score = np.where(cos >= bar, prob, -1.0)
        negs = np.sort(score[~pos])[::-1]
        allowed = int(0.01 * len(negs))  # wrong hits a 1 % false-hit rate allows
        cut = max(float(negs[allowed]), 0.0)
        out[f"bar_{bar}"] = {
            "recall_at_fhr_1pct": float((score[pos] > cut).mean()),
            "recall_at_p_0.5": float((score[pos] >= 0.5).mean()),
            "fhr_at_p_0.5": float((score[~pos] >= 0.5).mean()),
        }
    return out


def batch_effect(model_dir: Path, n: int = 1500, threshold: float = 0.93) -> dict:
    """How much a pair's calibrated probability moves when the int8 model scores it in a padded batch of
    4 or 64 rather than alone, on `n` QQP held-out pairs (what made LearnedVerifier run pairs alone)."""
    import random

    from bench._embed_cache import EmbeddingCache
    from bench.cache_quality import heldout
    from cache._verify_model import LearnedVerifier

    rows = [json.loads(x) for x in (DATA / "qqp_pairs.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if heldout(r["a"], r["b"])]
    rows = random.Random(0).sample(rows, min(n, len(rows)))
    vecs = EmbeddingCache().embed(sorted({t for r in rows for t in (r["a"], r["b"])}))
    cos = [float(vecs[r["a"]] @ vecs[r["b"]]) for r in rows]
    model = LearnedVerifier(model_dir)
    alone = model.logits([(r["a"], r["b"]) for r in rows])
    session, tok = model._session, model._tokenizer

    def batched(size: int) -> np.ndarray:
        out: list[float] = []
        for start in range(0, len(rows), size):
            encs = tok.encode_batch([(r["a"], r["b"]) for r in rows[start : start + size]])
            width = max(len(e.ids) for e in encs)
            feed = {
                name: np.array([getattr(e, attr) + [0] * (width - len(e.ids)) for e in encs], dtype=np.int64)
                for name, attr in (("input_ids", "ids"), ("attention_mask", "attention_mask"), ("token_type_ids", "type_ids"))
            }
            out += np.asarray(session.run(None, feed)[0], dtype=np.float32).reshape(-1).tolist()
        return np.array(out)

    def prob(logits: np.ndarray) -> np.ndarray:
        return np.array(model.calibrated(logits, cos))

    p1 = prob(alone)
    report: dict = {"pairs": len(rows), "threshold": threshold, "accepted_alone": int((p1 >= threshold).sum())}
    for size in (4, 64):
        pb = prob(batched(size))
        report[f"batch_{size}"] = {
            "max_probability_shift": float(np.abs(pb - p1).max()),
            "verdicts_flipped": int(((pb >= threshold) != (p1 >= threshold)).sum()),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path, help="a folder with verifier.onnx and tokenizer.json")
    p.add_argument("--negatives", type=Path, default=Path("tests/data/near_misses.jsonl"))
    p.add_argument("--batch-effect", action="store_true", help="scores alone against padded batches of 4 and 64")
    args = p.parse_args(argv)
    report = batch_effect(args.model) if args.batch_effect else check(args.model, args.negatives)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
