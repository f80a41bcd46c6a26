"""The package layout as tests: no import cycles inside fashionlab, and imports only downwards.

The graph is built from the modules' own import statements (module level and inside functions;
imports under `if TYPE_CHECKING:` are left out, they never run), so a function-level import
cannot hide a cycle.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src"

# Bottom to top: a module may import from its own layer's packages or any layer below.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "_io", "_read", "_env", "_platform", "allocator", "_extras"),
    ("config",),
    ("data", "numpy_nn", "evaluation"),
    ("models",),
    ("accel",),
    ("runs",),
    ("training",),
    ("viz", "tracking"),
    ("report",),
    ("robustness", "audit"),
    ("studies",),
    ("inference",),
    ("serve", "notebook"),
    ("cli",),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / "fashionlab").rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The fashionlab modules that `name` (at `path`) imports, resolved to module names."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("fashionlab"))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                if not base.startswith("fashionlab"):
                    continue
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in modules else base)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(name)
    return {m for m in found if m in modules}


@functools.cache
def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the fashionlab package itself: the lazy public API, above everything
    for rank, packages in enumerate(LAYERS):
        if parts[1] in packages:
            return rank
    return None


def test_the_graph_sees_function_level_imports() -> None:
    # Guards the test itself: trainer.py imports the model registry inside a function.
    graph = _graph()
    assert "fashionlab.models" in graph["fashionlab.training.trainer"]
    assert "fashionlab.errors" in graph["fashionlab.config"]
    # ... within a package too: the settings build the MLflow logger inside a method (and the
    # logger names the settings only for type checkers, so there is no cycle to find)
    assert "fashionlab.tracking.mlflow_logger" in graph["fashionlab.tracking.settings"]
    assert "fashionlab.tracking.settings" not in graph["fashionlab.tracking.mlflow_logger"]


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = [m for m in _modules() if m != "fashionlab" and _layer(m) is None]
    unplaced = [m for m in unplaced if m != "fashionlab.__main__"]
    assert not unplaced, f"add these to LAYERS: {unplaced}"


@pytest.mark.parametrize("module", sorted(_modules()))
def test_imports_only_go_downwards(module: str) -> None:
    mine = _layer(module)
    if mine is None:
        return
    # `fashionlab` itself (for __version__) is every module's parent package: always loaded.
    upward = [m for m in _graph()[module] if _layer(m) is not None and _layer(m) > mine]
    assert not upward, f"{module} (layer {mine}) imports from above: {sorted(upward)}"


@pytest.mark.slow
@pytest.mark.extra("serve")
def test_importing_fashionlab_changes_no_global_torch_state() -> None:
    # Determinism is the trainer's business for the run it does (train.device), not a side
    # effect of `import fashionlab...` in a notebook or a server.
    import subprocess
    import sys

    code = (
        "import torch; before = (torch.are_deterministic_algorithms_enabled(), "
        "torch.utils.deterministic.fill_uninitialized_memory);"
        "import fashionlab.training, fashionlab.studies, fashionlab.serve, fashionlab.cli;"
        "after = (torch.are_deterministic_algorithms_enabled(), "
        "torch.utils.deterministic.fill_uninitialized_memory);"
        "assert before == after, (before, after)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_training_restores_the_determinism_setting_it_found(tmp_path) -> None:
    import torch

    from fashionlab.models import build_config
    from fashionlab.training import train

    assert not torch.are_deterministic_algorithms_enabled()
    config = build_config("s4-ann", {"epochs": 1, "train_subset": 64, "eval_subset": 50})
    train(config, tmp_path, quiet=True)
    assert not torch.are_deterministic_algorithms_enabled()


# -- every file read goes through fashionlab._read ----------------------------------------------

# Calls that read a file by name. `open(...)` with a write mode, and calls on `io.BytesIO(...)`
# (bytes already read through `_read`), are not reads of a file.
_READ_ATTRIBUTES = {"read_text", "read_bytes"}
_READ_FUNCTIONS = {
    ("json", "load"),
    ("np", "load"),
    ("numpy", "load"),
    ("torch", "load"),
    ("safetensors", "safe_open"),
}
_READ_NAMES = {"safe_open", "load_file"}


def _writes(call: ast.Call) -> bool:
    modes = [a for a in call.args[1:2]] + [k.value for k in call.keywords if k.arg == "mode"]
    return any(
        isinstance(m, ast.Constant) and isinstance(m.value, str) and set(m.value) & set("wax")
        for m in modes
    )


def _in_memory(call: ast.Call) -> bool:
    first = call.args[0] if call.args else None
    return (
        isinstance(first, ast.Call)
        and isinstance(first.func, ast.Attribute)
        and first.func.attr == "BytesIO"
    )


def unbounded_reads(source: str, filename: str = "<planted>") -> list[str]:
    """`file:line: call` for every call in `source` that reads a file without `_read`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        func, what = node.func, None
        if isinstance(func, ast.Name):
            if func.id == "open" and not _writes(node):
                what = "open("
            elif func.id in _READ_NAMES:
                what = f"{func.id}("
        elif isinstance(func, ast.Attribute):
            owner = func.value.id if isinstance(func.value, ast.Name) else None
            if func.attr in _READ_ATTRIBUTES:
                what = f".{func.attr}("
            elif (owner, func.attr) in _READ_FUNCTIONS and not _in_memory(node):
                what = f"{owner}.{func.attr}("
            elif func.attr == "open" and owner != "os" and not _writes(node):
                what = None if _in_memory(node) else ".open("
        if what:
            found.append(f"{filename}:{node.lineno}: {what}")
    return found


def test_every_file_read_goes_through_the_bounded_reader() -> None:
    offenders = [
        hit
        for name, path in _modules().items()
        if name != "fashionlab._read"
        for hit in unbounded_reads(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert not offenders, "read these through fashionlab._read: " + "; ".join(offenders)


@pytest.mark.parametrize(
    "planted",
    [
        "data = open(path).read()",
        "data = open(path, 'rb').read()",
        "with path.open() as handle: pass",
        "text = path.read_text()",
        "blob = (folder / 'x.bin').read_bytes()",
        "value = json.load(handle)",
        "arrays = np.load(path, allow_pickle=False)",
        "state = torch.load(path, weights_only=True)",
        "handle = safe_open(str(path), framework='pt')",
        "state = load_file(path)",
    ],
)
def test_the_reader_walk_finds_a_planted_unbounded_read(planted: str) -> None:
    assert unbounded_reads(planted), planted


@pytest.mark.parametrize(
    "allowed",
    [
        "open(path, 'wb').write(data)",
        "with open(tmp, mode='w') as handle: pass",
        "image = Image.open(io.BytesIO(data))",
        "array = np.load(io.BytesIO(data), allow_pickle=False)",
        "fd = os.open(path, os.O_RDONLY)",
        "value = json.loads(text)",
    ],
)
def test_the_reader_walk_leaves_writes_and_bytes_in_memory_alone(allowed: str) -> None:
    assert not unbounded_reads(allowed), allowed
