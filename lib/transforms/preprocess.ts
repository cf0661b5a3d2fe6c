import { Vec3 } from '../io/affine';
import { Shape3, Volume, sameGrid, valueRange } from '../io/volume';
import { FseftError } from '../util/errors';
import { limitFromEnvironment } from '../util/limits';
import { orientationTransform } from './axes';
import { Box, cropBox, foregroundBox } from './crop';
import { CT_WINDOW, scaleIntensityRange } from './intensity';
import { orientedSpacingGrid, resampleOnGrid } from './resample';

export interface PreprocessOptions {
  /** Target voxel size in mm (one number for isotropic); default 1.5. */
  spacing?: number | Vec3;
  /** HU window mapped to [0, 1] with clipping; default [-175, 250]. */
  window?: [number, number];
  /** Crop to the bounding box of image > 0 after scaling; default true. */
  cropForeground?: boolean;
  /** Target orientation codes; default 'RAS'. */
  orientation?: string;
}

export interface PreprocessedCase {
  /** Float32 intensities in [0, 1], in the target orientation and spacing. */
  image: Volume<Float32Array>;
  /** Label values preserved (uint8, or uint16 when a value exceeds 255). */
  label?: Volume<Uint8Array | Uint16Array>;
  /** The foreground box on the resampled grid, when cropping. */
  crop?: Box;
}

export interface CaseSources {
  image: Volume;
  label?: Volume;
  /** File names used in error messages. */
  imageFile?: string;
  labelFile?: string;
}

/**
 * The paper's preprocessing, equal to MONAI's chain Orientation(RAS) -> Spacing(1.5 mm,
 * bilinear image / nearest label) -> ScaleIntensityRange(-175..250 -> 0..1, clip) ->
 * CropForeground(image > 0). For the image, orientation and spacing are one resampling pass from
 * the original voxels (see `orientedSpacingGrid`), exact because sampling is in world space.
 */
export function preprocessCase(sources: CaseSources, options: PreprocessOptions = {}): PreprocessedCase {
  const spacing = normaliseSpacing(options.spacing ?? 1.5);
  const window = options.window ?? CT_WINDOW;
  const { image, label } = sources;
  if (label) checkLabel(sources);

  const codes = options.orientation ?? 'RAS';
  const grid = orientedSpacingGrid(image.shape, image.affine, spacing, codes);
  checkGridSize(grid.shape, image, spacing, sources.imageFile);
  const resampled = resampleOnGrid(image, grid.shape, grid.affine, 'linear');
  const scaled = scaleIntensityRange(resampled, window, [0, 1], { clip: true, inPlace: true });
  let resampledLabel = label ? toLabelType(resampleOnGrid(label, grid.shape, grid.affine, 'nearest', { mirrorTies: tieMirroring(label, codes) }), sources.labelFile) : undefined;

  if (options.cropForeground === false) return { image: scaled, label: resampledLabel };
  const box = foregroundBox(scaled);
  if (!box) throw new FseftError(`no foreground: every voxel is at or below ${window[0]} HU after resampling`, sources.imageFile);
  if (resampledLabel) resampledLabel = cropBox(resampledLabel, box);
  return { image: cropBox(scaled, box), label: resampledLabel, crop: box };
}

/**
 * Nearest-neighbour ties (e.g. 3 mm -> 1.5 mm puts every other sample half-way between two voxels)
 * are broken in the oriented index space, as in MONAI, which orients (flips) the array before
 * resampling: an input axis that orientation reverses has its ties mirrored.
 */
function tieMirroring(label: Volume, codes: string): boolean[] {
  const { perm, flips } = orientationTransform(label.affine, codes);
  const mirrored = [false, false, false];
  perm.forEach((inputAxis, outputAxis) => (mirrored[inputAxis] = flips[outputAxis]));
  return mirrored;
}

/** Default ceiling on a resampled grid: 2^28 voxels (1 GiB as float32), e.g. 645^3 or 512 x 512 x 1024. */
export const DEFAULT_MAX_GRID_VOXELS = 2 ** 28;

/**
 * Refuses, before allocating, a resampled grid beyond FSEFT_MAX_GRID_VOXELS (a header claiming
 * 40 mm voxels would otherwise make a 43 KB file resample into gigabytes).
 */
function checkGridSize(shape: Shape3, image: Volume, spacing: Vec3, file?: string): void {
  const ceiling = limitFromEnvironment('FSEFT_MAX_GRID_VOXELS', DEFAULT_MAX_GRID_VOXELS);
  const voxels = shape[0] * shape[1] * shape[2];
  if (voxels <= ceiling) return;
  const extent = image.spacing.map((s, axis) => Math.round(s * image.shape[axis]));
  throw new FseftError(
    `resampling to ${spacing.join(' x ')} mm would make a ${shape.join(' x ')} grid (${voxels} voxels, more than ${ceiling}): ` +
      `the header claims ${image.spacing.map((s) => +s.toFixed(3)).join(' x ')} mm voxels, a field of view of ${extent.join(' x ')} mm. ` +
      'Check the header; raise FSEFT_MAX_GRID_VOXELS to allow it',
    file,
  );
}

export function normaliseSpacing(spacing: number | readonly number[]): Vec3 {
  const values = typeof spacing === 'number' ? [spacing, spacing, spacing] : [...spacing];
  if (values.length !== 3 || values.some((v) => !(v > 0) || !Number.isFinite(v))) {
    throw new FseftError(`invalid spacing ${JSON.stringify(spacing)}: expected a positive number or three of them`);
  }
  return values as Vec3;
}

function checkLabel({ image, label, imageFile, labelFile }: CaseSources): void {
  if (!label) return;
  if (!sameGrid(image, label)) {
    throw new FseftError(
      `label geometry does not match the image${imageFile ? ` ${imageFile}` : ''}: ` +
        `shape ${label.shape.join('x')} vs ${image.shape.join('x')}, ` +
        `affine ${JSON.stringify(roundAffine(label.affine))} vs ${JSON.stringify(roundAffine(image.affine))}`,
      labelFile,
    );
  }
  const [min, max] = valueRange(label.data);
  if (max <= 0) throw new FseftError('label is empty (no voxel above 0)', labelFile);
  if (min < 0) throw new FseftError(`label has negative values (min ${min})`, labelFile);
}

function toLabelType(label: Volume, file?: string): Volume<Uint8Array | Uint16Array> {
  if (label.data instanceof Uint8Array) return label as Volume<Uint8Array>;
  const [, max] = valueRange(label.data);
  if (max > 65535) throw new FseftError(`label value ${max} is above 65535`, file);
  const out = max > 255 ? new Uint16Array(label.voxelCount) : new Uint8Array(label.voxelCount);
  for (let i = 0; i < out.length; i++) out[i] = Math.round(label.data[i]);
  return label.withData(out);
}

function roundAffine(a: number[][]): number[][] {
  return a.slice(0, 3).map((row) => row.map((v) => Math.round(v * 1000) / 1000));
}
