import { Rng } from '../util/random';

/** One step of a sample pipeline: deterministic steps ignore `rng`, random ones draw from it. */
export type Transform<S> = (sample: S, rng: Rng) => S;

/**
 * MONAI `Compose`: applies the steps in order, each random step drawing from its own stream
 * forked from `rng`, so adding a step never changes the random choices of the others.
 */
export function compose<S>(...steps: Array<Transform<S>>): Transform<S> {
  return (sample, rng) => {
    const streams = steps.map((_, i) => rng.fork(`step-${i}`));
    return steps.reduce((current, step, i) => step(current, streams[i]), sample);
  };
}
