"""The engine pool's output as Parquet part files: written by a light actor, tallied on the driver.

Rows that come out of :func:`rluf_ray.engines.pool.apply` (GENERATION_SCHEMA) are grouped
``rows_per_file`` at a time and written atomically through the artifact store, one part per split,
named by the prompt ids it holds (a redone group overwrites itself). The driver only sees one tiny
summary row per file (:func:`drain`), never the answers, so its memory stays flat with scale.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa

from rluf_ray.engines.pool import io_actor_kwargs
from rluf_ray.schema import GENERATION_SCHEMA
from rluf_ray.store.artifacts import ArtifactStore

log = logging.getLogger("rluf.generate")


def part_name(split: str, prompt_ids: Iterable[str]) -> str:
    """Parquet part file of a group of prompts: named by its ids, so a redone group overwrites itself.

    Args:
        split: The generation split (``"calibration"`` or ``"test"``), the part's folder.
        prompt_ids: The group's prompt ids, in row order (the order changes the name).

    Returns:
        ``<split>/part-<20 hex digits of the ids' SHA-1>.parquet``.
    """
    digest = hashlib.sha1("\n".join(prompt_ids).encode()).hexdigest()[:20]
    return f"{split}/part-{digest}.parquet"


def rows_to_table(batch: dict[str, Any]) -> pa.Table:
    """A GENERATION_SCHEMA table from a batch of columns (numpy or lists).

    Columns not in GENERATION_SCHEMA are dropped; numpy array cells (list columns as Ray Data hands
    them) are turned into lists.

    Args:
        batch: Column name -> values, one per row; must hold every GENERATION_SCHEMA column.

    Returns:
        The rows as a table of GENERATION_SCHEMA.
    """
    cols = {}
    for name in GENERATION_SCHEMA.names:
        values = batch[name]
        cols[name] = [v.tolist() if isinstance(v, np.ndarray) else v for v in values]
    return pa.Table.from_pydict(cols, schema=GENERATION_SCHEMA)


def write_part(batch: dict[str, Any], store: ArtifactStore, stage_dir: str) -> dict[str, list[Any]]:
    """Write a group of generation rows as atomic Parquet part files (one per split); return summaries.

    Args:
        batch: A Ray Data batch of GENERATION_SCHEMA columns (numpy or lists), rows of any split.
        store: The artifact store to write into.
        stage_dir: The generate stage's artifact directory; parts go to ``<stage_dir>/<split>/``.

    Returns:
        A batch of one summary row per file written: ``split``, ``file`` (artifact name), ``prompts``
        (rows), ``samples`` (sum of ``num_samples``) and ``truncated`` (rows whose post was cut).
    """
    table = rows_to_table(batch)
    out: dict[str, list[Any]] = {"split": [], "file": [], "prompts": [], "samples": [], "truncated": []}
    split_col = table.column("split").to_pylist()
    for split in sorted(set(split_col)):
        part = table.filter(pa.array([s == split for s in split_col]))
        name = part_name(split, [str(x) for x in part.column("prompt_id").to_pylist()])
        store.write_parquet(stage_dir, name, part)
        out["split"].append(split)
        out["file"].append(name)
        out["prompts"].append(part.num_rows)
        out["samples"].append(int(sum(part.column("num_samples").to_pylist())))
        out["truncated"].append(int(sum(part.column("truncated").to_pylist())))
    return out


class PartWriter:
    """The Ray Data step that writes part files (a callable class: it runs in a long-lived actor).

    Args:
        store: The artifact store to write into.
        stage_dir: The generate stage's artifact directory.
    """

    def __init__(self, store: ArtifactStore, stage_dir: str):
        self.store, self.stage_dir = store, stage_dir

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        return write_part(batch, self.store, self.stage_dir)


def write_parts(sampled: Any, store: ArtifactStore, stage_dir: str, rows_per_file: int) -> Any:
    """The Ray Data step writing ``sampled`` rows as part files.

    Args:
        sampled: Ray Dataset of GENERATION_SCHEMA rows (the engine pool's output).
        store: The artifact store to write into.
        stage_dir: The generate stage's artifact directory.
        rows_per_file: Rows per write batch, so at most this many rows per part file (a batch that
            holds both splits is split in two files).

    Returns:
        A lazy Ray Dataset of one summary row per file (see ``write_part``); nothing runs until it is
        consumed (``drain``).
    """
    return sampled.map_batches(
        PartWriter,
        fn_constructor_kwargs={"store": store, "stage_dir": stage_dir},
        batch_size=rows_per_file,
        **io_actor_kwargs(),
    )


def drain(written: Any, figures: dict[str, dict[str, Any]], progress_every_s: float = 10.0) -> dict[str, Any]:
    """Run the pipeline, tallying per-split figures from the summaries; returns the throughput.

    Logs progress at most every ``progress_every_s`` seconds.

    Args:
        written: The Dataset of summaries from ``write_parts``; iterating it runs the whole pipeline.
        figures: Split -> figures, updated in place: ``prompts_generated`` and ``samples_generated``
            (which must be there already) grow by each summary of that split.
        progress_every_s: Seconds between progress log lines.

    Returns:
        The totals over all splits: ``prompts_generated``, ``samples_generated``, ``wall_s``,
        ``prompts_per_s`` and ``samples_per_s`` (the rates ``None`` when no time passed).
    """
    prompts = samples = 0
    t0 = last = time.perf_counter()
    for summary in written.iter_rows():
        fig = figures[summary["split"]]
        fig["prompts_generated"] += int(summary["prompts"])
        fig["samples_generated"] += int(summary["samples"])
        prompts += int(summary["prompts"])
        samples += int(summary["samples"])
        now = time.perf_counter()
        if now - last >= progress_every_s:
            el = now - t0
            log.info(
                "generate: %d prompts, %.2f prompts/s, %.1f samples/s", prompts, prompts / el, samples / el
            )
            last = now
    wall = time.perf_counter() - t0
    log.info("generate: %d prompts, %d samples in %.1fs", prompts, samples, wall)
    return {
        "prompts_generated": prompts,
        "samples_generated": samples,
        "wall_s": round(wall, 3),
        "prompts_per_s": round(prompts / wall, 3) if wall else None,
        "samples_per_s": round(samples / wall, 2) if wall else None,
    }
