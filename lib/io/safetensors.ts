import { FseftError } from '../util/errors';
import { writeFileAtomic } from '../util/atomic-write';
import { HostTensor, bfloat16ToFloat, checkedShape, elementCount, halfToFloat } from './host-tensor';
import { readFileOrThrow } from '../util/read-file';

/** A tensor to store: float32 data, or integer data stored as I64 (PyTorch index buffers). */
export interface NamedTensor {
  name: string;
  tensor: HostTensor;
  /** Store as 64-bit integers (e.g. relative_position_index, a LongTensor in PyTorch). */
  int64?: boolean;
}

/**
 * Writes tensors in the safetensors format (8-byte header length, JSON header, raw little-endian
 * data), readable by Python's `safetensors.torch.load_file`.
 */
export async function writeSafetensors(file: string, tensors: NamedTensor[], metadata: Record<string, string> = {}): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const parts: Buffer[] = [];
  for (const { name, tensor, int64 } of tensors) {
    let bytes: Buffer;
    if (int64) {
      bytes = Buffer.alloc(tensor.data.length * 8);
      tensor.data.forEach((v, i) => bytes.writeBigInt64LE(BigInt(Math.round(v)), i * 8));
    } else if (tensor.dtype === 'float32') {
      bytes = Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
    } else {
      bytes = Buffer.from(Int32Array.from(tensor.data).buffer);
    }
    header[name] = { dtype: int64 ? 'I64' : tensor.dtype === 'float32' ? 'F32' : 'I32', shape: tensor.shape, data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  await writeFileAtomic(file, Buffer.concat([prefix, Buffer.from(json), ...parts]));
}

export interface SafetensorsContents {
  tensors: Map<string, HostTensor>;
  metadata: Record<string, string>;
}

/** Reads a safetensors file (F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL) into host tensors. */
export function readSafetensors(file: string): SafetensorsContents {
  const bytes = readFileOrThrow(file);
  if (bytes.length < 8) throw new FseftError('not a safetensors file (too short)', file);
  const length = Number(bytes.readBigUInt64LE(0));
  if (length <= 0 || 8 + length > bytes.length) throw new FseftError('not a safetensors file (bad header length)', file);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(bytes.toString('utf8', 8, 8 + length));
  } catch {
    throw new FseftError('not a safetensors file (header is not JSON)', file);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw new FseftError('not a safetensors file (header is not a JSON object)', file);
  const data = bytes.subarray(8 + length);
  const tensors = new Map<string, HostTensor>();
  const ranges: Array<[number, number, string]> = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const fail = (problem: string) => new FseftError(`tensor ${JSON.stringify(name).slice(0, 80)}: ${problem}`, file);
    if (entry === null || typeof entry !== 'object') throw fail('its header entry is not an object');
    const { dtype, shape: rawShape, data_offsets: offsets } = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    let shape: number[];
    try {
      shape = checkedShape(rawShape);
    } catch (error) {
      throw fail((error as Error).message);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) throw fail(`data_offsets ${JSON.stringify(offsets)?.slice(0, 60)} are not two non-negative whole numbers`);
    const [start, end] = offsets as [number, number];
    if (start > end) throw fail(`data_offsets start ${start} after end ${end}`);
    if (end > data.length) throw fail(`runs past the end of the file (byte ${end} of ${data.length}; truncated?)`);
    const reader = typeof dtype === 'string' ? READERS[dtype] : undefined;
    if (!reader) throw fail(`unsupported dtype ${JSON.stringify(dtype)?.slice(0, 20)}`);
    const count = elementCount(shape);
    if (reader.bytes * count !== end - start) throw fail(`${end - start} bytes for ${count} ${dtype} values`);
    ranges.push([start, end, name]);
    const view = new DataView(data.buffer, data.byteOffset + start, end - start);
    const out = reader.float ? new Float32Array(count) : new Int32Array(count);
    for (let i = 0; i < count; i++) out[i] = reader.read(view, i * reader.bytes);
    tensors.set(name, { dtype: reader.float ? 'float32' : 'int32', shape, data: out });
  }
  // The format stores tensors back to back: data shared by two tensors means a forged or broken header.
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i][0] < ranges[i - 1][1]) throw new FseftError(`tensors ${ranges[i - 1][2]} and ${ranges[i][2]} overlap (bytes ${ranges[i][0]}..${ranges[i - 1][1]})`, file);
  }
  return { tensors, metadata: (header.__metadata__ as Record<string, string>) ?? {} };
}

const READERS: Record<string, { bytes: number; float: boolean; read: (v: DataView, o: number) => number }> = {
  F32: { bytes: 4, float: true, read: (v, o) => v.getFloat32(o, true) },
  F64: { bytes: 8, float: true, read: (v, o) => v.getFloat64(o, true) },
  F16: { bytes: 2, float: true, read: (v, o) => halfToFloat(v.getUint16(o, true)) },
  BF16: { bytes: 2, float: true, read: (v, o) => bfloat16ToFloat(v.getUint16(o, true)) },
  I64: { bytes: 8, float: false, read: (v, o) => Number(v.getBigInt64(o, true)) },
  I32: { bytes: 4, float: false, read: (v, o) => v.getInt32(o, true) },
  I16: { bytes: 2, float: false, read: (v, o) => v.getInt16(o, true) },
  I8: { bytes: 1, float: false, read: (v, o) => v.getInt8(o) },
  U8: { bytes: 1, float: false, read: (v, o) => v.getUint8(o) },
  BOOL: { bytes: 1, float: false, read: (v, o) => v.getUint8(o) },
};
