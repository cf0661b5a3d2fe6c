import * as tf from '@tensorflow/tfjs-core';

/**
 * - 'paper': Eq. 2 in voxels, added to every support step of the TI epochs.
 * - 'normalised': Eq. 2 divided by max(S_hat, S), added to every support step.
 * - 'reference': the authors' code (`ProportionConstraint`, commit 2a14658): its own penalty
 *   (`referenceSizePenalty`) as a separate optimizer step once per TI epoch.
 */
export type SizeConstraintForm = 'paper' | 'normalised' | 'reference';
export const SIZE_CONSTRAINT_FORMS: readonly SizeConstraintForm[] = ['paper', 'normalised', 'reference'];

/**
 * The transductive size constraint, Eq. 2 of the paper: zero while the predicted size S_hat lies
 * in [(1 - gamma) S, (1 + gamma) S], else the distance to the violated bound (the paper's first
 * case has a typo; it is |S_hat - (1 - gamma) S|).
 * - 'paper': sizes in voxels, S_hat = sum of sigmoid outputs over the query.
 * - 'normalised' (the reference code): the same distance divided by max(S_hat, S), scale-free.
 */
export function sizeConstraintLoss(predictedSize: tf.Scalar, targetSize: number, gamma: number, form: Exclude<SizeConstraintForm, 'reference'> = 'paper'): tf.Scalar {
  if (!(gamma >= 0)) throw new Error(`gamma must be >= 0, got ${gamma}`);
  if (!(targetSize > 0)) throw new Error(`target size must be positive, got ${targetSize}`);
  return tf.tidy(() => {
    const below = tf.relu(tf.sub((1 - gamma) * targetSize, predictedSize));
    const above = tf.relu(tf.sub(predictedSize, (1 + gamma) * targetSize));
    const violation = tf.add(below, above);
    return (form === 'normalised' ? tf.div(violation, tf.maximum(predictedSize, targetSize)) : violation) as tf.Scalar;
  });
}

/**
 * The reference code's size penalty: rel = (S - S_hat) / max(S_hat, S), the max taken as a
 * constant; outside [-gamma, gamma] the penalty is |rel| - gamma (rel > gamma) or |rel| + gamma
 * (rel < -gamma), so its gradient is that of |rel|; inside the margin there is no penalty and the
 * reference takes no step (returns undefined). Proportions of the pooled query in the reference;
 * the ratio is the same in voxels.
 */
export function referenceSizePenalty(predictedSize: tf.Scalar, targetSize: number, gamma: number): tf.Scalar | undefined {
  if (!(gamma >= 0)) throw new Error(`gamma must be >= 0, got ${gamma}`);
  if (!(targetSize > 0)) throw new Error(`target size must be positive, got ${targetSize}`);
  const predicted = predictedSize.dataSync()[0];
  const scale = Math.max(predicted, targetSize);
  const relative = (targetSize - predicted) / scale;
  if (relative <= gamma && relative >= -gamma) return undefined;
  return tf.tidy(() => {
    const rel = tf.div(tf.sub(targetSize, predictedSize), scale);
    return tf.add(tf.abs(rel), relative > gamma ? -gamma : gamma) as tf.Scalar;
  });
}
