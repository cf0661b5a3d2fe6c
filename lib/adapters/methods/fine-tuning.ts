import * as tf from '@tensorflow/tfjs-core';
import { variableOf } from '../../networks/ops';
import { CheckpointMode, SwinUNETR } from '../../networks/swin-unetr';
import { FseftError } from '../../util/errors';
import { FewShotMethod, headSize, need, specParameters } from '../method';

const NETWORK = 'network.';

/** A network whose parameters are the adapter's `network.*` variables (ft, scratch: saved whole). */
function networkOf(variables: Map<string, tf.Variable>, backbone: SwinUNETR): SwinUNETR {
  const params = new Map([...variables].filter(([name]) => name.startsWith(NETWORK)).map(([name, v]) => [name.slice(NETWORK.length), v]));
  return new SwinUNETR(backbone.config, params);
}

function exposed(network: SwinUNETR): Map<string, tf.Variable> {
  return new Map([...network.params].map(([name, p]) => [`${NETWORK}${name}`, p as tf.Variable]));
}

/** The whole network's last-decoder features of an image crop. */
function networkFeatures(network: SwinUNETR | undefined, image: tf.Tensor5D | undefined, checkpoint: CheckpointMode | undefined): tf.Tensor5D {
  const out = network!.forward(need(image, 'image'), { checkpoint });
  out.logits.dispose();
  return out.features;
}

/** FT: a trainable copy of the whole pretrained network, with a one-channel head. */
export const fineTune: FewShotMethod = {
  description: 'fine-tune the whole network',
  input: 'image',
  trains: true,
  head: 'recipe',
  create: ({ backbone }) => {
    const network = new SwinUNETR(backbone.config, new Map([...backbone.params].map(([name, p]) => [name, variableOf(p.clone(), true)])));
    return { variables: exposed(network), network };
  },
  restore: networkOf,
  features: (inputs, _param, network, options) => networkFeatures(network, inputs.image, options.checkpoint),
  // Every parameter of the network is trained, its 29-channel head included (unused by the output).
  parameterCount: (config) => specParameters(config) + headSize(config),
};

/**
 * Copies the Swin encoder of `source` into `target` (same shapes required), e.g. a self-supervised
 * encoder imported with `fseft import-torch`.
 */
function copyEncoder(source: SwinUNETR, target: SwinUNETR): void {
  let copied = 0;
  for (const [name, parameter] of target.params) {
    if (!name.startsWith('swinViT.')) continue;
    const value = source.params.get(name);
    if (!value) throw new FseftError(`the encoder to start Scratch from has no ${name}`);
    if (value.shape.join(',') !== parameter.shape.join(',')) throw new FseftError(`the encoder to start Scratch from has ${name} of shape [${value.shape}], the network needs [${parameter.shape}]`);
    (parameter as tf.Variable).assign(value);
    copied++;
  }
  if (copied === 0) throw new FseftError('the network has no Swin encoder parameters to start from');
}

/** Scratch: a new network (random, or from a self-supervised Swin encoder) trained on the supports alone. */
export const scratch: FewShotMethod = {
  description: 'the whole network from random initialisation',
  input: 'image',
  trains: true,
  head: 'random',
  create: ({ backbone, seed, scratchEncoder }) => {
    const network = SwinUNETR.create(backbone.config, seed);
    if (scratchEncoder) {
      try {
        copyEncoder(scratchEncoder, network);
      } catch (error) {
        network.dispose();
        throw error;
      }
    }
    return { variables: exposed(network), network };
  },
  restore: networkOf,
  features: (inputs, _param, network, options) => networkFeatures(network, inputs.image, options.checkpoint),
  parameterCount: (config) => specParameters(config) + headSize(config),
};

/** FT-Last: the last decoder block (decoder1) trained on its cached inputs, with a one-channel head. */
export const fineTuneLast: FewShotMethod = {
  description: 'fine-tune the last decoder block and a 1-channel head',
  input: 'decoder',
  trains: true,
  head: 'recipe',
  create: ({ backbone }) => {
    const variables = new Map<string, tf.Variable>();
    for (const spec of backbone.specs.filter((s) => s.name.startsWith('decoder1.'))) variables.set(spec.name, variableOf(backbone.p(spec.name).clone(), true));
    return { variables, network: backbone };
  },
  restore: (_variables, backbone) => backbone,
  features: (inputs, param, network, options) => network!.lastDecoder(need(inputs.dec0, 'dec0'), need(inputs.enc0, 'enc0'), param, options.checkpoint === 'fine'),
  parameterCount: (config) => specParameters(config, (name) => name.startsWith('decoder1.')) + headSize(config),
};
