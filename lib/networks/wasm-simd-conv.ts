import { AssembledFunction, ValueType, assembleModule, localFrame, op } from './wasm-assembler';

/**
 * A 3 x 3 x 3 convolution (stride 1) as a 128-bit SIMD function on tfjs-wasm's memory, over a
 * zero-padded channels-last input. Each output row (d, h) goes in blocks of up to 6 voxels along
 * W times 8 (then 4) output channels: 12 accumulators, 2 filter vectors and one broadcast input
 * value, 15 of the 16 SIMD registers V8 has on x64. For a tap row (kd, kh) the three kw taps
 * and the input channels are one contiguous run of 3 Cin floats, in the padded input as in the
 * filter, so the inner loop walks two pointers. The filter comes packed in panels of 8 output
 * channels (then one of 4), each [27 Cin, 8] row-major, so that it is read in order. The input
 * channel count is compiled in (one module per Cin), so the 6 voxels' inputs are constant offsets.
 *
 * With relaxed SIMD the multiply-add is f32x4.relaxed_madd (one fused instruction where the
 * processor has FMA, about 1.3x the products' rate measured here); without, a multiply and an add.
 * XNNPACK's conv2d in tfjs-wasm reaches 27 GFLOP/s per thread on this kind of layer; this loop
 * 40 (multiply and add) to 50 (relaxed madd).
 */

const WIDE = 6;
type Local = 'xp' | 'w' | 'y' | 'h' | 'width' | 'cout' | 'row0' | 'row1'
  | 'row' | 'd' | 'hh' | 'w0' | 'j' | 'cout4' | 'rowStride' | 'planeStride' | 'tap' | 'aTap' | 'a' | 'aEnd' | 'b' | 'out' | 'tail'
  | 'b0' | 'b1' | 's' | 'x0' | 'x1' | 'x2' | 'x3' | 'x4' | 'x5' | 'x6' | 'x7' | 'x8' | 'x9' | 'x10' | 'x11';

const PARAMS: Array<[Local, ValueType]> = (['xp', 'w', 'y', 'h', 'width', 'cout', 'row0', 'row1'] as Local[]).map((n) => [n, 'i32']);
const LOCALS: Array<[Local, ValueType]> = [
  ...(['row', 'd', 'hh', 'w0', 'j', 'cout4', 'rowStride', 'planeStride', 'tap', 'aTap', 'a', 'aEnd', 'b', 'out', 'tail'] as Local[]).map((n): [Local, ValueType] => [n, 'i32']),
  ...(['b0', 'b1', 's', 'x0', 'x1', 'x2', 'x3', 'x4', 'x5', 'x6', 'x7', 'x8', 'x9', 'x10', 'x11'] as Local[]).map((n): [Local, ValueType] => [n, 'v128']),
];
const { index: L, params: PARAM_TYPES, locals: LOCAL_TYPES } = localFrame(PARAMS, LOCALS);
const ACC = [L.x0, L.x1, L.x2, L.x3, L.x4, L.x5, L.x6, L.x7, L.x8, L.x9, L.x10, L.x11];

/** f32x4.relaxed_madd: a b + c for a, b, c on the stack. */
const RELAXED_MADD = [0xfd, 0x85, 0x02];

function multiplyAdd(fused: boolean, accumulator: number, b: number): number[][] {
  return fused
    ? [op.get(L.s), op.get(b), op.get(accumulator), RELAXED_MADD, op.set(accumulator)]
    : [op.get(accumulator), op.get(L.s), op.get(b), op.f32x4Mul, op.f32x4Add, op.set(accumulator)];
}

/**
 * One block of `voxels` voxels from w0 and `vectors` x 4 output channels from j: the nine tap rows'
 * runs of 3 Cin, then the stores.
 */
function block(cin: number, voxels: number, vectors: 1 | 2, fused: boolean): number[][] {
  const acc = (r: number, v: number) => ACC[r * 2 + v];
  const pairs = Array.from({ length: voxels }, (_, r) => Array.from({ length: vectors }, (_, v) => [r, v])).flat();
  const perInput = [
    ...Array.from({ length: vectors }, (_, v) => [op.get(L.b), op.v128Load(16 * v), op.set(v === 0 ? L.b0 : L.b1)]).flat(),
    ...Array.from({ length: voxels }, (_, r) => [
      op.get(L.a), op.v128Load32Splat(4 * cin * r), op.set(L.s),
      ...Array.from({ length: vectors }, (_, v) => multiplyAdd(fused, acc(r, v), v === 0 ? L.b0 : L.b1)).flat(),
    ]).flat(),
    op.get(L.b), op.i32(16 * vectors), op.i32Add, op.set(L.b),
    op.get(L.a), op.i32(4), op.i32Add, op.tee(L.a), op.get(L.aEnd), op.i32LtU, op.brIf(0),
  ];
  return [
    ...pairs.map(([r, v]) => [op.v128Zero, op.set(acc(r, v))]).flat(),
    // aTap = xp + d planeStride + hh rowStride + w0 Cin 4; b = the panel of columns j..: w + 27 Cin 4 j
    op.get(L.xp), op.get(L.d), op.get(L.planeStride), op.i32Mul, op.i32Add, op.get(L.hh), op.get(L.rowStride), op.i32Mul, op.i32Add,
    op.get(L.w0), op.i32(4 * cin), op.i32Mul, op.i32Add, op.set(L.aTap),
    op.get(L.w), op.get(L.j), op.i32(108 * cin), op.i32Mul, op.i32Add, op.set(L.b),
    op.i32(0), op.set(L.tap),
    op.loop(
      op.get(L.aTap), op.tee(L.a), op.i32(12 * cin), op.i32Add, op.set(L.aEnd),
      op.loop(...perInput),
      // next tap row: kh + 1, or kd + 1 and kh = 0 after every third (b runs on through the panel)
      op.get(L.aTap), op.get(L.rowStride), op.i32Add, op.set(L.aTap),
      op.get(L.tap), op.i32(1), op.i32Add, op.tee(L.tap), op.i32(3), op.i32RemU, op.i32(0), op.i32Eq,
      op.if_(op.get(L.aTap), op.get(L.planeStride), op.get(L.rowStride), op.i32(3), op.i32Mul, op.i32Sub, op.i32Add, op.set(L.aTap)),
      op.get(L.tap), op.i32(9), op.i32LtU, op.brIf(0),
    ),
    // out = y + ((row W + w0) cout + j) 4
    op.get(L.y), op.get(L.row), op.get(L.width), op.i32Mul, op.get(L.w0), op.i32Add, op.get(L.cout), op.i32Mul, op.get(L.j), op.i32Add, op.i32(4), op.i32Mul, op.i32Add, op.set(L.out),
    ...Array.from({ length: voxels }, (_, r) => [
      ...Array.from({ length: vectors }, (_, v) => [op.get(L.out), op.get(acc(r, v)), op.v128Store(16 * v)]).flat(),
      op.get(L.out), op.get(L.cout4), op.i32Add, op.set(L.out),
    ]).flat(),
  ];
}

/** Every channel block (8 wide while they last, then one 4 wide) of one block of `voxels` voxels. */
function channelBlocks(cin: number, voxels: number, fused: boolean): number[][] {
  return [
    op.i32(0), op.set(L.j),
    op.block(op.loop(
      op.get(L.j), op.i32(8), op.i32Add, op.get(L.cout), op.i32GtU, op.brIf(1),
      ...block(cin, voxels, 2, fused),
      op.get(L.j), op.i32(8), op.i32Add, op.set(L.j),
      op.br(0),
    )),
    op.get(L.j), op.get(L.cout), op.i32LtU,
    op.if_(...block(cin, voxels, 1, fused)),
  ];
}

function convolutionFunction(cin: number, fused: boolean): AssembledFunction {
  const tails = Array.from({ length: WIDE - 1 }, (_, i) => i + 1);
  const body = [
    op.get(L.cout), op.i32(4), op.i32Mul, op.set(L.cout4),
    op.get(L.width), op.i32(2), op.i32Add, op.i32(4 * cin), op.i32Mul, op.set(L.rowStride),
    op.get(L.h), op.i32(2), op.i32Add, op.get(L.rowStride), op.i32Mul, op.set(L.planeStride),
    op.get(L.width), op.i32(WIDE), op.i32RemU, op.set(L.tail),
    op.get(L.row0), op.set(L.row),
    op.block(op.loop(
      op.get(L.row), op.get(L.row1), op.i32GeU, op.brIf(1),
      op.get(L.row), op.get(L.h), op.i32DivU, op.set(L.d),
      op.get(L.row), op.get(L.h), op.i32RemU, op.set(L.hh),
      op.i32(0), op.set(L.w0),
      op.block(op.loop(
        op.get(L.w0), op.i32(WIDE), op.i32Add, op.get(L.width), op.i32GtU, op.brIf(1),
        ...channelBlocks(cin, WIDE, fused),
        op.get(L.w0), op.i32(WIDE), op.i32Add, op.set(L.w0),
        op.br(0),
      )),
      ...tails.map((t) => [op.get(L.tail), op.i32(t), op.i32Eq, op.if_(...channelBlocks(cin, t, fused))]).flat(),
      op.get(L.row), op.i32(1), op.i32Add, op.set(L.row),
      op.br(0),
    )),
  ].flat();
  return { name: 'convolveRows', params: PARAM_TYPES, locals: LOCAL_TYPES, body };
}

export interface SimdConvolutionExports {
  /**
   * y[row, w, :] for rows row0 <= row < row1 (row = d H + h) of y [D, H, W, Cout] from the padded
   * input xp [D + 2, H + 2, W + 2, Cin] and the packed filter w (panels [27 Cin, 8] of output
   * channels, then [27 Cin, 4]: packFilterPanels), float32 at those byte addresses; Cout a multiple of 4.
   */
  convolveRows(xp: number, w: number, y: number, h: number, width: number, cout: number, row0: number, row1: number): void;
}

/** The module's bytes for `cin` input channels, fused (relaxed SIMD) or not, on a shared memory or not. */
export function simdConvolutionModuleBytes(cin: number, fused: boolean, shared: boolean): Uint8Array {
  return assembleModule({ module: 'env', name: 'memory', shared, maximumPages: 65536 }, [convolutionFunction(cin, fused)]);
}

/** A module that uses f32x4.relaxed_madd, to ask the runtime whether it takes relaxed SIMD. */
export function relaxedSimdProbeBytes(): Uint8Array {
  const { index, params, locals } = localFrame([['p', 'i32']] as Array<['p', ValueType]>, [['v', 'v128']] as Array<['v', ValueType]>);
  const body = [op.get(index.p), op.v128Load(), op.tee(index.v), op.get(index.v), op.get(index.v), RELAXED_MADD, op.set(index.v)].flat();
  return assembleModule({ module: 'env', name: 'memory', shared: false, maximumPages: 1 }, [{ name: 'probe', params, locals, body }]);
}
