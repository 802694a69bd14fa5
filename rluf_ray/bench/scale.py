"""``rluf bench scale``: the real generate stage over K simulated GPU engines on a local multi-node Ray.

This machine cannot show many GPUs, so it shows the orchestration: for each K of ``--actors`` a local
cluster (``rluf_ray.bench.local_cluster``: a head that takes no work, ``--nodes`` worker nodes) runs
``rluf generate`` (Ray Data, K engine actors, Parquet part files, the manifest) on the embedded demo's
prompts, its engine replaced through the stage's engine factory by a latency engine
(:mod:`rluf_ray.bench.latency_engine`: it sleeps as a GPU vLLM engine would, compressed in time by
``--compression``, and returns outputs of real size). Each engine gets at least ``--min-batches``
engine calls; the largest K also runs ``--prompts-largest`` prompts (default 100,000), so the driver's
memory can be compared across prompt counts. Each run is a child process (its own driver peak RSS).

Ideal: every engine busy all the time, so the run takes (sum of the calls' simulated seconds) /
(compression x K). ``efficiency`` is ideal over the engines' window (first call's start to last call's
end); ``efficiency_end_to_end`` over the whole stage (cluster already up; actor start included). The
last line is a JSON object with, per run, K, prompts, both efficiencies, the driver's peak RSS and the
object store's spilled bytes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB).

    Returns:
        ``ru_maxrss / 1024``: MiB where ``ru_maxrss`` is in KiB, as on Linux.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def spilled_bytes(address: str) -> int | None:
    """Bytes the cluster's object stores spilled to disk so far, from ``ray memory --stats-only``.

    Ray prints a ``Spilled N MiB`` line only once something was spilled, so no such line is 0.

    Args:
        address: The GCS address.

    Returns:
        The spilled bytes over every node (MiB resolution), or None when the command failed.
    """
    ray_bin = str(Path(sys.executable).with_name("ray"))
    try:
        proc = subprocess.run([ray_bin, "memory", "--stats-only", f"--address={address}"],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 or "object store stats" not in proc.stdout:
        return None
    found = re.search(r"Spilled (\d+) MiB", proc.stdout)
    return int(found.group(1)) * 1024 * 1024 if found else 0


def efficiency(
    events: list[dict[str, Any]], actors: int, compression: float, stage_s: float
) -> dict[str, float]:
    """Achieved over ideal, from the engines' timed calls.

    Args:
        events: ``stage_timing.read_events`` of the run; each call carries ``simulated_s``.
        actors: K, the engine actors.
        compression: The latency engine's time compression.
        stage_s: The stage's wall seconds.

    Returns:
        ``ideal_s`` (simulated seconds of all calls / compression / K), ``window_s`` (first call start
        to last call end), ``efficiency`` (ideal / window), ``efficiency_end_to_end`` (ideal / stage),
        ``busy_share`` (time in calls over K x window), ``first_call_spread_s`` and
        ``last_call_spread_s`` (how far apart the engines' first calls began and last calls ended:
        staggered starts and an uneven tail), ``engine_calls`` and ``engines_seen`` (distinct actor
        processes that made calls).

    Raises:
        ValueError: No call was recorded.
    """
    calls = [e for e in events if e["kind"] == "generate"]
    if not calls:
        raise ValueError("no engine call was recorded")
    ideal = sum(c["simulated_s"] for c in calls) / compression / actors
    window = max(c["end"] for c in calls) - min(c["start"] for c in calls)
    firsts: dict[int, float] = {}
    lasts: dict[int, float] = {}
    for c in calls:
        firsts[c["pid"]] = min(firsts.get(c["pid"], c["start"]), c["start"])
        lasts[c["pid"]] = max(lasts.get(c["pid"], c["end"]), c["end"])
    busy = sum(c["end"] - c["start"] for c in calls)
    return {
        "ideal_s": ideal,
        "window_s": window,
        "busy_share": busy / (actors * window) if window > 0 else 0.0,
        "first_call_spread_s": max(firsts.values()) - min(firsts.values()),
        "last_call_spread_s": max(lasts.values()) - min(lasts.values()),
        "efficiency": ideal / window if window > 0 else 0.0,
        "efficiency_end_to_end": ideal / stage_s if stage_s > 0 else 0.0,
        "engine_calls": float(len(calls)),
        "engines_seen": float(len({c["pid"] for c in calls})),
    }


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """One K and one prompt count, in this process: start the cluster, run generate, stop it.

    Args:
        args: The parsed command line; ``child_actors`` and ``child_prompts`` give this run's size.

    Returns:
        The run's figures (see the module docstring).
    """
    from rluf_ray.bench.latency_engine import LatencyEngineFactory, LatencyModel
    from rluf_ray.bench.local_cluster import NODE_ENV, local_cluster
    from rluf_ray.bench.stage_timing import TimedEngineFactory, read_events

    k, n = args.child_actors, args.child_prompts
    nodes = min(args.nodes, k)
    per_node = math.ceil(k / nodes)
    out = Path(tempfile.mkdtemp(prefix=f"rluf-scale-{k}-"))
    os.environ.update(NODE_ENV)
    latency = LatencyModel(args.prefill, args.step_ms / 1000, args.max_seqs, args.compression)
    with local_cluster({"rluf_worker": per_node}, head_cpus=0, worker_cpus=per_node, env=NODE_ENV,
                       workers=nodes, object_store_bytes=args.object_store_mb * 1_000_000) as cluster:  # fmt: skip
        os.environ["RAY_ADDRESS"] = cluster.address
        from rluf_ray.config import load
        from rluf_ray.pipeline import run_stage, stage_fingerprint
        from rluf_ray.runtime.bootstrap import ensure_ray
        from rluf_ray.stages.registry import get
        from rluf_ray.store.artifacts import ArtifactStore

        cfg = load(
            overrides=[
                f"data.demo.calibration_docs={n}", f"data.calibration_size={n}",
                f"data.demo.test_docs={args.batch}", f"data.test_size={args.batch}",
                f"generation.sampling_num={args.samples}", f"generation.max_new_tokens={args.new_tokens}",
                f"generation.prompts_per_batch={args.batch}", f"generation.rows_per_file={args.rows_per_file}",
                "generation.score_calibration=false", "model.max_context=4096",
                f"resources.engine_actors={k}", "resources.cpus_per_actor=1",
                "resources.custom_resources.rluf_worker=1", f"output_dir={out}", "shared_output_dir=true",
            ]
        )  # fmt: skip
        store = ArtifactStore(out)
        store.complete("sft", stage_fingerprint(cfg, get("sft")), {})
        events = out / "engine_events.jsonl"
        factory = TimedEngineFactory(LatencyEngineFactory(latency, seed=k), str(events))
        ensure_ray()
        before = peak_rss_mib()
        t0 = time.perf_counter()
        man = run_stage(cfg, store, "generate", force=True, options={"engine_factory": factory})
        stage_s = time.perf_counter() - t0
        spill = spilled_bytes(cluster.address)
        import ray

        ray.shutdown()
    if man is None:
        raise SystemExit("rluf bench scale: the generate stage did not complete")
    eff = efficiency(read_events(events), k, args.compression, stage_s)
    shutil.rmtree(out, ignore_errors=True)  # 100,000 prompts x 60 samples are about 2 GB of parts
    prompts = sum(man.rows.values())
    return {
        "actors": k,
        "worker_nodes": nodes,
        "prompts": prompts,
        "samples": prompts * args.samples,
        "batches_per_engine": round(eff["engine_calls"] / k, 1),
        "stage_s": round(stage_s, 1),
        **{key: round(v, 3) for key, v in eff.items()},
        "samples_per_s": round(prompts * args.samples / stage_s, 1),
        "driver_peak_rss_before_mib": round(before, 1),
        "driver_peak_rss_mib": round(peak_rss_mib(), 1),
        "spilled_bytes": spill,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rluf bench scale", description=__doc__.splitlines()[0])
    p.add_argument("--actors", default="4,16,32", help="engine actor counts K, comma-separated")
    p.add_argument("--nodes", type=int, default=4, help="local worker nodes (the K actors spread over them)")
    p.add_argument("--min-batches", type=int, default=50, help="engine calls per engine, at least")
    p.add_argument(
        "--prompts-largest", type=int, default=100_000, help="prompts of the extra run at the largest K"
    )
    p.add_argument("--samples", type=int, default=60, help="samples per prompt (N)")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--batch", type=int, default=4, help="prompts per engine call (4 x 60 = 240 sequences)")
    p.add_argument("--rows-per-file", type=int, default=32, help="prompts per part file (Ray Data block)")
    p.add_argument("--prefill", type=float, default=10_000.0, help="simulated prefill, tokens/s")
    p.add_argument("--step-ms", type=float, default=30.0, help="simulated ms per decode step")
    p.add_argument("--max-seqs", type=int, default=256, help="sequences per decode step")
    p.add_argument("--compression", type=float, default=5.0, help="simulated seconds per real second")
    p.add_argument("--object-store-mb", type=int, default=300, help="object store per node, MB")
    p.add_argument("--child-actors", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-prompts", type=int, default=None, help=argparse.SUPPRESS)
    return p


def plan_runs(actors: list[int], min_batches: int, batch: int, prompts_largest: int) -> list[tuple[int, int]]:
    """The (K, prompts) runs: each K at the prompts that give every engine ``min_batches`` calls, and
    the largest K again at ``prompts_largest`` (when that is more).

    Args:
        actors: The K values.
        min_batches: Engine calls per engine, at least.
        batch: Prompts per call.
        prompts_largest: Prompts of the extra run at the largest K (0: none).

    Returns:
        The runs in order.
    """
    runs = [(k, k * min_batches * batch) for k in actors]
    top = max(actors)
    if prompts_largest > top * min_batches * batch:
        runs.append((top, prompts_largest))
    return runs


def main(argv: list[str] | None = None) -> int:
    """Run every (K, prompts) in a child process; the last printed line is JSON.

    Args:
        argv: Command-line arguments (``None``: ``sys.argv[1:]``); see ``_parser``.

    Returns:
        The exit status, 0 (a failed child ends the benchmark through ``SystemExit``).
    """
    args = _parser().parse_args(argv)
    if args.child_actors is not None:
        print(json.dumps(run_one(args)), flush=True)
        return 0
    from rluf_ray.bench.latency_engine import LatencyModel

    actors = [int(x) for x in args.actors.split(",")]
    latency = LatencyModel(args.prefill, args.step_ms / 1000, args.max_seqs, args.compression)
    machine = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    print(f"machine: {machine}")
    print(
        f"assumed engine: {latency}; N={args.samples}, {args.new_tokens} new tokens, {args.batch} prompts per call"
    )
    runs = []
    for k, n in plan_runs(actors, args.min_batches, args.batch, args.prompts_largest):
        child = [
            sys.executable,
            "-m",
            "rluf_ray.bench.scale",
            "--child-actors",
            str(k),
            "--child-prompts",
            str(n),
        ]
        for name in ("nodes", "samples", "new_tokens", "batch", "rows_per_file", "prefill", "step_ms", "max_seqs",
                     "compression", "object_store_mb"):  # fmt: skip
            child += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
        proc = subprocess.run(child, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-5000:], sep="\n", file=sys.stderr)
            raise SystemExit(f"rluf bench scale: the K={k}, {n}-prompt run failed (exit {proc.returncode})")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        runs.append(r)
        print(f"K={k} on {r['worker_nodes']} nodes, {r['prompts']} prompts ({r['batches_per_engine']} calls per "
              f"engine): efficiency {r['efficiency']:.3f} (end to end {r['efficiency_end_to_end']:.3f}), stage "
              f"{r['stage_s']} s, driver peak {r['driver_peak_rss_mib']} MiB, spilled {r['spilled_bytes']} B",
              flush=True)  # fmt: skip
    result = {
        "assumptions": {
            "prefill_tokens_per_s": args.prefill,
            "step_ms": args.step_ms,
            "max_seqs": args.max_seqs,
            "compression": args.compression,
            "chars_per_token": 4,
        },  # fmt: skip
        "samples_per_prompt": args.samples,
        "new_tokens": args.new_tokens,
        "prompts_per_batch": args.batch,
        "runs": runs,
        "machine": machine,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
