#!/usr/bin/env bash
# The drag benchmark's manipulation and paired sections over many pairs, in shards of 10 pairs,
# one method per process, each shard saved as soon as it is done (a long CPU run can be stopped
# and what finished is kept). Merge with:
#   python -m bench drag --merge docs/results/drag_shards/*.json --out docs/results/drag_100.json
# Usage: bench/drag_shards.sh METHOD [PAIRS] [SHARD]   e.g. bench/drag_shards.sh draggan 100 10
set -euo pipefail
method=${1:?method: default or draggan}
pairs=${2:-100}
shard=${3:-10}
out=docs/results/drag_shards
mkdir -p "$out"
export OMP_WAIT_POLICY=PASSIVE  # idle threads must not spin on a shared machine
for ((first = 0; first < pairs; first += shard)); do
    file="$out/${method}_$(printf %03d "$first").json"
    [[ -s $file ]] && continue  # done by an earlier run
    python -m bench drag --methods "$method" --sections manipulation,paired --threads 1 \
        --first-pair "$first" --pairs "$shard" --out "$file.part" > /dev/null
    mv "$file.part" "$file"
done
