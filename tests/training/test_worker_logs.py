"""The Train workers' logs hold what the loop prints, once, and no disassembled bytecode.

Ray Train's print patch (on by default in Ray 2.60) sent the ``dis`` listing that dill writes into a
swapped stdout while datasets fingerprints a ``map`` function into the worker's log, and printed every
line twice. ``ray_train.WORKER_ENV`` turns it off through ``run_config``; this test runs a small Train
loop with exactly that RunConfig and reads the worker log files.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from rluf_ray.training.ray_train import WORKER_ENV, run_config, scaling_config

BYTECODE = re.compile(r"Disassembly of|\b(RESUME|LOAD_GLOBAL|LOAD_FAST|LOAD_CONST|RETURN_VALUE|BUILD_MAP)\b")


def _loop(config: dict) -> None:
    from datasets import Dataset

    ds = Dataset.from_list([{"a": str(i)} for i in range(8)]).map(lambda r: {"b": r["a"] * 2})
    print(config["sentinel"], len(ds), flush=True)


def _worker_logs() -> str:
    import ray

    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    return "\n".join(p.read_text(errors="replace") for p in sorted(logs.glob("worker-*")) if p.is_file())


def test_bytecode_listing_stays_out(ray_idle, tmp_path: Path) -> None:
    from ray.train.torch import TorchTrainer

    sentinel = f"rluf-sentinel-{uuid.uuid4().hex}"
    cfg = run_config(f"logs-{uuid.uuid4().hex[:8]}", str(tmp_path), max_failures=0)
    assert cfg.worker_runtime_env["env_vars"] == WORKER_ENV
    TorchTrainer(
        _loop, train_loop_config={"sentinel": sentinel}, scaling_config=scaling_config(1, False, 1),
        run_config=cfg,
    ).fit()  # fmt: skip
    text = _worker_logs()
    assert text.count(sentinel) == 1, "the loop's print is missing from the worker log, or doubled"
    dumped = [line for line in text.splitlines() if BYTECODE.search(line)]
    assert not dumped, "bytecode in the Train worker logs:\n" + "\n".join(dumped[:10])


pytestmark = [pytest.mark.ray, pytest.mark.slow]
