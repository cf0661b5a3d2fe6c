/** The control block a row-pool helper thread waits on (Int32 slots). */
export const STATE = 0;
export const CIN = 1;
export const FUSED = 2;
/** 1 for the Winograd module (wasm-simd-conv.ts), 0 for the direct one. */
export const WINOGRAD = 3;
/** Which of the module's functions: an index into POOL_FUNCTIONS. */
export const FUNCTION = 4;
export const ARGUMENT_COUNT = 5;
export const ARGUMENTS = 6;
export const CONTROL_INTS = 16;
export const JOB = { idle: 0, posted: 1, done: 2, failed: 3, exit: 4 } as const;
/** The functions a helper runs, each taking its own arguments and then a range of rows [row0, row1). */
export const POOL_FUNCTIONS = ['convolveRows', 'winogradInput', 'winogradOutput'] as const;
export type PoolFunction = (typeof POOL_FUNCTIONS)[number];
