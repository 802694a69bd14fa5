"""Public functions document themselves in one style (Google style), checked on the source with ``ast``.

Every public function and method of the package (its name and its class's name have no leading
underscore; nested functions, dunders and ``@property``/``@overload`` are exempt) has a docstring,
and in it:

* ``Args:`` naming every parameter (``self``/``cls`` aside; ``*args``/``**kwargs`` as ``*args``/``**kwargs``
  or without stars), each as ``name: text`` on its own line;
* a parameter annotated as an array (``np.ndarray``, ``torch.Tensor``) says its shape
  (``shape (P, K)``) in its text;
* ``Returns:`` (or ``Yields:`` for a generator) when the return annotation is not ``None``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARRAY_TYPES = ("ndarray", "Tensor", "NDArray")
SECTIONS = ("Args:", "Returns:", "Yields:", "Raises:", "Example:", "Examples:", "Note:")


def _public_functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
            yield node.name, node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and not item.name.startswith("_"):
                    yield f"{node.name}.{item.name}", item


def _exempt(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    names = {ast.unparse(d).split("(")[0].split(".")[-1] for d in fn.decorator_list}
    return bool(names & {"property", "overload", "setter", "cached_property"})


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[tuple[str, str]]:
    a = fn.args
    out = [
        (p.arg, ast.unparse(p.annotation) if p.annotation else "")
        for p in [*a.posonlyargs, *a.args, *a.kwonlyargs]
    ]
    out = [(n, t) for n, t in out if n not in ("self", "cls")]
    if a.vararg:
        out.append((a.vararg.arg, ""))
    if a.kwarg:
        out.append((a.kwarg.arg, ""))
    return out


def _section(doc: str, name: str) -> list[str]:
    lines = doc.splitlines()
    if name not in [ln.strip() for ln in lines]:
        return []
    start = [ln.strip() for ln in lines].index(name) + 1
    body: list[str] = []
    for ln in lines[start:]:
        if ln.strip() in SECTIONS:
            break
        body.append(ln)
    return body


def _returns_value(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return fn.returns is not None and ast.unparse(fn.returns) not in ("None", "NoReturn")


def _is_generator(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return (
        fn.returns is not None
        and re.search(r"\b(Iterator|Generator|Iterable)\b", ast.unparse(fn.returns)) is not None
    )


def problems(source: str, module: str) -> list[str]:
    """What the docstrings of ``source``'s public functions lack, one line each."""
    out: list[str] = []
    for name, fn in _public_functions(ast.parse(source)):
        if _exempt(fn):
            continue
        where = f"{module}:{fn.lineno} {name}"
        doc = ast.get_docstring(fn)
        if not doc:
            out.append(f"{where}: no docstring")
            continue
        params = _params(fn)
        if params:
            args = _section(doc, "Args:")
            if not args:
                out.append(f"{where}: no Args: section")
            else:
                text = "\n".join(args)
                for pname, ann in params:
                    m = re.search(
                        rf"^\s+\**{re.escape(pname)}( \([^)]*\))?:(.*(?:\n\s{{6,}}.*)*)", text, re.M
                    )
                    if m is None:
                        out.append(f"{where}: Args: does not document {pname!r}")
                    elif any(t in ann for t in ARRAY_TYPES) and "shape" not in m.group(2):
                        out.append(f"{where}: Args: {pname!r} is an array but its shape is not given")
        if _returns_value(fn):
            key = "Yields:" if _is_generator(fn) and "Yields:" in doc else "Returns:"
            if not _section(doc, key):
                out.append(f"{where}: no Returns: (or Yields:) section")
    return out


def package_problems() -> list[str]:
    out: list[str] = []
    for path in sorted((REPO / "rluf_ray").rglob("*.py")):
        if "__pycache__" not in path.parts:
            out += problems(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    return out


def test_public_functions_document_args_and_returns() -> None:
    found = package_problems()
    assert not found, f"{len(found)} docstring problem(s):\n" + "\n".join(found)


def test_the_checker_finds_what_is_missing() -> None:
    source = '''
def ok(x: int, scores: np.ndarray) -> int:
    """Sum.

    Args:
        x: a count.
        scores: shape (P, K), the scores.

    Returns:
        The sum.
    """
def bare(x):
    pass
def no_args(x: int) -> None:
    """Nothing."""
def missing(x: int, y: int) -> int:
    """Half.

    Args:
        x: one.
    """
def shapeless(a: torch.Tensor) -> None:
    """Shapeless.

    Args:
        a: the logits.
    """
class C:
    def m(self) -> str:
        """No returns."""
    @property
    def p(self) -> int:
        return 1
    def _private(self, q):
        pass
def _hidden(z):
    pass
'''
    found = [line.split(" ", 1)[1] for line in problems(source, "m")]
    assert found == [
        "bare: no docstring",
        "no_args: no Args: section",
        "missing: Args: does not document 'y'",
        "missing: no Returns: (or Yields:) section",
        "shapeless: Args: 'a' is an array but its shape is not given",
        "C.m: no Returns: (or Yields:) section",
    ]


if __name__ == "__main__":  # python tests/test_docstrings.py [PATH_PREFIX ...]: list what is missing
    import sys

    prefixes = tuple(sys.argv[1:]) or ("rluf_ray",)
    for line in package_problems():
        if line.startswith(prefixes):
            print(line)
