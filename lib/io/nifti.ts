import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { Affine, affineSpacing, invertAffine } from './affine';
import { DatatypeName, INT64_CODES, datatypeByCode, datatypeByName, datatypeOfArray, describeDatatypeCode } from './nifti-datatypes';
import { Shape3, Volume, VoxelArray } from './volume';
import { FseftError } from '../util/errors';
import { writeFileAtomic } from '../util/atomic-write';
import { readError } from '../util/read-file';
import { limitFromEnvironment } from '../util/limits';
import { Compression, DEFAULT_COMPRESSION, compressionLevel, gzipParallel } from './gzip';


type NiftiReaderModule = typeof import('nifti-reader-js', { with: { 'resolution-mode': 'import' } });
type NiftiHeader = ReturnType<NiftiReaderModule['readHeader']>;
let niftiReader: Promise<NiftiReaderModule> | undefined;
/** nifti-reader-js is published as an ES module only; load it once, lazily. */
function loadNiftiReader(): Promise<NiftiReaderModule> {
  niftiReader ??= import('nifti-reader-js');
  return niftiReader;
}

export type AffineSource = 'sform' | 'qform' | 'base';

/** What a NIfTI header says, in the kit's terms. */
export interface NiftiInfo {
  file: string;
  version: 1 | 2;
  /** Spatial shape [nx, ny, nz] and the number of frames along the 4th dimension. */
  shape: Shape3;
  frames: number;
  datatype: string;
  /** Voxel sizes from pixdim[1..3] (the affine's column norms are `volume.spacing`). */
  pixdim: [number, number, number];
  affine: Affine;
  affineSource: AffineSource;
  sformCode: number;
  qformCode: number;
  sclSlope: number;
  sclInter: number;
  littleEndian: boolean;
  compressed: boolean;
  description: string;
}

export interface ReadNiftiOptions {
  /** For 4-D files: which frame to read. Without it a 4-D file with more than one frame is an error. */
  frame?: number;
  /** Return NaN and infinite voxels instead of refusing the file (`fseft info` counts them). */
  allowNonFinite?: boolean;
}

/** Reads a `.nii` or `.nii.gz` file into a `Volume` (scl_slope/scl_inter applied, as float32). */
export async function readNifti(file: string, options: ReadNiftiOptions = {}): Promise<Volume> {
  return (await readNiftiWithInfo(file, options)).volume;
}

/** Reads the header facts of a NIfTI file (the voxel data is read and discarded for .nii.gz). */
export async function readNiftiInfo(file: string): Promise<NiftiInfo> {
  const { bytes, compressed } = await readBytes(file);
  return (await parseHeader(file, bytes, compressed)).info;
}

export async function readNiftiWithInfo(file: string, options: ReadNiftiOptions = {}): Promise<{ volume: Volume; info: NiftiInfo }> {
  const { bytes, compressed } = await readBytes(file);
  const { info, header } = await parseHeader(file, bytes, compressed);
  const frame = selectFrame(file, info.frames, options.frame);
  const raw = decodeVoxels(file, bytes, header, info, frame);
  const scaled = applyScaling(raw, info.sclSlope, info.sclInter);
  if (!options.allowNonFinite) refuseNonFinite(file, scaled, info.shape);
  return { volume: new Volume(scaled, info.shape, info.affine), info };
}

/** Counts NaN and infinite voxels (only float data can hold them). */
export function nonFiniteVoxels(data: ArrayLike<number>): { count: number; first: number } {
  if (!(data instanceof Float32Array || data instanceof Float64Array)) return { count: 0, first: -1 };
  let count = 0;
  let first = -1;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      if (count++ === 0) first = i;
    }
  }
  return { count, first };
}

/** NaN or infinite voxels would silently poison every number computed from the volume. */
function refuseNonFinite(file: string, data: ArrayLike<number>, shape: Shape3): void {
  const { count, first } = nonFiniteVoxels(data);
  if (count === 0) return;
  const at = [first % shape[0], Math.floor(first / shape[0]) % shape[1], Math.floor(first / (shape[0] * shape[1]))];
  throw new FseftError(`${count} voxel${count > 1 ? 's are' : ' is'} NaN or infinite (first at voxel ${at.join(', ')}); fix the file (e.g. replace them with the air value, -1024 HU)`, file);
}

/** The largest NIfTI the kit reads (bytes after decompression): FSEFT_MAX_NIFTI_BYTES, default 2 GiB. */
export function maxNiftiBytes(): number {
  return limitFromEnvironment('FSEFT_MAX_NIFTI_BYTES', 2 * 1024 ** 3);
}

async function readBytes(file: string): Promise<{ bytes: Buffer; compressed: boolean }> {
  let bytes: Buffer;
  const ceiling = maxNiftiBytes();
  try {
    // A device or pipe (/dev/zero) has no size to check and may never end: only regular files.
    const stat = await fs.promises.stat(file);
    if (stat.isDirectory()) throw new FseftError('is a directory, expected a NIfTI file', file);
    if (!stat.isFile()) throw new FseftError('not a regular file (a device, pipe or socket); give a NIfTI file', file);
    if (stat.size > ceiling) throw new FseftError(`${stat.size} bytes, more than the ${ceiling} bytes the kit reads (raise FSEFT_MAX_NIFTI_BYTES to allow it)`, file);
    bytes = await fs.promises.readFile(file);
  } catch (error) {
    if (error instanceof FseftError) throw error;
    throw readError(file, error);
  }
  const compressed = bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
  if (!compressed) return { bytes, compressed };
  try {
    return { bytes: await gunzipBounded(bytes, ceiling), compressed };
  } catch (error) {
    if (error instanceof FseftError) throw new FseftError(error.message, file);
    throw new FseftError(`corrupt or truncated gzip data (${(error as Error).message})`, file);
  }
}

/**
 * Decompresses no more than the file needs: once the header has arrived, the size it claims
 * (vox_offset + voxel data) bounds the output, and no claim above `ceiling` is believed. The
 * output is one buffer of that size, so a large volume is held once. Bytes past the voxel data
 * are not inflated (a gzip bomb behind a small header costs nothing).
 */
function gunzipBounded(compressed: Buffer, ceiling: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const stream = zlib.createGunzip({ chunkSize: 1 << 20 });
    let head: Buffer[] = [];
    let headLength = 0;
    let out: Buffer | undefined;
    let length = 0;
    let settled = false;
    const finish = (error?: Error) => {
      if (settled) return;
      settled = true;
      stream.destroy();
      if (error) reject(error);
      else resolve(out ? out.subarray(0, length) : Buffer.concat(head, headLength));
    };
    stream.on('data', (chunk: Buffer) => {
      if (settled) return;
      if (!out) {
        head.push(chunk);
        headLength += chunk.length;
        if (headLength < 544) return;
        const joined = Buffer.concat(head, headLength);
        const claimed = claimedNiftiBytes(joined);
        if (claimed !== undefined && claimed > ceiling) return finish(new FseftError(`the header claims ${claimed} bytes of data, more than the ${ceiling} bytes the kit reads (raise FSEFT_MAX_NIFTI_BYTES to allow it)`));
        // An unreadable header: enough bytes for the header parser to say what is wrong.
        out = Buffer.allocUnsafe(claimed === undefined ? UNREADABLE_HEADER_BYTES : Math.max(claimed, 544));
        head = [];
        chunk = joined;
      }
      const room = out.length - length;
      chunk.copy(out, length, 0, Math.min(room, chunk.length));
      length += Math.min(room, chunk.length);
      if (length === out.length) finish();
    });
    stream.on('error', (error) => finish(error));
    stream.on('end', () => finish());
    stream.end(compressed);
  });
}

const UNREADABLE_HEADER_BYTES = 1 << 16;

/**
 * What a NIfTI-1/2 header says the whole file holds (vox_offset + product of dims x bytes per
 * voxel), from the raw bytes; undefined when the header is not readable enough to say (the full
 * parse then explains what is wrong).
 */
function claimedNiftiBytes(bytes: Buffer): number | undefined {
  for (const little of [true, false]) {
    const int32 = (o: number) => (little ? bytes.readInt32LE(o) : bytes.readInt32BE(o));
    const int16 = (o: number) => (little ? bytes.readInt16LE(o) : bytes.readInt16BE(o));
    const sizeofHdr = int32(0);
    if (sizeofHdr === 348) {
      const dims = Array.from({ length: 8 }, (_, i) => int16(40 + 2 * i));
      const voxOffset = little ? bytes.readFloatLE(108) : bytes.readFloatBE(108);
      return claimedSize(dims, int16(70), int16(72), voxOffset, 352);
    }
    if (sizeofHdr === 540) {
      const int64 = (o: number) => Number(little ? bytes.readBigInt64LE(o) : bytes.readBigInt64BE(o));
      const dims = Array.from({ length: 8 }, (_, i) => int64(16 + 8 * i));
      return claimedSize(dims, int16(12), int16(14), int64(168), 544);
    }
  }
  return undefined;
}

function claimedSize(dims: number[], datatype: number, bitpix: number, voxOffset: number, headerBytes: number): number | undefined {
  const rank = dims[0];
  const bytesPerVoxel = datatypeByCode(datatype)?.bytes ?? (INT64_CODES[datatype] ? 8 : bitpix / 8);
  if (!(rank >= 1 && rank <= 7) || !(bytesPerVoxel > 0) || !Number.isFinite(voxOffset)) return undefined;
  let voxels = 1;
  for (let d = 1; d <= rank; d++) voxels *= Math.max(1, dims[d]);
  return Math.max(voxOffset, headerBytes) + voxels * bytesPerVoxel;
}

async function parseHeader(file: string, bytes: Buffer, compressed: boolean): Promise<{ info: NiftiInfo; header: NiftiHeader }> {
  const reader = await loadNiftiReader();
  if (bytes.length < 348) throw new FseftError(`too short for a NIfTI header (${bytes.length} bytes)`, file);
  const headerBytes = new Uint8Array(bytes.subarray(0, Math.min(bytes.length, 1 << 16))).buffer;
  if (!reader.isNIFTI(headerBytes)) {
    const magic = JSON.stringify(bytes.subarray(344, 348).toString('latin1'));
    throw new FseftError(`not a NIfTI-1/2 file (magic ${magic}, expected "n+1" or "n+2")`, file);
  }
  let header: NiftiHeader;
  try {
    header = reader.readHeader(headerBytes);
  } catch (error) {
    throw new FseftError(`unreadable NIfTI header (${(error as Error).message})`, file);
  }
  const dims = header.dims;
  const rank = dims[0];
  if (!(rank >= 1 && rank <= 7)) throw new FseftError(`invalid dim[0] = ${rank} (expected 1 to 7)`, file);
  for (let d = 1; d <= rank; d++) {
    if (!(dims[d] >= 1)) throw new FseftError(`invalid dim[${d}] = ${dims[d]} (every dimension up to dim[0] = ${rank} must be at least 1)`, file);
  }
  if (!Number.isFinite(header.vox_offset) || header.vox_offset < 0) throw new FseftError(`invalid vox_offset ${header.vox_offset} (the voxel data's position in the file)`, file);
  const size = (d: number) => (d <= rank ? dims[d] : 1);
  for (let d = 5; d <= rank; d++) {
    if (size(d) > 1) throw new FseftError(`${rank}-D volume (dim ${dims.slice(1, rank + 1).join('x')}): only 3-D and 4-D files are supported`, file);
  }
  const shape: Shape3 = [size(1), size(2), size(3)];
  const pixdim: [number, number, number] = [1, 2, 3].map((d) => Math.abs(header.pixDims[d]) || 1) as [number, number, number];
  const { affine, source } = headerAffine(header, shape, pixdim);
  if (!invertible(affine)) throw new FseftError(`the ${source} affine is singular or not finite (${JSON.stringify(affine.slice(0, 3))}): voxel positions cannot be computed`, file);
  const slope = header.scl_slope;
  const info: NiftiInfo = {
    file,
    version: header instanceof reader.NIFTI2 ? 2 : 1,
    shape,
    frames: size(4),
    datatype: describeDatatypeCode(header.datatypeCode),
    pixdim,
    affine,
    affineSource: source,
    sformCode: header.sform_code,
    qformCode: header.qform_code,
    sclSlope: Number.isFinite(slope) && slope !== 0 ? slope : 1,
    sclInter: Number.isFinite(slope) && slope !== 0 && Number.isFinite(header.scl_inter) ? header.scl_inter : 0,
    littleEndian: header.littleEndian,
    compressed,
    description: header.description.replace(/\0.*$/s, '').trim(),
  };
  return { info, header };
}

/**
 * The voxel-to-world affine as nibabel's `get_best_affine`: the sform when its code is > 0,
 * else the qform when its code is > 0, else the ANALYZE-style base affine (x flipped, centred).
 */
function headerAffine(header: NiftiHeader, shape: Shape3, pixdim: [number, number, number]): { affine: Affine; source: AffineSource } {
  if (header.sform_code > 0) {
    const a = header.affine;
    return {
      affine: [a[0].slice(0, 4), a[1].slice(0, 4), a[2].slice(0, 4), [0, 0, 0, 1]],
      source: 'sform',
    };
  }
  if (header.qform_code > 0) {
    const qfac = header.pixDims[0] < 0 ? -1 : 1;
    const rotation = quaternionToRotation(header.quatern_b, header.quatern_c, header.quatern_d);
    const scale = [pixdim[0], pixdim[1], pixdim[2] * qfac];
    const offset = [header.qoffset_x, header.qoffset_y, header.qoffset_z];
    const affine: Affine = [0, 1, 2].map((r) => [rotation[r][0] * scale[0], rotation[r][1] * scale[1], rotation[r][2] * scale[2], offset[r]]);
    affine.push([0, 0, 0, 1]);
    return { affine, source: 'qform' };
  }
  const affine: Affine = [
    [-pixdim[0], 0, 0, pixdim[0] * ((shape[0] - 1) / 2)],
    [0, pixdim[1], 0, -pixdim[1] * ((shape[1] - 1) / 2)],
    [0, 0, pixdim[2], -pixdim[2] * ((shape[2] - 1) / 2)],
    [0, 0, 0, 1],
  ];
  return { affine, source: 'base' };
}

/** Whether every voxel position can be computed and mapped back: finite entries, and the inverse that resampling takes exists. */
function invertible(affine: Affine): boolean {
  if (affine.some((row) => row.some((v) => !Number.isFinite(v)))) return false;
  try {
    invertAffine(affine);
    return true;
  } catch {
    return false;
  }
}

function quaternionToRotation(b: number, c: number, d: number): number[][] {
  let a = 1 - (b * b + c * c + d * d);
  if (a < 1e-7) {
    const norm = Math.hypot(b, c, d) || 1;
    b /= norm;
    c /= norm;
    d /= norm;
    a = 0;
  } else {
    a = Math.sqrt(a);
  }
  return [
    [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
    [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
    [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
  ];
}

function selectFrame(file: string, frames: number, frame: number | undefined): number {
  if (frame === undefined) {
    if (frames > 1) throw new FseftError(`4-D volume with ${frames} frames; choose one with --frame N (fseft info, fseft preprocess) or extract it first, e.g. with fslroi`, file);
    return 0;
  }
  if (!Number.isInteger(frame) || frame < 0 || frame >= frames) {
    throw new FseftError(`frame ${frame} does not exist (the file has ${frames} frame${frames === 1 ? '' : 's'})`, file);
  }
  return frame;
}

function decodeVoxels(file: string, bytes: Buffer, header: NiftiHeader, info: NiftiInfo, frame: number): VoxelArray {
  const count = info.shape[0] * info.shape[1] * info.shape[2];
  const int64 = INT64_CODES[header.datatypeCode];
  const type = datatypeByCode(header.datatypeCode);
  if (!type && !int64) {
    throw new FseftError(`unsupported datatype ${info.datatype} (code ${header.datatypeCode}); supported: uint8, int8, uint16, int16, uint32, int32, int64, uint64, float32, float64`, file);
  }
  const bytesPerVoxel = type ? type.bytes : 8;
  const voxOffset = Math.max(header.vox_offset, info.version === 2 ? 544 : 352);
  const start = voxOffset + frame * count * bytesPerVoxel;
  const needed = voxOffset + info.frames * count * bytesPerVoxel;
  if (bytes.length < needed) {
    throw new FseftError(`truncated: the header promises ${needed - voxOffset} bytes of voxel data, the file has ${Math.max(0, bytes.length - voxOffset)}`, file);
  }
  let region = bytes.subarray(start, start + count * bytesPerVoxel);
  if (!info.littleEndian) {
    region = Buffer.from(region);
    swapBytesInPlace(region, bytesPerVoxel);
  }
  if (int64) {
    const view = new DataView(region.buffer, region.byteOffset, region.byteLength);
    const out = new Float64Array(count);
    for (let i = 0; i < count; i++) out[i] = Number(int64 === 'int64' ? view.getBigInt64(i * 8, true) : view.getBigUint64(i * 8, true));
    return out;
  }
  const ArrayType = type!.array;
  if (region.byteOffset % bytesPerVoxel === 0) return new ArrayType(region.buffer, region.byteOffset, count);
  const aligned = new ArrayType(count);
  new Uint8Array(aligned.buffer).set(region);
  return aligned;
}

function swapBytesInPlace(buffer: Buffer, width: number): void {
  if (width === 2) buffer.swap16();
  else if (width === 4) buffer.swap32();
  else if (width === 8) buffer.swap64();
}

function applyScaling(raw: VoxelArray, slope: number, inter: number): VoxelArray {
  if (slope === 1 && inter === 0) return raw;
  const out = new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw[i] * slope + inter;
  return out;
}

export interface WriteNiftiOptions {
  /** Datatype on disk; defaults to the data's own type. */
  datatype?: DatatypeName;
  /** Store `(value - inter) / slope` and set scl_slope/scl_inter (integer datatypes). */
  scale?: { slope: number; inter: number };
  /** Compression of `.nii.gz` (none | fast | best | level 0-9); default fast (level 1, on all cores). */
  compression?: Compression;
  description?: string;
  /** Transform codes written to the header; both default to 1 (scanner anatomical). */
  sformCode?: number;
  qformCode?: number;
}

/**
 * Writes a volume as NIfTI-1 (`.nii`, or gzip-compressed when the name ends in `.gz`), through a
 * temporary file and a rename so that no half-written file is ever left behind.
 */
export async function writeNifti(file: string, volume: Volume, options: WriteNiftiOptions = {}): Promise<void> {
  const encoded = encodeNifti(file, volume, options);
  const payload = file.endsWith('.gz') ? await gzipParallel(encoded, compressionLevel(options.compression ?? DEFAULT_COMPRESSION)) : encoded;
  await writeFileAtomic(file, payload);
}

function encodeNifti(file: string, volume: Volume, options: WriteNiftiOptions): Buffer {
  const type = options.datatype ? datatypeByName(options.datatype) : datatypeOfArray(volume.data);
  if (!type) throw new FseftError(`cannot write datatype '${options.datatype}'`, file);
  const slope = options.scale?.slope ?? 1;
  const inter = options.scale?.inter ?? 0;
  if (!(slope !== 0 && Number.isFinite(slope) && Number.isFinite(inter))) throw new FseftError(`invalid scale slope ${slope} / inter ${inter}`, file);

  const headerSize = 352;
  const buffer = Buffer.alloc(headerSize + volume.voxelCount * type.bytes);
  const view = new DataView(buffer.buffer, buffer.byteOffset, headerSize);
  const [nx, ny, nz] = volume.shape;
  const spacing = affineSpacing(volume.affine);
  const q = affineToQuaternion(volume.affine);
  view.setInt32(0, 348, true);
  buffer.write('r', 38, 'latin1');
  [3, nx, ny, nz, 1, 1, 1, 1].forEach((d, i) => view.setInt16(40 + 2 * i, d, true));
  view.setInt16(70, type.code, true);
  view.setInt16(72, type.bytes * 8, true);
  [q.qfac, spacing[0], spacing[1], spacing[2], 1, 1, 1, 1].forEach((p, i) => view.setFloat32(76 + 4 * i, p, true));
  view.setFloat32(108, headerSize, true);
  view.setFloat32(112, options.scale ? slope : 1, true);
  view.setFloat32(116, options.scale ? inter : 0, true);
  view.setUint8(123, 2 | 8); // millimetres, seconds
  buffer.write((options.description ?? 'fseft').slice(0, 79), 148, 'latin1');
  view.setInt16(252, options.qformCode ?? 1, true);
  view.setInt16(254, options.sformCode ?? 1, true);
  [q.b, q.c, q.d, volume.affine[0][3], volume.affine[1][3], volume.affine[2][3]].forEach((v, i) => view.setFloat32(256 + 4 * i, v, true));
  for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) view.setFloat32(280 + 16 * r + 4 * c, volume.affine[r][c], true);
  buffer.write('n+1\0', 344, 'latin1');

  const out = new type.array(buffer.buffer, buffer.byteOffset + headerSize, volume.voxelCount);
  const data = volume.data;
  if (!options.scale && data instanceof type.array) {
    out.set(data);
    return buffer;
  }
  for (let i = 0; i < data.length; i++) {
    let v = (data[i] - inter) / slope;
    if (type.integer) {
      v = Math.round(v);
      if (!(v >= type.min && v <= type.max)) {
        throw new FseftError(`value ${data[i]} at voxel ${i} does not fit datatype ${type.name}${options.scale ? ' with the given scale' : ''}`, file);
      }
    }
    out[i] = v;
  }
  return buffer;
}

/** The NIfTI qform quaternion of an affine (columns normalised; a negative determinant sets qfac = -1). */
function affineToQuaternion(affine: Affine): { b: number; c: number; d: number; qfac: number } {
  const spacing = affineSpacing(affine);
  const r = [0, 1, 2].map((row) => [0, 1, 2].map((col) => affine[row][col] / (spacing[col] || 1)));
  const det =
    r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1]) -
    r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0]) +
    r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
  const qfac = det < 0 ? -1 : 1;
  if (qfac < 0) for (let row = 0; row < 3; row++) r[row][2] = -r[row][2];
  let a: number, b: number, c: number, d: number;
  const trace = r[0][0] + r[1][1] + r[2][2] + 1;
  if (trace > 0.5) {
    a = 0.5 * Math.sqrt(trace);
    b = (0.25 * (r[2][1] - r[1][2])) / a;
    c = (0.25 * (r[0][2] - r[2][0])) / a;
    d = (0.25 * (r[1][0] - r[0][1])) / a;
  } else {
    const xd = 1 + r[0][0] - (r[1][1] + r[2][2]);
    const yd = 1 + r[1][1] - (r[0][0] + r[2][2]);
    const zd = 1 + r[2][2] - (r[0][0] + r[1][1]);
    if (xd > 1) {
      b = 0.5 * Math.sqrt(xd);
      c = (0.25 * (r[0][1] + r[1][0])) / b;
      d = (0.25 * (r[0][2] + r[2][0])) / b;
      a = (0.25 * (r[2][1] - r[1][2])) / b;
    } else if (yd > 1) {
      c = 0.5 * Math.sqrt(yd);
      b = (0.25 * (r[0][1] + r[1][0])) / c;
      d = (0.25 * (r[1][2] + r[2][1])) / c;
      a = (0.25 * (r[0][2] - r[2][0])) / c;
    } else {
      d = 0.5 * Math.sqrt(zd);
      b = (0.25 * (r[0][2] + r[2][0])) / d;
      c = (0.25 * (r[1][2] + r[2][1])) / d;
      a = (0.25 * (r[1][0] - r[0][1])) / d;
    }
    if (a < 0) {
      b = -b;
      c = -c;
      d = -d;
    }
  }
  return { b, c, d, qfac };
}
