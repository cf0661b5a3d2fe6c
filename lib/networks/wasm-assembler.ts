/**
 * A small WebAssembly assembler: enough of the binary format to build a module of numeric
 * functions over an imported memory (i32, f32, f64 and 128-bit SIMD instructions, blocks and
 * loops). The kit's SIMD kernels are written with it, so that they compile synchronously at run
 * time from TypeScript, with no toolchain and no binary checked in.
 */

export type ValueType = 'i32' | 'f32' | 'f64' | 'v128';

const VALUE_TYPE: Record<ValueType, number> = { i32: 0x7f, f32: 0x7d, f64: 0x7c, v128: 0x7b };

export interface AssembledFunction {
  name: string;
  params: ValueType[];
  /** Locals after the parameters: local i + params.length. */
  locals: ValueType[];
  body: number[];
}

export interface MemoryImport {
  module: string;
  name: string;
  /** Must match the memory it will be given: a shared memory needs a maximum. */
  shared: boolean;
  /** In 64 KiB pages. */
  maximumPages: number;
}

export function unsignedLeb(value: number): number[] {
  if (!(Number.isInteger(value) && value >= 0 && value <= 0xffffffff)) throw new Error(`unsigned LEB128: ${value} is not a 32-bit unsigned integer`);
  const bytes: number[] = [];
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    bytes.push(byte);
  } while (value > 0);
  return bytes;
}

export function signedLeb(value: number): number[] {
  if (!(Number.isInteger(value) && value >= -0x80000000 && value <= 0x7fffffff)) throw new Error(`signed LEB128: ${value} is not a 32-bit integer`);
  const bytes: number[] = [];
  for (;;) {
    const byte = value & 0x7f;
    value >>= 7;
    const done = (value === 0 && (byte & 0x40) === 0) || (value === -1 && (byte & 0x40) !== 0);
    bytes.push(done ? byte : byte | 0x80);
    if (done) return bytes;
  }
}

function name(text: string): number[] {
  const bytes = [...Buffer.from(text, 'utf8')];
  return [...unsignedLeb(bytes.length), ...bytes];
}

function vector(items: number[][]): number[] {
  return [...unsignedLeb(items.length), ...items.flat()];
}

function section(id: number, content: number[]): number[] {
  return [id, ...unsignedLeb(content.length), ...content];
}

/** A module importing one memory and exporting every function by its name. */
export function assembleModule(memory: MemoryImport, functions: AssembledFunction[]): Uint8Array {
  const signatures: string[] = [];
  const typeIndex = functions.map((f) => {
    const key = `${f.params.join(',')}->`;
    if (!signatures.includes(key)) signatures.push(key);
    return signatures.indexOf(key);
  });
  const types = signatures.map((key) => {
    const params = key.slice(0, -2).split(',').filter(Boolean) as ValueType[];
    return [0x60, ...vector(params.map((t) => [VALUE_TYPE[t]])), 0];
  });
  const limits = memory.shared ? [0x03, ...unsignedLeb(1), ...unsignedLeb(memory.maximumPages)] : [0x00, ...unsignedLeb(1)];
  const imports = [[...name(memory.module), ...name(memory.name), 0x02, ...limits]];
  const exports = functions.map((f, i) => [...name(f.name), 0x00, ...unsignedLeb(i)]);
  for (const f of functions) {
    const bad = f.body.findIndex((b) => !(Number.isInteger(b) && b >= 0 && b <= 255));
    if (bad >= 0) throw new Error(`wasm assembler: ${f.name}'s body holds ${JSON.stringify(f.body[bad])} at ${bad}, not a byte (an instruction list left nested?)`);
  }
  const code = functions.map((f) => {
    const locals = f.locals.map((t) => [...unsignedLeb(1), VALUE_TYPE[t]]);
    const body = [...vector(locals), ...f.body, 0x0b];
    return [...unsignedLeb(body.length), ...body];
  });
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vector(types)),
    ...section(2, vector(imports)),
    ...section(3, vector(typeIndex.map((i) => unsignedLeb(i)))),
    ...section(7, vector(exports)),
    ...section(10, vector(code)),
  ]);
}

/**
 * Local indices by name (parameters first) and the value types of parameters and locals, for an
 * AssembledFunction's params and locals.
 */
export function localFrame<P extends string, L extends string>(params: Array<[P, ValueType]>, locals: Array<[L, ValueType]>) {
  const index = {} as Record<P | L, number>;
  [...params, ...locals].forEach(([n], i) => (index[n] = i));
  return { index, params: params.map(([, t]) => t), locals: locals.map(([, t]) => t) };
}

function simd(opcode: number, ...immediates: number[]): number[] {
  return [0xfd, ...unsignedLeb(opcode), ...immediates];
}

/** Memory immediates: alignment as log2 bytes, then a constant offset. */
function memarg(align: number, offset: number): number[] {
  return [...unsignedLeb(align), ...unsignedLeb(offset)];
}

/** Instructions, each as its bytes. Control instructions take their bodies as arrays. */
export const op = {
  get: (local: number) => [0x20, ...unsignedLeb(local)],
  set: (local: number) => [0x21, ...unsignedLeb(local)],
  tee: (local: number) => [0x22, ...unsignedLeb(local)],
  i32: (value: number) => [0x41, ...signedLeb(value)],
  f32: (value: number) => {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    return [0x43, ...bytes];
  },
  i32Add: [0x6a],
  i32Sub: [0x6b],
  i32Mul: [0x6c],
  i32LtU: [0x49],
  i32GeU: [0x4f],
  i32GtU: [0x4b],
  i32Eq: [0x46],
  i32DivU: [0x6e],
  i32RemU: [0x70],
  f32Load: (offset = 0) => [0x2a, ...memarg(2, offset)],
  f32Store: (offset = 0) => [0x38, ...memarg(2, offset)],
  f32Add: [0x92],
  f32Sub: [0x93],
  i32And: [0x71],
  f32Mul: [0x94],
  /** c ? a : b for a, b, c on the stack. */
  select: [0x1b],
  /** block ... end; `br depth` inside leaves it. */
  block: (...body: number[][]) => [0x02, 0x40, ...body.flat(), 0x0b],
  /** loop ... end; `br depth` inside jumps back to its start. */
  loop: (...body: number[][]) => [0x03, 0x40, ...body.flat(), 0x0b],
  /** if ... end on the i32 on the stack (no else, no result); `br depth` inside counts it as a block. */
  if_: (...body: number[][]) => [0x04, 0x40, ...body.flat(), 0x0b],
  ifElse: (then: number[][], otherwise: number[][]) => [0x04, 0x40, ...then.flat(), 0x05, ...otherwise.flat(), 0x0b],
  br: (depth: number) => [0x0c, ...unsignedLeb(depth)],
  brIf: (depth: number) => [0x0d, ...unsignedLeb(depth)],
  /** The value on the stack's address plus `offset`, 16 bytes. */
  v128Load: (offset = 0) => simd(0x00, ...memarg(4, offset)),
  v128Store: (offset = 0) => simd(0x0b, ...memarg(4, offset)),
  v128Zero: simd(0x0c, ...new Array(16).fill(0)),
  /** A float32 at the address on the stack plus `offset`, in all four lanes. */
  v128Load32Splat: (offset = 0) => simd(0x09, ...memarg(2, offset)),
  /** The upper two lanes of a f32x4 moved to the lower two (for promote_low). */
  f32x4UpperToLower: simd(0x0d, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7),
  f32x4Splat: simd(0x13),
  f32x4ExtractLane: (lane: number) => simd(0x1f, lane),
  f32x4Gt: simd(0x44),
  v128Bitselect: simd(0x52),
  f64x2PromoteLow: simd(0x5f),
  f32x4Add: simd(0xe4),
  f32x4Sub: simd(0xe5),
  f32x4Mul: simd(0xe6),
  f32x4Sqrt: simd(0xe3),
  f32x4Div: simd(0xe7),
  f32x4Abs: simd(0xe0),
  f32x4Min: simd(0xe8),
  /** Rounds each lane to the nearest integer, ties to even. */
  f32x4Nearest: simd(0x6a),
  /** `value` in all four lanes, as a constant. */
  f32x4Const: (value: number) => {
    const bytes = new Uint8Array(16);
    const view = new DataView(bytes.buffer);
    for (let lane = 0; lane < 4; lane++) view.setFloat32(4 * lane, value, true);
    return simd(0x0c, ...bytes);
  },
  /** Float lanes to int32, saturating. */
  i32x4TruncSatF32x4S: simd(0xf8),
  i32x4Add: simd(0xae),
  /** Each int32 lane shifted left by the i32 on the stack. */
  i32x4Shl: simd(0xab),
  i32x4Splat: simd(0x11),
  f64x2Add: simd(0xf0),
  f64x2Mul: simd(0xf2),
};

/** Emits `body` for address `pointer` from `start` while it stays below `end`, stepping by `step` (a do-while: the caller checks start < end). */
export function forEachAddress(pointer: number, end: number, step: number[], body: number[][]): number[] {
  return op.loop(...body, op.get(pointer), step, op.i32Add, op.tee(pointer), op.get(end), op.i32LtU, op.brIf(0));
}
