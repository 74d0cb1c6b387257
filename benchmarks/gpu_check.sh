#!/usr/bin/env bash
# Every CUDA path on one GPU machine (H100/H200), in one command, for one short lease:
#   1. the CUDA tests (tests/kernels/test_cuda.py) and the fused/loss tests with CUDA visible;
#   2. benchmarks/bench_fused.py --device cuda: time, × MONAI, extra peak, % of the bandwidth floor,
#      (2, 118, 128³) bf16 included;
#   3. a short `phidice reproduce --device cuda`;
#   4. `torchrun --nproc_per_node=2` of the same when the machine has two GPUs.
# Results go to $OUT (default ./gpu-check-out): log.txt, fused_cuda.md, reproduce/report.md.
#
# The GPU image has torch, triton, numba, scipy, matplotlib, pytest and hypothesis, but not MONAI (the benchmark's
# reference), nibabel or nilearn (the embedded data of reproduce). Bring them as wheels, here, before the lease:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl monai==1.6.1 nibabel nilearn
# and carry `.whl` (this script installs it into /tmp/site). Usage on the GPU machine, from the repo root:
#   bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
status=0
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; "$@" || { echo "=== FAILED: $*"; status=1; }; }

step nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step $PY -c "import torch, triton, phidice; print('torch', torch.__version__, 'triton', triton.__version__, \
'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0), 'GPUs', torch.cuda.device_count())"
step timeout 420 $PY -m pytest -q -x -p no:cacheprovider tests/kernels/test_cuda.py
step timeout 600 $PY -m pytest -q -p no:cacheprovider -n 4 tests/kernels tests/core tests/losses tests/missing
step timeout 600 $PY benchmarks/bench_fused.py --device cuda --repeats 20 --no-benchmarks-md --out "$OUT/fused_cuda.md"
step timeout 420 $PY -m phidice reproduce --device cuda --task binary --batch-sizes 1,2 --images 400 --no-progress \
  --out "$OUT/reproduce"
if [ "$($PY -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  step timeout 420 torchrun --nproc_per_node=2 -m phidice reproduce --device cuda --task binary --batch-sizes 1 \
    --images 400 --no-progress --out "$OUT/reproduce-ddp"
else
  echo "=== one GPU: torchrun --nproc_per_node=2 not run"
fi
echo "=== done, status $status; results in $OUT"
exit $status
