/** Vega-lite charts, slice overlays, PNG encoding and danfojs tables. */
export { overlaySlice, overlaySliceLayers, tileImages, largestMaskSlice } from './overlay';
export type { RgbImage, OverlayOptions, MaskLayer } from './overlay';
export { sliceOverlaySpec, overlayGridSpec, labelledGridSpec, tiledSlicesPng, trainingCurvesSpec, validationCurvesSpec, diceBarsSpec, gammaCurveSpec, histogramSpec, renderSvg } from './charts';
export type { VegaLiteSpec } from './charts';
export { recordsFrame, summaryFrame, table1Frame, frameToCsv, frameHtml } from './tables';
export { encodePngRgb } from './png';
