import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

/** Starts the backend in a fresh process (the choice is made once per process) and reports what it logged. */
function start(preferred: string): { status: number | null; stdout: string; stderr: string } {
  const script = `require(${JSON.stringify(require.resolve('../lib/backend/backend'))}).initBackend(process.argv[1] || undefined)
    .then((c) => console.log('chose ' + c.name), (e) => { console.log('error: ' + e.message); process.exitCode = 3; });`;
  return spawnSync(process.execPath, ['-e', script, preferred], { encoding: 'utf8', env: { ...process.env, FSEFT_BACKEND: '' } });
}

function installed(name: string): boolean {
  try {
    require.resolve(name);
    return true;
  } catch {
    return false;
  }
}

test('automatic choice: wasm when no native binding is installed, with one log line saying why', { skip: installed('@tensorflow/tfjs-node-gpu') && 'a native binding is installed here' }, () => {
  const result = start('');
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /chose wasm/);
  const lines = result.stderr.split('\n').filter((line) => line.startsWith('fseft: backend'));
  assert.equal(lines.length, 1);
  assert.match(lines[0], /^fseft: backend wasm \(WebAssembly SIMD\/XNNPACK; fallback: tensorflow: no native binding installed/);
});

test('an unknown backend name is refused with the list of names', () => {
  const result = start('cuda');
  assert.equal(result.status, 3);
  assert.match(result.stdout, /error: unknown backend 'cuda'; choose one of tensorflow, wasm, cpu, webgpu/);
});

test('webgpu is opt-in: asked for without its packages it fails and says what to install', { skip: installed('webgpu') && "the 'webgpu' package is installed here" }, () => {
  const result = start('webgpu');
  assert.equal(result.status, 3);
  assert.match(result.stdout, /error: backend 'webgpu' is not available \(webgpu: Dawn's Node binding is not installed or does not load \(npm install webgpu @tensorflow\/tfjs-backend-webgpu@4\.22\.0\)/);
});
