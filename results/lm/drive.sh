#!/usr/bin/env bash
# Work through a plan of language-model runs: worker W of N takes every N-th line ("OUT ARGS...") and runs
# `amicl lm train ARGS --threads 1 --out OUT`, resuming a run that has a checkpoint (a finished one returns
# at once), so the same command continues the plan after any stop. Two workers on two cores:
#   bash results/lm/drive.sh results/lm/plan.txt 0 2 &  bash results/lm/drive.sh results/lm/plan.txt 1 2 &
# DRIVE_ARGS adds options to every run (e.g. DRIVE_ARGS="--device cuda" on a lent GPU); AMICL names the
# command where the package is not installed (AMICL="python -m amicl").
set -u
plan=$1 worker=$2 workers=$3
i=0
while read -r out args; do
    [ -z "$out" ] || [ "${out:0:1}" = "#" ] && continue
    i=$((i + 1))
    [ $(((i - 1) % workers)) -ne "$worker" ] && continue
    resume=""
    [ -f "$out/lm.pt" ] && resume="--resume"
    # shellcheck disable=SC2086
    ${AMICL:-amicl} lm train $args ${DRIVE_ARGS:-} --threads 1 --out "$out" $resume || echo "drive.sh: $out stopped (exit $?)" >&2
done <"$plan"
