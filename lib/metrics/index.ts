/** Dice, distances, connected components and bootstrap intervals. */
export { dice, maskOf } from './overlap';
export { stratifiedBootstrapMean } from './bootstrap';
export type { MeanInterval, BootstrapOptions } from './bootstrap';
export { connectedComponents, largestConnectedComponent } from './components';
export { hausdorff95, surfaceDice, surfaceVoxels, squaredDistanceTransform } from './distance';
