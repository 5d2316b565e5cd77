#!/usr/bin/env bash
# Issue 15's GPU suite: one prepared run (<= 8 minutes on an H200) that installs what the device lacks from
# carried wheels, then times SD1.5/SDXL with our DeepCache vs the official helper, profiles one cached step,
# computes the time-share bound, runs a search sample and checks the targets (PASS/MISS).
#
# The device command (a session with a device runs exactly this, in one `run` call):
#   0. here, once: bash benchmarks/fetch_wheels.sh            (fills wheels/, ~21 MB, git-ignored)
#   1. run(command="bash benchmarks/gpu_suite.sh --device cuda", carry=["wheels"], timeout_s=600)
#   What comes back under $OUT (8 files): summary.md, summary.json, suite.log, latency_sd15_b1.json,
#   latency_sd15_b4.json, latency_sdxl.json, step_profile.json, search_sample.json. Copy them to
#   benchmarks/results/gpu_suite_cuda/ and the table of summary.md into benchmarks/README.md.
#
# CPU dry run (same parts, same code paths, tiny model/steps/repeats; a few minutes on 1 thread):
#   PYTHON=.venv/bin/python bash benchmarks/gpu_suite.sh --device cpu --tiny   (PYTHON: a dev env's python)
#   -> benchmarks/results/gpu_suite_dryrun_cpu/
#
# Options: --device cuda|cpu, --tiny, --out DIR (default $OUT, else benchmarks/results/gpu_suite_<...>),
#          --wheels DIR (default wheels), --no-install, --only "part part" (install profile sd15_b1 sd15_b4
#          sdxl search). Each part has a time budget (its own --budget-s and a hard `timeout`); a failed or
#          killed part is recorded (rc in summary.md "Parts") and the suite goes on.
set -u
cd "$(dirname "$0")/.."
REPO=$(pwd)
DEVICE=cuda TINY=0 INSTALL=1 WHEELS=wheels ONLY="" OUTDIR=${OUT:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift ;;
    --tiny) TINY=1 ;;
    --out) OUTDIR=$2; shift ;;
    --wheels) WHEELS=$2; shift ;;
    --no-install) INSTALL=0 ;;
    --only) ONLY=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$OUTDIR" ]; then
  if [ "$TINY" = 1 ]; then OUTDIR=benchmarks/results/gpu_suite_dryrun_${DEVICE%%:*}; else OUTDIR=benchmarks/results/gpu_suite_${DEVICE%%:*}; fi
fi
mkdir -p "$OUTDIR"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$REPO/src:$REPO${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false HF_HUB_DISABLE_PROGRESS_BARS=1
export DIFFUSERS_VERBOSITY=error TRANSFORMERS_VERBOSITY=error
exec > >(tee "$OUTDIR/suite.log") 2>&1

if [ "$TINY" = 1 ]; then
  # Tiny: the embedded 32 px model stands in for SD1.5 and SDXL (arch:sd15 takes ~4 s a step on one CPU core).
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  SD15=embedded SDXL=embedded STEPS=4 FEWER="2" REPEATS=2 ROUNDS=2 THREADS="--threads 1"
  B_PROF=60 B_B1=60 B_B4=40 B_XL=30 S_TIMEOUT=20 S_ARGS="--steps 4 --n-train 2 --n-heldout 2"
  P_ARGS="--repeats 3 --pipe-repeats 2"
else
  SD15=sd15 SDXL=sdxl STEPS=50 FEWER="25 20 10" REPEATS=5 ROUNDS=5 THREADS=""
  # Budgets (s) sum to ~7 min of timing; with model loads and the install the suite ends near 8 minutes.
  B_PROF=45 B_B1=150 B_B4=75 B_XL=60 S_TIMEOUT=120 S_ARGS="--n-train 4 --n-heldout 4 --no-export"
  P_ARGS="--repeats 10 --pipe-repeats 3"
fi
LAT="benchmarks/gpu_latency.py --device $DEVICE --steps $STEPS --repeats $REPEATS --rounds $ROUNDS $THREADS"
LAT="$LAT --warmup 1 --warmup-configs first"
PARTS=()
T0=$(date +%s)

want() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }

# part NAME HARD_LIMIT_S CMD...: run with a hard limit, record NAME:rc:seconds, never stop the suite.
part() {
  local name=$1 limit=$2; shift 2
  want "$name" || return 0
  local t=$(date +%s)
  echo "=== [$(( t - T0 ))s] $name (limit ${limit}s): ${*/#"$PY"/python}"
  if declare -F "$1" >/dev/null; then "$@"; else timeout -k 15 "$limit" "$@"; fi  # functions: no timeout
  local rc=$?
  local dt=$(( $(date +%s) - t ))
  [ $rc -eq 0 ] || echo "=== $name FAILED rc=$rc after ${dt}s"
  PARTS+=(--part "$name:$rc:$dt")
}

echo "# gpu_suite $(date -u +%FT%TZ) device=$DEVICE tiny=$TINY out=$OUTDIR $($PY -V 2>&1) $(git rev-parse --short HEAD 2>/dev/null)"

install() {
  if [ "$INSTALL" = 1 ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    # --no-deps + --target: nothing the device already has (torch above all) is touched or replaced.
    # The wheels are for the device's CPython 3.12; elsewhere (a dry run) install those that fit this Python.
    local tag files=() w
    tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    for w in "$WHEELS"/*.whl; do
      case "$w" in *-none-any.whl|*-"$tag"-*) files+=("$w") ;; *) echo "skipping $w (not for $tag)" ;; esac
    done
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/gpu_suite_site "${files[@]}" || return 1
  else
    echo "no wheels installed (folder $WHEELS empty or --no-install)"
  fi
  "$PY" - <<'EOF'
import importlib, importlib.metadata as md
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
for name in ("diffusers", "transformers", "huggingface_hub", "safetensors", "DeepCache", "optuna", "typer", "rich",
             "yaml", "stlpips_pytorch", "skimage", "matplotlib"):
    importlib.import_module(name)
    dist = {"yaml": "PyYAML", "skimage": "scikit-image", "huggingface_hub": "huggingface-hub"}.get(name, name)
    try:
        print(f"  {name} {md.version(dist)}")
    except md.PackageNotFoundError:
        print(f"  {name} (version unknown)")
import cachesearch
import os
print("  cachesearch", cachesearch.__version__, os.path.relpath(cachesearch.__file__))
EOF
}
[ -d /tmp/gpu_suite_site ] || mkdir -p /tmp/gpu_suite_site
export PYTHONPATH="$REPO/src:$REPO:/tmp/gpu_suite_site${PYTHONPATH#"$REPO/src:$REPO"}"
part install 120 install

# Per-block time shares -> time-share bound; torch.profiler summary of one full and one cached step.
part profile $(( B_PROF + 60 )) "$PY" benchmarks/step_profile.py --device "$DEVICE" --model $SD15 --scheduler pndm \
  --steps $STEPS $P_ARGS $THREADS --interval 5 --branch 0 --out "$OUTDIR/step_profile.json"

# SD1.5 batch 1 on PNDM (the anchor's sampler) and DDIM, full grid; equality vs the helper on DDIM.
part sd15_b1 $(( B_B1 + 90 )) "$PY" $LAT --models $SD15 --schedulers pndm ddim --batch 1 --fewer $FEWER \
  --intervals 2 3 5 --branches 0 1 --budget-s $B_B1 --out "$OUTDIR/latency_sd15_b1.json"

# SDXL 1024 px, N=3 b0 only (its own sampler, Euler), no equality check.
part sdxl $(( B_XL + 120 )) "$PY" $LAT --models $SDXL --schedulers default --batch 1 --fewer --intervals 3 \
  --branches 0 --budget-s $B_XL --skip-equality --out "$OUTDIR/latency_sdxl.json"

# SD1.5 batch 4 on PNDM: the same configurations (fewer steps: one), budget-limited.
part sd15_b4 $(( B_B4 + 60 )) "$PY" $LAT --models $SD15 --schedulers pndm --batch 4 --fewer ${FEWER%% *} \
  --intervals 2 3 5 --branches 0 1 --budget-s $B_B4 --skip-equality --out "$OUTDIR/latency_sd15_b4.json"

# A search sample: `cachesearch run --model arch:sd15 --latency measured --timeout 120 --device cuda`.
SMODEL=arch:sd15; [ "$TINY" = 1 ] && SMODEL=embedded
part search $(( S_TIMEOUT + 150 )) "$PY" benchmarks/search_sample.py --model $SMODEL --device "$DEVICE" \
  --latency measured --timeout $S_TIMEOUT $S_ARGS $THREADS --out "$OUTDIR/search_sample.json"

"$PY" benchmarks/gpu_suite_summary.py "$OUTDIR" "${PARTS[@]}"
echo "=== suite done in $(( $(date +%s) - T0 ))s; files in $OUTDIR:"
ls -la "$OUTDIR"
