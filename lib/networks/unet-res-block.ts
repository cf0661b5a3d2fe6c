import * as tf from '@tensorflow/tfjs-core';
import { conv3dSame, instanceNorm, leakyRelu, linear, pipeline, releaseIntermediates } from './ops';

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
export function unetResBlock(x: tf.Tensor5D, weights: UnetResBlockWeights, kernel: 1 | 3 = 3): tf.Tensor5D {
  const conv = (t: tf.Tensor, filter: tf.Tensor) => convolveSame(t, filter, kernel);
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
