import { MeanInterval, stratifiedBootstrapMean } from '../metrics/bootstrap';
import type { ExperimentRecord } from '../training/experiment';

/**
 * The paper's findings as paired comparisons, fixed before any study runs: each says which method
 * should score higher than which, at which k. A comparison is read from the paired differences of
 * Dice on the same query volumes (same organ, k, fold, seed and query), their mean over organs with
 * a bootstrap interval stratified by organ.
 */
export interface Comparison {
  /** Method labels as records name them; TI cells with a gamma as 'adapter+ti@0.25'. */
  better: string | string[];
  worse: string;
  k: number;
  /** "Matches or beats": the comparison holds when the interval's lower end is above -margin. */
  margin?: number;
}

export interface Finding {
  id: string;
  claim: string;
  /** The paper's own numbers for it. */
  paper: string;
  comparisons: Comparison[];
}

export const PAPER_FINDINGS: Finding[] = [
  {
    id: 'a',
    claim: 'FT and Scratch fall below generalization at k = 1',
    paper: 'Table 1, 1-shot mean Dice: generalization 0.701, FT 0.276 (Scratch is reported with all data only)',
    comparisons: [
      { better: 'generalization', worse: 'ft', k: 1 },
      { better: 'generalization', worse: 'scratch', k: 1 },
    ],
  },
  {
    id: 'b',
    claim: 'the linear probe is strong at k = 1: above FT-Last and FT',
    paper: 'Table 1, 1-shot: LP 0.657, FT-Last 0.488, FT 0.276',
    comparisons: [
      { better: 'lp', worse: 'ft-last', k: 1 },
      { better: 'lp', worse: 'ft', k: 1 },
    ],
  },
  {
    id: 'c',
    claim: 'the spatial adapter matches or beats the linear probe from k = 5 (within 0.01)',
    paper: 'Table 1: 5-shot adapter 0.748 vs LP 0.720; 10-shot 0.777 vs 0.765',
    comparisons: [
      { better: 'adapter', worse: 'lp', k: 5, margin: 0.01 },
      { better: 'adapter', worse: 'lp', k: 10, margin: 0.01 },
    ],
  },
  {
    id: 'd',
    claim: 'transductive inference adds to the adapter at every k',
    paper: 'Table 1: adapter + TI vs adapter 0.663 vs 0.654 (1-shot), 0.759 vs 0.748 (5), 0.783 vs 0.777 (10)',
    comparisons: [1, 5, 10].map((k) => ({ better: 'adapter+ti', worse: 'adapter', k })),
  },
  {
    id: 'e',
    claim: 'the spatial adapter beats the MLP adapter (Fig. 2a: the UnetResBlock with kernel 1)',
    paper: 'Fig. 2a: +0.7 to +2.3 % across k',
    comparisons: [1, 5, 10].map((k) => ({ better: 'adapter', worse: 'adapter-k1', k })),
  },
  {
    id: 'f',
    claim: 'a margin gamma of 0.05 hurts TI compared with 0.25-0.5 (k = 10)',
    paper: 'Fig. 2b: gamma 0.05 below the wider margins on three organs',
    comparisons: [{ better: ['adapter+ti@0.25', 'adapter+ti@0.5'], worse: 'adapter+ti@0.05', k: 10 }],
  },
];

export type Verdict = 'reproduced' | 'not reproduced' | 'inconclusive' | 'not run';

export interface ComparisonResult extends Comparison {
  /** Mean over organs of better - worse, with its interval; n paired query volumes. */
  difference: MeanInterval;
  verdict: Verdict;
}

export interface FindingResult extends Finding {
  results: ComparisonResult[];
  verdict: Verdict;
}

/** The label a record is compared under: its method, and for TI with several gammas its gamma. */
export function comparisonLabel(record: ExperimentRecord): string {
  return record.gamma !== undefined ? `${record.method}@${record.gamma}` : record.method;
}

/** Dice per paired unit (organ | k | fold | seed | query) for one label or the mean of several labels. */
function unitDice(records: ExperimentRecord[], labels: string | string[], k: number): Map<string, { organ: string; dice: number }> {
  const wanted = Array.isArray(labels) ? labels : [labels];
  const perLabel = wanted.map((label) => {
    const units = new Map<string, { organ: string; dice: number }>();
    for (const r of records) {
      if (r.k !== k || (comparisonLabel(r) !== label && r.method !== label)) continue;
      for (const [query, dice] of Object.entries(r.queryDice)) units.set([r.organ, r.k, r.fold, r.seed, query].join('|'), { organ: r.organ, dice });
    }
    return units;
  });
  const out = new Map<string, { organ: string; dice: number }>();
  for (const [unit, value] of perLabel[0]) {
    const all = perLabel.map((units) => units.get(unit));
    if (all.every((v) => v !== undefined)) out.set(unit, { organ: value.organ, dice: all.reduce((s, v) => s + v!.dice, 0) / all.length });
  }
  return out;
}

/** Reads one comparison off the records: paired differences, bootstrap by organ, verdict. */
export function compare(records: ExperimentRecord[], comparison: Comparison, seed = 0): ComparisonResult {
  const better = unitDice(records, comparison.better, comparison.k);
  const worse = unitDice(records, comparison.worse, comparison.k);
  const byOrgan = new Map<string, number[]>();
  for (const [unit, b] of better) {
    const w = worse.get(unit);
    if (!w) continue;
    byOrgan.set(b.organ, [...(byOrgan.get(b.organ) ?? []), b.dice - w.dice]);
  }
  const difference = stratifiedBootstrapMean([...byOrgan.values()], { seed });
  const margin = comparison.margin ?? 0;
  let verdict: Verdict = 'inconclusive';
  if (difference.n === 0) verdict = 'not run';
  else if (difference.low > -margin) verdict = 'reproduced';
  else if (difference.high < -margin) verdict = 'not reproduced';
  return { ...comparison, difference, verdict };
}

/** Every finding's comparisons and verdict: reproduced when all hold, not reproduced when any is contradicted. */
export function assessFindings(records: ExperimentRecord[], findings: Finding[] = PAPER_FINDINGS, seed = 0): FindingResult[] {
  return findings.map((finding) => {
    const results = finding.comparisons.map((c) => compare(records, c, seed));
    const verdicts = results.map((r) => r.verdict);
    const verdict: Verdict = verdicts.includes('not run')
      ? 'not run'
      : verdicts.includes('not reproduced')
        ? 'not reproduced'
        : verdicts.every((v) => v === 'reproduced')
          ? 'reproduced'
          : 'inconclusive';
    return { ...finding, results, verdict };
  });
}

/** The findings as Markdown: verdict, claim, the paper's numbers and each paired difference. */
export function findingsMarkdown(results: FindingResult[]): string {
  const lines: string[] = [];
  for (const finding of results) {
    lines.push(`- **(${finding.id}) ${finding.verdict}**: ${finding.claim}. Paper: ${finding.paper}.`);
    for (const r of finding.results) {
      const better = Array.isArray(r.better) ? `mean(${r.better.join(', ')})` : r.better;
      const d = r.difference;
      const value = d.n === 0 ? 'no paired records' : `${signed(d.mean)} [${signed(d.low)}, ${signed(d.high)}], n = ${d.n}`;
      lines.push(`  - k = ${r.k}: ${better} - ${r.worse} = ${value}${r.margin ? ` (holds above -${r.margin})` : ''}: ${r.verdict}`);
    }
  }
  return lines.join('\n');
}

function signed(value: number): string {
  return `${value >= 0 ? '+' : ''}${value.toFixed(3)}`;
}
