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
/** Taps per tap row a run covers: 3 for the direct convolution (kw = 0, 1, 2), 1 for a Winograd component. */
export type Taps = 3 | 1;
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
function block(cin: number, taps: Taps, voxels: number, vectors: 1 | 2, fused: boolean): number[][] {
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
    // aTap = xp + d planeStride + hh rowStride + w0 Cin 4; b = the panel of columns j..: w + 9 taps Cin 4 j
    op.get(L.xp), op.get(L.d), op.get(L.planeStride), op.i32Mul, op.i32Add, op.get(L.hh), op.get(L.rowStride), op.i32Mul, op.i32Add,
    op.get(L.w0), op.i32(4 * cin), op.i32Mul, op.i32Add, op.set(L.aTap),
    op.get(L.w), op.get(L.j), op.i32(36 * taps * cin), op.i32Mul, op.i32Add, op.set(L.b),
    op.i32(0), op.set(L.tap),
    op.loop(
      op.get(L.aTap), op.tee(L.a), op.i32(4 * taps * cin), op.i32Add, op.set(L.aEnd),
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
function channelBlocks(cin: number, taps: Taps, voxels: number, fused: boolean): number[][] {
  return [
    op.i32(0), op.set(L.j),
    op.block(op.loop(
      op.get(L.j), op.i32(8), op.i32Add, op.get(L.cout), op.i32GtU, op.brIf(1),
      ...block(cin, taps, voxels, 2, fused),
      op.get(L.j), op.i32(8), op.i32Add, op.set(L.j),
      op.br(0),
    )),
    op.get(L.j), op.get(L.cout), op.i32LtU,
    op.if_(...block(cin, taps, voxels, 1, fused)),
  ];
}

function convolutionFunction(cin: number, taps: Taps, fused: boolean): AssembledFunction {
  const tails = Array.from({ length: WIDE - 1 }, (_, i) => i + 1);
  const body = [
    op.get(L.cout), op.i32(4), op.i32Mul, op.set(L.cout4),
    // a row of the padded input holds width + 2 voxels; one of a Winograd component, width tiles
    op.get(L.width), op.i32(taps === 3 ? 2 : 0), op.i32Add, op.i32(4 * cin), op.i32Mul, op.set(L.rowStride),
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
        ...channelBlocks(cin, taps, WIDE, fused),
        op.get(L.w0), op.i32(WIDE), op.i32Add, op.set(L.w0),
        op.br(0),
      )),
      ...tails.map((t) => [op.get(L.tail), op.i32(t), op.i32Eq, op.if_(...channelBlocks(cin, taps, t, fused))]).flat(),
      op.get(L.row), op.i32(1), op.i32Add, op.set(L.row),
      op.br(0),
    )),
  ].flat();
  return { name: 'convolveRows', params: PARAM_TYPES, locals: LOCAL_TYPES, body };
}

/** A Winograd transform of one tile: `prepare` sets temporaries, then each value is left on the stack by its instructions. */
interface TileTransform {
  prepare: number[][];
  values: number[][][];
}

const sub = (x: number, y: number) => [op.get(x), op.get(y), op.f32x4Sub];
const add = (x: number, y: number) => [op.get(x), op.get(y), op.f32x4Add];
const times = (x: number, factor: number) => [op.get(x), op.f32x4Const(factor), op.f32x4Mul];

/**
 * B^T d for inputs d (tile + 2 locals), with temporaries t (4 locals). F(2, 3): d0 - d2, d1 + d2,
 * d2 - d1, d1 - d3. F(4, 3) (Lavin and Gray): 4 d0 - 5 d2 + d4, (d4 - 4 d2) +- (d3 - 4 d1),
 * (d4 - d2) +- 2 (d3 - d1), 4 d1 - 5 d3 + d5.
 */
function inputTransform(tile: 2 | 4, d: number[], [a, b, c, e]: number[]): TileTransform {
  if (tile === 2) return { prepare: [], values: [sub(d[0], d[2]), add(d[1], d[2]), sub(d[2], d[1]), sub(d[1], d[3])] };
  return {
    prepare: [
      op.get(d[4]), ...times(d[2], 4), op.f32x4Sub, op.set(a),
      op.get(d[3]), ...times(d[1], 4), op.f32x4Sub, op.set(b),
      ...sub(d[4], d[2]), op.set(c),
      ...sub(d[3], d[1]), op.set(e),
    ],
    values: [
      // 4 (d0 - d2) + (d4 - d2)
      [...sub(d[0], d[2]), op.f32x4Const(4), op.f32x4Mul, op.get(c), op.f32x4Add],
      add(a, b),
      sub(a, b),
      [op.get(c), ...times(e, 2), op.f32x4Add],
      [op.get(c), ...times(e, 2), op.f32x4Sub],
      // 4 (d1 - d3) + (d5 - d3)
      [...sub(d[5], d[3]), ...times(e, 4), op.f32x4Sub],
    ],
  };
}

/**
 * A^T m for products m (tile + 2 locals), with temporaries t (4 locals). F(2, 3): m0 + m1 + m2,
 * m1 - m2 - m3. F(4, 3): with p, q = m1 +- m2 and r, s = m3 +- m4: m0 + p + r, q + 2 s, p + 4 r,
 * q + 8 s + m5.
 */
function outputTransform(tile: 2 | 4, m: number[], [p, q, r, s]: number[]): TileTransform {
  if (tile === 2) return { prepare: [], values: [[...add(m[0], m[1]), op.get(m[2]), op.f32x4Add], [...sub(m[1], m[2]), op.get(m[3]), op.f32x4Sub]] };
  return {
    prepare: [...add(m[1], m[2]), op.set(p), ...sub(m[1], m[2]), op.set(q), ...add(m[3], m[4]), op.set(r), ...sub(m[3], m[4]), op.set(s)],
    values: [
      [...add(m[0], p), op.get(r), op.f32x4Add],
      [op.get(q), ...times(s, 2), op.f32x4Add],
      [op.get(p), ...times(r, 4), op.f32x4Add],
      [op.get(q), ...times(s, 8), op.f32x4Add, op.get(m[5]), op.f32x4Add],
    ],
  };
}

const TILE_VECTORS = ['v0', 'v1', 'v2', 'v3', 'v4', 'v5', 't0', 't1', 't2', 't3'] as const;

/**
 * Winograd F(tile, 3) along W, input side: for padded rows r0 <= r < r1 of xp [rows, tile tiles +
 * 2, Cin] writes the tile + 2 components of every tile i (inputs at columns tile i .. tile i +
 * tile + 1; inputTransform) to u, component k at byte offset k `comp`, each [rows, tiles, Cin].
 */
function winogradInputFunction(cin: number, tile: 2 | 4): AssembledFunction {
  type N = 'xp' | 'u' | 'tiles' | 'comp' | 'r0' | 'r1' | 'src' | 'dst' | 'end' | 'rowEnd' | 'tileEnd' | (typeof TILE_VECTORS)[number];
  const { index: V, params, locals } = localFrame<N, N>(
    (['xp', 'u', 'tiles', 'comp', 'r0', 'r1'] as N[]).map((n): [N, ValueType] => [n, 'i32']),
    [...(['src', 'dst', 'end', 'rowEnd', 'tileEnd'] as N[]).map((n): [N, ValueType] => [n, 'i32']), ...TILE_VECTORS.map((n): [N, ValueType] => [n, 'v128'])],
  );
  const d = [V.v0, V.v1, V.v2, V.v3, V.v4, V.v5].slice(0, tile + 2);
  const { prepare, values } = inputTransform(tile, d, [V.t0, V.t1, V.t2, V.t3]);
  const body = [
    op.get(V.xp), op.get(V.r0), op.get(V.tiles), op.i32(tile), op.i32Mul, op.i32(2), op.i32Add, op.i32Mul, op.i32(4 * cin), op.i32Mul, op.i32Add, op.set(V.src),
    op.get(V.u), op.get(V.r0), op.get(V.tiles), op.i32Mul, op.i32(4 * cin), op.i32Mul, op.i32Add, op.set(V.dst),
    op.get(V.u), op.get(V.r1), op.get(V.tiles), op.i32Mul, op.i32(4 * cin), op.i32Mul, op.i32Add, op.set(V.end),
    op.get(V.dst), op.get(V.end), op.i32LtU,
    op.if_(op.loop(
      op.get(V.dst), op.get(V.tiles), op.i32(4 * cin), op.i32Mul, op.i32Add, op.set(V.rowEnd),
      op.loop(
        op.get(V.dst), op.i32(4 * cin), op.i32Add, op.set(V.tileEnd),
        op.loop(
          ...d.map((local, k) => [op.get(V.src), op.v128Load(4 * cin * k), op.set(local)]).flat(),
          ...prepare,
          ...values.map((value, k) => [op.get(V.dst), ...Array.from({ length: k }, () => [op.get(V.comp), op.i32Add]).flat(), ...value, op.v128Store()]).flat(),
          op.get(V.src), op.i32(16), op.i32Add, op.set(V.src),
          op.get(V.dst), op.i32(16), op.i32Add, op.tee(V.dst), op.get(V.tileEnd), op.i32LtU, op.brIf(0),
        ),
        // the next tile starts `tile` columns on (the loop above moved one)
        op.get(V.src), op.i32(4 * cin * (tile - 1)), op.i32Add, op.set(V.src),
        op.get(V.dst), op.get(V.rowEnd), op.i32LtU, op.brIf(0),
      ),
      // past the row's two last columns
      op.get(V.src), op.i32(8 * cin), op.i32Add, op.set(V.src),
      op.get(V.dst), op.get(V.end), op.i32LtU, op.brIf(0),
    )),
  ].flat();
  return { name: 'winogradInput', params, locals, body };
}

/**
 * Winograd F(tile, 3) along W, output side: for output rows r0 <= r < r1, from the tile + 2
 * component products m (component k at byte offset k `comp`, each [rows, tiles, Cout]) writes y
 * [rows, width, Cout] (outputTransform), the last tile only up to width.
 */
function winogradOutputFunction(tile: 2 | 4): AssembledFunction {
  type N = 'm' | 'y' | 'width' | 'tiles' | 'cout' | 'comp' | 'r0' | 'r1' | 'cout4' | 'row' | 'tile' | 'whole' | 'end' | (typeof TILE_VECTORS)[number];
  const { index: V, params, locals } = localFrame<N, N>(
    (['m', 'y', 'width', 'tiles', 'cout', 'comp', 'r0', 'r1'] as N[]).map((n): [N, ValueType] => [n, 'i32']),
    [...(['cout4', 'row', 'tile', 'whole', 'end'] as N[]).map((n): [N, ValueType] => [n, 'i32']), ...TILE_VECTORS.map((n): [N, ValueType] => [n, 'v128'])],
  );
  const m = [V.v0, V.v1, V.v2, V.v3, V.v4, V.v5].slice(0, tile + 2);
  const { prepare, values } = outputTransform(tile, m, [V.t0, V.t1, V.t2, V.t3]);
  // one tile's Cout channels, 4 at a time, writing its first `count` voxels; y ends on the next tile
  const tileOf = (count: number) => [
    op.get(V.m), op.get(V.cout4), op.i32Add, op.set(V.end),
    op.loop(
      ...m.map((local, k) => [op.get(V.m), ...Array.from({ length: k }, () => [op.get(V.comp), op.i32Add]).flat(), op.v128Load(), op.set(local)]).flat(),
      ...prepare,
      ...values.slice(0, count).map((value, i) => [op.get(V.y), ...Array.from({ length: i }, () => [op.get(V.cout4), op.i32Add]).flat(), ...value, op.v128Store()]).flat(),
      op.get(V.y), op.i32(16), op.i32Add, op.set(V.y),
      op.get(V.m), op.i32(16), op.i32Add, op.tee(V.m), op.get(V.end), op.i32LtU, op.brIf(0),
    ),
    op.get(V.y), op.get(V.cout4), op.i32(count - 1), op.i32Mul, op.i32Add, op.set(V.y),
  ];
  const body = [
    op.get(V.cout), op.i32(4), op.i32Mul, op.set(V.cout4),
    op.get(V.width), op.i32(tile), op.i32DivU, op.set(V.whole),
    op.get(V.m), op.get(V.r0), op.get(V.tiles), op.i32Mul, op.get(V.cout4), op.i32Mul, op.i32Add, op.set(V.m),
    op.get(V.y), op.get(V.r0), op.get(V.width), op.i32Mul, op.get(V.cout4), op.i32Mul, op.i32Add, op.set(V.y),
    op.get(V.r0), op.set(V.row),
    op.block(op.loop(
      op.get(V.row), op.get(V.r1), op.i32GeU, op.brIf(1),
      op.i32(0), op.set(V.tile),
      op.block(op.loop(
        op.get(V.tile), op.get(V.whole), op.i32GeU, op.brIf(1),
        ...tileOf(tile),
        op.get(V.tile), op.i32(1), op.i32Add, op.set(V.tile),
        op.br(0),
      )),
      // a last, partial tile of width mod tile voxels
      ...Array.from({ length: tile - 1 }, (_, i) => [op.get(V.width), op.i32(tile - 1), op.i32And, op.i32(i + 1), op.i32Eq, op.if_(...tileOf(i + 1))]).flat(),
      op.get(V.row), op.i32(1), op.i32Add, op.set(V.row),
      op.br(0),
    )),
  ].flat();
  return { name: 'winogradOutput', params, locals, body };
}

/**
 * The filter gradient dW [27 Cin, Cout] += sum over voxels of x's padded runs times dy, for the
 * tiles t0 <= q < t1 of dW: a tile is 6 rows of one tap row's run of 3 Cin (kw, c) by 8 (then 4)
 * output channels, held in 12 accumulators while every voxel of a group of `groupRows` output rows
 * passes (a long reduction in registers), then added back. Threads take disjoint tiles. Cin even.
 */
function filterGradientFunction(cin: number, fused: boolean): AssembledFunction {
  type N = 'xp' | 'dy' | 'dw' | 'h' | 'width' | 'cout' | 'groupRows' | 'rows' | 't0' | 't1'
    | 'g0' | 'g1' | 'q' | 'perTap' | 'columns' | 'tr' | 'ib' | 'jb' | 'cout4' | 'rowStride' | 'row' | 'a' | 'aEnd' | 'b' | 'p' | 'tapOffset'
    | 's' | 'b0' | 'b1' | 'x0' | 'x1' | 'x2' | 'x3' | 'x4' | 'x5' | 'x6' | 'x7' | 'x8' | 'x9' | 'x10' | 'x11';
  const ints: N[] = ['g0', 'g1', 'q', 'perTap', 'columns', 'tr', 'ib', 'jb', 'cout4', 'rowStride', 'row', 'a', 'aEnd', 'b', 'p', 'tapOffset'];
  const vectors: N[] = ['s', 'b0', 'b1', 'x0', 'x1', 'x2', 'x3', 'x4', 'x5', 'x6', 'x7', 'x8', 'x9', 'x10', 'x11'];
  const { index: V, params, locals } = localFrame<N, N>(
    (['xp', 'dy', 'dw', 'h', 'width', 'cout', 'groupRows', 'rows', 't0', 't1'] as N[]).map((n): [N, ValueType] => [n, 'i32']),
    [...ints.map((n): [N, ValueType] => [n, 'i32']), ...vectors.map((n): [N, ValueType] => [n, 'v128'])],
  );
  const acc = (r: number, v: number) => [V.x0, V.x1, V.x2, V.x3, V.x4, V.x5, V.x6, V.x7, V.x8, V.x9, V.x10, V.x11][r * 2 + v];
  const madd = (accumulator: number, b: number) => fused
    ? [op.get(V.s), op.get(b), op.get(accumulator), RELAXED_MADD, op.set(accumulator)]
    : [op.get(accumulator), op.get(V.s), op.get(b), op.f32x4Mul, op.f32x4Add, op.set(accumulator)];
  // the 6 x width accumulators at p (row stride cout4): load or store
  const tileRows = (width: 1 | 2, store: boolean) => [
    op.get(V.p), op.set(V.b),
    ...Array.from({ length: 6 }, (_, r) => [
      ...Array.from({ length: width }, (_, v) => store
        ? [op.get(V.b), op.get(acc(r, v)), op.v128Store(16 * v)]
        : [op.get(V.b), op.v128Load(16 * v), op.set(acc(r, v))]).flat(),
      op.get(V.b), op.get(V.cout4), op.i32Add, op.set(V.b),
    ]).flat(),
  ];
  const tile = (width: 1 | 2) => [
    ...tileRows(width, false),
    op.get(V.g0), op.set(V.row),
    op.loop(
      // a = xp + ((d + kd) (h + 2) + hh + kh) rowStride + 6 ib 4, with tapOffset = (kd (h + 2) + kh) rowStride + 24 ib
      op.get(V.xp), op.get(V.row), op.get(V.h), op.i32DivU, op.i32(2), op.i32Mul, op.get(V.row), op.i32Add, op.get(V.rowStride), op.i32Mul, op.i32Add,
      op.get(V.tapOffset), op.i32Add, op.tee(V.a),
      op.get(V.width), op.i32(4 * cin), op.i32Mul, op.i32Add, op.set(V.aEnd),
      // b = dy + (row W cout + 8 jb) 4
      op.get(V.dy), op.get(V.row), op.get(V.width), op.i32Mul, op.get(V.cout4), op.i32Mul, op.i32Add, op.get(V.jb), op.i32(32), op.i32Mul, op.i32Add, op.set(V.b),
      op.loop(
        op.get(V.b), op.v128Load(0), op.set(V.b0),
        ...(width === 2 ? [op.get(V.b), op.v128Load(16), op.set(V.b1)] : []),
        ...Array.from({ length: 6 }, (_, r) => [
          op.get(V.a), op.v128Load32Splat(4 * r), op.set(V.s),
          ...Array.from({ length: width }, (_, v) => madd(acc(r, v), v === 0 ? V.b0 : V.b1)).flat(),
        ]).flat(),
        op.get(V.b), op.get(V.cout4), op.i32Add, op.set(V.b),
        op.get(V.a), op.i32(4 * cin), op.i32Add, op.tee(V.a), op.get(V.aEnd), op.i32LtU, op.brIf(0),
      ),
      op.get(V.row), op.i32(1), op.i32Add, op.tee(V.row), op.get(V.g1), op.i32LtU, op.brIf(0),
    ),
    ...tileRows(width, true),
  ];
  const body = [
    op.get(V.cout), op.i32(4), op.i32Mul, op.set(V.cout4),
    op.get(V.width), op.i32(2), op.i32Add, op.i32(4 * cin), op.i32Mul, op.set(V.rowStride),
    op.get(V.cout), op.i32(7), op.i32Add, op.i32(8), op.i32DivU, op.set(V.columns),
    op.i32(cin / 2), op.get(V.columns), op.i32Mul, op.set(V.perTap),
    op.i32(0), op.set(V.g0),
    op.block(op.loop(
      op.get(V.g0), op.get(V.rows), op.i32GeU, op.brIf(1),
      op.get(V.g0), op.get(V.groupRows), op.i32Add, op.tee(V.g1), op.get(V.rows), op.get(V.g1), op.get(V.rows), op.i32LtU, op.select, op.set(V.g1),
      op.get(V.t0), op.set(V.q),
      op.block(op.loop(
        op.get(V.q), op.get(V.t1), op.i32GeU, op.brIf(1),
        op.get(V.q), op.get(V.perTap), op.i32DivU, op.set(V.tr),
        op.get(V.q), op.get(V.perTap), op.i32RemU, op.tee(V.ib), op.get(V.columns), op.i32RemU, op.set(V.jb),
        op.get(V.ib), op.get(V.columns), op.i32DivU, op.set(V.ib),
        // tapOffset = ((kd (h + 2) + kh) rowStride + 24 ib, kd = tr / 3, kh = tr % 3
        op.get(V.tr), op.i32(3), op.i32DivU, op.get(V.h), op.i32(2), op.i32Add, op.i32Mul, op.get(V.tr), op.i32(3), op.i32RemU, op.i32Add,
        op.get(V.rowStride), op.i32Mul, op.get(V.ib), op.i32(24), op.i32Mul, op.i32Add, op.set(V.tapOffset),
        // p = dw + ((3 Cin tr + 6 ib) cout + 8 jb) 4
        op.get(V.dw), op.get(V.tr), op.i32(3 * cin), op.i32Mul, op.get(V.ib), op.i32(6), op.i32Mul, op.i32Add, op.get(V.cout4), op.i32Mul, op.i32Add,
        op.get(V.jb), op.i32(32), op.i32Mul, op.i32Add, op.set(V.p),
        op.get(V.jb), op.i32(8), op.i32Mul, op.i32(8), op.i32Add, op.get(V.cout), op.i32GtU,
        op.ifElse([tile(1).flat()], [tile(2).flat()]),
        op.get(V.q), op.i32(1), op.i32Add, op.set(V.q),
        op.br(0),
      )),
      op.get(V.g1), op.set(V.g0),
      op.br(0),
    )),
  ].flat();
  return { name: 'filterGradientRows', params, locals, body };
}

export interface SimdConvolutionExports {
  /**
   * y[row, w, :] for rows row0 <= row < row1 (row = d H + h) of y [D, H, W, Cout] from the padded
   * input xp [D + 2, H + 2, W + 2, Cin] and the packed filter w (panels [27 Cin, 8] of output
   * channels, then [27 Cin, 4]: packFilterPanels), float32 at those byte addresses; Cout a multiple of 4.
   */
  convolveRows(xp: number, w: number, y: number, h: number, width: number, cout: number, row0: number, row1: number): void;
}

/**
 * The Winograd module's exports: convolveRows is then one component's product, over the 9 tap rows
 * (kd, kh) of runs of Cin, on u's component [D + 2, H + 2, tiles, Cin] with that component's
 * filter panels ([9 Cin, 8], then [9 Cin, 4]), writing [D, H, tiles, Cout] (width = tiles).
 */
/** The filter gradient's function, in every module of an even Cin (filterGradientFunction). */
export interface SimdFilterGradientExports {
  filterGradientRows(xp: number, dy: number, dw: number, h: number, width: number, cout: number, groupRows: number, rows: number, t0: number, t1: number): void;
}

export interface SimdWinogradExports extends SimdConvolutionExports {
  winogradInput(xp: number, u: number, tiles: number, comp: number, r0: number, r1: number): void;
  winogradOutput(m: number, y: number, width: number, tiles: number, cout: number, comp: number, r0: number, r1: number): void;
}

/** Outputs per Winograd tile along W: F(2, 3) or F(4, 3); 0 for the direct convolution. */
export type WinogradTile = 0 | 2 | 4;

/**
 * The module's bytes for `cin` input channels, fused (relaxed SIMD) or not, on a shared memory or
 * not: the direct convolution, or with `winograd` 2 or 4 the F(2, 3)- or F(4, 3)-along-W one (Cin a
 * multiple of 4).
 */
export function simdConvolutionModuleBytes(cin: number, fused: boolean, shared: boolean, winograd: WinogradTile = 0): Uint8Array {
  const functions = winograd ? [convolutionFunction(cin, 1, fused), winogradInputFunction(cin, winograd), winogradOutputFunction(winograd)] : [convolutionFunction(cin, 3, fused)];
  if (cin % 2 === 0) functions.push(filterGradientFunction(cin, fused));
  return assembleModule({ module: 'env', name: 'memory', shared, maximumPages: 65536 }, functions);
}

/** A module that uses f32x4.relaxed_madd, to ask the runtime whether it takes relaxed SIMD. */
export function relaxedSimdProbeBytes(): Uint8Array {
  const { index, params, locals } = localFrame([['p', 'i32']] as Array<['p', ValueType]>, [['v', 'v128']] as Array<['v', ValueType]>);
  const body = [op.get(index.p), op.v128Load(), op.tee(index.v), op.get(index.v), op.get(index.v), RELAXED_MADD, op.set(index.v)].flat();
  return assembleModule({ module: 'env', name: 'memory', shared: false, maximumPages: 1 }, [{ name: 'probe', params, locals, body }]);
}
