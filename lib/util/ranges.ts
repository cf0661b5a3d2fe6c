import { FseftError } from './errors';

/** Bounds of a number: at least `min`, at most `max`, above `above`, below `below`. */
export interface Range {
  min?: number;
  max?: number;
  above?: number;
  below?: number;
}

/** Throws an FseftError naming `what` when `value` lies outside `range`. */
export function checkRange(what: string, value: number, range: Range): void {
  const { min, max, above, below } = range;
  const ok = (min === undefined || value >= min) && (max === undefined || value <= max) && (above === undefined || value > above) && (below === undefined || value < below);
  if (ok) return;
  const bounds = [
    min !== undefined ? `at least ${min}` : undefined,
    above !== undefined ? `above ${above}` : undefined,
    max !== undefined ? `at most ${max}` : undefined,
    below !== undefined ? `below ${below}` : undefined,
  ].filter((b) => b !== undefined);
  throw new FseftError(`${what} must be ${bounds.join(' and ')}, got ${value}`);
}
