import { Rng } from '../util/random';

/** A mean with its percentile bootstrap interval. */
export interface MeanInterval {
  mean: number;
  low: number;
  high: number;
  /** Units behind the mean (all strata together). */
  n: number;
}

export interface BootstrapOptions {
  /** Resamples (default 2000). */
  resamples?: number;
  /** Coverage of the interval (default 0.95). */
  level?: number;
  seed?: number;
}

/**
 * The mean over strata of each stratum's mean (e.g. the mean Dice over organs, each organ's Dice a
 * mean over its queries and folds) with a stratified percentile bootstrap interval: every resample
 * redraws each stratum's units with replacement, within the stratum. One stratum gives the plain
 * bootstrap of a mean. Seeded: the same data and seed give the same interval.
 */
export function stratifiedBootstrapMean(strata: number[][], options: BootstrapOptions = {}): MeanInterval {
  const groups = strata.filter((values) => values.length > 0);
  if (groups.length === 0) return { mean: NaN, low: NaN, high: NaN, n: 0 };
  const resamples = options.resamples ?? 2000;
  const level = options.level ?? 0.95;
  const rng = new Rng(options.seed ?? 0);
  const meanOf = (values: ArrayLike<number>) => {
    let sum = 0;
    for (let i = 0; i < values.length; i++) sum += values[i];
    return sum / values.length;
  };
  const mean = meanOf(groups.map(meanOf));
  const draws = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    let total = 0;
    for (const values of groups) {
      let sum = 0;
      for (let i = 0; i < values.length; i++) sum += values[rng.int(values.length)];
      total += sum / values.length;
    }
    draws[r] = total / groups.length;
  }
  draws.sort();
  const tail = (1 - level) / 2;
  const at = (q: number) => draws[Math.min(resamples - 1, Math.max(0, Math.round(q * (resamples - 1))))];
  return { mean, low: at(tail), high: at(1 - tail), n: groups.reduce((s, g) => s + g.length, 0) };
}
