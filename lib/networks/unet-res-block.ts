import * as tf from '@tensorflow/tfjs-core';
import { checkpointed, checkpointedStep, conv3dSame, instanceNorm, leakyRelu, linear, pipeline, recordingGradients, releaseIntermediates } from './ops';

/** MONAI's LeakyReLU slope in its UNet blocks. */
export const LEAKY_SLOPE = 0.01;

/**
 * Weights of a MONAI UnetResBlock in the kit's layout: `conv1` and `conv2` are [k, k, k, in, out]
 * filters (k = 3, or 1 for the per-voxel variant), `conv3` the [in, out] projection present when
 * the channel count changes.
 */
export interface UnetResBlockWeights {
  conv1: tf.Tensor;
  conv2: tf.Tensor;
  conv3?: tf.Tensor;
}

/** A 'same' convolution with a [k, k, k, in, out] filter; kernel 1 is a per-voxel product. */
export function convolveSame(x: tf.Tensor, filter: tf.Tensor, kernel: 1 | 3): tf.Tensor {
  return kernel === 3 ? conv3dSame(x as tf.Tensor5D, filter as tf.Tensor5D) : linear(x, tf.reshape(filter, filter.shape.slice(-2) as [number, number]) as tf.Tensor2D);
}

/**
 * MONAI UnetResBlock (instance norm without affine, LeakyReLU 0.01): conv-norm-lrelu-conv-norm,
 * plus the input (projected and normalised when channels change), then LeakyReLU. The decoder of
 * SwinUNETR and the paper's spatial adapter both run this one function.
 */
export function unetResBlock(x: tf.Tensor5D, weights: UnetResBlockWeights, kernel: 1 | 3 = 3, segments = false): tf.Tensor5D {
  const conv = (t: tf.Tensor, filter: tf.Tensor) => convolveSame(t, filter, kernel);
  if (segments && recordingGradients()) return unetResBlockInSegments(x, weights, conv);
  const main = pipeline(
    x,
    (t) => conv(t, weights.conv1),
    (t) => instanceNorm(t as tf.Tensor5D, LEAKY_SLOPE),
    (t) => conv(t, weights.conv2),
    (t) => instanceNorm(t as tf.Tensor5D),
  );
  const projection = weights.conv3;
  const residual = projection ? pipeline(x, (t) => linear(t, projection as tf.Tensor2D), (t) => instanceNorm(t as tf.Tensor5D)) : x;
  const sum = tf.add(main, residual);
  releaseIntermediates(main, ...(projection ? [residual] : []));
  const activated = leakyRelu(sum, LEAKY_SLOPE) as tf.Tensor5D;
  releaseIntermediates(sum);
  return activated;
}

/**
 * The same block for training with little memory: each convolution + norm is a checkpointed
 * segment, so the tape keeps only the segments' outputs (5 volumes instead of about 10) and a
 * segment's own intermediates exist only while its gradient is computed. At full resolution of
 * F = 48, 96^3 each volume is 162 MiB.
 */
function unetResBlockInSegments(x: tf.Tensor5D, weights: UnetResBlockWeights, conv: (t: tf.Tensor, filter: tf.Tensor) => tf.Tensor): tf.Tensor5D {
  const convNorm = (input: tf.Tensor, filter: tf.Tensor, slope?: number) => checkpointedStep(([t], [f]) => instanceNorm(conv(t, f) as tf.Tensor5D, slope), [input], [filter]);
  const main = convNorm(convNorm(x, weights.conv1, LEAKY_SLOPE), weights.conv2);
  const projection = weights.conv3;
  const residual = projection ? checkpointedStep(([t], [p]) => instanceNorm(linear(t, p as tf.Tensor2D) as tf.Tensor5D), [x], [projection]) : x;
  return checkpointed((m, r) => leakyRelu(tf.add(m, r), LEAKY_SLOPE), [main, residual]) as tf.Tensor5D;
}
