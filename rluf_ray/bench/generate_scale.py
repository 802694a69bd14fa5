"""Scale check of ``rluf generate``: the driver's peak memory must not grow with the number of prompts.

Runs the real generate stage (Ray Data, hf engine actors, Parquet parts) on the embedded demo with
``--prompts`` calibration prompts, N=2 samples and 8 new tokens, from an untrained tiny model built
in a subprocess (so the driver never imports torch for it). Prints the driver's peak RSS before and
after, and a JSON last line. Run it once per size, e.g.::

    python rluf_ray/bench/generate_scale.py --prompts 5000
    python rluf_ray/bench/generate_scale.py --prompts 50000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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


def main(argv: list[str] | None = None) -> int:
    """Run the generate stage once at ``--prompts`` prompts; the last printed line is JSON.

    The ``sft`` stage is marked complete for the freshly built tiny model, so ``generate`` starts from
    it; scoring of the calibration answers is off.

    Args:
        argv: Command-line arguments (``None``: ``sys.argv[1:]``); see the module docstring.

    Returns:
        The exit status, 0.
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=5000)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--new-tokens", type=int, default=8)
    p.add_argument("--actors", type=int, default=os.cpu_count() or 1)
    p.add_argument("--batch", type=int, default=64, help="prompts per engine call")
    p.add_argument("--rows-per-file", type=int, default=1024)
    p.add_argument("--output-dir", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    out = Path(args.output_dir or tempfile.mkdtemp(prefix="rluf-scale-"))
    model_dir = out / "sft" / "model"
    subprocess.run([sys.executable, "-c", BUILD, str(model_dir)], check=True, capture_output=True)

    from rluf_ray.config import load
    from rluf_ray.pipeline import run_stage, stage_fingerprint
    from rluf_ray.runtime.bootstrap import ensure_ray
    from rluf_ray.stages.registry import get
    from rluf_ray.store.artifacts import ArtifactStore

    n = args.prompts
    cfg = load(
        overrides=[
            f"data.demo.calibration_docs={n}", f"data.calibration_size={n}", "data.demo.test_docs=10",
            "data.test_size=10", f"generation.sampling_num={args.samples}",
            f"generation.max_new_tokens={args.new_tokens}", f"generation.prompts_per_batch={args.batch}",
            f"generation.rows_per_file={args.rows_per_file}", f"resources.engine_actors={args.actors}",
            "resources.cpus_per_actor=1", "generation.score_calibration=false", f"output_dir={out}",
        ]
    )  # fmt: skip
    store = ArtifactStore(out)
    store.complete("sft", stage_fingerprint(cfg, get("sft")), {})
    ensure_ray(num_cpus=os.cpu_count())
    before = peak_rss_mib()
    t0 = time.perf_counter()
    man = run_stage(cfg, store, "generate", force=True)
    wall = time.perf_counter() - t0
    after = peak_rss_mib()
    assert man is not None
    result = {
        "prompts": n,
        "rows": man.rows,
        "samples_per_prompt": args.samples,
        "new_tokens": args.new_tokens,
        "wall_s": round(wall, 1),
        "prompts_per_s": round((n + 10) / wall, 1),
        "driver_peak_rss_before_mib": round(before, 1),
        "driver_peak_rss_mib": round(after, 1),
        "driver_peak_growth_mib": round(after - before, 1),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
