"""Every shell command in the README is either run here at a small size or named with the test that
exercises it elsewhere (and why it cannot run here: a GPU, a cluster, a key, a vLLM server, CI).

The fast test parses the README's fenced ``bash`` blocks (and ``$ `` lines of its plain blocks) and
checks that :data:`COMMANDS` classifies each command, that no entry is stale, and that every named
test exists. The slow test runs the ``RUN`` commands through ``bash`` in the repository root, shrunk
with the cluster tests' tiny ``--set`` overrides: ``./dev demo`` is the session's shared tiny run
(tests/support/demo_run.py), ``rluf status`` reads it, the serve-judge run-all works on a copy of it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from rluf_ray.config import CONFIG_DIR, load
from tests.support.demo_run import DEMO_SETS, DemoRun, dev_venv_is_set_up, user_env
from tests.support.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

Reason = Literal["gpu", "cluster", "key", "vllm server", "ci"]


@dataclass(frozen=True)
class Run:
    """Run here by :func:`test_readme_run_commands` (``how`` says at which size and against what)."""

    how: str


@dataclass(frozen=True)
class Elsewhere:
    """Not run here: why, and the tests (pytest node ids) that exercise it; ``note`` what none does."""

    reason: tuple[Reason, ...]
    tests: tuple[str, ...]
    note: str = ""


SERVE_JUDGE_RUN_ALL = (
    "rluf run-all --set judge.provider=openai --set judge.base_url=http://127.0.0.1:8000/v1 "
    "--set judge.model=smollm2-judge"
)
JOB_SUBMIT = (
    "ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- "
    "python jobs/run_pipeline.py run-all --config rluf_ray/configs/llama2_7b_tldr.yaml "
    "--set resources.custom_resources.rluf_worker=1 "
)

COMMANDS: dict[str, Run | Elsewhere] = {
    "./dev demo": Run("tiny --set overrides, a temporary --output-dir"),
    "./dev test": Elsewhere(
        ("ci",), ("tests/test_repo_files.py::test_readme_quick_start_is_the_ci_command",)
    ),
    "export OPENAI_API_KEY=...": Elsewhere(
        ("key",), ("tests/judge/test_secret.py::test_the_key_reaches_the_server_and_nothing_else",)
    ),
    "rluf run-all --config rluf_ray/configs/llama2_7b_tldr.yaml": Elsewhere(
        ("gpu", "key"),
        (
            "tests/test_config.py::test_paper_config",
            "tests/gpu/test_gpu_paths.py::test_weighted_dpo_bf16_on_cuda",
        ),
        "the config loads and validates; the GPU tests skip without CUDA and have never run",
    ),
    "./dev serve-judge 8000": Elsewhere(
        ("vllm server",),
        (
            "tests/judge/test_vllm.py::test_three_judge_uses_with_json_schema",
            "tests/judge/test_vllm_server_wrapper.py::test_signal_to_the_wrapper_stops_the_server",
        ),
        "./dev test-vllm starts the same server (rluf_ray.judge.vllm_server) from .venv-vllm",
    ),
    "export OPENAI_API_KEY=local": Run("the environment of the serve-judge run-all below"),
    SERVE_JUDGE_RUN_ALL: Run(
        "tiny --set overrides, against tests/support/fake_openai.py serving only smollm2-judge (any other "
        "model name is a 404) and demanding the key `local`, in place of the vLLM server"
    ),
    "LOCAL_JUDGE_API_KEY=local ./dev demo --config rluf_ray/configs/smollm2_cpu.yaml --output-dir "
    "outputs/smollm2": Elsewhere(
        ("vllm server",),
        ("tests/test_config.py::test_every_shipped_yaml_loads",),
        "the run itself (~15 min on 2 cores, with the vLLM judge server) is in no test; only its config loads",
    ),
    JOB_SUBMIT + "--output-dir /mnt/shared/rluf-outputs --set shared_output_dir=true": Elsewhere(
        ("cluster", "gpu", "key"),
        ("tests/integration/test_cluster.py::test_readme_job_submit_runs_all_stages_on_the_worker_node",),
        "submitted to a local head + worker with the tiny config in place of llama2_7b_tldr.yaml",
    ),
    JOB_SUBMIT + "--output-dir s3://my-bucket/rluf-outputs": Elsewhere(
        ("cluster", "gpu", "key"),
        ("tests/integration/test_s3_run_all.py::test_readme_job_submit_on_s3_writes_only_to_the_bucket",),
        "submitted to a local head + worker with the tiny config, the bucket on a local moto server",
    ),
    "rluf status --output-dir outputs --set generation.temperature=0.9": Run(
        "on the tiny demo's output dir, with the same tiny --set overrides"
    ),
}
"""Every README command, exactly as :func:`readme_commands` reads it, and how it is checked."""


def readme_commands(text: str) -> list[str]:
    """The shell commands of a README, in order (duplicates kept).

    A fenced ``bash`` block gives one command per logical line (``\\`` continuations joined, trailing
    ``# comments`` and comment-only lines dropped; an ``export`` line is a command too); a plain fenced
    block gives its ``$ `` lines.

    Args:
        text: The README's Markdown.

    Returns:
        Each command with its whitespace collapsed.
    """
    out: list[str] = []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S):
        if lang == "bash":
            lines = body.replace("\\\n", " ").splitlines()
        elif lang == "":
            lines = [line[2:] for line in body.splitlines() if line.startswith("$ ")]
        else:
            continue
        for line in lines:
            cmd = " ".join(re.sub(r"(^|\s)#.*$", "", line).split())
            if cmd:
                out.append(cmd)
    return out


def node_exists(node: str) -> bool:
    """Whether a pytest node id ``path::function`` names a file that defines that function."""
    path, _, name = node.partition("::")
    file = REPO / path
    name = name.split("[", 1)[0]
    return (
        file.is_file()
        and re.search(rf"^(async )?def {re.escape(name)}\(", file.read_text(), re.M) is not None
    )


def test_readme_commands_parse() -> None:
    text = (
        "x\n```bash\n./a b   # note\n# only a comment\nexport K=v  # why\nc --x 1 \\\n    --y 2\n```\n"
        "```\n$ d --z\nout\n```\n```yaml\nkey: v\n```\n"
    )
    assert readme_commands(text) == ["./a b", "export K=v", "c --x 1 --y 2", "d --z"]


def test_every_readme_command_is_classified_and_every_named_test_exists() -> None:
    found = readme_commands(README.read_text())
    unclassified = [c for c in found if c not in COMMANDS]
    assert not unclassified, f"README commands missing from COMMANDS: {unclassified}"
    stale = [c for c in COMMANDS if c not in found]
    assert not stale, f"COMMANDS entries no longer in the README: {stale}"
    for cmd, how in COMMANDS.items():
        if isinstance(how, Elsewhere):
            assert how.reason and how.tests, cmd
            missing = [t for t in how.tests if not node_exists(t)]
            assert not missing, f"{cmd!r}: no such test {missing}"


def test_configs_of_commands_not_run_here_load() -> None:
    for name in ("llama2_7b_tldr.yaml", "smollm2_cpu.yaml"):
        load(CONFIG_DIR / name)


def _shell(cmd: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run one command line through bash in the repository root; print its time and its tail on failure."""
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", "-c", cmd], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    print(f"{time.monotonic() - t0:.0f}s  {cmd[:120]}")
    assert proc.returncode == 0, (
        f"{cmd}\nexit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def _sets(items: list[str]) -> str:
    return " ".join(f"--set {s}" for s in items)


@pytest.mark.slow
@pytest.mark.ray
def test_readme_run_commands(tiny_demo: DemoRun, tmp_path: Path) -> None:
    """The README's RUN commands at the cluster tests' tiny size: ``./dev demo`` is the session's shared
    run (tests/support/demo_run.py); ``rluf status`` reads its output; the serve-judge run its own."""
    env = user_env()
    run_cmds = [c for c, how in COMMANDS.items() if isinstance(how, Run)]
    assert run_cmds == [
        "./dev demo",
        "export OPENAI_API_KEY=local",
        SERVE_JUDGE_RUN_ALL,
        "rluf status --output-dir outputs --set generation.temperature=0.9",
    ]
    # ./dev demo: the tiny default (rluf run-all where ./dev would first set up .venv)
    tiny_demo.check_ok()
    assert tiny_demo.command.startswith("./dev demo ") or not dev_venv_is_set_up()
    demo = tiny_demo.out
    assert (demo / "report" / "index.html").is_file()
    status = _shell(
        f"rluf status --output-dir {demo} --set generation.temperature=0.9 {_sets(DEMO_SETS)}", env, 60
    )
    assert "generation.temperature: 0.85 -> 0.9" in status.stdout
    assert "run-all would run: generate," in status.stdout

    # The serve-judge run-all against a loopback server that serves only smollm2-judge and wants `local`,
    # on a copy of the demo's output dir (the README runs both into outputs/): the judge is new, so it
    # keeps the demo's SFT and re-runs from generate.
    judged = tmp_path / "judged"
    shutil.copytree(demo, judged, ignore=shutil.ignore_patterns("logs", "mlflow.db", "mlartifacts"))
    sft_manifest = (judged / "sft" / "_manifest.json").read_bytes()
    fast = ["judge.requests_per_minute=100000", "judge.tokens_per_minute=100000000"]  # operational keys
    with FakeOpenAI(api_key="local", served_model="smollm2-judge") as srv:
        cmd = SERVE_JUDGE_RUN_ALL.replace("http://127.0.0.1:8000/v1", srv.base_url)
        run = _shell(
            f"export OPENAI_API_KEY=local && {cmd} {_sets(DEMO_SETS + fast)} --output-dir {judged}", env, 600
        )
        counts = srv.counts()
    assert (judged / "report" / "index.html").is_file()
    assert (judged / "sft" / "_manifest.json").read_bytes() == sft_manifest, "the demo's SFT was re-run"
    assert " generate: running" in run.stdout + run.stderr
    assert counts.get("ok", 0) > 0 and set(counts) == {"ok"}, counts


def test_the_fake_server_refuses_a_model_it_does_not_serve() -> None:
    """The serve-judge run's check can fail: a request for another model is a 404, as from vLLM."""
    import json
    import urllib.error
    import urllib.request

    def ask(base_url: str, model: str) -> int:
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Score: ?"}]}).encode()
        req = urllib.request.Request(
            f"{base_url}/chat/completions", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            return int(err.code)

    with FakeOpenAI(served_model="smollm2-judge") as srv:
        assert ask(srv.base_url, "smollm2-judge") == 200
        assert ask(srv.base_url, "gpt-4o") == 404
        assert srv.counts() == {"ok": 1, "unknown_model": 1}
