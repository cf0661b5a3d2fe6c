import { initBackend } from '../../backend/backend';
import { importTorchCheckpoint } from '../../networks/import-torch';
import { saveModel } from '../../networks/model-io';
import { SwinUNETRConfig, swinUnetrConfig } from '../../networks/swin-unetr';
import { FseftError } from '../../util/errors';
import { Options } from '../args';

export const IMPORT_TORCH_HELP = `fseft import-torch <checkpoint.pt|.pth> --arch swinunetr --out <model dir> [options]
  Reads a PyTorch checkpoint (torch.save zip or legacy format) without executing it, unwraps
  state_dict/net/model, maps module./backbone./swinVit/fc1 spellings onto MONAI's names, and
  writes a model directory (config.json + weights.safetensors in PyTorch layout).
  The architecture is read from the checkpoint; options override it:
    --feature-size 48  --in-channels 1  --out-channels 29  --depths 2,2,2,2  --heads 3,6,12,24
    --window 7  --downsample merging|mergingv2  --no-normalize
  --strict   missing or unexpected keys are an error (default: listed, missing ones initialised
             with --seed; an encoder-only checkpoint loads the Swin encoder)`;

export async function importTorchCommand(options: Options): Promise<void> {
  const arch = options.string('arch') ?? 'swinunetr';
  const out = options.string('out');
  const strict = options.flag('strict');
  const seed = options.integer('seed', 0, { min: 0 })!;
  const overrides: Partial<SwinUNETRConfig> = {
    featureSize: options.integer('feature-size', undefined, { min: 12 }),
    inChannels: options.integer('in-channels', undefined, { min: 1 }),
    outChannels: options.integer('out-channels', undefined, { min: 1 }),
    depths: options.numberList('depths', [4]),
    numHeads: options.numberList('heads', [4]),
    windowSize: options.integer('window', undefined, { min: 1 }),
    downsample: options.string('downsample') as SwinUNETRConfig['downsample'] | undefined,
    normalize: options.string('normalize') === undefined ? undefined : options.flag('normalize'),
  };
  options.rejectUnknown({ positional: true });
  if (arch !== 'swinunetr') throw new FseftError(`unsupported --arch '${arch}' (supported: swinunetr)`);
  if (overrides.downsample && !['merging', 'mergingv2'].includes(overrides.downsample)) throw new FseftError('--downsample must be merging or mergingv2');
  const [file, ...extra] = options.positional;
  if (!file || !out) throw new FseftError(`give a checkpoint and --out\n${IMPORT_TORCH_HELP}`);
  // Explicit architecture options are checked before the checkpoint is read (they override what it implies).
  swinUnetrConfig(Object.fromEntries(Object.entries(overrides).filter(([, value]) => value !== undefined)));
  if (extra.length > 0) throw new FseftError(`one checkpoint at a time; unexpected argument${extra.length > 1 ? 's' : ''} ${extra.map((e) => `'${e}'`).join(' ')}`);
  await initBackend();
  const { model, report, provenance } = importTorchCheckpoint(file, { overrides, strict, seed });
  await saveModel(model, out, provenance);
  const c = report.config;
  console.log(`read ${file}: torch.save ${report.checkpoint.format} format${report.checkpoint.wrapperKey ? `, weights under '${report.checkpoint.wrapperKey}'` : ''}${report.checkpoint.otherEntries.length ? ` (also: ${report.checkpoint.otherEntries.join(', ')})` : ''}`);
  console.log(`architecture: SwinUNETR feature_size ${c.featureSize}, in ${c.inChannels}, out ${c.outChannels}, depths ${c.depths.join('-')}, heads ${c.numHeads.join('-')}, window ${c.windowSize}, ${model.parameterCount.toLocaleString('en-US')} parameters`);
  console.log(`loaded ${report.loaded.length} of ${model.specs.length} parameter tensors${report.renamed.length ? `; renamed ${report.renamed.length} keys (e.g. ${report.renamed[0][0]} -> ${report.renamed[0][1]})` : ''}`);
  if (report.encoderOnly) console.log(`encoder-only checkpoint: the Swin encoder is loaded; the ${report.missing.length} decoder/head tensors are freshly initialised (seed ${seed})`);
  else if (report.missing.length > 0) console.log(`missing (initialised with seed ${seed}): ${report.missing.join(', ')}`);
  if (report.unexpected.length > 0) console.log(`unexpected (ignored): ${report.unexpected.join(', ')}`);
  console.log(`wrote ${out}`);
}
