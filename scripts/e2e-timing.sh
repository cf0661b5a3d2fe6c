#!/bin/sh
# The kit end to end on one backend, each phase timed: synthetic data, `fseft adapt` with the
# spatial adapter + TI and with LoRA (a PEFT method: the backbone runs on every crop), `fseft
# predict` with both, and their Dice. Run from the repository root after `npm run build`:
#   BACKEND=webgpu NODE=/tmp/node OUT=/tmp/out sh scripts/e2e-timing.sh   (scripts/device-webgpu.sh does)
#   BACKEND=wasm sh scripts/e2e-timing.sh                                  (the same on CPU)
# Appends one line per phase to $OUT/e2e.txt; a failed phase prints its log's end and stops.
set -eu
NODE=${NODE:-node}
BACKEND=${BACKEND:-wasm}
OUT=${OUT:-/tmp/out}
W=${WORK:-/tmp/fseft-e2e}
rm -rf "$W"
mkdir -p "$W" "$OUT"
export FSEFT_BACKEND="$BACKEND"
fseft() { "$NODE" dist/lib/cli/main.js "$@"; }

phase() {
  name=$1
  shift
  start=$(date +%s.%N)
  if ! "$@" > "$W/$name.log" 2>&1; then
    echo "$name failed:"
    tail -5 "$W/$name.log"
    exit 1
  fi
  end=$(date +%s.%N)
  awk -v n="$name" -v s="$start" -v e="$end" -v b="$BACKEND" 'BEGIN { printf "%-18s %7.1f s  (%s)\n", n, e - s, b }' | tee -a "$OUT/e2e.txt"
}

D="$W/data"
case_image() { echo "$D/imagesTr/data_00$1.nii.gz"; }
case_label() { echo "$D/labelsTr/data_00$1.nii.gz"; }
echo "end to end on $BACKEND ($(date -u +%Y-%m-%dT%H:%MZ)); liver = label 6 of the synthetic target institution" | tee -a "$OUT/e2e.txt"
phase synth fseft synth --out "$D" --cases 3 --seed 7 --institution site-b --spacing-scale 2 --organs liver,spleen
phase adapt-adapter-ti fseft adapt --model default --organ liver --method adapter --support "$(case_image 0)=$(case_label 0):6" \
  --query "$(case_image 1)=$(case_label 1):6" --ti --ti-form normalised --epochs 20 --crops 2 --out "$W/adapter"
phase adapt-lora fseft adapt --model default --organ liver --method lora --support "$(case_image 0)=$(case_label 0):6" --epochs 5 --crops 2 --out "$W/lora"
phase predict-adapter fseft predict --model default --adapter "$W/adapter" --image "$(case_image 2)" --out "$W/adapter.nii.gz"
phase predict-lora fseft predict --model default --adapter "$W/lora" --image "$(case_image 2)" --out "$W/lora.nii.gz"
for method in adapter lora; do
  printf '%-18s ' "dice-$method" | tee -a "$OUT/e2e.txt"
  fseft evaluate --pred "$W/$method.nii.gz" --label "$(case_label 2):6" | tail -1 | tee -a "$OUT/e2e.txt"
done
grep -h "steps in" "$W/adapt-adapter-ti.log" "$W/adapt-lora.log" | tee -a "$OUT/e2e.txt"
