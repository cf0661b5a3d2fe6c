import * as tf from '@tensorflow/tfjs-core';
import { convolveSame } from '../../networks/unet-res-block';
import { FewShotMethod, adapterConvolutions, headSize, need } from '../method';

/**
 * x + W2 ReLU(W1 x) on the frozen features, W2 zero-initialised so that the untrained adapter is
 * the identity; kernel 3 (residual-adapter) or 1 (the later code's residual MLP adapter).
 */
function residualAdapter(kernel: 1 | 3, description: string): FewShotMethod {
  const size = (f: number) => kernel ** 3 * f * f;
  return {
    description,
    input: 'features',
    trains: true,
    head: 'recipe',
    create: ({ featureSize, rng }) => ({ variables: adapterConvolutions(rng, featureSize, kernel, 'zero') }),
    restore: () => undefined,
    features: (inputs, param) => {
      const x = need(inputs.features, 'features');
      const hidden = tf.relu(convolveSame(x, param('adapter.conv1'), kernel));
      return tf.add(x, convolveSame(hidden, param('adapter.conv2'), kernel)) as tf.Tensor5D;
    },
    parameterCount: (config) => 2 * size(config.featureSize) + headSize(config),
  };
}

export const residualAdapter3 = residualAdapter(3, 'x + conv3(ReLU(conv3(x))), second conv zero-initialised, + head');
export const mlpAdapter = residualAdapter(1, "x + conv1(ReLU(conv1(x))), second conv zero-initialised, + head: the later code's residual MLP adapter");
