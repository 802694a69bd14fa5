"""Dataset loaders: openai/summarize_from_feedback (TL;DR) and local JSONL/Parquet files.

The row processing is pure (plain functions over dicts, tested on hand-made rows); the hub call
(:func:`load_tldr_hub`) is a thin separate function, never called in tests (there is no internet).
Every loader returns prompt rows (``rluf_ray.schema``): ``prompt_id``, ``post`` and ``reference`` strings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rluf_ray.errors import RlufError

log = logging.getLogger("rluf.data")

# Accepted column names in local files, first match wins.
POST_COLUMNS = ("post", "prompt")
ID_COLUMNS = ("prompt_id", "id")


@dataclass
class LoadStats:
    """What the row processing dropped, and why (reported in logs and manifests)."""

    seen: int = 0
    kept: int = 0
    duplicates: int = 0
    empty: int = 0
    too_long: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        """The counts as one flat dict, the ``extra`` counts merged in after the fixed ones.

        Returns:
            Count name -> count: ``seen``, ``kept``, ``duplicates``, ``empty``, ``too_long`` and every key
            of ``extra``.
        """
        return {
            "seen": self.seen,
            "kept": self.kept,
            "duplicates": self.duplicates,
            "empty": self.empty,
            "too_long": self.too_long,
            **self.extra,
        }


# ---- openai/summarize_from_feedback --------------------------------------------------------------
def tldr_rows(
    raw_rows: Iterable[Mapping[str, Any]], max_post_words: int
) -> tuple[list[dict[str, str]], LoadStats]:
    """Turn summarize_from_feedback rows into prompt rows.

    Keeps the first row per ``info.id`` (the dataset repeats a post once per rated summary), drops
    rows without a post (the CNN/DM articles of the ``axis`` subset carry ``info.article`` instead)
    or without a summary, and drops posts longer than ``max_post_words`` words.

    Args:
        raw_rows: Hub rows, each with ``info`` (``id``, ``post``) and ``summary`` (``text``) mappings.
        max_post_words: Longest post kept, in whitespace-separated words.

    Returns:
        ``(rows, stats)``: the prompt rows in input order (``prompt_id``, ``post``, ``reference``,
        stripped), and what was dropped (a row without ``info.id`` counts as empty).
    """
    stats = LoadStats()
    seen_ids: set[str] = set()
    out: list[dict[str, str]] = []
    for raw in raw_rows:
        stats.seen += 1
        info = raw.get("info") or {}
        summary = raw.get("summary") or {}
        pid = info.get("id")
        if pid is None:
            stats.empty += 1
            continue
        pid = str(pid)
        if pid in seen_ids:
            stats.duplicates += 1
            continue
        seen_ids.add(pid)
        post = (info.get("post") or "").strip()
        reference = (summary.get("text") or "").strip()
        if not post or not reference:
            stats.empty += 1
            continue
        if len(post.split()) > max_post_words:
            stats.too_long += 1
            continue
        out.append({"prompt_id": pid, "post": post, "reference": reference})
    stats.kept = len(out)
    return out, stats


def partition_by_id(
    rows: list[dict[str, str]], calibration_size: int, test_size: int, seed: int, eval_size: int = 0
) -> dict[str, list[dict[str, str]]]:
    """Split rows into calibration, test, eval and train (SFT) parts, disjoint by prompt id.

    Rows are ordered by id and shuffled with ``seed`` (so the result does not depend on the input
    order); the first ``calibration_size`` are calibration, the next ``test_size`` test, the next
    ``eval_size`` eval, the rest train. Ids must be unique (``tldr_rows`` dedups).

    Args:
        rows: Prompt rows with unique ``prompt_id``.
        calibration_size: Rows in the calibration part.
        test_size: Rows in the test part.
        seed: Seed of the shuffle.
        eval_size: Rows in the eval (held-out) part.

    Returns:
        ``{"calibration": ..., "test": ..., "eval": ..., "train": ...}``; a part is shorter (or empty)
        when the rows run out.

    Raises:
        ValueError: Two rows share a prompt id.
    """
    ids = [r["prompt_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError("partition_by_id needs unique prompt ids")
    ordered = sorted(rows, key=lambda r: r["prompt_id"])
    random.Random(seed).shuffle(ordered)
    cal = ordered[:calibration_size]
    test = ordered[calibration_size : calibration_size + test_size]
    held = ordered[calibration_size + test_size : calibration_size + test_size + eval_size]
    train = ordered[calibration_size + test_size + eval_size :]
    return {"calibration": cal, "test": test, "eval": held, "train": train}


def load_tldr_hub(hub_id: str, subset: str, split: str) -> Iterable[Mapping[str, Any]]:
    """Read the raw rows from the Hugging Face hub (or its local cache); needs ``datasets``.

    Args:
        hub_id: Dataset id on the hub (e.g. ``openai/summarize_from_feedback``).
        subset: Dataset configuration (``comparisons`` or ``axis``).
        split: Dataset split (e.g. ``train``, ``validation``).

    Returns:
        The raw rows (a ``datasets.Dataset``), for ``tldr_rows``.

    Raises:
        RlufError: ``datasets`` is missing, or the load failed (network, missing cache, bad subset).
    """
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise RlufError("data.source=tldr needs the 'datasets' package") from exc
    try:
        return datasets.load_dataset(hub_id, subset, split=split)
    except Exception as exc:  # network, missing cache, bad subset: one clear line
        raise RlufError(
            f"cannot load {hub_id} ({subset}, {split}): {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        ) from None


# ---- local files -----------------------------------------------------------------------------------
def content_id(post: str, reference: str) -> str:
    """A stable id for a row without one: a hash of its content.

    Args:
        post: The row's post text.
        reference: The row's reference summary.

    Returns:
        ``sha1-`` and the first 16 hex digits of the SHA-1 of post and reference.
    """
    return "sha1-" + hashlib.sha1(f"{post}\x00{reference}".encode()).hexdigest()[:16]


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL (``.jsonl``/``.json``/``.ndjson``) or Parquet (``.parquet``) file into dicts.

    A ``.json`` file is read as JSON lines too (one object per line; blank lines skipped).

    Args:
        path: The file; its suffix (any case) picks the format.

    Returns:
        One dict per record, in file order.

    Raises:
        RlufError: The file is missing, has another suffix, or a line is not a JSON object.
    """
    p = Path(path)
    if not p.is_file():
        raise RlufError(f"data file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(p).to_pylist()
    if suffix in (".jsonl", ".json", ".ndjson"):
        records = []
        with p.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    raise RlufError(f"{p}:{lineno}: not valid JSON") from None
                if not isinstance(rec, dict):
                    raise RlufError(f"{p}:{lineno}: expected a JSON object per line")
                records.append(rec)
        return records
    raise RlufError(f"{p}: unsupported file type {suffix!r} (use .jsonl or .parquet)")


def _pick(rec: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for n in names:
        if n in rec:
            return rec[n]
    return None


def file_rows(
    records: Iterable[Mapping[str, Any]], source: str = "file"
) -> tuple[list[dict[str, str]], LoadStats]:
    """Turn records with a ``prompt`` (or ``post``) and a ``reference`` column into prompt rows.

    The ``prompt`` column is the text to summarise; it is rendered with ``data.prompt_template``
    like every other source (set the template to ``"{post}"`` for fully rendered prompts). Rows get
    their ``prompt_id``/``id`` column or a content hash; duplicate ids keep the first row.
    When a record has both ``post`` and ``prompt`` (or both ``prompt_id`` and ``id``), the first
    is used.

    Args:
        records: The file's records (see ``read_records``).
        source: What to call the records in the error message (e.g. the file's path).

    Returns:
        ``(rows, stats)``: the prompt rows in input order (stripped), and what was dropped (a row
        without either column, or with an empty post, counts as empty).

    Raises:
        RlufError: The first record lacks the text or the ``reference`` column (the file's columns
            are wrong).
    """
    stats = LoadStats()
    out: list[dict[str, str]] = []
    seen_ids: set[str] = set()
    for i, rec in enumerate(records):
        stats.seen += 1
        post = _pick(rec, POST_COLUMNS)
        reference = rec.get("reference")
        if post is None or reference is None:
            if i == 0:
                raise RlufError(
                    f"{source}: rows need a 'prompt' (or 'post') and a 'reference' column; got {sorted(rec)}"
                )
            stats.empty += 1
            continue
        post, reference = str(post).strip(), str(reference).strip()
        if not post:
            stats.empty += 1
            continue
        raw_id = _pick(rec, ID_COLUMNS)
        pid = str(raw_id) if raw_id is not None else content_id(post, reference)
        if pid in seen_ids:
            stats.duplicates += 1
            continue
        seen_ids.add(pid)
        out.append({"prompt_id": pid, "post": post, "reference": reference})
    stats.kept = len(out)
    return out, stats


def drop_ids(rows: list[dict[str, str]], ids: set[str]) -> tuple[list[dict[str, str]], int]:
    """Rows whose id is not in ``ids``, and how many were dropped (keeps SFT apart from eval posts).

    Args:
        rows: Prompt rows.
        ids: Prompt ids to drop.

    Returns:
        ``(kept rows in input order, number dropped)``.
    """
    kept = [r for r in rows if r["prompt_id"] not in ids]
    return kept, len(rows) - len(kept)
