import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeNifti } from '../io/nifti';
import { Compression, niftiExtension } from '../io/gzip';
import { PreprocessOptions, preprocessCase } from '../transforms/preprocess';
import { writeFileAtomic } from '../util/atomic-write';
import { Rng, seedFrom } from '../util/random';
import { CaseEntry, Dataset, loadCase } from './datasets';
import { splitLeftRight } from './left-right';
import { generatePhantom, institutionByName } from './synth/phantom';
import { NOVEL_STRUCTURES, NOVEL_STRUCTURE_GROUPS, NovelStructureGroup } from './synth/anatomy';

/** One case to preprocess into `outDir` (image.nii.gz, label.nii.gz, case.json). */
export interface PreprocessJob {
  kind: 'preprocess';
  dataset: Dataset;
  entry: CaseEntry;
  outDir: string;
  options: PreprocessOptions;
  compression?: Compression;
}

export interface PreprocessRecord {
  id: string;
  dataset: string;
  image: string;
  label?: string;
  shape: number[];
  spacing: number[];
  source: { image: string; label?: string; shape: number[]; spacing: number[]; orientation: string };
  options: PreprocessOptions;
  seconds: number;
  skipped?: boolean;
  /** Size and modification time of the source files when the case was made (a changed source is redone). */
  sources?: string;
}

/**
 * Preprocesses one case. `case.json` is written last, so its presence with the same options
 * marks a finished case and a rerun skips it (resume after interruption).
 */
export async function runPreprocessJob(job: PreprocessJob): Promise<PreprocessRecord> {
  const recordFile = path.join(job.outDir, 'case.json');
  const previous = readRecord(recordFile);
  const sources = sourceStamp(job.entry);
  // A finished case is skipped only when its options and its source files (size, modification time) are unchanged.
  if (previous && JSON.stringify(previous.options) === JSON.stringify(job.options) && previous.sources === sources) return { ...previous, skipped: true };
  const started = Date.now();
  const loaded = await loadCase(job.dataset, job.entry);
  const result = preprocessCase({ image: loaded.image, label: loaded.label, imageFile: loaded.imageFile, labelFile: loaded.labelFile }, job.options);
  if (result.label && job.dataset.leftRight) result.label = splitLeftRight(result.label, job.dataset.leftRight);
  const imageFile = path.join(job.outDir, `image${niftiExtension(job.compression)}`);
  const labelFile = result.label ? path.join(job.outDir, `label${niftiExtension(job.compression)}`) : undefined;
  await Promise.all([
    writeNifti(imageFile, result.image, { compression: job.compression }),
    result.label && labelFile ? writeNifti(labelFile, result.label, { compression: job.compression }) : undefined,
  ]);
  const record: PreprocessRecord = {
    id: job.entry.id,
    dataset: job.dataset.name,
    image: imageFile,
    label: labelFile,
    shape: result.image.shape,
    spacing: result.image.spacing.map(round4),
    source: {
      image: loaded.imageFile,
      label: loaded.labelFile,
      shape: loaded.image.shape,
      spacing: loaded.image.spacing.map(round4),
      orientation: loaded.image.orientation,
    },
    options: job.options,
    sources,
    seconds: (Date.now() - started) / 1000,
  };
  await writeFileAtomic(recordFile, JSON.stringify(record, null, 2));
  return record;
}

/** Size and modification time of every file a case is made from (image, label, masks). */
function sourceStamp(entry: object): string {
  const files: string[] = [];
  const collect = (value: unknown) => {
    if (typeof value === 'string') files.push(value);
    else if (Array.isArray(value)) value.forEach(collect);
    else if (value && typeof value === 'object') Object.values(value).forEach(collect);
  };
  collect(entry);
  return files
    .sort()
    .flatMap((file) => {
      const stat = fs.statSync(file, { throwIfNoEntry: false });
      return stat?.isFile() ? [`${file}:${stat.size}:${Math.round(stat.mtimeMs)}`] : [];
    })
    .join('|');
}

function readRecord(file: string): PreprocessRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as PreprocessRecord;
  } catch {
    return undefined;
  }
}

/** One synthetic case: the phantom of (seed, dataset name, index), labels kept for `organs` only. */
export interface SynthJob {
  kind: 'synth';
  datasetName: string;
  index: number;
  seed: number;
  institution: string;
  /** Template classes that this dataset annotates; other organs are left unlabelled (0). */
  annotated: number[];
  imageFile: string;
  labelFile: string;
  spacingScale?: number;
  /** Novel structures drawn and kept in the label (values NOVEL_STRUCTURES). */
  structures?: NovelStructureGroup[];
}

export async function runSynthJob(job: SynthJob): Promise<{ imageFile: string; labelFile: string; skipped: boolean }> {
  if (fs.existsSync(job.imageFile) && fs.existsSync(job.labelFile)) return { imageFile: job.imageFile, labelFile: job.labelFile, skipped: true };
  const rng = new Rng(seedFrom(job.seed, job.datasetName, job.index));
  const phantom = generatePhantom(rng, { institution: institutionByName(job.institution), spacingScale: job.spacingScale, structures: job.structures });
  const keep = new Uint8Array(256);
  for (const c of job.annotated) keep[c] = 1;
  for (const group of job.structures ?? []) for (const s of NOVEL_STRUCTURE_GROUPS[group]) keep[NOVEL_STRUCTURES[s]] = 1;
  const label = phantom.label.data;
  for (let i = 0; i < label.length; i++) if (!keep[label[i]]) label[i] = 0;
  // Image last: only a case with both files counts as done on a rerun.
  await writeNifti(job.labelFile, phantom.label);
  await writeNifti(job.imageFile, phantom.image, { description: 'fseft synthetic phantom (simulation)' });
  return { imageFile: job.imageFile, labelFile: job.labelFile, skipped: false };
}

export type Job = PreprocessJob | SynthJob;

export function runJob(job: Job): Promise<unknown> {
  return job.kind === 'preprocess' ? runPreprocessJob(job) : runSynthJob(job);
}

function round4(v: number): number {
  return Math.round(v * 1e4) / 1e4;
}
