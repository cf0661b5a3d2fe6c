/** The paper's preprocessing chain and the training augmentations (MONAI's transforms, same semantics). */
export { orient, rotate90, flipAxes, applyAxisTransform, orientationTransform } from './axes';
export type { AxisTransform } from './axes';
export { resampleToSpacing, resampleOnGrid, spacingGrid, orientedSpacingGrid } from './resample';
export type { InterpolationMode } from './resample';
export { CT_WINDOW, scaleIntensityRange, randShiftIntensity } from './intensity';
export { foregroundBox, cropBox, spatialPad } from './crop';
export type { Box } from './crop';
export { randCropByPosNegLabel, randCropByClassBalance, randRotate90, randFlip } from './random';
export type { Patch, PosNegCropOptions } from './random';
export { randZoom, zoomKeepSize } from './zoom';
export type { RandZoomOptions, ZoomMode } from './zoom';
export { gaussianSmooth } from './smooth';
export { compose } from './compose';
export type { Transform } from './compose';
export { preprocessCase } from './preprocess';
export type { PreprocessOptions, PreprocessedCase } from './preprocess';
