/**
 * npm run bench:preprocess — time and peak memory of the preprocessing chain (load image + label,
 * orientation RAS, 1.5 mm resampling, HU window, foreground crop), the work MONAI's timing in
 * shared/baselines.md covers; writing the outputs is timed separately.
 *   (a) a 512 x 512 x 300 int16 CT at 0.78 x 0.78 x 1.25 mm (.nii.gz), generated here once
 *   (b) shared/data/totalseg-example/example_ct_sm with its label (skipped when absent)
 * Each scenario runs in a fresh process so that its peak resident memory (VmHWM) is its own.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { generatePhantom } from '../lib/data/synth/phantom';
import { readNifti, writeNifti } from '../lib/io/nifti';
import { preprocessCase } from '../lib/transforms/preprocess';
import { Rng } from '../lib/util/random';

const MONAI_SECONDS: Record<string, number> = { a: 15.0, b: 1.0 };
const EXAMPLE = path.resolve(__dirname, '..', '..', '..', 'shared', 'data', 'totalseg-example');
const CACHE = path.join(os.tmpdir(), 'fseft-bench');

interface Measurement {
  scenario: string;
  inputVoxelBytes: number;
  outputShape: number[];
  loadSeconds: number[];
  preprocessSeconds: number[];
  writeSeconds: number;
  baselineRss: number;
  peakRss: number;
}

function peakRssBytes(): number {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const match = /VmHWM:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) * 1024 : process.memoryUsage().rss;
}

async function ensureLargeCt(): Promise<{ image: string; label: string }> {
  const image = path.join(CACHE, 'ct_512x512x300.nii.gz');
  const label = path.join(CACHE, 'seg_512x512x300.nii.gz');
  if (fs.existsSync(image) && fs.existsSync(label)) return { image, label };
  console.log(`generating the 512 x 512 x 300 test CT once (cached in ${CACHE}) ...`);
  const phantom = generatePhantom(new Rng(2026), {
    institution: {
      name: 'bench', description: '512 x 512 x 300 at 0.78 x 0.78 x 1.25 mm', spacing: [0.78, 0.78, 1.25], orientation: 'LPS',
      fov: [512 * 0.78, 512 * 0.78, 300 * 1.25], zCenter: 20, contrast: 1, huOffset: 0, noiseSigma: 15, blurMm: 0,
    },
  });
  await writeNifti(label, phantom.label);
  await writeNifti(image, phantom.image);
  return { image, label };
}

async function measure(scenario: string, imageFile: string, labelFile: string): Promise<Measurement> {
  const baselineRss = process.memoryUsage().rss;
  const loadSeconds: number[] = [];
  const preprocessSeconds: number[] = [];
  let last: ReturnType<typeof preprocessCase> | undefined;
  let inputVoxelBytes = 0;
  for (let run = 0; run < 3; run++) {
    last = undefined;
    (global as { gc?: () => void }).gc?.();
    let t = performance.now();
    const [image, label] = await Promise.all([readNifti(imageFile), readNifti(labelFile)]);
    loadSeconds.push((performance.now() - t) / 1000);
    inputVoxelBytes = image.data.byteLength + label.data.byteLength;
    t = performance.now();
    last = preprocessCase({ image, label });
    preprocessSeconds.push((performance.now() - t) / 1000);
  }
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'fseft-bench-out-'));
  const t = performance.now();
  await Promise.all([writeNifti(path.join(out, 'image.nii.gz'), last!.image), writeNifti(path.join(out, 'label.nii.gz'), last!.label!)]);
  const writeSeconds = (performance.now() - t) / 1000;
  fs.rmSync(out, { recursive: true, force: true });
  return { scenario, inputVoxelBytes, outputShape: last!.image.shape, loadSeconds, preprocessSeconds, writeSeconds, baselineRss, peakRss: peakRssBytes() };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

async function main(): Promise<void> {
  const child = process.argv[2];
  if (child) {
    const [scenario, image, label] = process.argv.slice(2);
    process.stdout.write(JSON.stringify(await measure(scenario, image, label)));
    return;
  }
  fs.mkdirSync(CACHE, { recursive: true });
  const large = await ensureLargeCt();
  const scenarios: Array<[string, string, string, string]> = [['a', '512x512x300 int16 0.78x0.78x1.25 mm (LPS, .nii.gz)', large.image, large.label]];
  if (fs.existsSync(path.join(EXAMPLE, 'example_ct_sm.nii.gz'))) {
    scenarios.push(['b', 'example_ct_sm 122x101x30 3 mm + label', path.join(EXAMPLE, 'example_ct_sm.nii.gz'), path.join(EXAMPLE, 'example_seg.nii.gz')]);
  } else {
    console.log(`(b) skipped: ${EXAMPLE} not found`);
  }
  console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} x ${os.availableParallelism()}, one thread per case`);
  console.log('scenario | output shape | load (median of 3) | preprocess | load + preprocess | MONAI | speed-up | write .nii.gz | peak RSS (above start) | raw input voxels | peak / raw');
  for (const [scenario, description, image, label] of scenarios) {
    const run = spawnSync(process.execPath, ['--expose-gc', __filename, scenario, image, label], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (run.status !== 0) throw new Error(`scenario ${scenario} failed: ${run.stderr}`);
    const m = JSON.parse(run.stdout) as Measurement;
    const load = median(m.loadSeconds);
    const pre = median(m.preprocessSeconds);
    const total = median(m.loadSeconds.map((l, i) => l + m.preprocessSeconds[i]));
    const above = m.peakRss - m.baselineRss;
    console.log(
      `(${scenario}) ${description} | ${m.outputShape.join('x')} | ${load.toFixed(2)} s | ${pre.toFixed(2)} s | ${total.toFixed(2)} s | ${MONAI_SECONDS[scenario].toFixed(1)} s | ${(MONAI_SECONDS[scenario] / total).toFixed(1)}x | ${m.writeSeconds.toFixed(2)} s | ${mb(m.peakRss)} (${mb(above)}) | ${mb(m.inputVoxelBytes)} | ${(above / m.inputVoxelBytes).toFixed(2)}x`,
    );
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
