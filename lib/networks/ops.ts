import * as tf from '@tensorflow/tfjs-core';
import { frozenSet, isFrozen, withFrozenSet } from './frozen';
import { inputGradientWanted, unwantedGradient } from '../backend/backprop-memory';
import { matMul2d } from './matmul';
import { conv3x3x3Direct, conv3x3x3FilterGradientDirect, directConvolutionApplies, directFilterGradientApplies } from './wasm-conv';
import { addLeakyReluFused, addPairFused, fusedNormAvailable, leakyReluGradientFused, standardizeRowsFused, standardizeRowsGradientFused } from './wasm-norm-ops';
import { fusedGeluAvailable, geluFused } from './wasm-activation-ops';
import { addDepthNeighboursInPlace, depthInward, gatherRowsValue, shiftedChannelsFirst, sliceLeading, sumRows, writeLeadingInPlace, zeros } from './wasm-memory-ops';
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
  const rows = reshapeUnsaved(x, [-1, x.shape[4]]) as tf.Tensor2D;
  const y = (slope === undefined ? normalizeRows(rows) : normalizeRowsLeaky(slope)(rows)) as tf.Tensor2D;
  const out = reshapeUnsaved(y, x.shape) as tf.Tensor5D;
  releaseIntermediates(rows, y);
  return out;
}

/**
 * tf.addN whose gradient keeps no tensor alive: tfjs's AddN saves every input, though its
 * gradient is dy for each. A block's convolution of its input parts sums per-part outputs this
 * way, and tfjs's save kept those full volumes for the whole backward pass.
 */
export function addNUnsaved<T extends tf.Tensor>(tensors: tf.Tensor[]): T {
  if (tensors.length === 1 || !recordingGradients()) return sumValues(tensors) as T;
  return tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => ({
    value: sumValues(args.slice(0, tensors.length) as tf.Tensor[]),
    gradFunc: (dy: tf.Tensor) => tensors.map(() => tf.clone(dy)),
  }))(...tensors) as T;
}

/**
 * tf.addN's value; two float32 tensors of one shape on wasm in one pass shared between the
 * threads (tfjs-wasm's AddN: 141 ms for two 96^3 x 48 volumes on 2 cores).
 */
function sumValues(tensors: tf.Tensor[]): tf.Tensor {
  const [a, b] = tensors;
  if (tensors.length === 2 && fusedNormAvailable(a) && b.dtype === 'float32' && tf.util.arraysEqual(a.shape, b.shape)) return addPairFused(a, b);
  return tf.addN(tensors);
}

/**
 * tf.reshape whose gradient keeps no tensor alive. tfjs's Reshape saves its input for the
 * gradient (only to read its shape), and that clone keeps the input's buffer for the rest of the
 * backward pass, even after the code that made it has released it: under a tape each norm's and
 * activation's input (a full volume at the decoder's top) stayed alive that way.
 */
export function reshapeUnsaved<T extends tf.Tensor>(x: tf.Tensor, shape: number[]): T {
  if (!recordingGradients()) return tf.reshape(x, shape) as T;
  const from = x.shape;
  return tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => ({
    value: tf.reshape(args[0] as tf.Tensor, shape),
    gradFunc: (dy: tf.Tensor) => tf.reshape(dy, from),
  }))(x) as T;
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
  // Each volume-sized temporary is released as soon as it is used: at most three exist at once
  // (a full-resolution norm of F = 48 at 96^3 is 162 MiB per temporary).
  return tf.tidy(() => {
    const gy = tf.mul(g, y) as tf.Tensor2D;
    const meanGy = meanRows(gy);
    gy.dispose();
    const centered = tf.sub(g, meanRows(g));
    const projection = tf.mul(y, meanGy);
    const difference = tf.sub(centered, projection);
    tf.dispose([centered, projection]);
    return tf.mul(difference, rstd) as tf.Tensor2D;
  });
}

const normalizeRows = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [x, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
  if (fusedNormAvailable(x)) return fusedNormalization(x, 1, save);
  const { y, rstd } = standardize(x);
  save([y, rstd]);
  return {
    value: y,
    gradFunc: (dy, saved) => standardizeGradient(dy as tf.Tensor2D, saved[0] as tf.Tensor2D, saved[1] as tf.Tensor1D),
  };
});

/** The norm (and leaky ReLU) as the fused wasm kernels, keeping the output and rstd for the gradient. */
function fusedNormalization(x: tf.Tensor2D, slope: number, save: tf.GradSaveFunc): { value: tf.Tensor2D; gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor } {
  const { z, rstd } = standardizeRowsFused(x, slope, EPS);
  save([z, rstd]);
  return { value: z, gradFunc: (dz, saved) => standardizeRowsGradientFused(dz as tf.Tensor2D, saved[0] as tf.Tensor2D, saved[1] as tf.Tensor1D, slope) };
}

/** One op per slope, built on first use (a custom-gradient op is a function made once). */
function perSlope<Op>(build: (slope: number) => Op): (slope: number) => Op {
  const ops = new Map<number, Op>();
  return (slope) => {
    let op = ops.get(slope);
    if (!op) ops.set(slope, (op = build(slope)));
    return op;
  };
}

/** leakyRelu(standardize(x)), keeping only the activated output: the input of the activation is recovered from it. */
const normalizeRowsLeaky = perSlope((slope) =>
  tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [x, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
    if (fusedNormAvailable(x)) return fusedNormalization(x, slope, save);
    const { y, rstd } = standardize(x);
    const value = tf.tidy(() => tf.reshape(leakyReluValue(tf.reshape(y, [-1]), slope), y.shape) as tf.Tensor2D);
    y.dispose();
    save([value, rstd]);
    return {
      value,
      gradFunc: (dz, saved) => {
        const [z, savedRstd] = saved as [tf.Tensor2D, tf.Tensor1D];
        return tf.tidy(() => {
          // d lrelu / dy = 1 where the output is positive, else slope; and y = z / that factor.
          const positive = tf.cast(tf.greater(z, 0), 'float32');
          const scaled = tf.mul(positive, 1 - slope);
          positive.dispose();
          const factor = tf.add(scaled, slope) as tf.Tensor2D;
          scaled.dispose();
          const g = tf.mul(dz, factor) as tf.Tensor2D;
          const y = tf.div(z, factor) as tf.Tensor2D;
          factor.dispose();
          const dx = standardizeGradient(g, y, savedRstd);
          tf.dispose([g, y]);
          return dx;
        });
      },
    };
  }) as (x: tf.Tensor) => tf.Tensor,
);

/**
 * GELU, exact (erf) form as PyTorch's nn.GELU(). On wasm one SIMD pass forward and one backward,
 * shared between the threads (wasm-activation-ops.ts); elsewhere tfjs's erf.
 */
export function gelu(x: tf.Tensor): tf.Tensor {
  if (fusedGeluAvailable(x)) return geluFused(x);
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))));
}

/**
 * Leaky ReLU on a flat view (its gradient, a select, has no rank-5 kernel on tfjs's WebGPU
 * backend), with a gradient computed from the output: where(z > 0, dy, slope dy). tfjs's own
 * gradient fills a tensor of ones and one of the slope, five volume-sized temporaries in all.
 */
export function leakyRelu(x: tf.Tensor, slope = 0.01): tf.Tensor {
  return tf.tidy(() => reshapeUnsaved(leakyReluFlat(slope)(reshapeUnsaved(x, [-1])), x.shape));
}

/**
 * leakyRelu(a + b) for a and b of one shape (the end of a residual block). On wasm one pass that
 * writes only the activation (the sum is never a tensor; tfjs-wasm's Add and PReLU took 2.0 s of
 * an F = 48, 96^3 forward pass); its gradient, the same for a and b, comes from the output.
 */
export function addLeakyRelu(a: tf.Tensor, b: tf.Tensor, slope = 0.01): tf.Tensor {
  if (!fusedNormAvailable(a) || b.dtype !== 'float32' || !tf.util.arraysEqual(a.shape, b.shape)) return tf.tidy(() => leakyRelu(tf.add(a, b), slope));
  return addLeakyReluOp(slope)(a, b);
}

const addLeakyReluOp = perSlope((slope) =>
  tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [a, b, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    const value = addLeakyReluFused(a, b, slope);
    save([value]);
    return {
      value,
      gradFunc: (dy, saved) => {
        const dx = leakyReluGradientFused(dy as tf.Tensor, saved[0], slope);
        return [dx, tf.clone(dx)];
      },
    };
  }) as (a: tf.Tensor, b: tf.Tensor) => tf.Tensor,
);

/**
 * The values of leaky ReLU. On wasm as a PReLU with a scalar slope, the same arithmetic (x < 0 ?
 * slope x : x) in about 0.6 of the time of tfjs-wasm's LeakyRelu kernel (145 against 230 ms for a
 * 96^3 x 48 volume on 2 cores).
 */
function leakyReluValue(x: tf.Tensor, slope: number): tf.Tensor {
  if (tf.getBackend() !== 'wasm') return tf.leakyRelu(x, slope);
  return tf.tidy(() => tf.prelu(x, tf.scalar(slope)));
}

const leakyReluFlat = perSlope((slope) =>
  tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [x, save] = args as [tf.Tensor1D, tf.GradSaveFunc];
    const value = leakyReluValue(x, slope);
    save([value]);
    return {
      value,
      gradFunc: (dy, saved) =>
        fusedNormAvailable(dy) ? leakyReluGradientFused(dy, saved[0], slope) : tf.tidy(() => {
          const positive = tf.greater(saved[0], 0);
          const scaled = tf.mul(dy, slope);
          const dx = tf.where(positive, dy, scaled);
          tf.dispose([positive, scaled]);
          return dx;
        }),
    };
  }) as (x: tf.Tensor) => tf.Tensor,
);

/** x [..., in] times weight [in, out] (+ bias [out]). */
export function linear(x: tf.Tensor, weight: tf.Tensor2D, bias?: tf.Tensor1D): tf.Tensor {
  return tf.tidy(() => {
    const shape = x.shape;
    const flat = tf.reshape(x, [-1, shape[shape.length - 1]]) as tf.Tensor2D;
    let y: tf.Tensor = matMul2d(flat, weight);
    if (bias) y = tf.add(y, bias);
    return reshapeUnsaved(y, [...shape.slice(0, -1), weight.shape[1]]);
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
    const first = tf.transpose(reshapeUnsaved(x, [n * d2 * 2 * h2, 2, w2, 2 * c]), [0, 2, 1, 3]);
    // [N D' kd (H' W') (kh kw C)] -> [N D' (H' W') kd (kh kw C)]
    const second = tf.transpose(reshapeUnsaved(first, [n * d2, 2, h2 * w2, 4 * c]), [0, 2, 1, 3]);
    return reshapeUnsaved(second, [n, d2, h2, w2, 8 * c]) as tf.Tensor5D;
  });
}

/** The inverse of `spaceToDepth2`: [N, D, H, W, 8C] -> [N, 2D, 2H, 2W, C] (transposed conv, kernel 2, stride 2). */
export function depthToSpace2(x: tf.Tensor5D): tf.Tensor5D {
  return tf.tidy(() => {
    const [n, d, h, w, c8] = x.shape;
    const c = c8 / 8;
    // [N D (H W) kd (kh kw C)] -> [N D kd (H W) (kh kw C)]
    const first = tf.transpose(reshapeUnsaved(x, [n * d, h * w, 2, 4 * c]), [0, 2, 1, 3]);
    // [N D kd H W kh (kw C)] -> [N D kd H kh W (kw C)]
    const second = tf.transpose(reshapeUnsaved(first, [n * d * 2 * h, w, 2, 2 * c]), [0, 2, 1, 3]);
    return reshapeUnsaved(second, [n, 2 * d, 2 * h, 2 * w, c]) as tf.Tensor5D;
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
  // While training, large volumes are convolved in chunks (see depthTapSum); inference keeps the
  // one-pass path, which computes no halo twice.
  const chunked = recordingGradients();
  // A frozen filter is a constant of the op: its gradient (three more conv2d as costly as the
  // forward pass) is never computed.
  return (isFrozen(filter) ? depthSlicedConv3dWithConstantFilter(filter, chunked)(x) : depthSlicedConv3d[chunked ? 'chunked' : 'whole'](x, filter)) as tf.Tensor5D;
}

/** The three depth taps of a [3, 3, 3, Cin, Cout] filter as conv2d kernels [3, 3, Cin, Cout]. */
function depthTaps(filter: tf.Tensor5D): tf.Tensor4D[] {
  const [, , , cin, cout] = filter.shape;
  // A heap copy per tap (sliceLeading): tfjs-wasm's own 5-D slice takes 200 ms for a 768 x 768 filter.
  return tf.tidy(() => {
    const rows = tf.reshape(filter, [3, 9 * cin * cout]);
    return [0, 1, 2].map((kd) => tf.reshape(sliceLeading(rows, kd, 1), [3, 3, cin, cout]) as tf.Tensor4D);
  });
}

/**
 * out[e] = conv2d(x[e - 1], k0) + conv2d(x[e], k1) + conv2d(x[e + 1], k2) over the depth slices
 * of x [D, H, W, C] (zero outside): each tap convolves the whole stack and the outer taps' results
 * are added into the middle one's, shifted by one slice, so the peak is three outputs, never a
 * padded copy of the input. While training (`chunked`), large volumes go through in chunks of
 * slices (with one slice of halo on each side) written into the output in place: the three outputs
 * of a full-resolution decoder convolution's input gradient would be 1 GB at F = 48, 96^3.
 */
function depthTapSum(x: tf.Tensor4D, taps: tf.Tensor4D[], chunked: boolean): tf.Tensor4D {
  const [d, h, w, cin] = x.shape;
  const cout = taps[1].shape[3];
  const perSlice = h * w * Math.max(cin, cout);
  const chunk = chunked ? Math.max(1, Math.floor(convolutionTuning.depthChunkFloats / perSlice)) : d;
  const sumOf = (slab: tf.Tensor4D) => {
    const parts = taps.map((k) => tf.conv2d(slab, k, 1, 'same'));
    addDepthNeighboursInPlace(parts[1], parts[0], parts[2]);
    tf.dispose([parts[0], parts[2]]);
    return parts[1];
  };
  if (chunk >= d) return sumOf(x);
  const out = zeros([d, h, w, cout]) as tf.Tensor4D;
  for (let e0 = 0; e0 < d; e0 += chunk) {
    const e1 = Math.min(d, e0 + chunk);
    tf.tidy(() => {
      const lo = Math.max(0, e0 - 1);
      const hi = Math.min(d, e1 + 1);
      const sum = sumOf(sliceLeading(x, lo, hi - lo));
      writeLeadingInPlace(out, sliceLeading(sum, e0 - lo, e1 - e0), e0);
    });
  }
  return out;
}

/** The forward convolution: y[d] = sum over kd of conv2d(x[d + kd - 1], W[kd]). */
function depthSlicedValue(x: tf.Tensor5D, filter: tf.Tensor5D, chunked: boolean): tf.Tensor5D {
  return tf.tidy(() => {
    const [, d, h, w, cin] = x.shape;
    const slices = tf.reshape(x, [d, h, w, cin]) as tf.Tensor4D;
    if (directConvolutionApplies(slices, filter.shape[4])) return tf.reshape(conv3x3x3Direct(slices, filter), [1, d, h, w, filter.shape[4]]) as tf.Tensor5D;
    return tf.reshape(depthTapSum(slices, depthTaps(filter), chunked), [1, d, h, w, filter.shape[4]]) as tf.Tensor5D;
  });
}

/**
 * dx[e] = convT(dy[e + 1], W0) + convT(dy[e], W1) + convT(dy[e - 1], W2), each convT a conv2d with
 * the spatially flipped, transposed kernel: the same tap sum with the taps reversed.
 */
function depthSlicedInputGradient(dy: tf.Tensor, filter: tf.Tensor5D): tf.Tensor5D {
  return tf.tidy(() => {
    const [, d, h, w, cout] = dy.shape;
    const gradient = tf.reshape(dy, [d, h, w, cout]) as tf.Tensor4D;
    // the kernel reverses the taps and swaps the channel axes as it packs the filter
    if (directConvolutionApplies(gradient, filter.shape[3])) return tf.reshape(conv3x3x3Direct(gradient, filter, true), [1, d, h, w, filter.shape[3]]) as tf.Tensor5D;
    const flipped = depthTaps(filter).map((k) => tf.transpose(tf.reverse(k, [0, 1]), [0, 1, 3, 2]) as tf.Tensor4D);
    const dx = depthTapSum(gradient, [flipped[2], flipped[1], flipped[0]], true);
    return tf.reshape(dx, [1, d, h, w, filter.shape[3]]) as tf.Tensor5D;
  });
}

/**
 * Floats of the shifted input copies a filter-gradient chunk makes, and of the slab and each tap's
 * output in a chunked tap sum; tests shrink them.
 */
export const convolutionTuning = { filterGradientChunkFloats: 2 ** 24, depthChunkFloats: 2 ** 24 };

/**
 * dW[kd] = correlation of the kd-shifted input with dy, computed as one conv2d per chunk of depth
 * slices: the three shifted copies of the input with (tap, channel) as batch and the slices as
 * input channels, convolved with dy's slices as the kernel ([H, W, slices, Cout]), give all 27
 * taps at once. Chunks keep the copies a few tens of MB (a whole full-resolution decoder volume's
 * would be over a GB at F = 48, 96^3); both copies are single passes in the heap
 * (shiftedChannelsFirst, depthInward).
 */
function depthSlicedFilterGradient(dy: tf.Tensor, x: tf.Tensor5D): tf.Tensor {
  const [, d, h, w, cin] = x.shape;
  const cout = dy.shape[4]!;
  const chunk = Math.max(1, Math.min(d, Math.floor(convolutionTuning.filterGradientChunkFloats / (3 * cin * (h + 2) * (w + 2)))));
  const slices = tf.reshape(x, [d, h, w, cin]) as tf.Tensor4D;
  const gradient = tf.reshape(dy, [d, h, w, cout]) as tf.Tensor4D;
  if (directFilterGradientApplies(slices, cout)) {
    const direct = conv3x3x3FilterGradientDirect(slices, gradient);
    tf.dispose([slices, gradient]);
    return direct;
  }
  let total: tf.Tensor | undefined;
  for (let d0 = 0; d0 < d; d0 += chunk) {
    const count = Math.min(chunk, d - d0);
    tf.tidy(() => {
      const correlation = tf.conv2d(shiftedChannelsFirst(slices, d0, count), depthInward(gradient, d0, count), 1, 'valid'); // [3 Cin, 3, 3, Cout]
      const previous = total;
      total = tf.keep(previous ? tf.add(previous, correlation) : correlation);
      previous?.dispose();
    });
  }
  slices.dispose();
  gradient.dispose();
  const filterGradient = tf.tidy(() => tf.transpose(tf.reshape(total!, [3, cin, 3, 3, cout]), [0, 2, 3, 1, 4]));
  total!.dispose();
  return filterGradient;
}

/**
 * Conv3d on depth slices with a custom gradient made of conv2d only (wasm has no
 * Conv2DBackpropFilter and a slow conv2dTranspose); one op for a forward pass in chunks, one for
 * a whole pass.
 */
function depthSlicedConv3dOp(chunked: boolean) {
  return tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [x, filter, save] = args as [tf.Tensor5D, tf.Tensor5D, tf.GradSaveFunc];
    save([x, filter]);
    return {
      value: depthSlicedValue(x, filter, chunked),
      gradFunc: (dy, saved) => {
        const [sx, sf] = saved as [tf.Tensor5D, tf.Tensor5D];
        return [
          inputGradientWanted(0) ? depthSlicedInputGradient(dy, sf) : unwantedGradient(),
          inputGradientWanted(1) ? depthSlicedFilterGradient(dy, sx) : unwantedGradient(),
        ];
      },
    };
  });
}

const depthSlicedConv3d = { chunked: depthSlicedConv3dOp(true), whole: depthSlicedConv3dOp(false) };

/** The same convolution with the filter as a constant: only the input's gradient. */
function depthSlicedConv3dWithConstantFilter(filter: tf.Tensor5D, chunked: boolean): (x: tf.Tensor) => tf.Tensor {
  return tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [x] = args as [tf.Tensor5D];
    return { value: depthSlicedValue(x, filter, chunked), gradFunc: (dy) => [depthSlicedInputGradient(dy, filter)] };
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
 * Window attention's relative position bias, [1, heads, tokens, tokens]: bias[h][i] =
 * table[index[i]][h] for a [rows, heads] table and tokens^2 indices. On wasm and cpu it is one
 * host loop each way (the table has a few thousand rows): tfjs-wasm's Gather took 0.27 s of the
 * (a) training step for it, before a Transpose of its output and a scatterND in the backward pass.
 * Elsewhere (webgpu, the native binding) the gather, transpose and scatterND run on the device.
 */
export function relativePositionBias(table: tf.Tensor2D, index: tf.Tensor1D, tokens: number): tf.Tensor4D {
  const heads = table.shape[1];
  if (index.size !== tokens * tokens) throw new Error(`relativePositionBias: ${index.size} indices for ${tokens} tokens`);
  if (!['wasm', 'cpu'].includes(tf.getBackend())) {
    return tf.reshape(tf.transpose(tf.reshape(lookupRows(table, index), [tokens, tokens, heads]), [2, 0, 1]), [1, heads, tokens, tokens]) as tf.Tensor4D;
  }
  return hostPositionBias(table, index) as tf.Tensor4D;
}

const hostIndices = new WeakMap<tf.Tensor, Int32Array>();

function hostIndexOf(index: tf.Tensor): Int32Array {
  let found = hostIndices.get(index);
  if (!found) hostIndices.set(index, (found = index.dataSync() as Int32Array));
  return found;
}

const hostPositionBias = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [table, indexArg, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.GradSaveFunc];
  const [rows, heads] = table.shape;
  const index = hostIndexOf(indexArg);
  const pairs = index.length;
  const tokens = Math.round(Math.sqrt(pairs));
  const values = table.dataSync();
  const out = new Float32Array(heads * pairs);
  for (let h = 0; h < heads; h++) {
    const plane = h * pairs;
    for (let i = 0; i < pairs; i++) out[plane + i] = values[index[i] * heads + h];
  }
  save([indexArg]);
  return {
    value: tf.tensor4d(out, [1, heads, tokens, tokens]),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const gradient = dy.dataSync();
      const dTable = new Float32Array(rows * heads);
      for (let h = 0; h < heads; h++) {
        const plane = h * pairs;
        for (let i = 0; i < pairs; i++) dTable[index[i] * heads + h] += gradient[plane + i];
      }
      return [tf.tensor2d(dTable, [rows, heads]), tf.zerosLike(saved[0])];
    },
  };
});

/**
 * Frees intermediates at once, with or without a gradient tape. Under a tape this is safe because
 * no backward pass reads a released tensor itself: tfjs's kernels and the kit's custom-gradient
 * ops read what they saved (clones that keep the buffer alive while needed) or nothing, and the
 * tape uses only the shapes and ids of the others. What is not saved is freed: at the top of the
 * decoder, each convolution's output once its norm has run, and the residual sum once activated
 * (each 162 MiB at F = 48, 96^3).
 */
export function releaseIntermediates(...tensors: tf.Tensor[]): void {
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
      gradFunc: (dy, saved) => {
        // The recomputation records its own tape. tfjs 4.22 keeps a single active tape and
        // replaces it (then clears it) when a gradient starts at depth 0, as it does here during
        // the outer backward pass; restore the outer tape so that its cleanup still finds it.
        const state = (tf.engine() as unknown as { state: { activeTape: unknown } }).state;
        const outerTape = state.activeTape;
        try {
          // Only the inputs the outer pass reads get a gradient (a cached or frozen input is
          // pruned there): the recomputation's tape then skips their branches too.
          const wanted = saved.filter((_, i) => inputGradientWanted(i));
          const grads = withFrozenSet(frozenInForward, () => tf.grads(() => fn(...saved))(wanted, dy));
          return saved.map((t) => (wanted.includes(t) ? grads[wanted.indexOf(t)] : unwantedGradient()));
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
