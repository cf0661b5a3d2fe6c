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
