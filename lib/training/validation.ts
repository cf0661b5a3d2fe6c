import * as tf from '@tensorflow/tfjs-core';
import { Shape3, Volume } from '../io/volume';
import { TEMPLATE_CLASSES } from '../data/template';
import { slidingWindow } from '../inference/sliding-window';
import { largestConnectedComponent } from '../metrics/components';
import { dice } from '../metrics/overlap';
import { SwinUNETR } from '../networks/swin-unetr';
import { FeatureGrid, gridChannelToVolumeData, volumeToGrid } from '../networks/volume-tensor';
import { FseftError } from '../util/errors';

/** A held-out preprocessed volume with the template classes its dataset annotates (1-based). */
export interface ValidationCase {
  id: string;
  dataset: string;
  image: Volume;
  label: Volume<Uint8Array>;
  annotation: Uint8Array;
}

export interface ValidationResult {
  /** Mean Dice per annotated class (template names) over the validation volumes that annotate it. */
  dice: Record<string, number>;
  perCase: Array<{ id: string; dataset: string; dice: Record<string, number> }>;
  seconds: number;
}

/**
 * Sigmoid probabilities of every output channel over a whole preprocessed volume, by
 * Gaussian-blended sliding windows of the model's patch size: [X, Y, Z, outChannels].
 */
export function headProbabilities(model: SwinUNETR, image: Volume, roi: Shape3, overlap?: number): FeatureGrid {
  const channels = model.config.outChannels;
  return slidingWindow(
    volumeToGrid(image),
    [{ channels, scale: 1 }],
    (window) => {
      const out = model.forward(window);
      out.features.dispose();
      const probabilities = tf.sigmoid(out.logits) as tf.Tensor5D;
      out.logits.dispose();
      return [probabilities];
    },
    { roi, overlap },
  )[0];
}

/**
 * The foundation model's own segmentation of each class: probability > 0.5, largest
 * 26-connected component, Dice against the label's voxels of that class on the preprocessed grid
 * (the generalization setting, and what `fseft evaluate` gives for the same masks).
 */
export function classMasks(probabilities: FeatureGrid, like: Volume, classes: number[], threshold = 0.5): Map<number, Uint8Array> {
  const masks = new Map<number, Uint8Array>();
  for (const cls of classes) {
    const binary = Uint8Array.from(gridChannelToVolumeData(probabilities, cls - 1), (p) => (p > threshold ? 1 : 0));
    masks.set(cls, largestConnectedComponent(binary, like.shape, 26));
  }
  return masks;
}

/** Per-class validation Dice of the model's head over held-out volumes. */
export function validationDice(model: SwinUNETR, cases: readonly ValidationCase[], roi: Shape3): ValidationResult {
  const started = Date.now();
  const perCase: ValidationResult['perCase'] = [];
  for (const validationCase of cases) {
    const classes = [...validationCase.annotation].flatMap((w, c) => (w ? [c + 1] : []));
    const probabilities = headProbabilities(model, validationCase.image, roi);
    const masks = classMasks(probabilities, validationCase.image, classes);
    const caseDice: Record<string, number> = {};
    for (const cls of classes) {
      const truth = Uint8Array.from(validationCase.label.data, (v) => (v === cls ? 1 : 0));
      caseDice[TEMPLATE_CLASSES[cls - 1]] = dice(masks.get(cls)!, truth);
    }
    perCase.push({ id: validationCase.id, dataset: validationCase.dataset, dice: caseDice });
  }
  return { dice: meanDicePerOrgan(perCase), perCase, seconds: (Date.now() - started) / 1000 };
}

/** Mean Dice per organ over the volumes that score it, organs in template order. */
export function meanDicePerOrgan(perCase: ValidationResult['perCase']): Record<string, number> {
  const sums = new Map<string, { sum: number; count: number }>();
  for (const entry of perCase) {
    for (const [organ, value] of Object.entries(entry.dice)) {
      const s = sums.get(organ) ?? { sum: 0, count: 0 };
      s.sum += value;
      s.count++;
      sums.set(organ, s);
    }
  }
  const order = (organ: string) => (TEMPLATE_CLASSES as readonly string[]).indexOf(organ);
  return Object.fromEntries([...sums].sort((a, b) => order(a[0]) - order(b[0])).map(([organ, { sum, count }]) => [organ, sum / count]));
}

/** Cases by dataset name, datasets in order of first appearance. */
export function groupByDataset<T extends { dataset: string }>(cases: readonly T[]): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const c of cases) groups.set(c.dataset, [...(groups.get(c.dataset) ?? []), c]);
  return groups;
}

/**
 * Holds out the last `perDataset` volumes of every dataset for validation (deterministic: the
 * same data gives the same split). A dataset needs at least one volume left to train on.
 */
export function splitValidation<T extends { dataset: string }>(cases: readonly T[], perDataset: number): { train: T[]; validation: T[] } {
  if (perDataset === 0) return { train: [...cases], validation: [] };
  const train: T[] = [];
  const validation: T[] = [];
  for (const [name, members] of groupByDataset(cases)) {
    if (members.length <= perDataset) throw new FseftError(`dataset ${name} has ${members.length} volumes: holding out ${perDataset} for validation leaves none to train on`);
    train.push(...members.slice(0, members.length - perDataset));
    validation.push(...members.slice(members.length - perDataset));
  }
  return { train, validation };
}
