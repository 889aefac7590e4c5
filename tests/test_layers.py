"""The layers of `diffusers_video` (docs: /work/shared/design/ARCHITECTURE.md, "Layers"), read from the source.

Every import between the package's own modules is read with `ast`: at module level and inside functions, relative
(`from ..hub import x`) and absolute (`import diffusers_video.hub`). Each module has a layer; a module may import its
own layer and the layers below it, never one above, and no modules may import each other in a circle. Bottom to top:

    1 folders  2 schedulers  3 models  3.5 conversion  4 guidance
    5 pipelines: the shared modules (checks, prompts, denoising, loading, pipeline_utils, ...), then 5.5 one folder
      per paper (and the `pipelines` package itself, which imports them): a shared module imports no paper folder
    6 data  7 hub  8 training  9 commands and cli  10 the package's `__init__` and testing_utils (nothing imports them)

A package's `__init__` may import its own submodules. An import inside a function between our own modules needs a
reason, written as a comment starting with `# deferred import:` on the import or the line above it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "diffusers_video"
REASON_MARK = "# deferred import:"
# How many imports of our own modules inside functions there may be, each with its reason (today: none).
DEFERRED_IMPORTS_ALLOWED = 0

# (module prefix, layer, name), most specific first. `pipelines.<folder>` (a sub-package) is a paper's folder.
LAYERS = [
    ("folders", 1, "folders"),
    ("schedulers", 2, "schedulers"),
    ("models", 3, "models"),
    ("conversion", 3.5, "conversion"),
    ("guidance", 4, "guidance"),
    ("pipelines", 5, "pipelines (shared)"),
    ("data", 6, "data"),
    ("hub", 7, "hub"),
    ("training", 8, "training"),
    ("commands", 9, "commands"),
    ("cli", 9, "cli"),
    ("testing_utils", 10, "top"),
]
PAPER_LAYER = (5.5, "pipelines (a paper's folder)")
TOP_LAYER = (10, "top")


@dataclass(frozen=True)
class Import:
    """One import of a module of the package by another."""

    source: str
    target: str
    file: str  # relative to the source root
    line: int
    in_function: bool
    reason: str | None

    def where(self) -> str:
        return f"{self.file}:{self.line}" + (" (inside a function)" if self.in_function else "")


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of `package` under `root`, by dotted name (a package by its own name, for its `__init__.py`)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def is_package(module: str, modules: dict[str, Path]) -> bool:
    return modules[module].name == "__init__.py"


def _reason(lines: list[str], node: ast.stmt) -> str | None:
    """The text after `REASON_MARK` on the import's lines or the line above it, if any."""
    for text in lines[max(node.lineno - 2, 0) : node.end_lineno]:
        if REASON_MARK in text:
            return text.split(REASON_MARK, 1)[1].strip() or None
    return None


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The module `name` refers to: itself, or the nearest package or module above it (an attribute of it)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _imports_of(source: str, root: Path, modules: dict[str, Path], package: str) -> list[Import]:
    """The imports of the package's modules by the module `source`."""
    path = modules[source]
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text, filename=str(path))
    in_functions = {
        id(node)
        for function in ast.walk(tree)
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(function)
    }
    base = source if is_package(source, modules) else source.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                origin = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            if origin == package or origin.startswith(package + "."):
                for alias in node.names:
                    candidate = f"{origin}.{alias.name}"
                    targets.append(candidate if candidate in modules else _resolve(origin, modules))
        elif isinstance(node, ast.Import):
            targets = [
                _resolve(alias.name, modules)
                for alias in node.names
                if alias.name == package or alias.name.startswith(package + ".")
            ]
        file = path.relative_to(root).as_posix()
        for target in dict.fromkeys(targets):
            if target != source:
                found.append(Import(source, target, file, node.lineno, id(node) in in_functions, _reason(lines, node)))
    return sorted(found, key=lambda entry: entry.line)


def read_imports(root: Path, package: str) -> tuple[dict[str, Path], list[Import]]:
    """The modules of `package` and every import of one of them by another (one entry per imported module)."""
    modules = module_names(root, package)
    return modules, [entry for source in modules for entry in _imports_of(source, root, modules, package)]


def layer_of(module: str, modules: dict[str, Path], package: str = PACKAGE) -> tuple[float, str]:
    """(layer, name) of a module; a `KeyError` for a module that no entry of `LAYERS` covers."""
    if module == package:
        return TOP_LAYER
    relative = module[len(package) + 1 :]
    parts = relative.split(".")
    if parts[0] == "pipelines" and (len(parts) == 1 or is_package(f"{package}.pipelines.{parts[1]}", modules)):
        return PAPER_LAYER  # the `pipelines` package (it imports the papers' folders) or a paper's folder
    for prefix, layer, name in LAYERS:
        if relative == prefix or relative.startswith(prefix + "."):
            return layer, name
    raise KeyError(module)


def _own_submodule(source: str, target: str, modules: dict[str, Path]) -> bool:
    """A package's `__init__` importing one of its own submodules."""
    return is_package(source, modules) and target.startswith(source + ".")


def upward_imports(modules: dict[str, Path], imports: list[Import], package: str = PACKAGE) -> list[str]:
    """Each import of a higher layer by a lower one, naming both modules and their layers."""
    found = []
    for entry in imports:
        if entry.source == package or _own_submodule(entry.source, entry.target, modules):
            continue
        (source_layer, source_name), (target_layer, target_name) = (
            layer_of(entry.source, modules, package),
            layer_of(entry.target, modules, package),
        )
        if target_layer > source_layer:
            found.append(
                f"{entry.source} (layer {source_layer:g}, {source_name}) imports {entry.target} (layer "
                f"{target_layer:g}, {target_name}) at {entry.where()}"
            )
    return found


def import_circles(imports: list[Import]) -> list[tuple[list[str], list[str]]]:
    """The circles of the import graph: for each strongly connected component of more than one module, its modules
    and one circle through them (a path, its first module repeated at the end)."""
    graph: dict[str, set[str]] = {}
    for entry in imports:
        graph.setdefault(entry.source, set()).add(entry.target)
        graph.setdefault(entry.target, set())
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    circles = []
    for component in components:
        members = set(component)
        path, node = [component[0]], component[0]
        while True:  # walk inside the component back to its first module: a path through the circle
            node = next(n for n in sorted(graph[node]) if n in members and (n == component[0] or n not in path))
            path.append(node)
            if node == component[0]:
                break
        circles.append((component, path))
    return circles


def unexplained_function_imports(imports: list[Import]) -> list[str]:
    """Imports of our modules inside functions with no `# deferred import: <reason>` comment."""
    return [
        f"{entry.source} imports {entry.target} at {entry.where()}"
        for entry in imports
        if entry.in_function and entry.reason is None
    ]


# ---------------------------------------------------------------------------------------------------------------------
# The package
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def package():
    return read_imports(SOURCE, PACKAGE)


def test_every_module_has_a_layer(package):
    modules, _ = package
    missing = []
    for module in modules:
        try:
            layer_of(module, modules)
        except KeyError:
            missing.append(module)
    assert not missing, f"Modules without a layer (add them to LAYERS in tests/test_layers.py): {missing}"


def test_no_module_imports_a_higher_layer(package):
    modules, imports = package
    found = upward_imports(modules, imports)
    assert not found, "Imports from a lower layer to a higher one:\n" + "\n".join(found)


def test_shared_pipeline_modules_import_no_paper_folder(package):
    modules, imports = package
    shared = [m for m in modules if layer_of(m, modules) == (5, "pipelines (shared)")]
    assert f"{PACKAGE}.pipelines.pipeline_utils" in shared and f"{PACKAGE}.pipelines.loading" in shared
    found = [
        f"{entry.source} imports {entry.target} at {entry.where()}"
        for entry in imports
        if entry.source in shared and layer_of(entry.target, modules) == PAPER_LAYER
    ]
    assert not found, "Shared pipeline modules importing a paper's folder:\n" + "\n".join(found)


def test_no_import_circles(package):
    _, imports = package
    circles = import_circles(imports)
    assert not circles, "Modules that import each other in a circle:\n" + "\n".join(
        f"{' -> '.join(path)} (the modules of this circle and the others it joins: {', '.join(members)})"
        for members, path in circles
    )


def test_imports_inside_functions_state_their_reason(package):
    _, imports = package
    found = unexplained_function_imports(imports)
    assert not found, (
        f"Imports of the package's own modules inside functions, with no `{REASON_MARK} <reason>` comment (import "
        "at module level instead; a circle or an upward import is not a reason):\n" + "\n".join(found)
    )
    deferred = [entry for entry in imports if entry.in_function]
    assert len(deferred) <= DEFERRED_IMPORTS_ALLOWED, (
        f"{len(deferred)} imports inside functions, {DEFERRED_IMPORTS_ALLOWED} allowed: "
        + "; ".join(f"{entry.where()} ({entry.reason})" for entry in deferred)
    )


# ---------------------------------------------------------------------------------------------------------------------
# The checks themselves, on a small package written here
# ---------------------------------------------------------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checks_find_upward_imports_circles_and_unexplained_function_imports(tmp_path):
    _write(
        tmp_path,
        {
            "__init__.py": "from . import hub\nfrom .models import unet\n",
            "folders.py": "",
            "models/__init__.py": "from .unet import Net\n",
            "models/unet.py": (
                "from ..folders import NAME\n\n\ndef push():\n    from ..hub import push_folder\n\n\n"
                "def lazy():\n    # deferred import: shown in the test\n    import diffusers_video.data.shapes\n"
            ),
            "pipelines/__init__.py": "from .paper import Pipeline\n",
            "pipelines/checks.py": "from .paper.pipeline import Pipeline\n",
            "pipelines/paper/__init__.py": "",
            "pipelines/paper/pipeline.py": "from ..checks import check\n",
            "data/__init__.py": "",
            "data/shapes.py": "from .. import folders\n",
            "hub.py": "import diffusers_video.training.trainer\n",
            "training/__init__.py": "",
            "training/trainer.py": "from ..hub import x\n",
        },
    )
    modules, imports = read_imports(tmp_path, PACKAGE)
    assert {(e.source, e.target) for e in imports} >= {
        ("diffusers_video.models.unet", "diffusers_video.folders"),
        ("diffusers_video.models.unet", "diffusers_video.hub"),
        ("diffusers_video.models.unet", "diffusers_video.data.shapes"),
        ("diffusers_video.data.shapes", "diffusers_video.folders"),
        ("diffusers_video.hub", "diffusers_video.training.trainer"),
    }
    upward = upward_imports(modules, imports)
    assert any(
        line.startswith("diffusers_video.models.unet (layer 3, models) imports diffusers_video.hub") for line in upward
    )
    assert any("diffusers_video.pipelines.checks (layer 5, pipelines (shared)) imports" in line for line in upward)
    assert any(
        "diffusers_video.hub (layer 7, hub) imports diffusers_video.training.trainer" in line for line in upward
    )
    assert not any(line.startswith("diffusers_video.pipelines (") for line in upward)  # its own folders
    assert not any(line.startswith("diffusers_video (") for line in upward)  # the top imports everything
    circles = import_circles(imports)
    assert sorted(tuple(path) for _, path in circles) == [
        ("diffusers_video.hub", "diffusers_video.training.trainer", "diffusers_video.hub"),
        (
            "diffusers_video.pipelines.checks",
            "diffusers_video.pipelines.paper.pipeline",
            "diffusers_video.pipelines.checks",
        ),
    ]
    unexplained = unexplained_function_imports(imports)
    assert len(unexplained) == 1 and unexplained[0].startswith(
        "diffusers_video.models.unet imports diffusers_video.hub"
    )
    assert "(inside a function)" in unexplained[0]
