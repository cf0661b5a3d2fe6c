/** SwinUNETR (MONAI's architecture), its ops, model directories and the PyTorch checkpoint importer. */
export { SwinUNETR, swinUnetrConfig, swinUnetrParameterSpecs, DEFAULT_SWIN_UNETR } from './swin-unetr';
export type { SwinUNETRConfig, SwinUNETROutput, ForwardOptions } from './swin-unetr';
export { conv3dSame, layerNorm, instanceNorm, gelu, linear } from './ops';
export { importTorchCheckpoint, inferSwinUnetrConfig, canonicalKey } from './import-torch';
export type { ImportReport } from './import-torch';
export { saveModel, loadModel, modelFromStateDict, stateDictOf, modelFingerprint, resolveModelDir, modelPreprocessing, headChannelOf, PAPER_PREPROCESSING } from './model-io';
export type { ModelManifest, ModelProvenance, ModelPreprocessing } from './model-io';
export { volumeToGrid, volumeToTensor, gridChannelToVolumeData, cropGrid, poolGrid, labelToMultiHot } from './volume-tensor';
export type { FeatureGrid } from './volume-tensor';
