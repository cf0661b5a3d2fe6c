/** The control block a row-pool helper thread waits on (Int32 slots). */
export const STATE = 0;
/** Which module: an index into POOL_MODULES. */
export const MODULE = 1;
/** The convolution module's input channels, fused multiply-add and Winograd flags (else unused). */
export const CIN = 2;
export const FUSED = 3;
export const WINOGRAD = 4;
/** Which of the module's functions: an index into POOL_FUNCTIONS. */
export const FUNCTION = 5;
export const ARGUMENT_COUNT = 6;
export const ARGUMENTS = 7;
export const CONTROL_INTS = 20;
export const JOB = { idle: 0, posted: 1, done: 2, failed: 3, exit: 4 } as const;
export const POOL_MODULES = ['conv', 'products'] as const;
export type PoolModule = (typeof POOL_MODULES)[number];
/** The functions a helper runs (integer arguments only). */
export const POOL_FUNCTIONS = ['convolveRows', 'winogradInput', 'winogradOutput', 'filterGradientRows', 'smallRowsProduct'] as const;
export type PoolFunction = (typeof POOL_FUNCTIONS)[number];
