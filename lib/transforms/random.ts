import { Shape3, Volume, VoxelArray } from '../io/volume';
import { Rng } from '../util/random';
import { flipAxes, rotate90 } from './axes';
import { cropBox, spatialPad } from './crop';

export interface Patch<I extends VoxelArray = Float32Array, L extends VoxelArray = VoxelArray> {
  image: Volume<I>;
  label: Volume<L>;
  /** Centre voxel of the patch on the (padded) input grid. */
  center: [number, number, number];
  /** Whether the centre was drawn from the foreground. */
  positive: boolean;
}

export interface PosNegCropOptions {
  /** Patch size, e.g. [96, 96, 96]. Volumes smaller than it are padded first (SpatialPad, value 0). */
  roi: Shape3;
  numSamples: number;
  /** Relative weights of foreground and background centres; default 1 : 1. */
  pos?: number;
  neg?: number;
  /** Background centres are voxels with label 0 and image above this; default 0 (MONAI image_threshold). */
  imageThreshold?: number;
  /** Which label values count as foreground; default any value > 0. */
  isForeground?: (labelValue: number) => boolean;
}

/**
 * MONAI `RandCropByPosNegLabel`: `numSamples` patches of size `roi`, each centred on a random
 * foreground voxel with probability pos / (pos + neg), else on a random background voxel; centres
 * are moved inwards so that every patch lies inside the volume. Same rng state, same patches.
 */
export function randCropByPosNegLabel<I extends VoxelArray, L extends VoxelArray>(
  image: Volume<I>,
  label: Volume<L>,
  rng: Rng,
  options: PosNegCropOptions,
): Array<Patch<I, L>> {
  const { roi, numSamples, pos = 1, neg = 1, imageThreshold = 0, isForeground = (v: number) => v > 0 } = options;
  if (!(pos >= 0 && neg >= 0 && pos + neg > 0)) throw new Error('pos and neg must be non-negative and not both zero');
  if (image.shape.some((n, a) => n !== label.shape[a])) {
    throw new Error(`image ${image.shape.join('x')} and label ${label.shape.join('x')} differ in shape`);
  }
  const paddedImage = spatialPad(image, roi);
  const paddedLabel = spatialPad(label, roi);
  const { foreground, background } = splitIndices(paddedImage, paddedLabel, imageThreshold, isForeground);
  const patches: Array<Patch<I, L>> = [];
  for (let s = 0; s < numSamples; s++) {
    let positive = rng.next() < pos / (pos + neg);
    if (positive && foreground.length === 0) positive = false;
    if (!positive && background.length === 0) positive = true;
    const pool = positive ? foreground : background;
    const flat = pool.length > 0 ? pool[rng.int(pool.length)] : 0;
    patches.push({ ...patchAround(paddedImage, paddedLabel, flat, roi), positive });
  }
  return patches;
}

/**
 * Like MONAI `RandCropByLabelClasses`: half of the patches are centred on background (label 0,
 * image above the threshold), the other half on a voxel of one label class drawn uniformly among
 * the classes present, so small organs are seen as often as large ones. Same rng, same patches.
 */
export function randCropByClassBalance<I extends VoxelArray, L extends VoxelArray>(
  image: Volume<I>,
  label: Volume<L>,
  rng: Rng,
  options: { roi: Shape3; numSamples: number; imageThreshold?: number },
): Array<Patch<I, L>> {
  const { roi, numSamples, imageThreshold = 0 } = options;
  const paddedImage = spatialPad(image, roi);
  const paddedLabel = spatialPad(label, roi);
  const byClass = new Map<number, number[]>();
  const background: number[] = [];
  for (let i = 0; i < paddedLabel.data.length; i++) {
    const value = paddedLabel.data[i];
    if (value > 0) {
      let list = byClass.get(value);
      if (!list) byClass.set(value, (list = []));
      list.push(i);
    } else if (paddedImage.data[i] > imageThreshold) background.push(i);
  }
  const classes = [...byClass.keys()].sort((a, b) => a - b);
  const patches: Array<Patch<I, L>> = [];
  for (let s = 0; s < numSamples; s++) {
    let positive = rng.next() < 0.5;
    if (positive && classes.length === 0) positive = false;
    if (!positive && background.length === 0) positive = true;
    const pool = positive ? byClass.get(classes[rng.int(classes.length)])! : background;
    const flat = pool.length > 0 ? pool[rng.int(pool.length)] : 0;
    patches.push({ ...patchAround(paddedImage, paddedLabel, flat, roi), positive });
  }
  return patches;
}

/** The ROI-sized patch centred on voxel `flat`, the centre moved inwards so the patch lies inside. */
function patchAround<I extends VoxelArray, L extends VoxelArray>(image: Volume<I>, label: Volume<L>, flat: number, roi: Shape3): Omit<Patch<I, L>, 'positive'> {
  const [nx, ny] = image.shape;
  const raw = [flat % nx, Math.floor(flat / nx) % ny, Math.floor(flat / (nx * ny))];
  const center = raw.map((c, a) => {
    const half = Math.floor(roi[a] / 2);
    return Math.min(Math.max(c, half), image.shape[a] - roi[a] + half);
  }) as [number, number, number];
  const start = center.map((c, a) => c - Math.floor(roi[a] / 2)) as [number, number, number];
  const box = { start, end: start.map((v, a) => v + roi[a]) as [number, number, number] };
  return { image: cropBox(image, box), label: cropBox(label, box), center };
}

function splitIndices(image: Volume, label: Volume, imageThreshold: number, isForeground: (v: number) => boolean) {
  const labels = label.data;
  const intensities = image.data;
  const kind = new Uint8Array(labels.length); // 1 foreground, 2 background
  let fgCount = 0;
  let bgCount = 0;
  for (let i = 0; i < labels.length; i++) {
    if (isForeground(labels[i])) {
      kind[i] = 1;
      fgCount++;
    } else if (labels[i] === 0 && intensities[i] > imageThreshold) {
      kind[i] = 2;
      bgCount++;
    }
  }
  const foreground = new Int32Array(fgCount);
  const background = new Int32Array(bgCount);
  for (let i = 0, f = 0, b = 0; i < kind.length; i++) {
    if (kind[i] === 1) foreground[f++] = i;
    else if (kind[i] === 2) background[b++] = i;
  }
  return { foreground, background };
}

/**
 * MONAI `RandRotate90(prob, max_k, spatial_axes)` applied identically to every volume of a
 * sample (image and label): with probability `prob`, rotate by k * 90 degrees, k in 1..maxK.
 */
export function randRotate90<T extends Volume[]>(volumes: T, rng: Rng, { prob = 0.1, maxK = 3, axes = [0, 1] as [number, number] } = {}): T {
  if (rng.next() >= prob) return volumes;
  const k = 1 + rng.int(maxK);
  return volumes.map((v) => rotate90(v, k, axes)) as T;
}

/** MONAI `RandFlip(prob, spatial_axis)` applied identically to every volume of a sample. */
export function randFlip<T extends Volume[]>(volumes: T, rng: Rng, { prob = 0.1, axes = [0] as number[] } = {}): T {
  if (rng.next() >= prob) return volumes;
  return volumes.map((v) => flipAxes(v, axes)) as T;
}
