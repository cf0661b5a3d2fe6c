#!/bin/sh
# One lent-GPU session: the WebGPU backend (Dawn's Node binding) checked against wasm and timed.
# Run from the repository root on the GPU machine with the carried folders .gl (libvulkan1 .deb),
# .gpu (node.xz, node_modules.tar.xz: tfjs, tfjs-backend-webgpu, webgpu) and dist (built here).
# Writes agreement.txt, bench.txt and e2e.txt (synth, adapt with adapter + TI and with LoRA,
# predict, each phase timed: scripts/e2e-timing.sh) under $OUT.
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
NODE=$(command -v node || true)
if [ -z "$NODE" ] || ! "$NODE" -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)'; then
  xz -dc .gpu/node.xz > /tmp/node && chmod +x /tmp/node && NODE=/tmp/node
fi
echo "node: $NODE $($NODE -v)"
tar xJf .gpu/node_modules.tar.xz
export XDG_RUNTIME_DIR=/tmp
for lib in $(ldconfig -p | awk '/libGLX_nvidia.so.0|libnvidia-glcore|libvulkan.so.1/ {print $NF}'); do echo "$lib"; ldd "$lib" | grep 'not found'; done
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
  if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd" VK_ICD_FILENAMES="$icd"; echo "vulkan ICD: $icd"; break; fi
done
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
timeout 200 "$NODE" dist/bench/agreement.js --backend webgpu --reference wasm 2>&1 | grep -v '^    at ' | tee "$OUT/agreement.txt" | tail -40
# BENCH_ARGS adds options, e.g. "--checkpoint none".
timeout 300 "$NODE" dist/bench/model.js --backends webgpu --configs a,b --repeat 3 ${BENCH_ARGS:-} 2>&1 | grep -v '^    at ' | tee "$OUT/bench.txt" | tail -40
timeout 300 env BACKEND=webgpu NODE="$NODE" OUT="$OUT" sh scripts/e2e-timing.sh 2>&1 | grep -v '^    at ' | tail -20
