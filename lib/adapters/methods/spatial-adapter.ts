import { unetResBlock } from '../../networks/unet-res-block';
import { FewShotMethod, headSize, need, trainableVariable, uniformWeights } from '../method';

/**
 * The paper's spatial adapter: a MONAI UnetResBlock(F, F) on the frozen last-decoder features (the
 * decoder's own block, unet-res-block.ts), then the head. Kernel 3; kernel 1 is the reference
 * code's "MLP" adapter of Fig. 2a.
 */
function spatialAdapter(kernel: 1 | 3, description: string): FewShotMethod {
  const size = (f: number) => kernel ** 3 * f * f;
  return {
    description,
    input: 'features',
    trains: true,
    head: 'recipe',
    create: ({ featureSize: f, rng }) => {
      const shape = [kernel, kernel, kernel, f, f];
      const conv1 = trainableVariable(uniformWeights(rng, size(f), kernel ** 3 * f), shape);
      const conv2 = trainableVariable(uniformWeights(rng, size(f), kernel ** 3 * f), shape);
      return { variables: new Map([['adapter.conv1', conv1], ['adapter.conv2', conv2]]) };
    },
    restore: () => undefined,
    features: (inputs, param) => unetResBlock(need(inputs.features, 'features'), { conv1: param('adapter.conv1'), conv2: param('adapter.conv2') }, kernel),
    parameterCount: (backbone) => 2 * size(backbone.config.featureSize) + headSize(backbone),
  };
}

export const adapter = spatialAdapter(3, "spatial adapter: MONAI UnetResBlock(F, F, kernel 3) + 1x1x1 head (the paper's)");
export const adapterK1 = spatialAdapter(1, "the same UnetResBlock with kernel 1 + head: the 'MLP' adapter of Fig. 2a in the reference code");

