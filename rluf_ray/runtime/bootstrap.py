"""Ray bootstrap in one place: join the job's cluster when there is one, else start a local Ray."""

from __future__ import annotations

import functools
import gc
import logging
import os
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from rluf_ray.common import console
from rluf_ray.common.frames import drop_frames, trim_tracebacks
from rluf_ray.errors import RlufError

log = logging.getLogger("rluf.ray")
P = ParamSpec("P")
R = TypeVar("R")

# Environment that every worker must share with the driver (offline hub, FastText determinism), passed
# as the runtime env of a driver that starts or joins Ray itself (never under ``ray job submit``).
PROPAGATED_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "PYTHONHASHSEED",
                  "TOKENIZERS_PARALLELISM")  # fmt: skip
# The console's level and the libraries' quiet switches (``rluf_ray.common.console``): the workers print
# to the driver's console too (``log_to_driver``), so they take the same level.
CONSOLE_ENV = (console.ENV, *console.QUIET_ENV)


def cluster_address() -> str | None:
    """The cluster to join: RAY_ADDRESS (set by ``ray job submit`` for drivers), else None.

    Returns:
        The address (stripped), or ``None`` when RAY_ADDRESS is unset or blank.
    """
    addr = os.environ.get("RAY_ADDRESS", "").strip()
    return addr or None


def in_submitted_job() -> bool:
    """Whether this process is the driver of a ``ray job submit`` job.

    Ray's job supervisor sets RAY_JOB_CONFIG_JSON_ENV_VAR (the job's runtime env and metadata) for the
    entrypoint; the job's runtime env then already applies to every worker of the job.

    Returns:
        True when RAY_JOB_CONFIG_JSON_ENV_VAR is set and not empty.
    """
    return bool(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"))


def local_init_kwargs(num_cpus: int | None = None) -> dict[str, Any]:
    """Arguments for a local Ray sized to this machine, with no dashboard and quiet logs.

    Args:
        num_cpus: CPUs the local Ray offers; ``None`` (or 0) for every CPU of this machine.

    Returns:
        Keyword arguments for ``ray.init``.
    """
    return {
        "num_cpus": num_cpus or os.cpu_count() or 1,
        "include_dashboard": False,
        "log_to_driver": True,
        "configure_logging": False,
    }


def driver_runtime_env() -> dict[str, Any] | None:
    """The runtime env a driver passes to ``ray.init``.

    Returns:
        ``None`` inside a submitted job (Ray refuses env vars set both by the job and by ``ray.init``);
        else ``env_vars`` with the PROPAGATED_ENV and CONSOLE_ENV variables this process has (left out
        when none) and, unless the console shows everything, the ``quiet_worker`` set-up hook; None
        when that leaves nothing.
    """
    if in_submitted_job():
        return None
    env_vars = {k: os.environ[k] for k in (*PROPAGATED_ENV, *CONSOLE_ENV) if k in os.environ}
    env: dict[str, Any] = {"env_vars": env_vars} if env_vars else {}
    if not console.is_verbose():
        env["worker_process_setup_hook"] = quiet_worker
    return env or None


PG_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"
"""Ray Train v2's PlacementGroupCleaner: it asks the State API whether the Train controller still lives,
once a second, and warns each time the State API cannot answer."""


def quiet_worker() -> None:
    """Ray worker set-up hook (``worker_process_setup_hook``, unless the console shows everything).

    Ray Train v2's PlacementGroupCleaner warns about twice a second that the State API is unavailable:
    the State API lives in the dashboard, which a local Ray here starts without (``include_dashboard``
    off; on, it costs about 0.9 GiB and 3-6 s of start-up on 2 cores), and even with the dashboard the
    cleaner's client finds no cluster where several Ray instances share the machine (a worker has no
    RAY_ADDRESS, and Ray 2.60's State API client then refuses to pick one). The cleaner only removes a
    placement group whose controller died, which a local Ray does at shutdown anyway, so its logger is
    kept at ERROR; the warning stays in Ray's worker log under ``logs/``. The worker's RAY_ADDRESS is set
    to its own cluster, so that the client never fails with "multiple active Ray instances" (an
    uncaught ConnectionError that ended the cleaner's thread with a traceback on the console).
    """
    logging.getLogger(PG_CLEANER_LOGGER).setLevel(logging.ERROR)
    if not os.environ.get("RAY_ADDRESS"):  # the State API client's cluster: this worker's own, not a guess
        import ray

        try:
            os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
        except Exception as exc:  # noqa: BLE001 - a set-up hook that raises would fail the worker
            logging.getLogger("rluf.ray").debug("worker RAY_ADDRESS not set: %s", exc)


def ensure_ray(num_cpus: int | None = None, **overrides: Any) -> None:
    """Initialise Ray once per process (nothing happens when Ray is already initialised).

    It joins the job's cluster under ``ray job submit``, the cluster at RAY_ADDRESS when set, else
    starts a local one.

    Args:
        num_cpus: CPUs of a local Ray (see ``local_init_kwargs``); ignored when joining a cluster.
        **overrides: More ``ray.init`` keyword arguments; for a local Ray they replace the defaults
            of ``local_init_kwargs``.
    """
    import ray

    if ray.is_initialized():
        return
    addr = cluster_address()
    runtime_env = driver_runtime_env()
    if addr:
        log.info("joining Ray cluster at %s%s", addr, " (submitted job)" if runtime_env is None else "")
        started = ray.init(address=addr, runtime_env=runtime_env, **overrides)
    else:
        kwargs = local_init_kwargs(num_cpus)
        kwargs.update(overrides)
        log.info("starting a local Ray with %s CPUs", kwargs["num_cpus"])
        started = ray.init(runtime_env=runtime_env, **kwargs)
    info = getattr(started, "address_info", None) or {}  # ray.init's RayContext (a client context has none)
    _SESSION_DIR[0] = info.get("session_dir")
    if not addr:
        _record_local_session(_SESSION_DIR[0])
    quiet_ray_data()


_RECORD_DIR: list[str | None] = [None]
"""Where :func:`ensure_ray` records the local Ray it starts (see :func:`record_sessions_in`)."""


def record_sessions_in(folder: str | None) -> None:
    """Have :func:`ensure_ray` record the local Ray session it starts in ``folder``.

    The record (``ray_session.json``: session dir, this driver's pid and start time) lets the next
    command on the same output dir stop what a killed driver left of its Ray
    (:func:`rluf_ray.runtime.orphans.reap_dead_driver`). A joined cluster is never recorded.

    Args:
        folder: The output dir's logs folder; None to record nothing.
    """
    _RECORD_DIR[0] = folder


def _record_local_session(session_dir: str | None) -> None:
    """Write the record of the local Ray just started, when a folder was set and Ray named its session."""
    folder = _RECORD_DIR[0]
    if not folder or not session_dir:
        return
    from rluf_ray.runtime import orphans

    try:
        path = orphans.write_record(folder, orphans.this_session(session_dir))
        log.debug("Ray session recorded in %s", path)
    except OSError as exc:
        log.warning("Ray session not recorded in %s: %s", folder, exc)


def quiet_ray_data() -> None:
    """Keep Ray Data's progress bars and execution dumps off the console unless it shows everything.

    Ray Data's ``ray.data`` logger has its own console handler (``propagate`` off); its level becomes
    WARNING. Its session log file (``logs/ray-data/``) still gets everything.
    """
    if console.is_verbose():
        return
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.execution_options.verbose_progress = False
    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler) and type(handler).__name__ != "SessionFileHandler":
            handler.setLevel(logging.WARNING)


_SESSION_DIR: list[str | None] = [None]
"""The session dir that ``ray.init`` reported when :func:`ensure_ray` started or joined Ray."""


def ray_log_dir() -> str | None:
    """The logs folder of the Ray session :func:`ensure_ray` started or joined (when on this machine).

    Returns:
        ``<session dir>/logs`` when Ray is initialised through :func:`ensure_ray` and the folder exists
        here, else None.
    """
    import ray

    session = _SESSION_DIR[0]
    if not ray.is_initialized() or not session:
        return None
    path = os.path.join(session, "logs")
    return path if os.path.isdir(path) else None


def releases_on_error(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a function that runs a Ray Data pipeline: if it fails, its actors are freed at once.

    Why: the exception keeps the failed execution, and with it the engine actor's handle. Ray Data
    re-raises a failed task's error in the driver; its tracebacks (its context's included: the end of
    the task's output stream, raised on Ray Data's scheduling thread) keep finished frames, and a
    finished frame keeps its locals, its callers (``f_back``) and its function's closure. Those hold
    the failed task (whose done-callback holds the actor handle) and Ray Data's iterators (which hold
    the dataset, its executor, and the executor's metadata fetcher holds the tasks still in flight).
    Ray Data's own shutdown of the failed execution drops the actor pool's handles, not those, so the
    engine actor (and its CPUs/GPUs) lived as long as the exception (pytest, a notebook, run-all's
    error report). Here every finished frame the exception holds is cleared
    (:func:`rluf_ray.common.frames.drop_frames`), its tracebacks are cut at the first frame outside
    rluf_ray (:func:`rluf_ray.common.frames.trim_tracebacks`) and cycles are collected: the last handle
    goes, the actor exits gracefully and its UDF closes its engine (``SampleUDF.__del__``). The
    exception is re-raised with its type, message and chain; its traceback keeps rluf_ray's frames.

    Args:
        fn: The function that runs the pipeline.

    Returns:
        A wrapper with ``fn``'s signature, name and docstring.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            drop_frames(exc)
            trim_tracebacks(exc, __name__.split(".")[0])  # cleared frames still hold their closures
            gc.collect()  # the executor and its operators reference each other
            raise

    return wrapper


def user_error(exc: BaseException) -> RlufError | None:
    """The RlufError inside a Ray task failure (its first line), if that is what it was.

    The chain is followed through a Ray error's ``cause``, then ``__cause__``/``__context__``, at
    most ten levels deep.

    Args:
        exc: The exception the driver caught.

    Returns:
        A new RlufError with the first line of the one found, or ``None`` when there is none.
    """
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 10:
        if isinstance(cur, RlufError):
            return RlufError(str(cur).splitlines()[0])
        inner = getattr(cur, "cause", None)
        cur = inner if isinstance(inner, BaseException) else (cur.__cause__ or cur.__context__)
        seen += 1
    return None
