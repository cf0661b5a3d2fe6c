import type { DataFrame } from 'danfojs-node';
import type { ExperimentRecord } from '../training/experiment';

async function danfo(): Promise<typeof import('danfojs-node')> {
  // Loaded on first use: danfojs pulls in TensorFlow.js's layers and data packages.
  return import('danfojs-node');
}

/** One row per experiment record (method, organ, k, fold, seed, gamma, lambda, Dice, parameters, seconds). */
export async function recordsFrame(records: ExperimentRecord[]): Promise<DataFrame> {
  const { DataFrame } = await danfo();
  return new DataFrame(
    records.map((r) => ({
      method: r.gamma !== undefined ? `${r.method} g=${r.gamma} l=${r.lambda}` : r.method,
      organ: r.organ,
      k: r.k,
      fold: r.fold,
      seed: r.seed,
      dice: r.dice,
      parameters: r.trainableParameters,
      seconds: r.trainSeconds,
    })),
  );
}

/** Mean and standard deviation of Dice over folds and seeds, per method, organ and k. */
export async function summaryFrame(records: ExperimentRecord[]): Promise<DataFrame> {
  const frame = await recordsFrame(records);
  return frame.groupby(['method', 'organ', 'k']).agg({ dice: ['mean', 'std', 'count'] });
}

/** The Table-1 layout: rows method (per k), one column per organ and the mean, Dice averaged over folds and seeds. */
export async function table1Frame(records: ExperimentRecord[]): Promise<DataFrame> {
  const { DataFrame } = await danfo();
  const organs = [...new Set(records.map((r) => r.organ))];
  const rows: Array<Record<string, string | number>> = [];
  const label = (r: ExperimentRecord) => (r.gamma !== undefined ? `${r.method} g=${r.gamma}` : r.method);
  for (const k of [...new Set(records.map((r) => r.k))].sort((a, b) => b - a)) {
    const mine = records.filter((r) => r.k === k);
    for (const method of [...new Set(mine.map(label))]) {
      const row: Record<string, string | number> = { k, method };
      const means = organs.map((organ) => {
        const values = mine.filter((r) => label(r) === method && r.organ === organ).map((r) => r.dice);
        return values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN;
      });
      organs.forEach((organ, i) => (row[organ] = Number(means[i].toFixed(3))));
      const present = means.filter(Number.isFinite);
      row.mean = Number((present.reduce((a, b) => a + b, 0) / present.length).toFixed(3));
      rows.push(row);
    }
  }
  return new DataFrame(rows);
}

/** A data frame as CSV text. */
export async function frameToCsv(frame: DataFrame): Promise<string> {
  const { toCSV } = await danfo();
  return toCSV(frame) as string;
}

/**
 * A data frame as an HTML table, as pandas shows one in Jupyter: a header row, numbers rounded to
 * `digits` decimals (whole numbers as they are), missing values as NaN, text escaped.
 */
export function frameHtml(frame: DataFrame, options: { digits?: number; caption?: string } = {}): string {
  const digits = options.digits ?? 3;
  const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
  const cell = (value: unknown): string => {
    if (typeof value === 'number') return Number.isNaN(value) ? 'NaN' : Number.isInteger(value) ? String(value) : value.toFixed(digits);
    if (value === null || value === undefined) return 'NaN';
    return escape(String(value));
  };
  const rows = frame.values as unknown[][];
  const columns = frame.columns as string[];
  const numeric = columns.map((_, c) => rows.length > 0 && rows.every((row) => typeof row[c] === 'number' || row[c] === null || row[c] === undefined));
  const align = (c: number) => (numeric[c] ? ' style="text-align: right"' : ' style="text-align: left"');
  return [
    '<table class="dataframe" style="border-collapse: collapse; font-variant-numeric: tabular-nums">',
    options.caption ? `<caption style="caption-side: top; text-align: left">${escape(options.caption)}</caption>` : '',
    `<thead><tr>${columns.map((name, c) => `<th${align(c)}>${escape(name)}</th>`).join('')}</tr></thead>`,
    `<tbody>${rows.map((row) => `<tr>${row.map((value, c) => `<td${align(c)}>${cell(value)}</td>`).join('')}</tr>`).join('')}</tbody>`,
    '</table>',
  ].join('');
}
