"""Operational keys change no result (issue 21): run-all on the embedded tiny default (shrunk as the
cluster tests' ``TINY_RUN_ALL``, one DPO arm) with a loopback OpenAI-compatible judge, so that the
judge's actors, shared budget, real-time and Batch API paths run. Once as a baseline, once with every
operational key that runs on CPU changed at once, each into its own output dir: every artifact's data
must be identical, and so must every stage's config hash (operational keys are never hashed).

What is compared:

* Parquet tables by content (schema and rows); a generation split's part files as one table sorted
  by prompt id (which prompts share a part file follows the order in which engine actors finish).
* JSON and JSONL by content, without ``IGNORED_FIELDS`` (at any depth), the output dir in strings
  replaced by a placeholder.
* Manifests: config hash, rows, file names, status and metrics (without ``IGNORED_FIELDS``); not the
  upstream hashes (hashes of the upstream manifests' bytes, which hold run ids and wall times: each
  upstream manifest is compared itself), nor the package versions (one environment).
* Every other file byte for byte: model weights, tokenizers, figures.
* Not compared: ``IGNORED_FILES``.

``NOT_CHANGED`` names the operational keys the changed run leaves alone, with the reason for each;
``test_every_operational_key_is_changed_or_excused`` (fast) checks that ``CHANGED`` and ``NOT_CHANGED``
together are exactly the operational leaf keys, so a new operational key fails it until classified.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rluf_ray.bench.local_cluster import TINY_RUN_ALL
from rluf_ray.config import RlufConfig, get_value, is_operational, leaf_keys, load
from rluf_ray.pipeline import run_all
from rluf_ray.stages.registry import all_stages
from rluf_ray.store.artifacts import ArtifactStore
from tests.support.fake_openai import FakeOpenAI

SHRUNK = [o for o in TINY_RUN_ALL if not o.startswith("resources.")]  # its custom resource is the cluster's
BASE = [
    *SHRUNK,
    "dpo.arms=[cfa]",  # one DPO arm: the other trains through the same code, at CI's cost
    "judge.provider=openai",  # the loopback judge (its base_url is added per test): actors, budget, Batch API
    "judge.api_key_env=RLUF_TEST_KEY",  # set by tests/conftest.py before Ray starts
    # baseline values of operational keys, where the default would not let the changed run differ
    # or would only be slow
    "resources.engine_actors=2",
    "judge.requests_per_minute=100000",
    "judge.tokens_per_minute=10000000",  # the default 30000 paces the judge to ~50 calls a minute
]

# Every operational key the changed run sets, to a value other than the baseline's ({tmp}: the test's
# temp dir). They run together: none conflicts with another on two CPUs.
CHANGED: dict[str, str] = {
    "resources.engine_actors": "1",  # the baseline's two actors finish batches in any order
    "resources.cpus_per_task": "0.5",
    "resources.judge_actors": "1",
    "tracking.backend": "mlflow",
    "tracking.uri": "sqlite:///{tmp}/mlflow.db",
    "tracking.experiment": "rluf-operational-keys",
    "output_dir": "{tmp}/changed",  # each run writes its own
    "shared_output_dir": "true",
    "judge.cache_path": "{tmp}/elsewhere/judge_cache.sqlite",
    "judge.api_key_env": "RLUF_JUDGE_TEST_KEY",
    "judge.requests_per_minute": "3000",
    "judge.max_in_flight_per_actor": "2",
    "judge.rate_window_s": "5",
    "judge.rate_safety": "0.1",
    "judge.budget_name": "rluf-operational-keys-budget",
    "judge.batch_poll_s": "0.1",
    "feedback.use_batch_api": "true",
    "evaluation.use_batch_api": "true",
    "conformal.grid_chunks": "3",
    "conformal.min_cells_per_task": "0",  # the baseline's one chunk in the driver; here three Ray tasks
    "sft.save_steps": "1",
    "sft.max_failures": "0",
    "dpo.save_steps": "1",
    "dpo.max_failures": "0",
}

_MISSING_ONLY = (
    "changes a result only through judge calls recorded missing: only replies that parse are cached, so "
    "a rerun of the stage asks exactly those again (run-all does where the stage stopped without a "
    "manifest; `rluf <stage> --force` where it completed with calls missing); the loopback judge misses "
    "no call, so a change here would show nothing"
)
NOT_CHANGED: dict[str, str] = {
    "resources.custom_resources": "pins work to nodes started with that resource: the session Ray has "
    "none (tests/integration/test_cluster*.py run with it)",
    "sft.fsdp_state_dict": "read only with sft.fsdp, which needs GPUs (tests/gpu/test_fsdp_resume.py)",
    "dpo.fsdp_state_dict": "read only with dpo.fsdp, which needs GPUs (tests/gpu/test_fsdp_resume.py)",
    "judge.max_retries": _MISSING_ONLY,
    "judge.timeout_s": _MISSING_ONLY,
    "judge.tokens_per_minute": _MISSING_ONLY + " (a request over it is refused)",
    "judge.backoff_base_s": _MISSING_ONLY + " (it spaces the retries)",
    "judge.backoff_max_s": _MISSING_ONLY + " (it spaces the retries)",
    "judge.max_dollars": _MISSING_ONLY + " (the cap stops the stage without a manifest)",
    "judge.prices.prompt_per_million": _MISSING_ONLY + " (only the dollar cap reads it)",
    "judge.prices.completion_per_million": _MISSING_ONLY + " (only the dollar cap reads it)",
    "judge.batch_price_factor": _MISSING_ONLY + " (only the dollar cap reads it)",
    "judge.batch_timeout_s": _MISSING_ONLY + " (a batch given up stops the stage; it stays resumable)",
}

IGNORED_FIELDS: dict[str, str] = {
    "run_id": "unique per run",
    "finished_at": "a timestamp",
    "wall_time_s": "a wall time",
    "throughput": "generation's wall time and rates",
    "timing_s": "calibration's wall times",
    "grid_tasks": "how calibration's grid search fanned out (conformal.grid_chunks, min_cells_per_task)",
    "chunks": "the grid search's fan-out, as grid_tasks",
    "min_cells_per_task": "the grid search's fan-out, as grid_tasks",
    "num_cpus": "the grid tasks' CPUs (resources.cpus_per_task)",
    "upstream": "hashes of the upstream manifests' bytes (run ids, wall times); each is compared itself",
    "sft_manifest": "the SFT manifest's hash, as upstream",
    # the judge's accounting: how the calls went (real-time or Batch API, at which price), not what
    # they answered; its 'scored' and 'missing' counts are compared
    "mode": "real-time or Batch API",
    "calls": "judge calls made (a Batch API round counts differently)",
    "dollars": "the judge's cost (the Batch API is half price)",
    "prompt_tokens": "the judge's token accounting",
    "completion_tokens": "the judge's token accounting",
    "cache_hits": "the judge's cache accounting",
    "timed_out": "the judge's timeout accounting (its missing count is compared)",
}
IGNORED_FILES: dict[str, str] = {
    "judge_cache.sqlite": "the judge cache (judge.cache_path) holds reply timestamps; its replies made the "
    "compared judgements",
    "report/*": "run-all's summary of the manifests (wall times, judge calls and cost) and its figures",
    "*/training_args.bin": "transformers' pickled TrainingArguments: the run's settings (save_steps, "
    "paths), not the model",
}


def _overrides(values: dict[str, str], tmp: Path) -> list[str]:
    return [f"{k}={v.format(tmp=tmp)}" for k, v in values.items()]


def _scrub(obj: Any, out: str) -> Any:
    if isinstance(obj, dict):
        return {k: _scrub(v, out) for k, v in obj.items() if k not in IGNORED_FIELDS}
    if isinstance(obj, list):
        return [_scrub(v, out) for v in obj]
    if isinstance(obj, str):
        return obj.replace(out, "<output_dir>")
    return obj


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)  # NaN compares as the text NaN


def _table(table: pa.Table) -> str:
    return _canonical({"schema": str(table.schema), "rows": table.to_pylist()})


def snapshot(root: Path) -> dict[str, str]:
    """Every compared artifact under ``root``, by relative path, as canonical text (or a hash)."""
    out: dict[str, str] = {}
    parts: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if any(fnmatch.fnmatch(rel, pattern) for pattern in IGNORED_FILES):
            continue
        if path.suffix == ".parquet" and path.name.startswith("part-"):
            parts[rel.rsplit("/", 1)[0]].append(path)
        elif path.name == "_manifest.json":
            man = json.loads(path.read_text())
            keep = {k: man[k] for k in ("config_hash", "rows", "status", "metrics", "stage")}
            out[rel] = _canonical(_scrub({**keep, "files": sorted(man["files"])}, str(root)))
        elif path.suffix == ".parquet":
            out[rel] = _table(pq.read_table(path))
        elif path.suffix == ".json":
            out[rel] = _canonical(_scrub(json.loads(path.read_text()), str(root)))
        elif path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            out[rel] = _canonical(_scrub(rows, str(root)))
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    for split_dir, files in parts.items():
        table = pa.concat_tables(pq.read_table(f) for f in files).sort_by("prompt_id")
        out[f"{split_dir}/part-*.parquet"] = _table(table)
    return out


def differences(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """The artifacts that differ between two snapshots (or exist in one only)."""
    only = [f"only in one run: {k}" for k in sorted(set(a) ^ set(b))]
    return only + [f"differs: {k}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]


def test_every_operational_key_is_changed_or_excused() -> None:
    operational = {k for k in leaf_keys(load(None)) if is_operational(k)}
    assert not set(CHANGED) & set(NOT_CHANGED)
    assert set(CHANGED) | set(NOT_CHANGED) == operational, (
        f"not classified: {sorted(operational - set(CHANGED) - set(NOT_CHANGED))}; "
        f"not operational: {sorted((set(CHANGED) | set(NOT_CHANGED)) - operational)}"
    )


def _differing_keys(a: RlufConfig, b: RlufConfig) -> list[str]:
    return sorted(k for k in leaf_keys(a) if get_value(a, k) != get_value(b, k))


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_operational_keys_change_no_artifact(
    ray_idle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An explicit tracking.uri leaves MLflow's artifacts where MLflow puts them by default, in ./mlruns
    # of the working directory: the test works in its temp dir, not in the repository.
    monkeypatch.chdir(tmp_path)
    with FakeOpenAI() as judge:
        base = [*BASE, f"judge.base_url={judge.base_url}"]
        baseline = load(None, [*base, f"output_dir={tmp_path / 'baseline'}"])
        changed = load(None, [*base, *_overrides(CHANGED, tmp_path)])
        assert _differing_keys(baseline, changed) == sorted(CHANGED)  # each one really changes
        stages = [s.name for s in all_stages()]
        assert run_all(baseline, ArtifactStore(baseline.output_dir)) == stages
        assert run_all(changed, ArtifactStore(changed.output_dir)) == stages
    a, b = snapshot(Path(baseline.output_dir)), snapshot(Path(changed.output_dir))
    assert len(a) > 20 and any(k.endswith("model.safetensors") for k in a), sorted(a)
    assert not differences(a, b), "\n".join(differences(a, b))
    for s in all_stages():  # said above too (manifests are compared): operational keys are not hashed
        hashes = {
            ArtifactStore(c.output_dir).manifest(s.artifact_dir).config_hash for c in (baseline, changed)
        }
        assert len(hashes) == 1, s.name
