"""The structure check of the package (CONTRIBUTING.md): short functions with few parameters,
one home per public name, no private names imported across modules, no equinox internals."""

from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jaxpotts"
MAX_LINES = 85  # "about 80" code lines per function, docstring excluded
MAX_PARAMS = 12  # Pallas kernels' memory references (`*_ref`, fixed by pallas_call) are not counted
FILES = sorted(PACKAGE.rglob("*.py"))


def _functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _code_lines(node) -> int:
    body = node.body
    has_doc = (
        isinstance(body[0], ast.Expr)
        and isinstance(getattr(body[0], "value", None), ast.Constant)
        and isinstance(body[0].value.value, str)
    )
    start = body[1].lineno if has_doc and len(body) > 1 else body[0].lineno
    return node.end_lineno - start + 1


def _params(node) -> int:
    a = node.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if not x.arg.endswith("_ref")]
    n = len(names) + (a.vararg is not None) + (a.kwarg is not None)
    return n - (1 if names and names[0] in ("self", "cls") else 0)


# Known exceptions, each with its reason; the list only shrinks.
WIDE = {
    # n_chains, n_samples, n_burnin, thin, method, beta, schedule, init, progress, max_memory, kernel:
    # every one a documented knob of the package's main sampler entry point.
    ("sampling.py", "sample"): 13,
}


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_functions_are_short_with_few_parameters(path):
    tree = ast.parse(path.read_text())
    long = [f"{f.name} ({_code_lines(f)} lines)" for f in _functions(tree) if _code_lines(f) > MAX_LINES]
    wide = [
        f"{f.name} ({_params(f)} parameters)"
        for f in _functions(tree)
        if _params(f) > WIDE.get((path.name, f.name), MAX_PARAMS)
    ]
    assert not long and not wide, f"{path.name}: split {long + wide}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_private_names_imported_across_modules(path):
    """A module uses another module's public names only (private helpers stay in their module;
    names shared inside the package live, public, in a private module such as _validation)."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if "equinox.internal" in mod or mod.startswith("equinox._"):
                bad.append(f"{mod} (equinox internals)")
            if node.level == 0 and not mod.startswith("jaxpotts"):
                continue
            if node.module is None:  # `from . import _module`: a private module of the package
                continue
            bad += [f"{mod}.{a.name}" for a in node.names if a.name.startswith("_") and a.name != "__version__"]
    assert not bad, f"{path.name} imports private names: {bad}"


def test_every_public_name_has_one_home():
    """A name in the __all__ of two modules is one concept written twice (re-exports from the
    package's own __init__ files are the exception)."""
    homes = defaultdict(list)
    for path in FILES:
        if path.name == "__init__.py" or path.parent.name == "cli":
            continue
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = importlib.import_module(".".join(rel.parts))
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if getattr(obj, "__module__", module.__name__) == module.__name__ or not callable(obj):
                homes[name].append(module.__name__)
    twice = {k: v for k, v in homes.items() if len(v) > 1}
    assert not twice, f"public names defined in several modules: {twice}"
