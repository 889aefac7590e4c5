"""Atomic folders, checkpoint markers, `--resume latest` and rotation.

A folder is written under a temporary name inside the output folder (`.tmp-<name>`), and renamed to its final name
with `os.replace` only once it is complete. A checkpoint's completion marker, `checkpoint.json`, is written last and
lists every file with its size, so `latest_checkpoint` never picks a folder that was left partial (no marker), whose
marker is unreadable, or whose files were truncated.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MARKER_NAME = "checkpoint.json"
CHECKPOINT_PREFIX = "checkpoint-"
TEMPORARY_PREFIX = ".tmp-"
_CHECKPOINT_PATTERN = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
MARKER_FORMAT = 1


def checkpoint_name(step: int) -> str:
    """`checkpoint-<step>`."""
    return f"{CHECKPOINT_PREFIX}{step}"


def temporary_path(output_dir: str | Path, name: str) -> Path:
    """Where a folder `name` of `output_dir` is written before it is renamed into place."""
    return Path(output_dir) / f"{TEMPORARY_PREFIX}{name}"


def _manifest(folder: Path) -> dict[str, int]:
    return {
        path.relative_to(folder).as_posix(): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MARKER_NAME
    }


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
    if read_marker(folder) is not None:
        return folder
    latest = latest_checkpoint(folder)
    if latest is None:
        raise ValueError(
            f"`resume_from_checkpoint`='{folder}' holds no complete checkpoint: neither is it one nor does it contain "
            f"a `{CHECKPOINT_PREFIX}<step>` folder with a valid `{MARKER_NAME}`."
        )
    return latest


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


@contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """Write a folder atomically: yields a temporary folder next to `target`, renamed to `target` on success.

    On an exception the temporary folder is removed and `target` is left as it was.
    """
    target = Path(target)
    temporary = temporary_path(target.parent, target.name)
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir(parents=True)
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    commit_folder(temporary, target)


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
    """Delete the leftovers (`.tmp-*` folders) of a run that was killed while writing."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    leftovers = [p for p in output_dir.iterdir() if p.name.startswith(TEMPORARY_PREFIX) and p.is_dir()]
    for folder in leftovers:
        shutil.rmtree(folder, ignore_errors=True)
    return leftovers
