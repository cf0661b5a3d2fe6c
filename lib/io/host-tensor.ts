/** A tensor in host memory, independent of any compute backend: row-major (C order) data. */
export interface HostTensor {
  dtype: 'float32' | 'int32';
  shape: number[];
  data: Float32Array | Int32Array;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * A shape read from a file: a list of non-negative whole numbers whose product is a safe integer.
 * Returns the shape; throws a plain Error saying what is wrong (callers add the file).
 */
export function checkedShape(shape: unknown, what = 'shape'): number[] {
  if (!Array.isArray(shape)) throw new Error(`${what} ${JSON.stringify(shape)?.slice(0, 60)} is not a list of sizes`);
  let count = 1;
  for (const size of shape) {
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new Error(`${what} ${JSON.stringify(shape).slice(0, 60)} holds ${JSON.stringify(size)?.slice(0, 20)}, not a non-negative whole number`);
    count *= size;
  }
  if (!Number.isSafeInteger(count)) throw new Error(`${what} ${JSON.stringify(shape).slice(0, 60)} has more elements than can be counted`);
  return shape as number[];
}

/** Permutes the axes of a row-major tensor: output axis i is input axis `order[i]`. */
export function transposeHost(tensor: HostTensor, order: number[]): HostTensor {
  const rank = tensor.shape.length;
  const shape = order.map((a) => tensor.shape[a]);
  const inStrides = new Array<number>(rank);
  for (let a = rank - 1, s = 1; a >= 0; a--) (inStrides[a] = s), (s *= tensor.shape[a]);
  const stepOf = order.map((a) => inStrides[a]);
  const out = new (tensor.data.constructor as new (n: number) => Float32Array | Int32Array)(tensor.data.length);
  const index = new Array<number>(rank).fill(0);
  let source = 0;
  for (let o = 0; o < out.length; o++) {
    out[o] = tensor.data[source];
    for (let a = rank - 1; a >= 0; a--) {
      index[a]++;
      source += stepOf[a];
      if (index[a] < shape[a]) break;
      source -= stepOf[a] * shape[a];
      index[a] = 0;
    }
  }
  return { dtype: tensor.dtype, shape, data: out };
}

/** IEEE 754 half precision (binary16) bits to a number. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

const bfloatView = new DataView(new ArrayBuffer(4));
/** bfloat16 bits (the top half of a float32) to a number. */
export function bfloat16ToFloat(b: number): number {
  bfloatView.setUint32(0, b << 16);
  return bfloatView.getFloat32(0);
}
