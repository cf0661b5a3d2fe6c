/** Backbone features, sliding-window inference and segmentation back on the input CT's grid. */
export { backboneFeatures } from './features';
export type { BackboneFeatures } from './features';
export { slidingWindow, windowStarts, gaussianImportance } from './sliding-window';
export { adapterProbabilities, probabilitiesToMask, probabilitiesToVolume } from './segment';
export { prepareCase, predictCase, toInputGeometry, checkHounsfield } from './predict';
export type { PreparedCase, PredictionResult } from './predict';
