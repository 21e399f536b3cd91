import math

import pytest

from taichi_syncnerf.config import DEFAULTS, apply_overrides, dump_config, load_config, load_resolved
from taichi_syncnerf.errors import ConfigError


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_and_overrides(tmp_path):
    p = write(tmp_path, "a.yaml", "train:\n  steps: 10\nkplanes:\n  space_res: [8, 16]\n")
    cfg = load_config(p, ["train.lr=0.02", "model.sync=false", "data.path=/x y"])
    assert cfg["train"]["steps"] == 10
    assert cfg["train"]["lr"] == 0.02
    assert cfg["model"]["sync"] is False
    assert cfg["kplanes"]["space_res"] == [8, 16]
    assert cfg["data"]["path"] == "/x y"
    assert cfg["train"]["batch_rays"] == DEFAULTS["train"]["batch_rays"]


def test_base_chain(tmp_path):
    write(tmp_path, "base.yaml", "train:\n  steps: 10\n  lr: 0.5\n")
    p = write(tmp_path, "child.yaml", "base: base.yaml\ntrain:\n  steps: 20\n")
    cfg = load_config(p)
    assert cfg["train"]["steps"] == 20 and cfg["train"]["lr"] == 0.5


@pytest.mark.parametrize(
    "text,needle",
    [
        ("train:\n  stpes: 3\n", "unknown key 'train.stpes'"),
        ("train: [1, 2]\n", "'train' must be a mapping"),
        ("train:\n  steps: -1\n", "train.steps"),
        ("kplanes:\n  decoder: fancy\n", "kplanes.decoder"),
        ("- 1\n- 2\n", "must be a mapping"),
        ("train: {steps: [\n", "invalid YAML"),
    ],
)
def test_bad_configs_name_file_and_key(tmp_path, text, needle):
    p = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert needle in str(e.value)
    assert "bad.yaml" in str(e.value) or "unknown" in str(e.value)


def test_bad_overrides(tmp_path):
    p = write(tmp_path, "a.yaml", "")
    for o, needle in [("train.nope=1", "unknown key"), ("trainsteps", "KEY=VALUE"), ("train=3", "section")]:
        with pytest.raises(ConfigError, match=needle):
            load_config(p, [o])


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_resolved_round_trip(tmp_path):
    cfg = apply_overrides(DEFAULTS, ["train.steps=7"])
    p = write(tmp_path, "config.yaml", dump_config(cfg))
    assert load_resolved(p) == cfg


def test_yaml_1_2_floats_in_files_and_overrides(tmp_path):
    p = write(tmp_path, "a.yaml", "train: {lr: 1e-3}\nkplanes: {regularizers: {plane_tv: -0E+0, distortion: 5e4}}\n"
                                  "name: 1e\n")
    cfg = load_config(p, ["offsets.l1=1e-5", "offsets.init_mean=-2E+5", "data.test_camera=e5",
                          "train.steps=12"])
    assert cfg["train"]["lr"] == 1e-3 and isinstance(cfg["train"]["lr"], float)
    assert cfg["offsets"]["l1"] == 1e-5 and isinstance(cfg["offsets"]["l1"], float)
    assert cfg["offsets"]["init_mean"] == -2e5
    reg = cfg["kplanes"]["regularizers"]
    assert reg["distortion"] == 5e4 and reg["plane_tv"] == 0.0
    assert cfg["train"]["steps"] == 12 and isinstance(cfg["train"]["steps"], int)
    assert cfg["name"] == "1e" and cfg["data"]["test_camera"] == "e5"
    special = apply_overrides(DEFAULTS, ["offsets.l1=.inf", "offsets.init_mean=-.inf", "offsets.init_std=.nan"])
    assert special["offsets"]["l1"] == float("inf") and special["offsets"]["init_mean"] == float("-inf")
    assert math.isnan(special["offsets"]["init_std"])


def test_yaml_1_2_floats_do_not_change_pyyaml():
    import yaml

    assert yaml.safe_load("1e-3") == "1e-3"


@pytest.mark.parametrize("override,needle", [
    ("kplanes.regularizers.plane_tv=-1.0e-4", "kplanes.regularizers.plane_tv must be a non-negative number"),
    ("kplanes.regularizers.interlevel=true", "kplanes.regularizers.interlevel must be a non-negative number"),
    ("kplanes.regularizers.distortion=abc", "kplanes.regularizers.distortion"),
    ("offsets.l1=-1", "offsets.l1 must be a non-negative number"),
    ("offsets.lr_scale=false", "offsets.lr_scale"),
    ("offsets.init_std=-0.1", "offsets.init_std"),
    ("offsets.init_mean=x", "offsets.init_mean must be a number"),
    ("offsets.init_mean=.nan", "offsets.init_mean"),
    ("kplanes.regularizers.plane_tv=.inf", "kplanes.regularizers.plane_tv"),
    ("train.lr=0", "train.lr must be a positive number"),
    ("train.lr=true", "train.lr"),
    ("train.batch_rays=0", "train.batch_rays must be a positive integer"),
    ("train.batch_rays=1e3", "train.batch_rays"),
    ("train.warmup_steps=-1", "train.warmup_steps"),
    ("train.warmup_steps=", "train.warmup_steps"),
    ("train.schedule=cosine", "train.schedule must be one of warmup_cosine, constant"),
    ("sampling.isg_step=-1", "sampling.isg_step"),
    ("sampling.ist_step=1.5", "sampling.ist_step"),
    ("train.log_every=0", "train.log_every must be a positive integer"),
    ("train.checkpoint_every=null", "train.checkpoint_every"),
    ("testoptim.steps=0", "testoptim.steps must be a positive integer"),
    ("testoptim.lr=-1e-3", "testoptim.lr must be a positive number"),
    ("testoptim.batch_rays=0", "testoptim.batch_rays"),
    ("testoptim.batch_rays=8192", "must not exceed train.batch_rays"),
    ("train.batch_rays=1024", "must not exceed train.batch_rays"),
    ("eval.max_frames=0", "eval.max_frames"),
    ("mixvoxels.dynamic_density_relu_step=-1", "mixvoxels.dynamic_density_relu_step must be null or an integer"),
    ("mixvoxels.dynamic_density_relu_step=1.5", "mixvoxels.dynamic_density_relu_step"),
    ("mixvoxels.time_grid=-1", "mixvoxels.time_grid must be an integer >= 0"),
    ("testoptim.variation_steps=-2", "testoptim.variation_steps must be an integer >= 0"),
    ("testoptim.variation_steps=5", "only sync-mixvoxels has a variation field"),
    ("eval.lpips=maybe", "eval.lpips must be true or false"),
    ("kplanes.color_hidden=[]", "kplanes.color_hidden"),
    ("kplanes.color_hidden=[64, 0]", "kplanes.color_hidden"),
    ("kplanes.color_hidden=64", "kplanes.color_hidden"),
    ("kplanes.sh_degree=abc", "kplanes.sh_degree"),
    ("kplanes.features=true", "kplanes.features"),
    ("kplanes.proposal.samples=[64, -1]", "kplanes.proposal.samples"),
    ("kplanes.proposal.samples=64", "kplanes.proposal.samples"),
    ("kplanes.proposal.space_res=[1]", "kplanes.proposal.space_res"),
    ("kplanes.proposal.space_res=[]", "kplanes.proposal.space_res"),
    ("kplanes.proposal.features=0", "kplanes.proposal.features"),
    ("kplanes.proposal.hidden=8.0", "kplanes.proposal.hidden"),
    ("kplanes.proposal.time_res=1", "kplanes.proposal.time_res"),
    ("kplanes.proposal.time_res=half", "kplanes.proposal.time_res"),
    ("model.bbox=[[0, 0, 0], [1, 1]]", "model.bbox"),
    ("model.bbox=[[0, 0, 0], [1, 1, 0]]", "model.bbox"),
    ("model.bbox=[[0, 0, 0], [1, 1, a]]", "model.bbox"),
    ("model.bbox=1", "model.bbox"),
    ("offsets.start_step=-1", "offsets.start_step"),
    ("data.generate={layout: n3dv, foo: 1}", "data.generate has unknown key(s) foo"),
    ("data.generate={size: 128}", "data.generate size must be WIDTHxHEIGHT"),
    ("data.generate={cameras: many}", "data.generate cameras must be an integer"),
    ("data.generate=3", "data.generate must be a mapping"),
    ("offsets.freeze_step=-5", "offsets.freeze_step"),
    ("kplanes.explicit_basis_hidden=0", "kplanes.explicit_basis_hidden"),
    ("kplanes.density_bias=low", "kplanes.density_bias"),
    ("train.seed=1.5", "train.seed"),
    ("kplanes.early_stop_transmittance=1", "kplanes.early_stop_transmittance"),
    ("data.max_frames=1", "data.max_frames"),
    ("kplanes.proposal.hash_levels=0", "kplanes.proposal.hash_levels"),
    ("kplanes.proposal.hash_log2_table=30", "kplanes.proposal.hash_log2_table must be an integer from 4 to 26"),
    ("kplanes.proposal.hash_max_res=8",
     "kplanes.proposal.hash_max_res must be >= kplanes.proposal.hash_base_res"),
])
def test_bad_values_name_the_override_and_key(tmp_path, override, needle):
    # the mixvoxels section applies to sync-mixvoxels only
    p = write(tmp_path, "a.yaml", "model: {kind: sync-mixvoxels}\n" if override.startswith("mixvoxels.") else "")
    with pytest.raises(ConfigError) as e:
        load_config(p, [override])
    msg = str(e.value)
    assert needle in msg and f"override '{override}'" in msg and "\n" not in msg, msg


def test_bad_value_in_file_names_the_file(tmp_path):
    p = write(tmp_path, "bad.yaml", "train:\n  batch_rays: 512\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: testoptim\.batch_rays \(4096\) must not exceed"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"bad\.yaml: kplanes\.regularizers\.plane_tv"):
        load_config(write(tmp_path, "bad.yaml", "kplanes: {regularizers: {plane_tv: '1e-4'}}\n"))


@pytest.mark.parametrize("overrides", [
    ["kplanes.proposal.samples=[]", "kplanes.proposal.space_res=[]"],
    ["kplanes.proposal.samples=[64, 32]", "kplanes.proposal.space_res=[16]"],
    ["kplanes.proposal.time_res=2", "kplanes.time_res=7", "eval.max_frames=null", "eval.max_frames=3"],
    ["model.bbox=[[-1, -2.5, -3], [1, 2.5, 3]]", "sampling.isg_step=null", "sampling.ist_step=null"],
    ["train.schedule=constant", "train.warmup_steps=0", "offsets.init_mean=-1",
     "kplanes.regularizers.distortion=0"],
    ["train.batch_rays=256", "testoptim.batch_rays=256"],
    ["data.generate={layout: blender, cameras: 4, size: 64x48, offset_sigma: 1.5}", "offsets.start_step=100"],
])
def test_good_values_pass(tmp_path, overrides):
    load_config(write(tmp_path, "a.yaml", ""), overrides)


def test_every_schedule_is_accepted_by_the_schedule_code():
    from taichi_syncnerf.config import SCHEDULES
    from taichi_syncnerf.schedule import make_lr_schedule

    for name in SCHEDULES:
        make_lr_schedule(name, 10, 100)


@pytest.mark.parametrize("preset", ["synthetic/sync-kplanes", "plenoptic/sync-kplanes-hybrid",
                                    "plenoptic/sync-kplanes-explicit", "blender/sync-kplanes-hybrid",
                                    "blender/sync-kplanes-explicit"])
def test_presets_are_valid(preset):
    load_config(preset)


@pytest.mark.parametrize("key", ["train.eval_every", "eval.chunk_rays"])
def test_removed_keys_are_unknown(tmp_path, key):
    section, name = key.split(".")
    with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
        load_config(write(tmp_path, "a.yaml", f"{section}:\n  {name}: 1\n"))
    with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
        load_config(write(tmp_path, "b.yaml", ""), [f"{key}=1"])


def test_old_run_config_with_removed_keys_still_loads(tmp_path):
    old = apply_overrides(DEFAULTS, ["train.steps=7"])
    old["train"]["eval_every"] = None
    old["eval"]["chunk_rays"] = 16384
    cfg = load_resolved(write(tmp_path, "config.yaml", dump_config(old)))
    assert "eval_every" not in cfg["train"] and "chunk_rays" not in cfg["eval"]
    assert cfg["train"]["steps"] == 7


@pytest.mark.parametrize("preset", ["synthetic/sync-mixvoxels", "plenoptic/sync-mixvoxels", "blender/sync-mixvoxels"])
def test_mixvoxels_presets_are_valid_and_start_offsets_at_zero(preset):
    cfg = load_config(preset)
    assert cfg["model"]["kind"] == "sync-mixvoxels"
    assert cfg["offsets"]["init_mean"] == 0.0 and cfg["offsets"]["init_std"] == 0.0


MIXVOXELS = "model: {kind: sync-mixvoxels}\n"


@pytest.mark.parametrize("text,overrides,key,why", [
    (MIXVOXELS + "kplanes: {features: 8}\n", [], "kplanes.features", ""),
    (MIXVOXELS + "kplanes: {proposal: {samples: [8]}}\n", [], "kplanes.proposal.samples", ""),
    (MIXVOXELS + "sampling: {floor: 0.2}\n", [], "sampling.floor", " (its rays are drawn as whole pixel videos)"),
    (MIXVOXELS, ["kplanes.features=8"], "kplanes.features", ""),
    (MIXVOXELS, ["sampling.floor=0.2"], "sampling.floor", " (its rays are drawn as whole pixel videos)"),
    ("kplanes: {features: 8}\n", ["model.kind=sync-mixvoxels"], "kplanes.features", ""),
    ("", ["mixvoxels.width=8"], "mixvoxels.width", ""),
])
def test_keys_of_another_model_kind_are_refused(tmp_path, text, overrides, key, why):
    p = write(tmp_path, "a.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_config(p, overrides)
    kind = "sync-kplanes" if key.startswith("mixvoxels.") else "sync-mixvoxels"
    src = next((f"override '{o}'" for o in overrides if o.startswith(key)), str(p))
    assert str(e.value) == f"{src}: {key} does not apply to model.kind {kind}{why}"


def test_a_kind_refusal_names_the_file_of_the_chain_that_set_the_key(tmp_path):
    write(tmp_path, "base.yaml", "sampling: {isg_step: 100}\n")
    p = write(tmp_path, "child.yaml", "base: base.yaml\n" + MIXVOXELS)
    with pytest.raises(ConfigError, match=r"base\.yaml: sampling\.isg_step does not apply to model\.kind "
                                          r"sync-mixvoxels"):
        load_config(p)


def test_shared_sections_apply_to_every_kind(tmp_path):
    cfg = load_config(write(tmp_path, "a.yaml", MIXVOXELS + "offsets: {init_mean: 0.0}\nmixvoxels: {width: 8}\n"),
                      ["model.bbox=[[-1, -1, -1], [1, 1, 1]]", "train.steps=3", "eval.lpips=false"])
    assert cfg["mixvoxels"]["width"] == 8 and cfg["train"]["steps"] == 3
    assert cfg["kplanes"] == DEFAULTS["kplanes"] and cfg["sampling"] == DEFAULTS["sampling"]


@pytest.mark.parametrize("text,overrides,old,new", [
    ("model:\n  features: 8\n", [], "model.features", "kplanes.features"),
    ("model: {proposal: {samples: [8]}}\n", [], "model.proposal.samples", "kplanes.proposal.samples"),
    ("regularizers: {plane_tv: 0}\n", [], "regularizers.plane_tv", "kplanes.regularizers.plane_tv"),
    ("train: {sampling_floor: 0.1}\n", [], "train.sampling_floor", "sampling.floor"),
    ("offsets: {proposal_grad: false}\n", [], "offsets.proposal_grad", "kplanes.proposal.offsets_grad"),
    ("", ["model.space_res=[8, 16]"], "model.space_res", "kplanes.space_res"),
    ("", ["model.proposal.samples=[]"], "model.proposal.samples", "kplanes.proposal.samples"),
    ("", ["regularizers.distortion=0"], "regularizers.distortion", "kplanes.regularizers.distortion"),
    ("", ["train.isg_step=null"], "train.isg_step", "sampling.isg_step"),
    ("", ["train.early_stop_transmittance=0"], "train.early_stop_transmittance", "kplanes.early_stop_transmittance"),
    ("", ["offsets.proposal_grad=false"], "offsets.proposal_grad", "kplanes.proposal.offsets_grad"),
])
def test_moved_keys_name_their_new_place(tmp_path, text, overrides, old, new):
    p = write(tmp_path, "a.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_config(p, overrides)
    src = f"override '{overrides[0]}'" if overrides else str(p)
    assert str(e.value) == f"{src}: {old} is now {new}"


OLD_RUN_CONFIG = """\
name: old-run
data: {path: data/x, generate: null, downsample: 1, max_frames: null, test_camera: cam00, background: white}
model:
  kind: {kind}
  sync: true
  decoder: explicit
  features: 8
  space_res: [16, 32]
  time_res: 6
  density_hidden: 64
  geo_features: 15
  color_hidden: [64, 64]
  explicit_basis_hidden: 16
  sh_degree: 2
  density_bias: -1.0
  n_samples: 12
  proposal: {encoder: planes, samples: [16], features: 4, space_res: [16], time_res: auto, hidden: 8,
             hash_levels: 8, hash_log2_table: 17, hash_base_res: 16, hash_max_res: 256}
  bbox: null
mixvoxels: {width: 16}
offsets: {lr_scale: 0.1, l1: 1.0e-4, start_step: 0, freeze_step: 50000, init_mean: -0.001, init_std: 0.001,
          proposal_grad: false, init_from_dataset: true}
regularizers: {plane_tv: 0.5, plane_tv_proposal: 2.0e-4, time_smoothness: 1.0e-3, time_smoothness_proposal: 1.0e-5,
               l1_time_planes: 1.0e-4, l1_time_planes_proposal: 1.0e-4, distortion: 0.0, interlevel: 1.0}
train: {steps: 7, batch_rays: 256, lr: 0.01, warmup_steps: 512, schedule: warmup_cosine, seed: 0, isg_step: 3,
        ist_step: null, sampling_floor: 0.25, val_every: 1000, val_frames: 3, val_pixel_stride: 8, log_every: 50,
        checkpoint_every: 2000, early_stop_transmittance: 0.01, eval_every: null}
testoptim: {steps: 1000, lr: 1.0e-3, batch_rays: 256}
eval: {max_frames: null, lpips: true, chunk_rays: 16384}
"""


def test_old_layout_run_config_is_migrated(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    cfg = load_resolved(write(run, "config.yaml", OLD_RUN_CONFIG.replace("{kind}", "sync-kplanes")))
    kp = cfg["kplanes"]
    assert kp["decoder"] == "explicit" and kp["features"] == 8 and kp["space_res"] == [16, 32]
    assert kp["time_res"] == 6 and kp["explicit_basis_hidden"] == 16 and kp["sh_degree"] == 2
    assert kp["n_samples"] == 12 and kp["early_stop_transmittance"] == 0.01
    assert kp["proposal"]["samples"] == [16] and kp["proposal"]["hidden"] == 8
    assert kp["proposal"]["offsets_grad"] is False
    assert kp["regularizers"]["plane_tv"] == 0.5 and kp["regularizers"]["distortion"] == 0.0
    assert cfg["sampling"] == {"isg_step": 3, "ist_step": None, "floor": 0.25}
    assert set(cfg["model"]) == {"kind", "sync", "bbox"} and "regularizers" not in cfg
    assert "proposal_grad" not in cfg["offsets"] and "sampling_floor" not in cfg["train"]
    assert cfg["offsets"]["init_mean"] == -0.001 and cfg["train"]["steps"] == 7
    assert cfg["mixvoxels"]["width"] == 16
    assert list(cfg) == list(DEFAULTS)
    # Sync-MixVoxels started its offsets at 0 whatever offsets.init_* said; the migrated config says so
    mixvoxels = load_resolved(write(run, "config.yaml", OLD_RUN_CONFIG.replace("{kind}", "sync-mixvoxels")))
    assert mixvoxels["offsets"]["init_mean"] == 0.0 and mixvoxels["offsets"]["init_std"] == 0.0


def test_dump_writes_the_shared_sections_and_those_of_the_kind(tmp_path):
    import yaml

    kplanes = yaml.safe_load(dump_config(load_config("synthetic/sync-kplanes")))
    assert "kplanes" in kplanes and "sampling" in kplanes and "mixvoxels" not in kplanes
    cfg = load_config("synthetic/sync-mixvoxels")
    saved = yaml.safe_load(dump_config(cfg))
    assert "mixvoxels" in saved and "kplanes" not in saved and "sampling" not in saved
    assert {"name", "data", "model", "offsets", "train", "testoptim", "eval"} <= set(saved)
    assert load_resolved(write(tmp_path, "config.yaml", dump_config(cfg))) == cfg


def test_a_saved_config_may_hold_sections_of_another_kind(tmp_path):
    cfg = apply_overrides(DEFAULTS, ["model.kind=sync-mixvoxels", "kplanes.features=8", "sampling.floor=0.1"])
    import yaml

    p = write(tmp_path, "config.yaml", yaml.safe_dump(cfg))
    loaded = load_resolved(p)
    assert loaded["kplanes"]["features"] == 8 and loaded["sampling"]["floor"] == 0.1


def test_generate_names_agree_with_the_generator():
    import inspect

    from taichi_syncnerf.config import GENERATE_ENCODINGS, GENERATE_FAMILIES, GENERATE_KEYS
    from taichi_syncnerf.data.synthetic import ENCODINGS, FAMILIES, make_scene

    assert GENERATE_FAMILIES == tuple(FAMILIES) and GENERATE_ENCODINGS == tuple(ENCODINGS)
    params = set(inspect.signature(make_scene).parameters)
    assert set(GENERATE_KEYS) <= params, set(GENERATE_KEYS) - params


def test_every_field_has_a_doc_and_a_rule():
    from taichi_syncnerf.config.schema import iter_fields
    from taichi_syncnerf.config.validate import check, describe

    for key, meta, default in iter_fields():
        assert meta["doc"] and "\n" not in meta["doc"], key
        assert describe(meta), key
        assert check(meta, default), key


def test_empty_section_sets_nothing(tmp_path):
    assert load_config(write(tmp_path, "a.yaml", "train:\nkplanes:\n")) == load_config(write(tmp_path, "b.yaml", ""))
