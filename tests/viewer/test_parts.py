"""The viewer's parts that need no browser: frame statistics, refinement levels, labels, the rig overview,
the comparison with real frames, depth and opacity, the run's story."""
import numpy as np
import pytest

from taichi_syncnerf.data.cameras import look_at


def test_frame_stats_pair_each_size_with_its_own_time():
    """Bug: "full 614x384: 740 ms" while that frame took 11 s (the last size, the median of smaller frames)."""
    from taichi_syncnerf.viewer.app import FrameStats

    st = FrameStats()
    for _ in range(5):
        st.add("full", 400, 250, 0.74)
    st.add("full", 614, 384, 11.0)
    assert st.last("full") == (614, 384, 11.0)
    assert "full 614x384: 11.00 s (0.1 fps)" in st.summary()
    st.add("moving", 80, 50, 0.05)
    st.add("moving", 80, 50, 0.07)
    st.add("moving", 64, 40, 0.2)
    assert st.last("moving") == (64, 40, 0.2)
    st.time_to_full = 1.5
    assert st.summary() == ("moving 64x40: 200 ms (5.0 fps) · full 614x384: 11.00 s (0.1 fps), "
                            "1.50 s after the view changed")


def rate_only(pixels_per_s: float):
    from taichi_syncnerf.viewer.cost import FrameCost

    cost = FrameCost()
    cost.add(pixels_per_s, 1.0)
    assert cost.fixed == 0.0 and cost.rate == pixels_per_s
    return cost


def test_pass_strides_and_moving_height():
    from taichi_syncnerf.viewer.app import REFINE_S, moving_height, pass_strides
    from taichi_syncnerf.viewer.cost import FrameCost

    assert pass_strides(800 * 960, rate_only(1e9)) == (1,)                # fast: the full frame at once
    rate = 800 * 960 / (REFINE_S * 20)                                      # the full frame takes 20 x REFINE_S
    assert pass_strides(800 * 960, rate_only(rate)) == (8, 4, 2, 1)         # 1/64 of it: within REFINE_S
    assert pass_strides(800 * 960, rate_only(800 * 960 / (REFINE_S * 3))) == (2, 1)
    assert pass_strides(800 * 960, rate_only(1.0)) == (16, 8, 4, 2, 1)      # never coarser than 16
    assert pass_strides(800 * 960, None) == pass_strides(800 * 960, FrameCost()) == (16, 8, 4, 2, 1)
    assert moving_height("1/4", 800, 1.2, None) == 200
    assert moving_height("auto", 800, 1.2, None) == moving_height("auto", 800, 1.2, FrameCost()) == 24
    assert moving_height("auto", 800, 1.2, rate_only(8.0 * 1.2 * 100 ** 2)) == 100   # 8 fps at 100 px high
    assert moving_height("auto", 50, 1.2, rate_only(1e12)) == 50             # never above the resting height


def test_frame_cost_fits_a_fixed_cost_and_a_pixel_rate():
    """An image family's frame: 40 ms whatever its size plus 1 s per 3 M pixels. Seen at two sizes,
    the fit recovers both and the moving height is the one that really renders at 8 fps, where a
    rate alone (the small frames' pixels over their seconds) would choose a far smaller one."""
    from taichi_syncnerf.viewer.app import moving_height
    from taichi_syncnerf.viewer.cost import FrameCost

    def frame(p):
        return 0.04 + p / 3e6

    cost, small_only = FrameCost(), FrameCost()
    for p in (100 * 120, 800 * 960, 100 * 120, 800 * 960, 100 * 120):
        cost.add(p, frame(p))
    for p in (100 * 120,) * 3:
        small_only.add(p, frame(p))
    assert cost.fixed == pytest.approx(0.04, rel=1e-6) and cost.rate == pytest.approx(3e6, rel=1e-6)
    h = moving_height("auto", 800, 1.2, cost)
    assert h < 800 and frame(1.2 * h * h) <= 1 / 8 < frame(1.2 * (h + 2) ** 2)   # the tallest within 1/8 s
    assert moving_height("auto", 800, 1.2, small_only) < h / 2
    slow = FrameCost()                                                      # the fixed cost alone is over budget
    for p in (10_000, 40_000):
        slow.add(p, 0.2 + p / 1e7)
    assert moving_height("auto", 800, 1.2, slow) == 8
    ray_like = FrameCost()                                                  # no fixed cost: a rate
    for p in (10_000, 40_000, 90_000):
        ray_like.add(p, p / 5e5)
    assert ray_like.fixed < 1e-9 and ray_like.rate == pytest.approx(5e5)


def test_progressive_passes_make_the_single_pass_image(kind_run):
    """Each pass adds the pixels of a finer grid; the last image is the one-pass image, every pass's
    picture holds only rendered pixels (each block filled with its corner's)."""
    from taichi_syncnerf.viewer.camera import camera_fov, view_intrinsics

    rm = kind_run[1]
    src = rm.source
    fov, aspect = camera_fov(src.ds.intrinsics[2])
    intr = view_intrinsics(fov, aspect, 24)
    whole = rm.render_layers(src.ds.c2w[2], intr, 4.0, layers=True)
    passes = []
    out = rm.render_progressive(src.ds.c2w[2], intr, 4.0, layers=True, strides=(4, 2, 1),
                                on_pass=lambda s, images: passes.append((s, images)))
    assert [s for s, _ in passes] == [4, 2]
    for k in whole:
        np.testing.assert_allclose(out[k], whole[k], rtol=0, atol=1e-12, err_msg=k)
    for s, images in passes:
        img = images["rgb"]
        corners = whole["rgb"][::s, ::s]
        np.testing.assert_allclose(img[::s, ::s], corners, rtol=0, atol=1e-12)
        np.testing.assert_allclose(img, np.repeat(np.repeat(corners, s, 0), s, 1)[:24, :32], rtol=0, atol=1e-12)
    # abandoned between batches of rays
    assert rm.render_progressive(src.ds.c2w[2], intr, 4.0, strides=(2, 1), cancel=lambda: True) is None


def _playback_session():
    """A Session's playback without a browser: its controls as plain values."""
    from types import SimpleNamespace as NS

    from taichi_syncnerf.viewer.app import FrameStats, Session

    s = Session.__new__(Session)
    s.controls = NS(time=NS(value=0.0, min=0.0, max=11.0, step=0.05), loop=NS(value=True), speed=NS(value=2.0),
                    play=NS(label="play"), frame_info=NS(content=""))
    s.paths, s.stats = NS(previewing=False), FrameStats()
    return s


def test_play_step_and_loop():
    s = _playback_session()
    c = s.controls
    s.toggle_play()
    assert s.playing and c.play.label == "pause"
    s.tick(1.0)
    assert c.time.value == 2.0                          # speed 2 frames/s
    c.time.value = 10.9
    s.tick(0.05)
    assert c.time.value == 11.0 and s.playing           # the last frame
    s.tick(0.5)
    assert c.time.value == pytest.approx(0.95) and s.playing     # loop: round to the start
    c.loop.value = False
    c.time.value = 10.9
    s.tick(0.5)
    assert c.time.value == 11.0 and not s.playing       # no loop: stops at the end
    c.time.value = 3.3
    s.step(1)
    assert c.time.value == 4.0
    s.step(-1)
    assert c.time.value == 3.0
    c.time.value = 11.0
    s.step(1)
    assert c.time.value == 11.0                         # no loop: stays at the end
    c.loop.value = True
    s.step(1)
    assert c.time.value == 0.0
    s.step(-1)
    assert c.time.value == 11.0
    s.toggle_play()
    s.step(1)
    assert not s.playing                                # a step pauses


def test_declutter_hides_overlapping_and_outside_labels():
    from taichi_syncnerf.viewer.rig import declutter, label_box

    texts = ["cam00 +0.10", "cam01 -0.20", "cam02 +1.00", "cam03 +0.00"]
    w, h = label_box(texts[0])
    px = np.array([[100.0, 100.0], [100.0 + 0.5 * w, 100.0], [300.0, 200.0], [5.0, 300.0]])
    shown = declutter(px, np.ones(4, bool), texts, 640, 480)
    assert list(shown) == [True, False, True, False]        # the 2nd overlaps the 1st, the 4th leaves the canvas
    shown = declutter(px, np.array([False, True, True, True]), texts, 640, 480)
    assert list(shown) == [False, True, True, False]        # the 1st is behind the camera: the 2nd shows
    assert list(declutter(px, np.ones(4, bool), texts, 640, 480, order=[1, 0, 2, 3])) == [False, True, True, False]


def test_labels_of_a_forward_facing_rig_do_not_pile_up(run_model):
    """Seen from the rig overview, the tiny rig's labels are placed without overlap and in the canvas."""
    from taichi_syncnerf.viewer.camera import camera_fov
    from taichi_syncnerf.viewer.rig import RigDrawing, label_box, overview_pose, project, rig_cameras

    class Handle:
        def __init__(self, *a, **k):
            self.visible, self.text, self.color = True, k.get("text", a[1] if len(a) > 1 else ""), None

    class Scene:
        def add_camera_frustum(self, *a, **k):
            return Handle()

        def add_label(self, name, text, **k):
            return Handle(name, text)

    src = run_model.source
    cams = rig_cameras(src, run_model.offsets_frames())
    rig = RigDrawing(Scene(), cams)
    fov = camera_fov(src.ds.intrinsics[0])[0]
    pos, target, up = overview_pose(src.ds.c2w, fov, 956 / 800)
    view = look_at(pos, target, up)
    mask = rig.place_labels(view, fov, 956, 800)
    assert mask.all(), "the overview shows every label"
    px, front = project(rig.label_anchors(), view, fov, 956, 800)
    boxes = []
    for (x, y), c in zip(px, cams):
        bw, bh = label_box(c.short_label)
        boxes.append((x - bw / 2, y - bh, x + bw / 2, y))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
    # snapped to camera 2: its frustum and label are hidden, the others stay
    rig.hide_camera(2)
    assert [f.visible for f in rig.frusta] == [True, True, False, True]
    assert not rig.labels[2].visible and rig.labels[0].visible
    rig.set_visible(False)
    assert not any(f.visible for f in rig.frusta + rig.labels)


@pytest.mark.parametrize("layout", ["forward", "inward"])
def test_overview_sees_every_camera(layout):
    from taichi_syncnerf.viewer.rig import overview_pose, project

    if layout == "forward":
        c2w = np.stack([look_at(np.array([x, y, 0.0]), np.array([0.0, 0.0, -5.0]), np.array([0.0, 1.0, 0.0]))
                        for x in (-1.0, 0.0, 1.0) for y in (-0.3, 0.3)])
    else:
        c2w = np.stack([look_at(4.0 * np.array([np.cos(a), np.sin(a), 0.3]), np.zeros(3), np.array([0.0, 0.0, 1.0]))
                        for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)])
    fov = np.radians(50.0)
    pos, target, up = overview_pose(c2w, fov, 1.2)
    px, front = project(c2w[:, :, 3], look_at(pos, target, up), fov, 960, 800)
    assert front.all()
    assert (px[:, 0] > 0).all() and (px[:, 0] < 960).all() and (px[:, 1] > 0).all() and (px[:, 1] < 800).all()


def test_compare_images():
    from taichi_syncnerf.viewer.compare import (SHOW_ERROR, SHOW_SPLIT, SHOW_TRUTH, compose, depth_image, letterbox,
                                                opacity_image, psnr, real_frame)

    assert real_frame(7.3, 1.25, 12) == (6, True)          # frame f of camera k shows scene time f + offset_k
    assert real_frame(0.0, 2.0, 12) == (0, False)          # before the camera's video: its first frame
    assert real_frame(13.4, 2.0, 12) == (11, True) and real_frame(14.0, 2.0, 12) == (11, False)
    pred = np.zeros((4, 6, 3))
    gt = np.full((4, 6, 3), 0.1)
    assert psnr(pred, gt) == pytest.approx(20.0)
    assert compose(SHOW_TRUTH, pred, gt) is gt
    split = compose(SHOW_SPLIT, pred, gt)
    assert np.all(split[:, :2] == 0.0) and np.all(split[:, 2:4] == 1.0) and np.all(split[:, 4:] == 0.1)
    np.testing.assert_allclose(compose(SHOW_ERROR, pred, gt), 0.4)
    wide = letterbox(gt, 2.0)                           # a wider canvas: black bars left and right
    assert wide.shape == (4, 8, 3) and np.all(wide[:, :1] == 0) and np.all(wide[:, 1:7] == 0.1)
    narrow = letterbox(gt, 1.0)                         # a narrower one: the sides cut
    assert narrow.shape == (4, 4, 3)
    op = np.array([[1.0, 0.0], [0.5, 1.0]])
    d = np.array([[2.0, 0.0], [1.0, 6.0]])               # depth is the weights' sum of t: t = d / opacity
    img = depth_image(d, op, near=2.0, far=6.0)
    assert img.shape == (2, 2, 3) and np.all(img[0, 1] == 0.0)
    assert np.allclose(img[1, 0], img[0, 0] * 0.5)       # the same depth (2), half the opacity
    assert not np.allclose(img[0, 0], img[1, 1])        # near and far differ
    np.testing.assert_allclose(opacity_image(op)[..., 0], op)
    from taichi_syncnerf.viewer.compare import depth_range

    d = np.linspace(1.0, 11.0, 100).reshape(10, 10)
    o = np.ones((10, 10))
    o[0] = 0.1                                            # the first row mostly transparent: left out
    lo, hi = depth_range(d * o, o)
    assert 2.0 < lo < 2.5 and 10.5 < hi < 11.0
    assert depth_range(d, np.zeros((10, 10))) == (0.0, 1.0)


def test_depth_and_opacity_come_with_the_colours(kind_run):
    """K-Planes gives depth and opacity (the colours unchanged); Sync-MixVoxels says it cannot."""
    from taichi_syncnerf.viewer.camera import camera_fov, view_intrinsics

    rm = kind_run[1]
    src = rm.source
    fov, aspect = camera_fov(src.ds.intrinsics[1])
    intr = view_intrinsics(fov, aspect, 12)
    out = rm.render_layers(src.ds.c2w[1], intr, 3.0, layers=True)
    np.testing.assert_array_equal(out["rgb"], rm.render(src.ds.c2w[1], intr, 3.0))
    if rm.model.kind == "sync-kplanes":
        assert rm.depth_note is None
        assert out["opacity"].shape == (12, 16) and 0.0 <= out["opacity"].min() and out["opacity"].max() <= 1.0 + 1e-9
        t = out["depth"] / np.maximum(out["opacity"], 1e-6)
        assert np.all((t >= src.near - 1e-6) & (t <= src.far + 1e-6))
        # the colours composite the samples with the same weights: a ray that ends (opacity 1) has a depth
        assert out["opacity"].max() > 0.5
    else:
        assert "depth" not in out and "gives no depth" in rm.depth_note


def test_story_figures_and_table(run_model):
    from taichi_syncnerf.viewer.rig import offset_colors
    from taichi_syncnerf.viewer.story import camera_table_html, offsets_figure, training_figure

    records = run_model.log_records()
    assert len(records) > 5
    img = training_figure(records, step_shown=run_model.step)
    assert img.dtype == np.uint8 and img.shape[1] == 300 and img.std() > 5
    src = run_model.source
    off = run_model.offsets_frames()
    truth = run_model.aligned_truth()
    colours = offset_colors(off)
    img = offsets_figure(records, src.camera_names, colours, 2.0, truth, run_model.step)
    assert img.shape[1] == 300
    # the camera lines are drawn in the rig's colours
    for c in colours[1:]:
        near = np.abs(img.astype(int) - np.array(c)).sum(-1) < 30
        assert near.sum() > 10, c
    assert training_figure([], 0) is None and offsets_figure([{"step": 1}], src.camera_names, colours, 1.0) is None
    table = camera_table_html(src.camera_names, off, colours, truth, src.test_index)
    assert "cam00 (test)" in table and f"{off[2]:+.2f}" in table and f"{off[2] - truth[2]:+.2f}" in table
    r, g, b = colours[3]
    assert f"rgb({r},{g},{b})" in table
    assert "truth" not in camera_table_html(src.camera_names, off, colours)
