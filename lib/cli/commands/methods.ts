import { load } from '../../api';
import { ADAPT_METHODS, METHODS } from '../../adapters/registry';
import { Options } from '../args';

export const METHODS_HELP = `fseft methods [--model <dir|default>] [--json]
  Lists every few-shot method of the registry (lib/adapters/registry.ts) with what it reads, where
  its head starts and its trainable parameter count for that model, without training anything.`;

export async function methodsCommand(options: Options): Promise<void> {
  const modelName = options.string('model') ?? 'default';
  const json = options.flag('json');
  const backend = options.string('backend');
  options.rejectUnknown();
  const model = await load(modelName, { backend });
  try {
    const rows = ADAPT_METHODS.map((name) => {
      const method = METHODS[name];
      return { method: name, input: method.input, trains: method.trains, head: method.head === 'random' ? 'random' : 'recipe', trainableParameters: method.trains ? method.parameterCount(model.network) : 0, description: method.description };
    });
    if (json) {
      console.log(JSON.stringify({ model: model.dir, featureSize: model.network.config.featureSize, methods: rows }, null, 2));
      return;
    }
    console.log(`${model.dir}: SwinUNETR F = ${model.network.config.featureSize}, ${model.network.parameterCount.toLocaleString('en-US')} parameters`);
    const width = Math.max(...rows.map((r) => r.method.length));
    for (const r of rows) console.log(`  ${r.method.padEnd(width)}  ${r.input.padEnd(8)}  ${r.trainableParameters.toLocaleString('en-US').padStart(12)} trainable  ${r.description}`);
  } finally {
    model.dispose();
  }
}
