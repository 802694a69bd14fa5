"""The ``rluf`` command line: the project's only argument parser."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rluf_ray import __version__
from rluf_ray.arms import TRAIN_ARMS
from rluf_ray.common import console
from rluf_ray.config import ConfigError, RlufConfig, load
from rluf_ray.errors import RlufError, StageNotBuilt
from rluf_ray.runtime.bootstrap import record_sessions_in
from rluf_ray.stages.registry import ORDER

if TYPE_CHECKING:
    from rluf_ray.store.artifacts import ArtifactStore

EXIT_CONFIG = 2
BENCHES = ("generate", "scale", "judge", "calibrate", "dpo")


def _common(p: argparse.ArgumentParser, force: bool = True) -> None:
    p.add_argument("--config", help="YAML config (default: the embedded tiny_cpu.yaml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set generation.sampling_num=20 (repeatable)",
    )
    p.add_argument("--output-dir", help="artifact root (overrides output_dir)")
    if force:
        p.add_argument(
            "--force", action="store_true", help="redo the stage even if its artifacts are complete"
        )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show everything on the console: debug lines, libraries' and Ray's chatter (as RLUF_LOG=debug)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs).

    Returns:
        The ``rluf`` parser: one subcommand per stage, plus ``run-all``, ``status`` and ``bench``.
    """
    parser = argparse.ArgumentParser(prog="rluf", description="Conformal Feedback Alignment on Ray.")
    parser.add_argument("--version", action="version", version=f"rluf-ray {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in ORDER:
        p = sub.add_parser(name, help=f"run the {name} stage")
        _common(p)
        if name == "calibrate":
            p.add_argument("--quantile", type=float, help="run one miscoverage level alpha (e.g. 0.2)")
        if name == "train":
            p.add_argument("--pairs", help="train on an external weighted pairs JSONL")
            p.add_argument(
                "--arm",
                choices=TRAIN_ARMS,
                help="train only this arm's units (the stage completes once every dpo.arms unit exists)",
            )
        if name in ("generate", "feedback", "evaluate"):
            p.add_argument("--dry-run", action="store_true", help="print judge calls and cost, call nothing")
    p = sub.add_parser("run-all", help="run every stage in order, skipping complete ones")
    _common(p)
    p = sub.add_parser("status", help="each stage (and training unit): complete, stale (why) or missing")
    _common(p, force=False)
    p = sub.add_parser("bench", help="side-by-side benchmarks (last line: JSON)")
    p.add_argument("name", choices=BENCHES)
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    return parser


def _config(args: argparse.Namespace) -> RlufConfig:
    overrides = list(args.overrides)
    if getattr(args, "quantile", None) is not None:
        overrides.append(f"conformal.quantile_bars=[{args.quantile}]")
    if getattr(args, "pairs", None):
        overrides.append(f"dpo.pairs_path={args.pairs}")
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    return load(args.config, overrides)


def _run_bench(name: str, argv: list[str]) -> int:
    try:
        mod = importlib.import_module(f"rluf_ray.bench.{name}")
    except ModuleNotFoundError as exc:
        if exc.name in (f"rluf_ray.bench.{name}", "rluf_ray.bench"):
            raise StageNotBuilt(f"benchmark '{name}' is not built yet") from None
        raise
    return int(mod.main(argv) or 0)


def _print_status(cfg: RlufConfig, store: ArtifactStore) -> int:
    from rluf_ray.status import format_status, pipeline_status

    print("\n".join(format_status(pipeline_status(cfg, store), str(cfg.output_dir))))
    return 0


def _open_log(store: ArtifactStore) -> None:
    """Start the full log, ``<output_dir>/logs/rluf.log`` (for a remote output: a local file uploaded)."""
    local = os.path.join(store.root, console.LOG_STAGE) if store.local else None
    sink = console.open_log_file(
        local, lambda data: store.write_bytes(console.LOG_STAGE, console.LOG_NAME, data)
    )
    logging.getLogger("rluf").debug(
        "full log: %s (rluf %s, argv %s)", sink.local_path, __version__, sys.argv[1:]
    )


def _close_log(store: ArtifactStore) -> None:
    """Keep this run's Ray session logs under ``<output_dir>/logs/ray/<session>/``, then close (and
    upload) the full log."""
    try:
        src = _ray_log_dir()
        if src is not None:
            name = f"ray/{os.path.basename(os.path.dirname(src))}"  # session_<date>_<pid>
            if store.local:
                dest = os.path.join(store.root, console.LOG_STAGE, name)
                shutil.copytree(src, dest, dirs_exist_ok=True, ignore_dangling_symlinks=True)
            else:
                store.put_dir(console.LOG_STAGE, name, src)
    except (OSError, shutil.Error) as exc:  # a log being written or removed while copied
        logging.getLogger("rluf").warning("Ray's logs not kept under %s/logs: %s", store.root, exc)
    console.close_log_file()


def _reap_and_record(store: ArtifactStore, record: bool) -> None:
    """Stop what a killed earlier driver of this output dir left of its local Ray, then (``record``)
    have this command record the local Ray it starts (a local output dir only: the record is per
    machine)."""
    if not store.local:
        return
    from rluf_ray.runtime.orphans import reap_dead_driver

    folder = os.path.join(store.root, console.LOG_STAGE)
    reap_dead_driver(folder)
    if record:
        record_sessions_in(folder)


def _ray_log_dir() -> str | None:
    if "ray" not in sys.modules:  # this command never started Ray: nothing to keep, and no import
        return None
    from rluf_ray.runtime.bootstrap import ray_log_dir

    return ray_log_dir()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rluf`` and ``python -m rluf_ray``.

    Args:
        argv: The command-line arguments (without the program name); None for ``sys.argv[1:]``.

    Returns:
        The exit code: 0 on success, ``EXIT_CONFIG`` on a config error, the error's ``exit_code`` on
        an ``RlufError``, 130 when interrupted.
    """
    args = build_parser().parse_args(argv)
    console.setup_logging(console.console_level(getattr(args, "verbose", False)))
    store: ArtifactStore | None = None
    try:
        if args.command == "bench":
            return _run_bench(args.name, list(args.bench_args))
        cfg = _config(args)
        from rluf_ray.pipeline import run_all, run_tracked
        from rluf_ray.store.artifacts import ArtifactStore

        store = ArtifactStore(cfg.output_dir)
        if args.command == "status":
            return _print_status(cfg, store)
        if not getattr(args, "dry_run", False):  # a dry run writes nothing, its log neither
            _open_log(store)
        _reap_and_record(store, record=not getattr(args, "dry_run", False))
        if args.command == "run-all":
            run_all(cfg, store, force=args.force)
            print(store.path("report", "index.html"))  # the page to open first, printed last
        else:
            options: dict[str, object] = {"dry_run": bool(getattr(args, "dry_run", False))}
            if getattr(args, "arm", None):
                options["arm"] = args.arm
            run_tracked(cfg, store, [args.command], args.command, force=args.force, options=options)
        return 0
    except ConfigError as exc:
        print(f"rluf: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RlufError as exc:
        print(f"rluf: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rluf: interrupted; finished work is kept, rerun to resume", file=sys.stderr)
        return 130
    finally:
        if store is not None:
            _close_log(store)
            record_sessions_in(None)  # a later main() in this process records only if it asks


if __name__ == "__main__":
    raise SystemExit(main())
