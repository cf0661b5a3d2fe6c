import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { readNpy } from '../lib/io/npy';
import { CLI, FIXTURE_DIR, FIXTURE_SKIP, tempDir } from './helpers';
import { checkParity } from './parity-helpers';

test('MONAI parity on wasm: logits, five hidden states and decoder features within 1e-3', { skip: FIXTURE_SKIP }, async (t) => {
  const errors = await checkParity('wasm');
  t.diagnostic(`max abs errors (wasm): ${JSON.stringify(errors)}`);
});

test('fseft import-torch + forward reproduce the MONAI logits', { skip: FIXTURE_SKIP }, () => {
  const dir = tempDir();
  const env = { ...process.env, FSEFT_BACKEND: 'wasm' };
  const imported = spawnSync(process.execPath, [CLI, 'import-torch', path.join(FIXTURE_DIR, 'swinunetr_f12_r64.pt'), '--arch', 'swinunetr', '--feature-size', '12', '--out-channels', '3', '--out', path.join(dir, 'model')], { encoding: 'utf8', env });
  assert.equal(imported.status, 0, imported.stderr);
  assert.match(imported.stdout, /loaded 151 of 151 parameter tensors/);
  assert.match(imported.stdout, /4,078,077 parameters/);
  const output = path.join(dir, 'logits.npy');
  const forward = spawnSync(process.execPath, [CLI, 'forward', '--model', path.join(dir, 'model'), '--input', path.join(FIXTURE_DIR, 'input.npy'), '--output', output], { encoding: 'utf8', env });
  assert.equal(forward.status, 0, forward.stderr);
  assert.match(forward.stderr, /fseft: backend wasm/);
  const ours = readNpy(output);
  const reference = readNpy(path.join(FIXTURE_DIR, 'logits.npy'));
  assert.deepEqual(ours.shape, [1, 3, 64, 64, 64]);
  let worst = 0;
  for (let i = 0; i < ours.data.length; i++) worst = Math.max(worst, Math.abs(ours.data[i] - reference.data[i]));
  assert.ok(worst <= 1e-3, `max abs error ${worst}`);
  const bad = spawnSync(process.execPath, [CLI, 'forward', '--model', path.join(dir, 'model'), '--input', path.join(FIXTURE_DIR, 'logits.npy'), '--output', path.join(dir, 'x.npy')], { encoding: 'utf8', env });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /logits\.npy: the array has 3 channels, the model expects 1/);
});
