"""THE data interface of every stage: ``load_split(split_plan(data, split))`` -> prompt rows
(``rluf_ray.schema``).

A :class:`SplitPlan` holds exactly what decides a split's rows under the configured source; stages keep
it in their plans (so it is part of their keys) and load from it, never from the config.

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
from rluf_ray.config import DataConfig, plan_type
from rluf_ray.data import demo, loaders
from rluf_ray.errors import RlufError

log = logging.getLogger("rluf.data")

SplitName = Literal["train", "calibration", "test", "eval"]
SPLIT_NAMES: tuple[SplitName, ...] = ("train", "calibration", "test", "eval")


_DOCS = {"train": "train_docs", "calibration": "calibration_docs", "test": "test_docs", "eval": "eval_docs"}
_SIZE = {"train": "sft_size", "calibration": "calibration_size", "test": "test_size", "eval": "eval_size"}
_FILE = {"train": "train_file", "calibration": "calibration_file", "test": "test_file", "eval": "eval_file"}


@plan_type
class DemoSplit:
    """The embedded demo's part of a split plan."""

    seed: int
    docs: int
    vague_count_share: float = 0.0  # the train split only
    vague_phrase: str | None = None  # set when vague_count_share > 0: a new phrase is new data


@plan_type
class TldrSplit:
    """summarize_from_feedback's part of a split plan: the hub data and the partition of its ids."""

    hub_id: str
    subset: str
    split: str
    max_post_words: int
    calibration_size: int
    test_size: int
    eval_size: int
    seed: int


@plan_type
class SplitPlan:
    """Everything that decides the rows of one split (``load_split`` reads nothing else)."""

    split: SplitName
    source: Literal["demo", "tldr", "files"]
    size: int | None  # rows wanted (None: every row, the train split's default)
    demo: DemoSplit | None = None
    tldr: TldrSplit | None = None
    file: str | None = None
    held_out: tuple[str | None, ...] = ()  # files source, train split: ids of these files are dropped


def split_plan(data: DataConfig, split: SplitName) -> SplitPlan:
    """What decides the rows of ``split`` under this data section (loads nothing).

    Args:
        data: The config's ``data`` section.
        split: Which split.

    Returns:
        The split's plan: only the values of ``data`` that the configured source reads for it.
    """
    _check_split(split)
    size = getattr(data, _SIZE[split])
    if data.source == "demo":
        d = data.demo
        share = d.vague_count_share if split == "train" else 0.0
        demo_part = DemoSplit(seed=d.seed, docs=getattr(d, _DOCS[split]), vague_count_share=share,
                              vague_phrase=demo.VAGUE_COUNT if share > 0 else None)  # fmt: skip
        return SplitPlan(split=split, source="demo", size=size, demo=demo_part)
    if data.source == "tldr":
        t = data.tldr
        tldr = TldrSplit(hub_id=t.hub_id, subset=t.subset, split=t.split, max_post_words=t.max_post_words,
                         calibration_size=data.calibration_size, test_size=data.test_size,
                         eval_size=data.eval_size, seed=data.seed)  # fmt: skip
        return SplitPlan(split=split, source="tldr", size=size, tldr=tldr)
    held = tuple(getattr(data, _FILE[s]) for s in ("calibration", "test", "eval")) if split == "train" else ()
    return SplitPlan(
        split=split, source=data.source, size=size, file=getattr(data, _FILE[split]), held_out=held
    )


def _check_split(split: str) -> None:
    if split not in SPLIT_NAMES:
        raise RlufError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_NAMES)}")


def split_count(plan: SplitPlan) -> int:
    """Number of rows ``load_split`` returns (cheap for the demo: no documents are built).

    Args:
        plan: The split's plan.

    Returns:
        The row count.
    """
    if plan.demo is None:
        return len(load_split(plan))
    return min(plan.demo.docs, plan.size or plan.demo.docs)


def demo_batch(seed: int, split: str, indices: Sequence[int]) -> dict[str, list[str]]:
    """Columns (prompt_id, post, reference) of the demo documents with the given indices.

    Args:
        seed: The demo dataset's seed.
        split: The split name.
        indices: The documents' indices within the split.

    Returns:
        ``prompt_id``, ``post`` and ``reference`` columns, one entry per index, in order.
    """
    docs = [demo.make_doc(seed, split, int(i)) for i in indices]
    return {
        "prompt_id": [d.prompt_id for d in docs],
        "post": [d.post for d in docs],
        "reference": [d.reference for d in docs],
    }


def demo_rows(batch: dict[str, Any], seed: int, split: str, done: frozenset[str]) -> dict[str, list[str]]:
    """Demo prompt rows for index ranges [start, stop), minus finished ids (built on workers, streamed).

    Args:
        batch: A Ray Data batch with ``start`` and ``stop`` columns: the document index ranges.
        seed: The demo dataset's seed.
        split: The split name.
        done: Prompt ids already finished, left out of the result.

    Returns:
        ``prompt_id``, ``post``, ``reference`` and ``split`` columns of the remaining documents.
    """
    indices = [i for a, b in zip(batch["start"], batch["stop"], strict=True) for i in range(int(a), int(b))]
    cols: dict[str, list[str]] = demo_batch(seed, split, indices)
    cols["split"] = [split] * len(indices)
    if not done:
        return cols
    keep = [i for i, pid in enumerate(cols["prompt_id"]) if pid not in done]
    return {k: [v[i] for i in keep] for k, v in cols.items()}


class DemoRows:
    """:func:`demo_rows` as a callable class, so that Ray Data runs it in a long-lived actor.

    Args:
        seed: The demo dataset's seed.
        split: The split name.
        done: Prompt ids already finished.
    """

    def __init__(self, seed: int, split: str, done: frozenset[str]):
        self.seed, self.split, self.done = seed, split, done

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        return demo_rows(batch, self.seed, self.split, self.done)


def load_split(plan: SplitPlan) -> list[dict[str, str]]:
    """The rows of a split (keys prompt_id, post, reference), honouring its size.

    Args:
        plan: The split's plan (``split_plan``).

    Returns:
        The rows, at most ``plan.size`` of them.
    """
    _check_split(plan.split)
    if plan.demo is not None:
        d = plan.demo
        n = split_count(plan)
        if plan.size is not None and n < plan.size:
            log.warning("demo %s split has %d documents, fewer than the %d asked", plan.split, n, plan.size)
        return [r.row() for r in demo.iter_docs(d.seed, plan.split, n, vague_share=d.vague_count_share)]
    if plan.tldr is not None:
        t = plan.tldr
        parts = _tldr_parts(t.hub_id, t.subset, t.split, t.max_post_words, t.calibration_size,
                            t.test_size, t.seed, t.eval_size)  # fmt: skip
        rows = parts[plan.split]
    elif plan.source == "files":
        rows = _file_split(plan)
    else:  # pragma: no cover - the config validates the literal
        raise RlufError(f"unknown data.source {plan.source!r}")
    if plan.size is not None:
        if len(rows) < plan.size:
            log.warning("%s split has %d rows, fewer than the %d asked", plan.split, len(rows), plan.size)
        rows = rows[: plan.size]
    return [dict(r) for r in rows]


@lru_cache(maxsize=4)
def _tldr_parts(
    hub_id: str, subset: str, hub_split: str, max_post_words: int, cal: int, test: int, seed: int, held: int
) -> dict[str, list[dict[str, str]]]:
    rows, stats = loaders.tldr_rows(loaders.load_tldr_hub(hub_id, subset, hub_split), max_post_words)
    log.info("tldr %s/%s: %s", hub_id, subset, stats.as_dict())
    if not rows:
        raise RlufError(f"{hub_id} ({subset}, {hub_split}): no usable posts after filtering")
    return loaders.partition_by_id(rows, cal, test, seed, held)


def _file_split(plan: SplitPlan) -> list[dict[str, str]]:
    key = _FILE[plan.split]
    path = plan.file
    if not path:
        raise RlufError(f"data.source=files needs data.{key} for the {plan.split} split")
    rows, stats = loaders.file_rows(loaders.read_records(path), source=str(path))
    if stats.duplicates or stats.empty:
        log.info("%s: %s", path, stats.as_dict())
    if plan.split == "train":
        held_out: set[str] = set()
        for other_path in plan.held_out:
            if other_path:
                other_rows, _ = loaders.file_rows(loaders.read_records(other_path), source=str(other_path))
                held_out.update(r["prompt_id"] for r in other_rows)
        rows, dropped = loaders.drop_ids(rows, held_out)
        if dropped:
            log.warning("dropped %d SFT rows whose id is also a calibration/test prompt", dropped)
    return rows


# ---- prompt rendering --------------------------------------------------------------------------
def prompt_budget(max_context: int, max_new_tokens: int) -> int:
    """Tokens a prompt may use: the context minus the new tokens to generate.

    Args:
        max_context: The model's context (``model.max_context``).
        max_new_tokens: The new tokens each sample may take.

    Returns:
        The prompt budget in tokens.

    Raises:
        RlufError: Fewer than 8 tokens would be left for a prompt.
    """
    budget = max_context - max_new_tokens
    if budget < 8:
        raise RlufError(
            f"model.max_context ({max_context}) leaves no room for a prompt after {max_new_tokens} new tokens"
        )
    return budget


def fit_rows(
    rows: Iterable[dict[str, Any]], count_tokens: Callable[[str], int], max_tokens: int, template: str
) -> Iterator[dict[str, Any]]:
    """Add ``prompt`` (rendered, cut to ``max_tokens``) and ``truncated`` to each row.

    Args:
        rows: Rows with a ``post``.
        count_tokens: Counts the tokens of a text (the tokenizer of the model that gets the prompt).
        max_tokens: The token budget of each rendered prompt.
        template: The prompt template, with ``{post}`` where the post goes.

    Yields:
        Each row (a copy) with ``prompt`` and ``truncated`` (whether its post was cut) added.

    Raises:
        RlufError: The template alone does not fit ``max_tokens``.
    """
    for row in rows:
        try:
            fitted = fit_prompt(row["post"], max_tokens, count_tokens, template)
        except ValueError as exc:
            raise RlufError(str(exc)) from None
        yield {**row, "prompt": fitted.prompt, "truncated": fitted.truncated}


def tokenizer_corpus(template: str, train: SplitPlan, limit: int = 2000) -> Iterator[str]:
    """Texts to train the embedded tokenizer on: the template and the first training rows.

    Args:
        template: The prompt template (``data.prompt_template``).
        train: The train split's plan.
        limit: How many training rows to use.

    Returns:
        An iterator of texts.
    """
    yield template.replace("{post}", "")
    for row in load_split(train)[:limit]:
        yield row["post"]
        yield row["reference"]
