import * as tf from '@tensorflow/tfjs-core';
import { batchMatMulValue } from './matmul';
import { sliceLeading, sumRows } from './wasm-memory-ops';
import { softmaxBackward } from './wasm-softmax';

/**
 * Window self-attention softmax(q k^T + bias + mask) v as one op with its own gradient, computed a
 * chunk of windows at a time in both directions. Autodiff would keep the score, softmax and
 * dropout tensors of every window for the backward pass: [windows, heads, N, N] each, 176 MB per
 * tensor and block for a 64^3 input at feature size 12, so that training needs more than wasm's
 * 4 GiB without checkpointing. This op keeps only its inputs (the size of the token features) and
 * recomputes one chunk's probabilities at a time in the backward pass (as memory-efficient
 * attention does), so the whole transformer trains without checkpointing in a few hundred MB.
 */

export interface WindowAttentionOptions {
  /** Heads per window: q is laid out [windows * heads, N, d], window-major. */
  heads: number;
  /** The [count, 1, N, N] additive mask of windows [start, start + count) (shifted windows; constant, no gradient). */
  mask?: (start: number, count: number) => tf.Tensor4D;
  /** Windows per chunk: bounds each [chunk, heads, N, N] temporary. */
  chunkWindows: number;
  /** Dropout on the attention probabilities (training), replayed in the backward pass from the seed. */
  dropout?: { rate: number; seed: number };
}

/**
 * q [W*H, N, d] (already scaled), kT [W*H, d, N], v [W*H, N, d], bias [1, H, N, N] -> [W*H, N, d].
 * Gradients reach q, kT, v and bias.
 */
export function windowAttention(q: tf.Tensor3D, kT: tf.Tensor3D, v: tf.Tensor3D, bias: tf.Tensor4D, options: WindowAttentionOptions): tf.Tensor3D {
  const { heads, chunkWindows } = options;
  const windows = q.shape[0] / heads;
  const tokens = q.shape[1];
  if (!Number.isInteger(windows) || kT.shape[2] !== tokens || v.shape[1] !== tokens || bias.shape[1] !== heads || bias.shape[2] !== tokens) {
    throw new Error(`windowAttention: inconsistent shapes q [${q.shape}], kT [${kT.shape}], v [${v.shape}], bias [${bias.shape}] for ${heads} heads`);
  }
  const chunks: Array<{ start: number; count: number }> = [];
  for (let start = 0; start < windows; start += chunkWindows) chunks.push({ start, count: Math.min(chunkWindows, windows - start) });
  const rows = (x: tf.Tensor3D, chunk: { start: number; count: number }) =>
    chunks.length === 1 ? x : sliceLeading(x, chunk.start * heads, chunk.count * heads);

  /** Attention probabilities of one chunk, and the dropout multiplier applied to them (if any). */
  const probabilities = (qc: tf.Tensor3D, kTc: tf.Tensor3D, b: tf.Tensor4D, chunk: { start: number; count: number }, index: number) => {
    const scores = tf.add(tf.reshape(batchMatMulValue(qc, kTc), [chunk.count, heads, tokens, tokens]), b);
    const masked = options.mask ? tf.add(scores, options.mask(chunk.start, chunk.count)) : scores;
    const p = tf.softmax(tf.reshape(masked, [chunk.count * heads, tokens, tokens])) as tf.Tensor3D;
    const keep = options.dropout && options.dropout.rate > 0 ? (tf.dropout(tf.onesLike(p), options.dropout.rate, undefined, options.dropout.seed + index) as tf.Tensor3D) : undefined;
    return { p, keep };
  };

  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [qa, kTa, va, ba, save] = args as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor4D, tf.GradSaveFunc];
    save([qa, kTa, va, ba]);
    const outputs = chunks.map((chunk, index) =>
      tf.tidy(() => {
        const { p, keep } = probabilities(rows(qa, chunk), rows(kTa, chunk), ba, chunk, index);
        return batchMatMulValue(keep ? (tf.mul(p, keep) as tf.Tensor3D) : p, rows(va, chunk));
      }),
    );
    const value = outputs.length === 1 ? outputs[0] : (tf.concat(outputs, 0) as tf.Tensor3D);
    if (outputs.length > 1) tf.dispose(outputs);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [qs, kTs, vs, bs] = saved as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor4D];
        const parts = chunks.map((chunk, index) =>
          tf.tidy(() => {
            const qc = rows(qs, chunk);
            const kTc = rows(kTs, chunk);
            const vc = rows(vs, chunk);
            const dOut = rows(dy as tf.Tensor3D, chunk);
            const { p, keep } = probabilities(qc, kTc, bs, chunk, index);
            const used = keep ? (tf.mul(p, keep) as tf.Tensor3D) : p;
            // Products with transposed operands are formed from small [N, d] transposes only.
            const dv = swap(batchMatMulValue(swap(dOut), used));
            let dp = batchMatMulValue(dOut, swap(vc));
            if (keep) dp = tf.mul(dp, keep) as tf.Tensor3D;
            // Softmax backward: dS = P (dP - rowsum(dP P)).
            const ds = softmaxBackward(p, dp);
            const dq = batchMatMulValue(ds, swap(kTc));
            const dkT = batchMatMulValue(swap(qc), ds);
            const dBias = sumRows(tf.reshape(ds, [chunk.count, heads * tokens * tokens]) as tf.Tensor2D);
            return { dq, dkT, dv, dBias };
          }),
        );
        const join = (key: 'dq' | 'dkT' | 'dv') => (parts.length === 1 ? parts[0][key] : tf.concat(parts.map((part) => part[key]), 0));
        // A running sum, not addN: tfjs-webgpu's AddN binds one buffer per input and fails past 7.
        const dBias = parts.slice(1).reduce((total, part) => tf.add(total, part.dBias), parts[0].dBias);
        const grads = [join('dq'), join('dkT'), join('dv'), tf.reshape(dBias, bs.shape)];
        if (parts.length > 1) tf.dispose(parts.flatMap((part) => [part.dq, part.dkT, part.dv, part.dBias]));
        return grads;
      },
    };
  });
  return op(q, kT, v, bias) as tf.Tensor3D;
}

function swap(x: tf.Tensor3D): tf.Tensor3D {
  return tf.transpose(x, [0, 2, 1]) as tf.Tensor3D;
}
