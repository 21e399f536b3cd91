"""Small schedule objects the training loop asks each step."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warm-up from 0 to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""

    warmup: int
    total: int

    def __call__(self, step: int) -> float:
        if self.warmup > 0 and step < self.warmup:
            return (step + 1) / self.warmup
        span = max(1, self.total - self.warmup)
        progress = min(1.0, max(0.0, (step - self.warmup) / span))
        return 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Constant:
    def __call__(self, step: int) -> float:
        return 1.0


LR_SCHEDULES = {
    "warmup_cosine": lambda warmup, total: WarmupCosine(warmup, total),
    "constant": lambda warmup, total: Constant(),
}


def make_lr_schedule(name: str, warmup: int, total: int):
    if name not in LR_SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}")
    return LR_SCHEDULES[name](warmup, total)
