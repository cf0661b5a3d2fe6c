import { HostTensor } from '../io/host-tensor';
import { TorchCheckpoint, readTorchCheckpoint } from '../io/torch-checkpoint';
import { FseftError } from '../util/errors';
import { ModelProvenance, modelFromStateDict } from './model-io';
import { SwinUNETR, SwinUNETRConfig, swinUnetrBufferNames, swinUnetrConfig, swinUnetrParameterSpecs } from './swin-unetr';

/**
 * Key spellings of public SwinUNETR checkpoints mapped onto MONAI's: DDP `module.` and CLIP-driven
 * universal model `backbone.` prefixes, `swin_vit`/`swinVit` for `swinViT`, the self-supervised
 * encoder's bare `patch_embed.`/`layersN.` keys and its `mlp.fc1/fc2` names.
 */
export function canonicalKey(key: string): string {
  let k = key;
  for (;;) {
    const stripped = k.replace(/^(module|backbone)\./, '');
    if (stripped === k) break;
    k = stripped;
  }
  k = k.replace(/^(swin_vit|swinVit)\./, 'swinViT.');
  k = k.replace(/\.mlp\.fc1\./, '.mlp.linear1.').replace(/\.mlp\.fc2\./, '.mlp.linear2.');
  if (/^(patch_embed|layers[1-4])\./.test(k)) k = `swinViT.${k}`;
  return k;
}

export interface ImportReport {
  checkpoint: Pick<TorchCheckpoint, 'format' | 'wrapperKey' | 'otherEntries'>;
  config: SwinUNETRConfig;
  loaded: string[];
  renamed: Array<[string, string]>;
  /** Parameters of the model the checkpoint does not provide (left at their seeded initialisation). */
  missing: string[];
  /** Checkpoint tensors the model has no place for. */
  unexpected: string[];
  /** Only the Swin encoder was provided (self-supervised weights). */
  encoderOnly: boolean;
}

/**
 * The architecture a state dict implies: feature size and input channels from the patch
 * embedding, output channels from the head, depths and heads from the blocks. Explicit options win.
 */
export function inferSwinUnetrConfig(tensors: Map<string, HostTensor>, overrides: Partial<SwinUNETRConfig> = {}): SwinUNETRConfig {
  const inferred: Partial<SwinUNETRConfig> = {};
  const embed = tensors.get('swinViT.patch_embed.proj.weight');
  if (embed) {
    inferred.featureSize = embed.shape[0];
    inferred.inChannels = embed.shape[1];
  }
  const head = tensors.get('out.conv.conv.weight');
  if (head) inferred.outChannels = head.shape[0];
  const depths = [1, 2, 3, 4].map((stage) => {
    const blocks = new Set<number>();
    for (const key of tensors.keys()) {
      const match = new RegExp(`^swinViT\\.layers${stage}\\.0\\.blocks\\.(\\d+)\\.`).exec(key);
      if (match) blocks.add(Number(match[1]));
    }
    return blocks.size;
  });
  if (depths.every((d) => d > 0)) inferred.depths = depths;
  const heads = [1, 2, 3, 4].map((stage) => tensors.get(`swinViT.layers${stage}.0.blocks.0.attn.relative_position_bias_table`)?.shape[1]);
  if (heads.every((h) => h !== undefined)) inferred.numHeads = heads as number[];
  const table = tensors.get('swinViT.layers1.0.blocks.0.attn.relative_position_bias_table');
  if (table) inferred.windowSize = Math.round((Math.cbrt(table.shape[0]) + 1) / 2);
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  return swinUnetrConfig({ ...inferred, ...defined });
}

/** Reads a PyTorch checkpoint into a SwinUNETR, reporting loaded, renamed, missing and unexpected keys. */
export function importTorchCheckpoint(
  file: string,
  { overrides = {}, strict = false, seed = 0 }: { overrides?: Partial<SwinUNETRConfig>; strict?: boolean; seed?: number } = {},
): { model: SwinUNETR; report: ImportReport; provenance: ModelProvenance } {
  const checkpoint = readTorchCheckpoint(file);
  const renamed: Array<[string, string]> = [];
  const tensors = new Map<string, HostTensor>();
  for (const [key, tensor] of checkpoint.tensors) {
    const canonical = canonicalKey(key);
    if (canonical !== key) renamed.push([key, canonical]);
    tensors.set(canonical, tensor);
  }
  let config: SwinUNETRConfig;
  try {
    config = inferSwinUnetrConfig(tensors, overrides);
  } catch (error) {
    throw error instanceof FseftError ? new FseftError(`not a SwinUNETR the kit can build: ${error.message} (inferred from its tensors or given as an option)`, file) : error;
  }
  const specs = swinUnetrParameterSpecs(config);
  const known = new Set([...specs.map((s) => s.name), ...swinUnetrBufferNames(config)]);
  const missing = specs.filter((s) => !tensors.has(s.name)).map((s) => s.name);
  const unexpected = [...tensors.keys()].filter((k) => !known.has(k));
  const loaded = specs.filter((s) => tensors.has(s.name)).map((s) => s.name);
  if (loaded.length === 0) {
    throw new FseftError(`no tensor of the checkpoint matches a SwinUNETR parameter (first keys: ${[...checkpoint.tensors.keys()].slice(0, 5).join(', ')})`, file);
  }
  const encoderOnly = missing.length > 0 && missing.every((k) => !k.startsWith('swinViT.')) && loaded.every((k) => k.startsWith('swinViT.'));
  if (strict && (missing.length > 0 || unexpected.length > 0)) {
    throw new FseftError(
      `--strict: ${missing.length} missing key(s) [${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', ...' : ''}] and ` +
        `${unexpected.length} unexpected key(s) [${unexpected.slice(0, 8).join(', ')}${unexpected.length > 8 ? ', ...' : ''}]`,
      file,
    );
  }
  let model: SwinUNETR;
  try {
    model = modelFromStateDict(config, tensors, seed);
  } catch (error) {
    throw error instanceof FseftError ? new FseftError(`${error.message}; pass --feature-size/--out-channels/... if the architecture differs`, file) : error;
  }
  const report: ImportReport = {
    checkpoint: { format: checkpoint.format, wrapperKey: checkpoint.wrapperKey, otherEntries: checkpoint.otherEntries },
    config,
    loaded,
    renamed,
    missing,
    unexpected,
    encoderOnly,
  };
  const provenance: ModelProvenance = {
    createdAt: new Date().toISOString(),
    origin: 'import-torch',
    source: file,
    sourceFormat: `torch.save ${checkpoint.format}`,
    wrapperKey: checkpoint.wrapperKey,
    loadedKeys: loaded.length,
    renamedKeys: renamed.slice(0, 20),
    missingKeys: missing,
    unexpectedKeys: unexpected,
    encoderOnly,
    seed: missing.length > 0 ? seed : undefined,
  };
  return { model, report, provenance };
}
