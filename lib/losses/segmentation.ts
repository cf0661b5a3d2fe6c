import * as tf from '@tensorflow/tfjs-core';

/**
 * Segmentation losses on channels-last logits [1, D, H, W, C] with multi-hot targets of the same
 * shape, reduced per channel over the spatial axes (MONAI DiceLoss(sigmoid=True, batch=False)).
 */

const SPATIAL = [0, 1, 2, 3];

/**
 * Per-channel soft Dice loss 1 - (2 sum(p t) + 1e-5) / (sum p + sum t + 1e-5) of sigmoid(logits),
 * or of softmax(logits) over the channels (multi-class, one-hot targets with a background channel): [C].
 */
export function diceLossPerChannel(logits: tf.Tensor, target: tf.Tensor, smooth = 1e-5, activation: 'sigmoid' | 'softmax' = 'sigmoid'): tf.Tensor1D {
  return tf.tidy(() => {
    const p = activation === 'sigmoid' ? tf.sigmoid(logits) : tf.softmax(logits);
    const intersection = tf.sum(tf.mul(p, target), SPATIAL);
    const denominator = tf.add(tf.sum(p, SPATIAL), tf.sum(target, SPATIAL));
    return tf.sub(1, tf.div(tf.add(tf.mul(intersection, 2), smooth), tf.add(denominator, smooth))) as tf.Tensor1D;
  });
}

/** BCE with logits per element, max(x, 0) - x t + log(1 + exp(-|x|)) (the numerically stable form); t = 0 without a target. */
function bceElements(logits: tf.Tensor, target?: tf.Tensor): tf.Tensor {
  const linear = target ? tf.sub(tf.relu(logits), tf.mul(logits, target)) : tf.relu(logits);
  return tf.add(linear, tf.log1p(tf.exp(tf.neg(tf.abs(logits)))));
}

/**
 * Per-channel binary cross-entropy with logits: [C]. `balanced`: the mean over the channel's
 * positive voxels and the mean over its negative ones, averaged (class-balanced cross-entropy);
 * a channel without positive voxels keeps its negatives' mean.
 * With the plain mean a 300-voxel organ in a 64^3 crop pulls its logits up with 1/870 of the
 * weight the crop's background pulls them down.
 */
export function bcePerChannel(logits: tf.Tensor, target: tf.Tensor, balanced = false): tf.Tensor1D {
  return tf.tidy(() => {
    const elementwise = bceElements(logits, target);
    if (!balanced) return tf.mean(elementwise, SPATIAL) as tf.Tensor1D;
    const positives = tf.sum(target, SPATIAL);
    const voxels = elementwise.size / elementwise.shape[elementwise.rank - 1];
    const onPositives = tf.sum(tf.mul(elementwise, target), SPATIAL);
    const onNegatives = tf.sub(tf.sum(elementwise, SPATIAL), onPositives);
    const positiveMean = tf.div(onPositives, tf.maximum(positives, 1));
    const negativeMean = tf.div(onNegatives, tf.maximum(tf.sub(voxels, positives), 1));
    // Half and half where the class is present; its negatives alone where it is absent.
    const positiveWeight = tf.mul(tf.minimum(positives, 1), 0.5);
    return tf.add(tf.mul(positiveMean, positiveWeight), tf.mul(negativeMean, tf.sub(1, positiveWeight))) as tf.Tensor1D;
  });
}

/** Mean categorical cross-entropy of softmax(logits) against one-hot targets, as [1] (multi-class). */
export function crossEntropy(logits: tf.Tensor, target: tf.Tensor): tf.Tensor1D {
  return tf.tidy(() => {
    const logProbabilities = tf.logSoftmax(logits);
    return tf.reshape(tf.neg(tf.mean(tf.sum(tf.mul(target, logProbabilities), -1))), [1]) as tf.Tensor1D;
  });
}

export interface PartialLabelLossOptions {
  /** Add binary cross-entropy to the Dice loss of each class (the universal model's Dice + BCE); default false (Dice, as the paper). */
  bce?: boolean;
  /** Smoothing of each class's Dice; default 1e-5 (MONAI), the reference's BinaryDice3D uses 1. */
  diceSmooth?: number;
  /** The BCE as the mean of its positive and negative voxels' means (see bcePerChannel); default false. */
  balancedBce?: boolean;
  /**
   * Exclusion BCE: for each class the volume does not annotate, the voxels of annotated classes that
   * cannot share a voxel with it (`disjoint`, one flag per channel) are known negatives, and their
   * BCE (mean over the crop's voxels, as the BCE term's) joins the loss. Without it, Eq. 1 leaves a
   * class's channel free to fire on another organ wherever no dataset of that institution labels the
   * class. Default false (the paper's Eq. 1).
   */
  exclusion?: { disjoint: ArrayLike<number> };
}

/**
 * Eq. 1 of the paper: the segmentation loss of each class weighted by the dataset's annotation
 * vector w (1 = annotated), normalised by sum(w). Unannotated classes get no gradient, so a
 * dataset that leaves an organ unlabelled never teaches the model that the organ is background.
 */
export function partialLabelLoss(logits: tf.Tensor, target: tf.Tensor, annotation: ArrayLike<number>, options: PartialLabelLossOptions = {}): tf.Scalar {
  const channels = logits.shape[logits.shape.length - 1];
  if (annotation.length !== channels) throw new Error(`annotation vector has ${annotation.length} entries for ${channels} output channels`);
  const weights = Float32Array.from(annotation, (v) => (v ? 1 : 0));
  const count = weights.reduce((a, b) => a + b, 0);
  if (count === 0) throw new Error('the annotation vector marks no class: nothing to learn from this volume');
  return tf.tidy(() => {
    let perClass: tf.Tensor = diceLossPerChannel(logits, target, options.diceSmooth);
    if (options.bce) perClass = tf.add(perClass, bcePerChannel(logits, target, options.balancedBce));
    let total = tf.sum(tf.mul(perClass, tf.tensor1d(weights)));
    if (options.exclusion) total = tf.add(total, exclusionBce(logits, target, weights, options.exclusion.disjoint));
    return tf.div(total, count) as tf.Scalar;
  });
}

/**
 * Sum over the unannotated disjoint channels c of mean_v(n_v softplus(x_vc)), where n_v = 1 on a
 * voxel that an annotated disjoint class labels: BCE with target 0 on the voxels known not to be c.
 */
export function exclusionBce(logits: tf.Tensor, target: tf.Tensor, annotated: ArrayLike<number>, disjoint: ArrayLike<number>): tf.Scalar {
  const channels = logits.shape[logits.shape.length - 1];
  if (disjoint.length !== channels) throw new Error(`disjoint flags have ${disjoint.length} entries for ${channels} output channels`);
  const known = Float32Array.from({ length: channels }, (_, c) => (annotated[c] && disjoint[c] ? 1 : 0));
  const excluded = Float32Array.from({ length: channels }, (_, c) => (!annotated[c] && disjoint[c] ? 1 : 0));
  return tf.tidy(() => {
    if (!excluded.some((v) => v) || !known.some((v) => v)) return tf.scalar(0);
    // Targets of disjoint classes are exclusive, so their sum is 0 or 1 (clipped against label noise).
    const negatives = tf.minimum(tf.sum(tf.mul(target, tf.tensor1d(known)), -1, true), 1);
    const perChannel = tf.mean(tf.mul(bceElements(logits), negatives), SPATIAL);
    return tf.sum(tf.mul(perChannel, tf.tensor1d(excluded))) as tf.Scalar;
  });
}
