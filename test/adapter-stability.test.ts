import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { load } from '../lib/api';
import { switchBackend } from '../lib/backend/backend';
import { templateClass } from '../lib/data/template';
import { writeSynthDataset } from '../lib/data/synth/synth-datasets';
import { backboneFeatures } from '../lib/inference/features';
import { prepareCase } from '../lib/inference/predict';
import { adapterProbabilities } from '../lib/inference/segment';
import { gridChannelToVolumeData } from '../lib/networks/volume-tensor';
import { RECIPES, recipeQueryDice } from '../lib/training/recipes';
import { Rng, seedFrom } from '../lib/util/random';
import { REPO_ROOT, tempDir } from './helpers';

const DEFAULT_MODEL = path.join(REPO_ROOT, 'data', 'models', 'default');

/**
 * Issue 14, item 7 (docs/adapter-study.md): on the demo's data the spatial adapter once scored
 * 0.000 where the probe did not. The cause was the largest-component rule keeping the left kidney,
 * which the adapter found along with the right one; this guards both halves: on liver and spleen
 * the adapter at k = 1 stays within noise of the probe, and on the right kidney, before the
 * largest-component rule, it covers the kidney at least as well as the probe.
 */
test("the spatial adapter at k = 1 is not below the probe by more than noise on the demo's data", { timeout: 900_000, skip: fs.existsSync(path.join(DEFAULT_MODEL, 'weights.safetensors')) ? undefined : 'the default model is missing' }, async (t) => {
  await switchBackend('wasm');
  const model = await load(DEFAULT_MODEL);
  const work = tempDir('fseft-adapter-stability-');
  // The demo's target data (fseft demo: seed 0, site-b, 7 cases) and its first split (fold 0, seed 0).
  const data = await writeSynthDataset(path.join(work, 'synth-target'), { name: 'synth-target', cases: 7, seed: 0, institution: 'site-b', spacingScale: 2, organs: ['liver', 'spleen', 'rkidney'] }, { workers: 1, progress: false });
  const order = new Rng(seedFrom(0, 'fold', 0)).shuffle(data.cases);
  const [queries, support] = [order.slice(0, 2), order[2]];
  const roi = model.preprocessing.roi;
  const scores: Record<string, Record<string, { dice: number; coverage: number }>> = {};
  for (const organ of ['liver', 'spleen', 'rkidney']) {
    const value = templateClass(organ);
    const prepared = await Promise.all(queries.map((q) => prepareCase(q.image, model.preprocessing, { file: q.label!, value })));
    const features = prepared.map((p) => backboneFeatures(model.network, p.image, { roi }));
    scores[organ] = {};
    for (const method of ['lp', 'adapter']) {
      const adapted = await model.adapt({ organ, supports: [{ image: support.image, label: support.label!, value }], method, epochs: 24, cropsPerStep: 2, seed: seedFrom(0, 'adapt', 0, 1) });
      let dice = 0;
      let coverage = 0;
      prepared.forEach((query, i) => {
        const grid = adapterProbabilities(adapted.adapter, { image: query.image, features: features[i] }, { roi });
        dice += recipeQueryDice(RECIPES.paper, grid, query).dice / prepared.length;
        const probabilities = gridChannelToVolumeData(grid, 0);
        let hit = 0;
        let truth = 0;
        query.mask!.data.forEach((t, v) => {
          truth += t;
          if (t && probabilities[v] > 0.5) hit++;
        });
        coverage += hit / truth / prepared.length;
      });
      scores[organ][method] = { dice, coverage };
      adapted.dispose();
    }
  }
  t.diagnostic(`Dice and right-kidney coverage before the largest component: ${JSON.stringify(scores)}`);
  const noise = 0.05;
  for (const organ of ['liver', 'spleen']) assert.ok(scores[organ].adapter.dice >= scores[organ].lp.dice - noise, `${organ}: adapter ${JSON.stringify(scores[organ].adapter)} vs probe ${JSON.stringify(scores[organ].lp)}`);
  assert.ok(scores.rkidney.adapter.coverage >= scores.rkidney.lp.coverage - noise, `right kidney before the largest component: adapter covers ${scores.rkidney.adapter.coverage.toFixed(3)}, probe ${scores.rkidney.lp.coverage.toFixed(3)}`);
  model.dispose();
});
