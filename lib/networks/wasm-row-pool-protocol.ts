/** The control block a row-pool helper thread waits on (Int32 slots). */
export const STATE = 0;
/** Which module: an index into POOL_MODULES. */
export const MODULE = 1;
/** The convolution module's input channels, fused multiply-add flag and Winograd tile (0: direct; else unused). */
export const CIN = 2;
export const FUSED = 3;
export const WINOGRAD = 4;
/** Which of the module's functions: an index into POOL_FUNCTIONS. */
export const FUNCTION = 5;
export const ARGUMENT_COUNT = 6;
/** Which arguments are float32 (bit k for argument k), sent as their bits. */
export const FLOATS = 7;
export const ARGUMENTS = 8;
export const CONTROL_INTS = 20;
export const JOB = { idle: 0, posted: 1, done: 2, failed: 3, exit: 4 } as const;
export const POOL_MODULES = ['conv', 'products', 'norm', 'activation'] as const;
export type PoolModule = (typeof POOL_MODULES)[number];
/** The functions a helper runs (integer arguments, and float32 ones marked in FLOATS). */
export const POOL_FUNCTIONS = [
  'convolveRows', 'winogradInput', 'winogradOutput', 'filterGradientRows', 'smallRowsProduct',
  'normStats', 'gradientStats', 'normalize', 'normGradient', 'leakyGradient', 'addLeaky', 'gelu', 'geluGradient',
] as const;
export type PoolFunction = (typeof POOL_FUNCTIONS)[number];

const bits = new Int32Array(1);
const float = new Float32Array(bits.buffer);

/** A float32's bits as an Int32 slot, and back. */
export function floatBits(value: number): number {
  float[0] = value;
  return bits[0];
}

export function floatFromBits(slot: number): number {
  bits[0] = slot;
  return float[0];
}
