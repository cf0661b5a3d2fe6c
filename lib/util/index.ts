/** Seeded randomness, errors that name their file, progress bars. */
export { Rng, seedFrom } from './random';
export { FseftError } from './errors';
export { ProgressBar } from './progress';
