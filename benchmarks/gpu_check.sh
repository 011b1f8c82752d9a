#!/usr/bin/env bash
# The one script a session lent a GPU runs first (docs/scale-out.md, "A GPU loan"). It works to a deadline:
# SECONDS is the whole script's time (default 520), each step is cut to what is left of it, and every
# result is a JSON (or CSV) file under OUT_FOLDER, so a 15-minute loan gives all it can.
#
#   bash benchmarks/gpu_check.sh OUT_FOLDER [SECONDS]
#
# In order of value:
# 1. the CUDA tests (tests/test_cuda.py: CUDA against the CPU, bf16 paths);
# 2. the toy benchmark in bf16 on device data at 48 batched members (the 24-seed none/V headline's
#    ensemble), then in fp32 at 8 (seed-steps/s, data share, MFU against the GEMM peak measured in the run);
# 3. the LM benchmark, paper-8m in bf16 at batch 256 and at the trainer's default 32 (tokens/s, MFU);
# 4. the bf16 parity check: none and V on seeds 0-7 in bf16 on device data to 0.95, one batched ensemble,
#    whose steps to 0.95 are set against the fp32 run results/streams/none_V_8seeds;
# 5. torch.compile of the batched toy step against eager (bench_train --compile);
# 6. with 4 minutes or more left, the language-model grid of results/lm/plan.txt: its unfinished runs, 12 at
#    a time; each run's config.json and history.csv under OUT/lm/ are to be copied into results/lm/;
# 7. benchmarks/gpu_summary.py: every target beside its measured value, printed and in OUT/summary.json.
# PY names the Python (default python3), GPU_CHECK_DEVICE the device (default cuda; cpu for a dry run).
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT_FOLDER [SECONDS]}
deadline=$((SECONDS + ${2:-520}))
py=${PY:-python3}
dev=${GPU_CHECK_DEVICE:-cuda}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$out"
left() { echo $((deadline - SECONDS)); }
step() {  # step NAME SECONDS COMMAND...: at most SECONDS and never past the deadline; exit code and time
  local name=$1 limit=$2; shift 2
  [ "$(left)" -lt "$limit" ] && limit=$(left)
  if [ "$limit" -lt 15 ]; then
    printf '{"step": "%s", "skipped": "%d s left"}\n' "$name" "$limit" > "$out/$name.json"
    echo "$name: skipped, $limit s left" >&2
    return
  fi
  local t0=$SECONDS
  timeout --signal=INT --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  printf '{"step": "%s", "exit": %d, "seconds": %d, "limit": %d}\n' "$name" "$rc" $((SECONDS - t0)) "$limit" \
    > "$out/$name.json"
  echo "$name: exit $rc after $((SECONDS - t0)) s (limit $limit)" >&2
}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > "$out/gpu.csv" 2>&1
step cuda_tests 110 "$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py
step bench_train_bf16_48 60 "$py" benchmarks/bench_train.py --device "$dev" --data device --precision bf16 \
  --seeds 48 --steps 30 --arms none,V --out "$out/train_bf16_48.json"
step bench_train_fp32_8 50 "$py" benchmarks/bench_train.py --device "$dev" --data device --seeds 8 --steps 30 \
  --arms none,V --out "$out/train_fp32_8.json"
step bench_lm_bf16_256 60 "$py" benchmarks/bench_lm.py --device "$dev" --model paper-8m --precision bf16 \
  --batch 256 --steps 10 --out "$out/lm_bf16_256.json"
step bench_lm_bf16_32 45 "$py" benchmarks/bench_lm.py --device "$dev" --model paper-8m --precision bf16 \
  --steps 20 --out "$out/lm_bf16_32.json"
# the parity run leaves a minute for the compile benchmark; stopped early, its history says who reached when
step bf16_parity $(($(left) - 60)) "$py" -m amicl transformer compare --streams none,V --seeds 8 --first-seed 0 \
  --eval-size 2000 --probe-size 0 --stop-when-reached --checkpoint-every 1000 --data device --precision bf16 \
  --device "$dev" --threads 1 --out "$out/bf16_parity"
find "$out/bf16_parity" \( -name checkpoint.pt -o -name .lock \) -delete 2>/dev/null
step bench_train_compile 60 "$py" benchmarks/bench_train.py --device "$dev" --data device --seeds 8 --steps 30 \
  --arms none --compile --out "$out/train_compile.json"
lm_plan() {  # the runs not yet finished in the repository, 12 at a time, written under OUT/lm
  while read -r path args; do
    [ -z "$path" ] || [ "${path:0:1}" = "#" ] || grep -q '^4000,' "$path/history.csv" 2>/dev/null && continue
    echo "$out/lm/${path##*/} $args"
  done < results/lm/plan.txt > "$out/plan.txt"
  for w in $(seq 0 11); do
    AMICL="$py -m amicl" DRIVE_ARGS="--device $dev" bash results/lm/drive.sh "$out/plan.txt" "$w" 12 &
  done
  wait
}
if [ "$(left)" -ge 240 ]; then
  step lm_plan "$(left)" bash -c "$(declare -f lm_plan); out=$out py=$py dev=$dev; lm_plan"
  find "$out/lm" \( -name lm.pt -o -name tokenizer.json -o -name .lock \) -delete 2>/dev/null
fi
"$py" benchmarks/gpu_summary.py "$out" >&2  # targets beside the measured values, also in OUT/summary.json
ls -R "$out" | head -50 >&2
