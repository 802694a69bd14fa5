"""Search what a run left behind for a secret's bytes."""

from __future__ import annotations

from pathlib import Path


def files_holding(root: Path, secret: bytes) -> list[str]:
    """Every file under ``root`` whose bytes contain ``secret`` (unreadable files are passed over)."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if secret in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                pass
    return hits
