"""The bottom layer: what the package knows about saved folders, and nothing of the package itself.

- The names of the files that saving, training, distillation, evaluation and publishing write next to a
  `model_index.json`, each defined once here ([`INDEX_NAME`], [`TRAINING_CONFIG_NAME`], [`DISTILLATION_NAME`], ...).
- One JSON reader, [`read_json`], with one contract: the JSON object in a file; `None` for a missing file only when
  the caller says a missing file is fine (`missing_ok=True`), a `FileNotFoundError` otherwise; a `ValueError` naming
  the file when it is not a JSON object.
- The `model_index.json` helpers [`class_name_of`] and [`components_of`].
- Atomic folders ([`atomic_folder`], [`commit_folder`]): a folder is written under a temporary sibling name
  (`.tmp-<name>`) and swapped into place only once complete, so a failed save leaves the previous folder unchanged.
  [`check_writable`] tells before a long job starts that its output folder cannot be written.
- Pickled weights ([`check_no_pickled_weights`], [`pickles_allowed`]): a folder whose weights exist only as pickles
  is refused unless the caller passed `allow_pickle=True`.
- The publisher registry ([`register_publisher`], [`publisher`]): `UNet3DModel.push_to_hub` (models) and
  `VideoDiffusionPipeline.push_to_hub` (pipelines) upload with our model card, but the card and the upload live in
  `diffusers_video.hub`, a layer above them. `hub` registers its `push_folder` here when it is imported (importing
  `diffusers_video` imports it), and the lower layers ask for it through `publisher()` instead of importing `hub`.

This module imports nothing of `diffusers_video`, so every layer may import it.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "CARD_NAME",
    "DISTILLATION_NAME",
    "FolderWriteError",
    "INDEX_NAME",
    "PICKLE_SUFFIXES",
    "SAMPLE_NAME",
    "SCORES_NAMES",
    "STAGE_CONFIG_NAME",
    "TEMPORARY_PREFIX",
    "TRAINING_CONFIG_NAME",
    "atomic_folder",
    "check_no_pickled_weights",
    "check_writable",
    "class_name_of",
    "commit_folder",
    "components_of",
    "naming_write_errors",
    "pickles_allowed",
    "publisher",
    "read_json",
    "register_publisher",
    "save_assembled",
    "temporary_path",
]

INDEX_NAME = "model_index.json"
"""The pipeline index diffusers' `save_pretrained` writes: the pipeline class and its components."""

TRAINING_CONFIG_NAME = "training_config.json"
"""The `TrainingConfig` of the run that made a folder (final folders, checkpoints, distilled students)."""

DISTILLATION_NAME = "distillation.json"
"""File of a distilled student folder: its round, step count and guidance condition."""

STAGE_CONFIG_NAME = "stage.json"
"""File of an Imagen Video stage folder: its `StageSpec`, sampling augmentation level and output size."""

SCORES_NAMES = ("quality.json", "bench_quality.json")
"""Moving-shapes quality results, as `diffusers-video bench quality --output` writes them (default the second)."""

SAMPLE_NAME = "sample.gif"
"""A sample video that the model card shows."""

CARD_NAME = "README.md"
"""The model card."""

PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl", ".pickle")
"""Suffixes of pickled files, which run code when loaded: never uploaded, downloaded or loaded unless asked for."""

TEMPORARY_PREFIX = ".tmp-"
"""Prefix of the temporary sibling a folder is written under before it is swapped into place."""


def read_json(path: str | Path, *, missing_ok: bool = False) -> dict[str, Any] | None:
    """The JSON object in the file `path`.

    Args:
        path (`str` or `Path`): The file.
        missing_ok (`bool`, defaults to False): Return None when the file does not exist, instead of raising.

    Returns:
        `dict[str, Any]` or `None`: The object; None only for a missing file with `missing_ok=True`.

    Raises:
        FileNotFoundError: The file does not exist (and `missing_ok` is False); the message names it.
        ValueError: The file is not valid JSON (or not UTF-8 text), or holds something other than a JSON object; the
            message names it.
    """
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return None
        raise FileNotFoundError(f"'{path}' does not exist.")
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"'{path}' is not valid JSON: {error}.") from error
    if not isinstance(value, dict):
        raise ValueError(f"'{path}' must hold a JSON object but holds a {type(value).__name__}.")
    return value


def class_name_of(index: dict[str, Any], index_file: str | Path) -> str:
    """The pipeline class named by `model_index.json`: `"Class"`, or `["module", "Class"]` for a custom pipeline.

    Args:
        index (`dict`): The content of `model_index.json`.
        index_file (`str` or `Path`): Where it was read, for the error message.

    Raises:
        ValueError: `_class_name` is missing or unreadable; the message names `index_file`.
    """
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


# ---------------------------------------------------------------------------------------------------------------------
# Atomic folders
# ---------------------------------------------------------------------------------------------------------------------


def temporary_path(parent: str | Path, name: str) -> Path:
    """Where a folder `name` of `parent` is written before it is renamed into place: `parent/.tmp-<name>`."""
    return Path(parent) / f"{TEMPORARY_PREFIX}{name}"


def commit_folder(temporary: str | Path, target: str | Path) -> Path:
    """Rename a finished temporary folder to `target`, replacing an existing `target`.

    The rename itself is atomic; an existing target is first moved aside (and then deleted), so at every moment
    `target` is either the old complete folder, absent, or the new complete folder.
    """
    temporary, target = Path(temporary), Path(target)
    old = None
    if target.exists():
        old = target.with_name(f"{TEMPORARY_PREFIX}old-{target.name}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
    os.replace(temporary, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


# What torch and safetensors raise (as RuntimeError or their own error types) when a write fails, e.g. a full disk:
# "[enforce fail at inline_container.cc:672] . unexpected pos 431616 vs 431508", "PytorchStreamWriter failed writing
# file data/0: file write failed", "Error while serializing: IoError(Os { code: 28, ... })".
_WRITE_FAILURES = ("inline_container", "PytorchStreamWriter", "unexpected pos", "file write failed", "IoError")
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


class FolderWriteError(OSError):
    """A folder could not be written: the message names it and the cause (`cause`, also for an enclosing write)."""

    def __init__(self, folder: Path, cause: str):
        super().__init__(f"Could not write '{folder}': {cause} (is the disk full, or the folder read-only?)")
        self.folder, self.cause = folder, cause


@contextlib.contextmanager
def naming_write_errors(target: str | Path) -> Iterator[None]:
    """Re-raises a failed write of the folder `target` (a checkpoint, a saved model) as one [`FolderWriteError`]
    naming it and the cause (an `OSError` of a failed write, or torch's or safetensors' error for a full disk); its
    temporary folder is removed. [`atomic_folder`] writes through it; the outermost folder is the one named."""
    target = Path(target)
    try:
        yield
    except Exception as error:
        if isinstance(error, FolderWriteError):
            cause = error.cause
        elif isinstance(error, OSError) and error.errno in _WRITE_ERRNOS:
            cause = error.strerror + (f": '{error.filename}'" if error.filename else "")
        elif not isinstance(error, OSError) and any(text in str(error) for text in _WRITE_FAILURES):
            cause = str(error).splitlines()[0]
        else:
            raise  # not a failed write: a missing input file keeps its type
        shutil.rmtree(temporary_path(target.parent, target.name), ignore_errors=True)
        raise FolderWriteError(target, cause) from error


@contextlib.contextmanager
def atomic_folder(target: str | Path, keep: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """Write a folder atomically: yields a temporary sibling of `target`, swapped into place on success.

    On an exception the temporary folder is removed and `target` is left as it was, byte for byte; a failed write is an
    `OSError` naming `target` ([`naming_write_errors`]). The one exception
    is a `target` that is the working folder or holds it (`save_pretrained(".")`): it is written in place.

    Args:
        target (`str` or `Path`): The folder to write.
        keep (`Callable[[str], bool]`, *optional*): For an existing `target`: which of its entries (by name) are
            copied into the temporary folder first, so that saving over a folder keeps the files the save does not
            write (a model card, `training_config.json`, ...), as saving in place did. None copies nothing.
    """
    target = Path(os.path.abspath(target))
    cwd = Path.cwd()
    if target == cwd or target in cwd.parents:  # swapping the working folder away would strand the process in it
        target.mkdir(parents=True, exist_ok=True)
        yield target
        return
    temporary = temporary_path(target.parent, target.name)
    if temporary.exists():
        shutil.rmtree(temporary)
    with naming_write_errors(target):
        temporary.mkdir(parents=True)
        try:
            if keep is not None and target.is_dir():
                for entry in target.iterdir():
                    if keep(entry.name):
                        copy = shutil.copytree if entry.is_dir() else shutil.copy2
                        copy(entry, temporary / entry.name)
            yield temporary
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        commit_folder(temporary, target)


def save_assembled(pipeline: Any, output_dir: str | Path, training_config_of: str | Path) -> Path:
    """Save a pipeline assembled from training runs atomically (`atomic_folder`), with the `training_config.json` of
    the run folder `training_config_of` when it has one (what `make demo` and `bench quality` read the trained clip
    length from).

    Args:
        pipeline: Anything with `save_pretrained(folder)`.
        output_dir (`str | Path`): The folder to write; an existing one is kept if the save fails.
        training_config_of (`str | Path`): The run folder whose `training_config.json` is copied.

    Returns:
        `Path`: `output_dir`.
    """
    with atomic_folder(output_dir) as temporary:
        pipeline.save_pretrained(temporary)
        config = read_json(Path(training_config_of) / TRAINING_CONFIG_NAME, missing_ok=True)
        if config is not None:
            (Path(temporary) / TRAINING_CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return Path(output_dir)


def check_writable(folder: str | Path) -> Path:
    """Creates `folder` if needed and writes and removes a probe file in it, before a long job writes there.

    Raises:
        OSError: The folder cannot be created or written (read-only, no permission, full disk); the message names it
            and the cause.
    """
    folder = Path(folder)
    probe = folder / f"{TEMPORARY_PREFIX}probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as error:
        raise OSError(f"Cannot write to '{folder}': {error.strerror or error}.") from error
    return folder


# ---------------------------------------------------------------------------------------------------------------------
# Pickled weights
# ---------------------------------------------------------------------------------------------------------------------

_pickles_allowed: contextvars.ContextVar[bool] = contextvars.ContextVar("pickles_allowed", default=False)


@contextlib.contextmanager
def pickles_allowed(allowed: bool = True) -> Iterator[None]:
    """A context in which [`check_no_pickled_weights`] lets pickled weights load (a pipeline's `allow_pickle=True`
    reaching the `from_pretrained` of its components)."""
    token = _pickles_allowed.set(bool(allowed) or _pickles_allowed.get())
    try:
        yield
    finally:
        _pickles_allowed.reset(token)


def check_no_pickled_weights(folder: str | Path, allow_pickle: bool = False) -> None:
    """Refuses a folder whose weights are only pickles (`.bin`, `.ckpt`, ...), which run code when loaded.

    A folder with safetensors weights passes (loaders pick those); so does one that does not exist (the caller reports
    it) and any folder when `allow_pickle` is True or inside [`pickles_allowed`].

    Raises:
        ValueError: The folder has pickled weights and no safetensors; the message names the file and the flag.
    """
    folder = Path(folder)
    if allow_pickle or _pickles_allowed.get() or not folder.is_dir():
        return
    files = sorted(p for p in folder.iterdir() if p.is_file())
    pickles = [p for p in files if p.suffix in PICKLE_SUFFIXES]
    if pickles and not any(p.suffix == ".safetensors" for p in files):
        raise ValueError(
            f"'{pickles[0]}' is a pickled file, which runs code when loaded, and '{folder}' has no safetensors "
            "weights: pass `allow_pickle=True` if you trust it, or convert it to safetensors."
        )


# ---------------------------------------------------------------------------------------------------------------------
# The publisher registry
# ---------------------------------------------------------------------------------------------------------------------

_publisher: Callable[..., Any] | None = None


def register_publisher(publish: Callable[..., Any]) -> None:
    """Registers the function that uploads a saved folder to the Hub with our model card.

    `diffusers_video.hub` registers its `push_folder` when it is imported; there is one publisher, and registering
    another replaces it.

    Args:
        publish (`Callable`): Called as `publish(folder, repo_id, **options)` with the options of
            `diffusers_video.hub.push_folder`; returns the commit.
    """
    global _publisher
    if not callable(publish):
        raise TypeError(f"The publisher must be callable, but is {publish!r}.")
    _publisher = publish


def publisher() -> Callable[..., Any]:
    """The registered publisher (see [`register_publisher`]).

    Raises:
        RuntimeError: None is registered, which happens only when `diffusers_video.hub` was never imported.
    """
    if _publisher is None:
        raise RuntimeError(
            "No Hub publisher is registered: `import diffusers_video` (or `diffusers_video.hub`) registers "
            "`diffusers_video.hub.push_folder`, which `push_to_hub` uses."
        )
    return _publisher
