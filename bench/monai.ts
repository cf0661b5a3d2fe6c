/**
 * MONAI in the same benchmark run. When MONAI and PyTorch import (built by
 * ../shared/tools/monai-env.sh into /tmp/monai12 and /tmp/pyextra, or wherever MONAI_PYTHONPATH
 * points), the benches run MONAI's side through the Python scripts in bench/monai/ and print its
 * figures next to the kit's; otherwise they print the reference figures of shared/baselines.md,
 * labelled as such.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const PYTHON = process.env.MONAI_PYTHON ?? '/usr/bin/python3';
const PYTHONPATH = process.env.MONAI_PYTHONPATH ?? '/tmp/monai12:/tmp/pyextra';
const SCRIPTS = path.resolve(__dirname, '..', '..', 'bench', 'monai');

let availability: { ok: boolean; reason: string } | undefined;

/** Whether MONAI runs here, and what it is (or why not). */
export function monaiAvailable(): { ok: boolean; reason: string } {
  if (process.argv.includes('--no-monai')) return (availability = { ok: false, reason: '--no-monai' });
  if (availability) return availability;
  const probe = spawnSync(PYTHON, ['-c', 'import monai, torch; print("MONAI", monai.__version__, "PyTorch", torch.__version__)'], {
    env: { ...process.env, PYTHONPATH },
    encoding: 'utf8',
  });
  availability = probe.status === 0 ? { ok: true, reason: probe.stdout.trim() } : { ok: false, reason: `MONAI does not import with ${PYTHON} and PYTHONPATH=${PYTHONPATH} (../shared/tools/monai-env.sh builds it)` };
  return availability;
}

/** Runs bench/monai/<script> with `args` and returns its last line parsed as JSON. */
export function runMonai<T>(script: string, args: string[]): T {
  const run = spawnSync(PYTHON, [path.join(SCRIPTS, script), ...args], { env: { ...process.env, PYTHONPATH }, encoding: 'utf8', maxBuffer: 1 << 24 });
  if (run.status !== 0) throw new Error(`MONAI's ${script} failed: ${(run.stderr || run.stdout).trim().split('\n').slice(-3).join(' | ')}`);
  const lines = run.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as T;
}
