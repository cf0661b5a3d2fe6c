/** Pretraining, few-shot adaptation, recipes, experiments and validation. */
export { AdamW } from './adamw';
export { warmupCosine } from './schedule';
export { pretrain, loadTrainingCases, DEFAULT_PRETRAIN } from './pretrain';
export type { PretrainOptions, TrainingCase, EpochRecord } from './pretrain';
export { PRETRAIN_RECIPES, PRETRAIN_RECIPE_NAMES, pretrainRecipeByName } from './pretrain-recipes';
export type { PretrainRecipe, PretrainRecipeName } from './pretrain-recipes';
export { validationDice, headProbabilities, classMasks, splitValidation } from './validation';
export type { ValidationCase, ValidationResult } from './validation';
export { adaptToOrgan, estimateTargetSize, sampleCropStarts, stepDiceLoss, DEFAULT_ADAPT, METHOD_LEARNING_RATES } from './adapt';
export type { AdaptOptions, AdaptResult, SupportVolume, StepRecord, TransductiveOptions } from './adapt';
export { RECIPES, RECIPE_NAMES, recipeByName, recipesMarkdown } from './recipes';
export type { Recipe, RecipeName } from './recipes';
export { runExperiment, readRecords, formatTable, formatIntervalTable } from './experiment';
export type { ExperimentPlan, ExperimentRecord, ExperimentContext } from './experiment';
