"""Test support: a small Ray Train loop with FSDP2 sharded state on CPU workers (gloo).

The HF loops cannot shard on CPU: accelerate enables FSDP only for GPU-like devices, so on CPU workers
the Trainer trains plain DDP. torch's own FSDP2 (``fully_shard``) does run on CPU over gloo, so this
loop uses it directly, to drive the project's Ray Train wiring (``fit_and_export``: checkpoints in the
artifact store, ``FailureConfig``, ``resume_checkpoint``, ``export_final``) with real sharded state:
each rank saves its own shard of the model and of the optimiser with torch DCP into its own scratch
directory and reports it, and a restarted run loads every rank's shard back.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

STEP_FILE = "step.json"
FINAL_WEIGHTS = "weights.pt"


def _model_and_optimizer(world_size: int) -> tuple[Any, Any]:
    import torch
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    mesh = init_device_mesh("cpu", (world_size,))
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    for layer in (model[0], model[2]):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model, torch.optim.AdamW(model.parameters(), lr=0.05)


def _batch(step: int, rank: int) -> tuple[Any, Any]:
    """The same batch for a given (step, rank) in every run, resumed or not."""
    import torch

    g = torch.Generator().manual_seed(1000 * step + rank)
    x = torch.randn(8, 16, generator=g)
    return x, x[:, :1].sin()


def fsdp_train_loop(config: dict[str, Any]) -> None:
    """``steps`` AdamW steps on two FSDP2-sharded layers; a sharded DCP checkpoint every ``save_every``
    steps from every rank; raise once after step ``fail_at_step`` on a fresh run; the final full
    weights (gathered, written by rank 0) as ``model/`` of the last checkpoint."""
    import ray.train
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from ray.train import Checkpoint
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_state_dict,
        set_state_dict,
    )

    from rluf_ray.schema import MODEL_DIR
    from rluf_ray.training.ray_train import HF_CHECKPOINT, resume_checkpoint, scratch_dir

    rank, world = dist.get_rank(), dist.get_world_size()
    model, optimizer = _model_and_optimizer(world)
    start = 0
    with resume_checkpoint() as ckpt:
        if ckpt is not None:
            model_sd, optim_sd = get_state_dict(model, optimizer)
            dcp.load({"model": model_sd, "optim": optim_sd}, checkpoint_id=ckpt)  # every rank's shards
            set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd)
            start = int(json.loads(Path(ckpt, STEP_FILE).read_text())["step"])
    resumed = ckpt is not None
    with scratch_dir("fsdp") as out:
        for step in range(start + 1, int(config["steps"]) + 1):
            x, y = _batch(step, rank)
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if step % int(config["save_every"]) == 0:
                root = Path(out, f"step-{step}")
                model_sd, optim_sd = get_state_dict(model, optimizer)
                dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=root / HF_CHECKPOINT)
                if rank == 0:
                    Path(root, HF_CHECKPOINT, STEP_FILE).write_text(json.dumps({"step": step}))
                ray.train.report({"step": step}, checkpoint=Checkpoint.from_directory(str(root)))
            if not resumed and step == int(config["fail_at_step"]):
                raise RuntimeError(f"injected failure after step {step}")
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        metrics = {"step": int(config["steps"]), "resumed": resumed, "start": start}
        if rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, MODEL_DIR).mkdir()
            torch.save(full, Path(tmp, MODEL_DIR, FINAL_WEIGHTS))
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp))
