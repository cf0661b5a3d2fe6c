import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { ExperimentRecord } from '../lib/training/experiment';
import { PAPER_FINDINGS, assessFindings, compare, findingsMarkdown } from '../lib/studies/findings';
import { Rng } from '../lib/util/random';

/** Records of a made-up study: Dice = base(method) + organ offset + query noise, per fold and query. */
function records(base: Record<string, number>, options: { noise?: number; gammas?: Record<number, number> } = {}): ExperimentRecord[] {
  const rng = new Rng(5);
  const out: ExperimentRecord[] = [];
  const organs = { liver: 0.1, spleen: 0, pancreas: -0.2 };
  const queryNoise = new Map<string, number>();
  const noiseOf = (key: string) => {
    if (!queryNoise.has(key)) queryNoise.set(key, rng.normal() * 0.05);
    return queryNoise.get(key)!;
  };
  const record = (method: string, organ: string, k: number, fold: number, queryDice: Record<string, number>, gamma?: number): ExperimentRecord => ({
    key: `${method}|${organ}|${k}|${fold}|${gamma}|${Object.keys(queryDice)}`, method, organ, k, fold, seed: 0, gamma, lambda: gamma === undefined ? undefined : 0.1, epochs: 1, learningRate: 1, dice: 0, queryDice, supports: [], trainableParameters: 1, trainSeconds: 1,
  });
  for (const [organ, offset] of Object.entries(organs)) {
    for (const k of [1, 5, 10]) {
      for (let fold = 0; fold < 5; fold++) {
        const queries = ['q0', 'q1'].map((q) => `${organ}-${fold}-${q}`);
        // The query's own difficulty is shared by every method: pairing removes it.
        const dice = (value: number, query: string) => value + offset + noiseOf(query) + (options.noise ?? 0) * rng.normal();
        for (const [method, value] of Object.entries(base)) {
          if (method === 'adapter+ti') for (const q of queries) out.push(record(method, organ, k, fold, { [q]: dice(value, q) }, 0.3));
          else out.push(record(method, organ, k, fold, Object.fromEntries(queries.map((q) => [q, dice(value, q)]))));
        }
        for (const [gamma, value] of Object.entries(options.gammas ?? {})) for (const q of queries) out.push(record('adapter+ti', organ, k, fold, { [q]: dice(value, q) }, Number(gamma)));
      }
    }
  }
  return out;
}

const PAPER_LIKE = { generalization: 0.7, scratch: 0.3, ft: 0.28, 'ft-last': 0.5, lp: 0.66, adapter: 0.7, 'adapter+ti': 0.72, 'adapter-k1': 0.68 };

test('findings: a study shaped like the paper reproduces every finding; paired differences see small gaps through large query noise', () => {
  const main = assessFindings(records(PAPER_LIKE), PAPER_FINDINGS.filter((f) => f.id !== 'f'));
  assert.deepEqual(main.map((f) => [f.id, f.verdict]), [['a', 'reproduced'], ['b', 'reproduced'], ['c', 'reproduced'], ['d', 'reproduced'], ['e', 'reproduced']]);
  const d = main.find((f) => f.id === 'd')!.results[0];
  assert.ok(Math.abs(d.difference.mean - 0.02) < 1e-9, `TI adds exactly 0.02 in the made-up data, got ${d.difference.mean}`);
  assert.equal(d.difference.n, 30, 'three organs x five folds x two queries');
  const gamma = assessFindings(records({}, { gammas: { 0.05: 0.6, 0.25: 0.7, 0.5: 0.72 } }), PAPER_FINDINGS.filter((f) => f.id === 'f'));
  assert.equal(gamma[0].verdict, 'reproduced');
  assert.ok(Math.abs(gamma[0].results[0].difference.mean - 0.11) < 1e-9, 'mean of gamma 0.25 and 0.5 minus gamma 0.05');
});

test('findings: the opposite is "not reproduced", noise without a gap is "inconclusive", absent methods "not run"', () => {
  const reversed = assessFindings(records({ ...PAPER_LIKE, ft: 0.8, scratch: 0.9 }), [PAPER_FINDINGS[0]]);
  assert.equal(reversed[0].verdict, 'not reproduced');
  assert.ok(reversed[0].results[0].difference.high < 0);
  const noisy = compare(records({ adapter: 0.7, lp: 0.7 }, { noise: 0.2 }), { better: 'adapter', worse: 'lp', k: 5 });
  assert.equal(noisy.verdict, 'inconclusive');
  assert.ok(noisy.difference.low < 0 && noisy.difference.high > 0);
  // "Matches or beats": 0.005 below within a margin of 0.01 still holds.
  assert.equal(compare(records({ adapter: 0.695, lp: 0.7 }), { better: 'adapter', worse: 'lp', k: 5, margin: 0.01 }).verdict, 'reproduced');
  assert.equal(assessFindings(records({ adapter: 0.7 }), [PAPER_FINDINGS[4]])[0].verdict, 'not run');
  const text = findingsMarkdown(reversed);
  assert.match(text, /\*\*\(a\) not reproduced\*\*: FT and Scratch fall below generalization at k = 1/);
  assert.match(text, /k = 1: generalization - ft = -0\.\d{3} \[-0\.\d{3}, -0\.\d{3}\], n = 30: not reproduced/);
});
