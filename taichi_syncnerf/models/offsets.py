"""Per-camera time offsets: a first-class, learnable component.

Offsets live in one Taichi field in normalised time units (the frames of a video span
[-0.8, 0.8], so one frame is ``1.6 / (F - 1)``). A ray of camera ``k`` at frame time ``t`` queries
the dynamic field at ``t + params[k]``. ``mask[k]`` is 1 for cameras whose offset trains and 0 for
cameras held fixed (the test camera during training, every camera in ``--no-sync`` runs).
Convention of the reported values: "frame f of camera k shows scene time f + offset_frames[k]".
"""
import numpy as np
import taichi as ti

from taichi_syncnerf import runtime

from taichi_syncnerf.kernels.losses import offset_l1


def frame_unit(n_frames: int) -> float:
    """Normalised time units per frame for a video of ``n_frames`` frames."""
    return 1.6 / max(1, n_frames - 1)


def frame_time(frame, n_frames: int):
    """Normalised time of (possibly fractional) frame indices: 0.8 * (2 f / (F - 1) - 1)."""
    return 0.8 * (2.0 * np.asarray(frame, dtype=np.float64) / max(1, n_frames - 1) - 1.0)


@ti.data_oriented
class TimeOffsets:
    def __init__(self, n_cameras: int, n_frames: int, trainable, init_mean: float = -0.001,
                 init_std: float = 0.001, seed: int = 0):
        trainable = np.asarray(trainable, dtype=bool)
        if trainable.shape != (n_cameras,):
            raise ValueError("trainable must have one entry per camera")
        self.n_cameras = int(n_cameras)
        self.n_frames = int(n_frames)
        self.params = ti.field(float, shape=self.n_cameras, needs_grad=True)
        self.mask = ti.field(ti.i32, shape=self.n_cameras)
        rng = np.random.default_rng(seed)
        init = rng.normal(init_mean, init_std, size=self.n_cameras) * trainable
        self.params.from_numpy(init.astype(runtime.np_float()))
        self.mask.from_numpy(trainable.astype(np.int32))

    @property
    def trainable(self) -> np.ndarray:
        return self.mask.to_numpy() != 0

    def set_trainable(self, trainable) -> None:
        self.mask.from_numpy(np.asarray(trainable, dtype=bool).astype(np.int32))

    def normalised(self) -> np.ndarray:
        return self.params.to_numpy().astype(np.float64)

    def frames(self) -> np.ndarray:
        """Offsets in frames ("frame f shows scene time f + offset")."""
        return self.normalised() / frame_unit(self.n_frames)

    def set_frames(self, offsets_frames) -> None:
        self.params.from_numpy((np.asarray(offsets_frames, np.float64) * frame_unit(self.n_frames))
                              .astype(runtime.np_float()))

    def l1(self, weight: float) -> float:
        """L1 penalty on the trainable offsets; ACCUMULATES its gradient into ``params.grad``."""
        if weight == 0.0:
            return 0.0
        return offset_l1(self.params, float(weight), self.mask)

    @ti.kernel
    def apply_mask_to_grad(self):
        """Zero the gradient of fixed cameras (called before the optimiser step)."""
        for k in range(self.n_cameras):
            self.params.grad[k] *= self.mask[k]
