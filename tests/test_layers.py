"""The layer rules of the README's Layout, checked on every module's imports (read with ``ast``, nothing imported).

Every import counts: module level, function level, ``TYPE_CHECKING`` blocks, and
``importlib.import_module("...")`` / ``__import__("...")`` with a literal name (an f-string counts as
its constant package prefix). The rules:

1. A *pure* module (``PURE_MODULES``: each subject package's scores, parsers, losses and metrics)
   imports only the standard library (less subprocess, network, temp files, threads), numpy, torch,
   rouge-score, other pure modules, package docstrings (``__init__``) and ``rluf_ray.errors``, and
   touches no files.
2. No module outside ``stages/``, ``pipeline.py``, ``status.py``, ``cli.py`` and the drivers
   (``__main__``, ``bench/``, ``jobs/``) imports ``rluf_ray.stages``, ``rluf_ray.pipeline`` or ``rluf_ray.cli``.
3. No module imports a stage module (a stage not even another stage): ``rluf_ray.stages.registry``
   is the one allowed (the registry itself loads stage modules lazily by name through ``importlib``).
   ``bench/`` runs stages through the pipeline and the registry, like the CLI.
4. Only the modules the README lists under "Modules that import Ray" import ``ray`` (or ``ray.*``),
   and every module listed there exists and does import Ray: README and code cannot drift.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("rluf_ray", "jobs")
RAY_LIST_MARKER = "Modules that import Ray"

CORE_THIRD_PARTY = {"numpy", "torch", "rouge_score"}  # rouge_score: a pure text metric (offline judge)
PURE_MODULES: frozenset[str] = frozenset(
    {
        "rluf_ray.arms",
        "rluf_ray.common.frames",
        "rluf_ray.common.progress",
        "rluf_ray.common.text",
        "rluf_ray.conformal.answers",
        "rluf_ray.conformal.calibration",
        "rluf_ray.conformal.grid_search",
        "rluf_ray.conformal.nonconformity",
        "rluf_ray.conformal.similarity",
        "rluf_ray.conformal.thresholds",
        "rluf_ray.config.plan_diff",
        "rluf_ray.evaluation.arm_comparison",
        "rluf_ray.evaluation.intervals",
        "rluf_ray.judge.cost",
        "rluf_ray.judge.keys",
        "rluf_ray.judge.offline",
        "rluf_ray.judge.offline_rubric",
        "rluf_ray.judge.parsing",
        "rluf_ray.judge.requests",
        "rluf_ray.judge.retry",
        "rluf_ray.judge.schemas",
        "rluf_ray.judge.scoring",
        "rluf_ray.tracking.metrics",
        "rluf_ray.training.feedback_pairs",
        "rluf_ray.training.losses",
        "rluf_ray.training.weights",
    }
)
"""The pure layer of every subject package (rule 1); every other module is a component or a stage."""
PURE_EXTRA = ("rluf_ray.errors",)
ORCHESTRATION = ("rluf_ray.stages", "rluf_ray.pipeline", "rluf_ray.status", "rluf_ray.cli")
# modules that may drive the orchestration: the entry points and the benchmarks (they time whole stages)
DRIVERS = (*ORCHESTRATION, "rluf_ray.__main__", "rluf_ray.bench", "jobs")
# standard-library modules that are I/O, processes or concurrency: not pure logic
CORE_DENIED_STDLIB = {
    "subprocess",
    "multiprocessing",
    "concurrent",
    "threading",
    "asyncio",
    "tempfile",
    "shutil",
    "glob",
    "socket",
    "ssl",
    "http",
    "urllib",
    "ftplib",
    "smtplib",
    "sqlite3",
    "webbrowser",
}
# calls that read or write files (method names on paths/files, and dotted module functions)
FILE_METHODS = {"read_text", "write_text", "read_bytes", "write_bytes", "mkdir", "unlink", "rmdir", "touch"}
FILE_FUNCTIONS = {
    "open",
    "io.open",
    "os.open",
    "os.remove",
    "os.makedirs",
    "os.listdir",
    "os.replace",
    "os.rename",
    "np.load",
    "np.save",
    "np.savez",
    "np.loadtxt",
    "np.savetxt",
    "numpy.load",
    "numpy.save",
    "torch.load",
    "torch.save",
}

RULES = {
    1: "a pure module imports only stdlib (no subprocess/network/temp files/threads), numpy, torch, pure modules, rluf_ray.errors",
    "1-files": "a pure module touches no files",
    2: "only stages/, pipeline, status, cli and the drivers (__main__, bench/, jobs/) import stages, pipeline or cli",
    3: "no module imports a stage module (rluf_ray.stages.registry only)",
    4: f"only the README's '{RAY_LIST_MARKER}' list imports ray",
}


@dataclass(frozen=True)
class Import:
    imported: str  # dotted module name (or, for file I/O, the call)
    line: int
    dynamic: bool = False  # importlib.import_module / __import__
    file_io: bool = False


@dataclass(frozen=True)
class Violation:
    module: str
    imported: str
    line: int
    rule: object

    def __str__(self) -> str:
        return f"{self.module} -> {self.imported} (line {self.line}) [rule {self.rule}: {RULES[self.rule]}]"


def module_name(path: Path, repo: Path = REPO) -> str:
    parts = list(path.relative_to(repo).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def repo_modules(repo: Path = REPO) -> dict[str, str]:
    """Dotted module name -> source, for every .py under rluf_ray/ and jobs/."""
    out: dict[str, str] = {}
    for root in ROOTS:
        for path in sorted((repo / root).rglob("*.py")):
            if "__pycache__" not in path.parts:
                out[module_name(path, repo)] = path.read_text(encoding="utf-8")
    return out


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, target] if target else base)


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def _literal_module(arg: ast.expr) -> str | None:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values:  # f"rluf_ray.bench.{name}" -> rluf_ray.bench
        first = arg.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str) and "." in first.value:
            return first.value.rsplit(".", 1)[0]
    return None


def collect_imports(
    source: str, module: str, known_modules: Iterable[str] = (), is_package: bool = False
) -> list[Import]:
    """Every import of ``source`` (any depth), plus its file-I/O calls (flagged ``file_io``)."""
    known = set(known_modules)
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Import(sub if sub in known else base, node.lineno))
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in {"importlib.import_module", "import_module", "__import__"} and node.args:
                target = _literal_module(node.args[0])
                if target:
                    found.append(Import(target, node.lineno, dynamic=True))
            elif name in FILE_FUNCTIONS:
                found.append(Import(f"{name}()", node.lineno, file_io=True))
            elif isinstance(node.func, ast.Attribute) and node.func.attr in FILE_METHODS:
                found.append(Import(f".{node.func.attr}()", node.lineno, file_io=True))
    return sorted(set(found), key=lambda i: (i.line, i.imported))


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _pure_allows(imported: str, pure: frozenset[str], packages: set[str]) -> bool:
    top = imported.split(".")[0]
    if top in CORE_DENIED_STDLIB:
        return False
    if top in sys.stdlib_module_names or top in CORE_THIRD_PARTY:
        return True
    return imported in pure or imported in packages or any(_under(imported, p) for p in PURE_EXTRA)


def _orchestration(module: str) -> bool:
    return any(_under(module, p) for p in DRIVERS)


def _imports_ray(imported: str) -> bool:
    return _under(imported, "ray")


def _broken_rules(
    module: str, imp: Import, ray_ok: set[str], pure: frozenset[str], packages: set[str]
) -> list[object]:
    """The rules that ``module`` importing ``imp`` breaks."""
    name = imp.imported
    if imp.file_io:
        return ["1-files"] if module in pure else []
    broken: list[object] = []
    if module in pure and not _pure_allows(name, pure, packages):
        broken.append(1)
    if not _orchestration(module) and any(_under(name, t) for t in ORCHESTRATION):
        broken.append(2)
    if _under(name, "rluf_ray.stages"):
        lazy_registry = module == "rluf_ray.stages.registry" and imp.dynamic
        if name not in {"rluf_ray.stages", "rluf_ray.stages.registry", module} and not lazy_registry:
            broken.append(3)
    if _imports_ray(name) and module not in ray_ok:
        broken.append(4)
    return broken


def check(
    sources: Mapping[str, str],
    ray_modules: Iterable[str],
    known_modules: Iterable[str] = (),
    packages: Iterable[str] = (),
    pure: Iterable[str] = PURE_MODULES,
) -> list[Violation]:
    """Violations of rules 1-4 in ``sources`` (dotted module name -> source).

    ``ray_modules``: dotted names allowed to import Ray. ``known_modules``: other module names that
    ``from pkg import name`` may resolve to (the sources' own names are always known). ``pure``: the
    modules rule 1 holds to.
    """
    known = set(known_modules) | set(sources)
    pkgs = set(packages)
    ray_ok = set(ray_modules)
    pure_set = frozenset(pure)
    out: list[Violation] = []
    for module, source in sorted(sources.items()):
        for imp in collect_imports(source, module, known, is_package=module in pkgs):
            out += [
                Violation(module, imp.imported, imp.line, rule)
                for rule in _broken_rules(module, imp, ray_ok, pure_set, pkgs)
            ]
    return out


def readme_ray_list(readme: str) -> list[str]:
    """The paths in the fenced block after the README's "Modules that import Ray" line."""
    lines = readme.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(RAY_LIST_MARKER)), None)
    assert start is not None, f"README.md has no line starting with {RAY_LIST_MARKER!r}"
    fence = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    end = next(i for i in range(fence + 1, len(lines)) if lines[i].startswith("```"))
    return [line.split()[0] for line in lines[fence + 1 : end] if line.strip()]


def _path_to_module(path: str) -> str:
    return module_name(REPO / path)


def _report(violations: Iterable[Violation]) -> str:
    """One line per (module, import, rule): ``module -> imported (lines ...) [rule N: ...]``."""
    lines: dict[tuple[str, str, object], list[int]] = {}
    for v in violations:
        lines.setdefault((v.module, v.imported, v.rule), []).append(v.line)
    return "\n".join(
        f"{m} -> {i} (line{'s' if len(ls) > 1 else ''} {', '.join(map(str, ls))}) [rule {r}: {RULES[r]}]"
        for (m, i, r), ls in lines.items()
    )


def test_layer_rules() -> None:
    sources = repo_modules()
    packages = {m for m in sources if (REPO / m.replace(".", "/") / "__init__.py").is_file()}
    ray_modules = [_path_to_module(p) for p in readme_ray_list((REPO / "README.md").read_text())]
    violations = check(sources, ray_modules, packages=packages)
    assert not violations, f"{len(violations)} layer violation(s):\n{_report(violations)}"


def test_readme_ray_list_has_no_stale_entries() -> None:
    sources = repo_modules()
    stale = []
    for path in readme_ray_list((REPO / "README.md").read_text()):
        module = _path_to_module(path)
        if not re.fullmatch(r"(rluf_ray|jobs)/[\w/]+\.py", path) or not (REPO / path).is_file():
            stale.append(f"{path}: listed under {RAY_LIST_MARKER!r} but no such module")
        elif not any(_imports_ray(i.imported) for i in collect_imports(sources[module], module, sources)):
            stale.append(f"{path}: listed under {RAY_LIST_MARKER!r} but does not import ray")
    assert not stale, "README's Ray list is out of date:\n" + "\n".join(stale)


# --- the checker itself catches what it should ---------------------------------------------------

SYNTHETIC = {
    "rluf_ray.judge.bad": (
        "import subprocess\n"
        "import numpy as np\n"
        "from rluf_ray.common import text\n"
        "from rluf_ray.errors import RlufError\n"
        "def f(path):\n"
        "    import ray\n"
        "    from rluf_ray.store.artifacts import ArtifactStore\n"
        "    import gensim\n"
        "    return open(path).read() + path.read_text()\n"
    ),
    "rluf_ray.common.text": "import re\nfrom dataclasses import dataclass\n",
    "rluf_ray.store.bad": "def g():\n    from rluf_ray.stages import feedback\n    import rluf_ray.pipeline\n",
    "rluf_ray.training.bad": "import importlib\nM = importlib.import_module('rluf_ray.cli')\n",
    "rluf_ray.stages.feedback": (
        "from rluf_ray.stages.registry import StageDef\n"
        "from rluf_ray.stages import judging\n"
        "def h():\n"
        "    from . import generate\n"
    ),
    "rluf_ray.stages.judging": "import ray\n",
    "rluf_ray.stages.generate": "import ray.data\n",
    "rluf_ray.stages.registry": (
        "import importlib\n"
        "MODULES = {'feedback': 'rluf_ray.stages.feedback'}\n"
        "def get(name):\n"
        "    return importlib.import_module(MODULES[name])\n"
        "def direct():\n"
        "    return importlib.import_module('rluf_ray.stages.feedback')\n"
    ),
    "rluf_ray.bench.bad": "from rluf_ray.stages.calibrate import ray_map\nimport ray\n",
    "rluf_ray.report.bad": "from importlib import import_module\nimport_module(f'rluf_ray.pipeline.{x}')\n",
    "jobs.run": "from ray import job_submission\n",
}


def test_checker_reports_each_violation() -> None:
    found = {
        (v.module, v.imported, v.rule)
        for v in check(
            SYNTHETIC,
            ray_modules=["rluf_ray.stages.generate", "rluf_ray.bench.bad"],
            pure={"rluf_ray.judge.bad", "rluf_ray.common.text"},
        )
    }
    assert found == {
        ("rluf_ray.judge.bad", "subprocess", 1),
        ("rluf_ray.judge.bad", "ray", 1),
        ("rluf_ray.judge.bad", "ray", 4),
        ("rluf_ray.judge.bad", "rluf_ray.store.artifacts", 1),
        ("rluf_ray.judge.bad", "gensim", 1),
        ("rluf_ray.judge.bad", "open()", "1-files"),
        ("rluf_ray.judge.bad", ".read_text()", "1-files"),
        ("rluf_ray.store.bad", "rluf_ray.stages.feedback", 2),
        ("rluf_ray.store.bad", "rluf_ray.stages.feedback", 3),
        ("rluf_ray.store.bad", "rluf_ray.pipeline", 2),
        ("rluf_ray.training.bad", "rluf_ray.cli", 2),
        ("rluf_ray.stages.feedback", "rluf_ray.stages.judging", 3),
        ("rluf_ray.stages.feedback", "rluf_ray.stages.generate", 3),
        ("rluf_ray.stages.judging", "ray", 4),
        # nothing from the registry: its lazy importlib of stage modules is allowed
        ("rluf_ray.bench.bad", "rluf_ray.stages.calibrate", 3),
        ("rluf_ray.report.bad", "rluf_ray.pipeline", 2),
        ("jobs.run", "ray", 4),
    }


def test_checker_message_names_module_import_and_rule() -> None:
    violations = check({"rluf_ray.judge.x": "import ray\n"}, ray_modules=[], pure={"rluf_ray.judge.x"})
    text = _report(violations)
    assert "rluf_ray.judge.x -> ray (line 1) [rule 1: a pure module imports only stdlib" in text
    assert "rluf_ray.judge.x -> ray (line 1) [rule 4: only the README's" in text


def test_clean_sources_pass() -> None:
    clean = {
        "rluf_ray.judge.ok": "from __future__ import annotations\nimport math\nimport numpy as np\nimport torch\n",
        "rluf_ray.judge.service": (
            "from rluf_ray.judge import ok\nfrom rluf_ray.config import RlufConfig\nimport ray\n"
        ),
        "rluf_ray.stages.ok": "from rluf_ray.stages.registry import StageDef\nfrom rluf_ray.judge import service\n",
        "rluf_ray.stages.registry": "import importlib\n",
    }
    assert check(clean, ray_modules=["rluf_ray.judge.service"], pure={"rluf_ray.judge.ok"}) == []


def test_readme_ray_list_parses() -> None:
    readme = "x\nModules that import Ray (checked):\n\n```\nrluf_ray/io/a.py   why\n\nrluf_ray/b.py\n```\n"
    assert readme_ray_list(readme) == ["rluf_ray/io/a.py", "rluf_ray/b.py"]
