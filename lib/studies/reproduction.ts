import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeSynthDataset } from '../data/synth/synth-datasets';
import { MeanInterval, stratifiedBootstrapMean } from '../metrics/bootstrap';
import { ModelManifest } from '../networks/model-io';
import { SwinUNETR } from '../networks/swin-unetr';
import { ExperimentPlan, ExperimentRecord, readRecords, runExperiment, validatePlan } from '../training/experiment';
import { writeFileAtomic } from '../util/atomic-write';
import { FseftError } from '../util/errors';
import { ProgressBar, formatDuration } from '../util/progress';
import { readJsonFile } from '../util/read-file';
import { VegaLiteSpec, gammaCurveSpec, renderSvg } from '../viz/charts';
import { PAPER_FINDINGS, assessFindings, comparisonLabel, findingsMarkdown } from './findings';

/**
 * The reproduction study: three experiment plans fixed in `docs/reproduction/` (the main grid, the
 * whole-network baselines, the gamma ablation) run on a synthetic target institution, then a report
 * with intervals, figures and a verdict per finding of the paper. Every plan resumes from its
 * records, so the study may span several sittings.
 */
export const STUDY_PLANS = ['main', 'baselines', 'gamma'] as const;

/** The repository root (dist/lib/studies -> the clone), where the default plans and report live. */
export const REPO_ROOT_HINT = path.resolve(__dirname, '..', '..', '..');
export type StudyPlanName = (typeof STUDY_PLANS)[number];

export interface StudyOptions {
  /** Folder with main.json, baselines.json, gamma.json and the target-data description. */
  plansDir: string;
  /** Where the target data and the records go. */
  workDir: string;
  /** The report (Markdown); its figures go to `<report dir>/images/`. */
  report: string;
  model: SwinUNETR;
  manifest: ModelManifest;
  modelDir: string;
  modelFingerprint: string;
  /** Overrides applied to every plan and to the target's size (the test suite's tiny settings). */
  override?: Partial<ExperimentPlan>;
  targetCases?: number;
  log?: (line: string) => void;
}

/** `target.json` beside the plans: the synthetic target institution the study adapts to. */
interface TargetSpec {
  name: string;
  cases: number;
  seed: number;
  institution: string;
  spacingScale: number;
}

export function readStudyPlans(plansDir: string, dataDir: string, override: Partial<ExperimentPlan> = {}): Record<StudyPlanName, ExperimentPlan> {
  const plans = {} as Record<StudyPlanName, ExperimentPlan>;
  for (const name of STUDY_PLANS) {
    const file = path.join(plansDir, `${name}.json`);
    const plan = { ...(readJsonFile(file) as ExperimentPlan), ...override, data: dataDir };
    validatePlan(plan, file);
    plans[name] = plan;
  }
  return plans;
}

/** Cells a plan runs: organs x seeds x folds x k x methods, TI methods once per query. */
export function planCellCount(plan: ExperimentPlan): number {
  const perMethod = plan.methods.reduce((sum, method) => {
    const ti = method.endsWith('+ti');
    const variants = ti ? (plan.ti?.gamma?.length ?? 1) * (plan.ti?.lambda?.length ?? 1) * plan.queries : 1;
    return sum + variants;
  }, 0);
  return plan.organs.length * plan.seeds.length * plan.folds * plan.shots.length * perMethod;
}

export async function runReproduction(options: StudyOptions): Promise<{ records: Record<StudyPlanName, ExperimentRecord[]>; seconds: number }> {
  const log = options.log ?? ((line: string) => console.log(line));
  const started = Date.now();
  const target = readJsonFile(path.join(options.plansDir, 'target.json')) as TargetSpec;
  const dataDir = path.join(options.workDir, 'target');
  await writeSynthDataset(dataDir, { name: target.name, cases: options.targetCases ?? target.cases, seed: target.seed, institution: target.institution, spacingScale: target.spacingScale }, { progress: false });
  const plans = readStudyPlans(options.plansDir, dataDir, options.override);
  const recordsFile = (name: StudyPlanName) => path.join(options.workDir, `${name}.records.jsonl`);
  const total = STUDY_PLANS.reduce((sum, name) => sum + planCellCount(plans[name]), 0);
  const finished = STUDY_PLANS.reduce((sum, name) => sum + (fs.existsSync(recordsFile(name)) ? readRecords(recordsFile(name), () => undefined).length : 0), 0);
  const bar = new ProgressBar(Math.max(1, total - finished), finished > 0 ? `reproduction (resumed: ${finished} of ${total} cells done)` : 'reproduction');
  const records = {} as Record<StudyPlanName, ExperimentRecord[]>;
  for (const name of STUDY_PLANS) {
    records[name] = await runExperiment(plans[name], {
      model: options.model,
      manifest: options.manifest,
      modelFingerprint: options.modelFingerprint,
      recordsFile: recordsFile(name),
      log: () => undefined,
      onRecord: (r) => bar.tick(`${name}: ${r.method} ${r.organ} k=${r.k} fold ${r.fold} Dice ${r.dice.toFixed(3)}`),
    });
  }
  const seconds = (Date.now() - started) / 1000;
  await writeReport(options, plans, records, target);
  log(`report written to ${options.report} (${formatDuration(seconds)} this sitting)`);
  return { records, seconds };
}

/** Mean Dice over organs per method and k, with intervals: one line per method (Dice against k). */
export function diceAgainstKSpec(records: ExperimentRecord[], title: string): VegaLiteSpec {
  const rows: Array<{ method: string; k: number; dice: number; low: number; high: number }> = [];
  const organs = [...new Set(records.map((r) => r.organ))];
  for (const method of [...new Set(records.map((r) => r.method))]) {
    for (const k of [...new Set(records.map((r) => r.k))].sort((a, b) => a - b)) {
      const mine = records.filter((r) => r.method === method && r.k === k);
      if (mine.length === 0) continue;
      const interval = stratifiedBootstrapMean(organs.map((organ) => mine.filter((r) => r.organ === organ).flatMap((r) => Object.values(r.queryDice))));
      rows.push({ method, k, dice: interval.mean, low: interval.low, high: interval.high });
    }
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    width: 420,
    height: 260,
    data: { values: rows },
    encoding: { x: { field: 'k', type: 'ordinal', title: 'k (support volumes)' }, color: { field: 'method', type: 'nominal' } },
    layer: [
      { mark: { type: 'line', point: true }, encoding: { y: { field: 'dice', type: 'quantitative', title: 'mean Dice over organs', scale: { domain: [0, 1] } } } },
      // Whiskers as plain rules: errorbar ticks on an ordinal axis spanned the whole step between
      // k values, and its y title ("low") was merged into the axis title.
      { mark: { type: 'rule', opacity: 0.7 }, encoding: { y: { field: 'low', type: 'quantitative', title: 'mean Dice over organs' }, y2: { field: 'high' } } },
    ],
  };
}

/** Markdown tables: per k, method rows, organ columns, each cell mean [95 % interval] over queries x folds. */
export function intervalTablesMarkdown(records: ExperimentRecord[]): string {
  const organs = [...new Set(records.map((r) => r.organ))];
  const cell = (i: MeanInterval) => (i.n === 0 ? '-' : `${i.mean.toFixed(3)} [${i.low.toFixed(3)}, ${i.high.toFixed(3)}]`);
  const lines: string[] = [];
  for (const k of [...new Set(records.map((r) => r.k))].sort((a, b) => a - b)) {
    lines.push(`**k = ${k}**`, '', `| method | ${organs.join(' | ')} | mean over organs | n per organ | trainable parameters |`, `|---|${organs.map(() => '---|').join('')}---|---|---|`);
    const mine = records.filter((r) => r.k === k);
    for (const label of [...new Set(mine.map(comparisonLabel))]) {
      const strata = organs.map((organ) => mine.filter((r) => comparisonLabel(r) === label && r.organ === organ).flatMap((r) => Object.values(r.queryDice)));
      const params = mine.find((r) => comparisonLabel(r) === label)?.trainableParameters ?? 0;
      lines.push(`| ${label} | ${strata.map((values) => cell(stratifiedBootstrapMean([values]))).join(' | ')} | ${cell(stratifiedBootstrapMean(strata))} | ${strata.map((s) => s.length).join('/')} | ${params.toLocaleString('en-US')} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

async function writeReport(options: StudyOptions, plans: Record<StudyPlanName, ExperimentPlan>, records: Record<StudyPlanName, ExperimentRecord[]>, target: TargetSpec): Promise<void> {
  const imagesDir = path.join(path.dirname(options.report), 'images');
  fs.mkdirSync(imagesDir, { recursive: true });
  const main = [...records.main, ...records.baselines];
  const kFigure = 'reproduction-k.svg';
  const gammaFigure = 'reproduction-gamma.svg';
  await writeFileAtomic(path.join(imagesDir, kFigure), await renderSvg(diceAgainstKSpec(main, 'Dice against k (mean over organs, 95 % interval)')));
  await writeFileAtomic(path.join(imagesDir, gammaFigure), await renderSvg(gammaCurveSpec(records.gamma, 'adapter', `TI margin gamma at k = ${plans.gamma.shots.join(', ')} (adapter alone dashed)`)));
  const findings = [...assessFindings(main, PAPER_FINDINGS.filter((f) => f.id !== 'f')), ...assessFindings(records.gamma, PAPER_FINDINGS.filter((f) => f.id === 'f'))];
  const epochs = (plan: ExperimentPlan) => [...new Set([...records.main, ...records.baselines, ...records.gamma].filter((r) => plan.methods.includes(r.method)).map((r) => `${r.method} k=${r.k}: ${r.epochs}`))].join(', ');
  const planLine = (name: StudyPlanName) => {
    const p = plans[name];
    return `- \`${name}\`: ${p.methods.join(', ')}; organs ${p.organs.join(', ')}; k = ${p.shots.join(', ')}; ${p.folds} folds x ${p.seeds.length} seed(s) x ${p.queries} queries; recipe ${p.recipe ?? 'paper'}; ${p.budget ? `budget ${p.budget}, ` : ''}epoch scale ${p.epochScale ?? 1}; ${p.cropsPerStep ?? 'recipe'} crops per step. Epochs run: ${epochs(p)}.`;
  };
  const text = [
    '# Reproduction of the paper\'s findings',
    '',
    `Made by \`npm run reproduce\` (${new Date().toISOString().slice(0, 10)}); the plans are fixed in \`docs/reproduction/\` and were not changed after`,
    'results came in. **Synthetic data**: a simulated target institution, not patients; and a small',
    `foundation model (\`${path.relative(process.cwd(), options.modelDir) || options.modelDir}\`, F = ${options.model.config.featureSize}, weights ${options.modelFingerprint}), not the paper's.`,
    '',
    `Target data: ${target.cases} phantoms of institution \`${target.institution}\` (seed ${target.seed}, voxel scale ${target.spacingScale}); per fold the`,
    'first queries are drawn, then the supports (the 1-shot support is among the 5- and 10-shot ones).',
    '',
    STUDY_PLANS.map(planLine).join('\n'),
    '',
    computeLine(records),
    '',
    '## Findings',
    '',
    'Each finding is read from paired differences of Dice on the same query volumes (mean over organs,',
    '95 % bootstrap interval stratified by organ, 2000 resamples, seed 0): **reproduced** when the',
    'interval lies on the paper\'s side, **not reproduced** when it lies on the other side, **inconclusive**',
    'when it includes no difference.',
    '',
    findingsMarkdown(findings),
    '',
    '## Dice',
    '',
    `![Dice against k](images/${kFigure})`,
    '',
    intervalTablesMarkdown(main),
    '## The gamma ablation (Fig. 2b)',
    '',
    `![Dice against gamma](images/${gammaFigure})`,
    '',
    intervalTablesMarkdown(records.gamma),
    discussionMarkdown(options.plansDir, options.modelFingerprint),
  ].join('\n');
  await writeFileAtomic(options.report, text);
}

/**
 * The hand-written discussion beside the plans (`discussion.md`), appended to the report. Its first
 * line names the model it was written for; when the study ran on another model the report says
 * that the discussion may no longer match its numbers.
 */
export function discussionMarkdown(plansDir: string, modelFingerprint: string): string {
  const file = path.join(plansDir, 'discussion.md');
  if (!fs.existsSync(file)) return '';
  const text = fs.readFileSync(file, 'utf8');
  const written = /^<!-- model (\S+) -->/.exec(text)?.[1];
  const body = text.replace(/^<!--.*-->\n/, '');
  if (written === modelFingerprint) return `\n${body}`;
  return `\n> **The discussion below was written for model ${written ?? '(not named)'}; this study ran on ${modelFingerprint}. Its numbers may no longer match the tables above: rewrite it (\`${path.relative(REPO_ROOT_HINT, file)}\`).**\n\n${body}`;
}

/** What the study cost: adaptation time summed over its cells, per plan (evaluation not included). */
export function computeLine(records: Record<StudyPlanName, ExperimentRecord[]>): string {
  const hours = (list: ExperimentRecord[]) => list.reduce((sum, r) => sum + (r.trainSeconds ?? 0), 0) / 3600;
  const total = STUDY_PLANS.reduce((sum, name) => sum + hours(records[name]), 0);
  const parts = STUDY_PLANS.map((name) => `${name} ${hours(records[name]).toFixed(2)} h over ${records[name].length} cells`).join(', ');
  return `Adaptation time summed over the cells (evaluation not included; the sittings shared the machine with other work at times): ${total.toFixed(2)} h (${parts}).`;
}

export function checkStudyPlansDir(dir: string): void {
  for (const name of [...STUDY_PLANS, 'target']) if (!fs.existsSync(path.join(dir, `${name}.json`))) throw new FseftError(`the study needs ${name}.json here`, dir);
}
