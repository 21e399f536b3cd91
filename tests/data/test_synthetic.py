"""The synthetic scene generator: files, pose conventions, time offsets, motion, safety."""
import json

import numpy as np
import pytest

from taichi_syncnerf.data.synthetic import make as synthetic_make
from taichi_syncnerf.data.synthetic.render import ViewRenderer
from taichi_syncnerf.data.synthetic.rig import n3dv_rig
from taichi_syncnerf.data.synthetic.scene import BOUND, ID_FLOOR, ID_NONE, ID_WALL, default_scene
from taichi_syncnerf.data.synthetic import draw_offsets, make_scene, scene_rig
from taichi_syncnerf.data.video import probe_video, read_video
from taichi_syncnerf.errors import UserError

CAMS, FRAMES, W, H, FPS = 4, 6, 48, 36, 30.0


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    base = tmp_path_factory.mktemp("synthetic")
    out = {}
    for layout in ("n3dv", "blender"):
        out[layout] = base / layout
        make_scene(out[layout], layout=layout, cameras=CAMS, frames=FRAMES, size=(W, H), fps=FPS,
                   offset_sigma=3.0, seed=5, progress=False, png=layout == "blender")
    return out


def gt_of(root):
    return json.loads((root / "offsets_gt.json").read_text())


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def unproject(c2w, focal, depth):
    """World points (H, W, 3) of pixel centres at the given depths, OpenGL camera c2w (3, 4)."""
    h, w = depth.shape
    j, i = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    d = np.stack([(j - w / 2) / focal, -(i - h / 2) / focal, -np.ones_like(j)], -1)
    return np.einsum("ab,hwb->hwa", c2w[:, :3], d) * depth[..., None] + c2w[:, 3]


def assert_points_on_surfaces(points, ids, time, with_room):
    """Every pixel's 3-D point lies on the surface the renderer says it shows there."""
    scene = default_scene(with_room)
    checked = 0
    for k, obj in enumerate(scene.objects):
        p = points[ids == k]
        if not len(p):
            continue
        centre, rot = obj.position(time)[0], obj.orientation(time)[0]
        local = (p - centre) @ rot
        if obj.kind == "sphere":
            np.testing.assert_allclose(np.linalg.norm(local, axis=1), obj.size[0], atol=2e-4)
        else:
            np.testing.assert_allclose(np.abs(local / np.asarray(obj.size)).max(1), 1.0, atol=1e-3)
        checked += len(p)
    if with_room:
        np.testing.assert_allclose(points[ids == ID_WALL][:, 1], scene.wall_y, atol=1e-3)
        np.testing.assert_allclose(points[ids == ID_FLOOR][:, 2], scene.floor_z, atol=1e-3)
        assert (ids == ID_WALL).sum() > 0 and (ids == ID_FLOOR).sum() > 0
    assert checked > 50                      # objects are in view


def test_files_written_and_loadable(scenes):
    for layout, root in scenes.items():
        names = sorted(p.name for p in root.glob("*.mp4"))
        assert names == [f"cam{k:02d}.mp4" for k in range(CAMS)]
        for n in names:
            assert probe_video(root / n) == (FRAMES, H, W, FPS)
        gt = gt_of(root)
        assert gt["layout"] == layout and gt["frames"] == FRAMES and gt["fps"] == FPS
        assert len(gt["offsets_frames"]) == CAMS and gt["test_camera"] == 0
        assert gt["videos"] == names
        assert not list(root.parent.glob("*.partial"))
    rows = np.load(scenes["n3dv"] / "poses_bounds.npy", allow_pickle=False)
    assert rows.shape == (CAMS, 17) and rows.dtype == np.float64
    tr = json.loads((scenes["blender"] / "transforms.json").read_text())
    assert (tr["width"], tr["height"]) == (W, H)
    assert [f["file_path"] for f in tr["frames"]] == [f"cam{k:02d}" for k in range(CAMS)]
    for k in range(CAMS):
        pngs = sorted((scenes["blender"] / "frames_1" / f"cam{k:02d}").glob("*.png"))
        assert [p.name for p in pngs] == [f"{f:04d}.png" for f in range(FRAMES)]


def test_llff_poses_bounds_convention(scenes):
    """Points seen at each pixel, unprojected with the stored LLFF pose, lie on the surface the
    renderer hit; the near/far bounds contain every depth; the hwf column is right."""
    root = scenes["n3dv"]
    rows = np.load(root / "poses_bounds.npy")
    offsets = gt_of(root)["offsets_frames"]
    for k, row in enumerate(rows):
        m = row[:15].reshape(3, 5)                 # columns: down, right, back, translation, hwf
        c2w = np.concatenate([m[:, 1:2], -m[:, 0:1], m[:, 2:4]], 1)   # LLFF -> OpenGL
        h, w, focal = m[:, 4]
        assert (h, w) == (H, W)
        np.testing.assert_allclose(c2w[:, :3] @ c2w[:, :3].T, np.eye(3), atol=1e-12)
        assert np.linalg.det(c2w[:, :3]) > 0
        for f in (0, FRAMES - 1):
            t = (f + offsets[k]) / FPS
            buf = ViewRenderer(default_scene(True), scene_rig("n3dv", CAMS, W, H)[k], 1) \
                .render_buffers(t)
            pts = unproject(c2w, focal, np.where(np.isfinite(buf["depth"]), buf["depth"], 0))
            assert_points_on_surfaces(pts, buf["ids"], t, with_room=True)
            assert row[15] <= buf["depth"].min() and buf["depth"].max() <= row[16]
        # forward-facing rig: every camera looks along +y within a few degrees
        assert -c2w[1, 2] > 0.99


def test_blender_transforms_convention(scenes):
    root = scenes["blender"]
    tr = json.loads((root / "transforms.json").read_text())
    focal = 0.5 * W / np.tan(0.5 * tr["camera_angle_x"])
    offsets = gt_of(root)["offsets_frames"]
    for k, fr in enumerate(tr["frames"]):
        c2w = np.asarray(fr["transform_matrix"])
        assert c2w.shape == (4, 4)
        np.testing.assert_allclose(c2w[3], [0, 0, 0, 1])
        # on a sphere around the origin, looking at it
        pos = c2w[:3, 3]
        np.testing.assert_allclose(-c2w[:3, 2], -pos / np.linalg.norm(pos), atol=1e-9)
        t = offsets[k] / FPS
        buf = ViewRenderer(default_scene(False), scene_rig("blender", CAMS, W, H)[k], 1) \
            .render_buffers(t)
        hit = buf["ids"] >= 0
        assert (buf["ids"] == ID_NONE).sum() > 0              # transparent background exists
        pts = unproject(c2w[:3], focal, np.where(hit, buf["depth"], 0))
        assert_points_on_surfaces(pts, buf["ids"], t, with_room=False)
        assert 2.0 < buf["depth"][hit].min() and buf["depth"][hit].max() < 6.0


@pytest.mark.parametrize("layout", ["n3dv", "blender"])
def test_videos_show_scene_time_with_offsets(scenes, layout):
    """Frame f of camera k matches the render at (f + offset_k) / fps, not at f / fps nor at
    (f - offset_k) / fps."""
    root = scenes[layout]
    offsets = gt_of(root)["offsets_frames"]
    assert max(abs(o) for o in offsets) > 1.5            # seed 5 gives sizeable offsets
    for k, off in enumerate(offsets):
        video = read_video(root / f"cam{k:02d}.mp4")
        r = ViewRenderer(default_scene(layout == "n3dv"), scene_rig(layout, CAMS, W, H)[k])
        for f in (0, FRAMES - 1):
            good = psnr(video[f], r.render_uint8((f + off) / FPS))
            assert good > 32.0                             # H.264 at 48x36
            if abs(off) > 1.0:
                assert psnr(video[f], r.render_uint8(f / FPS)) < good - 5
                assert psnr(video[f], r.render_uint8((f - off) / FPS)) < good - 5


def test_png_frames_are_rgba_with_transparent_background(scenes):
    import cv2

    root = scenes["blender"]
    off = gt_of(root)["offsets_frames"][1]
    png = cv2.cvtColor(cv2.imread(str(root / "frames_1" / "cam01" / "0003.png"),
                                  cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
    assert png.shape == (H, W, 4)
    rgb, alpha = ViewRenderer(default_scene(False), scene_rig("blender", CAMS, W, H)[1]) \
        .render((3 + off) / FPS)
    np.testing.assert_array_equal(png[..., 3], np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8))
    assert (png[..., 3] == 0).mean() > 0.3 and (png[..., 3] == 255).sum() > 50
    a = png[..., 3:] / 255.0
    on_white = png[..., :3] * a + 255.0 * (1 - a)
    assert psnr(read_video(root / "cam01.mp4")[3], on_white) > 35.0


def test_offsets_follow_sigma_and_seed(scenes, tmp_path):
    assert gt_of(scenes["n3dv"])["offsets_frames"] == list(draw_offsets(CAMS, 3.0, 5))
    big = draw_offsets(4000, 2.0, 1)
    assert abs(big.std() - 2.0) < 0.1 and abs(big.mean()) < 0.1
    np.testing.assert_array_equal(big, draw_offsets(4000, 2.0, 1))
    assert not np.array_equal(draw_offsets(8, 2.0, 1), draw_offsets(8, 2.0, 2))
    assert np.array_equal(draw_offsets(8, 2.0, 1), np.round(draw_offsets(8, 2.0, 1), 3))
    make_scene(tmp_path / "sync", cameras=3, frames=3, size=(16, 12), offset_sigma=0.0,
               progress=False)
    gt = gt_of(tmp_path / "sync")
    assert gt["offsets_frames"] == [0.0, 0.0, 0.0]
    assert "-0.0" not in (tmp_path / "sync" / "offsets_gt.json").read_text()
    v = [read_video(tmp_path / "sync" / f"cam{k:02d}.mp4") for k in range(3)]
    assert all(x.shape == (3, 12, 16, 3) for x in v)


def test_scene_motion_is_bounded_smooth_and_large():
    scene = default_scene(True)
    t = np.linspace(-60.0, 60.0, 24001)
    for obj in scene.objects:
        p = obj.position(t)
        assert (np.abs(p) + obj.bounding_radius <= BOUND + 1e-9).all()
        dt = t[1] - t[0]
        assert np.abs(np.diff(p, axis=0)).max() < 4.0 * dt       # no jumps: < 4 units/s
        assert np.abs(np.diff(p, 2, axis=0)).max() < 40.0 * dt ** 2   # smooth: < 40 units/s^2
        rot = obj.orientation(t[:5])
        np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3),
                                   rot.shape), atol=1e-12)
    # pixels per frame at 128x96, 30 fps, averaged over the rig
    cams = n3dv_rig(9, 128, 96)
    speeds = [np.mean([np.linalg.norm(np.diff(c.project(o.position(np.arange(90) / 30.0))[0],
                                              axis=0), axis=1).mean() for c in cams])
              for o in scene.objects]
    assert min(speeds) > 1.2 and max(speeds) > 2.5
    # a 3-frame offset changes the image clearly
    r = ViewRenderer(scene, cams[0])
    a, b = r.render_uint8(0.5).astype(int), r.render_uint8(0.6).astype(int)
    assert (np.abs(a - b).max(-1) > 20).mean() > 0.03


def test_textures_are_smooth():
    """Within a surface (same object, away from silhouettes and box edges) neighbouring pixels
    differ little at 128x96: soft patterns a small field can fit, no checkerboards."""
    cam = n3dv_rig(3, 128, 96)[1]
    r = ViewRenderer(default_scene(True), cam, 1)
    buf = r.render_buffers(0.3)
    img, ids = buf["rgb"], buf["ids"]
    same = (ids[1:, 1:] == ids[:-1, 1:]) & (ids[1:, 1:] == ids[1:, :-1])
    grad = np.abs(img[1:, 1:] - img[:-1, 1:]).max(-1) + np.abs(img[1:, 1:] - img[1:, :-1]).max(-1)
    room = grad[same & (ids[1:, 1:] < ID_NONE)]
    spheres = grad[same & np.isin(ids[1:, 1:], [0, 2])]       # boxes have creases: skipped
    assert len(room) > 5000 and len(spheres) > 300
    assert np.percentile(room, 99) < 0.05
    assert np.percentile(spheres, 99) < 0.3 and spheres.mean() < 0.12


def test_interrupted_run_leaves_no_dataset(tmp_path, monkeypatch):
    calls = []

    def failing(**kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(**kw)

    real = synthetic_make.render_camera
    monkeypatch.setattr(synthetic_make, "render_camera", failing)
    with pytest.raises(KeyboardInterrupt):
        make_scene(tmp_path / "out", cameras=3, frames=2, size=(16, 12), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_output_folder_rules(tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(UserError, match="notes"):
            make_scene(other, cameras=2, frames=2, size=(16, 12), progress=False,
                       overwrite=overwrite)
    assert (other / "keep.txt").read_text() == "mine"
    out = tmp_path / "scene"
    out.mkdir()                                             # an empty folder is fine
    make_scene(out, cameras=2, frames=2, size=(16, 12), progress=False, seed=1)
    with pytest.raises(UserError, match="--force"):
        make_scene(out, cameras=2, frames=2, size=(16, 12), progress=False, seed=2)
    make_scene(out, cameras=2, frames=2, size=(16, 12), progress=False, seed=2, overwrite=True)
    assert gt_of(out)["seed"] == 2 and sorted(p.name for p in tmp_path.iterdir()) == [
        "notes", "scene"]


@pytest.mark.parametrize("kw, match", [
    (dict(cameras=1), "cameras"), (dict(frames=1), "frames"), (dict(size=(4, 12)), "size"),
    (dict(layout="llff"), "layout"), (dict(offset_sigma=-1.0), "sigma"),
    (dict(png=True), "blender"), (dict(fps=0.0), "fps")])
def test_bad_arguments(tmp_path, kw, match):
    args = dict(cameras=2, frames=2, size=(16, 12), progress=False)
    args.update(kw)
    with pytest.raises(UserError, match=match):
        make_scene(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists()


def test_parallel_workers_match_serial(tmp_path):
    args = dict(layout="blender", cameras=2, frames=3, size=(24, 16), progress=False, seed=4)
    make_scene(tmp_path / "serial", workers=1, **args)
    make_scene(tmp_path / "parallel", workers=2, **args)
    for k in range(2):
        a = read_video(tmp_path / "serial" / f"cam{k:02d}.mp4").astype(int)
        b = read_video(tmp_path / "parallel" / f"cam{k:02d}.mp4").astype(int)
        assert np.abs(a - b).max() <= 1
    assert gt_of(tmp_path / "serial") == gt_of(tmp_path / "parallel")


@pytest.mark.parametrize("family", ["static", "busy"])
def test_families_stay_in_bounds_and_move_smoothly(family):
    from taichi_syncnerf.data.synthetic.scene import family_scene

    t = np.linspace(-60.0, 60.0, 24001)
    for obj in family_scene(family).objects:
        p = obj.position(t)
        assert (np.abs(p) + obj.bounding_radius <= BOUND + 1e-9).all()
        assert np.abs(np.diff(p, axis=0)).max() < 4.0 * (t[1] - t[0])


def _moving_fraction(video: np.ndarray) -> float:
    """Share of pixels whose colour changes by more than 8/255 somewhere in the video."""
    v = video.astype(np.int16)
    return float(np.mean(np.abs(v - v[:1]).max(axis=(0, 3)) > 8))


def test_families_and_encodings(tmp_path):
    """static: most pixels never move and the room has high-frequency texture; busy: far more
    motion; clean: static pixels identical in every frame; noisy: they are not."""
    kw = dict(cameras=2, frames=8, size=(64, 48), progress=False, offset_sigma=0.0)
    vids = {}
    for name, family, encoding in (("static", "static", "clean"), ("busy", "busy", "default"),
                                   ("default", "default", "default"), ("noisy", "static", "noisy")):
        gt = make_scene(tmp_path / name, family=family, encoding=encoding, **kw)
        assert gt["family"] == family and gt["encoding"] == encoding
        vids[name] = read_video(tmp_path / name / "cam00.mp4")
    assert _moving_fraction(vids["static"]) < 0.2
    assert _moving_fraction(vids["busy"]) > 1.3 * _moving_fraction(vids["default"])
    static = vids["static"].astype(np.int16)
    still = np.abs(static - static[:1]).max(axis=(0, 3)) == 0       # clean: bit-identical static pixels
    assert still.mean() > 0.7
    noisy = vids["noisy"].astype(np.int16)
    assert np.abs(noisy[1:] - noisy[:-1])[:, still].std() > 2.0      # the same pixels flicker
    # high-frequency texture: neighbouring pixels of the static wall differ much more than in the
    # smooth default room
    def grad(v):
        return np.abs(np.diff(v[0].astype(np.float64), axis=1)).mean()
    assert grad(vids["static"]) > 3 * grad(vids["default"])
    with pytest.raises(UserError, match="family"):
        make_scene(tmp_path / "bad", family="nope", **kw)
    with pytest.raises(UserError, match="encoding"):
        make_scene(tmp_path / "bad2", encoding="nope", **kw)
