/**
 * npm run bench:preprocess [-- --no-monai] — time and peak memory of the preprocessing chain (load
 * image + label, orientation RAS, 1.5 mm resampling, HU window, foreground crop), the work MONAI's
 * chain covers, and `fseft preprocess` as a whole process (start-up and writes included):
 *   (n) a 512 x 512 x 300 int16 CT of noise at 0.78 x 0.78 x 1.25 mm (LPS, .nii.gz) with a label:
 *       the foreground crop keeps the whole field (267 x 267 x 250 at 1.5 mm); generated once
 *   (a) a 512 x 512 x 300 phantom at the same geometry (its crop is smaller); generated once
 *   (b) shared/data/totalseg-example/example_ct_sm with its label (skipped when absent)
 * In-process figures run in a fresh process per scenario, so that its peak resident memory (VmHWM)
 * is its own. MONAI's chain runs in the same bench when MONAI imports (bench/monai.ts), else its
 * reference figures of shared/baselines.md are printed, labelled as such.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { generatePhantom } from '../lib/data/synth/phantom';
import { Volume } from '../lib/io/volume';
import { monaiAvailable, runMonai } from './monai';
import { readNifti, writeNifti } from '../lib/io/nifti';
import { preprocessCase } from '../lib/transforms/preprocess';
import { Rng } from '../lib/util/random';

/** MONAI's chain in-process, median of 3, on a quiet machine of this kind (shared/baselines.md, 2026-11-28); none for the phantom. */
const MONAI_REFERENCE: Record<string, number | undefined> = { n: 6.3, b: 1.0 };
const CLI = path.resolve(__dirname, '..', 'lib', 'cli', 'main.js');
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

/** 512 x 512 x 300 int16 noise in [-1000, 1000] HU (nearly every voxel is foreground), with a ball label. */
async function ensureNoiseCt(): Promise<{ image: string; label: string }> {
  const image = path.join(CACHE, 'noise_512x512x300.nii.gz');
  const label = path.join(CACHE, 'noise_seg_512x512x300.nii.gz');
  if (fs.existsSync(image) && fs.existsSync(label)) return { image, label };
  console.log(`generating the 512 x 512 x 300 noise CT once (cached in ${CACHE}) ...`);
  const shape: [number, number, number] = [512, 512, 300];
  const spacing = [0.78, 0.78, 1.25];
  // LPS on disk: the first two axes point to -x and -y in RAS.
  const affine = [
    [-spacing[0], 0, 0, 200],
    [0, -spacing[1], 0, 200],
    [0, 0, spacing[2], -180],
    [0, 0, 0, 1],
  ];
  const rng = new Rng(15);
  const voxels = new Int16Array(shape[0] * shape[1] * shape[2]);
  for (let i = 0; i < voxels.length; i++) voxels[i] = Math.floor(rng.next() * 2001) - 1000;
  const mask = new Uint8Array(voxels.length);
  let o = 0;
  for (let k = 0; k < shape[2]; k++) for (let j = 0; j < shape[1]; j++) for (let i = 0; i < shape[0]; i++, o++) mask[o] = (i - 256) ** 2 + (j - 256) ** 2 + ((k - 150) * 1.6) ** 2 < 100 ** 2 ? 1 : 0;
  await writeNifti(label, new Volume(mask, shape, affine));
  await writeNifti(image, new Volume(voxels, shape, affine));
  return { image, label };
}

/** `fseft preprocess` of one case as a whole process (start-up, load, chain, writes): median wall time of 3. */
function wholeProcessSeconds(image: string, label: string): number {
  const times: number[] = [];
  for (let run = 0; run < 3; run++) {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'fseft-bench-cli-'));
    const start = performance.now();
    const child = spawnSync(process.execPath, [CLI, 'preprocess', '--image', image, '--label', label, '--out', path.join(out, 'case')], { encoding: 'utf8' });
    times.push((performance.now() - start) / 1000);
    fs.rmSync(out, { recursive: true, force: true });
    if (child.status !== 0) throw new Error(`fseft preprocess failed: ${child.stderr}`);
  }
  return median(times);
}

/** MONAI's load + chain in-process for one case: measured now when MONAI runs here, else the reference. */
function monaiSeconds(scenario: string, image: string, label: string): { seconds?: number; source: string } {
  if (!monaiAvailable().ok) return { seconds: MONAI_REFERENCE[scenario], source: MONAI_REFERENCE[scenario] ? 'shared/baselines.md' : 'not measured' };
  const measured = runMonai<{ seconds: number }>('preprocess.py', ['--image', image, '--label', label, '--threads', String(os.availableParallelism()), '--repeat', '3']);
  return { seconds: measured.seconds, source: 'same run' };
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
  const noise = await ensureNoiseCt();
  const large = await ensureLargeCt();
  const scenarios: Array<[string, string, string, string]> = [
    ['n', '512x512x300 int16 noise 0.78x0.78x1.25 mm (LPS, .nii.gz) + label', noise.image, noise.label],
    ['a', '512x512x300 int16 phantom 0.78x0.78x1.25 mm (LPS, .nii.gz) + label', large.image, large.label],
  ];
  if (fs.existsSync(path.join(EXAMPLE, 'example_ct_sm.nii.gz'))) {
    scenarios.push(['b', 'example_ct_sm 122x101x30 3 mm + label', path.join(EXAMPLE, 'example_ct_sm.nii.gz'), path.join(EXAMPLE, 'example_seg.nii.gz')]);
  } else {
    console.log(`(b) skipped: ${EXAMPLE} not found`);
  }
  console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} x ${os.availableParallelism()}; MONAI: ${monaiAvailable().reason}`);
  console.log('scenario | output shape | load (median of 3) | chain | load + chain | MONAI load + chain | kit / MONAI | write .nii.gz (in-process) | fseft preprocess, whole process | whole / MONAI | peak RSS in-process (above start) | raw input voxels | peak / raw');
  for (const [scenario, description, image, label] of scenarios) {
    const run = spawnSync(process.execPath, ['--expose-gc', __filename, scenario, image, label], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (run.status !== 0) throw new Error(`scenario ${scenario} failed: ${run.stderr}`);
    const m = JSON.parse(run.stdout) as Measurement;
    const load = median(m.loadSeconds);
    const pre = median(m.preprocessSeconds);
    const total = median(m.loadSeconds.map((l, i) => l + m.preprocessSeconds[i]));
    const whole = wholeProcessSeconds(image, label);
    const monai = monaiSeconds(scenario, image, label);
    const ratio = (kit: number) => (monai.seconds ? `${(kit / monai.seconds).toFixed(2)}` : '-');
    const above = m.peakRss - m.baselineRss;
    console.log(
      `(${scenario}) ${description} | ${m.outputShape.join('x')} | ${load.toFixed(2)} s | ${pre.toFixed(2)} s | ${total.toFixed(2)} s | ${monai.seconds ? `${monai.seconds.toFixed(2)} s (${monai.source})` : monai.source} | ${ratio(total)} | ${m.writeSeconds.toFixed(2)} s | ${whole.toFixed(2)} s | ${ratio(whole)} | ${mb(m.peakRss)} (${mb(above)}) | ${mb(m.inputVoxelBytes)} | ${(above / m.inputVoxelBytes).toFixed(2)}x`,
    );
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
