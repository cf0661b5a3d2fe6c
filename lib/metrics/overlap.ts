/** Binary masks: any non-zero voxel is foreground. Both arrays share one grid. */
export type MaskArray = ArrayLike<number>;

/**
 * Dice similarity coefficient 2|A ∩ B| / (|A| + |B|) of two binary masks. Two empty masks agree
 * perfectly (1); an empty prediction of a non-empty label scores 0.
 */
export function dice(prediction: MaskArray, label: MaskArray): number {
  if (prediction.length !== label.length) throw new Error(`mask sizes differ: ${prediction.length} vs ${label.length}`);
  let both = 0;
  let predicted = 0;
  let labelled = 0;
  for (let i = 0; i < label.length; i++) {
    const p = prediction[i] !== 0;
    const l = label[i] !== 0;
    if (p) predicted++;
    if (l) labelled++;
    if (p && l) both++;
  }
  return predicted + labelled === 0 ? 1 : (2 * both) / (predicted + labelled);
}

/** A binary mask of the voxels equal to `value` (e.g. one organ of a multi-label map). */
export function maskOf(labels: ArrayLike<number>, value: number): Uint8Array {
  const out = new Uint8Array(labels.length);
  for (let i = 0; i < labels.length; i++) out[i] = labels[i] === value ? 1 : 0;
  return out;
}
