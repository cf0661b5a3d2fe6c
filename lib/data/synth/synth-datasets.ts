import * as path from 'node:path';
import { writeFileAtomic } from '../../util/atomic-write';
import { FseftError } from '../../util/errors';
import { BatchOptions, runJobs } from '../batch';
import { Dataset, readMsdDataset } from '../datasets';
import { Job, SynthJob } from '../jobs';
import { TEMPLATE_CLASSES, templateClass, templateClassName } from '../template';
import { NOVEL_STRUCTURES, NOVEL_STRUCTURE_GROUPS, NovelStructureGroup } from './anatomy';
import { INSTITUTIONS, institutionByName } from './phantom';

/** Every organ the phantom draws, as template class names. */
export const SYNTH_ORGANS = ['spleen', 'rkidney', 'lkidney', 'gall', 'esophagus', 'liver', 'stomach', 'aorta', 'postcava', 'pancreas', 'duodenum', 'bone'] as const;

export const SYNTHETIC_NOTICE =
  'SYNTHETIC DATA: simulated CT phantoms (deformed ellipsoids and tubes in an abdominal layout, realistic HU), not patient scans.';

export interface SynthDatasetOptions {
  name: string;
  cases: number;
  seed: number;
  institution?: string;
  /** Organs this dataset annotates (others are left unlabelled, as in partially labelled datasets); default all. */
  organs?: readonly string[];
  /** Multiplies the institution's voxel size (2 = 8x fewer voxels), for fast demos. */
  spacingScale?: number;
  /**
   * Novel structures (outside the template) to draw and label too, e.g. ['psoas']: label values
   * NOVEL_STRUCTURES, listed under "structures" in dataset.json (not "labels", whose names must be
   * template organs). The images differ from a dataset without them.
   */
  structures?: readonly NovelStructureGroup[];
}

/**
 * Writes a synthetic dataset in the MSD layout (`dataset.json`, `imagesTr/`, `labelsTr/`) with
 * label values equal to template classes. Case i depends only on (seed, name, i), so datasets
 * grow reproducibly and an interrupted run resumes where it stopped.
 */
export async function writeSynthDataset(outDir: string, options: SynthDatasetOptions, batch: BatchOptions = {}): Promise<Dataset> {
  if (!(Number.isInteger(options.cases) && options.cases > 0)) throw new FseftError(`--cases must be a positive integer, got ${options.cases}`);
  const institution = institutionByName(options.institution ?? 'source');
  const annotated = [...new Set((options.organs ?? SYNTH_ORGANS).map(templateClass))].sort((a, b) => a - b);
  const undrawn = annotated.filter((c) => !(SYNTH_ORGANS as readonly string[]).includes(templateClassName(c)));
  if (undrawn.length > 0) throw new FseftError(`the phantom has no ${undrawn.map(templateClassName).join(', ')}; it draws ${SYNTH_ORGANS.join(', ')}`);
  for (const group of options.structures ?? []) {
    if (!Object.prototype.hasOwnProperty.call(NOVEL_STRUCTURE_GROUPS, group)) throw new FseftError(`unknown structure '${group}'; the phantom can draw ${Object.keys(NOVEL_STRUCTURE_GROUPS).join(', ')}`);
  }
  const ids = Array.from({ length: options.cases }, (_, i) => `${options.name}_${String(i).padStart(3, '0')}`);
  const jobs: Job[] = ids.map((id, index): SynthJob => ({
    kind: 'synth',
    datasetName: options.name,
    index,
    seed: options.seed,
    institution: institution.name,
    annotated,
    imageFile: path.join(outDir, 'imagesTr', `${id}.nii.gz`),
    labelFile: path.join(outDir, 'labelsTr', `${id}.nii.gz`),
    spacingScale: options.spacingScale,
    structures: options.structures?.length ? [...options.structures] : undefined,
  }));
  await runJobs(jobs, (job) => (job.kind === 'synth' ? `${job.datasetName} case ${job.index}` : ''), { label: `synth ${options.name}`, ...batch });
  const descriptor = {
    name: options.name,
    description: `${SYNTHETIC_NOTICE} Institution '${institution.name}': ${institution.description}.`,
    synthetic: { seed: options.seed, institution: institution.name, spacingScale: options.spacingScale ?? 1, generator: 'fseft synth' },
    modality: { '0': 'CT' },
    labels: Object.fromEntries([['0', 'background'], ...annotated.map((c) => [String(c), TEMPLATE_CLASSES[c - 1]])]),
    ...(options.structures?.length ? { structures: Object.fromEntries(options.structures.flatMap((group) => NOVEL_STRUCTURE_GROUPS[group].map((s) => [String(NOVEL_STRUCTURES[s]), s]))) } : {}),
    numTraining: ids.length,
    training: ids.map((id) => ({ image: `./imagesTr/${id}.nii.gz`, label: `./labelsTr/${id}.nii.gz` })),
  };
  await writeFileAtomic(path.join(outDir, 'dataset.json'), JSON.stringify(descriptor, null, 2));
  return readMsdDataset(outDir);
}

/**
 * The partially labelled source collection used to pretrain a small foundation model, modelled
 * on the paper's assembly (BTCV, AMOS, CHAOS, KiTS, MSD spleen and pancreas each annotate a
 * different subset of organs), plus a target institution with a domain shift for adaptation.
 */
export const SYNTH_COLLECTION: ReadonlyArray<{ name: string; institution: string; organs: readonly string[]; role: 'source' | 'target' }> = [
  { name: 'synth-btcv', institution: 'source', role: 'source', organs: ['spleen', 'rkidney', 'lkidney', 'gall', 'esophagus', 'liver', 'stomach', 'aorta', 'postcava', 'pancreas'] },
  { name: 'synth-amos', institution: 'site-c', role: 'source', organs: ['spleen', 'rkidney', 'lkidney', 'gall', 'esophagus', 'liver', 'stomach', 'aorta', 'postcava', 'pancreas', 'duodenum'] },
  { name: 'synth-chaos', institution: 'source', role: 'source', organs: ['liver'] },
  { name: 'synth-kits', institution: 'source', role: 'source', organs: ['rkidney', 'lkidney'] },
  { name: 'synth-msd-spleen', institution: 'site-c', role: 'source', organs: ['spleen'] },
  { name: 'synth-msd-pancreas', institution: 'source', role: 'source', organs: ['pancreas'] },
  { name: 'synth-target', institution: 'site-b', role: 'target', organs: ['spleen', 'rkidney', 'lkidney', 'gall', 'esophagus', 'liver', 'stomach', 'aorta', 'pancreas', 'duodenum'] },
];

export interface SynthCollectionOptions {
  seed: number;
  casesPerSource: number;
  targetCases: number;
  spacingScale?: number;
}

/** Writes every dataset of `SYNTH_COLLECTION` under `outDir` and `collection.json` naming the sources and the target. */
export async function writeSynthCollection(outDir: string, options: SynthCollectionOptions, batch: BatchOptions = {}): Promise<{ sources: Dataset[]; target: Dataset }> {
  const sources: Dataset[] = [];
  let target: Dataset | undefined;
  for (const spec of SYNTH_COLLECTION) {
    const cases = spec.role === 'target' ? options.targetCases : options.casesPerSource;
    const dataset = await writeSynthDataset(path.join(outDir, spec.name), { ...spec, cases, seed: options.seed, spacingScale: options.spacingScale }, batch);
    if (spec.role === 'target') target = dataset;
    else sources.push(dataset);
  }
  const manifest = {
    note: SYNTHETIC_NOTICE,
    datasets: SYNTH_COLLECTION.filter((s) => s.role === 'source').map((s) => ({ path: s.name, name: s.name })),
    target: { path: 'synth-target', name: 'synth-target', institution: 'site-b' },
    institutions: Object.fromEntries(Object.values(INSTITUTIONS).map((i) => [i.name, i.description])),
  };
  await writeFileAtomic(path.join(outDir, 'collection.json'), JSON.stringify(manifest, null, 2));
  return { sources, target: target! };
}
