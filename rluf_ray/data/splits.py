"""THE data interface of every stage: ``load_split(cfg, split)`` -> prompt rows (``rluf_ray.schema``).

Sources (``data.source``):

* ``demo``: the embedded generated dataset (``rluf_ray.data.demo``); documents are built by index,
  so a split can also be produced in streaming batches (:func:`demo_batch`) without materialising
  it on the driver; the generate stage does that for large calibration sets.
* ``tldr``: openai/summarize_from_feedback, deduplicated by ``info.id`` and partitioned by id into
  calibration, test and SFT parts (disjoint).
* ``files``: local JSONL/Parquet files with prompt and reference columns; SFT rows whose id also
  appears in the calibration or test file are dropped.

Sizes: calibration takes ``data.calibration_size`` rows, test ``data.test_size``, train all rows or
``data.sft_size``. A split with fewer rows than asked returns what it has (logged).

Prompt rendering and truncation go through :func:`rluf_ray.common.text.fit_prompt` (see
:func:`fit_rows`), so truncations are counted the same way in every stage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any, Literal

from rluf_ray.common.text import fit_prompt
from rluf_ray.config import RlufConfig
from rluf_ray.data import demo, loaders
from rluf_ray.errors import RlufError

log = logging.getLogger("rluf.data")

SplitName = Literal["train", "calibration", "test", "eval"]
SPLIT_NAMES: tuple[SplitName, ...] = ("train", "calibration", "test", "eval")


_DOCS = {"train": "train_docs", "calibration": "calibration_docs", "test": "test_docs", "eval": "eval_docs"}
_SIZE = {"train": "sft_size", "calibration": "calibration_size", "test": "test_size", "eval": "eval_size"}
_FILE = {"train": "train_file", "calibration": "calibration_file", "test": "test_file", "eval": "eval_file"}
_PARTITION = ("data.calibration_size", "data.test_size", "data.eval_size", "data.seed")


def split_reads(split: SplitName) -> tuple[str, ...]:
    """The config keys that decide the rows of ``split``, for every source (a stage declares these)."""
    _check_split(split)
    files = tuple(f"data.{f}" for f in _FILE.values()) if split == "train" else (f"data.{_FILE[split]}",)
    return (
        "data.source",
        f"data.{_SIZE[split]}",
        "data.demo.seed",
        f"data.demo.{_DOCS[split]}",
        "data.tldr",
        *_PARTITION,
        *files,
        *(("data.demo.vague_count_share",) if split == "train" else ()),
    )


def split_plan(cfg: RlufConfig, split: SplitName) -> dict[str, Any]:
    """What decides the rows of ``split`` under this config (plain data; loads nothing)."""
    _check_split(split)
    d = cfg.data
    out: dict[str, Any] = {"source": d.source, "size": getattr(d, _SIZE[split])}
    if d.source == "demo":
        out.update(seed=d.demo.seed, docs=getattr(d.demo, _DOCS[split]))
        if split == "train":
            out["vague_count_share"] = d.demo.vague_count_share
            if d.demo.vague_count_share > 0:  # the phrase is part of the data: a new one re-runs SFT
                out["vague_phrase"] = demo.VAGUE_COUNT
    elif d.source == "tldr":
        out.update(tldr=d.tldr.model_dump(), partition=[d.calibration_size, d.test_size, d.eval_size, d.seed])
    else:
        out["file"] = getattr(d, _FILE[split])
        if split == "train":
            out["held_out"] = [getattr(d, _FILE[s]) for s in ("calibration", "test", "eval")]
    return out


def _check_split(split: str) -> None:
    if split not in SPLIT_NAMES:
        raise RlufError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_NAMES)}")


def split_count(cfg: RlufConfig, split: SplitName) -> int:
    """Number of rows ``load_split`` returns (cheap for the demo: no documents are built)."""
    _check_split(split)
    if cfg.data.source != "demo":
        return len(load_split(cfg, split))
    d = cfg.data.demo
    if split == "train":
        return min(d.train_docs, cfg.data.sft_size or d.train_docs)
    if split == "calibration":
        return min(d.calibration_docs, cfg.data.calibration_size)
    if split == "eval":
        return min(d.eval_docs, cfg.data.eval_size)
    return min(d.test_docs, cfg.data.test_size)


def demo_batch(seed: int, split: str, indices: Sequence[int]) -> dict[str, list[str]]:
    """Columns (prompt_id, post, reference) of the demo documents with the given indices."""
    docs = [demo.make_doc(seed, split, int(i)) for i in indices]
    return {
        "prompt_id": [d.prompt_id for d in docs],
        "post": [d.post for d in docs],
        "reference": [d.reference for d in docs],
    }


def demo_rows(batch: dict[str, Any], seed: int, split: str, done: frozenset[str]) -> dict[str, list[str]]:
    """Demo prompt rows for index ranges [start, stop), minus finished ids (built on workers, streamed)."""
    indices = [i for a, b in zip(batch["start"], batch["stop"], strict=True) for i in range(int(a), int(b))]
    cols: dict[str, list[str]] = demo_batch(seed, split, indices)
    cols["split"] = [split] * len(indices)
    if not done:
        return cols
    keep = [i for i, pid in enumerate(cols["prompt_id"]) if pid not in done]
    return {k: [v[i] for i in keep] for k, v in cols.items()}


def load_split(cfg: RlufConfig, split: SplitName) -> list[dict[str, str]]:
    """The rows of ``split`` (keys prompt_id, post, reference), honouring the configured sizes."""
    _check_split(split)
    source = cfg.data.source
    if source == "demo":
        n = split_count(cfg, split)
        wanted = _wanted(cfg, split)
        if wanted is not None and n < wanted:
            log.warning("demo %s split has %d documents, fewer than the %d asked", split, n, wanted)
        vague = cfg.data.demo.vague_count_share if split == "train" else 0.0
        return [d.row() for d in demo.iter_docs(cfg.data.demo.seed, split, n, vague_share=vague)]
    if source == "tldr":
        t = cfg.data.tldr
        parts = _tldr_parts(t.hub_id, t.subset, t.split, t.max_post_words, cfg.data.calibration_size,
                            cfg.data.test_size, cfg.data.seed, cfg.data.eval_size)  # fmt: skip
        rows = parts[split]
    elif source == "files":
        rows = _file_split(cfg, split)
    else:  # pragma: no cover - the config validates the literal
        raise RlufError(f"unknown data.source {source!r}")
    wanted = _wanted(cfg, split)
    if wanted is not None:
        if len(rows) < wanted:
            log.warning("%s split has %d rows, fewer than the %d asked", split, len(rows), wanted)
        rows = rows[:wanted]
    return [dict(r) for r in rows]


def _wanted(cfg: RlufConfig, split: str) -> int | None:
    if split == "calibration":
        return cfg.data.calibration_size
    if split == "test":
        return cfg.data.test_size
    if split == "eval":
        return cfg.data.eval_size
    return cfg.data.sft_size


@lru_cache(maxsize=4)
def _tldr_parts(
    hub_id: str, subset: str, hub_split: str, max_post_words: int, cal: int, test: int, seed: int, held: int
) -> dict[str, list[dict[str, str]]]:
    rows, stats = loaders.tldr_rows(loaders.load_tldr_hub(hub_id, subset, hub_split), max_post_words)
    log.info("tldr %s/%s: %s", hub_id, subset, stats.as_dict())
    if not rows:
        raise RlufError(f"{hub_id} ({subset}, {hub_split}): no usable posts after filtering")
    return loaders.partition_by_id(rows, cal, test, seed, held)


def _file_split(cfg: RlufConfig, split: str) -> list[dict[str, str]]:
    key = {
        "train": "train_file",
        "calibration": "calibration_file",
        "test": "test_file",
        "eval": "eval_file",
    }[split]
    path = getattr(cfg.data, key)
    if not path:
        raise RlufError(f"data.source=files needs data.{key} for the {split} split")
    rows, stats = loaders.file_rows(loaders.read_records(path), source=str(path))
    if stats.duplicates or stats.empty:
        log.info("%s: %s", path, stats.as_dict())
    if split == "train":
        held_out: set[str] = set()
        for other in ("calibration_file", "test_file", "eval_file"):
            other_path = getattr(cfg.data, other)
            if other_path:
                other_rows, _ = loaders.file_rows(loaders.read_records(other_path), source=str(other_path))
                held_out.update(r["prompt_id"] for r in other_rows)
        rows, dropped = loaders.drop_ids(rows, held_out)
        if dropped:
            log.warning("dropped %d SFT rows whose id is also a calibration/test prompt", dropped)
    return rows


# ---- prompt rendering --------------------------------------------------------------------------
def prompt_budget(cfg: RlufConfig, max_new_tokens: int | None = None) -> int:
    """Tokens a prompt may use: the context minus the new tokens to generate."""
    new = cfg.generation.max_new_tokens if max_new_tokens is None else max_new_tokens
    budget = cfg.model.max_context - new
    if budget < 8:
        raise RlufError(
            f"model.max_context ({cfg.model.max_context}) leaves no room for a prompt after {new} new tokens"
        )
    return budget


def fit_rows(
    rows: Iterable[dict[str, Any]], count_tokens: Callable[[str], int], max_tokens: int, template: str
) -> Iterator[dict[str, Any]]:
    """Add ``prompt`` (rendered, cut to ``max_tokens``) and ``truncated`` to each row."""
    for row in rows:
        try:
            fitted = fit_prompt(row["post"], max_tokens, count_tokens, template)
        except ValueError as exc:
            raise RlufError(str(exc)) from None
        yield {**row, "prompt": fitted.prompt, "truncated": fitted.truncated}


def tokenizer_corpus(cfg: RlufConfig, limit: int = 2000) -> Iterator[str]:
    """Texts to train the embedded tokenizer on: the template and the first training rows."""
    yield cfg.data.prompt_template.replace("{post}", "")
    for row in load_split(cfg, "train")[:limit]:
        yield row["post"]
        yield row["reference"]
