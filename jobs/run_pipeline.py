"""Driver entry point for ``ray job submit``: the same CLI, run inside the cluster's job.

    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- \
        python jobs/run_pipeline.py run-all --config rluf_ray/configs/llama2_7b_tldr.yaml

Ray sets RAY_ADDRESS for the driver, so every stage joins the job's cluster (rluf_ray.runtime.bootstrap).
"""

from __future__ import annotations

import sys

from rluf_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
