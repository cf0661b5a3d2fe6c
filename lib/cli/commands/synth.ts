import * as path from 'node:path';
import { INSTITUTIONS } from '../../data/synth/phantom';
import { NovelStructureGroup } from '../../data/synth/anatomy';
import { SYNTHETIC_NOTICE, SYNTH_ORGANS, writeSynthCollection, writeSynthDataset } from '../../data/synth/synth-datasets';
import { FseftError } from '../../util/errors';
import { Options } from '../args';

export const SYNTH_HELP = `fseft synth --out <dir> --cases N --seed S [--institution NAME] [--organs a,b,...] [--structures psoas] [--name NAME]
fseft synth --collection --out <dir> --cases N --target-cases M --seed S
  Generates synthetic abdominal CT phantoms (a simulation, not patient data) with organ labels,
  in the MSD layout (dataset.json, imagesTr/, labelsTr/; label values = template classes).
  --institution   ${Object.keys(INSTITUTIONS).join(' | ')} (acquisition and domain shift; default source)
  --organs        organs this dataset annotates (partial labels); default all: ${SYNTH_ORGANS.join(',')}
  --structures    also draw and label structures outside the template, which the shipped model never
                  saw: psoas (psoas_right = 30, psoas_left = 31; listed under "structures" in
                  dataset.json), for fseft adapt --novel
  --collection    write the partially labelled source collection + a shifted target institution
  --spacing-scale multiply the voxel size (2 = 8x fewer voxels) for quick runs
  --workers N     parallel workers (default: all cores); a rerun skips finished cases`;

export async function synthCommand(options: Options): Promise<void> {
  const out = options.string('out');
  const cases = options.integer('cases', 4, { min: 1 })!;
  const seed = options.integer('seed', 0, { min: 0 })!;
  const institution = options.string('institution');
  const organs = options.string('organs');
  const name = options.string('name');
  const structures = options.string('structures')?.split(',').map((s) => s.trim()) as NovelStructureGroup[] | undefined;
  const collection = options.flag('collection');
  const targetCases = options.integer('target-cases', cases, { min: 0 })!;
  const spacingScale = options.number('spacing-scale', undefined, { above: 0 });
  const workers = options.integer('workers', undefined, { min: 1 });
  options.rejectUnknown();
  if (!out) throw new FseftError(`missing --out\n${SYNTH_HELP}`);
  if (spacingScale !== undefined && !(spacingScale > 0)) throw new FseftError('--spacing-scale must be positive');
  const started = Date.now();
  if (collection) {
    if (institution || organs || name || structures) throw new FseftError('--collection fixes institutions, organs and names; drop --institution/--organs/--name/--structures');
    const { sources, target } = await writeSynthCollection(out, { seed, casesPerSource: cases, targetCases, spacingScale }, { workers });
    for (const d of [...sources, target]) console.log(`  ${d.name.padEnd(20)} ${String(d.cases.length).padStart(3)} cases, annotates ${d.annotated.length} classes`);
    console.log(`wrote ${sources.length} source datasets and the target in ${((Date.now() - started) / 1000).toFixed(1)} s -> ${path.join(out, 'collection.json')}`);
  } else {
    const dataset = await writeSynthDataset(
      out,
      { name: name ?? path.basename(path.resolve(out)), cases, seed, institution, organs: organs?.split(',').map((o) => o.trim()), spacingScale, structures },
      { workers },
    );
    console.log(`wrote ${dataset.cases.length} cases of '${dataset.name}' in ${((Date.now() - started) / 1000).toFixed(1)} s -> ${path.join(out, 'dataset.json')}`);
  }
  console.log(SYNTHETIC_NOTICE);
}
