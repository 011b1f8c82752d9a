#!/usr/bin/env bash
# Work through a plan of NAMM runs: worker W of N takes every N-th line ("OUT DONE ARGS...") and runs
# `amicl ARGS --threads 1 --out OUT`, skipping a run whose folder holds DONE (a finished eval's file; "-" for an
# evolution or a base model, which resumes from evolution.pkl or base.pt; a finished evolution is skipped), so
# the same command continues the plan after any stop:
#   bash results/namm/drive.sh results/namm/plan.txt 0 1 &
# A line's OUT may be used by later lines ({dir} of an evolution in its evals' --namm).
set -u
finished_evolution() { # history.csv holds every generation of config.json, and best_params.npy (saved last)
    # is not older, or both are committed unchanged (a checkout's times say nothing): resuming would only
    # rewrite the files (and add a session to config.json)
    [ -f "$1/best_params.npy" ] || return 1
    if [ "$1/history.csv" -nt "$1/best_params.npy" ]; then
        git ls-files --error-unmatch "$1/history.csv" "$1/best_params.npy" >/dev/null 2>&1 || return 1
        git diff --quiet HEAD -- "$1/history.csv" "$1/best_params.npy" || return 1
    fi
    python3 -c 'import json, sys
c = json.load(open(sys.argv[1] + "/config.json"))
n = sum(c["evolve"]["generations"]) if c.get("kind") == "namm-evolve" else -1
sys.exit(0 if 0 <= n <= sum(1 for _ in open(sys.argv[1] + "/history.csv")) - 1 else 1)' "$1" 2>/dev/null
}
plan=$1 worker=$2 workers=$3
i=0
while read -r out done args; do
    [ -z "$out" ] || [ "${out:0:1}" = "#" ] && continue
    i=$((i + 1))
    [ $(((i - 1) % workers)) -ne "$worker" ] && continue
    [ "$done" != "-" ] && [ -f "$out/$done" ] && continue
    finished_evolution "$out" && continue
    resume=""
    if [ -f "$out/evolution.pkl" ] || [ -f "$out/base.pt" ]; then resume="--resume"; fi
    # shellcheck disable=SC2086
    ${AMICL:-amicl} $args --threads 1 --out "$out" $resume || echo "drive.sh: $out stopped (exit $?)" >&2
done <"$plan"
