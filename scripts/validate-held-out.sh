#!/usr/bin/env bash
# Scores a foundation model on fresh, fully labelled phantoms that no pretraining run has seen:
# 12 volumes of each source institution ('source', whose datasets are synth-btcv, -chaos, -kits and
# -msd-pancreas, and 'site-c', whose are synth-amos and synth-msd-spleen) and 12 of the shifted
# target institution (site-b), every volume labelling all eleven organs, so each organ's Dice is a
# mean over 12 volumes (pretraining's own --val-cases 1 holds out one volume per dataset, so an
# organ that one dataset labels rests on a single volume there). Only site-c's synth-amos labels
# the duodenum: on 'source' volumes its Dice measures a shift of institution as well. Records the
# tables in the model's config.json as provenance.validation.source-fresh, .site-c-fresh and
# .target-fresh.
#
#   scripts/validate-held-out.sh <model dir> [work dir] [spacing mm]
#
# Seeds 5000 / 7000 / 6000 and the dataset names make these volumes disjoint from the training
# collection (seed 1000) and from the demo's data. FSEFT_TINY=1 uses 2 volumes each.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: scripts/validate-held-out.sh <model dir> [work dir] [spacing mm]}
work=${2:-runs/held-out}
spacing=${3:-4}
cases=12
[ -z "${FSEFT_TINY:-}" ] || cases=2
fseft="node dist/lib/cli/main.js"
[ -n "${FSEFT_SKIP_BUILD:-}" ] || npm run build --silent
organs=spleen,rkidney,lkidney,gall,esophagus,liver,stomach,aorta,postcava,pancreas,duodenum
# institution, seed, record name
for run in source,5000,source-fresh site-c,7000,site-c-fresh site-b,6000,target-fresh; do
  IFS=, read -r institution seed record <<< "$run"
  $fseft synth --out "$work/raw-$institution" --name "held-out-$institution" --cases "$cases" --seed "$seed" \
    --institution "$institution" --organs "$organs" --spacing-scale 2
  $fseft preprocess --data "$work/raw-$institution" --out "$work/prep-$institution-${spacing}mm" --spacing "$spacing"
  $fseft validate --model "$model" --data "$work/prep-$institution-${spacing}mm/collection.json" \
    --out "$model/validation-$record.json" --record "$record"
done
