import type { VoxelArray } from './volume';

export type DatatypeName = 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32' | 'float32' | 'float64';

type TypedArrayConstructor = {
  new (length: number): VoxelArray;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): VoxelArray;
  readonly BYTES_PER_ELEMENT: number;
};

export interface DatatypeInfo {
  name: DatatypeName;
  code: number;
  bytes: number;
  array: TypedArrayConstructor;
  integer: boolean;
  min: number;
  max: number;
}

/** The NIfTI datatypes the kit reads and writes, by NIfTI datatype code. */
export const DATATYPES: readonly DatatypeInfo[] = [
  { name: 'uint8', code: 2, bytes: 1, array: Uint8Array, integer: true, min: 0, max: 255 },
  { name: 'int16', code: 4, bytes: 2, array: Int16Array, integer: true, min: -32768, max: 32767 },
  { name: 'int32', code: 8, bytes: 4, array: Int32Array, integer: true, min: -2147483648, max: 2147483647 },
  { name: 'float32', code: 16, bytes: 4, array: Float32Array, integer: false, min: -3.4028234663852886e38, max: 3.4028234663852886e38 },
  { name: 'float64', code: 64, bytes: 8, array: Float64Array, integer: false, min: -Number.MAX_VALUE, max: Number.MAX_VALUE },
  { name: 'int8', code: 256, bytes: 1, array: Int8Array, integer: true, min: -128, max: 127 },
  { name: 'uint16', code: 512, bytes: 2, array: Uint16Array, integer: true, min: 0, max: 65535 },
  { name: 'uint32', code: 768, bytes: 4, array: Uint32Array, integer: true, min: 0, max: 4294967295 },
];

/** 64-bit integer codes: read (converted to float64, exact up to 2^53), never written. */
export const INT64_CODES: Record<number, 'int64' | 'uint64'> = { 1024: 'int64', 1280: 'uint64' };

const OTHER_CODE_NAMES: Record<number, string> = {
  1: 'binary',
  32: 'complex64',
  128: 'rgb24',
  1536: 'float128',
  1792: 'complex128',
  2048: 'complex256',
  2304: 'rgba32',
};

export function datatypeByCode(code: number): DatatypeInfo | undefined {
  return DATATYPES.find((d) => d.code === code);
}

export function datatypeByName(name: string): DatatypeInfo | undefined {
  return DATATYPES.find((d) => d.name === name);
}

export function datatypeOfArray(data: VoxelArray): DatatypeInfo {
  const info = DATATYPES.find((d) => data instanceof d.array);
  if (!info) throw new Error('unsupported typed array');
  return info;
}

export function describeDatatypeCode(code: number): string {
  return datatypeByCode(code)?.name ?? INT64_CODES[code] ?? OTHER_CODE_NAMES[code] ?? `unknown code ${code}`;
}
