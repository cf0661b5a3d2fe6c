/** Datasets (MSD, TotalSegmentator, pair lists, collections), the 29-class template and the synthetic phantoms. */
export { TEMPLATE_CLASSES, TEMPLATE_SIZE, PAPER_ORGANS, templateClass, templateClassName, findTemplateClass, annotationVector } from './template';
export { openDataset, readCollection, readMsdDataset, readTotalSegmentator, readPairList, loadCase, datasetAnnotation } from './datasets';
export type { Dataset, CaseEntry, LoadedCase } from './datasets';
export { preprocessDatasets } from './batch';
export { splitLeftRight, unsidedPair } from './left-right';
export { generatePhantom, institutionGrid, INSTITUTIONS, institutionByName } from './synth/phantom';
export type { Institution, Phantom } from './synth/phantom';
export { writeSynthDataset, writeSynthCollection, SYNTH_COLLECTION, SYNTH_ORGANS, SYNTHETIC_NOTICE } from './synth/synth-datasets';
