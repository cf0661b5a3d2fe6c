import * as tf from '@tensorflow/tfjs-core';
import { frozenSet, isFrozen, withFrozenSet } from './frozen';
import { matMul2d } from './matmul';
import { depthShiftAdd, gatherRowsValue, sliceLeading, sumRows } from './wasm-memory-ops';
import '@tensorflow/tfjs';

/**
 * Tensor operations of the networks, channels-last ([N, D, H, W, C] for volumes, [T, C] for
 * tokens). Where tfjs-wasm lacks a fast kernel (Conv3D is naive, Conv2DBackpropFilter missing,
 * 5-D slices slow) the op has a fast formulation with its own gradient; every other backend uses
 * the native kernel through the same function.
 */

const EPS = 1e-5;

/** LayerNorm over the last axis (PyTorch eps 1e-5); without gamma/beta when they are not given. */
export function layerNorm(x: tf.Tensor, gamma?: tf.Tensor, beta?: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    let y = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, EPS)));
    if (gamma) y = tf.mul(y, gamma);
    if (beta) y = tf.add(y, beta);
    return y;
  });
}

/**
 * InstanceNorm3d without affine parameters (MONAI "instance"): per sample and channel over D, H,
 * W, optionally followed by a leaky ReLU (`slope`). One op with its own gradient that keeps only
 * its output and the per-channel 1/std: autodiff of the composition would keep five volume-sized
 * tensors per norm, most of the training memory of the full-resolution blocks.
 */
export function instanceNorm(x: tf.Tensor5D, slope?: number): tf.Tensor5D {
  // Statistics over the rows of a [voxels, C] view: a rank-5 reduction over axes 1-3 makes
  // tfjs-wasm transpose the volume through its slow rank-5 path first (8x slower).
  const rows = tf.reshape(x, [-1, x.shape[4]]) as tf.Tensor2D;
  const y = (slope === undefined ? normalizeRows(rows) : normalizeRowsLeaky(slope)(rows)) as tf.Tensor2D;
  const out = tf.reshape(y, x.shape) as tf.Tensor5D;
  releaseIntermediates(rows, y);
  return out;
}

/** Mean over the rows of x [R, C] -> [C]. */
function meanRows(x: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => tf.div(sumRows(x), x.shape[0]));
}

function standardize(x: tf.Tensor2D): { y: tf.Tensor2D; rstd: tf.Tensor1D } {
  return tf.tidy(() => {
    const centered = tf.sub(x, meanRows(x)) as tf.Tensor2D;
    const rstd = tf.rsqrt(tf.add(meanRows(tf.square(centered) as tf.Tensor2D), EPS)) as tf.Tensor1D;
    return { y: tf.mul(centered, rstd) as tf.Tensor2D, rstd };
  });
}

/** The gradient of standardization with respect to x: rstd (g - mean(g) - y mean(g y)). */
function standardizeGradient(g: tf.Tensor2D, y: tf.Tensor2D, rstd: tf.Tensor1D): tf.Tensor2D {
  return tf.tidy(() => tf.mul(tf.sub(tf.sub(g, meanRows(g)), tf.mul(y, meanRows(tf.mul(g, y) as tf.Tensor2D))), rstd) as tf.Tensor2D);
}

const normalizeRows = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [x, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
  const { y, rstd } = standardize(x);
  save([y, rstd]);
  return {
    value: y,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => standardizeGradient(dy as tf.Tensor2D, saved[0] as tf.Tensor2D, saved[1] as tf.Tensor1D),
  };
});

const leakyNormalizers = new Map<number, (x: tf.Tensor) => tf.Tensor>();

/** leakyRelu(standardize(x)), keeping only the activated output: the input of the activation is recovered from it. */
function normalizeRowsLeaky(slope: number): (x: tf.Tensor) => tf.Tensor {
  let op = leakyNormalizers.get(slope);
  if (!op) {
    op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
      const [x, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
      const { y, rstd } = standardize(x);
      const value = tf.tidy(() => tf.reshape(tf.leakyRelu(tf.reshape(y, [-1]), slope), y.shape) as tf.Tensor2D);
      y.dispose();
      save([value, rstd]);
      return {
        value,
        gradFunc: (dz: tf.Tensor, saved: tf.Tensor[]) => {
          const [z, savedRstd] = saved as [tf.Tensor2D, tf.Tensor1D];
          return tf.tidy(() => {
            // d lrelu / dy = 1 where the output is positive, else slope; and y = z / that factor.
            const factor = tf.add(tf.mul(tf.cast(tf.greater(z, 0), 'float32'), 1 - slope), slope) as tf.Tensor2D;
            return standardizeGradient(tf.mul(dz, factor) as tf.Tensor2D, tf.div(z, factor) as tf.Tensor2D, savedRstd);
          });
        },
      };
    });
    leakyNormalizers.set(slope, op);
  }
  return op;
}

/** GELU, exact (erf) form as PyTorch's nn.GELU(). */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))));
}

/** Leaky ReLU on a flat view: its gradient (a select) has no rank-5 kernel on tfjs's WebGPU backend. */
export function leakyRelu(x: tf.Tensor, slope = 0.01): tf.Tensor {
  return tf.tidy(() => tf.reshape(tf.leakyRelu(tf.reshape(x, [-1]), slope), x.shape));
}

/** x [..., in] times weight [in, out] (+ bias [out]). */
export function linear(x: tf.Tensor, weight: tf.Tensor2D, bias?: tf.Tensor1D): tf.Tensor {
  return tf.tidy(() => {
    const shape = x.shape;
    const flat = tf.reshape(x, [-1, shape[shape.length - 1]]) as tf.Tensor2D;
    let y: tf.Tensor = matMul2d(flat, weight);
    if (bias) y = tf.add(y, bias);
    return tf.reshape(y, [...shape.slice(0, -1), weight.shape[1]]);
  });
}

/**
 * Non-overlapping 2 x 2 x 2 patches as channels: [N, D, H, W, C] -> [N, D/2, H/2, W/2, 8C] with
 * channel index ((kd * 2 + kh) * 2 + kw) * C + c. With a matmul this is a Conv3d of kernel 2,
 * stride 2 (patch embedding). Done as two rank-4 transposes: tfjs-wasm's rank-7 transpose is
 * about 15 times slower.
 */
export function spaceToDepth2(x: tf.Tensor5D): tf.Tensor5D {
  return tf.tidy(() => {
    const [n, d, h, w, c] = x.shape;
    const [d2, h2, w2] = [d / 2, h / 2, w / 2];
    // [N D' kd H' kh W' kw C] -> [N D' kd H' W' kh kw C]
    const first = tf.transpose(tf.reshape(x, [n * d2 * 2 * h2, 2, w2, 2 * c]), [0, 2, 1, 3]);
    // [N D' kd (H' W') (kh kw C)] -> [N D' (H' W') kd (kh kw C)]
    const second = tf.transpose(tf.reshape(first, [n * d2, 2, h2 * w2, 4 * c]), [0, 2, 1, 3]);
    return tf.reshape(second, [n, d2, h2, w2, 8 * c]) as tf.Tensor5D;
  });
}

/** The inverse of `spaceToDepth2`: [N, D, H, W, 8C] -> [N, 2D, 2H, 2W, C] (transposed conv, kernel 2, stride 2). */
export function depthToSpace2(x: tf.Tensor5D): tf.Tensor5D {
  return tf.tidy(() => {
    const [n, d, h, w, c8] = x.shape;
    const c = c8 / 8;
    // [N D (H W) kd (kh kw C)] -> [N D kd (H W) (kh kw C)]
    const first = tf.transpose(tf.reshape(x, [n * d, h * w, 2, 4 * c]), [0, 2, 1, 3]);
    // [N D kd H W kh (kw C)] -> [N D kd H kh W (kw C)]
    const second = tf.transpose(tf.reshape(first, [n * d * 2 * h, w, 2, 2 * c]), [0, 2, 1, 3]);
    return tf.reshape(second, [n, 2 * d, 2 * h, 2 * w, c]) as tf.Tensor5D;
  });
}

/**
 * Conv3d, kernel 3, stride 1, zero padding 1, no bias. x [1, D, H, W, Cin], filter
 * [3, 3, 3, Cin, Cout]. On wasm: three conv2d over depth slices (XNNPACK), with a custom gradient
 * made of conv2d only (wasm has no Conv2DBackpropFilter and a slow conv2dTranspose).
 */
export function conv3dSame(x: tf.Tensor5D, filter: tf.Tensor5D): tf.Tensor5D {
  if (tf.getBackend() !== 'wasm') return tf.conv3d(x, filter, 1, 'same');
  if (x.shape[0] !== 1) throw new Error(`conv3dSame on wasm expects batch 1, got ${x.shape[0]}`);
  // A frozen filter is a constant of the op: its gradient (three more conv2d as costly as the
  // forward pass) is never computed.
  return (isFrozen(filter) ? depthSlicedConv3dWithConstantFilter(filter)(x) : depthSlicedConv3d(x, filter)) as tf.Tensor5D;
}

/**
 * y[d] = conv2d(x[d - 1], W[0]) + conv2d(x[d], W[1]) + conv2d(x[d + 1], W[2]): convolve the whole
 * stack with each depth tap and add the (Cout-channel) results shifted by one slice: the peak is
 * four outputs, never a padded copy of the input.
 */
function depthSlicedValue(x: tf.Tensor5D, filter: tf.Tensor5D): tf.Tensor5D {
  return tf.tidy(() => {
    const [, d, h, w, cin] = x.shape;
    const cout = filter.shape[4];
    const slices = tf.reshape(x, [d, h, w, cin]) as tf.Tensor4D;
    const taps = tf.reshape(filter, [3, 9 * cin * cout]);
    const tap = (kd: number) => tf.conv2d(slices, tf.reshape(sliceLeading(taps, kd, 1), [3, 3, cin, cout]) as tf.Tensor4D, 1, 'same');
    const center = tap(1);
    if (d === 1) return tf.reshape(center, [1, d, h, w, cout]) as tf.Tensor5D;
    const before = tap(0);
    const after = tap(2);
    const sum = depthShiftAdd(center, before, after);
    tf.dispose([center, before, after]);
    return tf.reshape(sum, [1, d, h, w, cout]) as tf.Tensor5D;
  });
}

/**
 * dx: each depth tap's conv2d of dy with its spatially flipped, transposed kernel (=
 * conv2dTranspose), on all slices at once, then added shifted by one slice, as in the forward
 * pass: dx[e] = P1[e] + P0[e + 1] + P2[e - 1]. No padded or sliced copy of dy, and each part is
 * released as soon as it is added (a full-resolution decoder block's dx is 340 MB at F = 48, 96^3).
 */
function depthSlicedInputGradient(dy: tf.Tensor, filter: tf.Tensor5D): tf.Tensor5D {
  const [, d, h, w, cout] = dy.shape;
  const cin = filter.shape[3];
  const part = (kd: number) =>
    tf.tidy(() => {
      const kernel = tf.reshape(tf.slice(filter, [kd, 0, 0, 0, 0], [1, 3, 3, cin, cout]), [3, 3, cin, cout]);
      const flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2]) as tf.Tensor4D;
      return tf.conv2d(tf.reshape(dy, [d, h, w, cout]) as tf.Tensor4D, flipped, 1, 'same');
    });
  const center = part(1);
  if (d === 1) return tf.reshape(center, [1, d, h, w, cin]) as tf.Tensor5D;
  const fromAbove = part(0);
  const fromBelow = part(2);
  const sum = depthShiftAdd(center, fromBelow, fromAbove);
  tf.dispose([center, fromAbove, fromBelow]);
  const dx = tf.reshape(sum, [1, d, h, w, cin]) as tf.Tensor5D;
  sum.dispose();
  return dx;
}

/** Floats of the input a filter-gradient chunk covers (bounds the transposed copies it makes); tests shrink it. */
export const convolutionTuning = { filterGradientChunkFloats: 2 ** 24 };

/**
 * dW[kd] = correlation of the kd-shifted input with dy, computed as a conv2d with the channels as
 * batch and the depth slices as input channels, summed over chunks of depth slices: each chunk's
 * padded, shifted and transposed copies of the input are a few tens of MB instead of the whole
 * volume's (over a GB for a full-resolution decoder block at F = 48, 96^3).
 */
function depthSlicedFilterGradient(dy: tf.Tensor, x: tf.Tensor5D): tf.Tensor {
  const [, d, h, w, cin] = x.shape;
  const cout = dy.shape[4]!;
  const chunk = Math.max(1, Math.min(d, Math.floor(convolutionTuning.filterGradientChunkFloats / (h * w * cin))));
  const slices = tf.reshape(x, [d, h, w, cin]) as tf.Tensor4D;
  const gradient = tf.reshape(dy, [d, h, w, cout]) as tf.Tensor4D;
  const taps: Array<tf.Tensor | undefined> = [undefined, undefined, undefined];
  for (let d0 = 0; d0 < d; d0 += chunk) {
    const count = Math.min(chunk, d - d0);
    tf.tidy(() => {
      // Input slices d0 - 1 .. d0 + count (zero outside the volume), padded by one in H and W.
      const first = Math.max(0, d0 - 1);
      const last = Math.min(d, d0 + count + 1);
      const slab = tf.pad(sliceLeading(slices, first, last - first), [[first - (d0 - 1), d0 + count + 1 - last], [1, 1], [1, 1], [0, 0]]);
      const dyAsFilter = tf.transpose(sliceLeading(gradient, d0, count), [1, 2, 0, 3]) as tf.Tensor4D; // [H, W, count, Cout]
      for (let kd = 0; kd < 3; kd++) {
        const asBatch = tf.transpose(sliceLeading(slab, kd, count), [3, 1, 2, 0]) as tf.Tensor4D; // [Cin, H+2, W+2, count]
        const correlation = tf.conv2d(asBatch, dyAsFilter, 1, 'valid'); // [Cin, 3, 3, Cout]
        asBatch.dispose();
        const previous = taps[kd];
        taps[kd] = tf.keep(previous ? tf.add(previous, correlation) : correlation);
        previous?.dispose();
      }
    });
  }
  slices.dispose();
  gradient.dispose();
  const filterGradient = tf.tidy(() => tf.stack(taps.map((t) => tf.transpose(t!, [1, 2, 0, 3])), 0));
  tf.dispose(taps as tf.Tensor[]);
  return filterGradient;
}

/** Conv3d on depth slices with a custom gradient made of conv2d only (wasm has no Conv2DBackpropFilter and a slow conv2dTranspose). */
const depthSlicedConv3d = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [x, filter, save] = args as [tf.Tensor5D, tf.Tensor5D, tf.GradSaveFunc];
  save([x, filter]);
  return {
    value: depthSlicedValue(x, filter),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sx, sf] = saved as [tf.Tensor5D, tf.Tensor5D];
      return [depthSlicedInputGradient(dy, sf), depthSlicedFilterGradient(dy, sx)];
    },
  };
});

/** The same convolution with the filter as a constant: only the input's gradient. */
function depthSlicedConv3dWithConstantFilter(filter: tf.Tensor5D): (x: tf.Tensor) => tf.Tensor {
  return tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [x] = args as [tf.Tensor5D];
    return { value: depthSlicedValue(x, filter), gradFunc: (dy: tf.Tensor) => [depthSlicedInputGradient(dy, filter)] };
  }) as (x: tf.Tensor) => tf.Tensor;
}

/**
 * Gathers rows of x [T, C] (plus one zero row at index T) by `index`, with the gradient of a
 * permutation: each input row appears at most once in `index`, and `inverse[t]` is where row t
 * went. Window partition (with padding and cyclic shift) and its reverse are such gathers.
 */
export function gatherRows(x: tf.Tensor2D, index: tf.Tensor1D, inverse: tf.Tensor1D): tf.Tensor2D {
  return permutationGather(x, index, inverse) as tf.Tensor2D;
}

const permutationGather = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [x, indexArg, inverseArg, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D, tf.GradSaveFunc];
  save([inverseArg, indexArg]);
  return {
    value: gatherRowsValue(x, indexArg),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [inverse, index] = saved;
      return [gatherRowsValue(dy as tf.Tensor2D, inverse as tf.Tensor1D), tf.zerosLike(index), tf.zerosLike(inverse)];
    },
  };
});

/**
 * table[index] for a [rows, C] table, with a gradient that sums repeated rows through scatterND
 * (tfjs's own gather gradient needs UnsortedSegmentSum, which the wasm backend lacks). Used for
 * the relative position bias tables.
 */
export function lookupRows(table: tf.Tensor2D, index: tf.Tensor1D): tf.Tensor2D {
  return tableLookup(table, index) as tf.Tensor2D;
}

const tableLookup = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [table, index, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.GradSaveFunc];
  save([index]);
  return {
    value: tf.gather(table, index),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [savedIndex] = saved;
      return tf.tidy(() => [tf.scatterND(tf.expandDims(savedIndex, 1), dy, table.shape), tf.zerosLike(savedIndex)]);
    },
  };
});

/**
 * Frees intermediates at once when no gradient tape is recording (inference, or the forward run of
 * a checkpointed block); under a tape the backward pass may still need them and the enclosing
 * tidy frees them later. Bounds the memory of full-resolution decoder blocks, where each
 * intermediate of a 96^3 x 48 volume is 170 MB.
 */
export function releaseIntermediates(...tensors: tf.Tensor[]): void {
  if (recordingGradients()) return;
  for (const tensor of tensors) tensor.dispose();
}

/** `steps` applied in order to `input`; each intermediate result is released once the next step has used it. */
export function pipeline(input: tf.Tensor, ...steps: Array<(x: tf.Tensor) => tf.Tensor>): tf.Tensor {
  let current = input;
  for (const step of steps) {
    const next = step(current);
    if (current !== input && next !== current) releaseIntermediates(current);
    current = next;
  }
  return current;
}

/**
 * Gradient checkpointing (MONAI's use_checkpoint): runs `fn` without keeping its intermediate
 * tensors and recomputes them during backpropagation, trading compute for memory. Everything
 * `fn` depends on, parameters included, must be passed in `inputs` so that gradients reach it;
 * only frozen parameters (lib/networks/frozen.ts), which get none, may be read from outside.
 */
export function checkpointed(fn: (...inputs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[]): tf.Tensor {
  // The recomputation runs during the backward pass, outside the forward's frozen scope: it
  // restores that scope, so that frozen weights stay constants there too.
  const frozenInForward = frozenSet();
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const tensors = args.slice(0, -1) as tf.Tensor[];
    const save = args[args.length - 1] as tf.GradSaveFunc;
    save(tensors);
    return {
      value: tf.tidy(() => fn(...tensors)),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        // The recomputation records its own tape. tfjs 4.22 keeps a single active tape and
        // replaces it (then clears it) when a gradient starts at depth 0, as it does here during
        // the outer backward pass; restore the outer tape so that its cleanup still finds it.
        const state = (tf.engine() as unknown as { state: { activeTape: unknown } }).state;
        const outerTape = state.activeTape;
        try {
          return withFrozenSet(frozenInForward, () => tf.grads((...xs: tf.Tensor[]) => fn(...xs))(saved, dy));
        } finally {
          state.activeTape = outerTape;
        }
      },
    };
  });
  return op(...inputs);
}

/**
 * `checkpointed` for a step that reads weights: frozen weights (lib/networks/frozen.ts) stay
 * constants of the step, the others pass through the checkpoint so that gradients reach them.
 */
export function checkpointedStep(fn: (inputs: tf.Tensor[], weights: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], weights: tf.Tensor[]): tf.Tensor {
  const routed = weights.filter((w) => !isFrozen(w));
  return checkpointed((...all: tf.Tensor[]) => {
    const given = all.slice(inputs.length);
    let next = 0;
    return fn(all.slice(0, inputs.length), weights.map((w) => (isFrozen(w) ? w : given[next++])));
  }, [...inputs, ...routed]);
}

/** Whether a gradient tape is recording (training), as opposed to inference. */
export function recordingGradients(): boolean {
  return (tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn();
}

/**
 * Concatenation along the channel (last) axis through a rank-2 view: its gradient is then a
 * rank-2 split, where tfjs-wasm's split of a rank-5 tensor (5-D slices) takes seconds.
 */
export function concatChannels(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const spatial = a.shape.slice(0, -1);
    const ca = a.shape[a.shape.length - 1];
    const cb = b.shape[b.shape.length - 1];
    const joined = tf.concat([tf.reshape(a, [-1, ca]), tf.reshape(b, [-1, cb])], 1);
    return tf.reshape(joined, [...spatial, ca + cb]);
  });
}

/**
 * A variable holding `initial`, which is consumed: tf.variable keeps its source tensor registered
 * otherwise, and every created-and-disposed model would leave one tensor behind per parameter.
 */
export function variableOf(initial: tf.Tensor, trainable = true, name?: string): tf.Variable {
  const variable = tf.variable(initial, trainable, name);
  initial.dispose();
  return variable;
}
