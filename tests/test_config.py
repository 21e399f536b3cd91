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
