"""Judge template files: read ``<directory>/<version>.txt`` (the packaged ``rluf_ray/prompts`` by
default) once per process, and render requests with them. Parsing and filling are pure
(``rluf_ray.judge.requests``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from rluf_ray.judge.requests import JudgeRequest, Template, check_version, parse_template, render

PROMPT_DIR = Path(__file__).resolve().parent.parent / "prompts"


@lru_cache(maxsize=32)
def load_template(version: str, directory: str | None = None) -> Template:
    """Read and parse the template ``version`` from ``directory`` (the packaged prompts by default).

    Cached per process (32 entries), so an edited file is read again only by a new process.

    Args:
        version: The template version; the file is ``<directory>/<version>.txt``.
        directory: Where the template files are; None or empty: the packaged ``rluf_ray/prompts``.

    Returns:
        The parsed template.

    Raises:
        ValueError: ``version`` is not a safe name, or the file lacks a section.
        FileNotFoundError: There is no such file.
    """
    check_version(version)  # before touching the filesystem: no path tricks
    path = Path(directory) if directory else PROMPT_DIR
    return parse_template((path / f"{version}.txt").read_text(encoding="utf-8"), version)


def render_request(request: JudgeRequest, directory: str | None = None) -> list[dict[str, str]]:
    """The chat messages of a request, rendered with its template version.

    Args:
        request: The request.
        directory: Where the template files are; None: the packaged prompts.

    Returns:
        The ``system`` and ``user`` messages (``role``, ``content``).
    """
    return render(load_template(request.version, directory), request)
