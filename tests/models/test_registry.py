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
