"""Remote-code shims: what lets plain diffusers load our pipelines, and the check that they are only that.

A saved pipeline folder gets `pipeline.py` next to `model_index.json` and `<component>/<module>.py` in each component
folder of ours, each a one-line import from the installed `diffusers_video`, and `model_index.json`'s `_class_name`
becomes `["pipeline", "<Class>"]` (diffusers' custom-pipeline format). With them, plain
`diffusers.DiffusionPipeline.from_pretrained(folder_or_repo, trust_remote_code=True)` returns our class, and
diffusers' `download` fetches a repo whose components come from a library it does not know.

Loading checks the other way round ([`check_remote_code_files`]): the shims are data, compared byte for byte with
what [`write_remote_code_files`] writes, so that loading our pipelines never runs a folder's or repo's own code (a
file that parses as a shim but is not those exact bytes, e.g. with a `# -*- coding: utf-7 -*-` line, is refused).
[`is_reexport_shim`] tells whether a text reads as a shim (what an upload may carry).

These functions take the pipeline's module path as an argument: they live below the pipeline classes and import none.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..folders import INDEX_NAME, class_name_of, components_of, read_json

__all__ = [
    "PIPELINE_SHIM",
    "check_remote_code_files",
    "is_reexport_shim",
    "remote_code_files",
    "write_remote_code_files",
]

# The shim next to model_index.json: `pipeline.py`, diffusers' default custom-pipeline file, which its `download`
# always fetches.
PIPELINE_SHIM = "pipeline"

_SHIM_DOC = (
    '"""diffusers-video shim: lets `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`\n'
    "load this {what}. It only imports {name} from the installed `diffusers_video` package (`pip install\n"
    'diffusers-video`); it defines nothing itself. Written by diffusers-video\'s `save_pretrained`."""\n'
)


def _shim_source(module: str, name: str, what: str) -> str:
    return f"{_SHIM_DOC.format(what=what, name=name)}\nfrom {module} import {name}\n\n__all__ = [{name!r}]\n"


def remote_code_files(index: dict[str, Any], pipeline_module: str) -> dict[str, str]:
    """The shim files of a pipeline folder, path in the folder -> source, for `model_index.json` `index`.

    `pipeline.py` imports the pipeline class from `pipeline_module`; every component whose library is a
    `diffusers_video` module gets `<component>/<module>.py`, which diffusers' `download` requires before it fetches a
    repo whose components come from a library it does not know.
    """
    class_name = class_name_of(index, INDEX_NAME)
    files = {f"{PIPELINE_SHIM}.py": _shim_source(pipeline_module, class_name, f"{class_name} pipeline")}
    for component, (library, component_class) in components_of(index).items():
        if isinstance(library, str) and (library == "diffusers_video" or library.startswith("diffusers_video.")):
            files[f"{component}/{library}.py"] = _shim_source(library, component_class, f"pipeline's `{component}`")
    return files


def write_remote_code_files(folder: str | Path, pipeline_module: str) -> list[Path]:
    """Writes the shims into a saved pipeline folder and names `pipeline.py` in its `model_index.json`.

    Args:
        folder (`str` or `Path`): A folder written by `save_pretrained`.
        pipeline_module (`str`): The module that defines the pipeline class, e.g.
            "diffusers_video.pipelines.videofusion.pipeline_videofusion".

    Returns:
        `list[Path]`: The files written (`model_index.json` included).
    """
    folder = Path(folder)
    index_file = folder / INDEX_NAME
    index = read_json(index_file, missing_ok=True)
    if index is None:
        raise FileNotFoundError(f"'{folder}' has no {INDEX_NAME}: it is not a pipeline folder.")
    written = []
    for relative, source in remote_code_files(index, pipeline_module).items():
        path = folder / relative
        if path.parent.is_dir() or path.parent == folder:
            path.write_text(source)
            written.append(path)
    index["_class_name"] = [PIPELINE_SHIM, class_name_of(index, index_file)]
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")  # as diffusers' save_config writes it
    return [index_file, *written]


def is_reexport_shim(source: str, names: Iterable[str] | None = None) -> bool:
    """Whether `source` is a shim: a docstring, `from diffusers_video[...] import Name` lines, `__all__`, nothing more.

    Importing such a file runs only the installed `diffusers_video` package, so loading a folder that has one does not
    run code from the folder or repo. `names`, if given, must all be imported.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    # diffusers' dynamic-module loader imports every module its regexes find in the text, docstring included
    # (`check_imports` in diffusers.utils.dynamic_modules_utils): those must be diffusers_video too
    mentioned = re.findall(r"^\s*import\s+(\S+)\s*$", source, flags=re.MULTILINE)
    mentioned += re.findall(r"^\s*from\s+(\S+)\s+import", source, flags=re.MULTILINE)
    if any(module.split(".")[0] != "diffusers_video" for module in mentioned):
        return False
    imported = set()
    for i, node in enumerate(tree.body):
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level != 0 or not (module == "diffusers_video" or module.startswith("diffusers_video.")):
                return False
            if any(alias.name == "*" or alias.asname not in (None, alias.name) for alias in node.names):
                return False
            imported.update(alias.name for alias in node.names)
            continue
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["__all__"]
            and isinstance(node.value, (ast.List, ast.Tuple))
            and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.value.elts)
        ):
            continue
        return False
    return set(names or ()) <= imported


def check_remote_code_files(
    folder: str | Path, index: dict[str, Any], components: Iterable[str], pipeline_module: str
) -> bool:
    """Checks the code files diffusers would run to load `components` of `folder`; True when there are any.

    The files are `model_index.json`'s custom pipeline file (`_class_name` `["pipeline", "Class"]`) and
    `<component>/<library>.py`. Each is data, not code: its bytes must equal exactly what [`write_remote_code_files`]
    writes for it ([`remote_code_files`] with `pipeline_module`, the module of the class the folder names). Anything
    else (another file name, a coding line, one more comment) is refused with a `ValueError` naming the file, before
    anything is imported, so that loading our pipelines never runs a repo's own code
    (`DiffusionPipeline.from_pretrained(..., trust_remote_code=True)` is the way to run code you trust).

    Args:
        folder (`str` or `Path`): The pipeline folder.
        index (`dict`): Its `model_index.json`.
        components (`Iterable[str]`): The components that will be loaded from the folder.
        pipeline_module (`str`): The module that defines the pipeline class the folder names.
    """
    folder = Path(folder)
    if (folder / "None.py").is_file():  # diffusers 0.42.1 runs `<custom_pipeline>.py` with custom_pipeline=None
        raise ValueError(f"'{folder / 'None.py'}' would be run by diffusers as a custom pipeline; it was not run.")
    plain = {**index, "_class_name": class_name_of(index, folder / INDEX_NAME)}
    written = {folder / relative: source for relative, source in remote_code_files(plain, pipeline_module).items()}
    found: list[Path] = []
    name = index.get("_class_name")
    if isinstance(name, (list, tuple)):
        shim = folder / f"{name[0]}.py"
        if name[0] != PIPELINE_SHIM:
            raise ValueError(
                f"'{folder / INDEX_NAME}' names the custom pipeline file '{name[0]}.py', but diffusers-video only "
                f"writes '{PIPELINE_SHIM}.py'; it was not run."
            )
        if not shim.is_file():
            raise FileNotFoundError(
                f"'{folder / INDEX_NAME}' names the custom pipeline file '{name[0]}.py' but '{shim}' does not exist."
            )
        found.append(shim)
    entries = components_of(index)
    for component in components:
        library, _ = entries.get(component, (None, None))
        if isinstance(library, str) and (folder / component / f"{library}.py").is_file():
            found.append(folder / component / f"{library}.py")
    for path in found:
        if path not in written or path.read_bytes() != written[path].encode():
            raise ValueError(
                f"'{path}' is custom code, not a diffusers-video shim: it is not byte for byte what `save_pretrained` "
                "writes, and it was not run. Load with `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)` if you trust it, "
                "or save the pipeline again."
            )
    return bool(found)
