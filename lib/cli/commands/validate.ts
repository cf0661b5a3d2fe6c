import * as path from 'node:path';
import { initBackend } from '../../backend/backend';
import { readCollection } from '../../data/datasets';
import { ModelManifest, loadModel, resolveModelDir } from '../../networks/model-io';
import { readJsonFile } from '../../util/read-file';
import { loadTrainingCases } from '../../training/pretrain';
import { ValidationResult, meanDicePerOrgan, splitValidation, validationDice } from '../../training/validation';
import { writeFileAtomic } from '../../util/atomic-write';
import { FseftError } from '../../util/errors';
import { Options } from '../args';

export const VALIDATE_HELP = `fseft validate --model <dir|default> --data <preprocessed collection.json> [--val-cases N] [--out result.json] [--record NAME]
  The foundation model's own segmentation of every class each dataset annotates (its head,
  probability > 0.5, largest component), scored by Dice on the preprocessed volumes: a table of
  mean Dice per organ and dataset. --val-cases N scores only the last N volumes of each dataset
  (the ones 'fseft pretrain --val-cases N' held out). --out writes every per-volume figure as JSON;
  --record NAME stores the per-organ means in the model's config.json (provenance.validation.NAME).`;

export async function validateCommand(options: Options): Promise<void> {
  const modelName = options.required('model');
  const data = options.required('data');
  const valCases = options.integer('val-cases', 0, { min: 0 })!;
  const out = options.string('out');
  const record = options.string('record');
  const backend = options.string('backend');
  options.rejectUnknown();
  await initBackend(backend as never);
  const { model, manifest } = loadModel(resolveModelDir(modelName));
  if (!manifest.preprocessing) throw new FseftError('the model does not record its preprocessing (patch size); it cannot be validated on preprocessed data', modelName);
  const cases = await loadTrainingCases(readCollection(data));
  const scored = valCases > 0 ? splitValidation(cases, valCases).validation : cases;
  if (scored.length === 0) throw new FseftError('no labelled volumes to score', data);
  const datasets = [...new Set(scored.map((c) => c.dataset))];
  const results = new Map<string, ValidationResult>();
  try {
    for (const dataset of datasets) results.set(dataset, validationDice(model, scored.filter((c) => c.dataset === dataset), manifest.preprocessing.roi));
  } finally {
    model.dispose();
  }
  const organs = [...new Set([...results.values()].flatMap((r) => Object.keys(r.dice)))];
  const lines = [`| dataset (volumes) | ${organs.join(' | ')} |`, `|---|${organs.map(() => '---').join('|')}|`];
  for (const [dataset, result] of results) {
    lines.push(`| ${dataset} (${result.perCase.length}) | ${organs.map((o) => (o in result.dice ? result.dice[o].toFixed(3) : '-')).join(' | ')} |`);
  }
  const pooled = meanDicePerOrgan([...results.values()].flatMap((r) => r.perCase));
  lines.push(`| all (${scored.length}) | ${organs.map((o) => (o in pooled ? pooled[o].toFixed(3) : '-')).join(' | ')} |`);
  console.log(lines.join('\n'));
  if (record) {
    const manifestFile = path.join(resolveModelDir(modelName), 'config.json');
    const stored = readJsonFile(manifestFile) as ModelManifest;
    stored.provenance.validation = { ...stored.provenance.validation, [record]: { data, valCases, volumes: scored.length, dice: roundAll(pooled), at: new Date().toISOString() } };
    await writeFileAtomic(manifestFile, JSON.stringify(stored, null, 2));
  }
  if (out) {
    const report = { model: path.resolve(resolveModelDir(modelName)), data: path.resolve(data), valCases, dice: pooled, datasets: Object.fromEntries(results) };
    await writeFileAtomic(out, JSON.stringify(report, null, 2));
  }
}

function roundAll(values: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Math.round(v * 1e4) / 1e4]));
}
