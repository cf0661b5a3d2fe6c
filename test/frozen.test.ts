import { before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { switchBackend } from '../lib/backend/backend';
import { Adapter, zeroShotRow } from '../lib/adapters/adapters';
import { conv3dSame } from '../lib/networks/ops';
import { withFrozen } from '../lib/networks/frozen';
import { withPlainBackward } from '../lib/backend/backprop-memory';
import { SwinUNETR, swinUnetrConfig } from '../lib/networks/swin-unetr';
import { maxAbsDifference } from './helpers';

/**
 * A frozen backbone (SwinUNETR.forward's `frozen`, lib/networks/frozen.ts): the trained tensors
 * get the same gradients, and the frozen weights' gradients are not computed at all.
 */
let model: SwinUNETR;

before(async () => {
  await switchBackend('wasm');
  model = SwinUNETR.create(swinUnetrConfig({ featureSize: 12, outChannels: 29 }), 0);
});

/** LoRA with B drawn at random, so that A, B and the head all get gradients. */
function loraAdapter(): Adapter {
  const adapter = Adapter.create('lora', model, zeroShotRow(model, 5), 3);
  for (const [name, v] of adapter.variables) if (name.endsWith('lora_B.weight')) v.assign(tf.randomNormal(v.shape, 0, 0.05, 'float32', 4));
  return adapter;
}

/** Gradients of the LoRA tensors, with the kernels that computing them ran (counted by name) and the peak memory. */
async function gradientsOf(adapter: Adapter, image: tf.Tensor5D, frozen: boolean, checkpoint: boolean, plain = false) {
  const loss = () => tf.tidy(() => {
    const out = model.forward(image, { tuning: adapter.variables, frozen, checkpoint });
    out.logits.dispose();
    return tf.mean(tf.sigmoid(tf.sum(tf.mul(out.features, 0.1), -1))) as tf.Scalar;
  });
  let host = new Map<string, Float32Array>();
  // tf.profile returns one shared record: read it before the next profile.
  const profile = await tf.profile(() => {
    const { grads, value } = (plain ? withPlainBackward : <T>(f: () => T) => f())(() => tf.variableGrads(loss, adapter.trainable.filter((v) => !v.name.includes('head'))));
    host = new Map(Object.entries(grads).map(([key, g]) => [key, g.dataSync().slice() as Float32Array]));
    tf.dispose([value, ...Object.values(grads)]);
  });
  const kernels = (name: string) => profile.kernels.filter((k) => k.name === name).length;
  // convolution work: XNNPACK's conv2d, or the kit's own kernels (the value and input gradient, the filter gradient)
  const convolutions = kernels('Conv2D') + kernels('FseftConv3x3x3') + kernels('FseftConv3x3x3FilterGradient');
  return { host, conv2d: convolutions, products: kernels('BatchMatMul'), peakBytes: profile.peakBytes };
}

test('with a frozen backbone the trained tensors get the same gradients, with and without checkpointing, for less work and memory', async () => {
  const image = tf.randomUniform([1, 32, 32, 32, 1], 0, 1, 'float32', 8) as tf.Tensor5D;
  const adapter = loraAdapter();
  for (const checkpoint of [false, true]) {
    // tfjs's own backward pass (custom ops give every input's gradient), the kit's (only those
    // the pass reads), and the kit's with the backbone frozen.
    const plain = await gradientsOf(adapter, image, false, checkpoint, true);
    const pruned = await gradientsOf(adapter, image, false, checkpoint);
    const frozen = await gradientsOf(adapter, image, true, checkpoint);
    for (const other of [pruned, frozen]) {
      assert.equal(other.host.size, plain.host.size);
      for (const [key, g] of plain.host) {
        const scale = Math.max(...Array.from(g, Math.abs));
        assert.ok(maxAbsDifference(g, other.host.get(key)!) <= 1e-5 * scale + 1e-12, `checkpoint ${checkpoint}: gradient of ${key} differs`);
      }
    }
    assert.equal([...plain.host.values()].filter((g) => g.some((v) => v !== 0)).length, plain.host.size, 'every LoRA tensor gets a gradient');
    // Each 3x3x3 convolution on the gradient's path runs kernels for its input's gradient and for
    // its filter's (3 conv2d each, or one call of the kit's kernels each): with the backbone's
    // weights out of the pass, only the first; and
    // products lose their weight gradient. Frozen, the weights are constants of the forward pass
    // as well (not saved, not routed through checkpoints): no more work, less memory.
    for (const [label, other] of [['pruned', pruned], ['frozen', frozen]] as const) {
      assert.ok(other.conv2d < plain.conv2d, `checkpoint ${checkpoint}: conv2d calls ${other.conv2d} ${label} against ${plain.conv2d}`);
      assert.ok(other.products < plain.products, `checkpoint ${checkpoint}: products ${other.products} ${label} against ${plain.products}`);
    }
    assert.ok(frozen.conv2d <= pruned.conv2d && frozen.products <= pruned.products, `checkpoint ${checkpoint}: frozen does more work than pruned`);
    assert.ok(frozen.peakBytes < plain.peakBytes, `checkpoint ${checkpoint}: peak ${frozen.peakBytes} bytes frozen against ${plain.peakBytes}`);
  }
  // Repeated frozen steps leave no tensor behind.
  const before = tf.memory().numTensors;
  for (let i = 0; i < 2; i++) await gradientsOf(adapter, image, true, true);
  assert.equal(tf.memory().numTensors, before);
  adapter.dispose();
  image.dispose();
});

test('a frozen convolution filter: same output and input gradient, no filter gradient computed', async () => {
  const x = tf.randomNormal([1, 6, 5, 4, 3], 0, 1, 'float32', 1) as tf.Tensor5D;
  const filter = tf.variable(tf.randomNormal([3, 3, 3, 3, 2], 0, 1, 'float32', 2), false);
  const loss = (input: tf.Tensor) => tf.sum(tf.square(conv3dSame(input as tf.Tensor5D, filter as unknown as tf.Tensor5D)));
  const plain = tf.grad(loss)(x);
  let frozen: tf.Tensor | undefined;
  const profile = await tf.profile(() => {
    frozen = withFrozen([filter], () => tf.grad(loss)(x));
  });
  assert.ok(maxAbsDifference(plain.dataSync(), frozen!.dataSync()) <= 1e-5 * Math.max(...Array.from(plain.dataSync(), Math.abs)));
  // Forward: 3 conv2d (one per depth tap); backward: 3 for the input's gradient, none for the filter's.
  assert.equal(profile.kernels.filter((k) => k.name === 'Conv2D').length, 6);
  tf.dispose([x, filter, plain, frozen!]);
});
