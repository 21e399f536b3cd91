"""What a frame costs to render, learned from the frames rendered so far.

A frame of ``p`` pixels is modelled to take ``fixed + p / rate`` seconds. A ray family pays per pixel
(``fixed`` about 0); an image family (Sync-4DGS) pays first for the whole scene (deforming, projecting
and sorting every Gaussian) whatever the size, then little per pixel. A rate alone would make the
viewer choose far too small a picture while moving for the second kind. The line is fitted (least
squares) to the last frames when they come in sizes at least :data:`SPREAD` apart (the viewer's
coarse frames while moving and its full frames at rest); before that ``fixed`` is 0 and ``rate`` the
pixels over the seconds of those frames.
"""
from __future__ import annotations

from collections import deque

import numpy as np

SPREAD = 1.5       # largest over smallest frame size needed before the fixed cost is fitted
KEEP = 12          # frames the fit looks at


class FrameCost:
    """``add(pixels, seconds)`` after each frame; ``seconds(pixels)``, ``height_for(budget, ...)``."""

    def __init__(self, keep: int = KEEP):
        self.frames: deque = deque(maxlen=int(keep))
        self.fixed, self.rate = 0.0, None

    @property
    def known(self) -> bool:
        return self.rate is not None

    def add(self, pixels: int, seconds: float) -> None:
        self.frames.append((float(pixels), max(float(seconds), 1e-6)))
        p = np.array([f[0] for f in self.frames])
        s = np.array([f[1] for f in self.frames])
        fixed, slope = 0.0, 0.0
        if p.max() >= SPREAD * p.min():
            slope, fixed = np.polyfit(p, s, 1)
        if slope > 0.0 and fixed > 0.0:
            self.fixed = float(min(fixed, s.min()))
            self.rate = float(1.0 / slope)
        else:                                  # one size, or no fixed cost visible: pixels over seconds
            self.fixed, self.rate = 0.0, float(p.sum() / s.sum())

    def seconds(self, pixels: float) -> float:
        """Predicted seconds of a frame of ``pixels`` (0 while nothing is measured)."""
        return 0.0 if self.rate is None else self.fixed + float(pixels) / self.rate

    def height_for(self, budget_s: float, aspect: float, lowest: int, highest: int) -> int:
        """The tallest frame of width ``aspect`` x height predicted within ``budget_s`` seconds,
        clamped to [lowest, highest]; 24 rows (clamped) while nothing is measured."""
        if self.rate is None:
            return max(lowest, min(highest, 24))
        spare = max(budget_s - self.fixed, 0.0)
        return max(lowest, min(highest, int(np.sqrt(spare * self.rate / aspect))))
