import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import * as crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { gzipParallel, niftiExtension, parseCompression } from '../lib/io/gzip';
import { readNifti, readNiftiInfo, writeNifti } from '../lib/io/nifti';
import { DATATYPES } from '../lib/io/nifti-datatypes';
import { Volume } from '../lib/io/volume';
import { FseftError } from '../lib/util/errors';
import { EXAMPLE_DIR, EXAMPLE_SKIP, tempDir } from './helpers';

const LPS_OBLIQUE = [
  [-0.8, 0.1, 0, 120.5],
  [-0.1, -0.8, 0, 80.25],
  [0, 0, 2.5, -300],
  [0, 0, 0, 1],
].map((row) => row.map((v) => Math.fround(v)));

function sampleVolume(type: (typeof DATATYPES)[number]): Volume {
  const shape: [number, number, number] = [5, 4, 3];
  const data = new type.array(60);
  for (let i = 0; i < 60; i++) data[i] = type.integer ? (type.min < 0 ? (i * 7919) % 120 - 60 : (i * 7919) % 250) : (i - 30) * 0.37;
  return new Volume(data, shape, LPS_OBLIQUE);
}

for (const type of DATATYPES) {
  for (const ext of ['.nii', '.nii.gz']) {
    test(`round trip ${type.name} ${ext}: identical data, type and affine`, async () => {
      const file = path.join(tempDir(), `v${ext}`);
      const original = sampleVolume(type);
      await writeNifti(file, original);
      const back = await readNifti(file);
      assert.equal(back.data.constructor, original.data.constructor);
      assert.deepEqual(Array.from(back.data), Array.from(original.data));
      assert.deepEqual(back.shape, original.shape);
      assert.deepEqual(back.affine, original.affine);
    });
  }
}

test('scl_slope / scl_inter: stored integers, scaled values read back exactly', async () => {
  const file = path.join(tempDir(), 'scaled.nii.gz');
  const values = Float32Array.from({ length: 24 }, (_, i) => -1024 + 0.5 * i * 3);
  await writeNifti(file, new Volume(values, [4, 3, 2], LPS_OBLIQUE), { datatype: 'int16', scale: { slope: 0.5, inter: -1024 } });
  const info = await readNiftiInfo(file);
  assert.equal(info.datatype, 'int16');
  assert.equal(info.sclSlope, 0.5);
  assert.equal(info.sclInter, -1024);
  const back = await readNifti(file);
  assert.ok(back.data instanceof Float32Array);
  assert.deepEqual(Array.from(back.data), Array.from(values));
});

test('qform-only files: the quaternion affine equals the sform it came from', async () => {
  const file = path.join(tempDir(), 'q.nii');
  const volume = sampleVolume(DATATYPES[0]);
  const rigid = [
    [0, 0, -1.5, 10],
    [-2, 0, 0, 20],
    [0, 3, 0, 30],
    [0, 0, 0, 1],
  ];
  await writeNifti(file, volume.withData(volume.data, volume.shape, rigid), { sformCode: 0, qformCode: 1 });
  const info = await readNiftiInfo(file);
  assert.equal(info.affineSource, 'qform');
  for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) assert.ok(Math.abs(info.affine[r][c] - rigid[r][c]) < 1e-5, `entry ${r},${c}`);
});

test('files without sform and qform get the base affine (x flipped, centred), like nibabel', async () => {
  const file = path.join(tempDir(), 'b.nii');
  await writeNifti(file, new Volume(new Uint8Array(60), [5, 4, 3], [[2, 0, 0, 0], [0, 3, 0, 0], [0, 0, 4, 0], [0, 0, 0, 1]]), { sformCode: 0, qformCode: 0 });
  const info = await readNiftiInfo(file);
  assert.equal(info.affineSource, 'base');
  assert.deepEqual(info.affine, [[-2, 0, 0, 4], [0, 3, 0, -4.5], [0, 0, 4, -4], [0, 0, 0, 1]]);
});

async function writeThenCorrupt(mutate: (bytes: Buffer) => Buffer, name = 'bad.nii'): Promise<string> {
  const file = path.join(tempDir(), name);
  await writeNifti(file, sampleVolume(DATATYPES[1]));
  fs.writeFileSync(file, mutate(fs.readFileSync(file)));
  return file;
}

async function assertFails(file: string, pattern: RegExp, options = {}): Promise<void> {
  await assert.rejects(readNifti(file, options), (error: unknown) => {
    assert.ok(error instanceof FseftError, `expected an FseftError, got ${error}`);
    assert.match(error.message, pattern);
    assert.ok(error.message.includes(file), 'the message names the file');
    return true;
  });
}

test('bad input: truncated gzip', async () => {
  const file = path.join(tempDir(), 't.nii.gz');
  await writeNifti(file, sampleVolume(DATATYPES[1]));
  const bytes = fs.readFileSync(file);
  fs.writeFileSync(file, bytes.subarray(0, bytes.length - 20));
  await assertFails(file, /corrupt or truncated gzip/);
});

test('bad input: corrupt gzip stream', async () => {
  const file = path.join(tempDir(), 'c.nii.gz');
  const bytes = zlib.gzipSync(Buffer.alloc(1000, 7));
  bytes[20] ^= 0xff;
  bytes[21] ^= 0xff;
  fs.writeFileSync(file, bytes);
  await assertFails(file, /corrupt or truncated gzip|not a NIfTI/);
});

test('bad input: wrong magic', async () => {
  const file = await writeThenCorrupt((b) => {
    b.write('xyz\0', 344, 'latin1');
    return b;
  });
  await assertFails(file, /not a NIfTI-1\/2 file/);
});

test('bad input: too short to be NIfTI', async () => {
  const file = path.join(tempDir(), 'short.nii');
  fs.writeFileSync(file, Buffer.from('hello'));
  await assertFails(file, /too short/);
});

test('bad input: unsupported datatype (complex64)', async () => {
  const file = await writeThenCorrupt((b) => {
    b.writeInt16LE(32, 70);
    b.writeInt16LE(64, 72);
    return b;
  });
  await assertFails(file, /unsupported datatype complex64/);
});

test('bad input: truncated voxel data', async () => {
  const file = await writeThenCorrupt((b) => b.subarray(0, b.length - 10));
  await assertFails(file, /truncated/);
});

test('4-D volumes: an error without a frame, the chosen frame with one', async () => {
  const volume = sampleVolume(DATATYPES[1]);
  const file = await writeThenCorrupt((b) => {
    b.writeInt16LE(4, 40);
    b.writeInt16LE(2, 48);
    const second = Buffer.from(b.subarray(352));
    for (let i = 0; i < second.length; i += 2) second.writeInt16LE(second.readInt16LE(i) + 1000, i);
    return Buffer.concat([b, second]);
  });
  await assertFails(file, /4-D volume with 2 frames/);
  const first = await readNifti(file, { frame: 0 });
  const second = await readNifti(file, { frame: 1 });
  assert.deepEqual(Array.from(first.data), Array.from(volume.data));
  assert.deepEqual(Array.from(second.data), Array.from(volume.data, (v) => v + 1000));
  await assertFails(file, /frame 2 does not exist/, { frame: 2 });
});

test('bad input: missing file', async () => {
  await assertFails(path.join(tempDir(), 'nothing-here.nii.gz'), /file not found/);
});

test('output directory not writable: clear error, nothing left behind', async () => {
  const dir = tempDir();
  const blocker = path.join(dir, 'a-file');
  fs.writeFileSync(blocker, 'x');
  await assert.rejects(writeNifti(path.join(blocker, 'out.nii.gz'), sampleVolume(DATATYPES[0])), /output directory is not writable/);
  assert.deepEqual(fs.readdirSync(dir), ['a-file']);
});

test('values that do not fit the datatype are an error and leave no file', async () => {
  const dir = tempDir();
  const file = path.join(dir, 'overflow.nii');
  await assert.rejects(writeNifti(file, new Volume(Float32Array.from([1, 2, 300, 4]), [2, 2, 1], LPS_OBLIQUE), { datatype: 'uint8' }), /does not fit datatype uint8/);
  assert.deepEqual(fs.readdirSync(dir), []);
});

test('real example: header facts of example_ct_sm', { skip: EXAMPLE_SKIP }, async () => {
  const info = await readNiftiInfo(path.join(EXAMPLE_DIR, 'example_ct_sm.nii.gz'));
  assert.deepEqual(info.shape, [122, 101, 30]);
  assert.equal(info.datatype, 'int16');
  assert.equal(info.affineSource, 'sform');
  assert.deepEqual(info.pixdim, [3, 3, 3]);
});

test('parallel gzip: one gzip member that zlib, fflate (nifti-reader-js) and Python read back byte for byte', async () => {
  // 9 MiB of mixed content: three 4 MiB chunks deflated on their own, joined under one header.
  const nifti = await import('nifti-reader-js');
  const data = Buffer.alloc(9 << 20);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 27 ^ (i >> 12);
  for (const level of [0, 1, 6, 9]) {
    const packed = await gzipParallel(data, level);
    assert.equal(packed[0], 0x1f);
    assert.ok(zlib.gunzipSync(packed).equals(data), `zlib reads level ${level}`);
    const viaFflate = Buffer.from(nifti.decompress(packed.buffer.slice(packed.byteOffset, packed.byteOffset + packed.length) as ArrayBuffer) as ArrayBuffer);
    assert.ok(viaFflate.equals(data), `fflate (single-member readers) reads level ${level}: ${viaFflate.length} bytes`);
  }
  const python = spawnSync('python3', ['-c', 'import gzip,sys,hashlib; sys.stdout.write(hashlib.sha256(gzip.decompress(sys.stdin.buffer.read())).hexdigest())'], { input: await gzipParallel(data, 1) });
  if (python.status === 0) assert.equal(python.stdout.toString(), crypto.createHash('sha256').update(data).digest('hex'), "Python's gzip (nibabel's reader) agrees");
  assert.ok(zlib.gunzipSync(await gzipParallel(Buffer.alloc(0), 1)).length === 0, 'an empty input is a valid gzip');
});

test('compression: none, fast, best and levels round-trip; best is smallest; none writes stored gzip or plain .nii', async () => {
  const dir = tempDir();
  const shape: [number, number, number] = [40, 30, 20];
  const volume = new Volume(Float32Array.from({ length: 40 * 30 * 20 }, (_, i) => Math.round(Math.sin(i / 50) * 100) / 7), shape, [[1.5, 0, 0, -3], [0, 1.5, 0, 4], [0, 0, 2, 5], [0, 0, 0, 1]]);
  const sizes: Record<string, number> = {};
  for (const compression of ['none', 'fast', 'best', 3] as const) {
    const file = path.join(dir, `v-${compression}.nii.gz`);
    await writeNifti(file, volume, { compression });
    sizes[compression] = fs.statSync(file).size;
    assert.deepEqual((await readNifti(file)).data, volume.data, `${compression} round-trips`);
  }
  assert.ok(sizes.best <= sizes.fast && sizes.fast < sizes.none, JSON.stringify(sizes));
  assert.equal(niftiExtension('none'), '.nii');
  assert.equal(niftiExtension('fast'), '.nii.gz');
  assert.throws(() => parseCompression('fastest'), /none, fast, best or a level 0-9/);
  assert.equal(parseCompression('7'), 7);
});
