/**
 * The public API of fseft. Notebooks and scripts import from here only.
 *
 * The common path (load a model, adapt it, segment, evaluate: lib/api.ts) sits at the top level;
 * everything else is reachable by area, one namespace per folder of lib/:
 *   fseft.io, fseft.transforms, fseft.data, fseft.networks, fseft.backend, fseft.losses,
 *   fseft.training, fseft.adapters, fseft.inference, fseft.metrics, fseft.viz, fseft.studies,
 *   fseft.util
 *
 * Layout convention: a `Volume` stores voxel (i, j, k) at data[i + nx * (j + ny * k)], shape
 * [nx, ny, nz] in NIfTI array order, with an affine to RAS+ millimetres (see lib/io/volume.ts).
 */

export { load, evaluate, FoundationModel, AdaptedModel } from './api';
export type { AdaptRequest, LabelledCT, Segmentation, SegmentOptions, Evaluation } from './api';
export { Volume } from './io/volume';
export { readNifti, writeNifti } from './io/nifti';
export { FseftError } from './util/errors';

export * as io from './io';
export * as transforms from './transforms';
export * as data from './data';
export * as networks from './networks';
export * as backend from './backend';
export * as losses from './losses';
export * as training from './training';
export * as adapters from './adapters';
export * as inference from './inference';
export * as metrics from './metrics';
export * as viz from './viz';
export * as studies from './studies';
export * as util from './util';
