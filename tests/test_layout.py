"""The shape of the house (DESIGN.md): small modules, no import cycles, no Qt in the engine."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gradviz"
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The gradviz modules that ``name`` imports, at its top or inside its functions: an
    import deferred into a function still ties the two modules together."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_import_cycles_inside_gradviz():
    mods = modules()
    graph = {name: top_level_imports(name, path, set(mods)) for name, path in mods.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_finds_a_cycle(tmp_path):
    # The checker itself must be able to fail: two modules that import each other.
    (tmp_path / "a.py").write_text("from pkg import b\n")
    (tmp_path / "b.py").write_text("from pkg.a import x\n")
    known = {"pkg.a", "pkg.b"}
    assert top_level_imports("pkg.a", tmp_path / "a.py", known) == {"pkg.b"}
    assert top_level_imports("pkg.b", tmp_path / "b.py", known) == {"pkg.a"}


def test_the_engine_and_the_config_import_no_qt():
    for name, path in modules().items():
        if name.startswith(("gradviz.engine", "gradviz.config", "gradviz.api",
                            "gradviz.tensorboard", "gradviz.options")):
            text = path.read_text(encoding="utf-8")
            assert "PyQt6" not in text and "pyqtgraph" not in text, name


def _lint(project: Path, cwd: Path) -> tuple[int, str]:
    """import-linter's verdict on ``project``'s contracts (its pyproject.toml), run as the
    ``lint-imports`` command is, in a fresh interpreter so that its import graph is built
    from the files on disk."""
    import subprocess
    import sys
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))")
    env = dict(__import__("os").environ, PYTHONPATH=str(cwd))
    done = subprocess.run([sys.executable, "-c", code, str(project / "pyproject.toml")],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


def test_the_architecture_contracts_hold():
    # pyproject.toml's [tool.importlinter] contracts: the layers (cli/api over ui over the
    # experiments over the engine over the configuration) and no Qt below the window.
    pytest = __import__("pytest")
    pytest.importorskip("importlinter")
    code, out = _lint(PACKAGE.parent, PACKAGE.parent)
    assert code == 0, out


def test_the_contracts_can_fail(tmp_path):
    # A copy of the house with one forbidden import planted in the engine.
    import shutil
    pytest = __import__("pytest")
    pytest.importorskip("importlinter")
    shutil.copytree(PACKAGE, tmp_path / "gradviz",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
    shutil.copy(PACKAGE.parent / "pyproject.toml", tmp_path / "pyproject.toml")
    planted = tmp_path / "gradviz" / "engine" / "model" / "network.py"
    planted.write_text(planted.read_text(encoding="utf-8") + "\nimport gradviz.ui.state\n",
                       encoding="utf-8")
    code, out = _lint(tmp_path, tmp_path)
    assert code != 0 and "gradviz.engine.model.network" in out, out


def test_the_architecture_page_names_every_module():
    # docs/architecture.md maps the house: a module it does not name is one a newcomer
    # cannot find from it.
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [path.relative_to(PACKAGE).as_posix() for path in sorted(PACKAGE.rglob("*.py"))
               if f"`{path.relative_to(PACKAGE).as_posix()}`" not in page]
    assert not missing, f"docs/architecture.md does not name: {missing}"
