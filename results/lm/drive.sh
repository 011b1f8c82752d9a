#!/usr/bin/env bash
# Work through a plan of language-model runs: worker W of N takes every N-th line ("OUT ARGS...") and runs
# `amicl lm train ARGS --threads 1 --out OUT`, resuming a run that has a checkpoint (a finished one returns
# at once), so the same command continues the plan after any stop. Two workers on two cores:
#   bash results/lm/drive.sh results/lm/plan.txt 0 2 &  bash results/lm/drive.sh results/lm/plan.txt 1 2 &
# DRIVE_ARGS adds options to every run (e.g. DRIVE_ARGS="--device cuda" on a lent GPU); AMICL names the
# command where the package is not installed (AMICL="python -m amicl").
# Checkpoints (lm.pt) are not committed, so a session's processes and files end with it: a run whose
# history.csv reaches config.json's last step is finished and skipped (committed or not: a fresh checkout has
# the files without lm.pt); a partial folder without lm.pt starts afresh. DRIVE_UNTIL
# (seconds since the epoch) stops a worker before a run that would not finish by then (DRIVE_RUN_S, default
# 3000 s a run on one core), so no session ends with a half-trained model it cannot keep.
set -u
finished_run() { # history.csv's last row is the run's last step
    python3 -c 'import csv, json, sys
steps = json.load(open(sys.argv[1] + "/config.json"))["lm"]["steps"]
rows = list(csv.DictReader(open(sys.argv[1] + "/history.csv")))
sys.exit(0 if rows and int(rows[-1]["step"]) == steps else 1)' "$1" 2>/dev/null
}
plan=$1 worker=$2 workers=$3
i=0
while read -r out args; do
    [ -z "$out" ] || [ "${out:0:1}" = "#" ] && continue
    i=$((i + 1))
    [ $(((i - 1) % workers)) -ne "$worker" ] && continue
    [ ! -f "$out/lm.pt" ] && finished_run "$out" && continue
    if [ -n "${DRIVE_UNTIL:-}" ] && [ $(($(date +%s) + ${DRIVE_RUN_S:-3000})) -gt "$DRIVE_UNTIL" ]; then
        echo "drive.sh: worker $worker stops before $out: it would not finish by DRIVE_UNTIL" >&2
        break
    fi
    resume=""
    if [ -f "$out/lm.pt" ]; then
        resume="--resume"
    elif [ -d "$out" ]; then
        rm -rf "$out" # a partial run without its checkpoint cannot resume; its history is not committed
    fi
    # shellcheck disable=SC2086
    ${AMICL:-amicl} lm train $args ${DRIVE_ARGS:-} --threads 1 --out "$out" $resume || echo "drive.sh: $out stopped (exit $?)" >&2
done <"$plan"
