"""The engine pool's output as Parquet part files: written by light tasks, tallied on the driver.

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

from rluf_ray.engines.pool import io_task_kwargs
from rluf_ray.schema import GENERATION_SCHEMA
from rluf_ray.store.artifacts import ArtifactStore

log = logging.getLogger("rluf.generate")


def part_name(split: str, prompt_ids: Iterable[str]) -> str:
    """Parquet part file of a group of prompts: named by its ids, so a redone group overwrites itself."""
    digest = hashlib.sha1("\n".join(prompt_ids).encode()).hexdigest()[:20]
    return f"{split}/part-{digest}.parquet"


def rows_to_table(batch: dict[str, Any]) -> pa.Table:
    """A GENERATION_SCHEMA table from a batch of columns (numpy or lists)."""
    cols = {}
    for name in GENERATION_SCHEMA.names:
        values = batch[name]
        cols[name] = [v.tolist() if isinstance(v, np.ndarray) else v for v in values]
    return pa.Table.from_pydict(cols, schema=GENERATION_SCHEMA)


def write_part(batch: dict[str, Any], store: ArtifactStore, stage_dir: str) -> dict[str, list[Any]]:
    """Write a group of generation rows as atomic Parquet part files (one per split); return summaries."""
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


def write_parts(sampled: Any, store: ArtifactStore, stage_dir: str, rows_per_file: int) -> Any:
    """The Ray Data step writing ``sampled`` rows as part files; yields one summary row per file."""
    return sampled.map_batches(
        write_part,
        fn_kwargs={"store": store, "stage_dir": stage_dir},
        batch_size=rows_per_file,
        **io_task_kwargs(),
    )


def drain(written: Any, figures: dict[str, dict[str, Any]], progress_every_s: float = 10.0) -> dict[str, Any]:
    """Run the pipeline, tallying per-split figures from the summaries; returns the throughput."""
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
