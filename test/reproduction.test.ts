import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { switchBackend } from '../lib/backend/backend';
import { saveModel, loadModel, modelFingerprint } from '../lib/networks/model-io';
import { SwinUNETR, swinUnetrConfig } from '../lib/networks/swin-unetr';
import { planCellCount, readStudyPlans, runReproduction } from '../lib/studies/reproduction';
import { REPO_ROOT, tempDir } from './helpers';

const PLANS = path.join(REPO_ROOT, 'docs', 'reproduction');

test('the study plans are valid and run the grid the issue asks for', () => {
  const plans = readStudyPlans(PLANS, '/nowhere');
  assert.ok(plans.main.organs.length >= 5 && plans.main.folds >= 5, 'at least five organs and five folds');
  assert.deepEqual(plans.main.shots, [1, 5, 10]);
  for (const method of ['generalization', 'lp', 'adapter', 'adapter+ti', 'adapter-k1', 'ft-last']) assert.ok(plans.main.methods.includes(method), method);
  assert.deepEqual(plans.baselines.methods, ['ft', 'scratch']);
  assert.ok(plans.gamma.ti!.gamma!.includes(0.05) && plans.gamma.ti!.gamma!.includes(0.25));
  for (const plan of Object.values(plans)) assert.equal(plan.recipe, 'reference');
  // TI is transductive: one cell per query volume.
  assert.equal(planCellCount({ ...plans.main, organs: ['liver'], folds: 1, shots: [1] }), 5 + plans.main.queries);
});

test('npm run reproduce on tiny settings: records, figures and a report with a verdict per finding; a rerun resumes', { timeout: 900_000 }, async () => {
  await switchBackend('wasm');
  const work = tempDir('fseft-reproduce-');
  const modelDir = path.join(work, 'model');
  const network = SwinUNETR.create(swinUnetrConfig({ featureSize: 12, outChannels: 29 }), 0);
  await saveModel(network, modelDir, { createdAt: 'test', origin: 'init', seed: 0 }, { preprocessing: { spacing: 10, window: [-175, 250], roi: [32, 32, 32] } });
  network.dispose();
  const { model, manifest } = loadModel(modelDir);
  const report = path.join(work, 'docs', 'reproduction.md');
  const options = {
    plansDir: PLANS,
    workDir: path.join(work, 'runs'),
    report,
    model,
    manifest,
    modelDir,
    modelFingerprint: modelFingerprint(modelDir),
    override: { organs: ['liver'], folds: 1, queries: 1, shots: [1], epochScale: 0.02, cropsPerStep: 1 },
    targetCases: 3,
    log: () => undefined,
  };
  const first = await runReproduction(options);
  assert.equal(first.records.main.length, 6, 'generalization, lp, adapter, adapter+ti, adapter-k1, ft-last');
  assert.equal(first.records.baselines.length, 2);
  assert.equal(first.records.gamma.length, 5, 'adapter and adapter+ti at four gammas');
  const text = fs.readFileSync(report, 'utf8');
  for (const id of ['a', 'b', 'c', 'd', 'e', 'f']) assert.match(text, new RegExp(`\\*\\*\\(${id}\\) (reproduced|not reproduced|inconclusive|not run)\\*\\*`), `finding (${id})`);
  assert.match(text, /\*\*\(c\) not run\*\*/, 'no k = 5 or 10 in the tiny run');
  assert.match(text, /\| adapter\+ti@0\.05 \|/);
  const hours = (list: Array<{ trainSeconds: number }>) => (list.reduce((sum, r) => sum + r.trainSeconds, 0) / 3600).toFixed(2);
  assert.ok(text.includes(`main ${hours(first.records.main)} h over 6 cells, baselines ${hours(first.records.baselines)} h over 2 cells`), 'the report states what the study cost');
  assert.match(text, /## Discussion/, 'the hand-written discussion is appended');
  assert.match(text, /The discussion below was written for model [0-9a-f]+; this study ran on [0-9a-f]+/, 'and flagged when the study ran on another model');
  for (const figure of ['reproduction-k.svg', 'reproduction-gamma.svg']) assert.match(fs.readFileSync(path.join(work, 'docs', 'images', figure), 'utf8'), /^<svg/);
  const lines = () => ['main', 'baselines', 'gamma'].map((name) => fs.readFileSync(path.join(work, 'runs', `${name}.records.jsonl`), 'utf8'));
  const before = lines();
  const again = await runReproduction(options);
  assert.deepEqual(again.records.main.map((r) => r.key), first.records.main.map((r) => r.key), 'a rerun reuses every record');
  assert.deepEqual(lines(), before, 'and trains nothing: no record is appended');
  model.dispose();
});
