import * as tf from '@tensorflow/tfjs-core';

/**
 * tfjs keeps every gradient of a backward pass until the pass ends (its tape never releases a dy
 * once used), so at full resolution the gradients of a whole block pile up. A custom op's dy is
 * the gradient of its output, which no later step of the pass reads once the op has turned it
 * into its inputs' gradients: this wrapper releases it then (unless it is itself returned).
 */
export function releasingGradient<S extends tf.Tensor[]>(gradFunc: (dy: tf.Tensor, saved: S) => tf.Tensor | tf.Tensor[]): (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor | tf.Tensor[] {
  return (dy, saved) => {
    const grads = gradFunc(dy, saved as S);
    if (!(Array.isArray(grads) ? grads : [grads]).includes(dy)) dy.dispose();
    return grads;
  };
}
