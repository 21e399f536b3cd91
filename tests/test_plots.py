"""Tests for taichi_syncnerf.plots: PNGs written atomically, readable inputs validated."""
import matplotlib
import numpy as np
import pytest

from taichi_syncnerf import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def records(n_cams, n=20, with_psnr=True):
    recs = []
    for s in range(n):
        rec = {"step": 10 * s, "loss": 1.0 / (s + 1), "lr": 1e-2,
               "offsets_frames": [0.1 * s * (j - n_cams / 2) for j in range(n_cams)]}
        if with_psnr:
            rec["psnr"] = 10.0 + s
        recs.append(rec)
    return recs


def assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"


def no_leftovers(folder, expected):
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)


def test_plot_training_writes_png(tmp_path):
    backend = matplotlib.get_backend()
    out = tmp_path / "sub" / "psnr.png"
    recs = records(3)
    recs[5]["psnr"] = None  # a row without PSNR is skipped
    plots.plot_training(recs, out)
    assert_png(out)
    no_leftovers(out.parent, ["psnr.png"])
    assert matplotlib.get_backend() == backend  # no global side effect


def test_plot_training_loss_only(tmp_path):
    plots.plot_training(records(2, with_psnr=False), tmp_path / "loss.png")
    assert_png(tmp_path / "loss.png")


@pytest.mark.parametrize("n_cams", [1, 9, 24])
def test_plot_offsets_writes_png(tmp_path, n_cams):
    out = tmp_path / "offsets.png"
    gt = np.linspace(-3, 3, n_cams)
    names = [f"camera_{j}" for j in range(n_cams)]
    plots.plot_offsets(records(n_cams), out, gt=gt, camera_names=names)
    assert_png(out)
    no_leftovers(tmp_path, ["offsets.png"])


def test_plot_offsets_without_gt(tmp_path):
    plots.plot_offsets(records(4), tmp_path / "o.png")
    assert_png(tmp_path / "o.png")


def test_failing_save_leaves_no_partial_file(tmp_path, monkeypatch):
    out = tmp_path / "offsets.png"
    out.write_bytes(b"previous")
    real = matplotlib.figure.Figure.savefig

    def broken(self, fname, **kw):
        real(self, fname, **kw)  # the temporary file is complete ...
        with open(fname, "r+b") as f:
            f.truncate(10)  # ... then half-lost, and the save fails
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plots.plot_offsets(records(3), out)
    with pytest.raises(OSError, match="disk full"):
        plots.plot_training(records(3), tmp_path / "psnr.png")
    assert out.read_bytes() == b"previous"
    no_leftovers(tmp_path, ["offsets.png"])


def test_bad_records_raise_before_writing(tmp_path):
    out = tmp_path / "x.png"
    with pytest.raises(ValueError, match="nothing to plot"):
        plots.plot_training([{"step": 0, "lr": 1.0}], out)
    with pytest.raises(ValueError, match="no 'step'"):
        plots.plot_training([{"psnr": 1.0}], out)
    recs = records(3)
    recs[2]["offsets_frames"] = [0.0]
    with pytest.raises(ValueError, match="same non-zero number"):
        plots.plot_offsets(recs, out)
    with pytest.raises(ValueError, match="camera names"):
        plots.plot_offsets(records(3), out, camera_names=["a"])
    with pytest.raises(ValueError, match="ground-truth"):
        plots.plot_offsets(records(3), out, gt=[0.0])
    with pytest.raises(ValueError, match="nothing to plot"):
        plots.plot_offsets([], out)
    no_leftovers(tmp_path, [])
