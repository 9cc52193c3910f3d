#!/bin/sh
# run_cli_tests.sh SGPS WORKDIR — `sgps demo-world` from the command line:
# --help, bad arguments, a small world, refusal to write into a non-empty
# folder, --force replacing a world byte for byte, the world read by
# train-engine (and by validate and run when this sgps has them), and a folder
# that is a file; train-engine's and eval-fewshot's options and refusals;
# sgps synth on a task file (determinism, modes, every refusal) and sgps classify;
# adapt-engine (AdaBN on unlabelled images).
set -u
SGPS=$1
W=$2
# Under ASan: whole stacks, so Open MPI's leftovers from MPI_Init are suppressed
# by name while leaks in sgps code are still reported; a leak exits 86, so that a
# refusal that leaks does not pass for the expected exit status 1 or 2.
here=$(cd "$(dirname "$0")" && pwd)
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0:exitcode=86"
export LSAN_OPTIONS="suppressions=$here/lsan-mpi.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
rm -rf "$W"
mkdir -p "$W"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$SGPS" demo-world --help | grep -q -- '--images-per-class' || fail "--help does not describe the options"
# --version names the commit of the tree it was built from (written at build
# time: run.json records it); outside a git checkout, "unknown"
if head=$(git -C "$here/../.." rev-parse --short=12 HEAD 2>/dev/null) && [ -n "$head" ]; then
  "$SGPS" --version | grep -q "(git $head" || fail "--version does not name HEAD $head: $("$SGPS" --version)"
fi
"$SGPS" --help | grep -q 'demo-world' || fail "sgps --help does not list demo-world"
"$SGPS" demo-world >/dev/null 2>&1; [ $? -eq 2 ] || fail "no OUT: exit 2 expected"
"$SGPS" demo-world "$W/x" --diseases 5 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--diseases 5: exit 2 expected"
"$SGPS" demo-world "$W/x" --size big >/dev/null 2>&1; [ $? -eq 2 ] || fail "--size big: exit 2 expected"
"$SGPS" demo-world "$W/x" --bogus >/dev/null 2>&1; [ $? -eq 2 ] || fail "--bogus: exit 2 expected"
[ ! -e "$W/x" ] || fail "a refused command created its folder"

ARGS="--diseases 12 --images-per-class 3 --size 24 --seed 4"
"$SGPS" demo-world "$W/a" $ARGS > "$W/out.txt" 2> "$W/err.txt" || fail "small world: $(cat "$W/err.txt")"
grep -q 'wrote' "$W/out.txt" || fail "no summary line"
grep -q 'demo-world:' "$W/err.txt" || fail "no progress lines"
for f in registry.json manifest.json world.json screen-truth.csv train/labels.csv heldout/labels.csv \
         shards/train-index.json shards/val-index.json shards/screen-index.json shards/val-000000.tar.zst; do
  [ -s "$W/a/$f" ] || fail "missing $f"
done
"$SGPS" shards verify "$W/a/shards/train-index.json" >/dev/null 2>&1 || fail "train shards do not verify"
"$SGPS" shards verify "$W/a/shards/val-index.json" >/dev/null 2>&1 || fail "val shards do not verify"

( cd "$W/a" && find . -type f | LC_ALL=C sort | xargs sha256sum ) > "$W/sums1"
"$SGPS" demo-world "$W/a" $ARGS --quiet >/dev/null 2>"$W/err2.txt"; [ $? -eq 2 ] || fail "non-empty OUT without --force: exit 2 expected"
grep -q 'not empty' "$W/err2.txt" || fail "refusal does not say why: $(cat "$W/err2.txt")"
echo keep > "$W/a/notes.txt"
mkdir -p "$W/a/shards/stale" && echo x > "$W/a/shards/val-000009.tar.zst"
"$SGPS" demo-world "$W/a" $ARGS --force --quiet >/dev/null 2>&1 || fail "--force failed"
[ -f "$W/a/notes.txt" ] || fail "--force removed a file it did not write"
[ ! -e "$W/a/shards/val-000009.tar.zst" ] || fail "--force left a stale shard"
rm "$W/a/notes.txt"
( cd "$W/a" && find . -type f | LC_ALL=C sort | xargs sha256sum ) > "$W/sums2"
cmp -s "$W/sums1" "$W/sums2" || fail "--force did not reproduce the world byte for byte"

# The image set loads in train-engine (an untrained engine: no epochs, no
# episodes), and, once this sgps has them, the manifest validates and runs.
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/a/engine.sgpe" \
  --epochs 0 --episodes 0 --width 4 --img 16 > "$W/train.txt" 2>&1 || fail "train-engine: $(cat "$W/train.txt")"
grep -q '27 images' "$W/train.txt" || fail "train-engine did not load 9 x 3 training images: $(cat "$W/train.txt")"
grep -q '), 0 without text' "$W/train.txt" || fail "a training class has no description: $(cat "$W/train.txt")"
# A set is read as labels.csv, as class subfolders (no labels.csv), or as the shards
# sgps pack made of it (index or brace pattern): the same images in the same order
# under the same SET/LABEL ids, so the same engine byte for byte.
"$SGPS" pack "$W/a/train" "$W/pk/train-%06d.tar.zst" --max-samples 10 --quiet > /dev/null 2>&1 || fail "pack train"
mkdir -p "$W/if" && cp -r "$W/a/train/images" "$W/if/train"
i=0
for src in "$W/a/train" "$W/pk/train-index.json" "$W/if/train" "$W/pk/train-{000000..000002}.tar.zst"; do
  i=$((i + 1))
  "$SGPS" train-engine --data "$src" --registry "$W/a/registry.json" -o "$W/src$i.sgpe" --width 4 --img 16 --stages 2 \
    --epochs 1 --batch 8 --episodes 4 --val-episodes 2 --calib-episodes 0 --val train/d000,train/d001,train/d002 > "$W/src$i.txt" 2>&1 ||
    fail "train-engine --data $src: $(cat "$W/src$i.txt")"
  grep -q "set 'train'): 27 images so far, 9 classes" "$W/src$i.txt" || fail "train-engine --data $src: $(cat "$W/src$i.txt")"
  grep -q '), 0 without text' "$W/src$i.txt" || fail "train-engine --data $src: a class lost its description"
  cmp -s "$W/src1.sgpe" "$W/src$i.sgpe" || fail "train-engine --data $src: another engine than from labels.csv"
done
# a missing set, and two sets of one name, are refused before any training
# an engine or state that could not be written is found before the data is even read
for o in "-o $W/nodir/x.sgpe" "-o $W/x.sgpe --checkpoint $W/nodir/ck"; do
  "$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" $o --epochs 0 --episodes 0 --width 4 --img 16 \
    > "$W/wr.txt" 2>&1
  [ $? -eq 1 ] || fail "train-engine $o: exit 1 expected"
  grep -q "nodir/.*cannot be written" "$W/wr.txt" && ! grep -q 'loaded' "$W/wr.txt" ||
    fail "train-engine $o: not refused up front: $(cat "$W/wr.txt")"
done
"$SGPS" train-engine --data "$W/nope" --registry "$W/a/registry.json" -o "$W/x.sgpe" > /dev/null 2> "$W/ds.txt"
[ $? -eq 1 ] || fail "train-engine --data of a missing folder: exit 1 expected"
grep -q "nope: No such file or directory (expected an image set" "$W/ds.txt" || fail "a missing set not explained: $(cat "$W/ds.txt")"
"$SGPS" train-engine --data "$W/a/train" --data "$W/if/train" --registry "$W/a/registry.json" -o "$W/x.sgpe" > /dev/null 2> "$W/ds.txt"
[ $? -eq 1 ] || fail "train-engine with two sets named train: exit 1 expected"
grep -q "are both named set 'train'" "$W/ds.txt" || fail "two sets of one name not explained: $(cat "$W/ds.txt")"
[ ! -e "$W/x.sgpe" ] || fail "a refused train-engine wrote an engine"
# A second stage starting from that engine takes its input side and width
# (16 px, width 4) without being told them again.
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/stage2.sgpe" \
  --epochs 0 --episodes 0 --init-backbone "$W/a/engine.sgpe" > "$W/train2.txt" 2>&1 ||
  fail "train-engine --init-backbone without --img: $(cat "$W/train2.txt")"
grep -q 'Conv4-4 at 16px' "$W/train2.txt" || fail "--init-backbone did not take the engine's size: $(cat "$W/train2.txt")"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/stage2.sgpe" \
  --epochs 0 --episodes 0 --init-backbone "$W/a/engine.sgpe" --img 24 > "$W/train3.txt" 2>&1 &&
  fail "--init-backbone with another --img was accepted"
grep -q 'does not match' "$W/train3.txt" || fail "a size mismatch is not explained: $(cat "$W/train3.txt")"
# --stage2-classes keeps classes out of stage 1 and trains stage 2 on them alone;
# a name that matches nothing, or a class that is also a --val class, is refused.
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/s2.sgpe" --width 4 --img 16 \
  --epochs 1 --batch 8 --episodes 2 --episodes-per-step 1 --val train/d000,train/d001,train/d002 --val-episodes 2 \
  --stage2-classes train/d003,train/d004,train/d005 --calib-episodes 0 > "$W/s2.txt" 2>&1 ||
  fail "train-engine --stage2-classes: $(cat "$W/s2.txt")"
grep -q 'pretraining on 3 classes (9 images)' "$W/s2.txt" || fail "stage 1 did not leave out the stage-2 classes: $(cat "$W/s2.txt")"
grep -q 'meta-training on 3 classes unseen in stage 1' "$W/s2.txt" || fail "stage 2 did not use the stage-2 classes: $(cat "$W/s2.txt")"
# three images a class form no validation episode: said once, not reported as 0 % at every check
grep -q 'the validation classes cannot form 1-shot episodes (2 classes of one set with 16 images each)' "$W/s2.txt" ||
  fail "validation classes too small for an episode: not said: $(cat "$W/s2.txt")"
grep -q 'validation: ' "$W/s2.txt" && fail "validation reported without an episode: $(cat "$W/s2.txt")"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/s2.sgpe" --width 4 --img 16 \
  --epochs 0 --episodes 0 --stage2-classes train/nosuch > "$W/s2b.txt" 2>&1; [ $? -eq 2 ] || fail "--stage2-classes with an unknown class: exit 2 expected"
grep -q "'train/nosuch' names no loaded set or class" "$W/s2b.txt" || fail "unknown stage-2 class not named: $(cat "$W/s2b.txt")"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/s2.sgpe" --width 4 --img 16 \
  --epochs 0 --episodes 0 --val train/d001 --stage2-classes train/d001 > "$W/s2c.txt" 2>&1; [ $? -eq 2 ] || fail "a class in --val and --stage2-classes: exit 2 expected"
grep -q 'train/d001 is also a --val class' "$W/s2c.txt" || fail "the overlap is not explained: $(cat "$W/s2c.txt")"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/s2d.sgpe" --width 4 --img 16 \
  --epochs 1 --episodes 0 --val train/d000,train/d001 \
  --stage2-classes train/d002,train/d003,train/d004,train/d005,train/d006,train/d007,train/d008 > "$W/s2d.txt" 2>&1
[ $? -eq 1 ] || fail "every class out of stage 1: exit 1 expected"
grep -q 'no class is left for stage 1' "$W/s2d.txt" || fail "an empty stage 1 is not explained: $(cat "$W/s2d.txt")"
[ ! -e "$W/s2d.sgpe" ] || fail "a refused training wrote an engine"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/s2.sgpe" --wd -1 > /dev/null 2> "$W/wd.txt"
[ $? -eq 2 ] || fail "--wd -1: exit 2 expected"
grep -q "bad value '-1' for --wd" "$W/wd.txt" || fail "a bad value does not name its option: $(cat "$W/wd.txt")"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/s2.sgpe" --optimizer adam > /dev/null 2> "$W/opt.txt"
[ $? -eq 2 ] || fail "--optimizer adam: exit 2 expected"
grep -q "bad value 'adam' for --optimizer" "$W/opt.txt" || fail "a bad optimizer is not named: $(cat "$W/opt.txt")"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/sgd.sgpe" --width 4 --img 16 \
  --epochs 1 --batch 8 --episodes 0 --optimizer sgd > "$W/sgd.txt" 2>&1 || fail "train-engine --optimizer sgd: $(cat "$W/sgd.txt")"
grep -q 'SGD lr 0.1' "$W/sgd.txt" || fail "--optimizer sgd did not take SGD's default rate: $(cat "$W/sgd.txt")"
[ -s "$W/sgd.sgpe" ] || fail "--optimizer sgd wrote no engine"
# SGD is the command's default; --optimizer adamw takes AdamW's own default rate
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/sgd.sgpe" --width 4 --img 16 \
  --epochs 1 --batch 8 --episodes 0 > "$W/sgd.txt" 2>&1 || fail "train-engine (default optimizer): $(cat "$W/sgd.txt")"
grep -q 'SGD lr 0.1' "$W/sgd.txt" || fail "the default optimizer is not SGD at lr 0.1: $(cat "$W/sgd.txt")"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/adamw.sgpe" --width 4 --img 16 \
  --epochs 1 --batch 8 --episodes 0 --optimizer adamw > "$W/adamw.txt" 2>&1 || fail "train-engine --optimizer adamw: $(cat "$W/adamw.txt")"
grep -q 'AdamW lr 0.002' "$W/adamw.txt" || fail "--optimizer adamw did not take AdamW's default rate: $(cat "$W/adamw.txt")"
# --bn-group: groups must divide the batch; a grouped stage 1 says so and marks the engine,
# whose synthesis then leaves the support normalization off by default.
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/bng.sgpe" --batch 8 --bn-group 3 \
  > /dev/null 2> "$W/bng.txt"
[ $? -eq 2 ] || fail "--bn-group 3 with batch 8: exit 2 expected"
grep -q -- "--bn-group 3 must divide the batch (8)" "$W/bng.txt" || fail "a bad --bn-group is not explained: $(cat "$W/bng.txt")"
[ ! -e "$W/bng.sgpe" ] || fail "a refused --bn-group wrote an engine"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/bng.sgpe" --width 4 --img 16 \
  --epochs 1 --batch 8 --bn-group 4 --episodes 0 > "$W/bng.txt" 2>&1 || fail "train-engine --bn-group 4: $(cat "$W/bng.txt")"
grep -q 'groups of 4 images, each group from one source set' "$W/bng.txt" || fail "--bn-group is not logged: $(cat "$W/bng.txt")"
# numbers as typed: a leading space or '+', nan or inf are refused
for arg in "--epochs= 3" "--epochs=+3" "--lr=+0.1" "--lr=inf" "--wd=nan"; do
  "$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/num.sgpe" "$arg" > /dev/null 2> "$W/num.txt"
  [ $? -eq 2 ] || fail "train-engine '$arg': exit 2 expected"
done
[ ! -e "$W/num.sgpe" ] || fail "a refused number wrote an engine"
# --teacher: stage 1 distilled from another stage-1 engine of the same data (sgd.sgpe above);
# one of another input side, a missing file, or --kd-weight without a teacher is refused.
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/kd.sgpe" --width 4 --img 16 \
  --epochs 1 --batch 8 --episodes 0 --teacher "$W/sgd.sgpe" --kd-temp 2 > "$W/kd.txt" 2>&1 ||
  fail "train-engine --teacher: $(cat "$W/kd.txt")"
grep -q 'distilling from 1 teacher(s): loss 0.5 x cross-entropy + 0.5 x KL at T 2' "$W/kd.txt" ||
  fail "distillation is not logged: $(cat "$W/kd.txt")"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/kd2.sgpe" --width 4 --img 24 \
  --epochs 1 --batch 8 --episodes 0 --teacher "$W/sgd.sgpe" > /dev/null 2> "$W/kd.txt"
[ $? -eq 2 ] || fail "a teacher of another input side: exit 2 expected"
grep -q -- "--teacher $W/sgd.sgpe takes 16 px input; the engine being trained takes 24 px" "$W/kd.txt" ||
  fail "a teacher that does not fit is not explained: $(cat "$W/kd.txt")"
[ ! -e "$W/kd2.sgpe" ] || fail "a refused --teacher wrote an engine"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/kd2.sgpe" --width 4 --img 16 \
  --epochs 1 --batch 8 --episodes 0 --teacher "$W/none.sgpe" > /dev/null 2> "$W/kd.txt"
[ $? -eq 1 ] || fail "a missing teacher: exit 1 expected"
grep -q "none.sgpe" "$W/kd.txt" || fail "a missing teacher is not named: $(cat "$W/kd.txt")"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/kd2.sgpe" --kd-weight 0.3 > /dev/null 2> "$W/kd.txt"
[ $? -eq 2 ] && grep -q -- "--kd-weight and --kd-temp need --teacher" "$W/kd.txt" ||
  fail "--kd-weight without --teacher: $(cat "$W/kd.txt")"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/kd2.sgpe" --teacher "$W/sgd.sgpe" \
  --kd-weight 1.5 > /dev/null 2> "$W/kd.txt"
[ $? -eq 2 ] || fail "--kd-weight 1.5: exit 2 expected"
# --convs: counts per stage; a bad count or a list that does not fit the stages is refused,
# a deeper engine trains and a generator trained from its backbone inherits the counts.
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/s2.sgpe" --convs 1,4 > /dev/null 2> "$W/cv.txt"
[ $? -eq 2 ] || fail "--convs 1,4: exit 2 expected"
grep -q "bad value '1,4' for --convs" "$W/cv.txt" || fail "a bad --convs is not named: $(cat "$W/cv.txt")"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/s2.sgpe" --convs 1,2,2 > /dev/null 2> "$W/cv.txt"
[ $? -eq 2 ] || fail "--convs 1,2,2 with 4 stages: exit 2 expected"
grep -q "3 counts for 4 stages" "$W/cv.txt" || fail "a --convs list of the wrong length: $(cat "$W/cv.txt")"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/deep.sgpe" --width 4 --img 16 \
  --stages 2 --convs 1,2 --epochs 1 --batch 8 --episodes 0 > "$W/deep.txt" 2>&1 || fail "train-engine --convs 1,2: $(cat "$W/deep.txt")"
grep -q 'Conv2-4 at 16px (convolutions per stage 1,2)' "$W/deep.txt" || fail "--convs not in the engine line: $(cat "$W/deep.txt")"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/deep2.sgpe" --init-backbone "$W/deep.sgpe" \
  --epochs 0 --episodes 4 --episodes-per-step 2 > "$W/deep2.txt" 2>&1 || fail "--init-backbone of a deeper engine: $(cat "$W/deep2.txt")"
grep -q '(convolutions per stage 1,2)' "$W/deep2.txt" || fail "--init-backbone did not take the counts: $(cat "$W/deep2.txt")"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/s2.sgpe" --init-backbone "$W/deep.sgpe" \
  --convs 1 --epochs 0 --episodes 4 > /dev/null 2> "$W/cv.txt"
[ $? -eq 1 ] || fail "--init-backbone with other --convs: exit 1 expected"
grep -q "convolutions 1,2, .*does not match" "$W/cv.txt" || fail "a backbone of other depth is not refused clearly: $(cat "$W/cv.txt")"
# --stage2-train takes whole group names: a misspelt one is refused, not read as its substring
for st in genx gen,bogus ","; do
  "$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/st.sgpe" --stage2-train "$st" \
    > /dev/null 2> "$W/st.txt"
  [ $? -eq 2 ] || fail "--stage2-train $st: exit 2 expected"
  grep -q -- "--stage2-train '$st'" "$W/st.txt" || fail "--stage2-train $st not explained: $(cat "$W/st.txt")"
done
[ ! -e "$W/st.sgpe" ] || fail "a refused --stage2-train wrote an engine"
"$SGPS" train-engine --data "$W/a/train" --registry "$W/a/registry.json" -o "$W/s2.sgpe" --val-episodes 0 > /dev/null 2>&1
[ $? -eq 2 ] || fail "--val-episodes 0: exit 2 expected"
# a registry whose second entry has no description, and one that is not JSON: both
# commands that read it refuse it, naming the file and the entry (and, under ASan,
# free what the first entry had allocated)
printf '{"diseases": [{"id": "train/d000", "description": "a lesion"}, {"id": "train/d001"}]}' > "$W/badreg.json"
printf '{"diseases": [' > "$W/badreg2.json"
for r in badreg:'badreg.json: $.diseases\[1\] needs string fields id and description' badreg2:'badreg2.json: not valid JSON'; do
  "$SGPS" train-engine --data "$W/a/train" --registry "$W/${r%%:*}.json" -o "$W/br.sgpe" --epochs 1 > /dev/null 2> "$W/br.txt"
  [ $? -eq 1 ] || fail "train-engine with ${r%%:*}.json: exit 1 expected: $(cat "$W/br.txt")"
  grep -q "${r#*:}" "$W/br.txt" || fail "train-engine with ${r%%:*}.json: not explained: $(cat "$W/br.txt")"
  [ "${r%%:*}" = badreg ] || continue # (both commands read the registry with one function)
  "$SGPS" eval-fewshot --engine "$W/a/engine.sgpe" --data "$W/a/heldout" --registry "$W/${r%%:*}.json" --episodes 2 \
    > /dev/null 2> "$W/br.txt"
  [ $? -eq 1 ] || fail "eval-fewshot with ${r%%:*}.json: exit 1 expected: $(cat "$W/br.txt")"
  grep -q "${r#*:}" "$W/br.txt" || fail "eval-fewshot with ${r%%:*}.json: not explained: $(cat "$W/br.txt")"
done
[ ! -e "$W/br.sgpe" ] || fail "train-engine with a bad registry wrote an engine"
# eval-fewshot on the held-out diseases with the untrained engine: every method,
# the paired differences (the no-adaptation ablation equals SGPS exactly when the
# generators are at zero and the support normalization is off), OUT.json and
# OUT.md; bad arguments and files refused.
"$SGPS" eval-fewshot --help | grep -q 'paired' || fail "eval-fewshot --help does not describe the paired differences"
"$SGPS" eval-fewshot --engine "$W/a/engine.sgpe" --data "$W/a/heldout" --registry "$W/a/registry.json" \
  --way 3 --shot 1,2 --episodes 4 --queries 1 --support-norm 0 --out "$W/ev" > "$W/ev.txt" 2>&1 || fail "eval-fewshot: $(cat "$W/ev.txt")"
grep -q '^| SGPS (images) − ablation: SGPS head, no adaptation | +0.00 ± 0.00 | +0.00 ± 0.00 |$' "$W/ev.md" ||
  fail "eval-fewshot: no exact paired difference for identical methods: $(cat "$W/ev.md")"
grep -q '^| ProtoNet (base backbone) |' "$W/ev.md" || fail "eval-fewshot: no ProtoNet row: $(cat "$W/ev.md")"
grep -q '"paired": \[' "$W/ev.json" || fail "eval-fewshot: no paired array in the JSON"
# the held-out set without its labels.csv (class subfolders) and packed into shards:
# both in the order of the samples' keys (this labels.csv is in another order), so
# the same episodes and the same figures from the two
"$SGPS" pack "$W/a/heldout" "$W/pkh/heldout-%06d.tar" --max-samples 4 --quiet > /dev/null 2>&1 || fail "pack heldout"
# (the folders' parent has a quote and a backslash in its name: the JSON escapes them)
ifh="$W/if\"h\\"
mkdir -p "$ifh" && cp -r "$W/a/heldout/images" "$ifh/heldout"
i=0
for src in "$ifh/heldout" "$W/pkh/heldout-index.json"; do
  i=$((i + 1))
  "$SGPS" eval-fewshot --engine "$W/a/engine.sgpe" --data "$src" --registry "$W/a/registry.json" \
    --way 3 --shot 1,2 --episodes 4 --queries 1 --support-norm 0 --out "$W/evx$i" > "$W/evx.txt" 2>&1 ||
    fail "eval-fewshot --data $src: $(cat "$W/evx.txt")"
  grep -q "set 'heldout'): 12 images so far, 3 classes" "$W/evx.txt" || fail "eval-fewshot --data $src: $(cat "$W/evx.txt")"
done
python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["data"] == sys.argv[2]' "$W/evx1.json" "$ifh/heldout" ||
  fail "eval-fewshot: the JSON does not name the set's path: $(cat "$W/evx1.json")"
cmp -s "$W/evx1.md" "$W/evx2.md" || fail "eval-fewshot: shards and class folders differ: $(cat "$W/evx1.md" "$W/evx2.md")"
grep -q '^| SGPS (images + text) |' "$W/evx2.md" || fail "eval-fewshot from shards: no text method (registry ids)"
[ "$(grep -c '"sgps_minus"' "$W/ev.json")" -eq 14 ] || fail "eval-fewshot: not 7 methods x 2 shots of paired differences"
[ "$(grep -c '"accuracy"' "$W/ev.json")" -eq 16 ] || fail "eval-fewshot: not 8 methods x 2 shots of accuracies"
"$SGPS" eval-fewshot --engine "$W/a/engine.sgpe" --data "$W/a/heldout" --way 1 > /dev/null 2> "$W/ev2.txt"
[ $? -eq 2 ] || fail "eval-fewshot --way 1: exit 2 expected"
grep -q "bad value '1' for --way" "$W/ev2.txt" || fail "eval-fewshot --way 1 not explained: $(cat "$W/ev2.txt")"
# more classes than the set has with shot + queries images: refused, not reported as a
# smaller episode under the asked name; a class without a description leaves the text
# methods out with a warning (an empty description is none)
"$SGPS" eval-fewshot --engine "$W/a/engine.sgpe" --data "$W/a/heldout" --way 4 --shot 1 --episodes 2 --queries 1 \
  > /dev/null 2> "$W/ev3.txt"
[ $? -eq 1 ] || fail "eval-fewshot --way 4 on 3 classes: exit 1 expected ($(cat "$W/ev3.txt"))"
grep -q "4-way episodes need 4 classes with 2 images each (shot + queries); 3 have them" "$W/ev3.txt" ||
  fail "eval-fewshot --way 4 on 3 classes not explained: $(cat "$W/ev3.txt")"
sed 's/"description": "[^"]*"/"description": ""/' "$W/a/registry.json" > "$W/empty-desc.json"
"$SGPS" eval-fewshot --engine "$W/a/engine.sgpe" --data "$W/a/heldout" --registry "$W/empty-desc.json" --way 3 --shot 1 \
  --episodes 2 --queries 1 > "$W/ev4.txt" 2>&1 || fail "eval-fewshot with empty descriptions: $(cat "$W/ev4.txt")"
grep -q "the methods with text are left out: class heldout/.* has no description" "$W/ev4.txt" ||
  fail "eval-fewshot: text methods with empty descriptions not explained: $(cat "$W/ev4.txt")"
grep -q "text only" "$W/ev4.txt" && fail "eval-fewshot ran text-only synthesis on empty descriptions: $(cat "$W/ev4.txt")"
# --shot with no count at all, or more than 16 counts, is refused (was: an empty table from
# uninitialized results, exit 0; counts past the 16th silently dropped)
for shot in "," "" "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17"; do
  "$SGPS" eval-fewshot --engine "$W/a/engine.sgpe" --data "$W/a/heldout" --way 3 --episodes 2 --queries 1 \
    --shot "$shot" > "$W/evs.txt" 2> "$W/evs2.txt"
  [ $? -eq 2 ] || fail "eval-fewshot --shot '$shot': exit 2 expected ($(cat "$W/evs.txt" "$W/evs2.txt"))"
  grep -q -- "--shot '$shot'\|bad --shot '17' (at most 16" "$W/evs2.txt" || fail "eval-fewshot --shot '$shot' not explained: $(cat "$W/evs2.txt")"
done
"$SGPS" eval-fewshot --engine "$W/a/engine.sgpe" --data "$W/a/heldout" --methods sgps,bogus > /dev/null 2> "$W/ev3.txt"
[ $? -eq 2 ] || fail "eval-fewshot --methods bogus: exit 2 expected"
grep -q "unknown method 'bogus'" "$W/ev3.txt" || fail "the unknown method is not named: $(cat "$W/ev3.txt")"
"$SGPS" eval-fewshot --engine "$W/nosuch.sgpe" --data "$W/a/heldout" > /dev/null 2> "$W/ev4.txt"
[ $? -eq 1 ] || fail "eval-fewshot with a missing engine: exit 1 expected"
grep -q 'nosuch.sgpe' "$W/ev4.txt" || fail "the missing engine is not named: $(cat "$W/ev4.txt")"
# adapt-engine: the normalization re-estimated on unlabelled images (a folder's
# labels.csv or a CSV of paths); the same bytes twice, the weights' size kept,
# a broken image skipped by name; refusals name the file and write nothing.
"$SGPS" adapt-engine --help | grep -q -- '--images' || fail "adapt-engine --help does not describe --images"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --images "$W/a/heldout" -o "$W/ad1.sgpe" > "$W/ad.txt" 2>&1 ||
  fail "adapt-engine on a folder: $(cat "$W/ad.txt")"
grep -q 'to 12 images' "$W/ad.txt" || fail "adapt-engine did not read the 12 held-out images: $(cat "$W/ad.txt")"
cmp -s "$W/a/engine.sgpe" "$W/ad1.sgpe" && fail "adapt-engine wrote the engine unchanged"
# the same parameters plus the mark (a Conv4 engine: two more configuration values)
[ "$(($(wc -c < "$W/a/engine.sgpe") + 8))" -eq "$(wc -c < "$W/ad1.sgpe")" ] ||
  fail "adapt-engine changed the engine's size beyond its mark"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --images "$W/a/heldout/labels.csv" -o "$W/ad2.sgpe" > /dev/null 2>&1 ||
  fail "adapt-engine on the same list as a CSV"
cmp -s "$W/ad1.sgpe" "$W/ad2.sgpe" || fail "adapt-engine: the folder and its labels.csv gave different engines"
{ echo "id,path"; tail -n +2 "$W/a/heldout/labels.csv" | cut -d, -f1 | sed 's/^/x,/'; echo "x,images/none.png"; } > "$W/a/heldout/unl.csv"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --images "$W/a/heldout/unl.csv" -o "$W/ad3.sgpe" > "$W/ad3.txt" 2>&1 ||
  fail "adapt-engine with a missing image: $(cat "$W/ad3.txt")"
grep -q 'none.png' "$W/ad3.txt" || fail "the missing image is not named: $(cat "$W/ad3.txt")"
cmp -s "$W/ad1.sgpe" "$W/ad3.sgpe" || fail "adapt-engine: the same 12 images (one missing skipped) gave another engine"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --images "$W/a/heldout" --alpha 1 -o "$W/ad4.sgpe" > /dev/null 2>&1 ||
  fail "adapt-engine --alpha 1"
cmp -s "$W/ad1.sgpe" "$W/ad4.sgpe" && fail "adapt-engine: --alpha 1 gave the same engine as the default 0.5"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --images "$W/a/heldout" --alpha 0.5 -o "$W/ad5.sgpe" > /dev/null 2>&1 ||
  fail "adapt-engine --alpha 0.5"
cmp -s "$W/ad1.sgpe" "$W/ad5.sgpe" || fail "adapt-engine: the default is not --alpha 0.5"
# --max-images N over a longer list reads N images, evenly spaced (a rounded-up stride read
# 6 of 12 for N = 11); 1 is refused (statistics need two)
for n in 5 7 11; do
  "$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --images "$W/a/heldout" --max-images $n -o "$W/adm.sgpe" \
    > "$W/adm.txt" 2>&1 || fail "adapt-engine --max-images $n: $(cat "$W/adm.txt")"
  grep -q "to $n images" "$W/adm.txt" || fail "adapt-engine --max-images $n did not read $n images: $(cat "$W/adm.txt")"
done
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --images "$W/a/heldout" --max-images 1 -o "$W/adm.sgpe" > /dev/null 2>&1
[ $? -eq 2 ] || fail "adapt-engine --max-images 1: exit 2 expected"
"$SGPS" eval-fewshot --engine "$W/ad1.sgpe" --data "$W/a/heldout" --methods sgps,protonet --way 3 --shot 1 --episodes 3 \
  --queries 1 > "$W/ad5.txt" 2>&1 || fail "eval-fewshot on an adapted engine: $(cat "$W/ad5.txt")"
# the same images packed into shards (by index and by brace pattern) give the same engine;
# a truncated shard is reported and the samples before the cut are used
"$SGPS" pack "$W/a/heldout/labels.csv" "$W/hs/h-%06d.tar.zst" --max-samples 5 > /dev/null 2>&1 || fail "pack the held-out images"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --shards "$W/hs/h-index.json" -o "$W/ad7.sgpe" > "$W/ad7.txt" 2>&1 ||
  fail "adapt-engine --shards INDEX: $(cat "$W/ad7.txt")"
cmp -s "$W/ad1.sgpe" "$W/ad7.sgpe" || fail "adapt-engine: the images as shards gave another engine than as files"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --shards "$W/hs/h-{000000..000002}.tar.zst" -o "$W/ad8.sgpe" > /dev/null 2>&1 ||
  fail "adapt-engine --shards PATTERN"
cmp -s "$W/ad1.sgpe" "$W/ad8.sgpe" || fail "adapt-engine: the brace pattern gave another engine than the index"
head -c 3000 "$W/hs/h-000001.tar.zst" > "$W/hs/cut-000001.tar.zst"
cp "$W/hs/h-000000.tar.zst" "$W/hs/cut-000000.tar.zst"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --shards "$W/hs/cut-{000000..000001}.tar.zst" -o "$W/ad9.sgpe" > "$W/ad9.txt" 2>&1 ||
  fail "adapt-engine with a truncated shard: $(cat "$W/ad9.txt")"
grep -q 'cut-000001.tar.zst' "$W/ad9.txt" || fail "the truncated shard is not named: $(cat "$W/ad9.txt")"
grep -q 'to [5-9] images' "$W/ad9.txt" || fail "the intact shard's images were not used: $(cat "$W/ad9.txt")"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --shards "$W/hs/none-{0..1}.tar" -o "$W/ad6.sgpe" > /dev/null 2> "$W/ad6.txt"
[ $? -eq 1 ] || fail "adapt-engine with only missing shards: exit 1 expected"
grep -q 'no images loaded' "$W/ad6.txt" || fail "missing shards not explained: $(cat "$W/ad6.txt")"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --images "$W/a/heldout" --shards "$W/hs/h-index.json" -o "$W/ad6.sgpe" \
  > /dev/null 2>&1; [ $? -eq 2 ] || fail "adapt-engine with both --images and --shards: exit 2 expected"
# --max-images: every k-th row of a longer list (the same engine as from exactly those
# rows), an equal share of each shard; 0 takes all
{ head -1 "$W/a/heldout/labels.csv"; tail -n +2 "$W/a/heldout/labels.csv" | awk 'NR % 3 == 1'; } > "$W/a/heldout/every3.csv"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --images "$W/a/heldout" --max-images 4 -o "$W/ad10.sgpe" > "$W/ad10.txt" 2>&1 ||
  fail "adapt-engine --max-images 4: $(cat "$W/ad10.txt")"
grep -q 'to 4 images' "$W/ad10.txt" || fail "--max-images 4 did not take 4 images: $(cat "$W/ad10.txt")"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --images "$W/a/heldout/every3.csv" -o "$W/ad11.sgpe" > /dev/null 2>&1 ||
  fail "adapt-engine on every third row"
cmp -s "$W/ad10.sgpe" "$W/ad11.sgpe" || fail "--max-images 4 did not take every third of the 12 rows"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --shards "$W/hs/h-index.json" --max-images 4 -o "$W/ad12.sgpe" > "$W/ad12.txt" 2>&1 ||
  fail "adapt-engine --shards --max-images 4: $(cat "$W/ad12.txt")"
grep -q 'to 4 images' "$W/ad12.txt" || fail "--max-images 4 over shards did not take 4 images: $(cat "$W/ad12.txt")"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --images "$W/a/heldout" --max-images 0 -o "$W/ad13.sgpe" > /dev/null 2>&1 ||
  fail "adapt-engine --max-images 0"
cmp -s "$W/ad1.sgpe" "$W/ad13.sgpe" || fail "--max-images 0 did not take every image"
for bad in "--alpha 0" "--alpha 1.5" "--max-images 1" "--bogus"; do
  "$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --images "$W/a/heldout" -o "$W/ad6.sgpe" $bad > /dev/null 2>&1
  [ $? -eq 2 ] || fail "adapt-engine $bad: exit 2 expected"
done
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" -o "$W/ad6.sgpe" > /dev/null 2>&1; [ $? -eq 2 ] || fail "adapt-engine without --images: exit 2 expected"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --images "$W/nosuch.csv" -o "$W/ad6.sgpe" > /dev/null 2> "$W/ad6.txt"
[ $? -eq 1 ] || fail "adapt-engine with a missing list: exit 1 expected"
grep -q 'nosuch.csv' "$W/ad6.txt" || fail "the missing list is not named: $(cat "$W/ad6.txt")"
printf 'file\nimages/d009/x.png\n' > "$W/a/heldout/nopath.csv"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --images "$W/a/heldout/nopath.csv" -o "$W/ad6.sgpe" > /dev/null 2> "$W/ad6.txt"
[ $? -eq 1 ] || fail "adapt-engine with no path column: exit 1 expected"
grep -q 'nopath.csv: the header must name a path column' "$W/ad6.txt" || fail "no path column not explained: $(cat "$W/ad6.txt")"
printf 'path\nimages/none.png\n' > "$W/a/heldout/none.csv"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --images "$W/a/heldout/none.csv" -o "$W/ad6.sgpe" > /dev/null 2> "$W/ad6.txt"
[ $? -eq 1 ] || fail "adapt-engine with no readable image: exit 1 expected"
grep -q 'none.csv: no images loaded' "$W/ad6.txt" || fail "no readable image not explained: $(cat "$W/ad6.txt")"
"$SGPS" adapt-engine --engine "$W/nosuch.sgpe" --images "$W/a/heldout" -o "$W/ad6.sgpe" > /dev/null 2> "$W/ad6.txt"
[ $? -eq 1 ] || fail "adapt-engine with a missing engine: exit 1 expected"
grep -q 'nosuch.sgpe' "$W/ad6.txt" || fail "the missing engine is not named: $(cat "$W/ad6.txt")"
"$SGPS" adapt-engine --engine "$W/a/engine.sgpe" --images "$W/a/heldout" -o "$W/nodir/ad.sgpe" > /dev/null 2> "$W/ad6.txt"
[ $? -eq 1 ] || fail "adapt-engine into a missing folder: exit 1 expected"
grep -q 'nodir/ad.sgpe' "$W/ad6.txt" || fail "the unwritable destination is not named: $(cat "$W/ad6.txt")"
[ ! -e "$W/ad6.sgpe" ] || fail "a refused adapt-engine wrote its output"
# --support-norm: the support images' own normalization (on by default); the
# no-adaptation ablation does not use it, so it differs from SGPS, and with
# --support-norm 0 SGPS moves; bad values refused
"$SGPS" eval-fewshot --engine "$W/a/engine.sgpe" --data "$W/a/heldout" --methods sgps,noadapt \
  --way 3 --shot 2 --episodes 4 --queries 2 --out "$W/evsn" > "$W/evsn.txt" 2>&1 || fail "eval-fewshot: $(cat "$W/evsn.txt")"
grep -q '^| SGPS (images) − ablation: SGPS head, no adaptation | +0.00 ± 0.00 |$' "$W/evsn.md" &&
  fail "eval-fewshot: the default support normalization changed nothing: $(cat "$W/evsn.md")"
"$SGPS" eval-fewshot --engine "$W/a/engine.sgpe" --data "$W/a/heldout" --methods sgps,noadapt --support-norm 0 \
  --way 3 --shot 2 --episodes 4 --queries 2 --out "$W/evsn0" > "$W/evsn.txt" 2>&1 || fail "eval-fewshot --support-norm 0: $(cat "$W/evsn.txt")"
cmp -s "$W/evsn.md" "$W/evsn0.md" && fail "eval-fewshot --support-norm 0 changed nothing: $(cat "$W/evsn0.md")"
grep -q '"support_norm": 0.25,' "$W/evsn.json" || fail "eval-fewshot JSON does not record the default support normalization"
grep -q '"support_norm": 0,' "$W/evsn0.json" || fail "eval-fewshot JSON does not record --support-norm 0"
"$SGPS" eval-fewshot --engine "$W/ad1.sgpe" --data "$W/a/heldout" --methods sgps \
  --way 3 --shot 2 --episodes 2 --queries 2 --out "$W/evsnad" > "$W/evsn.txt" 2>&1 || fail "eval-fewshot, adapted engine: $(cat "$W/evsn.txt")"
grep -q '"support_norm": 0,' "$W/evsnad.json" || fail "eval-fewshot on an adapted engine used the support normalization"
# an engine whose stage 1 took batch-norm statistics by source set (--bn-group, above)
"$SGPS" eval-fewshot --engine "$W/bng.sgpe" --data "$W/a/heldout" --methods sgps \
  --way 3 --shot 2 --episodes 2 --queries 2 --out "$W/evsnbg" > "$W/evsn.txt" 2>&1 || fail "eval-fewshot, grouped engine: $(cat "$W/evsn.txt")"
grep -q '"support_norm": 0,' "$W/evsnbg.json" || fail "eval-fewshot on a grouped engine used the support normalization"
"$SGPS" eval-fewshot --engine "$W/a/engine.sgpe" --data "$W/a/heldout" --support-norm 2 > /dev/null 2>&1
[ $? -eq 2 ] || fail "eval-fewshot --support-norm 2: exit 2 expected"
if "$SGPS" --help | grep -q '^  validate '; then
  "$SGPS" validate "$W/a/manifest.json" > "$W/val.txt" 2>&1 || fail "validate: $(cat "$W/val.txt")"
fi
if "$SGPS" --help | grep -q '^  run '; then
  "$SGPS" run "$W/a/manifest.json" --quiet > "$W/run.txt" 2>&1 || fail "run: $(cat "$W/run.txt")"
  [ "$(grep -c ',complete,' "$W/a/run/summary.csv")" -eq 8 ] || fail "run: not 8 complete tasks: $(cat "$W/a/run/summary.csv")"
  grep -q '^diff3-open-set,evaluate,complete,.*,[0-9][0-9]*,0\.666667$' "$W/a/run/summary.csv" ||
    fail "run: the open-set task has no rejected count and default threshold: $(cat "$W/a/run/summary.csv")"
  # every task without the exemplars' own normalization (on by default): the same
  # tasks complete, with other scores
  sed -e 's/"output": "run"/"output": "run-sn"/' -e 's/"kind": /"support_norm": 0, "kind": /' \
    "$W/a/manifest.json" > "$W/a/manifest-sn.json"
  "$SGPS" run "$W/a/manifest-sn.json" --quiet > "$W/run-sn.txt" 2>&1 || fail "run with support_norm 0: $(cat "$W/run-sn.txt")"
  [ "$(grep -c ',complete,' "$W/a/run-sn/summary.csv")" -eq 8 ] ||
    fail "run with support_norm 0: not 8 complete tasks: $(cat "$W/a/run-sn/summary.csv")"
  cmp -s "$W/a/run/summary.csv" "$W/a/run-sn/summary.csv" && fail "run: support_norm 0 changed no result"
fi

# sgps synth: a task file with relative image paths (resolved against its folder),
# the same bytes twice, text-only and image-only modes, a deeper engine; refusals
# name the file and the reason, and a refused synthesis writes nothing.
# sgps classify: probabilities per image, an unreadable image skipped and reported.
T="$W/a/heldout"
d9=$(cd "$T/images/d009" && ls | head -2)
d10=$(cd "$T/images/d010" && ls | head -1)
set -- $d9
cat > "$T/task.json" <<JSON
{"id": "t1", "classes": [
  {"name": "d009", "description": "a small round lesion", "images": ["images/d009/$1", "images/d009/$2"]},
  {"name": "d010", "images": ["images/d010/$d10"]},
  {"name": "d011", "description": "a large streaked plaque"}]}
JSON
"$SGPS" synth --help | grep -q -- '--no-images' || fail "synth --help does not describe the options"
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/task.json" -o "$W/c1.sgpm" > "$W/syn.txt" 2>&1 ||
  fail "synth: $(cat "$W/syn.txt")"
grep -q 'wrote .*c1.sgpm: 3 classes.*(support normalization 0.25)$' "$W/syn.txt" || fail "synth: no summary line: $(cat "$W/syn.txt")"
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/task.json" -o "$W/c2.sgpm" > /dev/null 2>&1 || fail "synth (again)"
cmp -s "$W/c1.sgpm" "$W/c2.sgpm" || fail "synth: the same task gave different bytes"
# ... whatever OPENBLAS_NUM_THREADS says (the convolution kernel depends on the thread count)
OPENBLAS_NUM_THREADS=2 "$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/task.json" -o "$W/c2t.sgpm" > /dev/null 2>&1 ||
  fail "synth (2 BLAS threads)"
cmp -s "$W/c1.sgpm" "$W/c2t.sgpm" || fail "synth: OPENBLAS_NUM_THREADS=2 gave different bytes"
# the support check: d009's two images, each classified by the classifier synthesized
# without it, reported and kept in the classifier's metadata; --no-check skips it
grep -q '^support check: [0-2] of 2 support images classified as their own class' "$W/syn.txt" ||
  fail "synth: no support check line: $(cat "$W/syn.txt")"
grep -aq '"support_check": {"checked":2,' "$W/c1.sgpm" || fail "synth: the classifier does not hold the support check"
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/task.json" -o "$W/cnc.sgpm" --no-check > "$W/syn-nc.txt" 2>&1 ||
  fail "synth --no-check: $(cat "$W/syn-nc.txt")"
grep -q 'support check' "$W/syn-nc.txt" && fail "synth --no-check ran the check"
grep -aq 'support_check' "$W/cnc.sgpm" && fail "synth --no-check: the classifier holds a check"
# seven images checked: the count, one line per image classified as another class
# (its place, file and both classes), and the warning exactly when no better than chance
d10b=$(cd "$T/images/d010" && ls | head -4 | tail -3 | tr '\n' ' ')
d9c=$(cd "$T/images/d009" && ls | head -3 | tr '\n' ' ')
set -- $d9c $d10b
cat > "$T/seven.json" <<JSON
{"classes": [
  {"name": "d009", "images": ["images/d009/$1", "images/d009/$2", "images/d009/$3", "images/d010/$d10"]},
  {"name": "d010", "images": ["images/d010/$4", "images/d010/$5", "images/d010/$6"]}]}
JSON
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/seven.json" -o "$W/c7.sgpm" > "$W/syn-7.txt" 2>&1 ||
  fail "synth of a 4 + 3 image task: $(cat "$W/syn-7.txt")"
k=$(sed -n 's/^support check: \([0-7]\) of 7 support images .*(\([0-9]*\) %; chance 50 %; mean probability of their own class 0\.[0-9][0-9])$/\1/p' "$W/syn-7.txt")
[ -n "$k" ] || fail "synth: no support check of 7 images: $(cat "$W/syn-7.txt")"
[ "$(grep -c '^  [$][.]classes[[][01][]][.]images[[][0-3][]] (images/d0[01][09]/v[0-9]*[.]png) of .d0[01][09]. looks like .d0[01][09]. (probability of .d0[01][09]. 0[.][0-9][0-9])$' "$W/syn-7.txt")" -eq $((7 - k)) ] ||
  fail "synth: not $((7 - k)) misclassified images listed: $(cat "$W/syn-7.txt")"
if [ $((2 * k)) -le 7 ]; then w=1; else w=0; fi
[ "$(grep -c '^warning: the support images do not tell their classes apart' "$W/syn-7.txt")" -eq $w ] ||
  fail "synth: warning expected $w time(s) with $k of 7: $(cat "$W/syn-7.txt")"
# classify repeats that warning from the classifier's metadata, on stderr
"$SGPS" classify --model "$W/c7.sgpm" "$T/images/d009/$1" > "$W/cl-7.txt" 2> "$W/cl-7.err" || fail "classify with c7: $(cat "$W/cl-7.err")"
[ "$(grep -c "^sgps classify: warning: .*c7.sgpm: only $k of 7 exemplars were classified as their own class" "$W/cl-7.err")" -eq $w ] ||
  fail "classify: support-check warning expected $w time(s) with $k of 7: $(cat "$W/cl-7.err")"
[ "$(wc -l < "$W/cl-7.txt")" -eq 2 ] || fail "classify with c7: not one row: $(cat "$W/cl-7.txt")"
# --check: exact (the default for 7 images) and fast, each named in the metadata and
# in the printed line (tests/synth: where the two agree, and by how much they may not)
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/seven.json" -o "$W/c7e.sgpm" --check exact > "$W/syn-7e.txt" 2>&1 ||
  fail "synth --check exact: $(cat "$W/syn-7e.txt")"
cmp -s "$W/c7.sgpm" "$W/c7e.sgpm" || fail "synth --check exact differs from the default for 7 images"
grep -aq '"method":"exact"' "$W/c7.sgpm" || fail "synth: the metadata does not name the exact check"
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/seven.json" -o "$W/c7f.sgpm" --check fast > "$W/syn-7f.txt" 2>&1 ||
  fail "synth --check fast: $(cat "$W/syn-7f.txt")"
grep -aq '"method":"fast"' "$W/c7f.sgpm" || fail "synth --check fast: the metadata does not name the fast check"
kf=$(sed -n 's/^support check: \([0-7]\) of 7 support images classified as their own class by the classifier whose head was rebuilt (fast check) without them .*/\1/p' "$W/syn-7f.txt")
[ -n "$kf" ] || fail "synth --check fast: no fast support check line: $(cat "$W/syn-7f.txt")"
[ "$(grep -c '^  [$][.]classes' "$W/syn-7f.txt")" -eq $((7 - kf)) ] ||
  fail "synth --check fast: not $((7 - kf)) misclassified images listed: $(cat "$W/syn-7f.txt")"
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/seven.json" -o "$W/c7x.sgpm" --check slow > "$W/syn-7x.txt" 2>&1
[ $? -eq 2 ] || fail "synth --check slow: exit 2 expected"
grep -q -- '--check' "$W/syn-7x.txt" || fail "synth --check slow: the message does not name the option: $(cat "$W/syn-7x.txt")"
[ ! -e "$W/c7x.sgpm" ] || fail "synth --check slow wrote a classifier"
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/task.json" -o "$W/c3.sgpm" --no-text > /dev/null 2>&1
[ $? -eq 2 ] || fail "synth --no-text with a text-only class: exit 2 expected"
[ ! -e "$W/c3.sgpm" ] || fail "a refused synthesis wrote a classifier"
"$SGPS" synth --engine "$W/deep2.sgpe" --task "$T/task.json" -o "$W/deep.sgpm" > /dev/null 2>&1 ||
  fail "synth with a deeper engine"
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/task.json" -o "$W/csn.sgpm" --support-norm 0 > /dev/null 2>&1 ||
  fail "synth --support-norm 0"
cmp -s "$W/c1.sgpm" "$W/csn.sgpm" && fail "synth --support-norm 0 wrote the default classifier"
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/task.json" -o "$W/csn0.sgpm" --support-norm=0.25 > /dev/null 2>&1 ||
  fail "synth --support-norm=0.25"
cmp -s "$W/c1.sgpm" "$W/csn0.sgpm" || fail "synth --support-norm=0.25 is not the default"
# an engine adapt-engine wrote: the support normalization is off by default, on when asked
for b in default 0 0.25; do
  opt=""; [ "$b" = default ] || opt="--support-norm $b"
  "$SGPS" synth --engine "$W/ad1.sgpe" --task "$T/task.json" -o "$W/cad-$b.sgpm" $opt > "$W/syn-$b.txt" 2>&1 ||
    fail "synth from the adapted engine ($b)"
done
grep -q '(support normalization 0)$' "$W/syn-default.txt" || fail "synth from an adapted engine: $(cat "$W/syn-default.txt")"
cmp -s "$W/cad-default.sgpm" "$W/cad-0.sgpm" || fail "synth from an adapted engine used the support normalization by default"
cmp -s "$W/cad-default.sgpm" "$W/cad-0.25.sgpm" && fail "synth --support-norm 0.25 from an adapted engine changed nothing"
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/task.json" -o "$W/csn2.sgpm" --support-norm 1.5 > /dev/null 2> "$W/syn.txt"
[ $? -eq 2 ] || fail "synth --support-norm 1.5: exit 2 expected"
grep -q "1.5" "$W/syn.txt" || fail "synth: the bad --support-norm is not named: $(cat "$W/syn.txt")"
sed 's/"images": \[[^]]*\]/"images": []/' "$T/task.json" > "$T/text.json"
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/text.json" -o "$W/c4.sgpm" > "$W/syn.txt" 2>&1
[ $? -eq 2 ] || fail "synth: a class with neither images nor text: exit 2 expected ($(cat "$W/syn.txt"))"
grep -q 'text.json' "$W/syn.txt" || fail "synth: the refused task is not named: $(cat "$W/syn.txt")"
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/task.json" -o "$W/c5.sgpm" --no-images > /dev/null 2>&1
[ $? -eq 2 ] || fail "synth --no-images with an image-only class: exit 2 expected"
bad_task() { # JSON, expected exit, expected message
  printf '%s' "$1" > "$T/bad.json"
  "$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/bad.json" -o "$W/bad.sgpm" > /dev/null 2> "$W/syn.txt"
  rc=$?
  [ $rc -eq "$2" ] || fail "synth on $1: exit $rc, $2 expected ($(cat "$W/syn.txt"))"
  grep -q "bad.json" "$W/syn.txt" && grep -q -- "$3" "$W/syn.txt" || fail "synth on $1: message $(cat "$W/syn.txt")"
  [ ! -e "$W/bad.sgpm" ] || fail "synth on $1 wrote a classifier"
}
bad_task '{"classes": [' 2 'not valid JSON'
bad_task '{"classes": {}}' 2 'classes must be an array'
bad_task '{"classes": [{"name": 3, "description": "x"}]}' 2 'name must be a string'
bad_task '{"classes": [{"name": "a", "description": 1}]}' 2 'description must be a string'
bad_task '{"classes": [{"name": "a", "images": "x.png"}]}' 2 'images must be an array'
# class names head classify's columns: an empty or repeated one is refused
bad_task '{"classes": [{"name": "", "description": "x"}, {"name": "b", "description": "y"}]}' 2 'classes\[0\].name must not be empty'
bad_task "{\"classes\": [{\"name\": \"$(printf '%0257d' 0)\", \"description\": \"x\"}, {\"name\": \"b\", \"description\": \"y\"}]}" 2 \
  'classes\[0\].name must be at most 256 bytes long'
# a description without a word the tokenizer reads is no description
bad_task '{"classes": [{"name": "a", "description": "--- ???"}, {"name": "b", "description": "y"}]}' 2 \
  "class 'a' has no support image and no description"
bad_task '{"classes": [{"name": "a", "description": "x"}, {"name": "b", "description": "y"}, {"name": "a", "description": "z"}]}' 2 \
  "classes\[2\].name: 'a' is also the name of class 0"
bad_task '{"classes": [{"name": "a", "images": ["nosuch.png"]}, {"name": "b", "description": "y"}]}' 1 'nosuch.png'
printf 'not a png' > "$T/broken.png"
bad_task '{"classes": [{"name": "a", "images": ["broken.png"]}, {"name": "b", "description": "y"}]}' 1 'broken.png'
# support images named by shard key: the same classifier as from the same images as files
v=$(sed -n 's#^images/d010/\(v[0-9]*\)\.png,d010$#\1#p' "$T/labels.csv" | head -1)
w=$(sed -n 's#^images/d011/\(v[0-9]*\)\.png,d011$#\1#p' "$T/labels.csv" | head -1)
[ -n "$v" ] && [ -n "$w" ] || fail "no held-out images of d010 / d011 in $T/labels.csv"
printf '{"classes": [{"name": "d010", "images": ["images/d010/%s.png"]}, {"name": "d011", "images": ["images/d011/%s.png"]}]}' \
  "$v" "$w" > "$T/files.json"
printf '{"classes": [{"name": "d010", "images": ["../shards/val-000000.tar.zst#%s"]}, {"name": "d011", "images": ["../shards/val-000000.tar.zst#%s"]}]}' \
  "$v" "$w" > "$T/keys.json"
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/files.json" -o "$W/files.sgpm" > /dev/null 2>&1 || fail "synth (files)"
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/keys.json" -o "$W/keys.sgpm" > "$W/syn.txt" 2>&1 ||
  fail "synth with shard keys: $(cat "$W/syn.txt")"
cmp -s "$W/files.sgpm" "$W/keys.sgpm" || fail "synth: the same images by shard key gave another classifier"
bad_task '{"classes": [{"name": "a", "images": ["../shards/val-000000.tar.zst#nokey"]}, {"name": "b", "description": "y"}]}' 1 "no sample with key 'nokey'"
bad_task '{"classes": [{"name": "a", "images": ["nosuch.tar#k"]}, {"name": "b", "description": "y"}]}' 1 'nosuch.tar: cannot open'
bad_task '{"classes": [{"name": "a", "images": ["../shards/val-000000.tar.zst#"]}, {"name": "b", "description": "y"}]}' 2 'images\[0\]: .*expected SHARD#KEY'
# two keys of one shard, the second missing: the message points at the missing one's place
printf '{"classes": [{"name": "a", "images": ["../shards/val-000000.tar.zst#%s", "../shards/val-000000.tar.zst#gone"]}, {"name": "b", "description": "y"}]}' "$v" > "$T/two.json"
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/two.json" -o "$W/bad.sgpm" > /dev/null 2> "$W/syn.txt"
[ $? -eq 1 ] && grep -q "classes\[0\].images\[1\]: .*no sample with key 'gone'" "$W/syn.txt" ||
  fail "synth: a missing second key is not placed: $(cat "$W/syn.txt")"
head -c 300 "$W/a/shards/val-000000.tar.zst" > "$T/cut.tar.zst"
bad_task '{"classes": [{"name": "a", "images": ["cut.tar.zst#nokey"]}, {"name": "b", "description": "y"}]}' 1 'cut.tar.zst'
"$SGPS" synth --engine "$W/nosuch.sgpe" --task "$T/task.json" -o "$W/bad.sgpm" > /dev/null 2> "$W/syn.txt"
[ $? -eq 1 ] && grep -q 'nosuch.sgpe' "$W/syn.txt" || fail "synth with a missing engine: $(cat "$W/syn.txt")"
head -c 200 "$W/a/engine.sgpe" > "$W/trunc.sgpe"
"$SGPS" synth --engine "$W/trunc.sgpe" --task "$T/task.json" -o "$W/bad.sgpm" > /dev/null 2> "$W/syn.txt"
[ $? -eq 1 ] && grep -q 'trunc.sgpe' "$W/syn.txt" || fail "synth with a truncated engine: $(cat "$W/syn.txt")"
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/task.json" -o "$W/nodir/c.sgpm" > /dev/null 2> "$W/syn.txt"
[ $? -eq 1 ] && grep -q 'nodir/c.sgpm: cannot create' "$W/syn.txt" || fail "synth into a missing folder: $(cat "$W/syn.txt")"
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/task.json" > /dev/null 2>&1
[ $? -eq 2 ] || fail "synth without -o: exit 2 expected"
"$SGPS" classify --model "$W/c1.sgpm" "$T/images/d009/$1" "$T/broken.png" "$T/images/d010/$d10" > "$W/cls.csv" 2> "$W/cls.txt"
[ $? -eq 1 ] || fail "classify with an unreadable image: exit 1 expected"
grep -q 'broken.png' "$W/cls.txt" || fail "classify: the unreadable image is not named: $(cat "$W/cls.txt")"
[ "$(wc -l < "$W/cls.csv")" -eq 3 ] || fail "classify: header + 2 rows expected: $(cat "$W/cls.csv")"
head -1 "$W/cls.csv" | grep -q '^path,predicted,p_d009,p_d010,p_d011$' || fail "classify header: $(head -1 "$W/cls.csv")"
tail -n 2 "$W/cls.csv" | awk -F, '{ s = $3 + $4 + $5; if (s < 0.999 || s > 1.001) exit 1 }' ||
  fail "classify: probabilities do not sum to 1: $(cat "$W/cls.csv")"
# names and paths holding a comma or a quote are quoted, so every row keeps its columns;
# --model may follow the images, and an image whose name begins with '-' goes after --
printf '{"classes": [{"name": "a, \\"b\\"", "description": "x"}, {"name": "c", "description": "y"}]}' > "$T/q.json"
"$SGPS" synth --engine "$W/a/engine.sgpe" --task "$T/q.json" -o "$W/q.sgpm" > /dev/null 2>&1 || fail "synth of a quoted class name"
cp "$T/images/d009/$1" "$W/x,1.png"
cp "$T/images/d009/$1" "$W/-y.png"
( cd "$W" && "$SGPS" classify x,1.png --model q.sgpm -- -y.png ) > "$W/clsq.csv" 2> "$W/cls.txt" ||
  fail "classify with --model after an image and --: $(cat "$W/cls.txt")"
head -1 "$W/clsq.csv" | grep -q '^path,predicted,"p_a, ""b""",p_c$' || fail "classify: a class name is not quoted: $(head -1 "$W/clsq.csv")"
sed -n 2p "$W/clsq.csv" | grep -q '^"x,1.png",\("a, ""b"""\|c\),[0-9.]*,[0-9.]*$' || fail "classify: a path is not quoted: $(cat "$W/clsq.csv")"
sed -n 3p "$W/clsq.csv" | grep -q '^-y.png,' || fail "classify: the image after -- is missing: $(cat "$W/clsq.csv")"
( cd "$W" && "$SGPS" classify --model q.sgpm -y.png ) > /dev/null 2> "$W/cls.txt"
[ $? -eq 2 ] && grep -q "unknown option '-y.png'" "$W/cls.txt" || fail "classify: an unknown option is not refused: $(cat "$W/cls.txt")"

echo file > "$W/plain"
"$SGPS" demo-world "$W/plain" $ARGS >/dev/null 2>&1; [ $? -eq 2 ] || fail "OUT is a file: exit 2 expected"
rm -rf "$W"
echo "demo CLI tests passed"
