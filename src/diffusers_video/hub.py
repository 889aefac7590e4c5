"""Sharing diffusers-video pipelines and models on the Hugging Face Hub: model cards, remote-code shims, push and
download.

- [`make_model_card`] writes the card of a saved folder: YAML metadata (`library_name`, `pipeline_tag`, `base_model`,
  tags), the paper, how the model was trained and distilled (`training_config.json`, `distillation.json`), its
  moving-shapes scores (`quality.json`, from `diffusers-video bench quality`), a sample GIF and a usage snippet.
- [`push_folder`] uploads a saved pipeline or model folder in one commit, with the card and the shims, without
  changing the folder. `VideoFusionPipeline.push_to_hub` and `diffusers-video push` use it.
- [`download_pipeline`] fetches a pipeline repo into the Hub cache. diffusers' own `DiffusionPipeline.download`
  refuses a repo whose components come from a library other than diffusers or transformers unless the repo ships
  `<component>/<library>.py` (`_get_custom_components_and_folders` in `diffusers.pipelines.pipeline_loading_utils`), so
  our pipelines use this one instead (see `VideoDiffusionPipeline.download`).
- Remote-code shims ([`write_remote_code_files`]): `pipeline.py` next to `model_index.json` and
  `<component>/<module>.py` in each component folder, each a one-line import from the installed `diffusers_video`,
  with `model_index.json`'s `_class_name` set to `["pipeline", "<Class>"]` (diffusers' custom-pipeline format). With
  them, plain `diffusers.DiffusionPipeline.from_pretrained(folder_or_repo, trust_remote_code=True)` returns our class.

Why `library_name: diffusers` and not "diffusers-video": the Hub only knows the libraries listed in huggingface.js; for
"diffusers" it reads `model_index.json`, counts downloads, shows the pipeline class and offers a "Use this model"
snippet, while an unknown library name gets none of that. The repos are diffusers repos (loadable with diffusers and
`trust_remote_code=True`), and the "diffusers-video" tag makes them findable.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LIBRARY_NAME = "diffusers"
LIBRARY_TAG = "diffusers-video"
# The shim next to model_index.json: `pipeline.py`, diffusers' default custom-pipeline file, which its `download`
# always fetches.
PIPELINE_SHIM = "pipeline"
INDEX_NAME = "model_index.json"
TRAINING_CONFIG_NAME = "training_config.json"
DISTILLATION_NAME = "distillation.json"
SCORES_NAMES = ("quality.json", "bench_quality.json")  # `bench quality --output` (default: bench_quality.json)
SAMPLE_NAME = "sample.gif"
CARD_NAME = "README.md"
EXAMPLE_PROMPT = "a red circle moving right"
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl", ".pickle")
# What `download_pipeline` never fetches: pickled weights (unless `use_safetensors=False`) and formats we never load.
_NEVER_LOADED = ["*.msgpack", "*.onnx", "*.pb", "*.h5"]


@dataclass(frozen=True)
class Paper:
    """A paper a pipeline implements: its arXiv id and title."""

    arxiv: str
    title: str

    @property
    def url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv}"


PAPERS = {
    "VideoFusionPipeline": Paper(
        "2303.08320", "VideoFusion: Decomposed Diffusion Models for High-Quality Video Generation"
    ),
    "ImagenVideoPipeline": Paper("2210.02303", "Imagen Video: High Definition Video Generation with Diffusion Models"),
    "MagicVideoPipeline": Paper("2211.11018", "MagicVideo: Efficient Video Generation With Latent Diffusion Models"),
    "I2VGenXLPipeline": Paper(
        "2311.04145", "I2VGen-XL: High-Quality Image-to-Video Synthesis via Cascaded Diffusion Models"
    ),
    "VideoGenPipeline": Paper(
        "2309.00398",
        "VideoGen: A Reference-Guided Latent Diffusion Approach for High Definition Text-to-Video Generation",
    ),
}

__all__ = [
    "LIBRARY_NAME",
    "LIBRARY_TAG",
    "PAPERS",
    "check_pipeline_folder",
    "check_remote_code_files",
    "download_pipeline",
    "is_reexport_shim",
    "load_scores",
    "make_model_card",
    "pipeline_tag_for",
    "push_folder",
    "write_remote_code_files",
]


# ---------------------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------------------


def read_json(path: str | Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when the file does not exist, a `ValueError` naming it when it is not JSON."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"'{path}' is not valid JSON: {error}.") from error
    if not isinstance(value, dict):
        raise ValueError(f"'{path}' must hold a JSON object but holds a {type(value).__name__}.")
    return value


def class_name_of(index: dict[str, Any], index_file: str | Path) -> str:
    """The pipeline class named by `model_index.json`: `"Class"`, or `["module", "Class"]` for a custom pipeline."""
    name = index.get("_class_name")
    if isinstance(name, (list, tuple)) and len(name) == 2 and all(isinstance(n, str) for n in name):
        return name[1]
    if isinstance(name, str) and name:
        return name
    raise ValueError(f"'{index_file}' has no readable `_class_name` (found {name!r}): it is not a pipeline folder.")


def components_of(index: dict[str, Any]) -> dict[str, tuple[str | None, str | None]]:
    """The `(library, class)` entries of `model_index.json`, by component name (`(None, None)` for an absent one)."""
    return {
        key: tuple(value)
        for key, value in index.items()
        if not key.startswith("_")
        and isinstance(value, (list, tuple))
        and len(value) == 2
        and all(v is None or isinstance(v, str) for v in value)
    }


def pipeline_tag_for(pipeline_class: type) -> str:
    """The Hub task of a pipeline class: "image-to-video" if its `__call__` takes an `image`, else "text-to-video"."""
    return "image-to-video" if "image" in inspect.signature(pipeline_class.__call__).parameters else "text-to-video"


def is_repo_id(value: str) -> bool:
    """Whether `value` is a valid Hub repo id ("name" or "namespace/name")."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def _is_hub_model_id(value: Any) -> bool:
    """A base model worth naming in the card's metadata: a "namespace/name" repo id, not a folder on this machine."""
    return isinstance(value, str) and value.count("/") == 1 and is_repo_id(value) and not Path(value).exists()


def check_safetensors(files: Iterable[Path]) -> None:
    """Raises a `ValueError` naming the first file that is not a complete safetensors file (reads headers only)."""
    from safetensors import safe_open

    for file in files:
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except Exception as error:  # safetensors raises its own SafetensorError for every kind of damage
            raise ValueError(
                f"'{file}' is not a readable safetensors file ({error}); save it again, or download it again with "
                "`force_download=True`."
            ) from error


def _num_parameters(folder: Path) -> int | None:
    """Parameters stored in the safetensors files of a component folder, from their headers."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                shape = f.get_slice(key).get_shape()
                count = 1
                for size in shape:
                    count *= size
                total += count
    return total


# ---------------------------------------------------------------------------------------------------------------------
# Remote-code shims
# ---------------------------------------------------------------------------------------------------------------------

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
    index = read_json(index_file)
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


def check_remote_code_files(folder: str | Path, index: dict[str, Any], components: Iterable[str]) -> bool:
    """Checks the code files diffusers would run to load `components` of `folder`; True when there are any.

    The files are `model_index.json`'s custom pipeline file (`_class_name` `["pipeline", "Class"]`) and
    `<component>/<library>.py`. Each must be a shim ([`is_reexport_shim`]) importing the class it stands for;
    anything else is refused with a `ValueError` naming the file, so that loading our pipelines never runs a repo's
    own code (`DiffusionPipeline.from_pretrained(..., trust_remote_code=True)` is the way to run code you trust).
    """
    folder = Path(folder)
    if (folder / "None.py").is_file():  # diffusers 0.42.1 runs `<custom_pipeline>.py` with custom_pipeline=None
        raise ValueError(f"'{folder / 'None.py'}' would be run by diffusers as a custom pipeline; it was not run.")
    expected: dict[Path, str] = {}
    name = index.get("_class_name")
    if isinstance(name, (list, tuple)):
        shim = folder / f"{name[0]}.py"
        if not shim.is_file():
            raise FileNotFoundError(
                f"'{folder / INDEX_NAME}' names the custom pipeline file '{name[0]}.py' but '{shim}' does not exist."
            )
        expected[shim] = name[1]
    entries = components_of(index)
    for component in components:
        library, component_class = entries.get(component, (None, None))
        if isinstance(library, str) and (folder / component / f"{library}.py").is_file():
            expected[folder / component / f"{library}.py"] = component_class
    for path, class_name in expected.items():
        if not is_reexport_shim(path.read_text(), [class_name]):
            raise ValueError(
                f"'{path}' is custom code, not a diffusers-video shim importing {class_name} from `diffusers_video`; "
                "it was not run. Load with `diffusers.DiffusionPipeline.from_pretrained(..., trust_remote_code=True)` "
                "if you trust it."
            )
    return bool(expected)


def _component_class(library: str, class_name: str) -> type | None:
    """The class a `model_index.json` entry names, when its library is diffusers, transformers or ours; else None."""
    import importlib

    import diffusers.pipelines

    if library in ("diffusers", "transformers") or library.split(".")[0] == "diffusers_video":
        try:
            module = importlib.import_module(library)  # only these packages: never a module a repo names
        except ImportError:
            return None
        return getattr(module, class_name, None)
    if hasattr(diffusers.pipelines, library):  # a diffusers pipeline module, e.g. "stable_diffusion"
        return getattr(getattr(diffusers.pipelines, library), class_name, None)
    return None


def _is_tokenizer(cls: type) -> bool:
    return any(base.__name__ == "PreTrainedTokenizerBase" for base in cls.__mro__)


def check_pipeline_folder(folder: str | Path, pipeline_class: type, skip: Iterable[str] = ()) -> tuple[type, bool]:
    """Checks that `folder` holds a `pipeline_class` before anything is loaded; the errors name the path.

    Checked: `model_index.json` exists and names `pipeline_class` or one of its bases (or, for `VideoDiffusionPipeline`
    itself, one of our pipelines, which is returned); its components are the ones the class takes, of the classes it expects, with their
    folders present; their safetensors files are complete; and the code files diffusers would run are shims
    ([`check_remote_code_files`]). Components in `skip` (passed to `from_pretrained` by the caller) are not checked.

    Returns:
        `tuple[type, bool]`: The pipeline class, and whether the folder has shims (to be loaded with
        `trust_remote_code=True`, which runs nothing but `diffusers_video` imports).
    """
    from .pipelines.pipeline_utils import VideoDiffusionPipeline

    folder = Path(folder)
    index_file = folder / INDEX_NAME
    if not folder.is_dir():
        raise FileNotFoundError(f"'{folder}' does not exist or is not a folder.")
    index = read_json(index_file)
    if index is None:
        hint = (
            " It holds a single model (config.json): load it with its model class, e.g. `UNet3DModel.from_pretrained`."
            if (folder / "config.json").is_file()
            else ""
        )
        raise FileNotFoundError(
            f"'{folder}' has no {INDEX_NAME}, so it is not a pipeline folder written by `save_pretrained`.{hint}"
        )
    name = class_name_of(index, index_file)
    if pipeline_class is VideoDiffusionPipeline:
        resolved = VideoDiffusionPipeline.pipeline_class(name)
        if resolved is None:
            raise ValueError(
                f"'{index_file}' names the pipeline class {name!r}, which is not a diffusers-video pipeline (those "
                f"are {sorted(VideoDiffusionPipeline.pipeline_classes())}); load it with diffusers' DiffusionPipeline."
            )
        pipeline_class = resolved
    elif name not in {c.__name__ for c in pipeline_class.__mro__}:  # a subclass loads its parent's folders
        raise ValueError(
            f"'{index_file}' holds a {name}, not a {pipeline_class.__name__}: load it with `{name}.from_pretrained`."
        )

    expected, _ = pipeline_class._get_signature_keys(pipeline_class)
    types = pipeline_class._get_signature_types()
    entries = components_of(index)
    extra = sorted(set(entries) - set(expected))
    if extra:
        raise ValueError(
            f"'{index_file}' has components that {pipeline_class.__name__} does not take: {extra}; the folder holds "
            f"another pipeline's components ({pipeline_class.__name__} takes {sorted(expected)})."
        )
    skip = set(skip)
    loaded = []
    for component in expected:
        if component in skip:
            continue
        library, class_name = entries.get(component, (None, None))
        if library is None or class_name is None:
            if component in pipeline_class._optional_components:
                continue
            raise ValueError(
                f"'{index_file}' has no `{component}`, which {pipeline_class.__name__} requires; the folder holds "
                f"another pipeline's components (it has {sorted(entries)})."
            )
        if not (folder / component).is_dir():
            raise FileNotFoundError(f"'{folder / component}' is missing, but '{index_file}' names a `{component}`.")
        found = _component_class(library, class_name)
        wanted = tuple(t for t in types.get(component, ()) if isinstance(t, type) and t is not type(None))
        if found is None and (library in ("diffusers", "transformers") or library.split(".")[0] == "diffusers_video"):
            raise ValueError(
                f"'{index_file}' names `{component}` as {class_name} from {library}, which has no such class."
            )
        if found is not None and wanted and not issubclass(found, wanted):
            if not (_is_tokenizer(found) and all(_is_tokenizer(w) for w in wanted)):
                raise ValueError(
                    f"'{index_file}' names `{component}` as a {class_name} ({library}), but {pipeline_class.__name__} "
                    f"takes a {' or '.join(w.__name__ for w in wanted)}: the folder holds another pipeline's "
                    "components."
                )
        loaded.append(component)
    check_safetensors(f for component in loaded for f in sorted((folder / component).glob("*.safetensors")))
    return pipeline_class, check_remote_code_files(folder, index, loaded)


# ---------------------------------------------------------------------------------------------------------------------
# Download
# ---------------------------------------------------------------------------------------------------------------------


def _hub_error(repo_id: str, revision: str | None, error: Exception) -> Exception:
    """A one-line error naming `repo_id` for a `huggingface_hub` error (the original is kept as the cause)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(error, GatedRepoError):
        return PermissionError(
            f"The Hub repo '{repo_id}' is gated: accept its conditions and log in (`hf auth login`)."
        )
    if isinstance(error, RepositoryNotFoundError):
        return FileNotFoundError(
            f"There is no folder '{repo_id}' and no Hub repo '{repo_id}' on {constants.ENDPOINT} (or it is private "
            "and your token cannot read it)."
        )
    if isinstance(error, RevisionNotFoundError):
        return FileNotFoundError(f"The Hub repo '{repo_id}' has no revision {revision!r}.")
    if isinstance(error, IncompleteSnapshotError):
        return FileNotFoundError(
            f"The Hub cache ({constants.HF_HUB_CACHE}) has only part of '{repo_id}', and the Hub could not be asked "
            "(offline, `local_files_only=True`, or no connection): download it once online with all its components."
        )
    if isinstance(error, LocalEntryNotFoundError):
        return FileNotFoundError(
            f"'{repo_id}' is neither a folder nor in the Hub cache ({constants.HF_HUB_CACHE}), and the Hub could not "
            "be asked (offline, `local_files_only=True`, or no connection): download it once online."
        )
    if isinstance(error, EntryNotFoundError):
        return FileNotFoundError(
            f"The Hub repo '{repo_id}' has no {INDEX_NAME} (or misses a file it names): it is not a pipeline repo."
        )
    first_line = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return OSError(f"Could not download '{repo_id}' from the Hub: {first_line}")


def download_pipeline(
    repo_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
    use_safetensors: bool | None = None,
    skip_components: Iterable[str] = (),
) -> str:
    """Downloads a pipeline repo into the Hub cache (or finds it there) and returns the snapshot folder.

    Fetches `model_index.json`, then in one `snapshot_download` pinned to the same commit: the top-level JSON, the
    shims, the card, and the folders of the components `model_index.json` names (except `skip_components` and absent
    ones). Pickled weights are skipped unless `use_safetensors=False`. With `local_files_only=True` (or
    `HF_HUB_OFFLINE=1`) only the cache is read.

    Raises:
        FileNotFoundError: the repo, the revision or its `model_index.json` does not exist, or it is not cached when
            the Hub cannot be asked; the message names the repo id.
    """
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    local_files_only = bool(local_files_only)
    common = dict(cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    try:
        index_file = hf_hub_download(repo_id, INDEX_NAME, revision=revision, force_download=force_download, **common)
        commit = Path(index_file).parent.name
        index = read_json(index_file)
        skipped = set(skip_components)
        custom = index.get("_class_name")
        code = [f"{custom[0]}.py"] if isinstance(custom, list) and custom and isinstance(custom[0], str) else []
        folders = [
            f"{name}/*"
            for name, (library, _) in components_of(index).items()
            if library is not None and name not in skipped
        ]
        ignore = list(_NEVER_LOADED) + ([] if use_safetensors is False else [f"*{s}" for s in PICKLE_SUFFIXES])
        folder = snapshot_download(
            repo_id,
            revision=commit if re.fullmatch(r"[0-9a-f]{40}", commit) else revision,
            allow_patterns=[INDEX_NAME, "*.json", CARD_NAME, *code, *folders],
            ignore_patterns=ignore,
            force_download=force_download,
            **common,
        )
    except (HfHubHTTPError, LocalEntryNotFoundError) as error:
        raise _hub_error(repo_id, revision, error) from error
    return str(folder)


# ---------------------------------------------------------------------------------------------------------------------
# Model cards
# ---------------------------------------------------------------------------------------------------------------------


def load_scores(path: str | Path) -> dict[str, Any]:
    """A moving-shapes quality result (`diffusers-video bench quality --output FILE`), checked.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not such a result; the message names the file and what is missing.
    """
    path = Path(path)
    result = read_json(path)
    if result is None:
        raise FileNotFoundError(f"The scores file '{path}' does not exist.")
    scores = result.get("scores")
    if not isinstance(scores, dict) or not isinstance(scores.get("all_correct"), dict):
        raise ValueError(
            f"'{path}' is not a moving-shapes quality result (written by `diffusers-video bench quality --output`): "
            "it has no `scores.all_correct`."
        )
    return result


def _scores_section(result: dict[str, Any]) -> str:
    scores = result["scores"]
    setup = ", ".join(
        text
        for text in (
            f"{result['num_samples']} videos" if "num_samples" in result else None,
            f"{result['height']}x{result['width']} x {result['num_frames']} frames"
            if all(k in result for k in ("height", "width", "num_frames"))
            else None,
            f"{result['num_inference_steps']} steps" if "num_inference_steps" in result else None,
            f"guidance {result['guidance_scale']}" if result.get("guidance_scale") is not None else None,
            f"seed {result['seed']}" if "seed" in result else None,
        )
        if text
    )
    rows = ["| metric | value | 95% interval |", "|---|---|---|"]
    for key, label in (
        ("color", "colour accuracy"),
        ("shape", "shape accuracy"),
        ("direction", "direction accuracy"),
        ("speed", "speed accuracy"),
        ("all_correct", "all correct"),
    ):
        entry = scores.get(key)
        if isinstance(entry, dict) and entry.get("accuracy") is not None:
            rows.append(f"| {label} | {entry['accuracy']:.3f} | {entry['ci_low']:.3f}-{entry['ci_high']:.3f} |")
    for key, label in (("temporal_consistency", "temporal consistency"), ("background_flicker", "background flicker")):
        entry = scores.get(key)
        if isinstance(entry, dict) and entry.get("mean") is not None:
            rows.append(f"| {label} | {entry['mean']:.3f} | {entry['ci_low']:.3f}-{entry['ci_high']:.3f} |")
    if result.get("fsd") is not None:
        rows.append(
            f"| FSD against {result.get('num_real', '?')} real clips (lower is better) | {result['fsd']:.3f} | |"
        )
    if result.get("seconds_per_video") is not None:
        device = f" ({result['device']})" if result.get("device") else ""
        rows.append(f"| seconds per video{device} | {result['seconds_per_video']:.3f} | |")
    return (
        "## Evaluation: the moving-shapes world\n\n"
        "Scored by diffusers-video's `ShapesScorer` on held-out captions (attribute combinations never seen in "
        f"training){': ' + setup if setup else ''}. Reproduce with `diffusers-video bench quality`.\n\n"
        + "\n".join(rows)
        + "\n"
    )


def _training_section(training: dict[str, Any] | None, distillation: dict[str, Any] | None) -> str:
    if training is None and distillation is None:
        return ""
    lines = ["## Training", ""]
    if training is not None:
        data, model = training.get("data") or {}, training.get("model") or {}
        source = model.get("pretrained_model_name_or_path")
        where = (
            "the moving-shapes world (procedural captioned clips)" if data.get("path") is None else f"`{data['path']}`"
        )
        lines.append(f"- Data: {where}, {data.get('height')}x{data.get('width')} x {data.get('num_frames')} frames.")
        if source:
            lines.append(f"- Initialised from `{source}` ({model.get('unet_class', 'UNet3DModel')}).")
        optim = f"{training.get('max_train_steps')} steps, batch {training.get('train_batch_size')}"
        optim += f", AdamW learning rate {training.get('learning_rate')} ({training.get('lr_scheduler', 'constant')})"
        lines.append(f"- Optimisation: {optim}; mixed precision {training.get('mixed_precision', 'no')}.")
        details = [f"prediction type {training.get('prediction_type')}"]
        if training.get("ema_decay") is not None:
            details.append(f"EMA {training['ema_decay']}")
        if training.get("snr_gamma") is not None:
            details.append(f"min-SNR gamma {training['snr_gamma']}")
        if training.get("condition_dropout"):
            details.append(f"caption dropout {training['condition_dropout']}")
        if training.get("image_fraction"):
            details.append(f"joint image-video training ({training['image_fraction']} still images)")
        if training.get("freeze_spatial"):
            details.append("spatial layers frozen")
        lines.append(f"- Objective: {', '.join(details)}.")
        videofusion = training.get("videofusion")
        if isinstance(videofusion, dict):
            base = videofusion.get("base_model")
            lines.append(
                f"- VideoFusion: base noise ratio {videofusion.get('base_noise_ratio')}; base generator "
                + (
                    f"`{base}` ({'trained jointly' if videofusion.get('train_base', True) else 'frozen'})"
                    if base
                    else "none"
                )
                + "."
            )
        lines.append(f"- Seed {training.get('seed')}; the full config is `{TRAINING_CONFIG_NAME}` in this repo.")
    if distillation is not None:
        steps, teacher = distillation.get("num_inference_steps"), distillation.get("teacher_steps")
        text = (
            f"- Progressive distillation (Salimans & Ho 2022): round {distillation.get('round')} of "
            f"{distillation.get('num_rounds')}, a {steps}-step student of a {teacher}-step teacher"
        )
        if distillation.get("guidance_scale_range") is not None:
            low, high = distillation["guidance_scale_range"]
            text += f", classifier-free guidance distilled in for weights {low} to {high}"
        lines.append(text + f". Sample it with {steps} steps (`{DISTILLATION_NAME}`).")
    return "\n".join(lines) + "\n"


def usage_snippet(pipeline_class: str, repo_id: str, call: dict[str, Any], image: bool = False) -> str:
    """Python code that loads `repo_id` with `pipeline_class` and writes one video to video.gif."""
    arguments = "".join(f", {key}={value!r}" for key, value in call.items())
    lines = [
        "import torch",
        "from diffusers.utils import export_to_gif",
        "",
        f"from diffusers_video import {pipeline_class}",
        "",
        f'pipe = {pipeline_class}.from_pretrained("{repo_id}")',
        "generator = torch.Generator().manual_seed(0)",
    ]
    if image:
        size = (call.get("width") or 256, call.get("height") or 256)
        lines += ["from PIL import Image", f"image = Image.new('RGB', {size}, (220, 40, 40))  # your first frame"]
        call_start = f"pipe({EXAMPLE_PROMPT!r}, image=image"
    else:
        call_start = f"pipe({EXAMPLE_PROMPT!r}"
    lines += [
        f'frames = {call_start}{arguments}, output_type="pil", generator=generator).frames[0]',
        'export_to_gif(frames, "video.gif")',
    ]
    return "\n".join(lines) + "\n"


def _model_snippet(model_class: str, repo_id: str, config: dict[str, Any]) -> str:
    lines = ["import torch", "", f"from diffusers_video import {model_class}", ""]
    lines.append(f'model = {model_class}.from_pretrained("{repo_id}")')
    size, channels, text_dim = config.get("sample_size"), config.get("in_channels"), config.get("cross_attention_dim")
    if isinstance(size, int) and isinstance(channels, int) and isinstance(text_dim, int):
        lines += [
            f"latents = torch.randn(1, {channels}, 8, {size}, {size})  # (batch, channels, frames, height, width)",
            f"text = torch.randn(1, 7, {text_dim})  # text embeddings shared by all frames",
            "with torch.no_grad():",
            "    prediction = model(latents, 500, encoder_hidden_states=text).sample",
        ]
    return "\n".join(lines) + "\n"


def _folder_kind(folder: Path) -> tuple[str, dict[str, Any], type]:
    """("pipeline" or "model", its model_index.json or config.json, its class); the errors name the folder."""
    import diffusers_video

    from .pipelines.pipeline_utils import VideoDiffusionPipeline

    if not folder.is_dir():
        raise FileNotFoundError(f"'{folder}' does not exist or is not a folder.")
    index = read_json(folder / INDEX_NAME)
    if index is not None:
        name = class_name_of(index, folder / INDEX_NAME)
        cls = VideoDiffusionPipeline.pipeline_class(name)
        if cls is None:
            raise ValueError(
                f"'{folder / INDEX_NAME}' names the pipeline class {name!r}, which is not a diffusers-video pipeline "
                f"(those are {sorted(VideoDiffusionPipeline.pipeline_classes())})."
            )
        return "pipeline", index, cls
    config = read_json(folder / "config.json")
    name = config.get("_class_name") if config is not None else None
    cls = getattr(diffusers_video, name, None) if isinstance(name, str) else None
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise FileNotFoundError(
            f"'{folder}' has no {INDEX_NAME} and no config.json of a diffusers-video model: pass a folder written by "
            "`save_pretrained`."
        )
    return "model", config, cls


def make_model_card(
    folder: str | Path,
    repo_id: str,
    *,
    base_model: str | list[str] | None = None,
    scores: str | Path | dict[str, Any] | None = None,
    sample: str | Path | None = None,
    license: str | None = None,
):
    """The model card (`README.md`) of a saved pipeline or model folder.

    Args:
        folder (`str` or `Path`): A folder written by `save_pretrained` (a pipeline's or a model's).
        repo_id (`str`): The repo the card is for (used by the usage snippet and the title).
        base_model (`str` or `list[str]`, *optional*): Hub id(s) of the model(s) this one was made from (e.g.
            "stabilityai/stable-diffusion-2-1" when inflated from it). Defaults to the Hub ids among the training
            config's `model.pretrained_model_name_or_path` and `videofusion.base_model` (local folders are named in the
            text, not in the metadata, which only takes Hub ids).
        scores (`str`, `Path` or `dict`, *optional*): A moving-shapes quality result; defaults to `quality.json` or
            `bench_quality.json` in the folder.
        sample (`str` or `Path`, *optional*): A GIF shown on the card; it is uploaded as `sample.gif`. Defaults to
            `sample.gif` in the folder.
        license (`str`, *optional*): A Hub license id.

    Returns:
        `huggingface_hub.ModelCard`: The card; `card.save(path)` writes it.
    """
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(folder)
    kind, config, cls = _folder_kind(folder)
    training = read_json(folder / TRAINING_CONFIG_NAME)
    distillation = read_json(folder / DISTILLATION_NAME)
    if isinstance(scores, (str, Path)):
        scores = load_scores(scores)
    elif scores is None:
        found = next((folder / name for name in SCORES_NAMES if (folder / name).is_file()), None)
        scores = load_scores(found) if found is not None else None
    has_sample = sample is not None or (folder / SAMPLE_NAME).is_file()

    if base_model is None:
        candidates = []
        if training is not None:
            candidates.append((training.get("model") or {}).get("pretrained_model_name_or_path"))
            candidates.append((training.get("videofusion") or {}).get("base_model"))
        hub_ids = list(dict.fromkeys(c for c in candidates if _is_hub_model_id(c)))
        base_model = hub_ids[0] if len(hub_ids) == 1 else (hub_ids or None)

    name = cls.__name__
    paper = PAPERS.get(name)
    tags = [LIBRARY_TAG, name]
    if kind == "pipeline":
        pipeline_tag = pipeline_tag_for(cls)
        tags += [pipeline_tag, "video-generation"]
    else:
        pipeline_tag = None
        tags.append("video-generation")
    if paper is not None:
        tags.append(f"arxiv:{paper.arxiv}")
    data = ModelCardData(
        library_name=LIBRARY_NAME, pipeline_tag=pipeline_tag, base_model=base_model, tags=tags, license=license
    )

    title = repo_id.split("/")[-1]
    parts = [f"# {title}\n"]
    if kind == "pipeline":
        task = pipeline_tag.replace("-", " ")
        intro = f"A [diffusers-video](https://pypi.org/project/diffusers-video/) `{name}` for {task} generation"
    else:
        intro = f"A [diffusers-video](https://pypi.org/project/diffusers-video/) `{name}`"
    if paper is not None:
        intro += f", after [{paper.title}]({paper.url}) (arXiv {paper.arxiv})"
    if base_model:
        bases = base_model if isinstance(base_model, list) else [base_model]
        intro += f", made from {', '.join(f'[{b}](https://huggingface.co/{b})' for b in bases)}"
    parts.append(intro + ".\n")
    if has_sample:
        parts.append(f"![A video generated by this pipeline]({SAMPLE_NAME})\n")

    parts.append("## Usage\n")
    if kind == "pipeline":
        call = {}
        data_config = (training or {}).get("data") or {}
        for key in ("height", "width", "num_frames"):
            if isinstance(data_config.get(key), int) and key in inspect.signature(cls.__call__).parameters:
                call[key] = data_config[key]
        steps = (distillation or {}).get("num_inference_steps")
        call["num_inference_steps"] = steps if isinstance(steps, int) else 25
        snippet = usage_snippet(name, repo_id, call, image=pipeline_tag == "image-to-video")
        parts.append(
            "```bash\npip install diffusers-video\n```\n\n```python\n" + snippet + "```\n\n"
            "From the command line: "
            f'`diffusers-video generate --pipeline {repo_id} --prompt "{EXAMPLE_PROMPT}" --output video.mp4`. '
            "With diffusers' own loader (diffusers-video must be installed): "
            f'`DiffusionPipeline.from_pretrained("{repo_id}", trust_remote_code=True)`; the repo\'s `.py` files only '
            "import the classes from `diffusers_video`.\n"
        )
        rows = ["| component | class | parameters |", "|---|---|---|"]
        for component, (library, component_class) in components_of(config).items():
            if library is None:
                continue
            count = _num_parameters(folder / component)
            rows.append(f"| `{component}` | `{component_class}` ({library}) | {f'{count:,}' if count else ''} |")
        parts.append("## Components\n\n" + "\n".join(rows) + "\n")
    else:
        parts.append("```python\n" + _model_snippet(name, repo_id, config) + "```\n")
        count = _num_parameters(folder)
        if count:
            parts.append(f"{count:,} parameters.\n")

    training_text = _training_section(training, distillation)
    if training_text:
        parts.append(training_text)
    if scores is not None:
        parts.append(_scores_section(scores))
    if paper is not None:
        parts.append(f"## Paper\n\n[{paper.title}]({paper.url}), arXiv:{paper.arxiv}.\n")
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(parts))


# ---------------------------------------------------------------------------------------------------------------------
# Push
# ---------------------------------------------------------------------------------------------------------------------


def _folder_files(folder: Path) -> list[Path]:
    """Every file under `folder`, except hidden ones (`.git`, `.cache`, ...) and `__pycache__`."""
    files = []
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        if path.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in parts):
            files.append(path)
    return files


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    base_model: str | list[str] | None = None,
    scores: str | Path | None = None,
    sample: str | Path | None = None,
    allow_pickle: bool = False,
):
    """Uploads a saved pipeline or model folder to the Hub in one commit, with a model card; the folder is not changed.

    A pipeline folder goes up with its shims and `model_index.json`'s `_class_name` set to `["pipeline", "<Class>"]`
    (see [`write_remote_code_files`]), so that `DiffusionPipeline.from_pretrained(repo_id, trust_remote_code=True)`
    loads it. The card is generated by [`make_model_card`] unless the folder has a `README.md`; `scores` and `sample`
    files from elsewhere are uploaded as `quality.json` and `sample.gif`.

    Args:
        folder (`str` or `Path`): A folder written by `save_pretrained`.
        repo_id (`str`): "namespace/name"; created if it does not exist.
        private (`bool`, *optional*): Create the repo private (ignored when it exists).
        token (`str`, *optional*): A Hub token; defaults to the saved one.
        commit_message (`str`, *optional*): Defaults to "Upload <Class> with diffusers-video".
        create_pr (`bool`, defaults to False): Open a pull request instead of committing to main.
        base_model, scores, sample: See [`make_model_card`].
        allow_pickle (`bool`, defaults to False): Upload pickled files (`.ckpt`, `.bin`, `.pt`, ...); refused by
            default, since loading them runs code on the downloader's machine.

    Returns:
        `huggingface_hub.CommitInfo`: The commit (`.commit_url`, `.oid`, `.repo_url`).
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    kind, config, cls = _folder_kind(folder)
    if not is_repo_id(repo_id) or repo_id.count("/") != 1:
        raise ValueError(f"`repo_id` must be 'namespace/name' (letters, digits, '-', '_', '.') but is {repo_id!r}.")
    if kind == "pipeline":
        check_pipeline_folder(folder, cls)
    files = _folder_files(folder)
    pickled = [f for f in files if f.suffix.lower() in PICKLE_SUFFIXES]
    if pickled and not allow_pickle:
        raise ValueError(
            f"'{pickled[0]}' is a pickled file, which runs code when loaded; convert it to safetensors, leave it out, "
            "or pass `allow_pickle=True` (`--allow_pickle`) to upload it anyway."
        )
    check_safetensors(f for f in files if f.suffix == ".safetensors")
    if sample is not None and not Path(sample).is_file():
        raise FileNotFoundError(f"The sample file '{sample}' does not exist.")

    contents: dict[str, str | bytes] = {f.relative_to(folder).as_posix(): str(f) for f in files}
    if kind == "pipeline":
        for relative, source in remote_code_files(config, cls.__module__).items():
            if relative.count("/") == 0 or (folder / relative).parent.is_dir():
                contents[relative] = source.encode()
        index = dict(config, _class_name=[PIPELINE_SHIM, cls.__name__])
        contents[INDEX_NAME] = (json.dumps(index, indent=2, sort_keys=True) + "\n").encode()
    if scores is not None:
        load_scores(scores)
        contents[SCORES_NAMES[0]] = str(scores)
    if sample is not None:
        contents[SAMPLE_NAME] = str(sample)
    if CARD_NAME not in contents:
        card = make_model_card(folder, repo_id, base_model=base_model, scores=scores, sample=sample)
        contents[CARD_NAME] = str(card).encode()

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=value) for path, value in contents.items()]
    return api.create_commit(
        repo_id,
        operations,
        commit_message=commit_message or f"Upload {cls.__name__} with diffusers-video",
        create_pr=create_pr,
    )
