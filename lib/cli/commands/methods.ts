import { load } from '../../api';
import { ADAPT_METHODS, METHODS } from '../../adapters/registry';
import { SwinUNETRConfig, swinUnetrConfig } from '../../networks/swin-unetr';
import { specParameters } from '../../adapters/method';
import { FseftError } from '../../util/errors';
import { Options } from '../args';

export const METHODS_HELP = `fseft methods [--model <dir|default> | --feature-size <F>] [--json]
  Lists every few-shot method of the registry (lib/adapters/registry.ts) with what it reads, where
  its head starts and its trainable parameter count (the one-channel head included), without
  training or building anything. --feature-size counts for MONAI's SwinUNETR of that width
  (48: the paper's model) instead of a model directory.`;

export async function methodsCommand(options: Options): Promise<void> {
  const modelName = options.string('model');
  const featureSize = options.number('feature-size');
  const json = options.flag('json');
  const backend = options.string('backend');
  options.rejectUnknown();
  if (modelName !== undefined && featureSize !== undefined) throw new FseftError('give --model or --feature-size, not both');
  let source: string;
  let config: SwinUNETRConfig;
  if (featureSize !== undefined) {
    config = swinUnetrConfig({ featureSize });
    source = "MONAI's SwinUNETR configuration (no model)";
  } else {
    const model = await load(modelName ?? 'default', { backend });
    config = model.network.config;
    source = model.dir;
    model.dispose();
  }
  const rows = ADAPT_METHODS.map((name) => {
    const method = METHODS[name];
    return { method: name, input: method.input, trains: method.trains, head: method.head === 'random' ? 'random' : 'recipe', trainableParameters: method.trains ? method.parameterCount(config) : 0, description: method.description };
  });
  const networkParameters = specParameters(config);
  if (json) {
    console.log(JSON.stringify({ model: source, featureSize: config.featureSize, parameters: networkParameters, methods: rows }, null, 2));
    return;
  }
  console.log(`${source}: SwinUNETR F = ${config.featureSize}, ${networkParameters.toLocaleString('en-US')} parameters`);
  const width = Math.max(...rows.map((r) => r.method.length));
  for (const r of rows) console.log(`  ${r.method.padEnd(width)}  ${r.input.padEnd(8)}  ${r.trainableParameters.toLocaleString('en-US').padStart(12)} trainable  ${r.description}`);
}
