import { FewShotMethod, headSize, need } from '../method';

/** A 1x1x1 convolution (the head alone) on the frozen last-decoder features. */
export const linearProbe: FewShotMethod = {
  description: 'linear probe (1x1x1 conv) on frozen features',
  input: 'features',
  trains: true,
  head: 'recipe',
  create: () => ({ variables: new Map() }),
  restore: () => undefined,
  features: (inputs) => need(inputs.features, 'features'),
  parameterCount: headSize,
};
