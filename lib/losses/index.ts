/** Eq. 1 (masked partial-label Dice + BCE) and Eq. 2-3 (the transductive size constraint). */
export { diceLossPerChannel, bcePerChannel, partialLabelLoss } from './segmentation';
export type { PartialLabelLossOptions } from './segmentation';
export { sizeConstraintLoss, referenceSizePenalty, SIZE_CONSTRAINT_FORMS } from './size-constraint';
export type { SizeConstraintForm } from './size-constraint';
