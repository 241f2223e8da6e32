"""The package's shape: imports flow one way, no cycles, the CLI uses the public API, files stay small.

Read from the source (AST), so it also sees imports inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "asls_mlx"

# Lower layers never import higher ones. Same-layer imports are allowed if they form no cycle.
LAYERS = {
    0: ["asls_mlx.errors", "asls_mlx.paths", "asls_mlx.locks", "asls_mlx.blas", "asls_mlx.openblas_wheel",
        "asls_mlx.data_files", "asls_mlx.yielding", "asls_mlx.correctness"],
    1: ["asls_mlx.store", "asls_mlx.engine"],
    2: ["asls_mlx.profiling", "asls_mlx.adaptation"],
    3: ["asls_mlx.config", "asls_mlx.session_update", "asls_mlx.user_data", "asls_mlx.background", "asls_mlx.assistant",
        "asls_mlx.users", "asls_mlx.training", "asls_mlx.history_import", "asls_mlx.conversation",
        "asls_mlx.adapter_export", "asls_mlx.api_values"],
    4: ["asls_mlx.cli", "asls_mlx.evaluation", "asls_mlx.diagnostics", "asls_mlx.__main__", "asls_mlx.serve"],
}
# What the CLI and the notebooks may import: the package's public names (``asls_mlx.__all__``) and the two
# public modules a command is about (``asls eval``, ``asls doctor``).
CLI_ALLOWED = {"asls_mlx", "asls_mlx.evaluation", "asls_mlx.diagnostics", "asls_mlx.serve"}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
# a function over the limit says why in its docstring, with one of these phrases
LONG_FUNCTION_REASONS = ("Long on purpose", "hence its length")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports (``from x import y`` counts y when y is a module)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
                   for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue  # ``if TYPE_CHECKING:`` imports name types for annotations; nothing runs them
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m in known and m != name}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def layer_of(name: str) -> int:
    for level, prefixes in LAYERS.items():
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return level
    raise AssertionError(f"{name} has no layer: add it to LAYERS in {__file__}")


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items() if name != "asls_mlx"}


def test_every_module_has_a_layer_and_imports_only_downward():
    wrong = []
    for name, deps in graph().items():
        for dep in deps:
            if dep != "asls_mlx" and layer_of(dep) > layer_of(name):
                wrong.append(f"{name} (layer {layer_of(name)}) imports {dep} (layer {layer_of(dep)})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles_between_modules():
    g = graph()
    # a package's __init__ re-exporting its own submodules is not a cycle of concerns
    g = {n: {d for d in deps if not (n.startswith(d + ".") and d != "asls_mlx")} for n, deps in g.items()}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_the_cli_uses_only_the_public_api():
    g = graph()
    wrong = [f"{name} imports {dep}" for name, deps in g.items() if name.startswith("asls_mlx.cli")
             for dep in deps if not dep.startswith("asls_mlx.cli") and dep not in CLI_ALLOWED]
    assert not wrong, "\n".join(sorted(wrong))


def test_the_server_uses_only_the_public_api():
    g = graph()
    wrong = [f"{name} imports {dep}" for name, deps in g.items() if name.startswith("asls_mlx.serve")
             for dep in deps if not dep.startswith("asls_mlx.serve") and dep != "asls_mlx"]
    assert not wrong, "\n".join(sorted(wrong))


def test_files_are_small_and_long_functions_say_why():
    big = [f"{p.relative_to(PACKAGE.parent)}: {n} lines" for p in PACKAGE.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES]
    long = []
    for p in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                doc = ast.get_docstring(node) or ""
                if n > MAX_FUNCTION_LINES and not any(r in doc for r in LONG_FUNCTION_REASONS):
                    long.append(f"{p.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {n} lines")
    assert not big, "\n".join(big)
    assert not long, "\n".join(long)


def test_no_reference_to_documents_outside_the_repository():
    root = PACKAGE.parent
    texts = [p for p in [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.md"), *(root / "docs").rglob("*.md"),
                         *(root / "benchmarks").glob("*.py"), *(root / "tests").rglob("*.py"), root / "README.md"]
             if p.is_file() and p.resolve() != Path(__file__).resolve()]
    cited = [str(p.relative_to(root)) for p in texts if "DESIGN.md" in p.read_text()]
    assert not cited, cited


def test_the_notebooks_use_only_the_public_api():
    import json
    import re

    root = PACKAGE.parent
    wrong = []
    for nb in sorted((root / "notebooks").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            for line in "".join(cell["source"]).splitlines():
                m = re.match(r"\s*(?:from|import)\s+(asls_mlx[\w.]*)", line)
                if m and m.group(1) not in CLI_ALLOWED:
                    wrong.append(f"{nb.name}: {line.strip()}")
    assert not wrong, "\n".join(wrong)
