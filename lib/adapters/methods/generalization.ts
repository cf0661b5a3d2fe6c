import { FewShotMethod, headSize, need } from '../method';

/** The foundation model's own head row for the organ: nothing is trained. */
export const generalization: FewShotMethod = {
  description: 'no training: the pretrained head channel of the organ',
  input: 'features',
  trains: false,
  head: 'recipe',
  create: () => ({ variables: new Map() }),
  restore: () => undefined,
  features: (inputs) => need(inputs.features, 'features'),
  parameterCount: headSize,
};
