import * as tf from '@tensorflow/tfjs-core';

/**
 * Parameters that are constants of the current computation: a frozen backbone under a
 * parameter-efficient method. tfjs's own kernels compute an input's gradient only when the tape
 * needs it, but the kit's custom-gradient ops (convolution, products, checkpointed blocks) return
 * every input's gradient at once; so while a tensor is frozen here they take it as a constant
 * instead of an input, and its gradient (as costly as the forward product, and a weight-sized
 * buffer) is never computed.
 */

let frozen: ReadonlySet<tf.Tensor> | undefined;

/** Runs `fn` with `tensors` frozen (in addition to any already frozen by an enclosing call). */
export function withFrozen<T>(tensors: Iterable<tf.Tensor>, fn: () => T): T {
  return withFrozenSet(new Set([...(frozen ?? []), ...tensors]), fn);
}

/** Runs `fn` with exactly the frozen set `set` (a checkpoint's recomputation restores its forward's). */
export function withFrozenSet<T>(set: ReadonlySet<tf.Tensor> | undefined, fn: () => T): T {
  const outer = frozen;
  frozen = set;
  try {
    return fn();
  } finally {
    frozen = outer;
  }
}

/** The frozen set now in force (undefined when nothing is frozen). */
export function frozenSet(): ReadonlySet<tf.Tensor> | undefined {
  return frozen;
}

export function isFrozen(tensor: tf.Tensor): boolean {
  return frozen?.has(tensor) ?? false;
}
