"""The rluf CLI: subcommands, one-line errors, exit codes, nothing written on bad config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rluf_ray.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rluf_ray", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )


def test_every_stage_is_a_subcommand() -> None:
    parser = build_parser()
    for cmd in [
        "sft",
        "generate",
        "calibrate",
        "feedback",
        "assign-weights",
        "train",
        "infer",
        "evaluate",
        "run-all",
    ]:
        args = parser.parse_args([cmd, "--force", "--output-dir", "x", "--set", "a.b=1"])
        assert args.command == cmd and args.force and args.output_dir == "x" and args.overrides == ["a.b=1"]
    assert parser.parse_args(["calibrate", "--quantile", "0.2"]).quantile == 0.2
    assert parser.parse_args(["train", "--pairs", "p.jsonl"]).pairs == "p.jsonl"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "generation.sampling_num=0"], "generation.sampling_num"),
        (["--set", "generation.bogus=1"], "generation.bogus: unknown key"),
        (["--config", "missing.yaml"], "config file not found"),
        (["--set", "conformal.quantile_bars=oops"], "conformal.quantile_bars"),
    ],
)
def test_bad_config_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    out = tmp_path / "out"
    proc = _run("run-all", "--output-dir", str(out), *args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("rluf: config error:")
    assert not out.exists()


def test_malformed_yaml_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [\n")
    proc = _run("sft", "--config", str(bad), "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 2 and "malformed YAML" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_quantile_out_of_range_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--quantile", "1.5", "--output-dir", str(tmp_path / "o")]) == 2
    assert "conformal.quantile_bars" in capsys.readouterr().err


def test_upstream_missing_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["assign-weights", "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "assign-weights needs" in err[0]


def test_python_m_and_version(tmp_path: Path) -> None:
    proc = _run("--version", cwd=tmp_path)
    assert proc.returncode == 0 and "rluf-ray" in proc.stdout


def test_train_arm_is_parsed_and_checked() -> None:
    parser = build_parser()
    assert parser.parse_args(["train", "--arm", "dpo"]).arm == "dpo"
    assert parser.parse_args(["train"]).arm is None
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--arm", "rluf"])


def test_train_arm_reaches_the_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rluf_ray import pipeline

    seen: dict[str, object] = {}
    monkeypatch.setattr(
        pipeline, "run_stage", lambda cfg, store, name, force, options, tracking: seen.update(options)
    )
    assert main(["train", "--arm", "cfa", "--output-dir", str(tmp_path / "o")]) == 0
    assert seen["arm"] == "cfa"
    seen.clear()
    assert main(["train", "--output-dir", str(tmp_path / "o")]) == 0
    assert "arm" not in seen
