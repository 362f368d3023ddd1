"""The learned pair verifier: a small cross-encoder run with ONNX Runtime (private to cache.policy).

The model (cache/data/verifier/verifier.onnx, trained and exported by bench/train_verifier.py) reads
"[CLS] query [SEP] candidate [SEP]" and returns one logit: how likely the two prompts share an answer.
`learned.json` beside it holds the logistic calibration that combines that logit with the bi-encoder
cosine, fitted on the training data's dev split. Files load on the first scored pair, never at import.

Each pair runs through the model on its own, unpadded. The int8 model quantises its activations with one
dynamic scale per tensor, so in a batch the other rows (and the padding the longest row forces on the
rest) move a pair's scale: measured on QQP pairs, a batch of four moved a probability by up to 0.30 and
flipped 19 of 1,500 verdicts at p 0.93. Alone, a pair's verdict depends on that pair only, the same in a
lookup, an evaluation and a test. It costs about 15 % over one batched pass of four (the model is
compute-bound: ~0.5 GFLOP a pair of 37 tokens).
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from cache.errors import CacheInputError

DEFAULT_DIR = Path(__file__).parent / "data" / "verifier"
MAX_PAIR_TOKENS = 128
_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class VerifierModelError(CacheInputError):
    """The learned verifier's files are missing or unreadable (the learned stage is switched on)."""


class LearnedVerifier:
    """Scores (query, candidate) pairs; one ONNX forward pass per pair, so a pair's score never depends
    on the pairs scored beside it."""

    def __init__(self, model_dir: Path | None = None, threads: int = 1) -> None:
        self.model_dir = Path(model_dir) if model_dir else DEFAULT_DIR
        self.threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._calibration: tuple[float, float, float] = (0.0, 1.0, 0.0)

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            model = self.model_dir / "verifier.onnx"
            tok = self.model_dir / "tokenizer.json"
            calib = self.model_dir / "learned.json"
            for path in (model, tok, calib):
                if not path.is_file():
                    raise VerifierModelError(
                        f"learned verifier file missing: {path} (rebuild it with bench/train_verifier.py, "
                        "or set PolicyConfig(learned=False) to run without the learned stage)"
                    )
            try:
                import onnxruntime as ort
                from tokenizers import Tokenizer

                meta = json.loads(calib.read_text())
                self._calibration = (float(meta["bias"]), float(meta["w_logit"]), float(meta["w_cosine"]))
                tokenizer = Tokenizer.from_file(str(tok))
                tokenizer.enable_truncation(MAX_PAIR_TOKENS, strategy="longest_first")
                tokenizer.no_padding()  # a pair runs alone: padding would enter its activation scale
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = self.threads
                opts.inter_op_num_threads = 1
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
            except (OSError, ValueError, KeyError, TypeError, ImportError) as e:
                raise VerifierModelError(
                    f"cannot load the learned verifier from {self.model_dir}: {e}"
                ) from e
            except Exception as e:  # onnxruntime raises its own types for a corrupt model
                raise VerifierModelError(
                    f"cannot load the learned verifier from {self.model_dir}: {type(e).__name__}: {e}"
                ) from e
            self._tokenizer, self._session = tokenizer, session

    def logits(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """The cross-encoder's raw logit for each pair (tokenised together, run one pair at a time)."""
        out = np.zeros(len(pairs), dtype=np.float32)
        if not pairs:
            return out
        if self._session is None:
            self._load()
        run = self._session.run
        for i, enc in enumerate(self._tokenizer.encode_batch(pairs)):
            feed = {
                _NAMES[0]: np.array([enc.ids], dtype=np.int64),
                _NAMES[1]: np.array([enc.attention_mask], dtype=np.int64),
                _NAMES[2]: np.array([enc.type_ids], dtype=np.int64),
            }
            out[i] = np.asarray(run(None, feed)[0], dtype=np.float32).reshape(-1)[0]
        return out

    def probabilities(self, pairs: list[tuple[str, str]], cosines: list[float]) -> list[float]:
        """Calibrated probability that each pair may share an answer (logit and cosine combined)."""
        logits = self.logits(pairs)
        if self._session is None:  # empty batch: nothing loaded, nothing to combine
            return []
        return self.calibrated(logits, cosines)

    def calibrated(self, logits: np.ndarray, cosines: list[float]) -> list[float]:
        """learned.json's combination of raw logits (from `logits`, which loads it) with their cosines."""
        bias, w_logit, w_cos = self._calibration
        return [_sigmoid(bias + w_logit * float(x) + w_cos * c) for x, c in zip(logits, cosines, strict=True)]


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)
