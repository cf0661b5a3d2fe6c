import * as path from 'node:path';
import { AdaptMethod, DECODER_MODES, DecoderMode, TRAINED_DECODER_LEARNING_RATE, inputOf, parseMethod } from '../adapters/adapters';
import { methodOf } from '../adapters/registry';
import { Dataset, loadCase, openDataset } from '../data/datasets';
import { templateClass, templateClassName } from '../data/template';
import { backboneFeatures } from '../inference/features';
import { FeatureCache } from '../inference/feature-cache';
import { PreparedCase, prepareCase } from '../inference/predict';
import { adapterProbabilities } from '../inference/segment';
import { Volume } from '../io/volume';
import { ModelManifest, ModelPreprocessing, headChannelOf, loadModel, modelFingerprint, modelPreprocessing } from '../networks/model-io';
import { SwinUNETR } from '../networks/swin-unetr';
import { FseftError } from '../util/errors';
import { Rng, seedFrom } from '../util/random';
import { AdaptOptions, adaptToOrgan, adaptationCrop } from './adapt';
import { Recipe, RecipeName, RECIPE_NAMES, recipeByName, recipeGamma, recipeHead, recipeQueryDice, recipeTraining } from './recipes';
import { BootstrapOptions, MeanInterval, stratifiedBootstrapMean } from '../metrics/bootstrap';
import { SIZE_CONSTRAINT_FORMS, SizeConstraintForm } from '../losses/size-constraint';
import { openRecordsForAppend, readRecordLines } from './records';
import * as crypto from 'node:crypto';
import { checkRange } from '../util/ranges';

/** A grid of few-shot experiments (methods x organs x k x folds x seeds, and TI's gamma/lambda). */
export interface ExperimentPlan {
  /** Dataset with the target organs labelled (MSD dir, TotalSegmentator, pairs.json). */
  data: string;
  organs: string[];
  /** Methods; a '+ti' suffix adds transductive inference (e.g. 'adapter+ti'). */
  methods: string[];
  shots: number[];
  folds: number;
  seeds: number[];
  /** Query volumes evaluated per fold (drawn before the supports). */
  queries: number;
  /** Epochs per k ({"1": 50, "5": 10}) or one number; absent: the recipe's epochs per method. */
  epochs?: number | Record<string, number>;
  /**
   * Without "epochs", a compute budget on the recipe's epochs per method: "equal-steps" gives every
   * k the optimizer steps of k = 1 (epochs / k, as one epoch is one step per support volume), and
   * "epochScale" multiplies them (e.g. 0.5). Records keep the epochs each cell ran.
   */
  budget?: 'equal-steps';
  epochScale?: number;
  /** The recipe whose values fill everything the plan leaves out (default 'paper'; docs/recipes.md). */
  recipe?: RecipeName;
  /** A model directory whose Swin encoder starts Scratch (the reference's self-supervised start); random when absent. */
  scratchInit?: string;
  cropsPerStep?: number;
  /**
   * Edge of the training crops in voxels; absent: the model's adaptation ROI for frozen-backbone
   * methods and its ROI for methods that run the network on crops (`adaptationCrop`).
   */
  crop?: number;
  learningRates?: Partial<Record<AdaptMethod, number>>;
  /** The head of LP and the adapters: the organ's pretrained row or random; absent: the recipe's. */
  head?: 'zero-shot' | 'random';
  /**
   * The decoder of every method that can train it ('fine-tuned' or 'new'; generalization, ft and
   * scratch keep theirs); default 'frozen'. Its learning rate is then 1e-4 unless learningRates says otherwise.
   */
  decoder?: DecoderMode;
  ti?: { lambda?: number[]; gamma?: number[]; form?: SizeConstraintForm; pool?: number };
}

/** One finished cell of a plan. */
export interface ExperimentRecord {
  key: string;
  method: string;
  organ: string;
  k: number;
  fold: number;
  seed: number;
  /** The recipe the cell ran under (absent in records made before recipes: 'paper'). */
  recipe?: RecipeName;
  /** Scratch: what the network started from ('random', or the encoder's model directory and fingerprint). */
  scratchInit?: string;
  /** Where the trained head started (the organ's pretrained row or random); scratch always starts random. */
  head?: 'zero-shot' | 'random';
  /** The decoder when it trained ('fine-tuned' or 'new'); absent: frozen. */
  decoder?: DecoderMode;
  /** Edge of the training crops when it differs from the model's sliding-window ROI. */
  cropSize?: [number, number, number];
  lambda?: number;
  gamma?: number;
  epochs: number;
  learningRate: number;
  dice: number;
  queryDice: Record<string, number>;
  supports: string[];
  trainableParameters: number;
  /** The query volume this record's TI adapted to (TI records are one per query). */
  query?: string;
  /** TI: the target size S (voxels, from the supports) and the query's predicted size S_hat at the end. */
  targetSize?: number;
  predictedSize?: number;
  /** TI: the query's predicted size S_hat at the end of each epoch where the size term was active. */
  sizeByEpoch?: number[];
  trainSeconds: number;
  secondsPerStep?: number;
  /** Epochs trained when early stopping ended the cell before `epochs` (the reference-head recipe). */
  epochsRun?: number;
}

export interface ExperimentContext {
  model: SwinUNETR;
  manifest: ModelManifest;
  /** The model's weights fingerprint (`modelFingerprint(dir)`); computed from the weights when absent. */
  modelFingerprint?: string;
  /** Records file (JSON lines): finished cells found there are skipped. */
  recordsFile: string;
  /** Bound on cached backbone features in memory (MiB). */
  cacheMiB?: number;
  log?: (line: string) => void;
  onRecord?: (record: ExperimentRecord) => void;
  /** Receives each query prediction (binary mask on the preprocessed grid), e.g. for figures. */
  onPrediction?: (cell: { method: string; organ: string; k: number; fold: number; seed: number }, query: PreparedCase, mask: Volume<Uint8Array>) => void;
}

/**
 * The records of a file: a torn last line (an interrupted write) is ignored, and two records of
 * one cell (two runs that wrote the same file) are an error, so that no mean counts a cell twice.
 */
export function readRecords(file: string, log: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): ExperimentRecord[] {
  const { records, tornBytes } = readRecordLines<ExperimentRecord>(file);
  if (tornBytes > 0) log(`fseft: ${file}: ignored a torn last line of ${tornBytes} bytes (an interrupted write)`);
  const seen = new Set<string>();
  for (const record of records) {
    if (seen.has(record.key)) {
      const cell = `${record.method} ${record.organ} k=${record.k} fold ${record.fold} seed ${record.seed}${record.gamma !== undefined ? ` gamma ${record.gamma} lambda ${record.lambda}` : ''}${record.query !== undefined ? ` query ${record.query}` : ''}`;
      throw new FseftError(`holds the cell '${cell}' twice (two runs wrote this file?); keep one record of each cell`, file);
    }
    seen.add(record.key);
  }
  return records;
}

interface Cell {
  method: AdaptMethod;
  label: string;
  /** gamma undefined: the recipe's margin for each organ. */
  ti?: { lambda: number; gamma?: number };
}

function cellsOf(plan: ExperimentPlan, recipe: Recipe): Cell[] {
  const cells: Cell[] = [];
  for (const name of plan.methods) {
    const withTi = name.endsWith('+ti');
    const method = parseMethod(withTi ? name.slice(0, -3) : name);
    if (!withTi) cells.push({ method, label: name });
    else for (const lambda of plan.ti?.lambda ?? [recipe.ti.lambda]) for (const gamma of plan.ti?.gamma ?? [undefined]) cells.push({ method, label: name, ti: { lambda, gamma } });
  }
  return cells;
}

export function epochsFor(plan: ExperimentPlan, k: number, method: AdaptMethod, recipe: Recipe): number {
  if (plan.epochs === undefined) {
    if (method === 'generalization') return 0;
    const scaled = recipe.epochs[method] * (plan.epochScale ?? 1);
    return Math.max(1, Math.round(plan.budget === 'equal-steps' ? scaled / k : scaled));
  }
  if (typeof plan.epochs === 'number') return plan.epochs;
  const value = plan.epochs[String(k)];
  if (value === undefined) throw new FseftError(`the plan gives no epochs for k = ${k}`);
  return value;
}

/** The decoder a cell adapts with: generalization, ft and scratch keep theirs. */
function cellDecoder(plan: ExperimentPlan, method: AdaptMethod): DecoderMode {
  return ['generalization', 'ft', 'scratch'].includes(method) ? 'frozen' : (plan.decoder ?? 'frozen');
}

/**
 * Runs every unfinished cell of a plan and appends one record per cell (per cell and query volume
 * when TI is on) to the records file.
 * Supports are nested (the k = 1 support is among the k = 5 ones) and drawn per fold from a
 * seeded shuffle; queries are drawn first and never serve as support.
 */
export async function runExperiment(plan: ExperimentPlan, context: ExperimentContext): Promise<ExperimentRecord[]> {
  const log = context.log ?? ((line: string) => console.log(line));
  validatePlan(plan);
  const dataset = openDataset(plan.data);
  const fingerprint = context.modelFingerprint ?? weightsFingerprint(context.model);
  const preprocessing = modelPreprocessing(context.manifest);
  const named = recipeByName(plan.recipe ?? 'paper');
  const recipe: Recipe = plan.head ? { ...named, head: plan.head } : named;
  const cells = cellsOf(plan, recipe);
  const needsDecoder = cells.some((c) => c.method === 'ft-last');
  // Resolved once per cell, so a crop some method cannot take is refused before anything runs.
  const cropOf = new Map(cells.map((cell) => [cell, adaptationCrop(preprocessing, cell.method, cellDecoder(plan, cell.method), plan.crop)]));
  const writer = openRecordsForAppend(context.recordsFile, log);
  let scratchStart: { dir: string; model: SwinUNETR; fingerprint: string } | undefined;
  try {
    if (cells.some((c) => c.method === 'scratch') && plan.scratchInit !== undefined) {
      scratchStart = { dir: plan.scratchInit, model: loadModel(plan.scratchInit).model, fingerprint: modelFingerprint(plan.scratchInit) };
    }
    const scratchInit = scratchStart ? `${scratchStart.dir} (${scratchStart.fingerprint})` : 'random';
    const done = new Map(readRecords(context.recordsFile, log).map((r) => [r.key, r]));
    const prepared = new Map<string, PreparedCase>();
    const cache = new FeatureCache((context.cacheMiB ?? 2048) * 2 ** 20);
    const records: ExperimentRecord[] = [];

    for (const organ of plan.organs) {
      const organClass = templateClass(organ);
      const organName = templateClassName(organClass);
      if (!dataset.annotated.includes(organClass)) throw new FseftError(`dataset ${dataset.name} does not annotate ${organName} (it annotates ${dataset.annotated.map(templateClassName).join(', ')})`, plan.data);
      const eligible = dataset.cases.filter((c) => c.label || c.masks);
      const channel = headChannelOf(context.manifest, organClass, organName);
      for (const seed of plan.seeds) {
        for (let fold = 0; fold < plan.folds; fold++) {
          // The split depends on the fold and seed only, so every organ sees the same patients (as the paper's folds).
          const order = new Rng(seedFrom(seed, 'fold', fold)).shuffle(eligible);
          const queries = order.slice(0, plan.queries);
          const pool = order.slice(plan.queries);
          for (const k of plan.shots) {
            if (k > pool.length) throw new FseftError(`k = ${k} needs ${k} support volumes but only ${pool.length} remain after ${plan.queries} queries (${eligible.length} labelled cases)`, plan.data);
            const supportEntries = pool.slice(0, k);
            for (const cell of cells) {
              if (cell.method === 'generalization' && channel === undefined) {
                log(`  skip generalization for ${organName}: the model's head has no ${organName} channel`);
                continue;
              }
              const epochs = epochsFor(plan, k, cell.method, recipe);
              const decoder = cellDecoder(plan, cell.method);
              const learningRate =
                plan.learningRates?.[cell.method] ?? (cell.method === 'generalization' ? 0 : decoder !== 'frozen' ? TRAINED_DECODER_LEARNING_RATE : recipe.learningRates[cell.method]);
              const cropsPerStep = plan.cropsPerStep ?? recipe.cropsPerStep;
              const crop = cropOf.get(cell)!;
              // Only a crop other than the ROI enters the key, so records made before the option still match.
              const cropSize = crop.every((n, a) => n === preprocessing.roi[a]) ? undefined : crop;
              const tiForm = plan.ti?.form ?? recipe.ti.form;
              const frozen = inputOf(cell.method, decoder) !== 'image';
              const load = async (entry: (typeof eligible)[number]) => {
                let found = prepared.get(entry.id + '|' + organName);
                if (!found) {
                  found = await prepareDatasetCase(dataset, entry, organClass, preprocessing);
                  prepared.set(entry.id + '|' + organName, found);
                }
                const features = frozen ? cache.get(entry.id, () => backboneFeatures(context.model, found!.image, { roi: preprocessing.roi, decoderInputs: needsDecoder })) : undefined;
                return { prepared: found, features };
              };
              // TI is transductive: the query takes part in training, so each query volume gets its own
              // adaptation (same supports, same seed) and its own record. Other methods adapt once and
              // are scored on every query.
              const groups = cell.ti ? queries.map((query) => [query]) : [queries];
              const ti = cell.ti && { lambda: cell.ti.lambda, gamma: cell.ti.gamma ?? recipeGamma(recipe, organName) };
              for (const group of groups) {
                const transductiveQuery = cell.ti ? group[0].id : undefined;
                // Everything that changes a number is in the key: a changed plan or model runs the cell again.
                const settings = {
                  cell: cell.label,
                  ti: ti ? { ...ti, form: tiForm, pool: plan.ti?.pool ?? 2, query: transductiveQuery } : undefined,
                  organ: organName,
                  k,
                  fold,
                  seed,
                  epochs,
                  learningRate,
                  cropsPerStep,
                  cropSize,
                  recipe: { ...recipe, sources: undefined },
                  scratchInit: cell.method === 'scratch' ? scratchInit : undefined,
                  decoder: decoder === 'frozen' ? undefined : decoder,
                  data: path.resolve(plan.data),
                  supports: supportEntries.map((e) => e.id),
                  queries: group.map((e) => e.id),
                  preprocessing,
                  model: fingerprint,
                };
                const digest = crypto.createHash('sha256').update(JSON.stringify(settings)).digest('hex').slice(0, 16);
                const key = [cell.label, organName, k, fold, seed, ti?.lambda ?? '', ti?.gamma ?? '', transductiveQuery ?? '', digest].join('|');
                const previous = done.get(key);
                if (previous) {
                  records.push(previous);
                  continue;
                }
                const supports = [];
                for (const entry of supportEntries) {
                  const { prepared: p, features } = await load(entry);
                  supports.push({ id: entry.id, image: p.image, mask: p.mask!, features });
                }
                const queryCases = [];
                for (const entry of group) queryCases.push({ id: entry.id, ...(await load(entry)) });
                const options: AdaptOptions = {
                  method: cell.method,
                  ...recipeTraining(recipe),
                  scratchEncoder: cell.method === 'scratch' ? scratchStart?.model : undefined,
                  roi: crop,
                  epochs,
                  learningRate,
                  cropsPerStep,
                  seed: seedFrom(seed, 'adapt', fold, k),
                  checkpoint: true,
                  decoder,
                  ti: ti ? { ...ti, form: tiForm, pool: plan.ti?.pool ?? 2, query: queryCases[0].features! } : undefined,
                };
                const result = adaptToOrgan(context.model, supports, recipeHead(recipe, context.model, channel, cell.method), options);
                const queryDice: Record<string, number> = {};
                try {
                  for (const q of queryCases) {
                    const grid = adapterProbabilities(result.adapter, { image: q.prepared.image, features: q.features }, { roi: preprocessing.roi });
                    const { dice, mask } = recipeQueryDice(recipe, grid, q.prepared);
                    queryDice[q.id] = dice;
                    context.onPrediction?.({ method: cell.label, organ: organName, k, fold, seed }, q.prepared, mask);
                  }
                } finally {
                  result.adapter.dispose();
                }
                const values = Object.values(queryDice);
                const steps = result.history.length;
                const record: ExperimentRecord = {
                  key,
                  method: cell.label,
                  organ: organName,
                  k,
                  fold,
                  seed,
                  recipe: recipe.name,
                  head: methodOf(cell.method).trains && methodOf(cell.method).head === 'recipe' ? recipe.head : undefined,
                  scratchInit: cell.method === 'scratch' ? scratchInit : undefined,
                  decoder: decoder === 'frozen' ? undefined : decoder,
                  cropSize,
                  lambda: ti?.lambda,
                  gamma: ti?.gamma,
                  query: transductiveQuery,
                  epochs,
                  learningRate,
                  dice: values.reduce((a, b) => a + b, 0) / values.length,
                  queryDice,
                  supports: supportEntries.map((e) => e.id),
                  trainableParameters: result.trainableParameters,
                  targetSize: result.targetSize,
                  predictedSize: result.history.at(-1)?.predictedSize,
                  sizeByEpoch: cell.ti ? sizeByEpoch(result.history) : undefined,
                  epochsRun: (result.history.at(-1)?.epoch ?? epochs) < epochs ? result.history.at(-1)!.epoch : undefined,
                  trainSeconds: result.seconds,
                  secondsPerStep: steps > 0 ? result.history.reduce((s, h) => s + h.seconds, 0) / steps : undefined,
                };
                writer.append(record);
                records.push(record);
                context.onRecord?.(record);
              }
            }
          }
        }
      }
    }
    log(`  backbone feature cache: ${cache.misses} backbone passes, ${cache.hits} reuses`);
    return records;
  } finally {
    writer.close();
    scratchStart?.model.dispose();
  }
}

/** The query's predicted size at the last step of each epoch that has one (rounded to voxels). */
function sizeByEpoch(history: Array<{ epoch: number; predictedSize?: number }>): number[] {
  const last = new Map<number, number>();
  for (const step of history) if (step.predictedSize !== undefined) last.set(step.epoch, Math.round(step.predictedSize));
  return [...last.values()];
}

/** A short hash of a model's weights as they are in memory (for records made without a model directory). */
export function weightsFingerprint(model: SwinUNETR): string {
  const hash = crypto.createHash('sha256');
  for (const [name, parameter] of [...model.params].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const values = parameter.dataSync() as Float32Array;
    hash.update(name).update(Buffer.from(values.buffer, values.byteOffset, values.byteLength));
  }
  return hash.digest('hex').slice(0, 16);
}

/** Every field of a plan checked before any work, each error naming the field. */
export function validatePlan(plan: ExperimentPlan, file?: string): void {
  const fail = (message: string) => new FseftError(`plan: ${message}`, file);
  const list = (value: unknown, field: string) => {
    if (!Array.isArray(value) || value.length === 0) throw fail(`"${field}" must be a non-empty list, got ${JSON.stringify(value)}`);
    return value as unknown[];
  };
  const whole = (value: unknown, field: string, min: number) => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min) throw fail(`"${field}" must be a whole number of at least ${min}, got ${JSON.stringify(value)}`);
  };
  const number = (value: unknown, field: string, range: Parameters<typeof checkRange>[2]) => {
    if (typeof value !== 'number' || !Number.isFinite(value)) throw fail(`"${field}" must be a number, got ${JSON.stringify(value)}`);
    try {
      checkRange(`"${field}"`, value, range);
    } catch (error) {
      throw fail((error as Error).message);
    }
  };
  if (typeof plan.data !== 'string' || plan.data === '') throw fail('"data" must name a dataset');
  if (plan.scratchInit !== undefined && (typeof plan.scratchInit !== 'string' || plan.scratchInit === '')) throw fail('"scratchInit" must name a model directory');
  list(plan.organs, 'organs').forEach((organ, i) => {
    if (typeof organ !== 'string') throw fail(`"organs"[${i}] must be an organ name`);
  });
  list(plan.methods, 'methods').forEach((method, i) => {
    if (typeof method !== 'string') throw fail(`"methods"[${i}] must be a method name`);
  });
  list(plan.shots, 'shots').forEach((k, i) => whole(k, `shots[${i}]`, 1));
  list(plan.seeds, 'seeds').forEach((seed, i) => whole(seed, `seeds[${i}]`, 0));
  whole(plan.folds, 'folds', 1);
  whole(plan.queries, 'queries', 1);
  if (plan.recipe !== undefined && !RECIPE_NAMES.includes(plan.recipe)) throw fail(`"recipe" must be one of ${RECIPE_NAMES.join(', ')}, got ${JSON.stringify(plan.recipe)}`);
  // Without "epochs" the recipe gives them per method.
  if (typeof plan.epochs === 'number') whole(plan.epochs, 'epochs', 1);
  else if (plan.epochs && typeof plan.epochs === 'object') for (const [k, epochs] of Object.entries(plan.epochs)) whole(epochs, `epochs.${k}`, 1);
  else if (plan.epochs !== undefined) throw fail(`"epochs" must be a number or a map from k to a number, got ${JSON.stringify(plan.epochs)}`);
  if (plan.cropsPerStep !== undefined) whole(plan.cropsPerStep, 'cropsPerStep', 1);
  if (plan.crop !== undefined) whole(plan.crop, 'crop', 2);
  if (plan.budget !== undefined && plan.budget !== 'equal-steps') throw fail(`"budget" must be "equal-steps", got ${JSON.stringify(plan.budget)}`);
  if (plan.epochScale !== undefined) number(plan.epochScale, 'epochScale', { above: 0 });
  if ((plan.budget !== undefined || plan.epochScale !== undefined) && plan.epochs !== undefined) throw fail('"budget" and "epochScale" scale the recipe\'s epochs: drop "epochs", or drop them');
  for (const [method, rate] of Object.entries(plan.learningRates ?? {})) number(rate, `learningRates.${method}`, { above: 0 });
  if (plan.head !== undefined && plan.head !== 'zero-shot' && plan.head !== 'random') throw fail(`"head" must be "zero-shot" or "random", got ${JSON.stringify(plan.head)}`);
  if (plan.decoder !== undefined && !DECODER_MODES.includes(plan.decoder)) throw fail(`"decoder" must be one of ${DECODER_MODES.join(', ')}, got ${JSON.stringify(plan.decoder)}`);
  if (plan.decoder !== undefined && plan.decoder !== 'frozen' && plan.methods.some((m) => typeof m === 'string' && m.endsWith('+ti'))) throw fail(`TI trains on cached features of a frozen network: a ${plan.decoder} decoder cannot run "+ti" methods`);
  if (plan.ti) {
    (plan.ti.lambda ?? []).forEach((lambda, i) => number(lambda, `ti.lambda[${i}]`, { min: 0 }));
    (plan.ti.gamma ?? []).forEach((gamma, i) => number(gamma, `ti.gamma[${i}]`, { min: 0, below: 1 }));
    if (plan.ti.pool !== undefined) whole(plan.ti.pool, 'ti.pool', 1);
    if (plan.ti.form !== undefined && !SIZE_CONSTRAINT_FORMS.includes(plan.ti.form)) throw fail(`"ti.form" must be one of ${SIZE_CONSTRAINT_FORMS.join(', ')}, got ${JSON.stringify(plan.ti.form)}`);
  }
}

async function prepareDatasetCase(dataset: Dataset, entry: Dataset['cases'][number], organClass: number, preprocessing: ModelPreprocessing): Promise<PreparedCase> {
  const loaded = await loadCase(dataset, entry);
  if (!loaded.label) throw new FseftError('has no label', entry.image);
  return prepareCase(entry.image, preprocessing, { volume: loaded.label, value: organClass, file: loaded.labelFile ?? entry.image }, entry.id);
}

/** A Table-1 style text table: rows method (per k), columns organs and their mean, Dice averaged over folds and seeds. */
export function formatTable(records: ExperimentRecord[]): string {
  const organs = [...new Set(records.map((r) => r.organ))];
  const rowKey = (r: ExperimentRecord) => `${r.method}${r.gamma !== undefined ? ` (g=${r.gamma}, l=${r.lambda})` : ''}`;
  const shots = [...new Set(records.map((r) => r.k))].sort((a, b) => b - a);
  const width = Math.max(24, ...records.map((r) => rowKey(r).length + 2));
  const lines: string[] = [];
  const header = 'method'.padEnd(width) + organs.map((o) => o.padStart(10)).join('') + 'mean'.padStart(10) + 'params'.padStart(10);
  for (const k of shots) {
    lines.push(`${k}-shot`);
    lines.push(header);
    const mine = records.filter((r) => r.k === k);
    for (const row of [...new Set(mine.map(rowKey))]) {
      const cells = organs.map((organ) => {
        const values = mine.filter((r) => rowKey(r) === row && r.organ === organ).map((r) => r.dice);
        return values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN;
      });
      const present = cells.filter((v) => Number.isFinite(v));
      const mean = present.length ? present.reduce((a, b) => a + b, 0) / present.length : NaN;
      const params = mine.find((r) => rowKey(r) === row)?.trainableParameters ?? 0;
      lines.push(row.padEnd(width) + cells.map((v) => (Number.isFinite(v) ? v.toFixed(3) : '-').padStart(10)).join('') + (Number.isFinite(mean) ? mean.toFixed(3) : '-').padStart(10) + String(params).padStart(10));
    }
    lines.push('');
  }
  return lines.join('\n');
}

/**
 * Table 1 with error bars: per k, method and organ the mean Dice over every query of every fold and
 * seed with its 95 % bootstrap interval, and the mean over organs with a bootstrap stratified by
 * organ (each organ's queries redrawn within the organ). Seeded.
 */
export function formatIntervalTable(records: ExperimentRecord[], options: BootstrapOptions = {}): string {
  const organs = [...new Set(records.map((r) => r.organ))];
  const rowKey = (r: ExperimentRecord) => `${r.method}${r.gamma !== undefined ? ` (g=${r.gamma}, l=${r.lambda})` : ''}`;
  const shots = [...new Set(records.map((r) => r.k))].sort((a, b) => b - a);
  const cell = (interval: MeanInterval) => (interval.n === 0 ? '-' : `${interval.mean.toFixed(3)} [${interval.low.toFixed(3)}, ${interval.high.toFixed(3)}]`);
  const width = Math.max(24, ...records.map((r) => rowKey(r).length + 2));
  const column = 24;
  const lines = [`Dice: mean [95 % bootstrap interval] over queries x folds x seeds (n per organ in brackets after the row)`];
  for (const k of shots) {
    lines.push('', `${k}-shot`, 'method'.padEnd(width) + organs.map((o) => o.padStart(column)).join('') + 'mean over organs'.padStart(column));
    const mine = records.filter((r) => r.k === k);
    for (const row of [...new Set(mine.map(rowKey))]) {
      const strata = organs.map((organ) => mine.filter((r) => rowKey(r) === row && r.organ === organ).flatMap((r) => Object.values(r.queryDice)));
      const perOrgan = strata.map((values) => stratifiedBootstrapMean([values], options));
      const overall = stratifiedBootstrapMean(strata, options);
      lines.push(row.padEnd(width) + perOrgan.map((i) => cell(i).padStart(column)).join('') + cell(overall).padStart(column) + `  (n ${strata.map((s) => s.length).join('/')})`);
    }
  }
  return lines.join('\n');
}
