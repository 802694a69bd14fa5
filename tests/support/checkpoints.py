"""Test helper: what a training run's Ray Train checkpoints held, seen just before they are dropped.

``fit_and_export`` deletes ``<stage>/<prefix>checkpoints`` once the final model is exported, so a test
that checks which files (which ranks' files) reached Ray Train's storage lists them at that moment.
"""

from __future__ import annotations

from typing import Any

from rluf_ray.store.artifacts import ArtifactStore
from rluf_ray.training.ray_train import HF_CHECKPOINT


def record_checkpoints_before_delete(monkeypatch: Any) -> dict[str, set[str]]:
    """Patch ``ArtifactStore.delete_subdir`` (with pytest's ``monkeypatch``) to list a subdirectory's
    files before deleting it; returns ``{subdir: {file names relative to it}}``, filled as runs end."""
    seen: dict[str, set[str]] = {}
    delete = ArtifactStore.delete_subdir

    def record_then_delete(self: ArtifactStore, stage: str, subdir: str) -> None:
        prefix = subdir.strip("/") + "/"
        seen[subdir] = {n[len(prefix) :] for n in self.list_files(stage) if n.startswith(prefix)}
        delete(self, stage, subdir)

    monkeypatch.setattr(ArtifactStore, "delete_subdir", record_then_delete)
    return seen


def hf_checkpoint_files(files: set[str]) -> dict[str, set[str]]:
    """``<run>/<Ray checkpoint>/checkpoint/<path>`` names -> the HF checkpoint's file paths, per Ray
    checkpoint (``<run>/<Ray checkpoint>``)."""
    out: dict[str, set[str]] = {}
    for name in files:
        parts = name.split("/")
        if len(parts) >= 4 and parts[2] == HF_CHECKPOINT:
            out.setdefault("/".join(parts[:2]), set()).add("/".join(parts[3:]))
    return out
