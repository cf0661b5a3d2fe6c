import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { switchBackend } from '../lib/backend/backend';
import { bcePerChannel, diceLossPerChannel, exclusionBce, partialLabelLoss } from '../lib/losses/segmentation';
import { referenceSizePenalty, sizeConstraintLoss } from '../lib/losses/size-constraint';
import { warmupCosine } from '../lib/training/schedule';
import { stepDiceLoss } from '../lib/training/adapt';

const close = (a: number, b: number, tolerance = 1e-5) => assert.ok(Math.abs(a - b) <= tolerance, `${a} vs ${b}`);

test('size constraint (Eq. 2): below, inside and above the margin, both forms, with gradients', async () => {
  await switchBackend('cpu');
  const value = async (s: number, form: 'paper' | 'normalised' = 'paper') => (await sizeConstraintLoss(tf.scalar(s), 100, 0.25, form).data())[0];
  close(await value(60), 15); // |60 - 0.75 * 100|
  close(await value(100), 0);
  close(await value(75), 0);
  close(await value(125), 0);
  close(await value(140), 15); // |140 - 1.25 * 100|
  close(await value(60, 'normalised'), 15 / 100);
  close(await value(140, 'normalised'), 15 / 140);
  const gradient = async (s: number) => (await tf.grad((x: tf.Tensor) => sizeConstraintLoss(x as tf.Scalar, 100, 0.25))(tf.scalar(s)).data())[0];
  assert.deepEqual([await gradient(60), await gradient(100), await gradient(140)], [-1, 0, 1]);
  assert.throws(() => sizeConstraintLoss(tf.scalar(1), 0, 0.25), /target size must be positive/);
});

test("the reference code's TI penalty: both sides of the margin by hand, none inside, the gradient of |rel| with the max held constant", async () => {
  await switchBackend('cpu');
  const penalty = (s: number) => referenceSizePenalty(tf.scalar(s), 100, 0.3);
  // S_hat = 50: rel = (100 - 50) / max(50, 100) = 0.5 > 0.3 -> |rel| - gamma = 0.2.
  close((await penalty(50)!.data())[0], 0.2);
  // S_hat = 200: rel = (100 - 200) / 200 = -0.5 < -0.3 -> |rel| + gamma = 0.8.
  close((await penalty(200)!.data())[0], 0.8);
  // Inside the margin: rel = 0.25 (S_hat 75) and -0.2 (S_hat 125): no penalty, no step.
  assert.equal(penalty(75), undefined);
  assert.equal(penalty(125), undefined);
  assert.equal(penalty(70), undefined, 'rel = 0.3 is on the margin: no step');
  // d|rel|/dS_hat with max(S_hat, S) as a constant: -(-1/100) ... below: rel > 0, d|rel| = -1/100; above: +1/200.
  const gradient = async (s: number) => (await tf.grad((x: tf.Tensor) => referenceSizePenalty(x as tf.Scalar, 100, 0.3)!)(tf.scalar(s)).data())[0];
  close(await gradient(50), -1 / 100);
  close(await gradient(200), 1 / 200);
  assert.throws(() => referenceSizePenalty(tf.scalar(1), 0, 0.3), /target size must be positive/);
});

test('Dice of a step: pooled over the crops or the mean of per-crop Dice, by hand', async () => {
  await switchBackend('cpu');
  // Two one-voxel-pair crops; sigmoid(30) ~ 1, sigmoid(-30) ~ 0.
  // crop A: prediction [1, 0], target [1, 0] -> Dice 1; crop B (no organ): prediction [1, 0], target [0, 0] -> Dice smooth/(1 + smooth).
  const crop = (values: number[]) => tf.tensor5d(values, [1, 1, 1, 2, 1]);
  const logits = [crop([30, -30]), crop([30, -30])];
  const targets = [crop([1, 0]), crop([0, 0])];
  // Per crop, smooth 1: A: 1 - (2 + 1)/(1 + 1 + 1) = 0; B: 1 - (0 + 1)/(1 + 0 + 1) = 0.5; mean 0.25.
  close((await stepDiceLoss(logits, targets, 'per-crop').data())[0], 0.25, 1e-6);
  // Pooled, smooth 1e-5: intersection 1, sums 2 + 1 -> 1 - 2/3.
  close((await stepDiceLoss(logits, targets, 'pooled').data())[0], 1 - 2 / 3, 1e-5);
  tf.dispose([...logits, ...targets]);
});

test('Dice and BCE losses: values by hand', async () => {
  await switchBackend('cpu');
  // sigmoid(30) ~ 1, sigmoid(0) = 0.5; target [1, 0]: intersection 1, sums 1.5 + 1.
  const logits = tf.tensor5d([30, 0], [1, 1, 1, 2, 1]);
  const target = tf.tensor5d([1, 0], [1, 1, 1, 2, 1]);
  close((await diceLossPerChannel(logits, target).data())[0], 1 - (2 + 1e-5) / (2.5 + 1e-5));
  close((await bcePerChannel(tf.tensor5d([0], [1, 1, 1, 1, 1]), tf.tensor5d([1], [1, 1, 1, 1, 1])).data())[0], Math.LN2);
  // Balanced: one positive voxel (logit 0: ln 2) against three negatives (logits 0, ln 3, -ln 3:
  // -ln(1 - p) = ln 2, ln 4, ln(4/3)); channel 2 has no positive voxel, so its negatives' mean counts whole.
  const x = tf.tensor5d([0, 0, 0, 0, Math.log(3), 0, -Math.log(3), 0], [1, 1, 1, 4, 2]);
  const t = tf.tensor5d([1, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 4, 2]);
  const balanced = await bcePerChannel(x, t, true).data();
  close(balanced[0], 0.5 * (Math.LN2 + (Math.LN2 + Math.log(4) + Math.log(4 / 3)) / 3));
  close(balanced[1], Math.LN2);
  const plain = await bcePerChannel(x, t).data();
  close(plain[0], (2 * Math.LN2 + Math.log(4) + Math.log(4 / 3)) / 4);
});

test('balanced BCE: a small organ pulls its logits up as hard as the background pulls them down', async () => {
  await switchBackend('cpu');
  // One positive voxel among 1,000, every logit -5: the plain mean's pull on the positive voxel is
  // 1/1000 of the total; balanced, the positive and the negatives' gradients each sum to about 1/2.
  const n = 1000;
  const logits = tf.fill([1, 1, 1, n, 1], -5) as tf.Tensor5D;
  const target = tf.tensor5d(Float32Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 0)), [1, 1, 1, n, 1]);
  for (const [balanced, positivePull] of [[false, 1 / n], [true, 0.5]] as const) {
    const grad = await tf.grad((z: tf.Tensor) => tf.sum(bcePerChannel(z, target, balanced)))(logits).data();
    const sigmoid = 1 / (1 + Math.exp(5));
    close(grad[0], -(1 - sigmoid) * positivePull, 1e-6);
    assert.ok(grad[1] > 0, 'a negative voxel is pushed down');
  }
  // In the partial-label loss the option is passed through to the BCE term.
  const withBalanced = await partialLabelLoss(logits, target, [1], { bce: true, balancedBce: true }).data();
  const dice = await diceLossPerChannel(logits, target).data();
  close(withBalanced[0], dice[0] + (await bcePerChannel(logits, target, true).data())[0]);
});

test('partial-label loss (Eq. 1) ignores classes the dataset does not annotate', async () => {
  await switchBackend('cpu');
  const logits = tf.tensor5d([2, -1, -3, 4, 0.5, 1], [1, 1, 1, 3, 2]);
  const target = tf.tensor5d([1, 0, 0, 1, 1, 0], [1, 1, 1, 3, 2]);
  const perClass = await diceLossPerChannel(logits, target).data();
  close((await partialLabelLoss(logits, target, [1, 0]).data())[0], perClass[0]);
  close((await partialLabelLoss(logits, target, [1, 1]).data())[0], (perClass[0] + perClass[1]) / 2);
  const grad = await tf.grad((x: tf.Tensor) => partialLabelLoss(x, target, [1, 0]))(logits).data();
  assert.deepEqual([grad[1], grad[3], grad[5]], [0, 0, 0], 'no gradient reaches the unannotated class');
  assert.ok(grad[0] !== 0);
  assert.throws(() => partialLabelLoss(logits, target, [0, 0]), /marks no class/);
  assert.throws(() => partialLabelLoss(logits, target, [1]), /1 entries for 2 output channels/);
});

test('exclusion BCE: the labelled organs are known negatives of an unlabelled disjoint class, nothing else is', async () => {
  await switchBackend('cpu');
  // Four voxels, channels [organ A (annotated), organ B (unlabelled), tumour T inside A (unlabelled, not disjoint)].
  const logits = tf.tensor5d([1, 2, 3, -1, 0.5, -2, 0, -3, 1, 2, 1.5, 0], [1, 1, 1, 4, 3]);
  const target = tf.tensor5d([1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 4, 3]);
  const annotated = [1, 0, 0];
  const disjoint = [1, 1, 0];
  const softplus = (x: number) => Math.log1p(Math.exp(x));
  // B's BCE with target 0 on A's two voxels (logits 2 and 0.5), as a mean over the 4 voxels.
  const expected = (softplus(2) + softplus(0.5)) / 4;
  close((await exclusionBce(logits, target, annotated, disjoint).data())[0], expected);
  const grad = await tf.grad((x: tf.Tensor) => exclusionBce(x, target, annotated, disjoint))(logits).data();
  const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
  close(grad[1], sigmoid(2) / 4);
  close(grad[4], sigmoid(0.5) / 4);
  assert.deepEqual([grad[7], grad[10]], [0, 0], 'voxels no annotated organ labels are not negatives of B');
  assert.deepEqual([grad[0], grad[3], grad[6], grad[9]], [0, 0, 0, 0], 'the annotated class gets nothing from it');
  assert.deepEqual([grad[2], grad[5], grad[8], grad[11]], [0, 0, 0, 0], 'a class that may lie inside A gets nothing');
  // In the partial-label loss it joins the annotated classes' sum, under the same normalisation.
  const plain = (await partialLabelLoss(logits, target, annotated, { bce: true }).data())[0];
  const withExclusion = (await partialLabelLoss(logits, target, annotated, { bce: true, exclusion: { disjoint } }).data())[0];
  close(withExclusion - plain, expected);
  // A volume that annotates every disjoint class has nothing to exclude.
  close((await exclusionBce(logits, target, [1, 1, 0], disjoint).data())[0], 0);
  assert.throws(() => exclusionBce(logits, target, annotated, [1, 1]), /2 entries for 3 output channels/);
});

test('warm-up cosine schedule', () => {
  close(warmupCosine(0, 110, 10, 1), 0);
  close(warmupCosine(5, 110, 10, 1), 0.5);
  close(warmupCosine(10, 110, 10, 1), 1);
  close(warmupCosine(60, 110, 10, 1), 0.5);
  close(warmupCosine(110, 110, 10, 1), 0);
  close(warmupCosine(200, 110, 10, 1), 0);
});
