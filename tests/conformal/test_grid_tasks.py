"""Grid fan-out: chunk slices cover the grid in order, and chunking never changes calibration."""

from __future__ import annotations

import numpy as np
import pytest

from rluf_ray.conformal import calibration as cb
from rluf_ray.conformal import nonconformity as nc
from rluf_ray.conformal.grid_tasks import GridTasks, chunk_slices, ray_map, serial_map


def test_chunk_slices_cover_the_grid_in_order_and_respect_min_cells():
    sl = chunk_slices(121, 8)
    assert [i for s in sl for i in range(121)[s]] == list(range(121)) and len(sl) == 8
    assert len(chunk_slices(121, 8, cells_per_point=1000, min_cells=50_000)) == 2
    assert len(chunk_slices(121, 8, cells_per_point=10, min_cells=50_000)) == 1
    assert len(chunk_slices(3, 8)) == 3
    assert len(chunk_slices(16, 5, 1000, 0)) == 5


def _table() -> nc.PaddedAnswerTable:
    rng = np.random.default_rng(3)
    counts = [sorted(rng.integers(1, 12, size=rng.integers(1, 7)).tolist(), reverse=True) for _ in range(60)]
    sims = [[0.0] + rng.uniform(0, 1, size=len(c) - 1).tolist() for c in counts]
    judge = [rng.uniform(0, 1, size=len(c)).tolist() for c in counts]
    return nc.pad_table(counts, sims, judge)


def test_serial_chunks_give_the_same_calibration_as_one_chunk():
    table = _table()
    for protocol in ("split", "cfa"):
        settings = cb.ConformalSettings(protocol=protocol, random_count=5, grid_values=(0.0, 0.5, 1.0, 1.5))
        one = cb.calibrate(table, settings, map_grid=GridTasks(chunks=1))
        many = cb.calibrate(table, settings, map_grid=GridTasks(chunks=5, min_cells_per_task=0))
        small = cb.calibrate(table, settings, map_grid=GridTasks(chunks=5))  # below min cells: 1 chunk
        assert (one.report["grid_tasks"], many.report["grid_tasks"], small.report["grid_tasks"]) == (1, 5, 1)
        assert one.calibrations == many.calibrations == small.calibrations
        for a in settings.alphas:
            np.testing.assert_array_equal(one.surfaces[a], many.surfaces[a])


def _double(x: int, k: int) -> int:
    return x * k


def test_serial_map_keeps_chunk_order():
    assert serial_map(_double, {"k": 2}, [{"x": 1}, {"x": 2}, {"x": 3}]) == [2, 4, 6]


def test_ray_map_runs_one_chunk_on_the_driver_without_ray():
    assert ray_map(1)(_double, {"k": 3}, [{"x": 2}]) == [6]


@pytest.mark.ray
def test_ray_tasks_give_the_same_calibration_as_serial(ray_session):
    table = _table()
    settings = cb.ConformalSettings(protocol="cfa", random_count=3, grid_values=(0.0, 1.0, 2.0))
    serial = cb.calibrate(table, settings, map_grid=GridTasks(chunks=3, min_cells_per_task=0))
    remote = cb.calibrate(table, settings, map_grid=GridTasks(chunks=3, min_cells_per_task=0, num_cpus=1))
    assert remote.report["grid_tasks"] == 3
    assert serial.calibrations == remote.calibrations
