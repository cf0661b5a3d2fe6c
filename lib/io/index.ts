/** Reading and writing volumes, tensors and checkpoints: NIfTI, NumPy, safetensors, PyTorch zips. */
export { Volume, valueRange, sameGrid } from './volume';
export type { VoxelArray, Shape3 } from './volume';
export type { Affine, Vec3 } from './affine';
export { affineSpacing, applyAffine, invertAffine, multiplyAffines, orientationCodes, parseOrientationCodes } from './affine';
export { readNifti, readNiftiInfo, readNiftiWithInfo, writeNifti } from './nifti';
export type { NiftiInfo, ReadNiftiOptions, WriteNiftiOptions } from './nifti';
export { parseCompression, niftiExtension, DEFAULT_COMPRESSION } from './gzip';
export type { Compression } from './gzip';
export { readTorchCheckpoint } from './torch-checkpoint';
export { readNpy, writeNpy } from './npy';
export { readSafetensors, writeSafetensors } from './safetensors';
export type { HostTensor } from './host-tensor';
