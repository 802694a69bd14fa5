"""Test helper: read back the runs that the real ``wandb`` client wrote with ``WANDB_MODE=offline``.

An offline run is a folder ``<dir>/wandb/offline-run-<time>-<id>/`` whose ``run-<id>.wandb`` file holds
every record the client would have sent (the run with its name, group, job type and config, each
``log`` call's history row, the summary): W&B's LevelDB-style log of ``wandb_internal_pb2.Record``
protobufs. W&B 0.31 has no public reader for it (and writes no ``files/wandb-summary.json`` offline),
so this reads the log format directly: a 7-byte file header (``:W&B``, magic ``0xBEE1``, version 0),
then 32 KiB blocks of chunks, each with a 7-byte header (CRC-32 of the type byte and the data,
length, type: full, first, middle, last), a block's last bytes padded with zeros when fewer than 7 are left.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """What one offline run recorded."""

    folder: Path
    id: str = ""
    name: str = ""
    project: str = ""
    group: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None

    def metric(self, key: str) -> list[Any]:
        """Every logged value of ``key``, in order."""
        return [row[key] for row in self.history if key in row]


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def records(path: Path) -> list[Any]:
    """The ``Record`` protobufs of one ``.wandb`` file, in order (checksums checked)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, version = HEADER.unpack_from(data)
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), path
    pos, buf, out = HEADER.size, b"", []
    while pos + CHUNK.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK.size:
            pos += left
            continue
        crc, length, kind = CHUNK.unpack_from(data, pos)
        if kind == 0 and length == 0:  # zero padding at the end of the file
            break
        chunk = data[pos + CHUNK.size : pos + CHUNK.size + length]
        assert zlib.crc32(bytes([kind]) + chunk) == crc, f"{path}: bad checksum at {pos}"
        pos += CHUNK.size + length
        buf += chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(buf)
            out.append(record)
            buf = b""
    return out


def read_run(folder: Path) -> OfflineRun:
    """One ``offline-run-*`` folder's run."""
    (log,) = folder.glob("run-*.wandb")
    run = OfflineRun(folder)
    for rec in records(log):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run.id, run.name, run.project = r.run_id, r.display_name, r.project
            run.group, run.job_type = r.run_group, r.job_type
            run.config.update({_key(u): json.loads(u.value_json) for u in r.config.update})
        elif kind == "config":
            run.config.update({_key(u): json.loads(u.value_json) for u in rec.config.update})
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            run.summary.update({_key(u): json.loads(u.value_json) for u in rec.summary.update})
        elif kind == "exit":
            run.exit_code = rec.exit.exit_code
    return run


def offline_runs(wandb_dir: Path, settle_s: float = 30.0) -> list[OfflineRun]:
    """Every offline run under ``<wandb_dir>/wandb`` that has its log file, oldest first.

    W&B's service process writes a run's last records after ``finish()`` returns in the client; on a
    loaded machine that can take a while, so this waits (up to ``settle_s``) until every run's log
    holds its exit record.
    """
    deadline = time.monotonic() + settle_s
    while True:
        folders = sorted((wandb_dir / "wandb").glob("offline-run-*"))
        runs = [read_run(p) for p in folders if p.is_dir() and any(p.glob("run-*.wandb"))]
        if all(r.exit_code is not None for r in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)
