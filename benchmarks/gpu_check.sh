#!/usr/bin/env bash
# One command that checks the project on an NVIDIA GPU and prints one JSON line of figures.
#
#   bash benchmarks/gpu_check.sh [--arch cuda|cpu] [--tiny] [--out DIR] [--steps N]
#   bash benchmarks/gpu_check.sh --published [--budget SECONDS] [--arch cuda|cpu] [--tiny] [--out DIR]
#
# 1. every kernel in f32 on --arch against its float64 twin (tests/kernels/test_f32.py with
#    SYNCNERF_F32_ARCH: the plane encoder's atomic backward, the MLP's block sums, the renderer, ...);
# 2. the field benchmark and its PyTorch peer (benchmarks/field.py --arch; the peer runs on the GPU
#    when the installed torch sees one, else on the CPU, and the JSON says which);
# 3. a short training of the synthetic preset (train synthetic/sync-kplanes --arch): steps/s (median
#    of the logged windows after the first, which holds the compilation), peak GPU memory (nvidia-smi,
#    sampled every 0.5 s; Taichi's memory pool included) and peak host memory;
# 4. the Gaussian rasterizer of Sync-4DGS (kernels/splat.py): its f32 check against the float64 twin
#    on --arch (tests/kernels/test_splat_f32.py, errors kept with SYNCNERF_SPLAT_F32_OUT) and its
#    benchmark (benchmarks/splat.py --layout shell, 20,000 Gaussians at 1352x1014): forward and
#    backward of a training frame, the render-only frame (forward(backward=False)) and its frames/s.
#
# Needs the package installed (pip install torch==2.13.0 && pip install -e '.[test]', or a CUDA
# build of torch for a GPU peer). --arch cpu --tiny runs the same steps small enough for a 2-core
# machine (a few minutes); the default sizes (published field, 262,144 samples; 300 training steps
# on the 128x96 scene) are meant for a GPU and stay under 8 minutes there. Outputs are kept in --out
# (default: a new temporary folder). The last line is the JSON; exit status 1 when a check failed.
#
# --published runs the published-size leg instead (benchmarks/scale.py --gpu-published): the
# Plenoptic-size capture (20 cameras x 270 frames at 1352x1014, made on the machine's CPUs), then each
# published Plenoptic preset trained for --budget seconds (default 30) after its first logged window:
# steps/s, peak GPU memory, the whole schedule's projected time beside the paper's 2.0 h / 2.5 h on an
# A6000, and the time of one full-resolution frame; meant to finish in under 8 minutes on a GPU.
set -uo pipefail

ARCH=cuda
TINY=0
OUT=""
STEPS=""
PUBLISHED=0
BUDGET=30
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "error: gpu_check.sh: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) need_value "$@"; ARCH="$2"; shift 2 ;;
        --tiny) TINY=1; shift ;;
        --out) need_value "$@"; OUT="$2"; shift 2 ;;
        --steps) need_value "$@"; STEPS="$2"; shift 2 ;;
        --published) PUBLISHED=1; shift ;;
        --budget) need_value "$@"; BUDGET="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^[^#]/{/^#/p;}' "$0"; exit 0 ;;
        *) echo "error: gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$ARCH" in cuda|cpu) ;; *) echo "error: gpu_check.sh: --arch must be cuda or cpu" >&2; exit 2 ;; esac
case "$STEPS" in ''|*[!0-9]*) [ -z "$STEPS" ] || { echo "error: gpu_check.sh: --steps must be a number" >&2; exit 2; } ;; esac
case "$BUDGET" in ''|*[!0-9.]*|*.*.*|.) echo "error: gpu_check.sh: --budget must be a number of seconds" >&2; exit 2 ;; esac
if [ "$PUBLISHED" = 1 ] && [ -n "$STEPS" ]; then
    echo "error: gpu_check.sh: --steps is for the default checks; --published trains for --budget seconds" >&2; exit 2
fi

cd "$(dirname "$0")/.."
export TI_SKIP_VERSION_CHECK=ON
OUT="${OUT:-$(mktemp -d -t gpu-check-XXXXXX)}"
mkdir -p "$OUT"

if [ "$PUBLISHED" = 1 ]; then
    # one line per preset on stderr, the JSON (name "scale_gpu") last on stdout
    EXTRA=()
    [ "$TINY" = 1 ] && EXTRA+=(--tiny)
    [ "${GPU_CHECK_DRY_RUN:-0}" = 1 ] && { echo "python benchmarks/scale.py --gpu-published --arch $ARCH --budget $BUDGET --threads 0 --out $OUT/published ${EXTRA[*]}"; exit 0; }
    exec python benchmarks/scale.py --gpu-published --arch "$ARCH" --budget "$BUDGET" --threads 0 \
        --out "$OUT/published" "${EXTRA[@]}"
fi
T0=$(date +%s)
say() { echo "[gpu_check $(( $(date +%s) - T0 )) s] $*" >&2; }

if [ "$TINY" = 1 ]; then
    FIELD_ARGS=(--size tiny --samples 16384 --rays 256 --repeats 3)
    SPLAT_ARGS=(--size 128x96 --gaussians 2000 --repeats 2 --threads 1)
    STEPS="${STEPS:-40}"
    TRAIN_ARGS=(-o data.generate.size=48x36 -o data.generate.frames=12 -o data.generate.cameras=4
                -o train.batch_rays=256 -o testoptim.batch_rays=256 -o train.log_every=10)
else
    FIELD_ARGS=(--repeats 5)
    SPLAT_ARGS=(--size 1352x1014 --gaussians 20000 --repeats 5)
    STEPS="${STEPS:-300}"
    TRAIN_ARGS=(-o train.log_every=50)
fi

say "1/4 kernels in f32 on $ARCH"
SYNCNERF_F32_ARCH="$ARCH" SYNCNERF_F32_OUT="$OUT/f32.json" \
    python -m pytest -q -p no:cacheprovider tests/kernels/test_f32.py > "$OUT/f32_tests.txt" 2>&1
F32_RC=$?
tail -n 1 "$OUT/f32_tests.txt" >&2

say "2/4 field benchmark and its PyTorch peer on $ARCH"
python benchmarks/field.py --arch "$ARCH" "${FIELD_ARGS[@]}" > "$OUT/field.txt" 2>&1
FIELD_RC=$?
grep -E "^(Taichi|PyTorch)" "$OUT/field.txt" >&2

say "3/4 training synthetic/sync-kplanes on $ARCH, $STEPS steps"
MEM_PID=""
if command -v nvidia-smi > /dev/null 2>&1; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$OUT/gpu_mem.txt" 2>/dev/null &
    MEM_PID=$!
fi
python - "$OUT" "$ARCH" "$STEPS" "${TRAIN_ARGS[@]}" > "$OUT/train.txt" 2>&1 <<'EOF'
import json, resource, subprocess, sys
out, arch, steps, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
cmd = ["taichi-syncnerf", "train", "synthetic/sync-kplanes", "--arch", arch, "--data", f"{out}/scene",
       "--out", f"{out}/run", "--no-eval", "--quiet", "-o", f"train.steps={steps}", "-o", "train.val_every=null",
       *extra]
rc = subprocess.call(cmd)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
json.dump({"rc": rc, "peak_rss_mib": peak}, open(f"{out}/train_rusage.json", "w"))
sys.exit(rc)
EOF
TRAIN_RC=$?
[ -n "$MEM_PID" ] && kill "$MEM_PID" 2> /dev/null
tail -n 3 "$OUT/train.txt" >&2

say "4/4 Gaussian rasterizer: f32 check and benchmark on $ARCH"
SYNCNERF_F32_ARCH="$ARCH" SYNCNERF_SPLAT_F32_OUT="$OUT/splat_f32.json" \
    python -m pytest -q -p no:cacheprovider tests/kernels/test_splat_f32.py > "$OUT/splat_f32_tests.txt" 2>&1
SPLAT_F32_RC=$?
tail -n 1 "$OUT/splat_f32_tests.txt" >&2
python benchmarks/splat.py --arch "$ARCH" --layout shell "${SPLAT_ARGS[@]}" > "$OUT/splat.txt" 2>&1
SPLAT_RC=$?
grep -E "^(first frame|render only)" "$OUT/splat.txt" >&2

python - "$OUT" "$ARCH" "$F32_RC" "$FIELD_RC" "$TRAIN_RC" "$SPLAT_F32_RC" "$SPLAT_RC" "$(( $(date +%s) - T0 ))" <<'EOF'
import json, os, statistics, sys
out, arch, f32_rc, field_rc, train_rc, splat_f32_rc, splat_rc, seconds = sys.argv[1:]
res = {"name": "gpu_check", "arch_asked": arch, "seconds": int(seconds),
       "f32_kernel_tests": "passed" if f32_rc == "0" else "failed",
       "splat_f32_tests": "passed" if splat_f32_rc == "0" else "failed"}
def load(path):
    try:
        with open(os.path.join(out, path)) as f:
            return f.read()
    except OSError:
        return None
f32 = load("f32.json")
if f32:
    f32 = json.loads(f32)
    res["f32_arch"] = f32["arch"]
    res["f32_max_error"] = {fam: max(errs.values()) for fam, errs in f32["families"].items()}
field = load("field.txt")
if field_rc == "0" and field:
    j = json.loads(field.strip().splitlines()[-1])
    for k in ("arch", "size", "samples", "samples_per_s", "total_ms", "encoder_fwd_ms", "encoder_bwd_ms",
              "torch_device", "torch_samples_per_s", "speedup_vs_torch", "peer_max_rel_diff"):
        if k in j:
            res[f"field_{k}"] = j[k]
else:
    res["field"] = "failed"
log = load("run/log.jsonl")
if train_rc == "0" and log:
    recs = [json.loads(l) for l in log.splitlines() if l.strip()]
    rates = [r["steps_per_s"] for r in recs if "steps_per_s" in r]
    res["train_steps"] = recs[-1]["step"]
    res["train_steps_per_s"] = statistics.median(rates[1:] or rates)
    res["train_first_window_steps_per_s"] = rates[0]
    res["train_final_batch_psnr"] = recs[-1].get("batch_psnr")
else:
    res["train"] = "failed"
ru = load("train_rusage.json")
if ru:
    res["train_peak_host_rss_mib"] = json.loads(ru)["peak_rss_mib"]
splat_f32 = load("splat_f32.json")
if splat_f32:
    splat_f32 = json.loads(splat_f32)
    errs = {k: v for k, v in splat_f32["errors"].items() if k != "mismatch"}
    res["splat_f32_arch"] = splat_f32["arch"]
    if errs:
        worst = max(errs, key=errs.get)
        res["splat_f32_max_error"] = errs[worst]
        res["splat_f32_max_error_of"] = worst
    res["splat_f32_mismatch"] = splat_f32["errors"].get("mismatch")
splat = load("splat.txt")
if splat_rc == "0" and splat:
    j = json.loads(splat.strip().splitlines()[-1])
    for k in ("arch", "gaussians", "layout", "width", "height", "forward_ms", "backward_ms", "first_frame_s",
              "render_only_ms", "render_only_fps", "render_only_first_s", "entries", "mean_walked"):
        if k in j:
            res[f"splat_{k}"] = j[k]
else:
    res["splat"] = "failed"
mem = load("gpu_mem.txt")
if mem:
    vals = [float(v) for v in mem.split() if v.replace(".", "", 1).isdigit()]
    if vals:
        res["train_peak_gpu_mib"] = max(vals)
        res["gpu_mib_before"] = vals[0]
res["outputs"] = out
print(json.dumps(res))
sys.exit(0 if f32_rc == field_rc == train_rc == splat_f32_rc == splat_rc == "0" else 1)
EOF
