#!/usr/bin/env bash
# Work through a plan of NAMM runs: worker W of N takes every N-th line ("OUT DONE ARGS...") and runs
# `amicl ARGS --threads 1 --out OUT`, skipping a run whose folder holds DONE (a finished eval's file; "-" for an
# evolution or a base model, which resumes from evolution.pkl or base.pt and returns at once when finished), so
# the same command continues the plan after any stop:
#   bash results/namm/drive.sh results/namm/plan.txt 0 1 &
# A line's OUT may be used by later lines ({dir} of an evolution in its evals' --namm).
set -u
plan=$1 worker=$2 workers=$3
i=0
while read -r out done args; do
    [ -z "$out" ] || [ "${out:0:1}" = "#" ] && continue
    i=$((i + 1))
    [ $(((i - 1) % workers)) -ne "$worker" ] && continue
    [ "$done" != "-" ] && [ -f "$out/$done" ] && continue
    resume=""
    if [ -f "$out/evolution.pkl" ] || [ -f "$out/base.pt" ]; then resume="--resume"; fi
    # shellcheck disable=SC2086
    ${AMICL:-amicl} $args --threads 1 --out "$out" $resume || echo "drive.sh: $out stopped (exit $?)" >&2
done <"$plan"
