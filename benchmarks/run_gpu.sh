#!/usr/bin/env bash
# Everything a GPU machine without registry access measures in one go, from the repository
# root, results under $OUT (default ./gpu-out). Prepared and checked on CPU (DEVICE=cpu).
#
#   on a machine with network access, once:  benchmarks/fetch_gpu_wheels.sh   (fills .whl/)
#   on the GPU machine, with .whl/ copied:   bash benchmarks/run_gpu.sh
#
# Steps, each under its own timeout, all inside DEADLINE_S (default 540 s):
#   1. install the carried wheels (--no-deps, into /tmp/site; nothing large, no network);
#   2. benchmarks/bench_reproduce_gpu.py: IMAGES (default 1000) COCO-shaped images generated
#      on the machine's cores, every size's evaluation (both weight sets' test settings, stage
#      timing, the earlier evaluation loop on 200 images of tiny and x), then latency (eager
#      CUDA graph vs torch-compile, FP16 and FP32, same-run reference conv) as the budget
#      allows; the full table projected to 5,000 images x 2 weight sets. JSON written as it goes;
#   3. the GPU tests of evaluation and torch-compile (pytest -m gpu, a selection);
#   4. `rtmbench run benchmarks/suites/reproduce-generated.yaml`: the reproduce suite's units on
#      those generated images with seeded well-conditioned weights (box AP planned on cuda by
#      device auto, every latency backend, the accuracy of each timed artifact), its plan first,
#      then its report (results.md);
#   5. `rtmbench run gpu` with whatever time is left (records appended unit by unit).
# Files back (at most 8): reproduce-gpu-<gpu>.json, run_gpu.log, pytest-gpu.log,
# reproduce-generated.jsonl, results-generated.md, run-gpu.jsonl, nvidia-smi.txt, packages.txt.
#
# Environment knobs: IMAGES, BENCH_BUDGET_S (default 240), DEADLINE_S (540), SIZES
# ("tiny x s m l"), PYTEST_S (90), REPRODUCE_S (150), EXTRA_BENCH_ARGS, DEVICE (cuda; cpu runs
# the same steps as a check), PYTHON (python3), NO_WHEELS=1 (use the interpreter's packages).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
LOG="$OUT/run_gpu.log"
exec > >(tee -a "$LOG") 2>&1
IMAGES=${IMAGES:-1000}
BENCH_BUDGET_S=${BENCH_BUDGET_S:-240}
DEADLINE_S=${DEADLINE_S:-540}
SIZES=${SIZES:-"tiny x s m l"}
PYTEST_S=${PYTEST_S:-90}
REPRODUCE_S=${REPRODUCE_S:-150}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
left() { echo $((DEADLINE_S - SECONDS)); }
step() { echo; echo "=== [$(date +%H:%M:%S), ${SECONDS}s of ${DEADLINE_S}s] $*"; }

step "1. packages"
export PYTHONPATH="$PWD/src:$PWD"
if [ -z "${NO_WHEELS:-}" ] && compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo "installing the carried wheels failed"; exit 1; }
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
"$PY" - <<'EOF' || { echo "a package is missing: run benchmarks/fetch_gpu_wheels.sh here and carry .whl"; exit 3; }
import importlib
for name in ("torch", "torchvision", "triton", "numpy", "cv2", "yaml", "pydantic",
             "pydantic_settings", "mmengine", "pycocotools", "faster_coco_eval", "tqdm",
             "filelock", "rtmbench"):
    module = importlib.import_module(name)
    print(f"{name} {getattr(module, '__version__', '')}")
import torch
print("cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
EOF
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,power.draw \
    --format=csv >> "$OUT/nvidia-smi.txt" 2>&1
"$PY" -m pip list 2>/dev/null > "$OUT/packages.txt"
nproc; free -g | head -2

step "2. benchmark (budget ${BENCH_BUDGET_S}s, ${IMAGES} images)"
# shellcheck disable=SC2086  # SIZES and EXTRA_BENCH_ARGS are word lists
timeout --signal=INT --kill-after=15 $((BENCH_BUDGET_S + 90)) \
    "$PY" benchmarks/bench_reproduce_gpu.py --device "$DEVICE" --images "$IMAGES" \
    --sizes $SIZES --budget-s "$BENCH_BUDGET_S" --out "$OUT/" --data /tmp/rtmbench-coco \
    ${EXTRA_BENCH_ARGS:-}
echo "benchmark exit code $?"

step "3. GPU tests"
t=$(( $(left) - 60 < PYTEST_S ? $(left) - 60 : PYTEST_S ))
if [ "$t" -gt 30 ]; then
    timeout --kill-after=10 "$t" "$PY" -m pytest -q -p no:cacheprovider -m gpu -s -x \
        tests/test_evaluation_gpu.py \
        "tests/test_latency_gpu.py::test_cuda_graph_replay_matches_eager" \
        "tests/test_latency_gpu.py::test_torch_compile_cuda_reduce_overhead" \
        > "$OUT/pytest-gpu.log" 2>&1
    echo "pytest exit code $? (log: pytest-gpu.log)"; tail -5 "$OUT/pytest-gpu.log"
else
    echo "skipped: ${t}s left for it"
fi

step "4. the reproduce suite on the generated images (well-conditioned weights)"
t=$(( $(left) - 90 < REPRODUCE_S ? $(left) - 90 : REPRODUCE_S ))
if [ "$t" -gt 30 ] && [ -f /tmp/rtmbench-coco/annotations/instances_val2017.json ]; then
    rm -rf /tmp/rtmbench-results
    RTMBENCH_COCO=/tmp/rtmbench-coco timeout --signal=INT --kill-after=10 "$t" \
        "$PY" -m rtmbench run benchmarks/suites/reproduce-generated.yaml \
        --run-id reproduce-generated --results-dir /tmp/rtmbench-results --no-progress
    echo "rtmbench run reproduce-generated exit code $? (continue with --resume)"
    cp /tmp/rtmbench-results/reproduce-generated.jsonl "$OUT/" 2>/dev/null
    "$PY" -m rtmbench report reproduce-generated --only --results-dir /tmp/rtmbench-results \
        --out-dir /tmp/rtmbench-report --suite benchmarks/suites/reproduce-generated.yaml \
        && cp /tmp/rtmbench-report/results.md "$OUT/results-generated.md"
else
    echo "skipped: ${t}s left for it, or no generated images (step 2 failed?)"
fi

step "5. rtmbench run gpu"
t=$(( $(left) - 10 ))
if [ "$t" -gt 30 ]; then
    timeout --signal=INT --kill-after=10 "$t" "$PY" -m rtmbench run gpu --run-id gpu \
        --results-dir /tmp/rtmbench-results --no-progress
    echo "rtmbench run gpu exit code $? (interrupted runs continue with --resume gpu)"
    cp /tmp/rtmbench-results/gpu.jsonl "$OUT/run-gpu.jsonl" 2>/dev/null
else
    echo "skipped: ${t}s left for it"
fi
step "done"
ls -la "$OUT"
