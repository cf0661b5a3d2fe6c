#!/usr/bin/env bash
# Reproduces data/models/default, the small foundation model the demo uses (about 2 h on 2 cores):
# a synthetic partially labelled collection (6 source datasets, seed 1000, never the demo's seed),
# preprocessed at 4 mm, then SwinUNETR F = 12 pretrained on 32^3 patches with the masked loss of
# Eq. 1 (Dice + BCE): 16 epochs sampling positives anywhere in the labels, then 10 epochs with
# class-balanced sampling so that small organs are seen as often as the liver.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/default-model}
npm run build --silent
node dist/lib/cli/main.js synth --collection --out "$out/raw" --cases 4 --target-cases 1 --seed 1000 --spacing-scale 2
node dist/lib/cli/main.js preprocess --data "$out/raw/collection.json" --out "$out/prep" --spacing 4
node dist/lib/cli/main.js pretrain --data "$out/prep/collection.json" --out "$out/stage1" \
  --feature-size 12 --roi 32 --epochs 16 --samples 2 --lr 5e-4 --bce --no-checkpoint --seed 0
node dist/lib/cli/main.js pretrain --data "$out/prep/collection.json" --out "$out/model" --init "$out/stage1" \
  --feature-size 12 --roi 32 --epochs 10 --samples 2 --lr 3e-4 --bce --balance-classes --no-checkpoint --seed 1
echo "model: $out/model (copy config.json, weights.safetensors and log.jsonl to data/models/default)"
