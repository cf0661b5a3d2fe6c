import { before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { switchBackend } from '../lib/backend/backend';
import { requiresGradient, untaped, withPlainBackward } from '../lib/backend/backprop-memory';
import { checkpointed } from '../lib/networks/ops';
import { unetResBlock } from '../lib/networks/unet-res-block';
import { maxAbsDifference } from './helpers';

/**
 * The backward pass releases each node's output gradients and saved tensors once it has used them
 * (lib/backend/backprop-memory.ts): same gradients as tfjs's own pass, a lower peak, nothing
 * leaked, and a gradient passed in by the caller left alone.
 */
before(async () => {
  await switchBackend('wasm');
});

type CustomOp = Parameters<typeof tf.customGrad>[0];

/** A custom op whose gradient hands its dy through unchanged to its first input. */
const passThroughSum = tf.customGrad(((a: tf.Tensor, b: tf.Tensor) => ({ value: tf.add(a, b), gradFunc: (dy: tf.Tensor) => [dy, tf.mul(dy, 1)] })) as unknown as CustomOp);

/** Exercises what the hook must survive: split (an output outside the pass), concat, a pass-through custom op, a checkpoint, shared inputs. */
function network(x: tf.Tensor, w: tf.Variable): tf.Scalar {
  const h = tf.tanh(tf.matMul(x, w));
  const [left, right] = tf.split(h, 2, 1);
  const unusedHalf = tf.split(tf.mul(h, 3), 2, 1)[1];
  const joined = tf.concat([tf.sigmoid(left), passThroughSum(right, left)], 1);
  const deep = checkpointed((a: tf.Tensor) => tf.relu(tf.mul(a, a)), [joined]);
  return tf.sum(tf.add(tf.mul(deep, h), tf.mul(unusedHalf.sum(), 0))) as tf.Scalar;
}

test('gradients are the same as tfjs\'s own backward pass, and nothing is left behind', () => {
  const x = tf.randomNormal([6, 5], 0, 1, 'float32', 1);
  const w = tf.variable(tf.randomNormal([5, 8], 0, 1, 'float32', 2));
  const gradient = () => {
    const { value, grads } = tf.variableGrads(() => network(x, w), [w]);
    const host = grads[w.name].dataSync().slice();
    tf.dispose([value, grads[w.name]]);
    return host;
  };
  const reference = withPlainBackward(gradient);
  const before = tf.memory().numTensors;
  const released = gradient();
  gradient();
  assert.equal(tf.memory().numTensors, before);
  assert.ok(maxAbsDifference(released, reference) < 1e-6, `largest difference ${maxAbsDifference(released, reference)}`);
  assert.ok(Math.max(...reference.map(Math.abs)) > 0.1, 'the reference gradient is not trivial');
  tf.dispose([x, w]);
});

test('the backward pass of a long chain no longer holds every gradient and saved tensor', async () => {
  const x = tf.variable(tf.randomUniform([200_000], 0.5, 1.5, 'float32', 3));
  const chain = () => {
    let h: tf.Tensor = x;
    for (let i = 0; i < 12; i++) h = tf.sin(tf.mul(h, 1.01));
    return tf.sum(h) as tf.Scalar;
  };
  const volume = 200_000 * 4;
  /** How far memory rises above its level at the end of the forward pass, in volumes. */
  const backwardRise = async (run: () => void) => {
    const kernels = (await tf.profile(run)).kernels;
    const forwardEnd = kernels.findIndex((k) => k.name === 'Sum') + 1;
    const backward = kernels.slice(forwardEnd).map((k) => k.totalBytesSnapshot);
    return (Math.max(...backward) - backward[0]) / volume;
  };
  const step = () => tf.dispose(Object.values(tf.variableGrads(chain, [x]).grads));
  const tfjsRise = await backwardRise(() => withPlainBackward(step));
  const releasedRise = await backwardRise(step);
  // tfjs adds two gradients per link and frees nothing (24 volumes); released, a link's saved
  // tensors and gradients go once the link is done.
  assert.ok(tfjsRise >= 20, `tfjs rises by ${tfjsRise} volumes`);
  assert.ok(releasedRise <= 6, `released rises by ${releasedRise} volumes`);
  x.dispose();
});

test('a gradient passed in by the caller survives the pass', () => {
  const x = tf.randomNormal([4, 4], 0, 1, 'float32', 5);
  const dy = tf.randomNormal([4, 4], 0, 1, 'float32', 6);
  const identityLike = tf.customGrad(((a: tf.Tensor) => ({ value: tf.clone(a), gradFunc: (g: tf.Tensor) => g })) as unknown as CustomOp);
  const [dx] = tf.grads((a: tf.Tensor) => identityLike(tf.exp(a)))([x], dy);
  assert.equal(dy.isDisposed, false);
  const expected = tf.mul(dy, tf.exp(x));
  assert.ok(maxAbsDifference(dx.dataSync(), expected.dataSync()) < 1e-6);
  tf.dispose([x, dy, dx, expected]);
});

test('a custom op with saved tensors, released by the hook, gives tfjs\'s gradients', () => {
  const square = tf.customGrad(((a: tf.Tensor, save: tf.GradSaveFunc) => {
    save([a]);
    return { value: tf.square(a), gradFunc: (dy: tf.Tensor, [saved]: tf.Tensor[]) => tf.mul(dy, tf.mul(saved, 2)) };
  }) as unknown as CustomOp);
  const x = tf.randomNormal([3, 7], 0, 1, 'float32', 7);
  const f = (a: tf.Tensor) => tf.sum(tf.mul(square(tf.add(a, 1)), tf.cos(a)));
  const reference = withPlainBackward(() => tf.grad(f)(x));
  const released = tf.grad(f)(x);
  assert.ok(maxAbsDifference(released.dataSync(), reference.dataSync()) < 1e-6);
  tf.dispose([x, reference, released]);
});

test('requiresGradient follows the trained tensors through recorded ops; untaped work records nothing', () => {
  const x = tf.randomNormal([3, 4], 0, 1, 'float32', 8);
  const w = tf.variable(tf.randomNormal([4, 2], 0, 1, 'float32', 9));
  const seen: Record<string, boolean> = {};
  let tapeLength = 0;
  const { value, grads } = tf.variableGrads(() => {
    const constant = tf.exp(x);
    const product = tf.matMul(constant, w);
    const state = (tf.engine() as unknown as { state: { activeTape: unknown[] } }).state;
    const before = state.activeTape.length;
    const skipped = untaped(() => tf.tanh(tf.matMul(constant, w)));
    tapeLength = state.activeTape.length - before;
    Object.assign(seen, { x: requiresGradient(x), w: requiresGradient(w), constant: requiresGradient(constant), product: requiresGradient(product), skipped: requiresGradient(skipped) });
    return tf.sum(tf.add(product, skipped)) as tf.Scalar;
  }, [w]);
  assert.deepEqual(seen, { x: false, w: true, constant: false, product: true, skipped: false });
  assert.equal(tapeLength, 0);
  // Only the recorded product carries w's gradient: d/dw sum(exp(x) w) = exp(x)^T 1.
  const expected = tf.matMul(tf.exp(x), tf.ones([3, 2]), true, false);
  assert.ok(maxAbsDifference(grads[w.name].dataSync(), expected.dataSync()) < 1e-5);
  assert.equal(requiresGradient(w), false, 'no gradient is being recorded after the call');
  tf.dispose([x, w, value, grads[w.name], expected]);
});

test("a decoder block's taped forward keeps only what its backward reads: the norms' and the activation's outputs", () => {
  // Real heap bytes, from the wasm allocator: tf.memory() counts a shared clone twice.
  const wasm = (tf.backend() as unknown as { wasm: { _malloc(n: number): number; _free(p: number): void } }).wasm;
  const { _malloc: malloc, _free: free } = wasm;
  const sizes = new Map<number, number>();
  let live = 0;
  wasm._malloc = (n) => {
    const p = malloc.call(wasm, n);
    sizes.set(p, n);
    live += n;
    return p;
  };
  wasm._free = (p) => {
    live -= sizes.get(p) ?? 0;
    sizes.delete(p);
    free.call(wasm, p);
  };
  try {
    const shape: [number, number, number, number, number] = [1, 16, 16, 16, 8];
    const volume = 16 ** 3 * 8 * 4;
    const [up, skip] = [1, 2].map((seed) => tf.randomNormal(shape, 0, 1, 'float32', seed) as tf.Tensor5D);
    const weights = {
      conv1: tf.variable(tf.randomNormal([3, 3, 3, 16, 8], 0, 0.1, 'float32', 3)),
      conv2: tf.variable(tf.randomNormal([3, 3, 3, 8, 8], 0, 0.1, 'float32', 4)),
      conv3: tf.variable(tf.randomNormal([16, 8], 0, 0.1, 'float32', 5)),
    };
    let rise = 0;
    const { value, grads } = tf.variableGrads(() => {
      const start = live;
      const out = unetResBlock([up, skip], weights);
      rise = (live - start) / volume;
      return tf.sum(out) as tf.Scalar;
    }, Object.values(weights));
    // Three norm outputs and the activated output. Before, the tape also kept the three
    // convolutions' outputs, their four per-part outputs (AddN saved its inputs) and the residual
    // sum (Reshape saved its input): 12 volumes.
    assert.ok(rise <= 4.5, `the taped forward holds ${rise.toFixed(2)} volumes`);
    tf.dispose([value, ...Object.values(grads), up, skip, ...Object.values(weights)]);
  } finally {
    wasm._malloc = malloc;
    wasm._free = free;
  }
});
