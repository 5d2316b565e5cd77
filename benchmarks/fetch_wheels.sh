#!/usr/bin/env bash
# Download the wheels the GPU device machine lacks into a git-ignored folder (default wheels/), for its Python
# (3.12, x86-64, per the device docs' KINDS.md). The device already has torch, transformers, safetensors,
# huggingface-hub, numpy, pyyaml, rich, typer, scikit-image, matplotlib, pillow, requests, tqdm, zipp and
# typing-extensions; it has no internet. benchmarks/gpu_suite.sh installs these with --no-deps, so torch is
# never replaced.
#
#   bash benchmarks/fetch_wheels.sh [DIR]
#
# Left out on purpose: ray (the suite's search uses the local executor), lpips (its AlexNet backbone needs a
# torchvision download the device cannot make; the metric falls back to stlpips-alex), and the 59 MB VGG
# weights inside stlpips-pytorch (cachesearch reads only alex_shift_tolerant.pth from it): the wheel is
# re-zipped without them so the carried tree stays under the 64 MiB limit.
set -euo pipefail
DIR=${1:-wheels}
PY=${PYTHON:-python3}
mkdir -p "$DIR"
PLAT=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
"$PY" -m pip download -q --no-deps "${PLAT[@]}" -d "$DIR" \
  diffusers==0.42.1 DeepCache==0.1.1 importlib_metadata==8.7.0 \
  optuna==5.0.0 alembic==1.20.1 colorlog==6.12.0 SQLAlchemy==2.1.9 Mako==1.4.3 \
  stlpips_pytorch==0.0.2
"$PY" - "$DIR" <<'EOF'
import sys, zipfile
from pathlib import Path

d = Path(sys.argv[1])
for whl in d.glob("stlpips_pytorch-*.whl"):
    with zipfile.ZipFile(whl) as z:
        names = z.namelist()
        if not any("vgg_shift_tolerant" in n for n in names):
            continue
        items = {n: z.read(n) for n in names if "vgg_shift_tolerant" not in n}
    rec = next(n for n in items if n.endswith(".dist-info/RECORD"))
    items[rec] = b"".join(line + b"\n" for line in items[rec].splitlines() if b"vgg_shift_tolerant" not in line)
    tmp = whl.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for n, data in items.items():
            z.writestr(n, data)
    tmp.replace(whl)
    print(f"slimmed {whl.name} (VGG weights dropped)")
EOF
du -sh "$DIR"
ls "$DIR"
