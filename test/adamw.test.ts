import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { switchBackend } from '../lib/backend/backend';
import { AdamW } from '../lib/training/adamw';
import { fusedAdamWAvailable } from '../lib/training/wasm-adamw';
import { Rng } from '../lib/util/random';

/** Three AdamW steps (weight decay, a scaled learning rate on the second variable) from seeded values and gradients. */
async function threeSteps(): Promise<{ initial: Float32Array[]; params: Float32Array[]; moments: Float32Array[]; tensorsAfter: number; tensorsBefore: number }> {
  const rng = new Rng(11);
  const values = (n: number, scale: number) => Float32Array.from({ length: n }, () => scale * rng.normal());
  // 4,099 values: SIMD vectors and a tail of 3; 2 values: the tail alone.
  const sizes = [4099, 2];
  const initial = sizes.map((n) => values(n, 1));
  const variables = initial.map((v) => tf.variable(tf.tensor1d(v)));
  const gradients = [0, 1, 2].map(() => sizes.map((n) => values(n, 0.1)));
  const optimizer = new AdamW({ learningRate: 1e-3, weightDecay: 0.05 });
  optimizer.rateScale.set(variables[1], 20);
  const tensorsBefore = tf.memory().numTensors;
  for (const step of gradients) optimizer.apply(new Map(variables.map((v, i) => [v, tf.tensor1d(step[i])])));
  const tensorsAfter = tf.memory().numTensors;
  const state = await optimizer.exportState(new Map(variables.map((v, i) => [v, `w${i}`])));
  const params = await Promise.all(variables.map(async (v) => (await v.data()) as Float32Array));
  optimizer.dispose();
  tf.dispose(variables);
  // The moments were made on the first step: 4 more tensors than before it.
  return { initial, params, moments: state.tensors.map((t) => t.data), tensorsAfter: tensorsAfter - 4, tensorsBefore };
}

test('AdamW on wasm (one fused SIMD pass per variable) equals the elementwise path on cpu over three steps, parameters and moments', async () => {
  await switchBackend('cpu');
  const want = await threeSteps();
  await switchBackend('wasm');
  assert.ok(fusedAdamWAvailable(tf.zeros([1])), 'the fused update serves float32 variables on wasm');
  const got = await threeSteps();
  assert.equal(got.tensorsAfter, got.tensorsBefore, 'no tensors left behind');
  for (const [label, a, b] of [['parameters', got.params, want.params], ['moments', got.moments, want.moments]] as const) {
    a.forEach((values, i) => {
      let worst = 0;
      for (let j = 0; j < values.length; j++) worst = Math.max(worst, Math.abs(values[j] - b[i][j]) / Math.max(1e-6, Math.abs(b[i][j])));
      assert.ok(worst < 2e-5, `${label} ${i}: relative difference ${worst}`);
    });
  }
  // Each step moves a parameter by about its learning rate (Adam's normalised step).
  got.params.forEach((values, i) => {
    const moved = values.reduce((sum, v, j) => sum + Math.abs(v - got.initial[i][j]), 0) / values.length;
    assert.ok(moved > (i === 0 ? 5e-4 : 1e-2), `variable ${i} moved ${moved} on average`);
  });
});
