#!/bin/bash
# shards_bound.sh SHARD DIR — the extraction half of the bench/shards bound:
# `zstd -dc SHARD | tar -x` (or `tar -xf` for plain .tar) into DIR (use tmpfs,
# e.g. /dev/shm), pinned to one core. Prints "extract REAL USER SYS" in
# seconds; bench_shards adds the libjpeg-turbo decode of the extracted files.
set -euo pipefail
shard=$1
dir=$2
rm -rf "$dir"
mkdir -p "$dir"
pin=""
command -v taskset >/dev/null && pin="taskset -c 0"
TIMEFORMAT="extract %R %U %S"
case "$shard" in
  *.zst) time ($pin zstd -q -dc "$shard" | $pin tar -x -C "$dir") ;;
  *.gz) time ($pin tar -xzf "$shard" -C "$dir") ;;
  *) time ($pin tar -xf "$shard" -C "$dir") ;;
esac 2>&1
