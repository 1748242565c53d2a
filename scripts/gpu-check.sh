#!/usr/bin/env bash
# The first-GPU check, in one command that fits a short lease (about 8 minutes):
#
#   scripts/gpu-check.sh OUTDIR        run it on a CUDA machine; everything lands in OUTDIR
#   scripts/gpu-check.sh --dry-run     on any machine (CI): every command exists and parses
#
# Steps, each under its own deadline so a slow one cannot eat the others' time, each writing
# its output into OUTDIR as it goes (a timeout keeps what finished):
#   1. env.txt           GPU, driver, torch, triton, python
#   2. cuda-tests.*      the CUDA correctness tests of every op (fp32/bf16/fp16, the shared
#      property-tests.*  gradient-layout property test included: its fp32 half runs on the GPU too)
#   3. kernels/          `genbench kernels --quick`: one or two representative shapes per op
#   4. kernels/          the train_step bench (DCGAN, conv VAE, DDPM U-Net; triton vs torch)
#   5. summary.md        pass/fail against the performance targets, with what we expected
#
# It runs from the working tree as it is (no install: genbench finds its kernels/ and
# baselines/ folders itself) and needs only torch, triton, numpy, pandas, scipy, tabulate and
# pytest: the kernel path imports nothing else.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET

DEADLINE_TESTS=${DEADLINE_TESTS:-110}
DEADLINE_PROPERTIES=${DEADLINE_PROPERTIES:-50}
DEADLINE_QUICK=${DEADLINE_QUICK:-210}
DEADLINE_TRAIN=${DEADLINE_TRAIN:-90}

if [ "${1:-}" = "--dry-run" ]; then
  # Every command the real run would start, in a form that needs no GPU: argument parsing,
  # test collection, the selection, the targets' definitions.
  set -e
  "$PY" -m pytest --collect-only -q -p no:cacheprovider -m cuda tests/kernels >/dev/null
  "$PY" -m pytest --collect-only -q -p no:cacheprovider -m "not cuda" tests/kernels/test_op_properties.py >/dev/null
  "$PY" -m genbench kernels --quick --dry-run >/dev/null
  "$PY" -m genbench kernels --ops train_step --dry-run >/dev/null
  "$PY" -m genbench.kernelbench.targets --dry-run
  echo "gpu-check dry run: every command exists and parses"
  exit 0
fi

OUT=${1:?usage: scripts/gpu-check.sh OUTDIR | --dry-run}
mkdir -p "$OUT/kernels"
status=0
step() {  # step NAME SECONDS CMD...: run CMD under a deadline, log to OUT/NAME.log, note the outcome
  local name=$1 seconds=$2
  shift 2
  local start=$SECONDS
  timeout --kill-after=10 "$seconds" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  [ $rc -eq 124 ] && echo "$name: TIMED OUT after ${seconds}s (what finished is kept)" | tee -a "$OUT/steps.txt"
  echo "$name: exit $rc in $((SECONDS - start))s" | tee -a "$OUT/steps.txt"
  [ $rc -eq 0 ] || status=1
}

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1
  "$PY" -c "import platform, torch, triton; print('python', platform.python_version()); print('torch', torch.__version__, 'cuda', torch.version.cuda); print('triton', triton.__version__); print('device', torch.cuda.get_device_name())"
  git rev-parse HEAD 2>/dev/null || echo "no git metadata in this copy"
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

step cuda-tests "$DEADLINE_TESTS" "$PY" -m pytest -q -p no:cacheprovider --junitxml="$OUT/cuda-tests.xml" \
  -m cuda tests/kernels
step property-tests "$DEADLINE_PROPERTIES" "$PY" -m pytest -q -p no:cacheprovider \
  --junitxml="$OUT/property-tests.xml" -m "not cuda" tests/kernels/test_op_properties.py
step kernels-quick "$DEADLINE_QUICK" "$PY" -m genbench kernels --quick --out "$OUT/kernels"
step train-step "$DEADLINE_TRAIN" "$PY" -m genbench kernels --ops train_step --out "$OUT/kernels"

mapfile -t runs < <(find "$OUT/kernels" -name results.jsonl -printf '%h\n' | sort)
if [ ${#runs[@]} -gt 0 ]; then
  "$PY" -m genbench.kernelbench.targets "${runs[@]}" >"$OUT/summary.md" 2>"$OUT/summary.log" || status=1
  cat "$OUT/summary.md"
else
  echo "no kernel timings were recorded: see $OUT/kernels-quick.log" | tee "$OUT/summary.md"
  status=1
fi
exit $status
