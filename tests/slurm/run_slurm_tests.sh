#!/usr/bin/env bash
# run_slurm_tests.sh — tests of sgps under a live Slurm cluster (slurm/cluster-up):
# the batch script slurm/sgps.sbatch, its drain-requeue-resume cycle,
# `sgps submit` and the nightly script, over a world from sg_pipeline_fixture.
#   run_slurm_tests.sh CASE SGPS FIXTURE SOURCE_DIR WORKDIR
# CASE: run | requeue | submit | nightly
# Runs only with SG_SLURM_TESTS=1 (else exit 77: CTest reports it skipped).
# Every job uses 2 tasks on one node; the first failure exits 1.
set -eu
case_name=$1 SGPS=$2 FIXTURE=$3 SRC=$4 WORK=$5

if [ "${SG_SLURM_TESTS:-0}" != 1 ]; then
  echo "skipped: set SG_SLURM_TESTS=1 with a cluster up (slurm/cluster-up)"
  exit 77
fi
export OPENBLAS_NUM_THREADS=1
unset SGPS_TEST_BATCH_DELAY_MS SLURM_JOB_ID SLURM_RESTART_COUNT

fail() {
  echo "FAIL [slurm $case_name]: $*" >&2
  exit 1
}
ok() { echo "ok: $*"; }
t0=$(date +%s)
elapsed() { echo "$(($(date +%s) - t0)) s"; }

command -v sbatch >/dev/null || fail "sbatch not in PATH: install Slurm and run slurm/cluster-up"
sinfo -h -o '%T' >/dev/null 2>&1 || fail "no Slurm controller answers: run slurm/cluster-up first"

rm -rf "$WORK" && mkdir -p "$WORK" || fail "cannot create $WORK"
cd "$WORK"
WORK=$(pwd -P)
SGPS=$(readlink -f "$SGPS")
"$FIXTURE" w >fixture.log 2>&1 || fail "fixture"
M=$WORK/w/manifest.json

outputs() { (cd "$1" && find tasks summary.json summary.csv report.html -type f 2>/dev/null | sort); }
same_outputs() {
  [ -f "$1/summary.json" ] && [ -f "$2/summary.json" ] || fail "$1 or $2 has no summary.json"
  [ "$(outputs "$1")" = "$(outputs "$2")" ] || fail "file lists differ between $1 and $2"
  for f in $(outputs "$1"); do cmp -s "$1/$f" "$2/$f" || fail "$f differs between $1 and $2"; done
}
status_count() { awk -F'\t' -v s="$2" 'NR > 1 && $3 == s' "$1/status.tsv" | wc -l; }
verify_run() { # verify_run DIR: a complete run of the fixture's 10 units
  for f in run.json status.tsv summary.json summary.csv report.html; do [ -s "$1/$f" ] || fail "missing $1/$f"; done
  [ "$(status_count "$1" ok)" -eq 10 ] || fail "$1/status.tsv: expected 10 ok units, got: $(cut -f3 "$1/status.tsv" | sort | uniq -c | tr '\n' ' ')"
  [ -z "$(find "$1" -name '*.tmp.*')" ] || fail "temporary files left in $1"
}

# fill DIR [VAR=VALUE...]: slurm/sgps.sbatch filled as sgps submit would
# (2 tasks, 1 node), written to DIR/sgps.sbatch.
fill() {
  local dir=$1 partition="" tlimit="10:00" dependency="" baseline="" resume=0 requeues=3
  shift
  local kv
  for kv in "$@"; do eval "${kv%%=*}=\${kv#*=}"; done
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  sed -e "s#@JOB_NAME@#sgps-test#; s#@PARTITION@#$partition#; s#@TIME@#$tlimit#; s#@DEPENDENCY@#$dependency#" \
    -e "s#@NODES@#1#; s#@NTASKS_PER_NODE@#2#; s#@NTASKS@#2#; s#@RUN_DIR@#$dir#g; s#@SGPS@#$SGPS#" \
    -e "s#@MANIFEST@#$M#; s#@BASELINE@#$baseline#; s#@LAUNCHER@#srun#; s#@MAX_REQUEUES@#$requeues#; s#@RESUME@#$resume#" \
    -e '/^#SBATCH .*=$/d' "$SRC/slurm/sgps.sbatch" >"$dir/sgps.sbatch"
  ! grep -q '@[A-Z_]*@' "$dir/sgps.sbatch" || fail "placeholder left in $dir/sgps.sbatch"
}

job_field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
# wait_job JOB SECONDS: until the job ended; prints its final state.
wait_job() {
  local j=$1 s=""
  for _ in $(seq 1 $(($2 * 4))); do
    s=$(job_field "$j" JobState)
    case $s in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED)
      echo "$s"
      return 0
      ;;
    esac
    sleep 0.25
  done
  scancel "$j" 2>/dev/null || true
  fail "job $j not finished after $2 s (state '${s:-gone}')"
}
expect_done() { # expect_done JOB DIR SECONDS: finished with exit 0
  local st
  st=$(wait_job "$1" "$3")
  [ "$st" = COMPLETED ] && [ "$(job_field "$1" ExitCode)" = 0:0 ] ||
    { cat "$2/slurm-$1.out" >&2 2>/dev/null; fail "job $1: $st, exit $(job_field "$1" ExitCode) (expected COMPLETED 0:0)"; }
}

case $case_name in
run)
  fill r
  j=$(sbatch --parsable r/sgps.sbatch) || fail "sbatch refused slurm/sgps.sbatch"
  expect_done "$j" r 90
  verify_run r
  grep -q '"SLURM_JOB_ID":[[:space:]]*"'"$j"'"' r/run.json || fail "run.json lacks the job id $j"
  grep -q '"ranks":[[:space:]]*2' r/run.json || fail "run.json: expected 2 ranks (srun --mpi=pmix)"
  grep -q 'sgps run exited 0' "r/slurm-$j.out" || fail "job output lacks the exit line"
  ok "sbatch slurm/sgps.sbatch: job $j, 2 ranks, 10 units ok ($(elapsed))"
  ;;
requeue)
  fill ref
  j=$(sbatch --parsable ref/sgps.sbatch) || fail "sbatch (reference)"
  expect_done "$j" ref 90
  verify_run ref
  fill q
  k=$(SGPS_TEST_BATCH_DELAY_MS=300 sbatch --parsable q/sgps.sbatch) || fail "sbatch (to interrupt)"
  for _ in $(seq 1 240); do
    [ "$(find q/parts -name '*.part' 2>/dev/null | wc -l)" -ge 2 ] && break
    sleep 0.25
  done
  [ "$(find q/parts -name '*.part' 2>/dev/null | wc -l)" -ge 2 ] || fail "job $k wrote no 2 part files in 60 s"
  scancel --signal=USR1 --batch "$k" || fail "scancel --signal=USR1 --batch $k"
  for _ in $(seq 1 120); do
    [ "$(job_field "$k" Restarts)" = 1 ] && break
    sleep 0.25
  done
  [ "$(job_field "$k" Restarts)" = 1 ] || fail "job $k was not requeued after USR1: $(cat "q/slurm-$k.out")"
  expect_done "$k" q 120
  log=q/slurm-$k.out
  grep -q 'sgps run exited 4 .*(after USR1)' "$log" || fail "$log: the first run did not drain with exit 4"
  grep -q "requeueing job $k" "$log" || fail "$log: no requeue"
  grep -q 'restart 1 .*--resume' "$log" || fail "$log: the requeued run was not started with --resume"
  grep -q 'sgps run exited 0' "$log" || fail "$log: the resumed run did not exit 0"
  verify_run q
  n=$(grep -c 'from an earlier run' q/status.tsv || true)
  [ "$n" -ge 1 ] && [ "$n" -lt 10 ] || fail "q/status.tsv: expected some units kept from the drained run, got $n"
  grep -q '"SLURM_RESTART_COUNT":[[:space:]]*"1"' q/run.json || fail "run.json lacks SLURM_RESTART_COUNT 1"
  same_outputs ref q
  ok "USR1 drained job $k after $n units, requeued, resumed: outputs identical to job $j ($(elapsed))"
  ;;
submit)
  # the built-in template is slurm/sgps.sbatch
  "$SGPS" submit "$M" --dry-run --max-nodes 1 --ntasks-per-node 2 --time 10:00 --max-requeues 3 --job-name sgps-test \
    --out "$WORK/d" >dry.sbatch 2>dry.err || fail "submit --dry-run: $(cat dry.err)"
  fill d
  cmp -s dry.sbatch d/sgps.sbatch ||
    { diff dry.sbatch d/sgps.sbatch >&2; fail "the template built into sgps differs from slurm/sgps.sbatch"; }
  rm -rf d
  "$SGPS" submit "$M" --dry-run --out "$WORK/d" >dry2.sbatch 2>/dev/null || fail "submit --dry-run (default sizing)"
  [ ! -e d ] || fail "--dry-run created the run folder"
  c=$(getconf _NPROCESSORS_ONLN)
  grep -qx '#SBATCH --ntasks=10' dry2.sbatch || fail "10 units: expected 10 ranks (every rank works)"
  grep -qx "#SBATCH --nodes=$(((10 + c - 1) / c))" dry2.sbatch || fail "10 units, $c cores: expected ceil(10/$c) nodes"
  ! grep -qE '^#SBATCH --(partition|time|dependency)=' dry2.sbatch || fail "empty options must drop their #SBATCH lines"
  "$SGPS" submit "$M" --dry-run --max-nodes 2 --ntasks-per-node 3 --partition p1 --out "$WORK/d" >dry3.sbatch 2>/dev/null
  grep -qx '#SBATCH --nodes=2' dry3.sbatch && grep -qx '#SBATCH --ntasks=6' dry3.sbatch &&
    grep -qx '#SBATCH --ntasks-per-node=3' dry3.sbatch && grep -qx '#SBATCH --partition=p1' dry3.sbatch ||
    fail "--max-nodes 2 --ntasks-per-node 3: expected 2 nodes, 6 ranks, partition p1"
  set +e
  "$SGPS" submit "$M" --bogus >/dev/null 2>&1
  [ $? -eq 2 ] || fail "bad option: expected exit 2"
  env PATH=/nonexistent "$SGPS" submit "$M" --max-nodes 1 --out "$WORK/nos" >nos.out 2>nos.err
  [ $? -eq 1 ] || fail "without sbatch: expected exit 1"
  grep -q 'sbatch was not found in PATH' nos.err || fail "without sbatch: unclear message: $(cat nos.err)"
  "$SGPS" submit "$M" --max-nodes 1 --partition no-such-partition --out "$WORK/bad" >bad.out 2>bad.err
  [ $? -eq 1 ] || fail "unknown partition: expected exit 1"
  set -e
  grep -q 'sbatch: error: .*[Pp]artition' bad.err || fail "sbatch's own message not shown: $(cat bad.err)"
  grep -q 'sbatch refused the job' bad.err || fail "refusal not explained: $(cat bad.err)"
  [ ! -s bad.out ] || fail "a refused submission printed a job id"
  j=$("$SGPS" submit "$M" --max-nodes 1 --ntasks-per-node 2 --time 10:00 --out "$WORK/s" 2>submit.err) ||
    fail "sgps submit: $(cat submit.err)"
  [[ $j =~ ^[0-9]+$ ]] || fail "sgps submit printed '$j', not a job id"
  [ -s s/sgps.sbatch ] || fail "the script was not written into the run folder"
  expect_done "$j" s 90
  verify_run s
  [ "$(job_field "$j" NumTasks)" = 2 ] || fail "job $j: expected 2 tasks, got $(job_field "$j" NumTasks)"
  ok "sgps submit: job $j finished, 2 tasks; dry-run, sizing and sbatch errors checked ($(elapsed))"
  ;;
nightly)
  root=$WORK/nightly
  j1=$(SGPS=$SGPS SGPS_NIGHTLY_DATE=2026-01-01 "$SRC/slurm/sgps-nightly.sh" "$M" "$root" --max-nodes 1 \
    --ntasks-per-node 2 --time 10:00 2>n1.err) || fail "nightly 1: $(cat n1.err)"
  expect_done "$j1" "$root/2026-01-01" 90
  j2=$(SGPS=$SGPS SGPS_NIGHTLY_DATE=2026-01-02 "$SRC/slurm/sgps-nightly.sh" "$M" "$root" --max-nodes 1 \
    --ntasks-per-node 2 --time 10:00 2>n2.err) || fail "nightly 2: $(cat n2.err)"
  [ "$(job_field "$j2" JobName)" = sgps-nightly ] || fail "nightly job name"
  expect_done "$j2" "$root/2026-01-02" 90
  verify_run "$root/2026-01-02"
  grep -q '^diff3,balanced_accuracy,' "$root/2026-01-02/comparison.csv" ||
    fail "night 2 was not compared with night 1"
  grep -q -- "--baseline $root/2026-01-01" "$root/2026-01-02/slurm-$j2.out" || fail "night 2 ran without --baseline"
  [ "$(wc -l <"$root/history.tsv")" -eq 2 ] || fail "history.tsv: expected 2 lines"
  grep -qxF "2026-01-02"$'\t'"$j2"$'\t'"$root/2026-01-02"$'\t'"$root/2026-01-01" "$root/history.tsv" || fail "history.tsv row for night 2"
  ok "nightly: jobs $j1, $j2 (singleton), night 2 compared with night 1 ($(elapsed))"
  ;;
*)
  fail "unknown case"
  ;;
esac
