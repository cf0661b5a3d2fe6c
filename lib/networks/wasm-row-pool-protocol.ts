/** The control block a row-pool helper thread waits on (Int32 slots). */
export const STATE = 0;
export const CIN = 1;
export const FUSED = 2;
export const ARGUMENTS = 3;
export const CONTROL_INTS = 16;
export const JOB = { idle: 0, posted: 1, done: 2, failed: 3, exit: 4 } as const;
