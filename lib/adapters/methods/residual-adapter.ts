import * as tf from '@tensorflow/tfjs-core';
import { conv3dSame, linear } from '../../networks/ops';
import { FewShotMethod, headSize, need, trainableVariable, uniformWeights } from '../method';

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
    create: ({ featureSize: f, rng }) => {
      const shape = [kernel, kernel, kernel, f, f];
      const conv1 = trainableVariable(uniformWeights(rng, size(f), kernel ** 3 * f), shape);
      const conv2 = trainableVariable(new Float32Array(size(f)), shape);
      return { variables: new Map([['adapter.conv1', conv1], ['adapter.conv2', conv2]]) };
    },
    restore: () => undefined,
    features: (inputs, param) => {
      const x = need(inputs.features, 'features');
      const f = x.shape[4];
      const conv = (t: tf.Tensor, w: tf.Tensor) => (kernel === 3 ? conv3dSame(t as tf.Tensor5D, w as tf.Tensor5D) : linear(t, tf.reshape(w, [f, f]) as tf.Tensor2D));
      const hidden = tf.relu(conv(x, param('adapter.conv1')));
      return tf.add(x, conv(hidden, param('adapter.conv2'))) as tf.Tensor5D;
    },
    parameterCount: (backbone) => 2 * size(backbone.config.featureSize) + headSize(backbone),
  };
}

export const residualAdapter3 = residualAdapter(3, 'x + conv3(ReLU(conv3(x))), second conv zero-initialised, + head');
export const mlpAdapter = residualAdapter(1, "x + conv1(ReLU(conv1(x))), second conv zero-initialised, + head: the later code's residual MLP adapter");
