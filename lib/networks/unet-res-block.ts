import * as tf from '@tensorflow/tfjs-core';
import { isFrozen, withFrozen } from './frozen';
import { addLeakyRelu, addNUnsaved, checkpointed, checkpointedStep, concatChannels, conv3dSame, instanceNorm, linear, pipeline, recordingGradients, releaseIntermediates } from './ops';

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
 * A block's input, whole or as channel parts: a UnetrUpBlock's upsampled features and its skip
 * connection stand for their concatenation. The block then convolves each part with the filter's
 * matching input channels and adds the results, which is the same convolution without the
 * concatenated copy; and a part no trained tensor depends on (the skip of a frozen backbone under
 * FT-Last) gets no input gradient, half the cost of the block's widest input gradient.
 */
export type BlockInput = tf.Tensor5D | readonly tf.Tensor5D[];

/** conv(concat(parts), filter), part by part. */
function convolveParts(x: BlockInput, filter: tf.Tensor, convolve: (t: tf.Tensor, filter: tf.Tensor) => tf.Tensor): tf.Tensor {
  const parts = (Array.isArray(x) ? x : [x]) as readonly tf.Tensor5D[];
  if (parts.length === 1) return convolve(parts[0], filter);
  return tf.tidy(() => {
    const cout = filter.shape[filter.rank - 1];
    const cin = filter.shape[filter.rank - 2];
    const taps = filter.size / (cin * cout);
    // Input channels [offset, offset + c) as a 2-D slice (a row segment per tap): tfjs-wasm's 5-D
    // slice is slow for the wide filters of the deep decoder blocks.
    const rows = tf.reshape(filter, [taps, cin * cout]);
    let offset = 0;
    const pieces = parts.map((part) => {
      const c = part.shape[4];
      const piece = tf.reshape(tf.slice(rows, [0, offset * cout], [taps, c * cout]), [...filter.shape.slice(0, -2), c, cout]);
      offset += c;
      return piece;
    });
    if (offset !== cin) throw new Error(`the block's input parts have ${offset} channels, its filter takes ${cin}`);
    const convolveAll = () => parts.map((part, i) => convolve(part, pieces[i]));
    // Slices of a frozen filter stay constants of the convolution.
    const outputs = isFrozen(filter) ? withFrozen(pieces, convolveAll) : convolveAll();
    return outputs.length === 1 ? outputs[0] : addNUnsaved(outputs);
  });
}

/**
 * MONAI UnetResBlock (instance norm without affine, LeakyReLU 0.01): conv-norm-lrelu-conv-norm,
 * plus the input (projected and normalised when channels change), then LeakyReLU. The decoder of
 * SwinUNETR and the paper's spatial adapter both run this one function.
 */
export function unetResBlock(x: BlockInput, weights: UnetResBlockWeights, kernel: 1 | 3 = 3, segments = false): tf.Tensor5D {
  const conv = (t: tf.Tensor, filter: tf.Tensor) => convolveSame(t, filter, kernel);
  if (segments && recordingGradients()) return unetResBlockInSegments(x, weights, conv);
  const first = convolveParts(x, weights.conv1, conv);
  const main = pipeline(
    first,
    (t) => instanceNorm(t as tf.Tensor5D, LEAKY_SLOPE),
    (t) => conv(t, weights.conv2),
    (t) => instanceNorm(t as tf.Tensor5D),
  );
  releaseIntermediates(first);
  const projection = weights.conv3;
  let residual: tf.Tensor;
  if (projection) {
    const projected = convolveParts(x, projection, project);
    residual = instanceNorm(projected as tf.Tensor5D);
    releaseIntermediates(projected);
  } else residual = whole(x);
  const activated = addLeakyRelu(main, residual, LEAKY_SLOPE) as tf.Tensor5D;
  releaseIntermediates(main, ...(projection || Array.isArray(x) ? [residual] : []));
  return activated;
}

/** The 1x1x1 projection of the residual branch: a per-voxel product with an [in, out] matrix. */
function project(t: tf.Tensor, weight: tf.Tensor): tf.Tensor {
  return linear(t, weight as tf.Tensor2D);
}

/** The parts joined, for the identity residual (a block whose input and output channels agree). */
function whole(x: BlockInput): tf.Tensor5D {
  if (!Array.isArray(x)) return x as tf.Tensor5D;
  const parts = x as readonly tf.Tensor5D[];
  return parts.slice(1).reduce((joined, part) => concatChannels(joined, part) as tf.Tensor5D, parts[0]);
}

/**
 * The same block for training with little memory: each convolution + norm is a checkpointed
 * segment, so the tape keeps only the segments' outputs (5 volumes instead of about 10) and a
 * segment's own intermediates exist only while its gradient is computed. At full resolution of
 * F = 48, 96^3 each volume is 162 MiB.
 */
function unetResBlockInSegments(x: BlockInput, weights: UnetResBlockWeights, conv: (t: tf.Tensor, filter: tf.Tensor) => tf.Tensor): tf.Tensor5D {
  const parts = Array.isArray(x) ? [...(x as readonly tf.Tensor5D[])] : [x as tf.Tensor5D];
  const convNorm = (inputs: tf.Tensor[], filter: tf.Tensor, slope?: number, convolve = conv) =>
    checkpointedStep((ts, [f]) => instanceNorm(convolveParts(ts as tf.Tensor5D[], f, convolve) as tf.Tensor5D, slope), inputs, [filter]);
  const main = convNorm([convNorm(parts, weights.conv1, LEAKY_SLOPE)], weights.conv2);
  const projection = weights.conv3;
  const residual = projection ? convNorm(parts, projection, undefined, project) : whole(x);
  return checkpointed((m, r) => addLeakyRelu(m, r, LEAKY_SLOPE), [main, residual]) as tf.Tensor5D;
}
