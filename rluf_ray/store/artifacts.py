"""The artifact store: ``<output_dir>/<stage>/`` with atomic writes and a manifest written last.

Completeness never depends on rename being atomic: a stage's manifest is written after all its
files, it lists every file with its size, and ``is_complete`` checks them. A stage that is killed
halfway has no manifest (``begin`` removes the old one first), so it is never taken for complete.
The root may be a local path or a ``pyarrow.fs`` URI; on local disk each file is also written to a
temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from rluf_ray.store.locations import is_uri

MANIFEST = "_manifest.json"
TMP_MARK = ".tmp-"
TRACKED_PACKAGES = ("rluf-ray", "torch", "ray", "transformers", "trl", "numpy", "pyarrow", "vllm", "openai")


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape results (missing ones omitted).

    Args:
        names: Distribution names to look up (default: ``TRACKED_PACKAGES``); a package that is not
            installed is left out rather than reported.

    Returns:
        Distribution name -> version string, always with ``"python"`` (the interpreter's version) first.
    """
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


@dataclass
class Manifest:
    """What a complete stage left behind, and what it was computed from."""

    stage: str
    config_hash: str
    upstream: dict[str, str]
    files: dict[str, int]
    rows: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    wall_time_s: float = 0.0
    finished_at: str = ""
    status: str = "complete"
    run_id: str = ""  # unique per run: a redone upstream always invalidates its downstream
    sticky: dict[str, Any] = field(default_factory=dict)  # config values a later run may inherit
    plan: Any = None  # the plan data the stage key hashes (``plan_key_data``): what a change is found in

    def to_dict(self) -> dict[str, Any]:
        """The manifest as a plain dict of its fields, ready to write as JSON.

        Returns:
            Field name -> value (a shallow copy; the nested dicts are shared with the manifest).
        """
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Build a manifest from a dict read back from ``_manifest.json``.

        Keys that are not manifest fields are ignored, so a manifest written by a newer version still reads;
        fields missing from ``data`` take their defaults (required ones raise ``TypeError``).

        Args:
            data: The parsed JSON of a manifest file.

        Returns:
            The manifest.
        """
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class ArtifactStore:
    """Reads and writes stage artifacts under one root (local path or pyarrow.fs URI)."""

    def __init__(self, root: str | os.PathLike[str]):
        root = os.fspath(root)
        self.scheme = ""
        if is_uri(root):
            self.fs, self.root = pafs.FileSystem.from_uri(root)
            self.local = isinstance(self.fs, pafs.LocalFileSystem)
            self.scheme = "" if self.local else root.split("://", 1)[0]
        else:
            self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(root)
            self.local = True
        self.root = self.root.rstrip("/")

    # ---- paths -------------------------------------------------------------------------------
    def stage_dir(self, stage: str) -> str:
        """The directory of a stage's artifacts.

        It is not created here: the writes create the directories they need.

        Args:
            stage: Stage name, the directory's name under the root.

        Returns:
            ``<root>/<stage>``, a path on the store's filesystem (no URI scheme).
        """
        return f"{self.root}/{stage}"

    def path(self, stage: str, name: str) -> str:
        """The full path of artifact ``name`` of ``stage``.

        Args:
            stage: Stage name.
            name: Artifact name relative to the stage directory; may contain ``/`` (e.g. ``parts/x.parquet``).

        Returns:
            ``<root>/<stage>/<name>``, a path on the store's filesystem (no URI scheme).
        """
        return f"{self.stage_dir(stage)}/{name}"

    def local_path(self, stage: str, name: str = "") -> str:
        """A local filesystem path (for libraries that need one, e.g. save_pretrained).

        Args:
            stage: Stage name.
            name: Artifact name relative to the stage directory; empty for the stage directory itself.

        Returns:
            The local path of the artifact (or of the stage directory).

        Raises:
            ValueError: The store's root is not on local disk.
        """
        if not self.local:
            raise ValueError(f"{self.root} is not a local directory")
        return self.path(stage, name) if name else self.stage_dir(stage)

    def uri(self, stage: str, name: str = "") -> str:
        """Where an artifact lives, for another process or node.

        Args:
            stage: Stage name.
            name: Artifact name relative to the stage directory; empty for the stage directory itself.

        Returns:
            A local path, or a URI (``s3://bucket/prefix/stage/name``) that
            ``pyarrow.fs.FileSystem.from_uri`` resolves there.
        """
        path = self.path(stage, name) if name else self.stage_dir(stage)
        return f"{self.scheme}://{path}" if self.scheme else path

    def train_storage(self, stage: str, name: str) -> tuple[str, pafs.FileSystem | None]:
        """Ray Train's ``storage_path`` and ``storage_filesystem`` for ``<stage>/<name>``.

        Args:
            stage: Stage name.
            name: Subdirectory of the stage directory that Ray Train writes its run into.

        Returns:
            ``(storage_path, storage_filesystem)``: a local path with no filesystem (``None``), or the
            store's own filesystem with the path inside it.
        """
        return self.path(stage, name), (None if self.local else self.fs)

    def put_dir(self, stage: str, name: str, src: str, src_fs: pafs.FileSystem | None = None) -> None:
        """Replace directory ``<stage>/<name>`` by a copy of directory ``src``.

        The old directory is removed first, so no file of an older version remains.

        Args:
            stage: Stage name.
            name: Target subdirectory of the stage directory.
            src: Directory to copy, a path on ``src_fs``.
            src_fs: Filesystem of ``src``; ``None`` means the local disk.
        """
        self.delete_subdir(stage, name)
        self.fs.create_dir(self.path(stage, name), recursive=True)  # copy_files makes only subfolders
        pafs.copy_files(
            src,
            self.path(stage, name),
            source_filesystem=src_fs or pafs.LocalFileSystem(),
            destination_filesystem=self.fs,
        )

    def exists(self, stage: str, name: str) -> bool:
        """Whether the artifact exists.

        Args:
            stage: Stage name.
            name: Artifact name relative to the stage directory (a file or a directory).

        Returns:
            True when anything (file or directory) is at that path.
        """
        return self.fs.get_file_info(self.path(stage, name)).type != pafs.FileType.NotFound

    # ---- atomic writes -----------------------------------------------------------------------
    def _write(self, stage: str, name: str, write: Any) -> None:
        final = self.path(stage, name)
        self.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
        if not self.local:  # object stores: the manifest, written last, is the commit point
            with self.fs.open_output_stream(final) as out:
                write(out)
            return
        tmp = f"{final.rsplit('/', 1)[0]}/{TMP_MARK}{uuid.uuid4().hex}-{final.rsplit('/', 1)[1]}"
        try:
            with open(tmp, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def write_bytes(self, stage: str, name: str, data: bytes) -> None:
        """Write bytes atomically.

        Args:
            stage: Stage name.
            name: Artifact name relative to the stage directory; missing parent directories are created.
            data: The whole content of the file.
        """
        self._write(stage, name, lambda out: out.write(data))

    def write_json(self, stage: str, name: str, obj: Any) -> None:
        """Write one JSON document atomically.

        The document is indented with sorted keys; values JSON does not know are written as ``str(value)``.

        Args:
            stage: Stage name.
            name: Artifact name relative to the stage directory.
            obj: The JSON-able value to write.
        """
        self.write_bytes(stage, name, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def write_jsonl(self, stage: str, name: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Write rows as JSON lines atomically (rows are streamed, not held in memory).

        Args:
            stage: Stage name.
            name: Artifact name relative to the stage directory.
            rows: One mapping per line; values JSON does not know are written as ``str(value)``.

        Returns:
            The number of rows written.
        """
        count = 0

        def write(out: Any) -> None:
            nonlocal count
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False, default=str).encode() + b"\n")
                count += 1

        self._write(stage, name, write)
        return count

    def write_parquet(self, stage: str, name: str, table: pa.Table) -> int:
        """Write an Arrow table as Parquet atomically.

        Args:
            stage: Stage name.
            name: Artifact name relative to the stage directory (usually ending in ``.parquet``).
            table: The table to write.

        Returns:
            The number of rows written.
        """

        self._write(stage, name, lambda out: pq.write_table(table, out))
        return table.num_rows

    # ---- reads -------------------------------------------------------------------------------
    def read_bytes(self, stage: str, name: str) -> bytes:
        """Read a whole artifact.

        Args:
            stage: Stage name.
            name: Artifact name relative to the stage directory.

        Returns:
            The file's content.
        """
        with self.fs.open_input_stream(self.path(stage, name)) as f:
            return bytes(f.read())

    def read_json(self, stage: str, name: str) -> Any:
        """Read a JSON artifact.

        Args:
            stage: Stage name.
            name: Artifact name relative to the stage directory.

        Returns:
            The parsed JSON value.
        """
        return json.loads(self.read_bytes(stage, name))

    def iter_jsonl(self, stage: str, name: str) -> Iterator[dict[str, Any]]:
        """Stream the rows of a JSONL artifact (blank lines are skipped).

        Args:
            stage: Stage name.
            name: Artifact name relative to the stage directory.

        Yields:
            One parsed row per non-blank line, in file order.
        """
        with self.fs.open_input_stream(self.path(stage, name)) as f:
            for line in io.TextIOWrapper(f, encoding="utf-8"):  # type: ignore[arg-type]
                if line.strip():
                    yield json.loads(line)

    def read_parquet(self, stage: str, name: str) -> pa.Table:
        """Read a Parquet artifact (a file or a directory of files).

        Args:
            stage: Stage name.
            name: Artifact name relative to the stage directory: a Parquet file or a directory of them.

        Returns:
            The whole table.
        """
        return pq.read_table(self.path(stage, name), filesystem=self.fs)

    def list_files(self, stage: str) -> dict[str, int]:
        """Every file under a stage directory, temp files and manifest excluded.

        Args:
            stage: Stage name; a stage with no directory yet has no files.

        Returns:
            Relative name (``/``-separated, subdirectories included) -> size in bytes.
        """
        base = self.stage_dir(stage)
        sel = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        out: dict[str, int] = {}
        for info in self.fs.get_file_info(sel):
            if info.type != pafs.FileType.File:
                continue
            rel = info.path[len(base) + 1 :]
            if rel == MANIFEST or rel.rsplit("/", 1)[-1].startswith(TMP_MARK):
                continue
            out[rel] = int(info.size or 0)
        return out

    # ---- part files (resumable stages) -------------------------------------------------------
    def _subdir_infos(self, stage: str, subdir: str) -> list[pafs.FileInfo]:
        base = f"{self.stage_dir(stage)}/{subdir.strip('/')}"
        sel = pafs.FileSelector(base, recursive=False, allow_not_found=True)
        return [i for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.File]

    def list_parts(self, stage: str, subdir: str) -> list[str]:
        """Finished Parquet part files directly in ``<stage>/<subdir>``, as sorted artifact names.

        Temp files of unfinished writes are left out, and so are subdirectories of ``subdir``.

        Args:
            stage: Stage name.
            subdir: Subdirectory of the stage that holds the parts (leading/trailing ``/`` ignored).

        Returns:
            Artifact names ``subdir/part-....parquet``, sorted.
        """
        sub = subdir.strip("/")
        return sorted(
            f"{sub}/{i.base_name}"
            for i in self._subdir_infos(stage, sub)
            if i.base_name.endswith(".parquet") and not i.base_name.startswith(TMP_MARK)
        )

    def part_values(self, stage: str, subdir: str, column: str = "prompt_id") -> set[str]:
        """The values of one column over every finished part of ``subdir``.

        E.g. the prompt ids already written. Only that column is read from each part.

        Args:
            stage: Stage name.
            subdir: Subdirectory of the stage that holds the parts.
            column: Column to collect.

        Returns:
            The distinct values, each as ``str``.
        """
        done: set[str] = set()
        for name in self.list_parts(stage, subdir):
            table = pq.read_table(self.path(stage, name), columns=[column], filesystem=self.fs)
            done.update(str(v) for v in table.column(column).to_pylist())
        return done

    def iter_part_batches(
        self, stage: str, subdir: str, columns: list[str], batch_size: int = 1024
    ) -> Iterator[dict[str, list[Any]]]:
        """Stream the given columns of every finished part of ``subdir``, part by part, as column dicts.

        Args:
            stage: Stage name.
            subdir: Subdirectory of the stage that holds the parts.
            columns: Columns to read.
            batch_size: Most rows per yielded batch (a batch never spans two parts).

        Yields:
            Column name -> list of values, one dict per Parquet record batch, in part-name order.
        """
        for name in self.list_parts(stage, subdir):
            with self.fs.open_input_file(self.path(stage, name)) as f:
                for rb in pq.ParquetFile(f).iter_batches(columns=columns, batch_size=batch_size):
                    yield rb.to_pydict()

    def remove_temp_files(self, stage: str, subdir: str) -> int:
        """Delete leftover temp files of interrupted writes in ``<stage>/<subdir>``.

        Args:
            stage: Stage name.
            subdir: Subdirectory of the stage to clean (not recursive).

        Returns:
            How many temp files were deleted.
        """
        stale = [i.path for i in self._subdir_infos(stage, subdir) if i.base_name.startswith(TMP_MARK)]
        for path in stale:
            self.fs.delete_file(path)
        return len(stale)

    def delete_subdir(self, stage: str, subdir: str) -> None:
        """Delete ``<stage>/<subdir>`` and everything in it (nothing happens when it is absent).

        Args:
            stage: Stage name.
            subdir: Subdirectory of the stage to delete (leading/trailing ``/`` ignored).
        """
        base = f"{self.stage_dir(stage)}/{subdir.strip('/')}"
        if self.fs.get_file_info(base).type == pafs.FileType.Directory:
            self.fs.delete_dir(base)

    def clear(self, stage: str) -> None:
        """Delete a stage's artifacts (manifest first, so it is incomplete from the first moment).

        Args:
            stage: Stage name.
        """
        self.invalidate(stage)
        info = self.fs.get_file_info(self.stage_dir(stage))
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.stage_dir(stage))

    # ---- manifests ---------------------------------------------------------------------------
    def invalidate(self, stage: str) -> None:
        """Remove a stage's manifest: from now on the stage is incomplete.

        The artifacts themselves stay.

        Args:
            stage: Stage name.
        """
        p = self.path(stage, MANIFEST)
        if self.fs.get_file_info(p).type != pafs.FileType.NotFound:
            self.fs.delete_file(p)

    def manifest(self, stage: str) -> Manifest | None:
        """The stage's manifest, or None when absent or unreadable.

        Args:
            stage: Stage name.

        Returns:
            The manifest, or ``None`` when there is none or it does not parse as one.
        """
        if not self.exists(stage, MANIFEST):
            return None
        try:
            return Manifest.from_dict(self.read_json(stage, MANIFEST))
        except (ValueError, TypeError, KeyError):
            return None

    def manifest_hash(self, stage: str) -> str | None:
        """Hash of a stage's manifest file: downstream manifests record it.

        Args:
            stage: Stage name.

        Returns:
            SHA-256 hex digest of the manifest file's bytes, or ``None`` when the stage has no manifest.
        """
        if not self.exists(stage, MANIFEST):
            return None
        return hashlib.sha256(self.read_bytes(stage, MANIFEST)).hexdigest()

    def complete(
        self,
        stage: str,
        config_hash: str,
        upstream: Mapping[str, str],
        rows: Mapping[str, int] | None = None,
        metrics: Mapping[str, Any] | None = None,
        wall_time_s: float = 0.0,
        sticky: Mapping[str, Any] | None = None,
        plan: Any = None,
    ) -> Manifest:
        """Write the stage's manifest, last, listing every file it produced.

        The manifest also records the installed package versions, the finishing time (UTC) and a fresh
        ``run_id``, so a redone stage always invalidates its downstream.

        Args:
            stage: Stage name.
            config_hash: The stage key: hash of the stage plan's non-operational fields and of the
                external inputs it names.
            upstream: Upstream stage name -> that stage's manifest hash (see ``manifest_hash``).
            rows: Row counts by what was counted, e.g. ``{"pairs": 1200}``.
            metrics: Summary metrics of the run (JSON-able).
            wall_time_s: Wall-clock duration of the stage in seconds (rounded to milliseconds).
            sticky: Config values a later run may inherit.
            plan: The plan data the stage key hashes (``plan_key_data``), so a later run can name
                what changed.

        Returns:
            The manifest as written.
        """
        man = Manifest(
            stage=stage,
            config_hash=config_hash,
            upstream=dict(upstream),
            files=self.list_files(stage),
            rows=dict(rows or {}),
            metrics=dict(metrics or {}),
            versions=package_versions(),
            wall_time_s=round(wall_time_s, 3),
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            run_id=uuid.uuid4().hex,
            sticky=dict(sticky or {}),
            plan=plan,
        )
        self.write_json(stage, MANIFEST, man.to_dict())
        return man

    def is_complete(self, stage: str, config_hash: str, upstream: Mapping[str, str]) -> bool:
        """Whether the stage is complete for this config and upstream.

        That is: a manifest exists, matches config and upstream, and every listed file is there intact
        (same size).

        Args:
            stage: Stage name.
            config_hash: The stage's fingerprint under the config the caller would run it with.
            upstream: Upstream stage name -> manifest hash, as the caller sees them now.

        Returns:
            True when the stage's outputs can be reused as they are.
        """
        man = self.manifest(stage)
        if man is None or man.status != "complete":
            return False
        if man.config_hash != config_hash or man.upstream != dict(upstream):
            return False
        present = self.list_files(stage)
        return all(present.get(name) == size for name, size in man.files.items())


def file_sha256(path_or_uri: str) -> str:
    """SHA-256 of a file's bytes (a local path or a pyarrow.fs URI), streamed.

    Args:
        path_or_uri: A local path or a ``pyarrow.fs`` URI (``s3://...``).

    Returns:
        The hex digest.

    Raises:
        RlufError: The file cannot be read.
    """
    h = hashlib.sha256()
    for chunk in _chunks(path_or_uri):
        h.update(chunk)
    return h.hexdigest()


def read_file_bytes(path_or_uri: str) -> bytes:
    """A whole file's bytes, from a local path or a pyarrow.fs URI (what a driver reads from the store).

    Args:
        path_or_uri: A local path or a ``pyarrow.fs`` URI (``s3://...``).

    Returns:
        The file's bytes.

    Raises:
        RlufError: The file does not exist or cannot be read (one line naming it).
    """
    return b"".join(_chunks(path_or_uri))


def _chunks(path_or_uri: str) -> Iterator[bytes]:
    """A file's bytes in 1 MiB chunks; RlufError naming it when it cannot be read."""
    if is_uri(path_or_uri):
        fs, path = pafs.FileSystem.from_uri(path_or_uri)
    else:
        fs, path = pafs.LocalFileSystem(), os.path.abspath(path_or_uri)
    try:
        with fs.open_input_stream(path) as f:
            while chunk := f.read(1 << 20):
                yield chunk
    except (FileNotFoundError, OSError) as exc:
        from rluf_ray.errors import RlufError

        if isinstance(exc, FileNotFoundError) or "not found" in str(exc).lower():
            raise RlufError(f"file not found: {path_or_uri}") from None
        raise RlufError(f"cannot read {path_or_uri}: {exc.__class__.__name__}") from None


def manifest_digest(data: Mapping[str, Any]) -> str:
    """Stable digest of a JSON-able mapping (stage fingerprints, run names, tests and reports use it).

    Args:
        data: The mapping; key order does not matter, values JSON does not know count as ``str(value)``.

    Returns:
        SHA-256 hex digest of its canonical JSON form.
    """
    return hashlib.sha256(_canonical(data)).hexdigest()
