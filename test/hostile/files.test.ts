import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { writeNifti } from '../../lib/io/nifti';
import { Volume } from '../../lib/io/volume';
import { tempDir } from '../helpers';
import { torchZip, zip } from '../torch-writer';
import { assertRefused, runCli } from './harness';

/**
 * Hostile and broken files, each tiny and made here: every one is refused with one line naming
 * the file and the problem, quickly, in bounded memory, leaving nothing behind.
 */

const dir = tempDir('fseft-hostile-files-');
function write(name: string, bytes: Buffer | string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return file;
}

/** The three small pickles a legacy torch.save file starts with (magic number, protocol, system info). */
const LEGACY_PREAMBLE = Buffer.concat([
  Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]),
  Buffer.from([0x80, 0x02, 0x4d, 0xe9, 0x03, 0x2e]),
  Buffer.from([0x80, 0x02, 0x7d, 0x2e]),
]);

function importTorch(file: string) {
  const out = path.join(dir, `model-${path.basename(file)}`);
  return { run: runCli(['import-torch', file, '--out', out]), out };
}

test('legacy .pt with a negative length (8 bytes) is refused, not an endless loop', () => {
  for (const [name, bytes] of [
    ['long4.pt', Buffer.from([0x80, 0x02, 0x8b, 0xfb, 0xff, 0xff, 0xff, 0x2e])],
    ['binstring.pt', Buffer.concat([LEGACY_PREAMBLE, Buffer.from([0x80, 0x02, 0x54, 0xf0, 0xff, 0xff, 0xff, 0x2e])])],
  ] as const) {
    const file = write(name, bytes);
    const { run, out } = importTorch(file);
    assertRefused(run, /not a readable PyTorch checkpoint \(pickle claims a length of -\d+ bytes/, { mentions: [file], absent: [out] });
  }
});

test('legacy .pt whose memo references nest 40 levels deep (a 2^40 DAG in 300 bytes) is resolved once, not copied', () => {
  // level 0: an empty list; level n: a list holding level n-1 twice (two memo references).
  const levels: number[] = [0x5d, 0x71, 0];
  // Each level is memoised and popped; the last one stays on the stack as the dict's value.
  for (let n = 1; n <= 40; n++) levels.push(0x30, 0x28, 0x68, n - 1, 0x68, n - 1, 0x6c, 0x71, n);
  const data = Buffer.from([0x80, 0x02, 0x7d, 0x58, 1, 0, 0, 0, 0x77, ...levels, 0x73, 0x2e]);
  const file = write('dag.pt', Buffer.concat([LEGACY_PREAMBLE, data, Buffer.from([0x80, 0x02, 0x5d, 0x2e])]));
  assert.ok(fs.statSync(file).size < 500);
  const { run, out } = importTorch(file);
  assertRefused(run, /no tensors found at the top level/, { mentions: [file], absent: [out] });
});

test('a tensor claiming more elements than its storage (stride 0, 40000 x 30000 from one float) is refused before allocating', () => {
  const file = write('stride0.pt', torchZip(new Map([['swinViT.patch_embed.proj.weight', { shape: [40000, 30000], stride: [0, 0], data: new Float32Array(1) }]])));
  const { run, out } = importTorch(file);
  assertRefused(run, /claims 1200000000 elements but its storage holds 1/, { mentions: [file], absent: [out] });
});

test('negative storage offsets and strides, reads past the storage, and int64 values beyond 32 bits are refused, not read as NaN or 0', () => {
  const cases: Array<[string, Buffer, RegExp]> = [
    ['offset.pt', torchZip(new Map([['a.weight', { shape: [2], offset: -1, data: new Float32Array(4) }]])), /storage offset -1 is not a non-negative integer/],
    ['stride.pt', torchZip(new Map([['a.weight', { shape: [2, 2], stride: [-2, 1], data: new Float32Array(4) }]])), /stride \["-2","1"\] holds -2/],
    ['past.pt', torchZip(new Map([['a.weight', { shape: [2, 2], stride: [3, 1], data: new Float32Array(4) }]])), /reads element 4 of a storage of 4/],
  ];
  for (const [name, bytes, pattern] of cases) {
    const file = write(name, bytes);
    assertRefused(importTorch(file).run, pattern, { mentions: [file] });
  }
  // A LongStorage holding 2^62: the writer makes FloatStorages, so patch the storage class name and bytes.
  const long = Buffer.alloc(8);
  long.writeBigInt64LE(1n << 62n);
  const zipped = torchZip(new Map([['a.index', { shape: [1], data: new Float32Array(2) }]]));
  const pickle = readStored(zipped, 'archive/data.pkl').toString('latin1').replace('FloatStorage', 'LongStorage');
  const file = write('int64.pt', zip([['archive/data.pkl', Buffer.from(pickle, 'latin1')], ['archive/data/0', long], ['archive/version', Buffer.from('3\n')]]));
  assertRefused(importTorch(file).run, /an integer tensor holds 46116860184273\d+, outside the 32-bit range/, { mentions: [file] });
});

test('an embedding that implies a feature size of 240 is refused as no SwinUNETR the kit builds (not a 10 GB network)', () => {
  const file = write('f240.pt', torchZip(new Map([['swinViT.patch_embed.proj.weight', { shape: [240, 1, 2, 2, 2], data: new Float32Array(1920) }]])));
  const { run, out } = importTorch(file);
  assertRefused(run, /not a SwinUNETR the kit can build: feature size must be a whole number from 12 to 96, got 240/, { mentions: [file], absent: [out] });
});

test('a zip bomb (an entry that inflates far past its size) is refused by the directory', () => {
  const tensors = torchZip(new Map([['a.weight', { shape: [2], data: new Float32Array(2) }]]));
  const pickle = readStored(tensors, 'archive/data.pkl');
  const bomb = Buffer.alloc(64 * 1024 * 1024);
  // The directory claims the pickle's true size; the deflated stream holds 64 MiB.
  const lying = write('bomb.pt', zip([['archive/data.pkl', zlib.deflateRawSync(Buffer.concat([pickle, bomb])), { deflated: true, claimedSize: pickle.length }], ['archive/data/0', Buffer.alloc(8)]]));
  assertRefused(importTorch(lying).run, /entry 'archive\/data\.pkl' inflates past the \d+ bytes its directory claims/, { mentions: [lying] });
  // A directory claiming more than deflate can expand.
  const boastful = write('boast.pt', zip([['archive/data.pkl', zlib.deflateRawSync(pickle), { deflated: true, claimedSize: 4 * 1024 ** 3 - 1 }]]));
  assertRefused(importTorch(boastful).run, /claims 4294967295 bytes from \d+ compressed, more than deflate can expand/, { mentions: [boastful] });
});

/** A model directory whose config is the shipped model's (with `config` changes) and whose weights file is `weights`. */
function modelDir(name: string, weights: Buffer | undefined, config: Record<string, unknown> = {}, preprocessing: Record<string, unknown> = {}): string {
  const model = path.join(dir, name);
  fs.mkdirSync(model);
  const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'data', 'models', 'default', 'config.json'), 'utf8'));
  manifest.config = { ...manifest.config, ...config };
  manifest.preprocessing = { ...manifest.preprocessing, ...preprocessing };
  fs.writeFileSync(path.join(model, 'config.json'), JSON.stringify(manifest));
  fs.writeFileSync(path.join(model, 'weights.safetensors'), weights ?? fs.readFileSync(path.join(__dirname, '..', '..', '..', 'data', 'models', 'default', 'weights.safetensors')));
  return model;
}

let inputNpy: string | undefined;
function forward(model: string, input?: string) {
  if (!inputNpy) {
    // A valid [1, 1, 32, 32, 32] float32 array.
    const header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 32, 32, 32), }";
    const padded = header + ' '.repeat(64 - ((10 + header.length + 1) % 64)) + '\n';
    const prefix = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, padded.length & 0xff, padded.length >> 8]);
    inputNpy = write('input.npy', Buffer.concat([prefix, Buffer.from(padded, 'latin1'), Buffer.alloc(4 * 32 ** 3)]));
  }
  const output = path.join(dir, `out-${path.basename(model)}.npy`);
  return { run: runCli(['forward', '--model', model, '--input', input ?? inputNpy, '--output', output]), output };
}

function safetensorsBytes(header: Record<string, unknown>, dataBytes: number): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, Buffer.alloc(dataBytes)]);
}

test('safetensors with negative, reversed or overlapping offsets, null entries and string shapes are refused', () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['negative', { a: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, /tensor "a": data_offsets \[-4,0\] are not two non-negative whole numbers/],
    ['reversed', { a: { dtype: 'F32', shape: [1], data_offsets: [8, 4] } }, /data_offsets start 8 after end 4/],
    ['overlap', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, /tensors a and b overlap/],
    ['null', { a: null }, /tensor "a": its header entry is not an object/],
    ['string-shape', { a: { dtype: 'F32', shape: '2', data_offsets: [0, 8] } }, /tensor "a": shape "2" is not a list of sizes/],
  ];
  for (const [name, header, pattern] of cases) {
    const model = modelDir(`st-${name}`, safetensorsBytes(header, 16));
    const { run, output } = forward(model);
    assertRefused(run, pattern, { mentions: [path.join(model, 'weights.safetensors')], absent: [output] });
  }
});

test('config.json with negative depths, an unknown downsample or norm, or a huge feature size is refused, not run as another network', () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['depths', { depths: [-1, 2, 2, 2] }, /invalid config: depth of stage 0 must be a whole number from 1 to 24, got -1/],
    ['downsample', { downsample: 'mergingv3' }, /invalid config: downsample must be 'merging' or 'mergingv2', got "mergingv3"/],
    ['norm', { normName: 'batch' }, /invalid config: only instance normalisation is implemented \(norm_name 'instance'\), got "batch"/],
    ['feature', { featureSize: 1200 }, /invalid config: feature size must be a whole number from 12 to 96, got 1200/],
  ];
  for (const [name, config, pattern] of cases) {
    const model = modelDir(`cfg-${name}`, undefined, config);
    const { run, output } = forward(model);
    assertRefused(run, pattern, { mentions: [path.join(model, 'config.json')], absent: [output] });
  }
});

test('config.json whose preprocessing cannot prepare an input (ROI not a multiple of 32, zero adaptation crop, reversed window, negative spacing) is refused by file', () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['roi', { roi: [50, 64, 64] }, /invalid preprocessing\.roi \[50,64,64\]: three sizes, each a positive multiple of 32/],
    ['crop', { adaptationRoi: [0, 32, 32] }, /invalid preprocessing\.adaptationRoi \[0,32,32\]: three whole sizes of at least 2 voxels/],
    ['window', { window: [250, -175] }, /invalid preprocessing\.window \[250,-175\]: \[low, high\] HU with low < high/],
    ['spacing', { spacing: -4 }, /invalid preprocessing\.spacing -4: one or three positive sizes in mm/],
  ];
  for (const [name, preprocessing, pattern] of cases) {
    const model = modelDir(`pre-${name}`, undefined, {}, preprocessing);
    const { run, output } = forward(model);
    assertRefused(run, pattern, { mentions: [path.join(model, 'config.json')], absent: [output] });
  }
});

test('.npy with negative or zero-size shapes or an unknown version is refused in one line (no binary dump)', () => {
  const npy = (version: number, header: string) => {
    const prefix = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
    const length = Buffer.alloc(version === 1 ? 2 : 4);
    if (version === 1) length.writeUInt16LE(header.length);
    else length.writeUInt32LE(header.length);
    return Buffer.concat([prefix, length, Buffer.from(header, 'latin1'), Buffer.alloc(64)]);
  };
  const model = path.join(__dirname, '..', '..', '..', 'data', 'models', 'default');
  const cases: Array<[string, Buffer, RegExp]> = [
    ['negative.npy', npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 4), }\n"), /shape \[-1,4\] holds -1, not a non-negative whole number/],
    ['empty.npy', npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4), }\n"), /the array holds no elements \(shape \(0, 4\)\)/],
    ['v9.npy', npy(9, 'x'.repeat(40)), /unsupported \.npy format version 9/],
    ['binary.npy', npy(3, String.fromCharCode(...Array.from({ length: 3000 }, (_, i) => i % 256))), /unreadable \.npy header/],
  ];
  for (const [name, bytes, pattern] of cases) {
    const file = write(name, bytes);
    const { run, output } = forward(model, file);
    assertRefused(run, pattern, { mentions: [file], absent: [output] });
    assert.ok(run.messages[0].length < 400, `a long line: ${run.messages[0].length} characters`);
  }
});

/** A NIfTI-1 header (348 bytes + 4 of extension flag) for a float32 volume, patched by `edit`. */
function niftiHeader(dims: number[], edit: (view: DataView) => void = () => {}): Buffer {
  const header = Buffer.alloc(352);
  const view = new DataView(header.buffer);
  view.setInt32(0, 348, true);
  [dims.length, ...dims, ...Array(7 - dims.length).fill(1)].forEach((d, i) => view.setInt16(40 + 2 * i, d, true));
  view.setInt16(70, 16, true);
  view.setInt16(72, 32, true);
  [1, 1, 1, 1].forEach((p, i) => view.setFloat32(76 + 4 * i, p, true));
  view.setFloat32(108, 352, true);
  view.setFloat32(112, 1, true);
  header.write('n+1\0', 344, 'latin1');
  edit(view);
  return header;
}

test('a NIfTI gzip bomb: the header bounds what is inflated, and a header claiming more than the ceiling is refused', () => {
  // 16^3 float32 voxels, then 1 GiB of zeros in the same gzip stream (about 1 MB compressed).
  const small = Buffer.concat([niftiHeader([16, 16, 16]), Buffer.alloc(4 * 16 ** 3, 1)]);
  const gz = zlib.createGzip({ level: 9 });
  const parts: Buffer[] = [];
  gz.on('data', (chunk: Buffer) => parts.push(chunk));
  gz.write(small);
  const zeros = Buffer.alloc(64 * 1024 * 1024);
  for (let i = 0; i < 16; i++) gz.write(zeros);
  gz.end();
  return new Promise<void>((resolve) => gz.on('end', resolve)).then(() => {
    const bomb = write('bomb.nii.gz', Buffer.concat(parts));
    assert.ok(fs.statSync(bomb).size < 2 * 1024 * 1024);
    const info = runCli(['info', bomb]);
    assert.equal(info.status, 0, info.stderr);
    assert.match(info.stdout, /shape\s+16 x 16 x 16/);
    assert.ok(info.peakMiB < 700, `peak ${info.peakMiB} MiB`);
    // A header that claims 4 GiB of voxels is refused before anything is allocated.
    const claim = write('claim.nii.gz', zlib.gzipSync(Buffer.concat([niftiHeader([1024, 1024, 1024]), Buffer.alloc(4096)])));
    assertRefused(runCli(['info', claim]), /the header claims 4294967648 bytes of data, more than the 2147483648 bytes the kit reads \(raise FSEFT_MAX_NIFTI_BYTES/, { mentions: [claim] });
  });
});

test('a 40 mm voxel header is refused before resampling into gigabytes, naming the grid and the override', async () => {
  const file = path.join(dir, 'coarse.nii.gz');
  await writeNifti(file, new Volume(new Int16Array(64 ** 3).fill(40), [64, 64, 64], [[40, 0, 0, 0], [0, 40, 0, 0], [0, 0, 40, 0], [0, 0, 0, 1]]));
  const out = path.join(dir, 'coarse-out');
  assertRefused(runCli(['preprocess', '--image', file, '--out', out]), /resampling to 1\.5 x 1\.5 x 1\.5 mm would make a 1681 x 1681 x 1681 grid .*40 x 40 x 40 mm voxels.*FSEFT_MAX_GRID_VOXELS/, { mentions: [file], absent: [out] });
});

test('fseft info on a device (/dev/zero) or a directory is refused at once', () => {
  assertRefused(runCli(['info', '/dev/zero']), /not a regular file/, { mentions: ['/dev/zero'] });
  assertRefused(runCli(['info', dir]), /is a directory/, { mentions: [dir] });
});

test('NIfTI headers nibabel refuses are refused: vox_offset NaN, dim[1] = 0', () => {
  const nanOffset = write('nan-offset.nii', Buffer.concat([niftiHeader([4, 4, 4], (v) => v.setFloat32(108, NaN, true)), Buffer.alloc(256)]));
  assertRefused(runCli(['info', nanOffset]), /invalid vox_offset NaN/, { mentions: [nanOffset] });
  const zeroDim = write('zero-dim.nii', Buffer.concat([niftiHeader([0, 4, 4]), Buffer.alloc(256)]));
  assertRefused(runCli(['info', zeroDim]), /invalid dim\[1\] = 0/, { mentions: [zeroDim] });
});

test('a singular affine is refused by name, not an unexpected error', () => {
  const singular = write('singular.nii', Buffer.concat([niftiHeader([4, 4, 4], (v) => {
    v.setInt16(254, 1, true); // sform code 1 with an all-zero sform
  }), Buffer.alloc(256)]));
  assertRefused(runCli(['info', singular]), /the sform affine is singular or not finite/, { mentions: [singular] });
});

test('NaN voxels are found at load: preprocess refuses with the count and position, info reports them', async () => {
  const data = new Float32Array(8 ** 3).fill(100);
  data[3 + 8 * 2] = NaN;
  data[100] = Infinity;
  const file = path.join(dir, 'nan.nii.gz');
  await writeNifti(file, new Volume(data, [8, 8, 8], [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]]));
  const out = path.join(dir, 'nan-out');
  assertRefused(runCli(['preprocess', '--image', file, '--out', out]), /2 voxels are NaN or infinite \(first at voxel 3, 2, 0\)/, { mentions: [file], absent: [out] });
  const info = runCli(['info', file]);
  assert.equal(info.status, 0, info.stderr);
  assert.match(info.stdout, /2 voxels NaN or infinite: the other commands refuse this file/);
});

/** The bytes of a stored entry of a zip made by the test writer. */
function readStored(archive: Buffer, name: string): Buffer {
  let offset = 0;
  while (archive.readUInt32LE(offset) === 0x04034b50) {
    const size = archive.readUInt32LE(offset + 18);
    const nameLength = archive.readUInt16LE(offset + 26);
    const entry = archive.toString('utf8', offset + 30, offset + 30 + nameLength);
    const start = offset + 30 + nameLength;
    if (entry === name) return archive.subarray(start, start + size);
    offset = start + size;
  }
  throw new Error(`no entry ${name}`);
}
