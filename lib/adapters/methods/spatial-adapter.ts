import { unetResBlock } from '../../networks/unet-res-block';
import { FewShotMethod, adapterConvolutions, headSize, need } from '../method';

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
    create: ({ featureSize, rng }) => ({ variables: adapterConvolutions(rng, featureSize, kernel, 'drawn') }),
    restore: () => undefined,
    features: (inputs, param) => unetResBlock(need(inputs.features, 'features'), { conv1: param('adapter.conv1'), conv2: param('adapter.conv2') }, kernel),
    parameterCount: (config) => 2 * size(config.featureSize) + headSize(config),
  };
}

export const adapter = spatialAdapter(3, "spatial adapter: MONAI UnetResBlock(F, F, kernel 3) + 1x1x1 head (the paper's)");
export const adapterK1 = spatialAdapter(1, "the same UnetResBlock with kernel 1 + head: the 'MLP' adapter of Fig. 2a in the reference code");

