import { Adapter } from '../adapters/adapters';
import { readNifti } from '../io/nifti';
import { Shape3, Volume, sameGrid, valueRange } from '../io/volume';
import { ModelPreprocessing } from '../networks/model-io';
import { SwinUNETR } from '../networks/swin-unetr';
import { largestComponentPerLabel, largestConnectedComponent } from '../metrics/components';
import { spatialPad } from '../transforms/crop';
import { preprocessCase } from '../transforms/preprocess';
import { resampleOnGrid } from '../transforms/resample';
import { FseftError } from '../util/errors';
import { BackboneFeatures, backboneFeatures } from './features';
import { FeatureGrid, gridChannelToVolumeData } from '../networks/volume-tensor';
import { adapterProbabilities, probabilitiesToVolume } from './segment';

/** A CT (and optionally one organ's mask) read and preprocessed the way the model expects. */
export interface PreparedCase {
  id: string;
  imageFile: string;
  /** The image as stored: predictions are mapped back onto its grid. */
  source: Volume;
  image: Volume<Float32Array>;
  mask?: Volume<Uint8Array>;
}

/** "label.nii.gz:5" -> the file and label value (undefined: any non-zero voxel). */
export function parseLabelSpec(spec: string): { file: string; value?: number } {
  const match = /^(.*\.nii(?:\.gz)?):(\d+)$/.exec(spec);
  return match ? { file: match[1], value: Number(match[2]) } : { file: spec };
}

/** "label.nii.gz:6,1" -> the file and the label values of several organs, in order. */
export function parseLabelValuesSpec(spec: string): { file: string; values?: number[] } {
  const match = /^(.*\.nii(?:\.gz)?):(\d+(?:,\d+)+)$/.exec(spec);
  return match ? { file: match[1], values: match[2].split(',').map(Number) } : { file: spec };
}

/**
 * Refuses volumes that are not CT in Hounsfield units (e.g. MR, or intensities already scaled to
 * [0, 1]): the HU window of the preprocessing would turn them into noise.
 */
export function checkHounsfield(volume: Volume, file: string): void {
  const [low, high] = valueRange(volume.data);
  if (low >= -50 || high - low < 300) {
    throw new FseftError(`intensities ${low.toFixed(1)}..${high.toFixed(1)} do not look like CT in Hounsfield units (air is about -1000 HU); give the original CT, not a normalised or MR image`, file);
  }
}

/** Reads, checks and preprocesses one case; `label` selects the organ voxels (value, or any non-zero). */
export async function prepareCase(
  imageFile: string,
  preprocessing: ModelPreprocessing,
  label?: { file: string; value?: number; values?: number[] } | { volume: Volume; value: number; file: string },
  id?: string,
): Promise<PreparedCase> {
  const source = await readNifti(imageFile);
  checkHounsfield(source, imageFile);
  let mask: Volume<Uint8Array> | undefined;
  if (label) {
    const labelVolume = 'volume' in label ? label.volume : await readNifti(label.file);
    if (!sameGrid(source, labelVolume)) throw new FseftError(`geometry does not match the image ${imageFile} (shape ${labelVolume.shape.join('x')} vs ${source.shape.join('x')}, or a different affine)`, label.file);
    const values = 'values' in label ? label.values : undefined;
    if (values) {
      // Several organs: the mask holds each one's position in `values` (1-based), 0 elsewhere.
      const index = new Map(values.map((v, i) => [v, i + 1]));
      mask = labelVolume.withData(Uint8Array.from(labelVolume.data as ArrayLike<number>, (v) => index.get(v) ?? 0));
      const found = new Set(mask.data);
      const missing = values.filter((_, i) => !found.has(i + 1));
      if (missing.length > 0) {
        const present = [...new Set(labelVolume.data as ArrayLike<number> as number[])].filter((v) => v !== 0).sort((a, b) => a - b);
        throw new FseftError(`label value${missing.length > 1 ? 's' : ''} ${missing.join(', ')} do${missing.length > 1 ? '' : 'es'} not occur (values present: ${present.slice(0, 30).join(', ') || 'none'})`, label.file);
      }
    }
    const select = label.value === undefined ? (v: number) => v !== 0 : (v: number) => v === label.value;
    if (!values) mask = labelVolume.withData(Uint8Array.from(labelVolume.data as ArrayLike<number>, (v) => (select(v) ? 1 : 0)));
    if (!mask!.data.some((v) => v)) {
      const present = [...new Set(labelVolume.data as ArrayLike<number> as number[])].filter((v) => v !== 0).sort((a, b) => a - b);
      throw new FseftError(`label value ${label.value ?? 'non-zero'} does not occur (values present: ${present.slice(0, 30).join(', ') || 'none'})`, label.file);
    }
  }
  const pre = preprocessCase({ image: source, label: mask, imageFile, labelFile: label?.file }, { spacing: preprocessing.spacing, window: preprocessing.window });
  if (mask && !pre.label!.data.some((v) => v)) throw new FseftError('the organ vanished in preprocessing (smaller than one voxel at the model spacing)', label!.file);
  return { id: id ?? imageFile, imageFile, source, image: pre.image, mask: pre.label as Volume<Uint8Array> | undefined };
}

/**
 * Maps probabilities from the preprocessed grid back onto the stored image's grid (world
 * coordinates through both affines, trilinear; zero outside the preprocessed crop), then applies
 * the threshold and keeps the largest connected component there.
 */
export function toInputGeometry(probabilities: Volume<Float32Array>, source: Volume, threshold = 0.5): { probabilities: Volume<Float32Array>; mask: Volume<Uint8Array> } {
  const padded = spatialPad(probabilities, probabilities.shape.map((n) => n + 2) as Shape3, 0);
  const mapped = resampleOnGrid(padded, source.shape, source.affine, 'linear') as Volume<Float32Array>;
  const binary = Uint8Array.from(mapped.data, (p) => (p > threshold ? 1 : 0));
  return { probabilities: mapped, mask: source.withData(largestConnectedComponent(binary, source.shape, 26)) };
}

export interface PredictionResult {
  /** The organ (1) on background; for a multi-class head each organ's index 1..C in the head's order. */
  mask: Volume<Uint8Array>;
  /** The organ's probability; for a multi-class head the probability of any organ (1 - background). */
  probabilities: Volume<Float32Array>;
  /** The same on the preprocessed grid. */
  preprocessed: { probabilities: Volume<Float32Array> };
  seconds: number;
}

/** Full prediction of one organ on a stored CT: preprocessing, sliding window, mapping back, threshold, LCC. */
export function predictCase(
  backbone: SwinUNETR,
  adapter: Adapter,
  prepared: PreparedCase,
  preprocessing: ModelPreprocessing,
  options: { overlap?: number; features?: BackboneFeatures; onWindow?: (done: number, total: number) => void } = {},
): PredictionResult {
  const started = Date.now();
  const roi = preprocessing.roi;
  const features =
    adapter.input === 'image' ? undefined : options.features ?? backboneFeatures(backbone, prepared.image, { roi, overlap: options.overlap, decoderInputs: adapter.input === 'decoder', onWindow: options.onWindow });
  const grid = adapterProbabilities(adapter, { image: prepared.image, features }, { roi, overlap: options.overlap, onWindow: adapter.input === 'image' ? options.onWindow : undefined });
  if (grid.channels > 1) {
    const anyOrgan = prepared.image.withData(Float32Array.from(gridChannelToVolumeData(grid, 0), (p) => 1 - p));
    return { ...labelsOnInputGeometry(grid, prepared), preprocessed: { probabilities: anyOrgan }, seconds: (Date.now() - started) / 1000 };
  }
  const preprocessedProbabilities = probabilitiesToVolume(grid, prepared.image);
  const mapped = toInputGeometry(preprocessedProbabilities, prepared.source);
  return { ...mapped, preprocessed: { probabilities: preprocessedProbabilities }, seconds: (Date.now() - started) / 1000 };
}

/**
 * A multi-class head's prediction on the stored image's grid: each channel's probabilities mapped
 * back (trilinear, as toInputGeometry), then each voxel takes its most probable channel (outside
 * the preprocessed crop: background) and each organ keeps its largest 26-connected component.
 * Channels are mapped one at a time, so memory holds two volumes of the input's size, not C + 1.
 */
export function labelsOnInputGeometry(grid: FeatureGrid, prepared: PreparedCase): { mask: Volume<Uint8Array>; probabilities: Volume<Float32Array> } {
  const source = prepared.source;
  const size = source.data.length;
  const best = new Float32Array(size);
  const winner = new Uint8Array(size);
  let background: Float32Array = new Float32Array(0);
  for (let c = 0; c < grid.channels; c++) {
    const channel = prepared.image.withData(gridChannelToVolumeData(grid, c));
    const padded = spatialPad(channel, channel.shape.map((n) => n + 2) as Shape3, 0);
    const mapped = resampleOnGrid(padded, source.shape, source.affine, 'linear').data as Float32Array;
    if (c === 0) background = mapped;
    for (let i = 0; i < size; i++) {
      if (c === 0 || mapped[i] > best[i]) {
        best[i] = mapped[i];
        winner[i] = c;
      }
    }
  }
  // Outside the preprocessed crop every channel maps to 0: background.
  for (let i = 0; i < size; i++) if (best[i] <= 0) winner[i] = 0;
  return {
    mask: source.withData(largestComponentPerLabel(winner, source.shape, grid.channels - 1)),
    probabilities: source.withData(Float32Array.from(background, (p, i) => (best[i] > 0 ? 1 - p : 0))),
  };
}
