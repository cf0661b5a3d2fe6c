/**
 * The public API of fseft. Notebooks and scripts import from here only.
 *
 * Layout convention: a `Volume` stores voxel (i, j, k) at data[i + nx * (j + ny * k)], shape
 * [nx, ny, nz] in NIfTI array order, with an affine to RAS+ millimetres (see lib/io/volume.ts).
 */

// The common path: load a model, adapt it, segment, evaluate (lib/api.ts).
export { load, evaluate, FoundationModel, AdaptedModel } from './api';
export type { AdaptRequest, LabelledCT, Segmentation, Evaluation } from './api';
export { Volume, valueRange, sameGrid } from './io/volume';
export type { VoxelArray, Shape3 } from './io/volume';
export type { Affine, Vec3 } from './io/affine';
export {
  affineSpacing,
  applyAffine,
  invertAffine,
  multiplyAffines,
  orientationCodes,
  parseOrientationCodes,
} from './io/affine';
export { readNifti, readNiftiInfo, readNiftiWithInfo, writeNifti } from './io/nifti';
export type { NiftiInfo, ReadNiftiOptions, WriteNiftiOptions } from './io/nifti';

export { orient, rotate90, flipAxes, applyAxisTransform, orientationTransform } from './transforms/axes';
export type { AxisTransform } from './transforms/axes';
export { resampleToSpacing, resampleOnGrid, spacingGrid, orientedSpacingGrid } from './transforms/resample';
export type { InterpolationMode } from './transforms/resample';
export { CT_WINDOW, scaleIntensityRange, randShiftIntensity } from './transforms/intensity';
export { foregroundBox, cropBox, spatialPad } from './transforms/crop';
export type { Box } from './transforms/crop';
export { randCropByPosNegLabel, randCropByClassBalance, randRotate90, randFlip } from './transforms/random';
export type { Patch, PosNegCropOptions } from './transforms/random';
export { gaussianSmooth } from './transforms/smooth';
export { compose } from './transforms/compose';
export type { Transform } from './transforms/compose';
export { preprocessCase } from './transforms/preprocess';
export type { PreprocessOptions, PreprocessedCase } from './transforms/preprocess';

export {
  TEMPLATE_CLASSES,
  TEMPLATE_SIZE,
  PAPER_ORGANS,
  templateClass,
  templateClassName,
  findTemplateClass,
  annotationVector,
} from './data/template';
export { openDataset, readCollection, readMsdDataset, readTotalSegmentator, readPairList, loadCase, datasetAnnotation } from './data/datasets';
export type { Dataset, CaseEntry, LoadedCase } from './data/datasets';
export { preprocessDatasets } from './data/batch';
export { generatePhantom, institutionGrid, INSTITUTIONS, institutionByName } from './data/synth/phantom';
export type { Institution, Phantom } from './data/synth/phantom';
export { writeSynthDataset, writeSynthCollection, SYNTH_COLLECTION, SYNTH_ORGANS, SYNTHETIC_NOTICE } from './data/synth/synth-datasets';

export { Rng, seedFrom } from './util/random';
export { FseftError } from './util/errors';
export { ProgressBar } from './util/progress';
export { encodePngRgb } from './viz/png';

// Networks and compute backends
export { initBackend, currentBackend, switchBackend, BACKEND_ORDER } from './backend/backend';
export type { BackendName, BackendChoice } from './backend/backend';
export { SwinUNETR, swinUnetrConfig, swinUnetrParameterSpecs, DEFAULT_SWIN_UNETR } from './networks/swin-unetr';
export type { SwinUNETRConfig, SwinUNETROutput, ForwardOptions } from './networks/swin-unetr';
export { conv3dSame, layerNorm, instanceNorm, gelu, linear } from './networks/ops';
export { importTorchCheckpoint, inferSwinUnetrConfig, canonicalKey } from './networks/import-torch';
export type { ImportReport } from './networks/import-torch';
export { saveModel, loadModel, modelFromStateDict, stateDictOf } from './networks/model-io';
export type { ModelManifest, ModelProvenance } from './networks/model-io';
export { readTorchCheckpoint } from './io/torch-checkpoint';
export { readNpy, writeNpy } from './io/npy';
export { readSafetensors, writeSafetensors } from './io/safetensors';
export type { HostTensor } from './io/host-tensor';
export { AdamW } from './training/adamw';

// Metrics
export { dice, maskOf } from './metrics/overlap';
export { stratifiedBootstrapMean } from './metrics/bootstrap';
export type { MeanInterval, BootstrapOptions } from './metrics/bootstrap';
export { connectedComponents, largestConnectedComponent } from './metrics/components';
export { hausdorff95, surfaceDice, surfaceVoxels, squaredDistanceTransform } from './metrics/distance';

// Losses and schedules
export { diceLossPerChannel, bcePerChannel, partialLabelLoss } from './losses/segmentation';
export type { PartialLabelLossOptions } from './losses/segmentation';
export { sizeConstraintLoss, referenceSizePenalty, SIZE_CONSTRAINT_FORMS } from './losses/size-constraint';
export type { SizeConstraintForm } from './losses/size-constraint';
export { warmupCosine } from './training/schedule';

// Few-shot engine: pretraining, adaptation, inference, experiments
export { pretrain, loadTrainingCases, DEFAULT_PRETRAIN } from './training/pretrain';
export type { PretrainOptions, TrainingCase, EpochRecord } from './training/pretrain';
export { adaptToOrgan, estimateTargetSize, sampleCropStarts, stepDiceLoss, DEFAULT_ADAPT, METHOD_LEARNING_RATES } from './training/adapt';
export { RECIPES, RECIPE_NAMES, recipeByName, recipesMarkdown } from './training/recipes';
export type { Recipe, RecipeName } from './training/recipes';
export type { AdaptOptions, AdaptResult, SupportVolume, StepRecord, TransductiveOptions } from './training/adapt';
export { runExperiment, readRecords, formatTable, formatIntervalTable } from './training/experiment';
export type { ExperimentPlan, ExperimentRecord, ExperimentContext } from './training/experiment';
export { Adapter, ADAPT_METHODS, METHOD_DESCRIPTIONS, parseMethod, zeroShotRow } from './adapters/adapters';
export type { AdaptMethod, HeadInit } from './adapters/adapters';
export { saveAdapter, loadAdapter } from './adapters/adapter-io';
export type { AdapterManifest } from './adapters/adapter-io';
export { backboneFeatures } from './inference/features';
export type { BackboneFeatures } from './inference/features';
export { slidingWindow, windowStarts, gaussianImportance } from './inference/sliding-window';
export { adapterProbabilities, probabilitiesToMask, probabilitiesToVolume } from './inference/segment';
export { prepareCase, predictCase, toInputGeometry, checkHounsfield } from './inference/predict';
export type { PreparedCase, PredictionResult } from './inference/predict';
export { volumeToGrid, volumeToTensor, gridChannelToVolumeData, cropGrid, poolGrid, labelToMultiHot } from './networks/volume-tensor';
export type { FeatureGrid } from './networks/volume-tensor';
export { modelFingerprint, resolveModelDir, modelPreprocessing, headChannelOf, PAPER_PREPROCESSING } from './networks/model-io';
export type { ModelPreprocessing } from './networks/model-io';
export { overlaySlice, overlaySliceLayers, tileImages, largestMaskSlice } from './viz/overlay';
export type { RgbImage, OverlayOptions, MaskLayer } from './viz/overlay';
export { sliceOverlaySpec, overlayGridSpec, labelledGridSpec, tiledSlicesPng, trainingCurvesSpec, validationCurvesSpec, diceBarsSpec, gammaCurveSpec, histogramSpec, renderSvg } from './viz/charts';
export type { VegaLiteSpec } from './viz/charts';
export { recordsFrame, summaryFrame, table1Frame, frameToCsv } from './viz/tables';
export { tensorMemory } from './backend/backend';
