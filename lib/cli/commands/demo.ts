import * as path from 'node:path';
import { preprocessDatasets } from '../../data/batch';
import { writeSynthCollection, SYNTHETIC_NOTICE } from '../../data/synth/synth-datasets';
import { templateClassName } from '../../data/template';
import { readNiftiInfo } from '../../io/nifti';
import { Options } from '../args';

export const DEMO_HELP = `fseft demo [--out runs/demo] [--seed 0] [--cases 2] [--workers N]
  The end-to-end run on synthetic data: generates the partially labelled source collection and a
  shifted target institution, shows the header facts of a target CT, and preprocesses every case
  with the paper's chain in parallel.`;

export async function demoCommand(options: Options): Promise<void> {
  const out = options.string('out') ?? path.join('runs', 'demo');
  const seed = options.integer('seed', 0)!;
  const cases = options.integer('cases', 2)!;
  const workers = options.integer('workers');
  options.rejectUnknown();
  console.log(SYNTHETIC_NOTICE);
  const started = Date.now();
  const dataDir = path.join(out, 'data');
  console.log(`\n1. synthetic collection -> ${dataDir}`);
  const { sources, target } = await writeSynthCollection(dataDir, { seed, casesPerSource: cases, targetCases: cases + 1, spacingScale: 2 }, { workers });

  console.log('\n2. a target-institution CT as stored (note the orientation and spacing shift):');
  const info = await readNiftiInfo(target.cases[0].image);
  console.log(`   ${target.cases[0].image}: ${info.shape.join('x')}, ${info.pixdim.join('x')} mm, ${info.datatype}, affine from ${info.affineSource}`);

  const preprocessedDir = path.join(out, 'preprocessed');
  console.log(`\n3. preprocessing (RAS, 1.5 mm, HU [-175, 250] -> [0, 1], foreground crop) -> ${preprocessedDir}`);
  const records = await preprocessDatasets([...sources, target], preprocessedDir, { spacing: 1.5 }, { workers });

  console.log('\n   dataset              cases  mean shape (RAS, 1.5 mm)  annotated organs');
  for (const dataset of [...sources, target]) {
    const mine = records.filter((r) => r.dataset === dataset.name);
    const mean = [0, 1, 2].map((a) => Math.round(mine.reduce((s, r) => s + r.shape[a], 0) / mine.length));
    const organs = dataset.annotated.map(templateClassName).join(', ');
    console.log(`   ${dataset.name.padEnd(20)} ${String(mine.length).padStart(5)}  ${mean.join(' x ').padEnd(24)}  ${organs}`);
  }
  console.log(`\ndone in ${((Date.now() - started) / 1000).toFixed(1)} s. ${SYNTHETIC_NOTICE}`);
}
