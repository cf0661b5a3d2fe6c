import * as tf from '@tensorflow/tfjs-core';

export type SizeConstraintForm = 'paper' | 'normalised';

/**
 * The transductive size constraint, Eq. 2 of the paper: zero while the predicted size S_hat lies
 * in [(1 - gamma) S, (1 + gamma) S], else the distance to the violated bound (the paper's first
 * case has a typo; it is |S_hat - (1 - gamma) S|).
 * - 'paper': sizes in voxels, S_hat = sum of sigmoid outputs over the query.
 * - 'normalised' (the reference code): the same distance divided by max(S_hat, S), scale-free.
 */
export function sizeConstraintLoss(predictedSize: tf.Scalar, targetSize: number, gamma: number, form: SizeConstraintForm = 'paper'): tf.Scalar {
  if (!(gamma >= 0)) throw new Error(`gamma must be >= 0, got ${gamma}`);
  if (!(targetSize > 0)) throw new Error(`target size must be positive, got ${targetSize}`);
  return tf.tidy(() => {
    const below = tf.relu(tf.sub((1 - gamma) * targetSize, predictedSize));
    const above = tf.relu(tf.sub(predictedSize, (1 + gamma) * targetSize));
    const violation = tf.add(below, above);
    return (form === 'normalised' ? tf.div(violation, tf.maximum(predictedSize, targetSize)) : violation) as tf.Scalar;
  });
}
