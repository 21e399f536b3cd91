"""docs/CONFIG.md, generated from the schema: ``python -m taichi_syncnerf.config.docs --write``.

The hand-written prose (how a config is assembled, resume rules, presets, units, and a paragraph
per section where one line per key is not enough) lives here; every key's row (key, default,
allowed values, doc) comes from the dataclasses of :mod:`taichi_syncnerf.config.schema`.
``python -m taichi_syncnerf.config.docs`` prints the page; ``--write`` writes docs/CONFIG.md;
``--check`` exits 1 when docs/CONFIG.md differs. tests/test_config_docs.py runs the check.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from taichi_syncnerf.config.schema import MOVED_KEYS, SECTIONS_OF_KIND, Config, is_section, iter_sections
from taichi_syncnerf.config.validate import describe

COMMAND = "python -m taichi_syncnerf.config.docs --write"
DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md"

HEADER = """\
# Configuration reference

<!-- Generated from taichi_syncnerf/config/schema.py and taichi_syncnerf/config/docs.py by
`{{command}}`: edit those, then run it (tests/test_config_docs.py fails when this page is
stale). -->

Every key a training config can set, with its default, its allowed values and what it does. The
schema (one dataclass per section: defaults, rules and docs) is `taichi_syncnerf/config/schema.py`;
the presets are in `configs/`.

## How a config is assembled

```bash
taichi-syncnerf train CONFIG [-o key.sub=value ...]
```

1. **Defaults**: every key below starts at its default.
2. **The YAML file**: `CONFIG` is a file path, or else a preset name from `configs/` with or without
   `.yaml` (`synthetic/sync-kplanes`, `plenoptic/sync-kplanes-hybrid`, ...). A file may start from
   another one with `base: OTHER.yaml`. `base:` is a file path relative to the folder of the file
   that names it (or absolute), not a preset name. Chains are followed up to 8 levels deep.
3. **Overrides**: each `-o key.sub=value` sets one key, in the order given. The value is parsed as
   YAML: `-o kplanes.space_res=[32,64,128]`, `-o sampling.ist_step=null` (an empty value, `-o
   sampling.ist_step=`, is also null), `-o model.sync=false`. Files and `-o` values are read as YAML
   1.1 (so `yes`/`no` are booleans), except that floats also take the YAML 1.2 forms: `1e-3`,
   `-2E+5` and `1.0e-4` are floats, `2000` is an integer, and `1e` is a string.

Unknown keys are errors that name the file (or the override) and the key, both in files and in
`-o`. A section (`model`, `train`, ...) cannot be set as a whole; set its keys (a section left empty,
`train:` with nothing under it, sets nothing). `data.generate` is the exception (see below). The
merged config is then validated (the rules are the "allowed" column below; an error names the `-o`
that set the bad value, or else the file of the chain that set it) and saved, fully resolved, as
`RUN/config.yaml`. In the rules, an integer is never `true`/`false` or `2.0`, and a number is an
integer or a finite float (not `true`/`false`, `.inf` or `.nan`). The run folder defaults to
`runs/<name>` and `--out` changes it.

`--no-sync` is the same as `-o model.sync=false`.

## Sections of each model kind

{{kinds}}

A key that a config file (or a file of its `base:` chain) or an `-o` sets in a section that does not
apply to `model.kind` is an error, for example `my.yaml: kplanes.features does not apply to
model.kind sync-mixvoxels`. The other sections keep their defaults, unused.

## Saved run configs

After training, the config is read from `RUN/config.yaml`, not from `CONFIG`. It holds the shared
sections and those of the run's model kind; the others take their defaults when it is read.

- `train --resume --out RUN` continues with `RUN/config.yaml` as it is and does not read `CONFIG`.
  `-o` and `--no-sync` are errors with `--resume`.
- `testoptim`, `eval` and `render` also read `RUN/config.yaml`. Before running them you can edit
  the `testoptim` and `eval` keys there. Leave the `model`, `kplanes`, `mixvoxels` and `data` keys
  as they were trained: most of them fix the array shapes the checkpoint must have.
- A `RUN/config.yaml` written by an older version may still hold `train.eval_every` and
  `eval.chunk_rays`, which were never used and are now removed; they are dropped when it is read.
  In a config file or `-o` they are unknown keys.
- A `RUN/config.yaml` of the previous layout, where the K-Planes keys were under `model`, is
  migrated when it is read (the table below); a Sync-MixVoxels run of that layout gets
  `offsets.init_mean: 0` and `offsets.init_std: 0`, the values that model used. In a config file or
  `-o`, a moved key is an error that names its new place: `my.yaml: model.features is now
  kplanes.features`.

{{moved}}

## Presets

| preset | for |
|---|---|
| `synthetic/sync-kplanes` | CPU-sized run on the built-in generated scene: `data/synthetic` is generated on first use (9 cameras, 60 frames, 128x96, offsets drawn from N(0, 3 frames)). 2500 steps, 2048 rays (ISG with a uniform share of `sampling.floor`), 3 scales (32 to 128), one proposal level of 64 samples, IST off, offsets frozen from step 1700, validation every 250 steps at every 4th pixel, 12 evaluation frames. |
| `plenoptic/sync-kplanes-hybrid` | Published Plenoptic Video (N3DV) settings, hybrid decoder, `downsample: 2`, 90000 steps. Give the dataset with `--data`. |
| `plenoptic/sync-kplanes-explicit` | The same with the explicit decoder: 32 features, `plane_tv` 1e-4, 120000 steps. |
| `blender/sync-kplanes-hybrid` | Published Unsynchronized Dynamic Blender settings (box, fox, deer), hybrid decoder: box of ±1.3, white background, stronger time smoothness (1e-2, proposal 1e-3), no distortion loss, 90000 steps. Give the dataset with `--data`. |
| `blender/sync-kplanes-explicit` | The same with the explicit decoder: 32 features, `plane_tv` 1e-4, 120000 steps. |
| `synthetic/sync-mixvoxels` | Sync-MixVoxels sized for 2 CPU cores on the same generated scene as `synthetic/sync-kplanes`: 2000 steps of 512 rays x 60 frames, grids from 32³ to 96³ (upsampled at steps 400, 800, 1200; alpha mask at 600), 32 samples per ray, trunk width 32, 7 time frequencies and a learned time grid of 32 features per frame, the time function and offsets from the first step, offsets frozen from step 1700. |
| `plenoptic/sync-mixvoxels` | Published Sync-MixVoxels Plenoptic settings (coffee_martini): 256³ to 640³ voxels, 10000 steps with the per-frame head then 50000 with the time function and offsets, 1024 rays x 270 frames, `downsample: 2`. Give the dataset with `--data`. |
| `blender/sync-mixvoxels` | Published Unsynchronized Dynamic Blender settings: the same model, box ±1.3, 512 rays, white background. |
| `synthetic/sync-4dgs` | Sync-4DGS sized for 2 CPU cores on the same generated scene (see the preset's comments for its steps and sizes). |
| `plenoptic/sync-4dgs` | 4DGaussians' published DyNeRF settings: 3000 coarse + 14000 fine steps, batches of 4 images at `downsample: 2`, planes 64 x [1, 2] with 16 features and 150 time rows (`auto` at 300 frames), MLP width 128, every delta head, densification 500-10000. Give the dataset (with its `points3d.npy` if it has one) with `--data`. |
| `blender/sync-4dgs` | 4DGaussians' published D-NeRF settings: 3000 + 20000 steps, one image a step, planes 64 x [1, 2] with 32 features, MLP width 64, position, scale and rotation heads, densification 500-15000, opacity reset every 3000, white background. |

The Sync-MixVoxels presets set `offsets.init_mean: 0` and `offsets.init_std: 0`: that model starts
every offset at exactly 0.

## Units

- **Normalised time**: frame `f` of a video with `F` frames is at `t = 0.8 * (2 f / (F - 1) - 1)`,
  so the frames span [-0.8, 0.8] and one frame is `1.6 / (F - 1)` (0.0271 for 60 frames, 0.00535
  for 300). `F` is the frame count after `data.max_frames`. Offsets are learned in these units.
  Logs, `offsets.json` and metrics report them in frames.
- **Steps** are training iterations, counted from 0. A key that acts "from step N" is active
  while `step >= N`.
"""

# Text before a section's table (and after it, for "<section>/after").
SECTION_TEXT = {
    "data": """\
`data.generate` holds the arguments of `make-scene`: `layout` (`n3dv` or `blender`), `family`
(`default`, `static` or `busy`), `encoding` (`default`, `clean` or `noisy`), `cameras` (>= 2;
camera 0 is the test camera), `frames` (>= 2), `size` (`WIDTHxHEIGHT` string, default `128x96`),
`fps`, `offset_sigma` (frames), `seed`, `png` (blender only), `supersample`, `crf` (as
`make-scene`); other keys are errors. Unlike a section, `-o data.generate=null` and `-o
'data.generate={layout: n3dv, cameras: 5}'` replace it whole. `-o data.generate.cameras=5` changes
one key that the mapping already has. In a file with `base:`, a `generate` mapping is merged key
by key into the base's mapping and may only use keys that mapping has.""",
    "model": """\
The keys every model kind reads. `model.kind` chooses the model; `train`, `testoptim`, `eval` and
`render` work the same for both.""",
    "kplanes": """\
Used when `model.kind: sync-kplanes` (Sync-K-Planes; `model.sync: false` gives the K-Planes
baseline): a field of space-time planes at several scales, sampled by proposal levels.

Decoders. `hybrid`: a density MLP gives density and `geo_features` values, and a colour MLP maps
them, together with the spherical harmonics of the view direction, to colour. `explicit`: density
is one linear layer of the plane features, and colour is `sigmoid(sum_f feature_f * basis_{c,f})`
with the basis given by an MLP of the view direction's spherical harmonics. MLP hidden layers use
ReLU; colour uses a sigmoid.""",
    "kplanes.proposal": """\
Proposal levels sample the ray before the radiance field does. Each level is a small density field
with its own encoder and an MLP with one hidden layer. Its weights decide where the next level
samples. The first level samples evenly along the ray (with jitter during training); each later
level, and then the radiance field (`kplanes.n_samples`), resamples from the previous level's
weights.""",
    "kplanes.regularizers": """\
Each value is a loss weight; 0 turns that term off. The plane terms follow K-Planes. The
`_proposal` terms apply to every proposal level's planes, summed over levels; they have no effect
with `kplanes.proposal.encoder: hashgrid`. During `testoptim` the six plane terms are skipped;
distortion and interlevel still apply.""",
    "mixvoxels": """\
Used when `model.kind: sync-mixvoxels` (Sync-MixVoxels; `model.sync: false` gives the MixVoxels
baseline). The defaults are the published Plenoptic settings where this implementation has
them; `configs/synthetic/sync-mixvoxels.yaml` sizes the model for 2 CPU cores. `model.bbox` and
the shared sections apply; `kplanes` and `sampling` do not.

The model (taichi_syncnerf/models/mixvoxels/): vector-matrix (TensoRF) grids over the
box for the static density, static appearance, dynamic density, dynamic appearance and the
variation field. Each training batch is `train.batch_rays` pixels of the training cameras, each
with its temporal mean colour (static target), its blurred temporal std (variation label) and,
for the rays routed dynamic, its colour in every frame. The static branch renders every ray
(L2 to the mean colour); the variation field's per-ray maximum logit is trained with a
positively weighted BCE against `std > std_threshold`; rays with sigmoid(max logit) >
`dynamic_threshold` are dynamic, and along them the samples whose max-pooled logit passes
`sample_threshold`; the dynamic samples are encoded once and rendered for every frame (L2 over
rays x frames x RGB), the others keep their static values. The same routing is used when
rendering. Static density is `density_scale * relu(.)`; the dynamic density uses
`mixvoxels.dynamic_density_activation`; colours use a sigmoid.

Time function: the query of camera k at frame f is `MLP(gamma(t + d_k))` with
`tau = (t + d_k + 0.8) / 1.6` (frame 0 at 0, the last frame at 1, the reference's time range)
and `gamma = [sin(2^l tau), cos(2^l tau)]_{l < time_freqs} / sqrt(time_freqs)` (followed by the
learned time grid's latents when `time_grid > 0`); density `act(<h, z_sigma>)` (`act` per
`dynamic_density_activation`), colour `sigmoid(<h_c, z_c>)`. The per-frame head (the baseline, and
stage 1) learns one query and bias per frame instead. Offsets start at 0 (the presets set
`offsets.init_mean` and `offsets.init_std` to 0), learn at `offsets.lr_scale * train.lr`, with the
L1 penalty and `offsets.start_step` / `offsets.freeze_step` as for K-Planes, and only while the time
function is in use.

`dynamic_density_activation`: with `relu` the dynamic branch can die early in training: on a
white-background capture where most dynamic pixels show the background in most frames, the first
steps push `<h, z> + b` below 0 for every sample and frame, after which no gradient reaches the
dynamic grids, trunks, time function or offsets (measured on the generated Blender-layout scene:
dynamic loss flat from step 25, offsets never move). `softplus` is never flat, so such a density
comes back; the synthetic preset uses it.

`time_grid`: `G` features per frame, read at the fractional frame of `t + d_k` by linear
interpolation (clamped to the video) and appended to `gamma` as the time MLPs' input. At offset 0
a row reads exactly its frame's latent, so each frame can get its own query as in the per-frame
head; the grid is shared by all cameras, and its slope between frames carries a gradient to the
offsets. It learns in the time MLPs' group (`lr_basis * lr_time_scale`), starting at 0.""",
    "mixvoxels/after": """\
Not implemented (the reference has them): plane TV regularisation, the zero-density rule on
dynamic samples, the weight thresholds that skip colour computation, the variation field's
separate training phases (it trains on every step's batch here), and the per-stage restart of
the grid growth.""",
    "gaussians": """\
Used when `model.kind: sync-4dgs` (Sync-4DGS; `model.sync: false` gives the 4DGaussians baseline). The
defaults are 4DGaussians' published DyNeRF (Plenoptic) settings; `configs/synthetic/sync-4dgs.yaml`
sizes the model for 2 CPU cores. `model.bbox` (for the random initial points of a world-space
scene), `offsets`, `train` (steps, seed, schedule, validation, logs, checkpoints), `testoptim` and
`eval` apply; `kplanes`, `mixvoxels` and `sampling` do not. `train.lr` and `train.schedule` only
set the offsets' rate (`train.lr * offsets.lr_scale` times the schedule's factor): the Gaussians and
the deformation follow the exponential decays below; `train.batch_rays` and `testoptim.batch_rays`
are not used (a batch is `batch_images` images; `testoptim` draws them from the test camera).

The model (taichi_syncnerf/models/gaussians/): 3D Gaussians (mean, SH colour, opacity logit,
log-scales, quaternion), rendered by the tile rasterizer kernels/splat.py in the dataset's world
(also for forward-facing captures, which the ray families see in NDC). A training step draws
`batch_images` whole images (or `crop` windows) of the training cameras. The coarse stage
(`static_steps`) trains the Gaussians alone; then the deformation field adds per Gaussian deltas
of the raw values (`deform_heads`), an MLP of the K-Planes features of its canonical mean (in the
initial points' box) and the time `t + d_k` of the view's camera: planes `xy, xz, yz, xt, yt, zt`
at `plane_res * plane_multires` (time `time_res`), `plane_features` per scale, a trunk of
`deform_width` and one head per delta. The offsets learn through the time, from
`offsets.start_step` (set it after `static_steps`: before, they have no gradient). Loss:
`(1 - ssim_weight) L1 + ssim_weight D-SSIM`, plus the plane regularisers in the fine stage (the
K-Planes TV of kernels/plane_regularizers.py; 4DGaussians' own "TV" is a second difference along the
rows) and the offsets' L1. Adam (eps 1e-15) with one group per attribute; the fine stage starts with
a new Adam state for the Gaussians. Density control as 3DGS: see the keys from `densify_from`.

Initial points: the dataset's `points3d.npy` when it has one (`prepare` writes it from its SfM:
positions in the world of the poses, RGB in [0, 1]), else `init_points` random points seen by
random pixels of the training cameras (uniform in disparity between the near and far bounds of a
forward-facing capture, uniform along the ray inside the scene box otherwise), each with its
pixel's colour in frame 0. Scale from the 3 nearest points, opacity `init_opacity`.

The scene extent (3DGS's `cameras_extent`: 1.1 x the largest distance of a training camera from
their mean) scales the means' and the deformation's learning rates and the clone/split and prune
sizes. `taichi-syncnerf export RUN --time F --out X.ply` writes the Gaussians deformed at scene time
F in 3DGS's .ply layout.""",
    "offsets": """\
One time offset `d_k` per camera, in normalised time units: a ray of camera `k` at frame time `t`
queries the field at `t + d_k`. The test camera's offset is held at 0 during training, and with
`model.sync: false` every offset is.""",
    "sampling": """\
Used when `model.kind: sync-kplanes`: the schedule by which its training rays are drawn. Before
`isg_step`, rays are uniform over all pixels and frames of the training cameras; from `isg_step`
they follow ISG weights and from `ist_step` IST weights. ISG and IST weights are computed once
per dataset and `data.downsample`, and cached beside the frame cache. Sync-MixVoxels draws its
rays as whole pixel videos and has no such schedule.

`floor` is the uniform share of every importance-sampled batch: each ray is drawn uniformly over
all pixels and frames of the training cameras with this probability, else from the weights. So
every pixel of every frame has probability at least `floor / (pixels x frames of the training
cameras)`, and a mostly static, clean video (whose static pixels have ISG weight ~0) still trains
its background. Uniform batches (before `isg_step`) are not affected.""",
    "train": """\
Validation (`val_every`): `val_frames` evenly spaced frames of the first training camera and of
the test camera are rendered at every `val_pixel_stride`-th pixel and their PSNR (MSE pooled over
those pixels) is logged as `val_train_psnr` and `val_test_psnr` in `log.jsonl`, shown in the
progress bar and drawn in `training.png`. The test camera is rendered with its current offset,
which training does not optimise. The batch PSNR (`batch_psnr`) is measured on the training batch,
whose rays are importance-sampled, so it over-weights moving pixels; the validation figures weigh
every part of the image by its area.""",
    "testoptim": """\
Used by `taichi-syncnerf testoptim RUN`. The whole model is frozen and only the test camera's
offset is optimised, on rays drawn uniformly from every frame of the test camera. Afterwards the
test camera is evaluated again.

`variation_steps` (Sync-MixVoxels only): the variation field (the static/dynamic routing) is first
retrained on the test camera's video, as the reference does (2000 steps there): its BCE only,
everything else frozen, learning rate from `train.lr` decaying exponentially to a tenth. The
retrained field is used for `testoptim`'s evaluation (`metrics.json`); the checkpoint keeps the
trained one, so `render` and `eval` route with that.""",
    "eval": """\
Used at the end of `train` (unless `--no-eval`), by `eval` and by `testoptim` (before and after).
Two cameras are scored at the same frames: the test camera (`test`) and the first training camera
(`train`).""",
}


def format_value(v) -> str:
    """A default as YAML writes it (``null``, ``true``, ``[64, 128]``, ``2.0e-4``)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            mantissa, exp = f"{v:e}".split("e")
            mantissa = mantissa.rstrip("0")
            return f"{mantissa}0e{int(exp)}" if mantissa.endswith(".") else f"{mantissa}e{int(exp)}"
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    return str(v)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(cls, prefix: str) -> str:
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if is_section(f):
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        rows.append(f"| `{prefix}{f.name}` | `{format_value(default)}` | {_cell(describe(f.metadata))} | "
                    f"{_cell(f.metadata['doc'])} |")
    return "\n".join(rows)


def _kinds_table() -> str:
    shared = [f.name for f in dataclasses.fields(Config) if is_section(f)
              and not any(f.name in names for names in SECTIONS_OF_KIND.values())]
    rows = ["| `model.kind` | its own sections | shared sections |", "|---|---|---|"]
    for kind, names in SECTIONS_OF_KIND.items():
        rows.append(f"| `{kind}` | {', '.join(f'`{n}`' for n in names)} | {', '.join(f'`{n}`' for n in shared)} |")
    return "\n".join(rows)


def _moved_table() -> str:
    rows = ["| previous key | now |", "|---|---|"]
    for old, new in MOVED_KEYS.items():
        star = ".*" if old in ("model.proposal", "regularizers") else ""
        rows.append(f"| `{old}{star}` | `{new}{star}` |")
    return "\n".join(rows)


def render() -> str:
    """The whole of docs/CONFIG.md."""
    header = HEADER.replace("{{command}}", COMMAND).replace("{{kinds}}", _kinds_table())
    parts = [header.replace("{{moved}}", _moved_table()).rstrip("\n")]
    parts.append("## name\n\n" + _table(Config, ""))
    for name, cls in iter_sections():
        block = [f"## {name}"]
        if name in SECTION_TEXT:
            block.append(SECTION_TEXT[name])
        block.append(_table(cls, name + "."))
        if f"{name}/after" in SECTION_TEXT:
            block.append(SECTION_TEXT[f"{name}/after"])
        parts.append("\n\n".join(block))
    return "\n\n".join(parts) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m taichi_syncnerf.config.docs",
                                description="Print (or write, or check) docs/CONFIG.md from the config schema.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help=f"write {DOC_PATH}")
    g.add_argument("--check", action="store_true", help=f"exit 1 when {DOC_PATH} is stale")
    args = p.parse_args(argv)
    text = render()
    if args.write:
        DOC_PATH.write_text(text, encoding="utf-8")
    elif args.check:
        if not DOC_PATH.is_file() or DOC_PATH.read_text(encoding="utf-8") != text:
            print(f"{DOC_PATH} is stale: run `{COMMAND}`", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
