"""The console's level (``-v``, ``RLUF_LOG``), what reaches it, and the full log file under the output dir."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rluf_ray.common import console
from rluf_ray.judge.api import warn_missing


@pytest.fixture
def clean_logging() -> Iterator[None]:
    """Restore the root logger, the loggers' levels and the environment that ``setup_logging`` changes."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = (*console.OWN_LOGGERS, *console.NOISY_LIBRARIES)
    levels = {n: logging.getLogger(n).level for n in names}
    env = dict(os.environ)
    yield
    console.close_log_file()
    for h in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(h)
    root.setLevel(level)
    for n, lv in levels.items():
        logging.getLogger(n).setLevel(lv)
    os.environ.clear()
    os.environ.update(env)


def test_console_level_from_verbose_and_env() -> None:
    assert console.console_level(False, "") == "info"
    assert console.console_level(False, "DEBUG") == "debug"
    assert console.console_level(False, "warning") == "warning"
    assert console.console_level(False, "loud") == "info"  # unknown: the default
    assert console.console_level(True, "warning") == "debug"  # --verbose wins
    assert console.is_verbose("debug") and not console.is_verbose("info")


@pytest.mark.usefixtures("clean_logging")
def test_default_console_shows_judge_missing_warning_not_library_chatter(
    capsys: pytest.CaptureFixture[str],
) -> None:
    os.environ.pop(console.ENV, None)
    console.setup_logging(console.console_level(False))
    assert os.environ[console.ENV] == "info"  # exported for Ray's bootstrap and the workers
    logging.getLogger("rluf").info("feedback: running")
    logging.getLogger("matplotlib.font_manager").info("findfont: chatter")
    logging.getLogger("somelib.worker").info("Started training worker group")
    logging.getLogger("rluf.data").debug("a debug detail")
    assert warn_missing("feedback", 60, {"missing": 2, "missing_reasons": {"timeout": 2}})
    assert not warn_missing("feedback", 60, {"missing": 0})
    err = capsys.readouterr().err
    assert "feedback: running" in err
    assert "rluf.judge WARNING judge feedback: 2 of 60 calls recorded missing (timeout 2)" in err
    assert "findfont" not in err and "Started training worker group" not in err and "debug detail" not in err
    assert len(err.splitlines()) == 2


@pytest.mark.usefixtures("clean_logging")
def test_debug_console_shows_everything_and_warning_only_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    console.setup_logging(console.console_level(False, "debug"))
    logging.getLogger("somelib.worker").info("Started training worker group")
    logging.getLogger("rluf.data").debug("a debug detail")
    err = capsys.readouterr().err
    assert "Started training worker group" in err and "a debug detail" in err
    console.setup_logging("warning")  # replaces the console handler: one console line per record
    logging.getLogger("rluf").info("feedback: running")
    logging.getLogger("rluf").warning("something to act on")
    err = capsys.readouterr().err
    assert err.count("something to act on") == 1 and "feedback: running" not in err


@pytest.mark.usefixtures("clean_logging")
def test_log_file_keeps_more_than_the_console(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    console.setup_logging("info")
    sink = console.open_log_file(str(tmp_path / "logs"))
    logging.getLogger("rluf.data").debug("a debug detail")
    logging.getLogger("somelib.worker").info("Started training worker group")
    console.sync_logs()
    text = Path(sink.local_path).read_text()
    assert sink.local_path == str(tmp_path / "logs" / console.LOG_NAME)
    assert "a debug detail" in text and "Started training worker group" in text
    assert capsys.readouterr().err == ""
    console.close_log_file()
    logging.getLogger("rluf").info("after close")
    assert "after close" not in Path(sink.local_path).read_text()


@pytest.mark.usefixtures("clean_logging")
def test_remote_log_is_uploaded_at_each_sync() -> None:
    uploads: list[bytes] = []
    console.setup_logging("info")
    sink = console.open_log_file(None, uploads.append)  # an s3:// output: a local temp file, uploaded
    logging.getLogger("rluf").info("sft: done")
    console.sync_logs()
    logging.getLogger("rluf").info("generate: done")
    console.close_log_file()
    assert not sink.local_path.startswith(os.getcwd())
    assert len(uploads) == 2 and b"sft: done" in uploads[0] and b"generate: done" in uploads[1]
