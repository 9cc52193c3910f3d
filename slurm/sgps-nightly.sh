#!/usr/bin/env bash
# sgps-nightly.sh — submits tonight's run of a manifest into a dated run folder
# and compares it with the latest earlier night (docs/slurm.md). Called by
# cron (sgps-nightly.cron) or scrontab (sgps-nightly.scrontab).
#
#   sgps-nightly.sh MANIFEST NIGHTLY_ROOT [sgps submit options...]
#
# Tonight's folder is NIGHTLY_ROOT/YYYY-MM-DD (UTC; SGPS_NIGHTLY_DATE
# overrides). The baseline is the latest earlier dated folder holding a
# summary.json (a night that finished its outputs), passed as
# `sgps run --baseline`: a metric that dropped beyond noise ends the job with
# status 5 and is listed in comparison.csv. The job is named sgps-nightly with
# --dependency=singleton: a night starts only once the one before has ended
# (requeues included), so two nights never run at once and the baseline is
# complete. Submitting the same date again resumes that night's folder.
# Each submission appends "date job run_dir baseline" to NIGHTLY_ROOT/history.tsv.
#
# SGPS: the sgps binary (default: sgps in PATH).
set -eu
if [ $# -lt 2 ]; then
  echo "usage: sgps-nightly.sh MANIFEST NIGHTLY_ROOT [sgps submit options...]" >&2
  exit 2
fi
manifest=$1
root=$2
shift 2
sgps=${SGPS:-sgps}
night=${SGPS_NIGHTLY_DATE:-$(date -u +%F)}
case $night in
[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]) ;;
*)
  echo "sgps-nightly.sh: '$night' is not a YYYY-MM-DD date" >&2
  exit 2
  ;;
esac
mkdir -p "$root"
root=$(cd "$root" && pwd -P)
run_dir=$root/$night

baseline=""
for d in "$root"/[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]; do
  [ -f "$d/summary.json" ] || continue
  name=${d##*/}
  if [[ $name < $night ]]; then baseline=$d; fi
done

args=(submit "$manifest" --out "$run_dir" --job-name sgps-nightly --dependency singleton)
if [ -n "$baseline" ]; then args+=(--baseline "$baseline"); fi
if [ -e "$run_dir/status.tsv" ]; then args+=(--resume); fi
job=$("$sgps" "${args[@]}" "$@")
printf '%s\t%s\t%s\t%s\n' "$night" "$job" "$run_dir" "${baseline:--}" >>"$root/history.tsv"
echo "$job"
