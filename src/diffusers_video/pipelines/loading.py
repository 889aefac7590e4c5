"""What `VideoDiffusionPipeline.from_pretrained` and `download` need before a pipeline class is involved: the check
of a saved folder and the Hub download of a pipeline repo.

- [`check_pipeline_folder`] checks a folder before anything is loaded: its `model_index.json` names the class (or,
  for a base class that loads any of its subclasses, one of `pipeline_classes`), the components are the ones the
  class takes, of the classes it expects (from diffusers, transformers or diffusers_video only), with their folders
  present and complete safetensors files, and the code files diffusers would run are byte for byte the shims that
  `save_pretrained` writes (`pipelines.remote_code`).
- [`shadow_folder`] is what diffusers loads a folder with shims from: the folder's files linked, and the shims written
  anew by this package, so no code file of the folder is ever imported (the check above already refused any shim
  that is not exactly ours; the shadow also closes the gap between that check and diffusers' import).
- [`download_pipeline`] fetches a pipeline repo into the Hub cache. diffusers' own `DiffusionPipeline.download`
  refuses a repo whose components come from a library other than diffusers or transformers unless the repo ships
  `<component>/<library>.py` (`_get_custom_components_and_folders` in `diffusers.pipelines.pipeline_loading_utils`),
  so our pipelines use this one instead (see `VideoDiffusionPipeline.download`).

The pipeline classes are arguments here: this module lives below them and imports none.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from ..folders import (
    CARD_NAME,
    INDEX_NAME,
    PICKLE_SUFFIXES,
    check_no_pickled_weights,
    class_name_of,
    components_of,
    read_json,
)
from .remote_code import check_remote_code_files, remote_code_files

__all__ = [
    "check_pipeline_folder",
    "check_safetensors",
    "download_pipeline",
    "is_repo_id",
    "other_variants",
    "shadow_folder",
]

# What `download_pipeline` never fetches: pickled weights (unless `use_safetensors=False`) and formats we never load.
_NEVER_LOADED = ["*.msgpack", "*.onnx", "*.pb", "*.h5"]


def is_repo_id(value: str) -> bool:
    """Whether `value` is a valid Hub repo id ("name" or "namespace/name")."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


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


def _component_class(library: str, class_name: str) -> type | None:
    """The class a `model_index.json` entry names, when its library is diffusers, transformers or ours; else None."""
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


def check_pipeline_folder(
    folder: str | Path,
    pipeline_class: type,
    skip: Iterable[str] = (),
    *,
    pipeline_classes: Mapping[str, type] | None = None,
) -> tuple[type, bool]:
    """Checks that `folder` holds a `pipeline_class` before anything is loaded; the errors name the path.

    Checked: `model_index.json` exists and names `pipeline_class` or one of its bases (or, when `pipeline_classes` is
    given, one of those, which is returned); its components are the ones the class takes, of the classes it expects,
    with their folders present; their safetensors files are complete; and the code files diffusers would run are
    byte for byte the shims `save_pretrained` writes ([`check_remote_code_files`]). Components in `skip` (passed to
    `from_pretrained` by the caller) are not checked.

    Args:
        folder (`str` or `Path`): The folder.
        pipeline_class (`type`): The `DiffusionPipeline` subclass expected.
        skip (`Iterable[str]`, defaults to `()`): Components not to check.
        pipeline_classes (`Mapping[str, type]`, *optional*): For a base class that loads any of its subclasses
            (`VideoDiffusionPipeline`): the classes it loads, by name; the folder must name one of them.

    Returns:
        `tuple[type, bool]`: The pipeline class, and whether the folder has shims (to be loaded with
        `trust_remote_code=True`, which runs nothing but `diffusers_video` imports).
    """
    folder = Path(folder)
    index_file = folder / INDEX_NAME
    if not folder.is_dir():
        raise FileNotFoundError(f"'{folder}' does not exist or is not a folder.")
    index = read_json(index_file, missing_ok=True)
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
    if pipeline_classes is not None:
        if name not in pipeline_classes:
            raise ValueError(
                f"'{index_file}' names the pipeline class {name!r}, which is not a diffusers-video pipeline (those "
                f"are {sorted(pipeline_classes)}); load it with diffusers' DiffusionPipeline."
            )
        pipeline_class = pipeline_classes[name]
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
        if found is None and not (library in ("diffusers", "transformers") or library.startswith("diffusers_video")):
            raise ValueError(
                f"'{index_file}' names `{component}` as {class_name} from {library!r}, which is neither diffusers, "
                "transformers nor diffusers_video: diffusers-video loads no class from another module."
            )
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
    for component in loaded:
        check_no_pickled_weights(folder / component)  # unless `allow_pickle=True` (`folders.pickles_allowed`)
    check_safetensors(f for component in loaded for f in sorted((folder / component).glob("*.safetensors")))
    named = next((c for c in pipeline_class.__mro__ if c.__name__ == name), pipeline_class)
    return pipeline_class, check_remote_code_files(folder, index, loaded, named.__module__)


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


_WEIGHT_STEMS = ("diffusion_pytorch_model", "model", "pytorch_model")
_NOT_A_VARIANT = {"safetensors", "bin", "index", "json", "of"}


def _weights_variant(name: str) -> tuple[bool, str | None]:
    """Whether the file `name` holds weights (or their shard index), and its variant ("fp16" in
    `diffusion_pytorch_model.fp16.safetensors`, `model.safetensors.index.fp16.json`, ...; None for none)."""
    tokens = name.replace("-", ".").split(".")
    if tokens[0] not in _WEIGHT_STEMS or not ({"safetensors", "bin"} & set(tokens)):
        return False, None
    rest = [token for token in tokens[1:] if token not in _NOT_A_VARIANT and not token.isdigit()]
    return True, rest[0] if rest else None


def other_variants(files: Iterable[str], variant: str | None) -> list[str]:
    """The weights files among the repo's `files` that diffusers would not load for `variant`: in each folder that has
    weights of `variant`, all other weights; elsewhere the weights of any variant when plain ones exist."""
    by_folder: dict[str, list[tuple[str, str | None]]] = {}
    for file in files:
        is_weights, found = _weights_variant(file.rsplit("/", 1)[-1])
        if is_weights:
            by_folder.setdefault(file.rsplit("/", 1)[0] if "/" in file else "", []).append((file, found))
    skipped = []
    for weights in by_folder.values():
        variants = {found for _, found in weights}
        if variant in variants or None in variants:
            wanted = variant if variant in variants else None
            skipped.extend(file for file, found in weights if found != wanted)
        # else: only other variants; they are kept, and diffusers says what it cannot load
    return skipped


def _repo_files(
    repo_id: str, commit: str, cache_dir: str | os.PathLike | None, local_files_only: bool, token: str | bool | None
) -> list[str]:
    """The files of the repo at `commit`: asked of the Hub, or offline the listing `huggingface_hub` cached with the
    snapshot (the one it checks a cached snapshot against), or none when it has not."""
    from huggingface_hub import HfApi, constants, get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    if local_files_only or constants.HF_HUB_OFFLINE:
        try:
            return [entry.path for entry in get_cached_repo_tree(repo_id, revision=commit, cache_dir=cache_dir)]
        except CachedRepoTreeNotFoundError:
            return []
    return [sibling.rfilename for sibling in HfApi().model_info(repo_id, revision=commit, token=token).siblings or []]


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
    variant: str | None = None,
) -> str:
    """Downloads a pipeline repo into the Hub cache (or finds it there) and returns the snapshot folder.

    Fetches `model_index.json`, then in one `snapshot_download` pinned to the same commit: the top-level JSON, the
    shims, the card, and the folders of the components `model_index.json` names (except `skip_components` and absent
    ones). Pickled weights are skipped unless `use_safetensors=False`; of the weights variants, only those diffusers
    loads for `variant` (`other_variants`: the `variant` files where a folder has them, else the plain ones), which
    takes one listing of the repo's files. With `local_files_only=True` (or `HF_HUB_OFFLINE=1`) only the cache is
    read.

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
        ignore += other_variants(_repo_files(repo_id, commit, cache_dir, local_files_only, token), variant)
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


@contextlib.contextmanager
def shadow_folder(folder: str | os.PathLike, pipeline_module: str) -> Iterator[Path]:
    """A temporary copy of a pipeline folder for diffusers to load, whose code files are this package's own.

    Every file of `folder` except its `.py` files is linked (a symbolic link, so nothing large is copied);
    `model_index.json` is copied; the shims (`pipeline.py`, `<component>/<module>.py`) are written from
    `remote_code_files`, i.e. by this package, never read from `folder`. diffusers' loader, which imports a custom
    pipeline's shims when it is told `trust_remote_code=True`, therefore imports only code this package wrote.

    Args:
        folder (`str` or `os.PathLike`): A checked pipeline folder with shims.
        pipeline_module (`str`): The module of the pipeline class the folder holds.

    Yields:
        `Path`: The shadow folder, deleted on exit (the loaded tensors no longer need it).
    """
    folder = Path(folder).resolve()
    with tempfile.TemporaryDirectory(prefix="diffusers-video-load-") as temporary:
        shadow = Path(temporary)
        for source in sorted(folder.rglob("*")):
            target = shadow / source.relative_to(folder)
            if source.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif source.suffix != ".py" and source.name != INDEX_NAME:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source)
        shutil.copyfile(folder / INDEX_NAME, shadow / INDEX_NAME)
        index = read_json(shadow / INDEX_NAME)
        for relative, code in remote_code_files(index, pipeline_module).items():
            if (shadow / relative).parent.is_dir():
                (shadow / relative).write_text(code)
        yield shadow
