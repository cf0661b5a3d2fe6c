import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readNpy, writeNpy } from '../lib/io/npy';
import { readSafetensors, writeSafetensors } from '../lib/io/safetensors';
import { readTorchCheckpoint } from '../lib/io/torch-checkpoint';
import { canonicalKey } from '../lib/networks/import-torch';
import { swinUnetrConfig, swinUnetrParameterSpecs } from '../lib/networks/swin-unetr';
import { FseftError } from '../lib/util/errors';
import { CLI, REPO_ROOT, tempDir } from './helpers';
import { TorchTensorSpec, torchZip, zip } from './torch-writer';

const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures');

function expectFixture(file: string, prefix = '') {
  const checkpoint = readTorchCheckpoint(path.join(FIXTURES, file));
  const get = (k: string) => {
    const t = checkpoint.tensors.get(prefix + k)!;
    return { shape: t.shape, values: Array.from(t.data) };
  };
  assert.deepEqual(get('a.weight'), { shape: [2, 3], values: [-1, -0.5, 0, 0.5, 1, 1.5] });
  assert.deepEqual(get('a.weight_t'), { shape: [3, 2], values: [-1, 0.5, -0.5, 1, 0, 1.5] }, 'strided views are gathered');
  assert.deepEqual(get('b.half'), { shape: [2], values: [-2, 0.25] }, 'float16 storage with an offset');
  assert.deepEqual(get('c.index'), { shape: [2, 2], values: [7, -3, 11, 4] }, 'int64 storage');
  return checkpoint;
}

test('torch.save zip checkpoints: strided views, offsets, half and int64 storages', () => {
  assert.equal(expectFixture('plain-state-dict.pt').format, 'zip');
});

test('checkpoints wrapped under state_dict with module. prefixes; other entries listed', () => {
  const checkpoint = expectFixture('wrapped-state-dict.pt', 'module.');
  assert.equal(checkpoint.wrapperKey, 'state_dict');
  assert.deepEqual(checkpoint.otherEntries.sort(), ['best_acc', 'epoch']);
});

test('legacy (pre-1.6) torch.save files', () => {
  assert.equal(expectFixture('legacy-state-dict.pt').format, 'legacy');
});

function writeTemp(name: string, bytes: Buffer): string {
  const file = path.join(tempDir(), name);
  fs.writeFileSync(file, bytes);
  return file;
}

function assertRejects(file: string, pattern: RegExp): void {
  assert.throws(() => readTorchCheckpoint(file), (error: unknown) => {
    assert.ok(error instanceof FseftError, String(error));
    assert.match(error.message, pattern);
    assert.ok(error.message.startsWith(file), 'names the file');
    return true;
  });
}

test('a hostile pickle is refused by name and never executed', () => {
  const marker = path.join(tempDir(), 'pwned');
  const command = `touch ${marker}`;
  const body = Buffer.concat([
    Buffer.from([0x80, 0x02]),
    Buffer.from('cos\nsystem\n', 'latin1'),
    Buffer.from([0x58]),
    (() => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(command.length);
      return b;
    })(),
    Buffer.from(command, 'latin1'),
    Buffer.from([0x85, 0x52, 0x2e]),
  ]);
  assertRejects(writeTemp('evil.pt', zip([['archive/data.pkl', body]])), /unsafe checkpoint: refusing to load global 'os\.system'/);
  assertRejects(writeTemp('evil-legacy.pt', body), /refusing to load global 'os\.system'/);
  const builtinsEval = Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.from('cbuiltins\neval\n', 'latin1'), Buffer.from([0x29, 0x52, 0x2e])]);
  assertRejects(writeTemp('eval.pt', zip([['archive/data.pkl', builtinsEval]])), /refusing to load global 'builtins\.eval'/);
  const wholeModel = Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.from('cmonai.networks.nets.swin_unetr\nSwinUNETR\n', 'latin1'), Buffer.from([0x29, 0x81, 0x2e])]);
  assertRejects(writeTemp('model.pt', zip([['archive/data.pkl', wholeModel]])), /refusing to load global 'monai\.networks\.nets\.swin_unetr\.SwinUNETR'/);
  assert.ok(!fs.existsSync(marker), 'nothing ran');
});

test('bad checkpoints: not a checkpoint, TorchScript, truncated', () => {
  assertRejects(writeTemp('text.pt', Buffer.from('this is not a checkpoint at all')), /neither a torch\.save zip archive nor a legacy pickle/);
  const script = zip([
    ['m/data.pkl', Buffer.from([0x80, 0x02, 0x7d, 0x2e])],
    ['m/constants.pkl', Buffer.from([0x80, 0x02, 0x29, 0x2e])],
    ['m/code/__torch__.py', Buffer.from('def forward(self): ...')],
  ]);
  assertRejects(writeTemp('scripted.pt', script), /TorchScript archive/);
  const good = torchZip(new Map([['w', { shape: [4], data: Float32Array.from([1, 2, 3, 4]) }]]));
  assertRejects(writeTemp('cut.pt', good.subarray(0, good.length - 40)), /not a readable PyTorch checkpoint/);
  assertRejects(path.join(tempDir(), 'absent.pt'), /file not found/);
});

test('key spellings of public checkpoints map onto MONAI names', () => {
  assert.equal(canonicalKey('module.backbone.swinViT.layers1.0.blocks.0.norm1.weight'), 'swinViT.layers1.0.blocks.0.norm1.weight');
  assert.equal(canonicalKey('module.layers2.0.blocks.1.mlp.fc1.weight'), 'swinViT.layers2.0.blocks.1.mlp.linear1.weight');
  assert.equal(canonicalKey('swin_vit.patch_embed.proj.bias'), 'swinViT.patch_embed.proj.bias');
  assert.equal(canonicalKey('module.decoder1.transp_conv.conv.weight'), 'decoder1.transp_conv.conv.weight');
  assert.equal(canonicalKey('module.rotation_head.weight'), 'rotation_head.weight');
});

test('safetensors and npy round trips', async () => {
  const dir = tempDir();
  const tensor = { dtype: 'float32' as const, shape: [2, 3], data: Float32Array.from([1, -2, 3.5, 4, 5, 6]) };
  await writeSafetensors(path.join(dir, 'w.safetensors'), [
    { name: 'a', tensor },
    { name: 'idx', tensor: { dtype: 'int32', shape: [2], data: Int32Array.from([7, -1]) }, int64: true },
  ], { note: 'x' });
  const back = readSafetensors(path.join(dir, 'w.safetensors'));
  assert.deepEqual(Array.from(back.tensors.get('a')!.data), Array.from(tensor.data));
  assert.deepEqual(Array.from(back.tensors.get('idx')!.data), [7, -1]);
  assert.equal(back.metadata.note, 'x');
  await writeNpy(path.join(dir, 'x.npy'), tensor);
  const npy = readNpy(path.join(dir, 'x.npy'));
  assert.deepEqual(npy.shape, [2, 3]);
  assert.deepEqual(Array.from(npy.data), Array.from(tensor.data));
});

/** A full SwinUNETR (feature size 12) state dict with seeded values, under the given key transform. */
function syntheticStateDict(rename: (key: string) => string | undefined): Map<string, TorchTensorSpec> {
  const specs = swinUnetrParameterSpecs(swinUnetrConfig({ featureSize: 12, outChannels: 2 }));
  const out = new Map<string, TorchTensorSpec>();
  let seed = 1;
  for (const spec of specs) {
    const key = rename(spec.name);
    if (!key) continue;
    const count = spec.torchShape.reduce((a, b) => a * b, 1);
    out.set(key, { shape: spec.torchShape, data: Float32Array.from({ length: count }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5) * 0.1) });
  }
  return out;
}

function fseft(...args: string[]) {
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, FSEFT_BACKEND: 'cpu' } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('import-torch: an encoder-only self-supervised checkpoint (module., fc1/fc2 spellings) loads the encoder', () => {
  const dir = tempDir();
  const encoder = syntheticStateDict((k) => (k.startsWith('swinViT.') ? `module.${k.slice('swinViT.'.length).replace('mlp.linear1', 'mlp.fc1').replace('mlp.linear2', 'mlp.fc2')}` : undefined));
  encoder.set('module.rotation_head.weight', { shape: [4, 4], data: new Float32Array(16) });
  const file = path.join(dir, 'model_swinvit.pt');
  fs.writeFileSync(file, torchZip(encoder, { wrapKey: 'state_dict' }));
  const out = path.join(dir, 'model');
  const run = fseft('import-torch', file, '--arch', 'swinunetr', '--out-channels', '2', '--out', out);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /weights under 'state_dict'/);
  assert.match(run.stdout, /encoder-only checkpoint: the Swin encoder is loaded/);
  assert.match(run.stdout, /unexpected \(ignored\): rotation_head\.weight/);
  const manifest = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  assert.equal(manifest.provenance.encoderOnly, true);
  assert.equal(manifest.config.featureSize, 12);
  const weights = readSafetensors(path.join(out, 'weights.safetensors')).tensors;
  const original = encoder.get('module.layers1.0.blocks.0.mlp.fc1.weight')!;
  assert.deepEqual(Array.from(weights.get('swinViT.layers1.0.blocks.0.mlp.linear1.weight')!.data), Array.from(original.data));
  assert.equal(weights.get('swinViT.layers1.0.blocks.0.attn.relative_position_index')!.shape.join(), '343,343');

  const strict = fseft('import-torch', file, '--arch', 'swinunetr', '--out-channels', '2', '--out', path.join(dir, 'strict'), '--strict');
  assert.equal(strict.code, 1);
  assert.match(strict.stderr, /--strict: \d+ missing key\(s\) \[encoder1\.layer\.conv1\.conv\.weight/);
  assert.ok(!fs.existsSync(path.join(dir, 'strict', 'config.json')));
});

test('import-torch: wrong shapes name the key, the expected and the found shape', () => {
  const dir = tempDir();
  const full = syntheticStateDict((k) => k);
  const file = path.join(dir, 'ckpt.pt');
  fs.writeFileSync(file, torchZip(full));
  const run = fseft('import-torch', file, '--arch', 'swinunetr', '--feature-size', '24', '--out', path.join(dir, 'm'));
  assert.equal(run.code, 1);
  assert.match(run.stderr, /tensor swinViT\.patch_embed\.proj\.weight has shape \[12,1,2,2,2\], the model expects \[24,1,2,2,2\]/);
  const bad = fseft('import-torch', path.join(FIXTURES, 'plain-state-dict.pt'), '--arch', 'swinunetr', '--out', path.join(dir, 'n'));
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /no tensor of the checkpoint matches a SwinUNETR parameter/);
});
