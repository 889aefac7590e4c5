"""What a run records as it goes: the loop state that checkpoints store, and `train_log.jsonl`, one line per step."""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import checkpointing

LOG_NAME = "train_log.jsonl"


class TrainingState:
    """What the loop has done: optimizer steps and the data position (next sample position); checkpointed."""

    def __init__(self):
        self.global_step = 0
        self.position = 0

    def state_dict(self) -> dict[str, int]:
        return {"global_step": self.global_step, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.global_step, self.position = int(state["global_step"]), int(state["position"])


def truncate_log(output_dir: Path, step: int) -> None:
    """Keep the log lines of steps <= `step`: a resumed run's log reads like the uninterrupted run's.

    A line torn by a killed process (not valid JSON) is dropped.
    """
    path = Path(output_dir) / LOG_NAME
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    temporary = path.with_name(f"{checkpointing.TEMPORARY_PREFIX}{LOG_NAME}")
    temporary.write_text("".join(line + "\n" for line in kept))
    os.replace(temporary, path)
