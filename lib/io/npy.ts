import { FseftError } from '../util/errors';
import { writeFileAtomic } from '../util/atomic-write';
import { HostTensor, checkedShape, elementCount, halfToFloat, transposeHost } from './host-tensor';
import { readFileOrThrow } from '../util/read-file';

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

const DESCRIPTORS: Record<string, { bytes: number; read: (v: DataView, o: number) => number; float: boolean }> = {
  '<f4': { bytes: 4, read: (v, o) => v.getFloat32(o, true), float: true },
  '<f8': { bytes: 8, read: (v, o) => v.getFloat64(o, true), float: true },
  '<f2': { bytes: 2, read: (v, o) => halfToFloat(v.getUint16(o, true)), float: true },
  '<i8': { bytes: 8, read: (v, o) => Number(v.getBigInt64(o, true)), float: false },
  '<i4': { bytes: 4, read: (v, o) => v.getInt32(o, true), float: false },
  '<i2': { bytes: 2, read: (v, o) => v.getInt16(o, true), float: false },
  '|i1': { bytes: 1, read: (v, o) => v.getInt8(o), float: false },
  '|u1': { bytes: 1, read: (v, o) => v.getUint8(o), float: false },
  '|b1': { bytes: 1, read: (v, o) => v.getUint8(o), float: false },
};

/** Reads a NumPy .npy file (little-endian numeric dtypes, C or Fortran order) into a row-major tensor. */
export function readNpy(file: string): HostTensor {
  const bytes = readFileOrThrow(file);
  if (bytes.length < 10 || !bytes.subarray(0, 6).equals(MAGIC)) throw new FseftError('not a .npy file (magic \\x93NUMPY missing)', file);
  const major = bytes[6];
  if (major < 1 || major > 3) throw new FseftError(`unsupported .npy format version ${major} (1 to 3 are known)`, file);
  const headerLength = major === 1 ? bytes.readUInt16LE(8) : bytes.length >= 12 ? bytes.readUInt32LE(8) : Infinity;
  const headerStart = major === 1 ? 10 : 12;
  if (headerStart + headerLength > bytes.length) throw new FseftError(`truncated: the header claims ${headerLength} bytes, the file has ${bytes.length - headerStart} after the prefix`, file);
  const header = bytes.toString(major === 3 ? 'utf8' : 'latin1', headerStart, headerStart + headerLength);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || shapeText === undefined) throw new FseftError(`unreadable .npy header ${JSON.stringify(header.slice(0, 80))}${header.length > 80 ? '...' : ''}`, file);
  const type = DESCRIPTORS[descr.replace(/^=/, '<')];
  if (!type) throw new FseftError(`unsupported .npy dtype '${descr}' (supported: ${Object.keys(DESCRIPTORS).join(', ')})`, file);
  const sizes = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  let shape: number[];
  try {
    shape = checkedShape(sizes);
  } catch (error) {
    throw new FseftError(`unreadable .npy header: ${(error as Error).message}`, file);
  }
  const count = elementCount(shape);
  if (count === 0) throw new FseftError(`the array holds no elements (shape (${shape.join(', ')}))`, file);
  const dataStart = headerStart + headerLength;
  if (bytes.length < dataStart + count * type.bytes) throw new FseftError(`truncated: ${count} elements of ${descr} need ${count * type.bytes} bytes`, file);
  const view = new DataView(bytes.buffer, bytes.byteOffset + dataStart, count * type.bytes);
  const data = type.float ? new Float32Array(count) : new Int32Array(count);
  if (descr === '<f4' && (bytes.byteOffset + dataStart) % 4 === 0) data.set(new Float32Array(bytes.buffer, bytes.byteOffset + dataStart, count));
  else for (let i = 0; i < count; i++) data[i] = type.read(view, i * type.bytes);
  const tensor: HostTensor = { dtype: type.float ? 'float32' : 'int32', shape, data };
  if (!fortran || shape.length < 2) return tensor;
  // Fortran order: the data is the transpose's C-order data.
  const reversed = shape.slice().reverse();
  return transposeHost({ ...tensor, shape: reversed }, reversed.map((_, i) => reversed.length - 1 - i));
}

/** Writes a float32 (or int32) tensor as .npy (C order), atomically. */
export async function writeNpy(file: string, tensor: HostTensor): Promise<void> {
  const descr = tensor.dtype === 'float32' ? '<f4' : '<i4';
  const shape = tensor.shape.length === 1 ? `(${tensor.shape[0]},)` : `(${tensor.shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const unpadded = 10 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const prefix = Buffer.alloc(10);
  MAGIC.copy(prefix);
  prefix[6] = 1;
  prefix[7] = 0;
  prefix.writeUInt16LE(header.length, 8);
  await writeFileAtomic(file, Buffer.concat([prefix, Buffer.from(header, 'latin1'), Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength)]));
}
