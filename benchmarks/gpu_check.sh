#!/usr/bin/env bash
# The one script a session lent a GPU runs first (docs/scale-out.md, "A GPU loan"): every step bounded in
# time, every result a JSON (or CSV) file under one folder, so a loan of 15 minutes gives all it can.
#
#   bash benchmarks/gpu_check.sh OUT_FOLDER [SECONDS_FOR_THE_LONG_STEP]
#
# 1. the CUDA tests (tests/test_cuda.py: CUDA against the CPU, bf16 paths);
# 2. the toy and LM benchmarks on the device (seed-steps/s, tokens/s, achieved FLOP/s beside the
#    device's measured matmul rate);
#    in fp32 and in bf16, each with the device's GEMM peak per precision and the MFU against it;
# 3. the bf16 parity check: none and V on seeds 0-7 in bf16 to 0.95 (half of the long step's time), whose
#    steps to 0.95 are set against the fp32 run results/streams/none_V_8seeds (`amicl tables`' savings);
# 4. the longest experiment that fits: the language-model grid of results/lm/plan.txt (IOI dose-response
#    and iso-loss) in its priority order, 12 runs at a time on the device; each run's config.json and
#    history.csv come back under OUT/lm/ (checkpoints are dropped), to be copied into results/lm/.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT_FOLDER [SECONDS_FOR_THE_LONG_STEP]}
long=${2:-300}
mkdir -p "$out"
amicl=(python -c "from amicl.cli import main; main()")
step() {  # step NAME SECONDS COMMAND...: run with a time limit, record its exit code and duration
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout --signal=INT "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  printf '{"step": "%s", "exit": %d, "seconds": %d, "limit": %d}\n' "$name" "$rc" $((SECONDS - t0)) "$limit" \
    > "$out/$name.json"
  echo "$name: exit $rc after $((SECONDS - t0)) s" >&2
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv" 2>&1
step cuda_tests 240 python -m pytest -q -p no:cacheprovider tests/test_cuda.py
step bench_train 150 python benchmarks/bench_train.py --device cuda --compile --out "$out/train_cuda.json"
step bench_train_device_data 60 python benchmarks/bench_train.py --device cuda --data device --arms none,V \
  --out "$out/train_cuda_device_data.json"
step bench_train_bf16 90 python benchmarks/bench_train.py --device cuda --precision bf16 --arms none,V \
  --out "$out/train_cuda_bf16.json"
step bench_lm 120 python benchmarks/bench_lm.py --device cuda --model paper-8m --out "$out/lm_cuda.json"
step bench_lm_bf16 120 python benchmarks/bench_lm.py --device cuda --model paper-8m --precision bf16 \
  --out "$out/lm_cuda_bf16.json"
step bf16_parity $((long / 2)) "${amicl[@]}" transformer compare --streams none,V --seeds 8 --first-seed 0 \
  --group-size 1 --executor process --workers 8 --eval-size 2000 --stop-when-reached --checkpoint-every 1000 \
  --precision bf16 --device cuda --threads 1 --out "$out/bf16_parity"
find "$out/bf16_parity" \( -name checkpoint.pt -o -name .lock \) -delete 2>/dev/null
lm_plan() {
  # the runs not yet finished in the repository, written under OUT/lm
  while read -r path args; do
    [ -z "$path" ] || [ "${path:0:1}" = "#" ] || grep -q '^4000,' "$path/history.csv" 2>/dev/null && continue
    echo "$out/lm/${path##*/} $args"
  done < results/lm/plan.txt > "$out/plan.txt"
  for w in $(seq 0 11); do
    AMICL="python -m amicl" DRIVE_ARGS="--device cuda" bash results/lm/drive.sh "$out/plan.txt" "$w" 12 &
  done
  wait
}
step lm_plan "$long" bash -c "$(declare -f lm_plan); out=$out; lm_plan"
find "$out/lm" \( -name lm.pt -o -name tokenizer.json -o -name .lock \) -delete 2>/dev/null
ls -R "$out" | head -50 >&2
