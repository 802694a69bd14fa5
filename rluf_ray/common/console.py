"""The console and the full log: which level the console shows, and where everything else goes.

The CLI decides once (:func:`setup_logging`): ``-v/--verbose`` or ``RLUF_LOG=debug`` shows everything;
the default (``RLUF_LOG=info``) shows the project's own INFO lines (stage start and end, progress) and
only the warnings and errors of every other library; ``RLUF_LOG=warning`` shows warnings and errors
alone. The decision is exported as ``RLUF_LOG`` so that Ray's bootstrap and the Ray workers (which
inherit the driver's environment through the runtime env) take the same one.

The full log, the project's DEBUG lines and the libraries' INFO lines included, goes to
``<output_dir>/logs/rluf.log``. For a remote output (``s3://``) it is written to a local temporary file
and uploaded through the artifact store by :func:`sync_logs` (the pipeline calls it at each stage's end).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

ENV = "RLUF_LOG"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
OWN_LOGGERS = ("rluf",)
"""The project's logger names: the console shows their INFO lines; every other logger's only from WARNING."""
LOG_STAGE = "logs"
LOG_NAME = "rluf.log"
CONSOLE_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
FILE_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"


def console_level(verbose: bool = False, env: str | None = None) -> str:
    """The console's level name, from ``--verbose`` and ``RLUF_LOG``.

    Args:
        verbose: ``-v/--verbose`` was given (wins over ``RLUF_LOG``).
        env: The value of ``RLUF_LOG``; None reads the environment. Unknown or empty: ``info``.

    Returns:
        ``"debug"``, ``"info"`` or ``"warning"``.
    """
    if verbose:
        return "debug"
    value = (os.environ.get(ENV, "") if env is None else env).strip().lower()
    return value if value in LEVELS else "info"


def is_verbose(env: str | None = None) -> bool:
    """Whether the console shows everything (``RLUF_LOG=debug``): libraries' chatter, Ray's progress.

    Args:
        env: The value of ``RLUF_LOG``; None reads the environment.

    Returns:
        True for ``debug``.
    """
    return console_level(False, env) == "debug"


class ConsoleFilter(logging.Filter):
    """Pass the project's records from ``level`` on, every other logger's from WARNING (all when DEBUG)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether the record reaches the console.

        Args:
            record: The log record.

        Returns:
            True when it is the project's and at least ``level``, or anyone's and at least
            ``max(level, WARNING)``; everything at DEBUG.
        """
        if self.level <= logging.DEBUG:
            return True
        own = any(record.name == n or record.name.startswith(n + ".") for n in OWN_LOGGERS)
        return record.levelno >= (self.level if own else max(self.level, logging.WARNING))


@dataclass
class LogSink:
    """Where the full log is written (``local_path``) and, for a remote output, how it is uploaded.

    Attributes:
        local_path: The log file on this machine.
        upload: Called with the file's bytes to store it under the output dir; None when the file
            already lies there.
    """

    local_path: str
    upload: Callable[[bytes], None] | None = None
    handlers: list[logging.Handler] = field(default_factory=list)

    def sync(self) -> None:
        """Flush the file and, for a remote output, upload it (a failed upload is logged, not raised)."""
        for h in self.handlers:
            h.flush()
        if self.upload is None:
            return
        try:
            with open(self.local_path, "rb") as f:
                self.upload(f.read())
        except Exception as exc:  # noqa: BLE001 - the log must never fail the run
            logging.getLogger("rluf").warning("could not upload the log %s: %s", self.local_path, exc)


_SINK: LogSink | None = None


def _console_handler(level: int) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(CONSOLE_FORMAT, datefmt="%H:%M:%S"))
    handler.addFilter(ConsoleFilter(level))
    return handler


def setup_logging(level_name: str) -> None:
    """Configure the root logger: one console handler at ``level_name``; export ``RLUF_LOG``.

    The project's loggers log from DEBUG (the file keeps them), libraries from INFO (from DEBUG when
    the console is at DEBUG). Calling it again replaces the console handler.

    Args:
        level_name: ``"debug"``, ``"info"`` or ``"warning"`` (see :func:`console_level`).
    """
    level = LEVELS[level_name]
    os.environ[ENV] = level_name
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_rluf_console", False)]:
        root.removeHandler(h)
    handler = _console_handler(level)
    handler._rluf_console = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if level <= logging.DEBUG else logging.INFO)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    quiet_libraries(level)


NOISY_LIBRARIES = ("matplotlib", "absl", "urllib3", "filelock", "fsspec", "PIL", "httpx", "h5py")
"""Libraries whose INFO or DEBUG lines are chatter: WARNING and up only, unless the console is at DEBUG."""
QUIET_ENV = {
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",  # datasets' map/filter bars (tokenising in SFT and DPO)
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" / "Writing model shards" bars
    "TRANSFORMERS_VERBOSITY": "warning",
    "TF_CPP_MIN_LOG_LEVEL": "2",  # absl/TensorFlow C++ INFO lines, where a library pulls them in
}
"""Environment that keeps libraries' progress bars and INFO lines off the console (set unless already set);
the Ray workers get it through the driver's runtime env."""


def quiet_libraries(level: int) -> None:
    """Keep noisy libraries' loggers at WARNING and set ``QUIET_ENV`` (nothing when ``level`` is DEBUG).

    Args:
        level: The console's level.
    """
    if level <= logging.DEBUG:
        return
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def open_log_file(local_dir: str | None, upload: Callable[[bytes], None] | None = None) -> LogSink:
    """Add a DEBUG file handler for the full log; remember it for :func:`sync_logs`.

    Args:
        local_dir: The local ``<output_dir>/logs`` directory; None for a remote output (a temporary
            directory is used and ``upload`` stores the file).
        upload: Stores the file's bytes under the output dir (remote outputs only).

    Returns:
        The sink (its ``local_path`` is the file).
    """
    global _SINK
    close_log_file()
    folder = local_dir or tempfile.mkdtemp(prefix="rluf-logs-")
    os.makedirs(folder, exist_ok=True)
    handler = logging.FileHandler(os.path.join(folder, LOG_NAME), encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    logging.getLogger().addHandler(handler)
    _SINK = LogSink(handler.baseFilename, None if local_dir else upload, [handler])
    return _SINK


def sync_logs() -> None:
    """Flush the full log and upload it when the output is remote (nothing without a log file)."""
    if _SINK is not None:
        _SINK.sync()


def close_log_file() -> None:
    """Sync, remove and close the file handler of :func:`open_log_file` (nothing when none is open)."""
    global _SINK
    if _SINK is None:
        return
    _SINK.sync()
    for h in _SINK.handlers:
        logging.getLogger().removeHandler(h)
        h.close()
    _SINK = None
