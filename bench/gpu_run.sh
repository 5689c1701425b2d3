#!/usr/bin/env bash
# One run on a lent GPU machine (bench/README.md, "On a GPU"): install archdsl next to the
# machine's own torch, run the tests that use the device, then bench/gpu.py. Everything it
# prints also lands in $OUT (tests.log, gpu.md, gpu.json). Needs the lark wheel in .whl/.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
site=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$site" . || exit 1
export PYTHONPATH=$site
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"
# from the repository root, but importing the installed copy (PYTHONPATH) like a user
timeout 300 python3 -P -m pytest -q -p no:cacheprovider tests/test_devices.py \
    "tests/test_torch_persistence.py::test_cuda_matches_cpu" 2>&1 | tee "$OUT/tests.log"
timeout "${BENCH_SECONDS:-420}" python3 bench/gpu.py --json "$OUT/gpu.json" "$@" 2>&1 | tee "$OUT/gpu.md"
