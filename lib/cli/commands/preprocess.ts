import * as fs from 'node:fs';
import * as path from 'node:path';
import { readNifti, writeNifti } from '../../io/nifti';
import { Volume, valueRange } from '../../io/volume';
import { preprocessDatasets } from '../../data/batch';
import { Dataset, isCollectionManifest, openDataset, readCollection } from '../../data/datasets';
import { PreprocessOptions, preprocessCase } from '../../transforms/preprocess';
import { ensureWritableDirectory, withOutputDirectory } from '../../util/atomic-write';
import { refuseOverwritingInputs } from '../../util/paths';
import { FseftError } from '../../util/errors';
import { Options } from '../args';
import { Compression, niftiExtension, parseCompression } from '../../io/gzip';

export const PREPROCESS_HELP = `fseft preprocess --image <ct.nii.gz> [--label <seg.nii.gz>] --out <dir> [options]
fseft preprocess --data <dataset dir | pairs.json | collection.json> --out <dir> [--workers N] [options]
  The paper's preprocessing (MONAI chain): orientation RAS, resampling to --spacing (trilinear
  image, nearest label), HU --window scaled to [0, 1] with clipping, crop to the foreground.
  One case writes <dir>/image.nii.gz (float32) and <dir>/label.nii.gz (uint8, values kept);
  .nii with --compression none.
  A dataset or collection is processed in parallel into <dir>/<dataset>/<case>/ with a progress
  bar; a rerun skips finished cases. Labels of datasets are translated to the 29-class template.
  Options:
    --spacing 1.5 | 1.5,1.5,2   target voxel size in mm (default 1.5)
    --window=-175,250           HU window mapped to [0, 1] (default -175,250)
    --no-crop                   keep the whole resampled field of view
    --frame N                   read frame N of a 4-D image
    --compression fast          none (plain .nii), fast (zlib level 1, default), best (level 9) or
                                a level 0-9; gzip runs on all cores
    --workers N                 parallel workers for datasets (default: all cores)`;

export async function preprocessCommand(options: Options): Promise<void> {
  const image = options.string('image');
  const label = options.string('label');
  const data = options.string('data');
  const out = options.string('out');
  const frame = options.integer('frame', undefined, { min: 0 });
  const workers = options.integer('workers', undefined, { min: 1 });
  const compressionOption = options.string('compression');
  let compression: Compression | undefined;
  try {
    compression = compressionOption === undefined ? undefined : parseCompression(compressionOption);
  } catch (error) {
    throw new FseftError((error as Error).message);
  }
  const spacingList = options.numberList('spacing', [1, 3]);
  const window = options.numberList('window', [2]) as [number, number] | undefined;
  const crop = options.flag('crop', true);
  options.rejectUnknown();
  if (!out) throw new FseftError(`missing --out\n${PREPROCESS_HELP}`);
  if (!image && !data) throw new FseftError(`give --image (one case) or --data (a dataset)\n${PREPROCESS_HELP}`);
  if (image && data) throw new FseftError('give either --image or --data, not both');
  const preprocessOptions: PreprocessOptions = {
    spacing: spacingList ? (spacingList.length === 1 ? spacingList[0] : (spacingList as [number, number, number])) : 1.5,
    window: window ?? [-175, 250],
    cropForeground: crop,
  };

  if (data) {
    await ensureWritableDirectory(out);
    const datasets: Dataset[] = fs.statSync(data, { throwIfNoEntry: false })?.isFile() && isCollectionManifest(data) ? readCollection(data) : [openDataset(data)];
    const started = Date.now();
    const records = await preprocessDatasets(datasets, out, { ...preprocessOptions, compression }, { workers });
    const skipped = records.filter((r) => r.skipped).length;
    console.log(
      `preprocessed ${records.length - skipped} case(s), skipped ${skipped} already done, from ${datasets.length} dataset(s) in ${((Date.now() - started) / 1000).toFixed(1)} s -> ${path.join(out, 'collection.json')}`,
    );
    return;
  }

  if (fs.statSync(image!, { throwIfNoEntry: false })?.isDirectory()) throw new FseftError('is a directory; use --data for a dataset', image);
  const imageOut = path.join(out, `image${niftiExtension(compression)}`);
  const labelOut = path.join(out, `label${niftiExtension(compression)}`);
  refuseOverwritingInputs([imageOut, labelOut], [image!, ...(label ? [label] : [])]);
  await withOutputDirectory(out, async () => {
    const started = Date.now();
    // Both files inflate at once, on the thread pool.
    const [source, sourceLabel] = await allSettled([readNifti(image!, { frame }), label ? readNifti(label, { frame }) : undefined] as const);
    const result = preprocessCase({ image: source, label: sourceLabel, imageFile: image, labelFile: label }, preprocessOptions);
    // Both files or neither: each write is atomic, and a failure removes what was already written.
    try {
      // Settled, not raced: a failed write must not leave the other file arriving after the cleanup.
      await allSettled([writeNifti(imageOut, result.image, { compression }), result.label ? writeNifti(labelOut, result.label, { compression }) : undefined]);
    } catch (error) {
      await Promise.all([imageOut, labelOut].map((f) => fs.promises.rm(f, { force: true })));
      throw error;
    }
    console.log(summaryLine(source, result.image, result.label, (Date.now() - started) / 1000, out));
  });
}

/** Waits for every promise, then throws the first rejection if any: unlike Promise.all, nothing is still running when it throws. */
async function allSettled<T extends readonly unknown[]>(promises: T): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as { -readonly [K in keyof T]: Awaited<T[K]> };
}

/** The distinct values of a label, ascending. Preprocessed labels are 8- or 16-bit: a flag per value, not a Set of 18 M entries (a quarter of a second). */
export function labelValues(data: Volume['data']): number[] {
  if (data instanceof Uint8Array || data instanceof Uint16Array) {
    const seen = new Uint8Array(data instanceof Uint8Array ? 256 : 65536);
    for (let i = 0; i < data.length; i++) seen[data[i]] = 1;
    const values: number[] = [];
    seen.forEach((flag, value) => flag && values.push(value));
    return values;
  }
  return [...new Set<number>(data)].sort((a, b) => a - b);
}

function summaryLine(source: Volume, image: Volume, label: Volume | undefined, seconds: number, out: string): string {
  const grid = (v: Volume) => `${v.shape.join('x')} @ ${v.spacing.map((s) => +s.toFixed(3)).join('x')} mm ${v.orientation}`;
  let text = `${grid(source)} -> ${grid(image)}`;
  if (label) text += `, label values ${labelValues(label.data).filter((v) => v !== 0).join(',')}`;
  const [min, max] = valueRange(image.data);
  return `${text}, intensities ${min.toFixed(2)}..${max.toFixed(2)}, ${seconds.toFixed(2)} s -> ${out}`;
}
