"""What every model of this package adds to diffusers' `ModelMixin` for saving and loading folders safely.

[`SafeFolderMixin`] goes before `ModelMixin` in a model's bases:

- `save_pretrained` writes into a temporary sibling folder and swaps it into place only once complete
  (`folders.atomic_folder`), so a failed save (a full disk, an error halfway through a file) leaves the previous folder
  loadable and unchanged. Files of the old folder that a save does not write (a model card, ...) are kept.
- `from_pretrained` refuses a folder whose weights are only pickles (`diffusion_pytorch_model.bin`, ...), which run
  code when loaded, unless `allow_pickle=True` is passed (`folders.check_no_pickled_weights`); a Hub repo is read with
  `use_safetensors=True` unless pickles are allowed.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..folders import atomic_folder, check_no_pickled_weights

__all__ = ["SafeFolderMixin"]

_WEIGHTS_PREFIX = "diffusion_pytorch_model"


def _kept_by_model_save(name: str) -> bool:
    """Entries of an old model folder that a new save keeps: all but the config and the weights it rewrites."""
    return name != "config.json" and not name.startswith(_WEIGHTS_PREFIX)


class SafeFolderMixin:
    """Atomic `save_pretrained` and a `from_pretrained` that loads pickles only with `allow_pickle=True`."""

    def save_pretrained(self, save_directory: str | os.PathLike, is_main_process: bool = True, **kwargs) -> None:
        """`ModelMixin.save_pretrained`, atomically: a failed save leaves an existing `save_directory` unchanged.

        Args:
            save_directory (`str` or `os.PathLike`): The folder.
            is_main_process (`bool`, defaults to True): As in diffusers; other processes write nothing of their own.
            kwargs: Those of `ModelMixin.save_pretrained` (`safe_serialization`, `variant`, `push_to_hub`, ...).
        """
        if not is_main_process or os.path.isfile(save_directory):  # diffusers' own handling
            return super().save_pretrained(save_directory, is_main_process=is_main_process, **kwargs)
        if kwargs.get("push_to_hub"):
            kwargs.setdefault("repo_id", Path(save_directory).name)  # not the temporary folder's name
        with atomic_folder(save_directory, keep=_kept_by_model_save) as temporary:
            super().save_pretrained(temporary, is_main_process=is_main_process, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """`ModelMixin.from_pretrained`, refusing pickled weights unless `allow_pickle=True` is passed.

        Raises:
            ValueError: The folder has only pickled weights; the message names the file and `allow_pickle=True`.
        """
        allow_pickle = bool(kwargs.pop("allow_pickle", False))
        path = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(path):
            check_no_pickled_weights(os.path.join(path, kwargs.get("subfolder") or ""), allow_pickle)
        elif not allow_pickle:
            kwargs.setdefault("use_safetensors", True)  # a Hub repo: only its safetensors weights
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def _load_2d(cls, image_class: type, path: str | os.PathLike, subfolder: str | None, torch_dtype, **temporal):
        """Loads the image model that `from_pretrained_2d` inflates, refusing pickle-only weights.

        Args:
            image_class (`type`): `UNet2DConditionModel` or `AutoencoderKL`.
            path (`str` or `os.PathLike`): A folder or Hub repo id.
            subfolder (`str`, *optional*): The model's folder inside it.
            torch_dtype (`torch.dtype`, *optional*): dtype to load the weights in.
            temporal: The temporal config of `from_pretrained_2d`, with `allow_pickle=True` to load pickles.

        Returns:
            `tuple`: The image model, and `temporal` without `allow_pickle`.
        """
        allow_pickle = bool(temporal.pop("allow_pickle", False))
        if os.path.isdir(path):
            check_no_pickled_weights(os.path.join(path, subfolder or ""), allow_pickle)
        return image_class.from_pretrained(path, subfolder=subfolder, torch_dtype=torch_dtype), temporal
