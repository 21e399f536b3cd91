"""Tiny trained runs shared by the viewer tests, one of each model kind (a model that changes with time,
not a good one)."""
import pytest

TINY = [
    "kplanes.features=4", "kplanes.space_res=[8, 16]", "kplanes.time_res=6", "kplanes.density_hidden=16",
    "kplanes.geo_features=7", "kplanes.color_hidden=[16]", "kplanes.sh_degree=2", "kplanes.n_samples=12",
    "kplanes.proposal.samples=[16]", "kplanes.proposal.features=4", "kplanes.proposal.space_res=[16]",
    "kplanes.proposal.time_res=6", "kplanes.proposal.hidden=8", "train.batch_rays=256", "train.warmup_steps=5",
    "train.log_every=5", "eval.max_frames=2", "testoptim.batch_rays=256",
    "offsets.lr_scale=1.0",
    "offsets.freeze_step=null", "train.lr=0.05", "train.steps=100", "train.checkpoint_every=25",
]
# on top of tests/models' tiny Sync-MixVoxels
MIXVOXELS = [
    "train.steps=200", "train.checkpoint_every=100", "train.lr=0.1", "mixvoxels.stage1_steps=100",
    "mixvoxels.upsample_steps=[150]", "mixvoxels.alpha_mask_steps=[150]", "offsets.lr_scale=1.0",
]


@pytest.fixture(scope="session", autouse=True)
def fresh_taichi_program():
    """The viewer tests run last and start from a fresh Taichi program (same settings): the one
    process running every test before them crashed (segmentation fault) a few tests into this
    package, the position moving with the number of kernels and fields allocated earlier."""
    import taichi as ti

    from taichi_syncnerf import runtime

    ti.reset()
    runtime._state = None
    return runtime.init(arch="cpu", threads=2, precision="f64")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """(run folder, dataset folder) of a 4-camera, 12-frame, 32x24 forward-facing (NDC) scene."""
    from taichi_syncnerf.config import load_config, resolve_config_path
    from taichi_syncnerf.data.synthetic import make_scene
    from taichi_syncnerf.train import train

    root = tmp_path_factory.mktemp("viewer")
    scene = root / "scene"
    # 12 frames at 2 fps: 5.5 s of the scene's motion, enough for the model to change with time
    make_scene(scene, layout="n3dv", cameras=4, frames=12, size=(32, 24), fps=2.0, offset_sigma=2.0, seed=3,
               progress=False)
    cfg_path = root / "tiny.yaml"
    cfg_path.write_text(f"base: {resolve_config_path('synthetic/sync-kplanes')}\nname: tiny\n")
    run = root / "run"
    train(load_config(cfg_path, TINY), scene, run, progress=False)
    return run, scene


@pytest.fixture(scope="session")
def run_model(tiny_run):
    """The tiny run opened once for the viewer (a model's kernels compile once per model)."""
    from taichi_syncnerf.viewer.live import RunModel

    return RunModel(tiny_run[0])


@pytest.fixture(scope="session")
def tiny_mixvoxels_run(tiny_run, tmp_path_factory):
    """(run folder, dataset folder) of Sync-MixVoxels on the same scene: 200 steps, the first 100 of them
    stage 1 (per-frame head, no offsets), a grid upsample and an alpha mask at step 150."""
    from models.test_sync_mixvoxels_run import TINY as TINY_MIXVOXELS

    from taichi_syncnerf.config import load_config
    from taichi_syncnerf.train import train

    scene = tiny_run[1]
    run = tmp_path_factory.mktemp("viewer-mixvoxels") / "run"
    cfg = load_config("synthetic/sync-mixvoxels", TINY_MIXVOXELS + MIXVOXELS)
    train(cfg, scene, run, progress=False)
    return run, scene


@pytest.fixture(scope="session")
def mixvoxels_model(tiny_mixvoxels_run):
    from taichi_syncnerf.viewer.live import RunModel

    return RunModel(tiny_mixvoxels_run[0])


@pytest.fixture(params=["sync-kplanes", "sync-mixvoxels"])
def kind_run(request):
    """(run folder, its RunModel) of each model kind."""
    run, model = {"sync-kplanes": ("tiny_run", "run_model"),
                  "sync-mixvoxels": ("tiny_mixvoxels_run", "mixvoxels_model")}[request.param]
    return request.getfixturevalue(run)[0], request.getfixturevalue(model)
