import type { EpochRecord } from '../training/pretrain';
import type { ExperimentRecord } from '../training/experiment';
import { Volume } from '../io/volume';
import { encodePngRgb } from './png';
import { overlaySlice, overlaySliceLayers, tileImages } from './overlay';

/** A vega-lite specification as plain JSON (render with `renderSvg`, or display in a notebook). */
export type VegaLiteSpec = Record<string, unknown>;

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v5.json';

/**
 * An axial slice with masks filled in colour, at full resolution (one pixel per voxel times
 * `zoom`), embedded in a vega-lite image mark as a PNG data URI.
 */
export function sliceOverlaySpec(
  image: Volume,
  layers: Array<{ mask: Volume; color: [number, number, number]; label: string }>,
  options: { slice: number; window?: [number, number]; zoom?: number; title?: string },
): VegaLiteSpec {
  const picture = overlaySliceLayers(image, layers, { slice: options.slice, window: options.window, zoom: options.zoom });
  const url = `data:image/png;base64,${encodePngRgb(picture.pixels, picture.width, picture.height).toString('base64')}`;
  return imageSpec(url, picture.width, picture.height, options.title ?? `axial slice ${options.slice}`, layers);
}

/** Several overlays side by side (e.g. support, query, prediction, ground truth). */
export function overlayGridSpec(panels: Array<{ title: string; image: Volume; mask?: Volume; color?: [number, number, number] }>, options: { slice: number; window?: [number, number]; zoom?: number }): VegaLiteSpec {
  return {
    $schema: SCHEMA,
    hconcat: panels.map((panel) => {
      const spec = sliceOverlaySpec(panel.image, panel.mask ? [{ mask: panel.mask, color: panel.color ?? [230, 30, 30], label: panel.title }] : [], { ...options, title: panel.title });
      delete spec.$schema;
      return spec;
    }),
  };
}

/**
 * A labelled grid of slice overlays, e.g. the paper's Fig. 3: one row per method (its name on the
 * left), one column per organ (its name on top), each panel at `zoom` pixels per voxel with an
 * optional caption (e.g. its Dice) in its title.
 */
export function labelledGridSpec(
  rows: Array<Array<{ image: Volume; mask?: Volume; color?: [number, number, number]; slice: number; caption?: string } | undefined>>,
  rowLabels: string[],
  columnLabels: string[],
  options: { zoom?: number; window?: [number, number]; title?: string } = {},
): VegaLiteSpec {
  if (rowLabels.length !== rows.length || rows.some((row) => row.length !== columnLabels.length)) throw new Error('one label per row and per column');
  return {
    $schema: SCHEMA,
    ...(options.title ? { title: options.title } : {}),
    vconcat: rows.map((row, r) => ({
      title: { text: rowLabels[r], orient: 'left', anchor: 'middle', fontSize: 13 },
      hconcat: row.flatMap((cell, c) => {
        if (!cell) return [];
        const spec = sliceOverlaySpec(cell.image, cell.mask ? [{ mask: cell.mask, color: cell.color ?? [230, 30, 30], label: rowLabels[r] }] : [], { slice: cell.slice, zoom: options.zoom, window: options.window, title: [r === 0 ? columnLabels[c] : '', cell.caption ?? ''].filter(Boolean).join(' · ') });
        delete spec.$schema;
        return [spec];
      }),
    })),
  };
}

function imageSpec(url: string, width: number, height: number, title: string, layers: Array<{ color: [number, number, number]; label: string }>): VegaLiteSpec {
  return {
    $schema: SCHEMA,
    title,
    width,
    height,
    data: { values: [{ url, x: 0, y: 0, legend: layers.map((l) => l.label).join(', ') }] },
    mark: { type: 'image', width, height, align: 'left', baseline: 'top' },
    encoding: {
      x: { field: 'x', type: 'quantitative', scale: { domain: [0, width] }, axis: null },
      y: { field: 'y', type: 'quantitative', scale: { domain: [0, height], reverse: true }, axis: null },
      url: { field: 'url', type: 'nominal' },
    },
  };
}

/** A whole RGB figure of tiled slices (rows x columns) as one PNG, e.g. the paper's Fig. 3. */
export function tiledSlicesPng(rows: Array<Array<{ image: Volume; mask?: Volume; color?: [number, number, number] }>>, slice: (image: Volume) => number): Buffer {
  const tiles = rows.map((row) => row.map((cell) => overlaySlice(cell.image, cell.mask, { slice: slice(cell.image), color: cell.color })));
  const figure = tileImages(tiles);
  return encodePngRgb(figure.pixels, figure.width, figure.height);
}

/**
 * Epoch numbers that keep rising across the stages of a log that concatenates several runs (the
 * shipped model's log: each stage restarts at epoch 1, and marks its lines with `stage`).
 */
function runningEpochs(records: ReadonlyArray<EpochRecord & { stage?: number }>): Array<{ epoch: number; stage?: number }> {
  let offset = 0;
  return records.map((r, i) => {
    const previous = records[i - 1];
    if (previous && (r.stage !== previous.stage || r.epoch <= previous.epoch)) offset += previous.epoch;
    return { epoch: offset + r.epoch, stage: r.stage };
  });
}

/** Training loss per class and epoch (from a pretraining `log.jsonl`; stages of a multi-stage log side by side). */
export function trainingCurvesSpec(records: EpochRecord[], title = 'pretraining loss per class'): VegaLiteSpec {
  const epochs = runningEpochs(records);
  const values = records.flatMap((r, i) => [
    { epoch: epochs[i].epoch, series: 'total (Eq. 1)', loss: r.loss },
    ...Object.entries(r.classLoss).map(([organ, loss]) => ({ epoch: epochs[i].epoch, series: organ, loss })),
  ]);
  return epochLinesSpec(title, values, { field: 'loss', type: 'quantitative', title: 'loss (Dice per class; total: Eq. 1, + BCE where used)' }, { field: 'series', title: 'class' }, epochTitle(records, epochs), stageStarts(epochs));
}

const epochTitle = (records: EpochRecord[], epochs: Array<{ epoch: number }>) => (epochs.some((e, i) => e.epoch !== records[i].epoch) ? 'epoch (all stages, in order)' : 'epoch');

/** Where each stage after the first begins, for a labelled rule. */
function stageStarts(epochs: Array<{ epoch: number; stage?: number }>): Array<{ epoch: number; label: string }> {
  return epochs.filter((e, i) => i > 0 && e.stage !== undefined && e.stage !== epochs[i - 1].stage).map((e) => ({ epoch: e.epoch - 0.5, label: `stage ${e.stage}` }));
}

/** One line per series over epochs; tableau20 so that up to twenty series keep distinct colours. */
function epochLinesSpec(title: string, values: object[], y: Record<string, unknown>, series: { field: string; title: string }, xTitle: string, stages: Array<{ epoch: number; label: string }> = []): VegaLiteSpec {
  const lines = {
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'epoch', type: 'quantitative', title: xTitle },
      y,
      color: { field: series.field, type: 'nominal', title: series.title, scale: { scheme: 'tableau20' } },
    },
  };
  const rules = [
    { data: { values: stages }, mark: { type: 'rule', color: 'gray', strokeDash: [4, 3] }, encoding: { x: { field: 'epoch', type: 'quantitative' } } },
    { data: { values: stages }, mark: { type: 'text', align: 'left', baseline: 'top', dx: 3, y: 2, color: 'gray' }, encoding: { x: { field: 'epoch', type: 'quantitative' }, text: { field: 'label' } } },
  ];
  return { $schema: SCHEMA, title, width: 420, height: 260, layer: stages.length > 0 ? [lines, ...rules] : [lines] };
}

/** Per-organ Dice of the model's own head on held-out volumes after each epoch (`pretrain --val-cases`). */
export function validationCurvesSpec(records: EpochRecord[], title = 'validation Dice per organ (held-out volumes, p > 0.5, largest component)'): VegaLiteSpec {
  const epochs = runningEpochs(records);
  const values = records.flatMap((r, i) => Object.entries(r.validation?.dice ?? {}).map(([organ, dice]) => ({ epoch: epochs[i].epoch, organ, dice })));
  const shown = epochs.filter((_, i) => records[i].validation);
  return epochLinesSpec(title, values, { field: 'dice', type: 'quantitative', title: 'Dice', scale: { domain: [0, 1] } }, { field: 'organ', title: 'organ' }, epochTitle(records, epochs), stageStarts(shown).filter((s) => s.epoch > shown[0].epoch));
}

const methodLabel = (r: ExperimentRecord) => (r.gamma !== undefined ? `${r.method} (gamma ${r.gamma})` : r.method);

/** Dice per method and organ: bars of the mean over folds/seeds with the individual runs as points, one panel per k. */
export function diceBarsSpec(records: ExperimentRecord[], title = 'Dice per method and organ'): VegaLiteSpec {
  const values = records.map((r) => ({ method: methodLabel(r), organ: r.organ, k: `${r.k}-shot`, dice: r.dice }));
  return {
    $schema: SCHEMA,
    title,
    data: { values },
    facet: { column: { field: 'k', type: 'nominal', title: null }, row: { field: 'organ', type: 'nominal', title: null } },
    spec: {
      width: 260,
      height: 120,
      layer: [
        { mark: 'bar', encoding: { y: { field: 'method', type: 'nominal', title: null, axis: { labelLimit: 0 } }, x: { aggregate: 'mean', field: 'dice', type: 'quantitative', scale: { domain: [0, 1] }, title: 'Dice' }, color: { field: 'method', type: 'nominal', legend: null } } },
        { mark: { type: 'point', color: 'black', size: 12 }, encoding: { y: { field: 'method', type: 'nominal' }, x: { field: 'dice', type: 'quantitative' } } },
      ],
    },
  };
}

/**
 * The paper's Fig. 2b: Dice against gamma per organ for the TI records, with the same method
 * without TI as a dashed horizontal line.
 */
export function gammaCurveSpec(records: ExperimentRecord[], method = 'adapter', title = `Dice against the TI margin gamma (dashed: ${method} without TI)`): VegaLiteSpec {
  const ti = records.filter((r) => r.method === `${method}+ti` && r.gamma !== undefined).map((r) => ({ organ: r.organ, gamma: r.gamma, dice: r.dice, k: r.k }));
  const plain = records.filter((r) => r.method === method).map((r) => ({ organ: r.organ, dice: r.dice, k: r.k }));
  return {
    $schema: SCHEMA,
    title,
    width: 380,
    height: 240,
    layer: [
      {
        data: { values: ti },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'gamma', type: 'quantitative', title: 'gamma' },
          y: { aggregate: 'mean', field: 'dice', type: 'quantitative', title: 'Dice', scale: { domain: [0, 1] } },
          color: { field: 'organ', type: 'nominal' },
        },
      },
      {
        data: { values: plain },
        mark: { type: 'rule', strokeDash: [6, 4] },
        encoding: { y: { aggregate: 'mean', field: 'dice', type: 'quantitative' }, color: { field: 'organ', type: 'nominal' } },
      },
    ],
  };
}

/** A histogram of values (e.g. HU before preprocessing, [0, 1] after). */
export function histogramSpec(values: ArrayLike<number>, options: { bins?: number; title?: string; xTitle?: string; range?: [number, number] } = {}): VegaLiteSpec {
  const bins = options.bins ?? 60;
  let [low, high] = options.range ?? [Infinity, -Infinity];
  if (!options.range) for (let i = 0; i < values.length; i++) [low, high] = [Math.min(low, values[i]), Math.max(high, values[i])];
  const width = (high - low) / bins || 1;
  const counts = new Array<number>(bins).fill(0);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < low || v > high) continue;
    counts[Math.min(bins - 1, Math.floor((v - low) / width))]++;
  }
  return {
    $schema: SCHEMA,
    title: options.title ?? 'histogram',
    width: 360,
    height: 160,
    data: { values: counts.map((count, b) => ({ from: low + b * width, to: low + (b + 1) * width, count })) },
    mark: 'bar',
    encoding: {
      x: { field: 'from', type: 'quantitative', bin: { binned: true, step: width }, title: options.xTitle ?? 'value' },
      x2: { field: 'to' },
      y: { field: 'count', type: 'quantitative', scale: { type: 'symlog' } },
    },
  };
}

/** Compiles a vega-lite spec and renders it to SVG with vega (no canvas needed). */
export async function renderSvg(spec: VegaLiteSpec): Promise<string> {
  // Loaded on first use: they are large and only plots need them.
  const vegaLite = await import('vega-lite');
  const vega = await import('vega');
  const compiled = vegaLite.compile(spec as unknown as Parameters<typeof vegaLite.compile>[0]).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
