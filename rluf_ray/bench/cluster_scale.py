"""Cluster scale run: ``generate`` and ``calibrate`` on a local multi-node Ray, 1 vs 2 worker nodes.

Starts a real cluster on this machine (``rluf_ray.bench.local_cluster``: a head with no CPUs for
work, plus 1 or 2 worker nodes of ``--cpus-per-worker`` CPUs each that alone carry the custom resource
the engine actors require), joins it from this driver, and runs the real stages on the embedded demo:
``--prompts`` calibration prompts (default 5,000), N=2 samples of 8 new tokens from an untrained tiny
model, every unique calibration answer scored by the offline judge, then split-conformal calibration
(grid search as Ray CPU tasks). Each cluster size runs in its own child process, so each driver's
peak RSS is its own. Prints prompts/s per stage and the driver's peak memory for both sizes side by
side, and a JSON object as the last line::

    python rluf_ray/bench/cluster_scale.py --prompts 5000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUILD = """
import sys
from rluf_ray.config import load
from rluf_ray.data.splits import split_plan, tokenizer_corpus
from rluf_ray.data.tiny_model import build_embedded
data = load().data
build_embedded(tokenizer_corpus(data.prompt_template, split_plan(data, "train"), 200), sys.argv[1], max_positions=512)
"""


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB).

    Returns:
        The peak RSS in MiB (``ru_maxrss / 1024``; only right where ``ru_maxrss`` is in KiB, as on Linux).
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(args: argparse.Namespace) -> dict[str, object]:
    """One cluster size, in this process: start the cluster, run generate and calibrate, stop it.

    The tiny model is built in a subprocess into a fresh temporary output directory, and the ``sft``
    stage is marked complete for it, so ``generate`` starts from that model.

    Args:
        args: The parsed command line; ``workers`` is the number of worker nodes of this run.

    Returns:
        The run's figures: nodes, engine actors and the nodes they ran on, seconds and prompts/s per
        stage, the generate stage's row counts, and the driver's peak RSS in MiB before and after.
    """
    from rluf_ray.bench.local_cluster import NODE_ENV, local_cluster

    out = Path(tempfile.mkdtemp(prefix=f"rluf-cluster-scale-{args.workers}w-"))
    subprocess.run([sys.executable, "-c", BUILD, str(out / "sft" / "model")], check=True, capture_output=True)
    os.environ.update(NODE_ENV)
    n, slots = args.prompts, args.workers * args.cpus_per_worker
    with local_cluster({"rluf_worker": args.cpus_per_worker}, head_cpus=0, worker_cpus=args.cpus_per_worker,
                       env=NODE_ENV, workers=args.workers) as cluster:  # fmt: skip
        os.environ["RAY_ADDRESS"] = cluster.address
        from rluf_ray.config import load
        from rluf_ray.pipeline import run_stage, stage_fingerprint
        from rluf_ray.runtime.bootstrap import ensure_ray
        from rluf_ray.stages.registry import get
        from rluf_ray.store.artifacts import ArtifactStore

        cfg = load(
            overrides=[
                f"data.demo.calibration_docs={n}", f"data.calibration_size={n}", "data.demo.test_docs=10",
                "data.test_size=10", f"generation.sampling_num={args.samples}",
                f"generation.max_new_tokens={args.new_tokens}", f"generation.prompts_per_batch={args.batch}",
                f"resources.engine_actors={slots}", "resources.cpus_per_actor=1",
                "resources.custom_resources.rluf_worker=1", "judge.provider=offline",
                f"conformal.random_count={args.random_count}", f"output_dir={out}", "shared_output_dir=true",
            ]
        )  # fmt: skip
        store = ArtifactStore(out)
        store.complete("sft", stage_fingerprint(cfg, get("sft")), {})
        ensure_ray()
        before = peak_rss_mib()
        t0 = time.perf_counter()
        gen = run_stage(cfg, store, "generate", force=True)
        t1 = time.perf_counter()
        cal = run_stage(cfg, store, "calibrate", force=True)
        t2 = time.perf_counter()
        assert gen is not None and cal is not None
        import ray
        from ray.util.state import list_actors

        actors = list_actors(address=cluster.dashboard_url, limit=10_000, raise_on_missing_output=False)
        engine_nodes = len({a.node_id for a in actors if "MapWorker" in a.class_name})
        ray.shutdown()
    return {
        "worker_nodes": args.workers,
        "cpus_per_worker": args.cpus_per_worker,
        "engine_actors": slots,
        "engine_nodes": engine_nodes,
        "generate_s": round(t1 - t0, 1),
        "generate_prompts_per_s": round((n + 10) / (t1 - t0), 1),
        "calibrate_s": round(t2 - t1, 1),
        "calibrate_prompts_per_s": round(n / (t2 - t1), 1),
        "generate_rows": gen.rows,
        "driver_peak_rss_before_mib": round(before, 1),
        "driver_peak_rss_mib": round(peak_rss_mib(), 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Compare the cluster sizes, each in a child process; the last printed line is JSON.

    With ``--workers`` (set for the child processes) it runs that one size in this process instead
    and prints its figures as JSON.

    Args:
        argv: Command-line arguments (``None``: ``sys.argv[1:]``); see the module docstring.

    Returns:
        The exit status, 0 (a failed child exits through ``SystemExit`` instead).
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=5000)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--new-tokens", type=int, default=8)
    p.add_argument("--batch", type=int, default=64, help="prompts per engine call")
    p.add_argument("--cpus-per-worker", type=int, default=1)
    p.add_argument("--random-count", type=int, default=10, help="calibration's random splits")
    p.add_argument("--sizes", default="1,2", help="worker-node counts to compare")
    p.add_argument("--workers", type=int, default=None, help=argparse.SUPPRESS)  # child: one size
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.workers is not None:
        print(json.dumps(run_one(args)), flush=True)
        return 0

    results = []
    for k in [int(x) for x in args.sizes.split(",")]:
        child = [sys.executable, __file__, "--workers", str(k), "--prompts", str(args.prompts),
                 "--samples", str(args.samples), "--new-tokens", str(args.new_tokens), "--batch", str(args.batch),
                 "--cpus-per-worker", str(args.cpus_per_worker), "--random-count", str(args.random_count)]  # fmt: skip
        proc = subprocess.run(child, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-5000:], sep="\n", file=sys.stderr)
            raise SystemExit(f"cluster_scale: the {k}-worker run failed with exit code {proc.returncode}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"{k} worker node(s) x {args.cpus_per_worker} CPU: generate {r['generate_prompts_per_s']} prompts/s "
              f"({r['generate_s']} s), calibrate {r['calibrate_prompts_per_s']} prompts/s ({r['calibrate_s']} s), "
              f"driver peak {r['driver_peak_rss_mib']} MiB", flush=True)  # fmt: skip
    machine = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    summary = {"prompts": args.prompts, "samples_per_prompt": args.samples, "new_tokens": args.new_tokens,
               "runs": results, "machine": machine}  # fmt: skip
    if len(results) == 2:
        for stage in ("generate", "calibrate"):
            key = f"{stage}_prompts_per_s"
            summary[f"{stage}_speedup"] = round(results[1][key] / results[0][key], 2)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
