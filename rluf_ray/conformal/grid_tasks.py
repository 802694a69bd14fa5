"""Grid-search fan-out: chunks of (w1, w2) grid points, run in this process or as Ray CPU tasks.

``GridTasks`` is the ``GridMap`` that ``rluf_ray.conformal.calibration.calibrate`` takes: it splits the
grid into at most ``chunks`` contiguous chunks (fewer on small inputs, so task overhead does not
exceed the work), runs each chunk, and returns the results in grid order. Every grid point is
computed independently, so results never depend on the chunking or on where chunks run.
``ray.remote`` is applied here, where the tasks are created.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

ChunkMap = Callable[[Callable[..., Any], dict[str, Any], list[dict[str, Any]]], list[Any]]

DEFAULT_MIN_CELLS = 8_000_000  # the config's conformal.min_cells_per_task default


def chunk_slices(n: int, chunks: int, cells_per_point: int = 0, min_cells: int = 0) -> list[slice]:
    """Split range(n) grid points into at most ``chunks`` contiguous, non-empty slices in order.

    Args:
        n: The number of grid points.
        chunks: The most chunks wanted.
        cells_per_point: The (split x prompt x answer) cells of work per grid point; 0 = unknown.
        min_cells: With ``cells_per_point``, a chunk holds at least that many cells of work, so that
            on small inputs task overhead does not exceed the work (results never depend on
            chunking); 0 = no minimum.

    Returns:
        The slices, covering ``range(n)`` in order (none when n is 0).
    """
    if min_cells and cells_per_point:
        chunks = min(chunks, max(1, (n * cells_per_point) // min_cells))
    chunks = max(1, min(chunks, n))
    bounds = np.linspace(0, n, chunks + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def serial_map(
    func: Callable[..., Any], shared: dict[str, Any], chunk_args: list[dict[str, Any]]
) -> list[Any]:
    """Run the chunks one after the other in this process (``ray_map`` does the same, in parallel).

    Args:
        func: The chunk function, called as ``func(**shared, **args)``.
        shared: The keyword arguments every chunk gets.
        chunk_args: Each chunk's own keyword arguments (its ``w1``/``w2`` slices).

    Returns:
        The chunk results, in chunk order.
    """
    return [func(**shared, **args) for args in chunk_args]


def _call_chunk(func: Callable[..., Any], shared: dict[str, Any], args: dict[str, Any]) -> Any:
    """Body of one Ray task: one chunk of grid points."""
    return func(**shared, **args)


def ray_map(num_cpus: float) -> ChunkMap:
    """Make a chunk map that runs each chunk as a Ray CPU task of ``num_cpus`` CPUs.

    A single chunk runs in this process; otherwise Ray is started if needed and ``shared`` goes
    through the object store once.

    Args:
        num_cpus: The CPUs each task reserves.

    Returns:
        The chunk map, with the signature of :func:`serial_map`.
    """

    def map_chunks(
        func: Callable[..., Any], shared: dict[str, Any], chunk_args: list[dict[str, Any]]
    ) -> list[Any]:
        if len(chunk_args) == 1:  # one chunk: a remote task would only add its round trip
            return [func(**shared, **chunk_args[0])]
        import ray

        from rluf_ray.runtime.bootstrap import ensure_ray

        ensure_ray()
        shared_ref = ray.put(shared)  # the score arrays travel once through the object store
        task = ray.remote(_call_chunk).options(num_cpus=num_cpus)
        return ray.get([task.remote(func, shared_ref, args) for args in chunk_args])

    return map_chunks


@dataclass(frozen=True)
class GridTasks:
    """How the grid search fans out: at most ``chunks`` chunks, each at least ``min_cells_per_task``
    cells of work; as Ray tasks of ``num_cpus`` CPUs, or serially in this process when None."""

    chunks: int = 1
    min_cells_per_task: int = DEFAULT_MIN_CELLS
    num_cpus: float | None = None

    def slices(self, points: int, cells_per_point: int) -> list[slice]:
        """Cut ``points`` grid points into the chunks this fan-out uses.

        Args:
            points: The number of grid points.
            cells_per_point: The cells of work per grid point.

        Returns:
            The chunks, as slices of ``range(points)`` in order.
        """
        return chunk_slices(points, self.chunks, cells_per_point, self.min_cells_per_task)

    def __call__(
        self,
        func: Callable[..., Any],
        shared: dict[str, Any],
        w1: np.ndarray,
        w2: np.ndarray,
        cells_per_point: int,
    ) -> list[Any]:
        """Run ``func(**shared, w1=..., w2=...)`` per chunk; results in grid order."""
        run = serial_map if self.num_cpus is None else ray_map(self.num_cpus)
        chunk_args = [{"w1": w1[s], "w2": w2[s]} for s in self.slices(len(w1), cells_per_point)]
        return run(func, shared, chunk_args)
