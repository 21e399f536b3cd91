"""docs/CONFIG.md is generated from the config schema and must not go stale."""
import difflib

from taichi_syncnerf.config import DEFAULTS
from taichi_syncnerf.config.docs import COMMAND, DOC_PATH, format_value, render
from taichi_syncnerf.config.schema import iter_fields


def test_config_md_is_up_to_date():
    want = render()
    have = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.is_file() else ""
    if have != want:
        diff = "".join(list(difflib.unified_diff(have.splitlines(True), want.splitlines(True), "docs/CONFIG.md",
                                                 "generated", n=1))[:40])
        raise AssertionError(f"docs/CONFIG.md is stale: regenerate it with `{COMMAND}`\n{diff}")


def test_every_key_has_a_row_with_its_default():
    text = render()
    for key, _, default in iter_fields():
        assert f"| `{key}` | `{format_value(default)}` |" in text, key
    assert set(DEFAULTS) == {key.split(".")[0] for key, _, _ in iter_fields()}


def test_defaults_are_written_as_the_config_loader_reads_them():
    from taichi_syncnerf.config.load import _yaml_load

    for v in (None, True, False, 2.0e-4, 1.0e-5, -0.001, 0.5, 25.0, 262144000, [64, 128], "auto", 1e7, -3e-9):
        assert _yaml_load(format_value(v)) == v, (v, format_value(v))
    for _, _, default in iter_fields():
        assert _yaml_load(format_value(default)) == default, default
