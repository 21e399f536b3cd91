"""The model registry: its check that a preset's box fits a world-space dataset."""
from taichi_syncnerf.models.registry import box_warning

NDC_BOX = [[-1.4, -1.15, -1.0], [1.4, 1.15, 1.0]]
WORLD = [[-1.3, -1.3, -1.3], [1.3, 1.3, 1.3]]


def test_a_box_that_cuts_a_world_space_scene_is_reported():
    msg = box_warning(NDC_BOX, False, WORLD)
    assert msg is not None and "model.bbox=null" in msg and "[-1.3, -1.3, -1.3]" in msg


def test_boxes_that_fit_or_ndc_data_pass():
    assert box_warning(NDC_BOX, True, [[-3.0, -1.8, -1.2], [3.0, 1.8, 1.2]]) is None   # NDC: preset's own space
    assert box_warning(None, False, WORLD) is None
    assert box_warning(WORLD, False, WORLD) is None
    assert box_warning([[-2, -2, -2], [2, 2, 2]], False, WORLD) is None
    assert box_warning([[-2, -2, -2], [2, 2, 1.2]], False, WORLD) is not None


def test_mixvoxels_box_follows_the_datasets_space():
    """synthetic/sync-mixvoxels carries its tight box as mixvoxels.ndc_bbox: forward-facing (NDC)
    data get it, world-space (Blender-layout) data their own scene box, and model.bbox wins."""
    from taichi_syncnerf.config import load_config
    from taichi_syncnerf.models.mixvoxels.model import model_box

    cfg = load_config("synthetic/sync-mixvoxels", [])
    assert cfg["model"]["bbox"] is None and cfg["mixvoxels"]["ndc_bbox"] == NDC_BOX
    n3dv = [[-3.0, -1.8, -1.2], [3.0, 1.8, 1.2]]
    assert model_box(cfg, True, n3dv) == NDC_BOX
    assert model_box(cfg, False, WORLD) == WORLD
    assert box_warning(cfg["model"]["bbox"], False, WORLD) is None
    given = load_config("synthetic/sync-mixvoxels", ["model.bbox=[[-2, -2, -2], [2, 2, 2]]"])
    assert model_box(given, True, n3dv) == model_box(given, False, WORLD) == [[-2, -2, -2], [2, 2, 2]]
    plain = load_config("synthetic/sync-mixvoxels", ["mixvoxels.ndc_bbox=null"])
    assert model_box(plain, True, n3dv) == n3dv


def test_mixvoxels_density_shift_follows_the_datasets_space():
    """synthetic/sync-mixvoxels starts the dynamic density transparent on world-space data (-6) and
    as the reference does on forward-facing (NDC) data (0); the built model's head gets the value."""
    from taichi_syncnerf.config import load_config
    from taichi_syncnerf.models.mixvoxels.model import SyncMixVoxels, density_shift

    cfg = load_config("synthetic/sync-mixvoxels", [])
    assert density_shift(cfg, True) == 0.0 and density_shift(cfg, False) == -6.0
    one = load_config("synthetic/sync-mixvoxels", ["mixvoxels.ndc_dynamic_density_shift=null"])
    assert density_shift(one, True) == density_shift(one, False) == -6.0
    for ndc, box, want in ((True, NDC_BOX, 0.0), (False, WORLD, -6.0)):
        model = SyncMixVoxels(cfg, 3, 8, 0, ndc, 0.0, 1.0, box, [1.0, 1.0, 1.0], 8)
        assert model.frame_head.shift == want
