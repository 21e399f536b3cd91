"""Sync-4DGS on a dataset: cameras (a Gaussian lands where the dataset's rays see it), the images
sampler's crops, density control within the capacity, checkpoints of a changed count, .ply export."""
import numpy as np
import pytest

from taichi_syncnerf.config import DEFAULTS, apply_overrides

SMALL = ["model.kind=sync-4dgs", "gaussians.max_gaussians=64", "gaussians.sh_degree=1", "gaussians.plane_res=4",
         "gaussians.plane_multires=[1]", "gaussians.plane_features=2", "gaussians.deform_width=4",
         "gaussians.init_points=40", "gaussians.time_res=3", "gaussians.static_steps=0", "gaussians.crop=[16, 16]",
         "gaussians.batch_images=2", "gaussians.prune_above=0"]


def build(tmp_path_factory, layout):
    from taichi_syncnerf.data.synthetic import make_scene
    from taichi_syncnerf.models.registry import build_model
    from taichi_syncnerf.rays import RaySource

    scene = tmp_path_factory.mktemp("gs") / "scene"
    make_scene(scene, layout=layout, cameras=3, frames=6, size=(32, 24), offset_sigma=1.0, seed=2, progress=False)
    cfg = apply_overrides(DEFAULTS, SMALL)
    source = RaySource.open(scene, cfg, progress=False)
    return cfg, source, build_model(cfg, source)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(tmp_path_factory, "n3dv")


@pytest.fixture(scope="module", params=["n3dv", "blender"])
def any_layout(request, built, tmp_path_factory):
    return built if request.param == "n3dv" else build(tmp_path_factory, "blender")


def one_gaussian(model, p, colour=(1.0, 0.0, 0.0)):
    from taichi_syncnerf.models.gaussians.points import SH_C0

    model.cloud.set({"means": np.asarray([p], float), "sh_dc": (np.asarray([colour]) - 0.5) / SH_C0,
                     "sh_rest": np.zeros((1, 9)), "opacity": np.array([4.0]), "log_scales": np.full((1, 3), -6.0),
                     "quats": np.array([[1.0, 0.0, 0.0, 0.0]])})
    model._init, model.fine = None, False


def test_a_gaussian_lands_where_the_dataset_rays_see_it(any_layout):
    """A tiny Gaussian put on the world ray of pixel (x, y) of a dataset camera (the ray the dataset
    generates, before any NDC map) renders centred on that pixel of that camera's view."""
    from taichi_syncnerf.data.cameras import generate_rays, ndc_rays

    _, source, model = any_layout
    ds = source.ds
    for cam, (x, y) in ((0, (5, 7)), (1, (20, 3)), (2, (29, 21)), (1, (16, 12))):
        o, d = generate_rays(ds.intrinsics[cam], ds.c2w[cam], np.array([x]), np.array([y]), normalize=False)
        if ds.ndc:        # the dataset's own NDC ray of that pixel is the image of the same world ray
            o_ndc, d_ndc = ds.rays(cam, np.array([x]), np.array([y]))
            o2, d2 = ndc_rays(ds.intrinsics[cam], 1.0, o, d)
            np.testing.assert_allclose(np.c_[o_ndc, d_ndc], np.c_[o2, d2], atol=1e-9)
        one_gaussian(model, o[0] + 1.7 * d[0])
        a = model.render_view_layers(source.view(cam, 0), layers=True)["opacity"]
        assert np.unravel_index(np.argmax(a), a.shape) == (y, x)
        ys, xs = np.mgrid[0:a.shape[0], 0:a.shape[1]]
        assert np.sum(a * xs) / a.sum() == pytest.approx(x, abs=0.02)       # centred on the pixel centre
        assert np.sum(a * ys) / a.sum() == pytest.approx(y, abs=0.02)


def reinit(model, source, cfg):
    from taichi_syncnerf.models.gaussians.points import initial_gaussians

    model.cloud.set(initial_gaussians(source, cfg))
    model._init, model.fine = None, False


def test_a_crop_is_the_window_of_the_whole_image(built):
    from types import SimpleNamespace

    from taichi_syncnerf.models.registry import make_sampler

    cfg, source, model = built
    reinit(model, source, cfg)
    a = model.cloud.get()
    a["log_scales"] = np.full_like(a["log_scales"], -4.0)    # small footprints: see below
    model.cloud.set(a)
    batch = make_sampler(cfg, source).sample(np.random.default_rng(4), 999, 0)
    assert len(batch["views"]) == 2
    for v in batch["views"]:
        intr, full_intr = v["intrinsics"], source.ds.intrinsics[v["cam"]]
        assert (intr.width, intr.height) == (16, 16) and v["rgb"].shape == (16, 16, 3)
        x0, y0 = int(round(full_intr.cx - intr.cx)), int(round(full_intr.cy - intr.cy))
        np.testing.assert_allclose(v["rgb"], source.image(v["cam"], v["frame"])[y0:y0 + 16, x0:x0 + 16], atol=1e-6)
        crop = model.render_view(SimpleNamespace(intrinsics=intr, c2w=v["c2w"], time=v["time"], cam=v["cam"],
                                                 width=16, height=16))
        whole = model.render_view(source.view(v["cam"], v["frame"]))
        # equal up to rounding for small Gaussians; a large one outside the window differs near its
        # border: the EWA Jacobian is clamped to each image's own (widened) field of view (as in 3DGS)
        np.testing.assert_allclose(crop, whole[y0:y0 + 16, x0:x0 + 16], atol=1e-9)


def test_density_control_clones_splits_prunes_within_the_capacity(built):
    cfg, source, model = built
    reinit(model, source, cfg)
    c, dens, opt = model.cloud, model.density, model.optimizer
    n = c.n
    a = c.get()
    a["log_scales"][:10] = np.log(0.001)            # small: cloned
    a["log_scales"][10:20] = np.log(0.5)            # large: split
    a["opacity"][20:25] = -8.0                      # transparent: pruned
    c.set(a)
    stat = np.zeros(c.capacity)
    stat[:20] = 1.0                                 # far above the threshold
    dens.grad_sum.from_numpy(stat)
    dens.count.from_numpy((stat > 0).astype(float))
    m = np.arange(c.capacity * 3, dtype=float)      # moments that identify their rows
    opt.set_moments("means", m, m + 0.5)
    out = dens.densify_and_prune(c, opt, 10, np.random.default_rng(0))
    assert out == {"cloned": 10, "split": 10, "pruned": 5, "gaussians": n + 10 + 10 - 5}
    b = c.get()
    kept = np.array([i for i in range(n) if not 10 <= i < 25])
    np.testing.assert_allclose(b["means"][:len(kept)], a["means"][kept])
    np.testing.assert_allclose(b["means"][len(kept):len(kept) + 10], a["means"][:10])        # clones: copies
    children = b["log_scales"][len(kept) + 10:]
    np.testing.assert_allclose(children, np.log(0.5 / 1.6))                                   # split: S / 1.6
    mm, vv = opt.moments("means")
    np.testing.assert_allclose(mm[:3 * len(kept)], m.reshape(-1, 3)[kept].ravel())           # kept rows keep theirs
    assert not mm[3 * len(kept):].any() and not vv[3 * len(kept):].any()                     # new rows start at 0
    assert not dens.count.to_numpy().any()
    # a limit below the capacity (the coarse stage's static_capacity): growth stops there
    def hot():
        stat = np.zeros(c.capacity)
        stat[:c.n] = np.linspace(1.0, 2.0, c.n)
        dens.grad_sum.from_numpy(stat)
        dens.count.from_numpy((stat > 0).astype(float))

    hot()
    n0 = c.n
    out = dens.densify_and_prune(c, opt, 10, np.random.default_rng(0), limit=n0 + 3)
    assert out["cloned"] + out["split"] == 3 and c.n == n0 + 3
    # max_growth bounds one step's growth, the largest gradients first
    hot()
    n0, a0 = c.n, c.get()
    dens.cfg["max_growth"] = 2.5 / c.capacity
    try:
        out = dens.densify_and_prune(c, opt, 10, np.random.default_rng(0))
    finally:
        dens.cfg["max_growth"] = None
    assert out["cloned"] + out["split"] == 2 and out["pruned"] == 0
    new = c.get()["means"]
    kept, clones = new[:n0 - out["split"]], new[n0 - out["split"]:n0 - out["split"] + out["cloned"]]
    removed = [i for i in range(n0) if not np.any(np.all(kept == a0["means"][i], axis=1))]
    top = {n0 - 2, n0 - 1}                                          # the two largest gradients: the last rows
    assert set(removed) <= top                                       # split parents
    assert all(any(np.array_equal(row, a0["means"][i]) for i in top) for row in clones)
    assert len(removed) + len(clones) == 2
    # the model's coarse stage passes static_capacity x capacity, its fine stage the capacity
    saved = (model.g["static_capacity"], model.fine)
    try:
        model.g["static_capacity"], model.fine = (n0 + 5) / c.capacity, False
        hot()
        every = int(model.g["densify_every"])
        due = (int(model.g["densify_from"]) // every + 1) * every - 1      # a step after which density control runs
        assert model.density.due(due)[0]
        model._density_step(due)
        assert c.n == n0 + 5
    finally:
        model.g["static_capacity"], model.fine = saved
    # a full cloud: growth stops at the capacity, the largest gradients first
    stat = np.zeros(c.capacity)
    stat[:c.n] = np.linspace(1.0, 2.0, c.n)
    dens.grad_sum.from_numpy(stat)
    dens.count.from_numpy((stat > 0).astype(float))
    room = c.capacity - c.n
    out = dens.densify_and_prune(c, opt, 10, np.random.default_rng(0))
    assert out["cloned"] + out["split"] == room and c.n <= c.capacity


def test_checkpoint_round_trip_resizes(built, tmp_path):
    cfg, source, model = built
    reinit(model, source, cfg)
    model.train_on(make_batch(source), 0, 1.0, False)           # the fine stage from step 0: Adam has moments
    model.sh_active = 1
    arrays = model.state_arrays()
    n = int(arrays["gaussians/count"])
    assert arrays["gaussians/means"].shape == (n, 3) and arrays["adam/means/m"].shape == (3 * n,)
    view = source.view(2, 4)
    before = model.render_view(view)
    reinit(model, source, cfg)                                      # another count and other values
    model.cloud.set({k: v[:5] for k, v in model.cloud.get().items()})
    model.load_state_arrays(arrays, "ckpt")
    assert model.cloud.n == n and model.fine and model.sh_active == 1
    np.testing.assert_array_equal(model.render_view(view), before)
    np.testing.assert_array_equal(model.optimizer.moments("means")[0][:3 * n], arrays["adam/means/m"])
    too_many = dict(arrays, **{"gaussians/count": np.array(model.cloud.capacity + 1)})
    from taichi_syncnerf.errors import UserError

    with pytest.raises(UserError, match="exceed gaussians.max_gaussians"):
        model.load_state_arrays(too_many, "ckpt")


def make_batch(source, cam=1, frame=2):
    v = source.view(cam, frame)
    return {"views": [{"cam": cam, "frame": frame, "time": v.time, "intrinsics": v.intrinsics, "c2w": v.c2w,
                       "rgb": source.image(cam, frame)}]}


def test_ply_export_reads_back(built, tmp_path):
    from taichi_syncnerf.models.gaussians.export import property_names, read_ply, write_ply

    cfg, source, model = built
    reinit(model, source, cfg)
    model.fine = True
    rng = np.random.default_rng(1)
    model.deform.encoder.params.from_numpy(rng.uniform(0.5, 1.5, model.deform.encoder.n_params))
    a = model.gaussians_at(0.3)
    assert not np.allclose(a["means"], model.cloud.get()["means"])               # deformed at that time
    path = write_ply(tmp_path / "g.ply", a)
    text = path.read_bytes()
    header = text[:text.index(b"end_header\n")].decode()
    assert "format binary_little_endian 1.0" in header and f"element vertex {model.cloud.n}" in header
    b = read_ply(path)
    assert b["names"] == property_names(9) and b["names"][9:18] == [f"f_rest_{i}" for i in range(9)]
    for k in ("means", "sh_dc", "sh_rest", "opacity", "log_scales", "quats"):
        np.testing.assert_allclose(b[k], a[k], rtol=1e-6, atol=1e-6)                # float32 in the file
    rows = np.frombuffer(text[text.index(b"end_header\n") + 11:], "<f4").reshape(model.cloud.n, -1)
    # channel-major f_rest: the red coefficients 1..3 first (sh column 3 k + c, c = 0)
    np.testing.assert_allclose(rows[:, 9:12], a["sh_rest"][:, 0::3], rtol=1e-6, atol=1e-6)
    assert not list(tmp_path.glob("*.tmp*"))


def test_initial_gaussians_from_the_datasets_points(built):
    """points3d.npy (what prepare writes: files' world, RGB in [0, 1]) is moved into the loader's world;
    without it, random points that the training cameras see, coloured by their pixel."""
    from taichi_syncnerf.models.gaussians.points import SH_C0, initial_gaussians

    cfg, source, model = built
    rng = np.random.default_rng(3)
    p_model = rng.normal(size=(30, 3))
    world = np.asarray(source.ds.scene.world_from_source)
    inv = np.linalg.inv(world)
    p_files = p_model @ inv[:3, :3].T + inv[:3, 3]
    colours = rng.uniform(size=(30, 3))
    path = source.ds.root / "points3d.npy"
    np.save(path, np.c_[p_files, colours].astype(np.float32))
    try:
        a = initial_gaussians(source, cfg)
    finally:
        path.unlink()
    np.testing.assert_allclose(a["means"], p_model, atol=1e-5)
    np.testing.assert_allclose(a["sh_dc"] * SH_C0 + 0.5, colours, atol=1e-6)
    assert np.allclose(a["opacity"], np.log(0.1 / 0.9)) and np.all(a["quats"] == [1, 0, 0, 0])
    b = initial_gaussians(source, cfg)                    # random: seen by the training cameras
    assert len(b["means"]) == cfg["gaussians"]["init_points"]
    k = int(source.train_indices[0])
    c2w = source.ds.c2w[k]
    depth = -(b["means"] - c2w[:, 3]) @ c2w[:, 2]          # along the viewing axis
    assert np.mean(depth > 0) > 0.3


def test_spawned_gaussians_land_where_their_view_saw_them_at_its_time(built, monkeypatch):
    import taichi_syncnerf.models.gaussians.points as points
    from taichi_syncnerf.config import apply_overrides as override
    from taichi_syncnerf.models.gaussians.density import _logit

    cfg, source, model = built
    reinit(model, source, cfg)
    model.cfg = override(cfg, ["gaussians.spawn_points=3", "gaussians.spawn_opacity=0.4"])
    model.g = model.cfg["gaussians"]
    model.fine = True
    n0 = model.cloud.n
    P = np.array([[0.1, -0.05, -2.0], [0.0, 0.08, -2.5], [-0.1, 0.0, -3.0]])
    seen = {}

    def fake(src, cam, frame, pred, offsets_frames, count, threshold, rng, box=None, n_depths=48):
        seen.update(cam=cam, frame=frame, count=count, threshold=threshold, pred=pred)
        return P, np.full((3, 3), 0.5), np.array([0.01, 0.02, 0.03])

    monkeypatch.setattr(points, "error_points", fake)
    opt = model.optimizer
    opt.set_moments("means", np.ones(model.cloud.capacity * 3), np.ones(model.cloud.capacity * 3))
    try:
        assert model._spawn() == 3
        assert seen["count"] == 3 and seen["threshold"] == 0.1
        assert seen["pred"].shape == (source.height, source.width, 3)
        a = model.cloud.get()
        assert model.cloud.n == n0 + 3
        np.testing.assert_allclose(a["opacity"][n0:], _logit(0.4))
        np.testing.assert_allclose(np.exp(a["log_scales"][n0:]), np.repeat([[0.01], [0.02], [0.03]], 3, 1))
        mm, vv = opt.moments("means")
        assert np.all(mm[:3 * n0] == 1.0) and not mm[3 * n0:].any() and not vv[3 * n0:].any()
        # the deformation at the view's time moves the canonical points (back) to where they were seen
        t = model.view_time(source.view(seen["cam"], seen["frame"]).time, seen["cam"])
        dp = model.deform.forward(model.cloud.params["means"], model.cloud.n, t)["position"].to_numpy()
        landed = a["means"][n0:] + dp[n0:model.cloud.n]
        naive = model.deform.forward(_flat_means(P), 3, t)["position"].to_numpy()[:3]
        assert np.abs(naive).max() > 1e-3
        assert np.abs(landed - P).max() < 0.5 * np.abs(naive).max()
        # no room, none
        full = {k: np.concatenate([v] + [v[:1]] * (model.cloud.capacity - model.cloud.n)) for k, v in a.items()}
        model.cloud.set(full)
        assert model._spawn() == 0 and model.cloud.n == model.cloud.capacity
    finally:
        model.cfg, model.g = cfg, cfg["gaussians"]
        model.fine = False


def _flat_means(p):
    import taichi as ti

    f = ti.field(float, shape=max(1, 3 * len(p)))
    f.from_numpy(np.asarray(p, np.float32).ravel())
    return f


def test_a_moving_camera_at_a_standing_time_is_not_deformed_again(built, monkeypatch):
    """Render-only views at the time of the last one reuse its deformed Gaussians (the same image as
    deforming again); another time, an optimizer step, new Gaussians or a loaded checkpoint deform
    again; training forwards always do."""
    cfg, source, model = built
    reinit(model, source, cfg)
    model.fine = True
    calls = []
    real = model.deform.forward
    monkeypatch.setattr(model.deform, "forward", lambda *a: calls.append(a[2]) or real(*a))

    def render(cam=0, frame=1):
        return model.render_view_layers(source.view(cam, frame))["rgb"]

    render(0)
    assert len(calls) == 1
    moved = render(2)                                   # same scene time, another camera's offset: deformed
    n = len(calls)
    again = render(2)
    assert len(calls) == n and np.array_equal(again, moved)
    model._composed_for = None                          # forced: the same image
    assert np.array_equal(render(2), moved) and len(calls) == n + 1
    render(2, frame=3)
    assert len(calls) == n + 2
    before = len(calls)
    model.train_on(make_batch(source), 0, 1.0, False)   # a training forward deforms whatever was composed
    assert len(calls) > before
    render(0)
    k = len(calls)
    model._optimizer_step(1, 1.0, False, False)         # the parameters move
    render(0)
    assert len(calls) == k + 1
    state = model.state_arrays()
    render(0)
    k = len(calls)
    model.load_state_arrays(state, "ckpt")
    render(0)
    assert len(calls) == k + 1
    model.cloud.set(model.cloud.get())
    render(0)
    assert len(calls) == k + 2
