"""Fit the default task classifier shipped in router/data and report its held-out accuracy.

    python -m bench.router_classifier [--seeds router/data/task_seeds.jsonl] [--write]

The seeds are templated prompts, so held-out accuracy on them is optimistic; the script also reports
an out-of-distribution check on real prompts whose task is known (MBPP → code, GSM8K → math) when
../shared/data/routing is present.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
from pathlib import Path

import numpy as np

from bench.router_data import embed, load_files, query_text
from router.classify import DEFAULT_WEIGHTS, TaskClassifier

ROUTING = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routing"


def _split(texts: list[str], share: float = 0.2) -> np.ndarray:
    h = np.array([hashlib.sha256(("cls" + t).encode()).digest()[0] / 256 for t in texts])
    return h < share


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", default=str(Path(__file__).resolve().parents[1] / "router" / "data" / "task_seeds.jsonl"))
    ap.add_argument("--write", action="store_true", help="write router/data/task_classifier.npz (fitted on all seeds)")
    args = ap.parse_args(argv)
    rows = [json.loads(line) for line in Path(args.seeds).read_text().splitlines() if line.strip()]
    texts = [r["text"] for r in rows]
    labels = np.array([r["task"] for r in rows])
    x = embed(texts)
    test = _split(texts)
    clf = TaskClassifier.fit(x[~test], list(labels[~test]))
    pred = np.array([clf.labels[i] for i in clf.proba(x[test]).argmax(1)])
    acc = float((pred == labels[test]).mean())
    per = {t: round(float((pred[labels[test] == t] == t).mean()), 3) for t in sorted(set(labels[test]))}
    report: dict = {"seeds": len(rows), "train": int((~test).sum()), "test": int(test.sum()), "held_out_accuracy": round(acc, 4),
                    "per_task_recall": per}
    for name, task in (("routerbench_mbpp", "code"), ("routellm_gsm8k", "math")):
        path = ROUTING / f"{name}.jsonl"
        if path.exists():
            data = load_files([path])
            p = clf.proba(embed([query_text(t) for t in data.prompts])).argmax(1)
            got = collections.Counter(clf.labels[i] for i in p)
            report[f"ood_{name}_as_{task}"] = round(got[task] / len(p), 4)
    print(json.dumps(report, indent=1))
    if args.write:
        final = TaskClassifier.fit(x, list(labels))
        out = Path(__file__).resolve().parents[1] / "router" / "data" / DEFAULT_WEIGHTS
        final.save(out)
        print(f"wrote {out} ({out.stat().st_size} bytes)")
    return report


if __name__ == "__main__":
    main()
