import * as fs from 'node:fs';
import * as path from 'node:path';
import { readNifti } from '../io/nifti';
import { Volume, sameGrid } from '../io/volume';
import { FseftError } from '../util/errors';
import { annotationVector, findTemplateClass, normaliseName, templateClass } from './template';
import { readJsonFile } from '../util/read-file';
import { SidedPair, unsidedPair } from './left-right';

/** One labelled (or unlabelled) CT of a dataset. */
export interface CaseEntry {
  id: string;
  image: string;
  /** A label map whose values are translated by the dataset's `labelMap`. */
  label?: string;
  /** Or one binary mask file per template class (TotalSegmentator layout). */
  masks?: Array<{ file: string; templateClass: number }>;
}

/**
 * A dataset in template terms: which template classes it annotates (its annotation vector w_n),
 * how its label values map onto template classes, and its cases.
 */
export interface Dataset {
  name: string;
  format: 'msd' | 'totalseg' | 'pairs';
  /** Label value in the dataset's files -> template class (1-based). Unlisted values become background. */
  labelMap: Record<number, number>;
  /** Template classes (1-based) this dataset annotates. */
  annotated: number[];
  cases: CaseEntry[];
  /**
   * Structures labelled without a side ('kidney'): stored as the right class, split into right and
   * left at the midline when the case is preprocessed (RAS, foreground crop).
   */
  leftRight?: SidedPair[];
}

/** A case loaded into memory, with its label already in template classes. */
export interface LoadedCase {
  id: string;
  dataset: string;
  image: Volume;
  label?: Volume<Uint8Array>;
  imageFile: string;
  labelFile?: string;
}

/**
 * Opens a dataset by looking at what is there: a directory with `dataset.json` (MSD or nnU-Net),
 * a TotalSegmentator subject (`ct.nii.gz` + `segmentations/`) or a directory of subjects, a
 * directory of NIfTI images (unlabelled), or a JSON list of image/label pairs.
 */
export function openDataset(location: string, options: { organs?: string[]; name?: string } = {}): Dataset {
  const dataset = readDataset(location, options);
  // Cases are stored and resumed by id: two cases with one id would silently become one.
  const seen = new Map<string, string>();
  for (const entry of dataset.cases) {
    const earlier = seen.get(entry.id);
    if (earlier !== undefined) throw new FseftError(`two cases have the id '${entry.id}' (${earlier} and ${entry.image}); give each case its own id`, location);
    seen.set(entry.id, entry.image);
  }
  return dataset;
}

function readDataset(location: string, options: { organs?: string[]; name?: string }): Dataset {
  const stat = statOrThrow(location);
  if (stat.isFile()) return readPairList(location);
  if (fs.existsSync(path.join(location, 'dataset.json'))) return readMsdDataset(location);
  if (fs.existsSync(path.join(location, 'ct.nii.gz')) || subjectDirectories(location).length > 0) {
    return readTotalSegmentator(location, options);
  }
  const images = listFiles(location).filter((f) => /\.nii(\.gz)?$/.test(f));
  if (images.length > 0) {
    const cases = images.map((f) => ({ id: caseIdOf(f), image: path.join(location, f) }));
    return { name: options.name ?? path.basename(path.resolve(location)), format: 'pairs', labelMap: {}, annotated: [], cases };
  }
  throw new FseftError('not a dataset: expected dataset.json (MSD/nnU-Net), ct.nii.gz + segmentations/ (TotalSegmentator), NIfTI images, or a JSON pair list', location);
}

/** A collection manifest: `{ "datasets": [ { "path": "...", "organs"?: [...] }, ... ] }` (paths relative to the file). */
export function readCollection(manifestFile: string): Dataset[] {
  const manifest = readJsonFile(manifestFile) as { datasets?: Array<{ path?: string; organs?: string[]; name?: string }> };
  if (!Array.isArray(manifest.datasets) || manifest.datasets.length === 0) {
    throw new FseftError('collection manifest needs a non-empty "datasets" list', manifestFile);
  }
  return manifest.datasets.map((entry, index) => {
    if (typeof entry.path !== 'string') throw new FseftError(`datasets[${index}] has no "path"`, manifestFile);
    const dataset = openDataset(path.resolve(path.dirname(manifestFile), entry.path), entry);
    return entry.name ? { ...dataset, name: entry.name } : dataset;
  });
}

/** True when a JSON file is a collection manifest rather than a pair list. */
export function isCollectionManifest(file: string): boolean {
  return fs.statSync(file).isFile() && Array.isArray((readJsonFile(file) as { datasets?: unknown }).datasets);
}

/**
 * An MSD task folder (`dataset.json` with `labels: {"1": "liver"}` and a `training` list) or an
 * nnU-Net v2 raw folder (`labels: {"liver": 1}`, images `imagesTr/<case>_0000.nii.gz`).
 */
export function readMsdDataset(dir: string): Dataset {
  const descriptor = path.join(dir, 'dataset.json');
  const json = readJsonFile(descriptor) as {
    name?: string;
    labels?: Record<string, string | number | number[]>;
    training?: Array<{ image: string; label: string }>;
    file_ending?: string;
  };
  if (!json.labels || typeof json.labels !== 'object') throw new FseftError('dataset.json has no "labels"', descriptor);
  const name = json.name ?? path.basename(path.resolve(dir));
  const pairs = Object.entries(json.labels).map(([key, value]) =>
    typeof value === 'string' ? { value: Number(key), organ: value } : { value: Number(Array.isArray(value) ? value[0] : value), organ: key },
  );
  const labelMap: Record<number, number> = {};
  const leftRight: SidedPair[] = [];
  for (const { value, organ } of pairs) {
    if (value === 0 || normaliseName(organ) === 'background') continue;
    const sided = findTemplateClass(organ) === undefined ? unsidedPair(organ) : undefined;
    if (sided) leftRight.push(sided);
    const cls = sided?.right ?? findTemplateClass(organ) ?? tumourClassFor(name, organ);
    if (cls === undefined) {
      throw new FseftError(`label ${value} '${organ}' has no class in the 29-class template; rename it in dataset.json or use a pair list with an explicit "labels" map`, descriptor);
    }
    labelMap[value] = cls;
  }
  let cases: CaseEntry[];
  if (Array.isArray(json.training)) {
    cases = json.training.map((entry) => ({
      id: caseIdOf(entry.image),
      image: path.resolve(dir, entry.image),
      label: path.resolve(dir, entry.label),
    }));
  } else {
    const ending = json.file_ending ?? '.nii.gz';
    const imagesDir = path.join(dir, 'imagesTr');
    const images = listFiles(imagesDir).filter((f) => f.endsWith(`_0000${ending}`));
    cases = images.map((file) => {
      const id = file.slice(0, -`_0000${ending}`.length);
      return { id, image: path.join(imagesDir, file), label: path.join(dir, 'labelsTr', id + ending) };
    });
  }
  if (cases.length === 0) throw new FseftError('dataset has no training cases', descriptor);
  return withSides({ name, format: 'msd', labelMap, annotated: uniqueSorted(Object.values(labelMap)), cases }, leftRight);
}

/** MSD names tumours "cancer"/"tumour"; the task name tells which template class they are. */
function tumourClassFor(datasetName: string, organ: string): number | undefined {
  if (!/^(cancer|tumou?r|tumou?rs|lesion)$/.test(normaliseName(organ))) return undefined;
  const task = normaliseName(datasetName);
  const byTask: Array<[RegExp, string]> = [
    [/hepatic|vessel/, 'hvt'],
    [/liver/, 'liver_tumor'],
    [/pancrea/, 'pancreas_tumor'],
    [/kidney|kits/, 'kidney_tumor'],
    [/lung/, 'lung_tumor'],
    [/colon/, 'colon_tumor'],
  ];
  const match = byTask.find(([pattern]) => pattern.test(task));
  return match ? templateClass(match[1]) : undefined;
}

/**
 * TotalSegmentator: one subject (`<dir>/ct.nii.gz`, `<dir>/segmentations/<structure>.nii.gz`) or a
 * directory of subject folders. Masks of structures in the template are used (restricted to
 * `organs` when given); several masks of one class (e.g. lung lobes) are merged.
 */
export function readTotalSegmentator(dir: string, options: { organs?: string[]; name?: string } = {}): Dataset {
  const subjects = fs.existsSync(path.join(dir, 'ct.nii.gz')) ? [dir] : subjectDirectories(dir).map((s) => path.join(dir, s));
  const wanted = options.organs ? new Set(options.organs.map(templateClass)) : undefined;
  const cases: CaseEntry[] = subjects.map((subject) => {
    const segDir = path.join(subject, 'segmentations');
    const masks = listFiles(segDir)
      .filter((f) => f.endsWith('.nii.gz'))
      .map((f) => ({ file: path.join(segDir, f), templateClass: findTemplateClass(f.slice(0, -'.nii.gz'.length)) }))
      .filter((m): m is { file: string; templateClass: number } => m.templateClass !== undefined && (!wanted || wanted.has(m.templateClass)));
    return { id: path.basename(path.resolve(subject)), image: path.join(subject, 'ct.nii.gz'), masks };
  });
  const annotated = uniqueSorted(cases.flatMap((c) => c.masks!.map((m) => m.templateClass)));
  if (wanted) {
    const missing = [...wanted].filter((c) => !annotated.includes(c));
    if (missing.length > 0) throw new FseftError(`no segmentation masks for template classes ${missing.join(', ')}`, dir);
  }
  const labelMap = Object.fromEntries(annotated.map((c) => [c, c]));
  return { name: options.name ?? path.basename(path.resolve(dir)), format: 'totalseg', labelMap, annotated, cases };
}

/**
 * A JSON list of pairs: `{ "name": "...", "labels": { "1": "liver", "2": "spleen" },
 * "cases": [ { "image": "a.nii.gz", "label": "a_seg.nii.gz" } ] }`, paths relative to the file.
 */
export function readPairList(file: string): Dataset {
  const json = readJsonFile(file) as { name?: string; labels?: Record<string, string>; cases?: Array<{ id?: string; image?: string; label?: string }> };
  if (!json.labels || !Array.isArray(json.cases)) throw new FseftError('a pair list needs "labels" ({"1": "liver"}) and "cases" ([{"image", "label"}])', file);
  const labelMap: Record<number, number> = {};
  const leftRight: SidedPair[] = [];
  for (const [value, organ] of Object.entries(json.labels)) {
    if (Number(value) === 0) continue;
    const sided = findTemplateClass(organ) === undefined ? unsidedPair(organ) : undefined;
    if (sided) {
      leftRight.push(sided);
      labelMap[Number(value)] = sided.right;
      continue;
    }
    try {
      labelMap[Number(value)] = templateClass(organ);
    } catch (error) {
      throw new FseftError(`label ${value}: ${(error as Error).message}`, file);
    }
  }
  const base = path.dirname(file);
  const cases = json.cases.map((entry, index) => {
    if (typeof entry.image !== 'string') throw new FseftError(`cases[${index}] has no "image"`, file);
    return {
      id: entry.id ?? caseIdOf(entry.image),
      image: path.resolve(base, entry.image),
      label: entry.label ? path.resolve(base, entry.label) : undefined,
    };
  });
  return withSides({ name: json.name ?? caseIdOf(file), format: 'pairs', labelMap, annotated: uniqueSorted(Object.values(labelMap)), cases }, leftRight);
}

/** The dataset's annotation vector w_n (Eq. 1). */
export function datasetAnnotation(dataset: Dataset): Uint8Array {
  return annotationVector(dataset.annotated);
}

/** Loads a case and translates its label into template classes (values outside `labelMap` become 0). */
export async function loadCase(dataset: Dataset, entry: CaseEntry): Promise<LoadedCase> {
  const image = await readNifti(entry.image);
  const loaded: LoadedCase = { id: entry.id, dataset: dataset.name, image, imageFile: entry.image };
  if (entry.label) {
    const raw = await readNifti(entry.label);
    checkGeometry(image, raw, entry.image, entry.label);
    const out = new Uint8Array(raw.voxelCount);
    const lookup = new Map(Object.entries(dataset.labelMap).map(([k, v]) => [Number(k), v]));
    for (let i = 0; i < out.length; i++) {
      const v = raw.data[i];
      if (v !== 0) out[i] = lookup.get(v) ?? 0;
    }
    loaded.label = image.withData(out);
    loaded.labelFile = entry.label;
  } else if (entry.masks && entry.masks.length > 0) {
    const out = new Uint8Array(image.voxelCount);
    for (const mask of entry.masks) {
      const volume = await readNifti(mask.file);
      checkGeometry(image, volume, entry.image, mask.file);
      for (let i = 0; i < out.length; i++) if (volume.data[i] > 0) out[i] = mask.templateClass;
    }
    loaded.label = image.withData(out);
    loaded.labelFile = path.dirname(entry.masks[0].file);
  }
  return loaded;
}

function checkGeometry(image: Volume, label: Volume, imageFile: string, labelFile: string): void {
  if (!sameGrid(image, label)) {
    throw new FseftError(`geometry does not match the image ${imageFile} (shape ${label.shape.join('x')} vs ${image.shape.join('x')}, or a different affine)`, labelFile);
  }
}

function statOrThrow(location: string): fs.Stats {
  try {
    return fs.statSync(location);
  } catch {
    throw new FseftError('not found', location);
  }
}

function listFiles(dir: string): string[] {
  try {
    return fs.readdirSync(dir).sort();
  } catch {
    throw new FseftError('directory not found', dir);
  }
}

function subjectDirectories(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && fs.existsSync(path.join(dir, e.name, 'ct.nii.gz')))
    .map((e) => e.name)
    .sort();
}

/** Case id from a file name: the name without directories and NIfTI/JSON extensions. */
export function caseIdOf(file: string): string {
  return path.basename(file).replace(/(\.nii(\.gz)?|\.json)$/, '');
}

/** Adds the left classes of unsided structures to what the dataset annotates. */
function withSides(dataset: Dataset, leftRight: SidedPair[]): Dataset {
  if (leftRight.length === 0) return dataset;
  return { ...dataset, leftRight, annotated: uniqueSorted([...dataset.annotated, ...leftRight.map((p) => p.left)]) };
}

function uniqueSorted(values: number[]): number[] {
  return [...new Set(values)].sort((a, b) => a - b);
}
