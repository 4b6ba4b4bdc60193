"""One metrics log for every training stage: ``metrics.jsonl`` always, wandb too when asked for and installed.

wandb is optional: when it is missing, disabled (``TINYBEAUTY_NO_WANDB``) or fails to start, the run logs to
the file only and says so once. wandb runs offline unless ``WANDB_MODE`` says otherwise (no network here).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger("tinybeauty")


class MetricsLog:
    """Append-only JSON lines at ``path`` (removed first when ``fresh``) plus an optional wandb run."""

    def __init__(self, path: str | os.PathLike, use_wandb: bool, config: dict, project: str = "tinybeauty",
                 fresh: bool = False):
        self.path = Path(path)
        if fresh:
            self.path.unlink(missing_ok=True)
        self.wandb = None
        if use_wandb and os.environ.get("TINYBEAUTY_NO_WANDB"):
            log.warning("wandb disabled (TINYBEAUTY_NO_WANDB): metrics go to %s only", self.path)
        elif use_wandb:
            try:
                import wandb  # type: ignore

                self.wandb = wandb.init(project=project, config=config, dir=str(self.path.parent),
                                        mode=os.environ.get("WANDB_MODE", "offline"))
            except ImportError:
                log.warning("wandb is not installed: metrics go to %s only", self.path)
            except Exception as exc:  # a broken wandb setup never stops a training run
                log.warning("wandb unavailable (%s): metrics go to %s only", exc.__class__.__name__, self.path)

    def write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in record.items() if isinstance(v, (int, float))})

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
