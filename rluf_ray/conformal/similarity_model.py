"""The similarity model: gensim FastText trained on the run's own text, in a short-lived subprocess.

Choice of similarity: token-level ``wv.n_similarity(tokens(a), tokens(b))`` (cosine of the mean word
vectors). Whole strings as FastText keys barely separate answers (every long string is mostly the
same character n-grams: related 0.999 vs unrelated 0.959 measured), token lists separate much better
(0.961 vs 0.881). An answer with no tokens (empty after normalisation) has similarity 0.0, which is
what the original did when the model had no vector (its KeyError branch skipped the term).

Determinism: one worker thread, a fixed seed, and PYTHONHASHSEED fixed for the training process
(gensim seeds each word's initial vector with Python's ``hash``, which is salted per process unless
PYTHONHASHSEED is set). We therefore train in a short-lived subprocess whose environment sets
PYTHONHASHSEED to the seed, so the result does not depend on how the caller was started. The model
stays in that subprocess (gensim saves with pickle; we never write pickles): it returns the
similarities of the requested pairs as a ``.npy`` array. Which pairs are needed, and how their
similarities are laid out per answer, is pure logic in ``rluf_ray.conformal.similarity``.

Subprocess entry: ``python -m rluf_ray.conformal.similarity_model IN.json OUT.npy``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rluf_ray.conformal.similarity import per_answer_similarities, tokenize, top_answer_pairs

_PKG_ROOT = Path(__file__).resolve().parents[2]
_MODULE = "rluf_ray.conformal.similarity_model"


@dataclass(frozen=True)
class SimilaritySettings:
    """FastText training settings (vector size 200 as the original)."""

    vector_size: int = 200
    epochs: int = 10
    seed: int = 42
    min_count: int = 1
    window: int = 5


def train_model(sentences: Sequence[Sequence[str]], settings: SimilaritySettings) -> Any:
    """Train FastText in this process (deterministic only when PYTHONHASHSEED was fixed at start-up).

    Args:
        sentences: The tokenized corpus (empty sentences are dropped).
        settings: The training settings.

    Returns:
        The trained gensim ``FastText`` model.

    Raises:
        ValueError: If every sentence is empty.
    """
    from gensim.models import FastText

    sentences = [list(s) for s in sentences if len(s)]
    if not sentences:
        raise ValueError("the similarity corpus is empty")
    return FastText(
        sentences=sentences,
        vector_size=settings.vector_size,
        window=settings.window,
        min_count=settings.min_count,
        epochs=settings.epochs,
        seed=settings.seed,
        workers=1,
    )


def pair_similarities(model: Any, pairs: Iterable[tuple[str, str]]) -> np.ndarray:
    """Compute the token-level ``n_similarity`` per pair; 0.0 where either side has no tokens.

    Args:
        model: A trained gensim ``FastText`` model.
        pairs: The N ``(answer, top answer)`` text pairs.

    Returns:
        The similarities, shape ``(N,)`` float64.
    """
    out = []
    for a, b in pairs:
        ta, tb = tokenize(a), tokenize(b)
        out.append(float(model.wv.n_similarity(ta, tb)) if ta and tb else 0.0)
    return np.asarray(out, dtype=np.float64)


def _main(argv: list[str]) -> int:
    """Subprocess entry: read the spec JSON (settings, corpus, pairs), write the similarities."""
    spec = json.loads(Path(argv[0]).read_text())
    settings = SimilaritySettings(**spec["settings"])
    model = train_model([tokenize(t) for t in spec["corpus"]], settings)
    sims = pair_similarities(model, [tuple(p) for p in spec["pairs"]])
    np.save(argv[1], sims, allow_pickle=False)
    return 0


def similarities(
    corpus: Sequence[str], pairs: Sequence[tuple[str, str]], settings: SimilaritySettings
) -> np.ndarray:
    """Train FastText on ``corpus`` in a subprocess with PYTHONHASHSEED=seed; similarities of ``pairs``.

    Args:
        corpus: The run's texts the model trains on (tokenized in the subprocess).
        pairs: The N ``(answer, top answer)`` text pairs.
        settings: The training settings (``seed`` also sets PYTHONHASHSEED).

    Returns:
        The similarities, shape ``(N,)`` float64 (no subprocess when N is 0).

    Raises:
        RuntimeError: If the subprocess fails (with the last line of its output).
    """
    pairs = [(str(a), str(b)) for a, b in pairs]
    if not pairs:
        return np.zeros(0, dtype=np.float64)
    with tempfile.TemporaryDirectory(prefix="rluf-sim-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "sims.npy"
        spec_path.write_text(
            json.dumps({"settings": asdict(settings), "corpus": list(corpus), "pairs": pairs})
        )
        env = dict(os.environ)
        env["PYTHONHASHSEED"] = str(settings.seed % 4294967296)
        env["PYTHONPATH"] = os.pathsep.join([str(_PKG_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        proc = subprocess.run(
            [sys.executable, "-m", _MODULE, str(spec_path), str(out_path)],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"FastText similarity subprocess failed: {tail[0]}")
        return np.load(out_path, allow_pickle=False)


def top_answer_similarities(
    answers: Sequence[Sequence[str]], corpus: Sequence[str], settings: SimilaritySettings
) -> list[list[float]]:
    """sim(answer, the prompt's top answer) for every answer (0.0 for the top answer itself).

    Trains the model on ``corpus``; each distinct (answer, top answer) pair is computed once.

    Args:
        answers: ``answers[i]`` is prompt i's unique answers, top answer first.
        corpus: The run's texts the model trains on.
        settings: The training settings.

    Returns:
        One list per prompt, aligned with its answers.
    """
    index = top_answer_pairs(answers)
    return per_answer_similarities(answers, index, similarities(corpus, list(index), settings))


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
