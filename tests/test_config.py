import math

import pytest

from taichi_syncnerf.config import DEFAULTS, apply_overrides, dump_config, load_config, load_resolved
from taichi_syncnerf.errors import ConfigError


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_and_overrides(tmp_path):
    p = write(tmp_path, "a.yaml", "train:\n  steps: 10\nmodel:\n  space_res: [8, 16]\n")
    cfg = load_config(p, ["train.lr=0.02", "model.sync=false", "data.path=/x y"])
    assert cfg["train"]["steps"] == 10
    assert cfg["train"]["lr"] == 0.02
    assert cfg["model"]["sync"] is False
    assert cfg["model"]["space_res"] == [8, 16]
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
        ("model:\n  decoder: fancy\n", "model.decoder"),
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
    p = write(tmp_path, "a.yaml", "train: {lr: 1e-3}\nregularizers: {plane_tv: -0E+0, distortion: 5e4}\n"
                                  "name: 1e\n")
    cfg = load_config(p, ["offsets.l1=1e-5", "offsets.init_mean=-2E+5", "data.test_camera=e5",
                          "train.steps=12"])
    assert cfg["train"]["lr"] == 1e-3 and isinstance(cfg["train"]["lr"], float)
    assert cfg["offsets"]["l1"] == 1e-5 and isinstance(cfg["offsets"]["l1"], float)
    assert cfg["offsets"]["init_mean"] == -2e5
    assert cfg["regularizers"]["distortion"] == 5e4 and cfg["regularizers"]["plane_tv"] == 0.0
    assert cfg["train"]["steps"] == 12 and isinstance(cfg["train"]["steps"], int)
    assert cfg["name"] == "1e" and cfg["data"]["test_camera"] == "e5"
    special = apply_overrides(DEFAULTS, ["offsets.l1=.inf", "offsets.init_mean=-.inf", "offsets.init_std=.nan"])
    assert special["offsets"]["l1"] == float("inf") and special["offsets"]["init_mean"] == float("-inf")
    assert math.isnan(special["offsets"]["init_std"])


def test_yaml_1_2_floats_do_not_change_pyyaml():
    import yaml

    assert yaml.safe_load("1e-3") == "1e-3"


@pytest.mark.parametrize("override,needle", [
    ("regularizers.plane_tv=-1.0e-4", "regularizers.plane_tv must be a non-negative number"),
    ("regularizers.interlevel=true", "regularizers.interlevel must be a non-negative number"),
    ("regularizers.distortion=abc", "regularizers.distortion"),
    ("offsets.l1=-1", "offsets.l1 must be a non-negative number"),
    ("offsets.lr_scale=false", "offsets.lr_scale"),
    ("offsets.init_std=-0.1", "offsets.init_std"),
    ("offsets.init_mean=x", "offsets.init_mean must be a number"),
    ("offsets.init_mean=.nan", "offsets.init_mean"),
    ("regularizers.plane_tv=.inf", "regularizers.plane_tv"),
    ("train.lr=0", "train.lr must be a positive number"),
    ("train.lr=true", "train.lr"),
    ("train.batch_rays=0", "train.batch_rays must be a positive integer"),
    ("train.batch_rays=1e3", "train.batch_rays"),
    ("train.warmup_steps=-1", "train.warmup_steps"),
    ("train.warmup_steps=", "train.warmup_steps"),
    ("train.schedule=cosine", "train.schedule must be one of warmup_cosine, constant"),
    ("train.isg_step=-1", "train.isg_step"),
    ("train.ist_step=1.5", "train.ist_step"),
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
    ("model.color_hidden=[]", "model.color_hidden"),
    ("model.color_hidden=[64, 0]", "model.color_hidden"),
    ("model.color_hidden=64", "model.color_hidden"),
    ("model.sh_degree=abc", "model.sh_degree"),
    ("model.features=true", "model.features"),
    ("model.proposal.samples=[64, -1]", "model.proposal.samples"),
    ("model.proposal.samples=64", "model.proposal.samples"),
    ("model.proposal.space_res=[1]", "model.proposal.space_res"),
    ("model.proposal.space_res=[]", "model.proposal.space_res"),
    ("model.proposal.features=0", "model.proposal.features"),
    ("model.proposal.hidden=8.0", "model.proposal.hidden"),
    ("model.proposal.time_res=1", "model.proposal.time_res"),
    ("model.proposal.time_res=half", "model.proposal.time_res"),
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
    ("model.explicit_basis_hidden=0", "model.explicit_basis_hidden"),
    ("model.density_bias=low", "model.density_bias"),
    ("train.seed=1.5", "train.seed"),
    ("train.early_stop_transmittance=1", "train.early_stop_transmittance"),
    ("data.max_frames=1", "data.max_frames"),
    ("model.proposal.hash_levels=0", "model.proposal.hash_levels"),
    ("model.proposal.hash_log2_table=30", "model.proposal.hash_log2_table must be an integer from 4 to 26"),
    ("model.proposal.hash_max_res=8", "model.proposal.hash_max_res must be >= model.proposal.hash_base_res"),
])
def test_bad_values_name_the_override_and_key(tmp_path, override, needle):
    p = write(tmp_path, "a.yaml", "")
    with pytest.raises(ConfigError) as e:
        load_config(p, [override])
    msg = str(e.value)
    assert needle in msg and f"override '{override}'" in msg and "\n" not in msg, msg


def test_bad_value_in_file_names_the_file(tmp_path):
    p = write(tmp_path, "bad.yaml", "train:\n  batch_rays: 512\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: testoptim\.batch_rays \(4096\) must not exceed"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"bad\.yaml: regularizers\.plane_tv"):
        load_config(write(tmp_path, "bad.yaml", "regularizers: {plane_tv: '1e-4'}\n"))


@pytest.mark.parametrize("overrides", [
    ["model.proposal.samples=[]", "model.proposal.space_res=[]"],
    ["model.proposal.samples=[64, 32]", "model.proposal.space_res=[16]"],
    ["model.proposal.time_res=2", "model.time_res=7", "eval.max_frames=null", "eval.max_frames=3"],
    ["model.bbox=[[-1, -2.5, -3], [1, 2.5, 3]]", "train.isg_step=null", "train.ist_step=null"],
    ["train.schedule=constant", "train.warmup_steps=0", "offsets.init_mean=-1", "regularizers.distortion=0"],
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
