/**
 * MONAI's WarmupCosineSchedule: linear warm-up from 0 to `base` over `warmupSteps`, then half a
 * cosine down to 0 at `totalSteps`. `step` counts from 0.
 */
export function warmupCosine(step: number, totalSteps: number, warmupSteps: number, base: number): number {
  if (step < warmupSteps) return (base * step) / Math.max(1, warmupSteps);
  const progress = (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
  return base * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * Math.min(1, progress))));
}
