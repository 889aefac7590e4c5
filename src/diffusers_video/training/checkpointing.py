"""Checkpoint markers, `--resume latest` and rotation.

A folder is written under a temporary name inside the output folder (`.tmp-<name>`), and renamed to its final name
with `os.replace` only once it is complete (`folders.atomic_folder` and `folders.commit_folder`, re-exported here). A
checkpoint's completion marker, `checkpoint.json`, is written last and lists every file with its size and SHA-256 sum,
so `latest_checkpoint` never picks a folder that was left partial (no marker), whose marker is unreadable, or whose
files were truncated, and [`verified_marker`] refuses, before anything in it is loaded (some of accelerate's state
files are pickles), a checkpoint with a file that is not the one written, or a file the marker does not list.
A `checkpoint-<step>` folder without a valid marker, left by a run killed while rotating, is removed by
[`remove_incomplete_checkpoints`] when the next run starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from ..folders import TEMPORARY_PREFIX, atomic_folder, commit_folder, naming_write_errors, temporary_path

__all__ = [
    "CHECKPOINT_PREFIX",
    "MARKER_NAME",
    "TEMPORARY_PREFIX",
    "atomic_folder",
    "checkpoint_name",
    "commit_folder",
    "latest_checkpoint",
    "list_checkpoints",
    "naming_write_errors",
    "read_marker",
    "remove_incomplete_checkpoints",
    "remove_temporary_folders",
    "resolve_resume",
    "rotate_checkpoints",
    "temporary_path",
    "verified_marker",
    "write_marker",
]

MARKER_NAME = "checkpoint.json"
CHECKPOINT_PREFIX = "checkpoint-"
_CHECKPOINT_PATTERN = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
MARKER_FORMAT = 1


def checkpoint_name(step: int) -> str:
    """`checkpoint-<step>`."""
    return f"{CHECKPOINT_PREFIX}{step}"


def _manifest(folder: Path) -> dict[str, int]:
    return {
        path.relative_to(folder).as_posix(): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MARKER_NAME
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_marker(folder: str | Path, step: int, config_hash: str, **extra: Any) -> dict[str, Any]:
    """Write the completion marker of a checkpoint folder; call it after every other file is written.

    Args:
        folder (`str | Path`): The (temporary) checkpoint folder.
        step (`int`): The optimizer step the checkpoint was taken after.
        config_hash (`str`): `TrainingConfig.hash()` of the run.
        **extra: More JSON-serialisable facts (e.g. the data position).

    Returns:
        `dict`: The marker's content.
    """
    folder = Path(folder)
    marker = {
        "format": MARKER_FORMAT,
        "step": int(step),
        "config_hash": config_hash,
        "time": time.time(),
        **extra,
        "files": _manifest(folder),
    }
    marker["sha256"] = {name: _sha256(folder / name) for name in marker["files"]}
    path = folder / MARKER_NAME
    with open(path, "w") as handle:
        json.dump(marker, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    return marker


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The marker of a complete checkpoint folder, or None when the folder is partial, corrupted or not ours."""
    folder = Path(folder)
    match = _CHECKPOINT_PATTERN.match(folder.name)
    try:
        marker = json.loads((folder / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or not isinstance(marker.get("files"), dict):
        return None
    if match is not None and marker.get("step") != int(match.group(1)):
        return None
    for name, size in marker["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return None
    return marker


def verified_marker(folder: str | Path) -> dict[str, Any]:
    """The marker of checkpoint `folder` once every file in it is checked against the marker's SHA-256 sums.

    Call it before anything in the folder is loaded: accelerate's RNG and optimizer states are pickles.

    Raises:
        ValueError: The marker is missing, unreadable or has no sums (written by an older version), a listed file is
            missing or differs from the one written, or the folder holds a file the marker does not list; the message
            names the file.
    """
    folder = Path(folder)
    marker_file = folder / MARKER_NAME
    try:
        marker = json.loads(marker_file.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(
            f"'{folder}' is not a complete checkpoint: '{marker_file}' is missing or unreadable."
        ) from error
    sums = marker.get("sha256") if isinstance(marker, dict) else None
    if not isinstance(sums, dict) or not isinstance(marker.get("files"), dict) or set(sums) != set(marker["files"]):
        raise ValueError(
            f"'{marker_file}' has no SHA-256 sums of the checkpoint's files (written by an older diffusers-video), so "
            "its files cannot be checked; it was not loaded."
        )
    unlisted = sorted(set(_manifest(folder)) - set(sums))
    if unlisted:
        raise ValueError(f"'{folder / unlisted[0]}' is not listed in '{marker_file}'; the checkpoint was not loaded.")
    for name, digest in sorted(sums.items()):
        path = folder / name
        if not path.is_file() or _sha256(path) != digest:
            raise ValueError(
                f"'{path}' does not match the SHA-256 sum in '{marker_file}': it is not the file that training wrote; "
                "the checkpoint was not loaded."
            )
    return marker


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints `(step, folder)` of `output_dir`, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for folder in output_dir.iterdir():
        match = _CHECKPOINT_PATTERN.match(folder.name)
        if match and folder.is_dir() and read_marker(folder) is not None:
            found.append((int(match.group(1)), folder))
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step in `output_dir`, or None."""
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1][1] if checkpoints else None


def resolve_resume(resume_from_checkpoint: str | None, output_dir: str | Path) -> Path | None:
    """The checkpoint folder to resume from.

    Args:
        resume_from_checkpoint (`str | None`): None (no resume), "latest" (the newest complete checkpoint of
            `output_dir`, None when it has none: a fresh start), a checkpoint folder, or a folder of checkpoints (its
            newest complete one).
        output_dir (`str | Path`): The run's output folder.

    Raises:
        FileNotFoundError: The folder does not exist.
        ValueError: The folder is neither a complete checkpoint nor holds one.
    """
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        return latest_checkpoint(output_dir)
    folder = Path(resume_from_checkpoint)
    if not folder.is_dir():
        raise FileNotFoundError(f"The checkpoint folder `resume_from_checkpoint`='{folder}' does not exist.")
    if (folder / MARKER_NAME).is_file():
        verified_marker(folder)  # a named checkpoint whose files changed is refused, naming the file
        return folder
    latest = latest_checkpoint(folder)
    if latest is None:
        raise ValueError(
            f"`resume_from_checkpoint`='{folder}' holds no complete checkpoint: neither is it one nor does it contain "
            f"a `{CHECKPOINT_PREFIX}<step>` folder with a valid `{MARKER_NAME}`."
        )
    return latest


def rotate_checkpoints(output_dir: str | Path, total_limit: int | None) -> list[Path]:
    """Delete the oldest complete checkpoints so that at most `total_limit` remain; returns the deleted folders.

    Folders without a valid marker are not ours to judge and are left alone.
    """
    if total_limit is None:
        return []
    checkpoints = list_checkpoints(output_dir)
    removed = [folder for _, folder in checkpoints[: max(0, len(checkpoints) - total_limit)]]
    for folder in removed:
        shutil.rmtree(folder)
    return removed


def remove_temporary_folders(output_dir: str | Path) -> list[Path]:
    """Delete the leftovers of a run that was killed while writing: `.tmp-*` folders, and `checkpoint-<step>` folders
    left emptied by a kill during rotation ([`remove_incomplete_checkpoints`])."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    leftovers = [p for p in output_dir.iterdir() if p.name.startswith(TEMPORARY_PREFIX) and p.is_dir()]
    for folder in leftovers:
        shutil.rmtree(folder, ignore_errors=True)
    return leftovers + remove_incomplete_checkpoints(output_dir)


def _left_by_a_kill(folder: Path) -> bool:
    """Whether a `checkpoint-<step>` folder is what a kill during rotation leaves: no marker, or listed files gone."""
    try:
        files = json.loads((folder / MARKER_NAME).read_text())["files"]
        return any(not (folder / name).is_file() for name in files)
    except (OSError, ValueError, KeyError, TypeError):
        return True


def remove_incomplete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Delete the `checkpoint-<step>` folders of `output_dir` that a run killed while rotating left emptied or
    half-deleted (no marker, or files the marker lists are gone). Complete checkpoints are written under `.tmp-`
    names first, so no other run's checkpoint looks like this; a folder whose files are all there is left alone
    ([`verified_marker`] judges it when it is loaded)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    incomplete = [
        folder
        for folder in sorted(output_dir.iterdir())
        if _CHECKPOINT_PATTERN.match(folder.name) and folder.is_dir() and _left_by_a_kill(folder)
    ]
    for folder in incomplete:
        shutil.rmtree(folder, ignore_errors=True)
    return incomplete
