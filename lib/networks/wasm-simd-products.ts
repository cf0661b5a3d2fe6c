import { AssembledFunction, ValueType, assembleModule, localFrame, op } from './wasm-assembler';

/**
 * A batch of matrix products c[p] = a[p] b[p] for a [M, K], b [K, N], as a 128-bit SIMD function
 * on tfjs-wasm's memory. XNNPACK packs the right-hand matrix for every product; with M = 4 (window
 * attention's head dimension at F = 12, in its gradients) that packing costs more than the
 * product, and it ran at about 2 GFLOP/s. Here 4 rows of a meet 8 columns of b at a time: 8
 * accumulators, and each element of a is broadcast once per 8 columns. Columns left over go 4 at
 * a time, then one at a time; rows left over, one at a time. Products with a short inner dimension
 * (K = 4 or 16: the attention scores) take the same loop, 3-10 % faster than XNNPACK there.
 */

type Local = 'a' | 'b' | 'c' | 'batch' | 'm' | 'k' | 'n'
  | 'pair' | 'aP' | 'bP' | 'cP' | 'r0' | 'j' | 'k4' | 'k8' | 'k12' | 'n4' | 'aRow' | 'aEnd' | 'bPtr' | 'cRow'
  | 'b0' | 'b1' | 'splat' | 'x0' | 'x1' | 'x2' | 'x3' | 'x4' | 'x5' | 'x6' | 'x7'
  | 'f0' | 'f1' | 'f2' | 'f3' | 'bScalar';

const PARAMS: Array<[Local, ValueType]> = [['a', 'i32'], ['b', 'i32'], ['c', 'i32'], ['batch', 'i32'], ['m', 'i32'], ['k', 'i32'], ['n', 'i32']];
const LOCALS: Array<[Local, ValueType]> = [
  ...(['pair', 'aP', 'bP', 'cP', 'r0', 'j', 'k4', 'k8', 'k12', 'n4', 'aRow', 'aEnd', 'bPtr', 'cRow'] as Local[]).map((n): [Local, ValueType] => [n, 'i32']),
  ...(['b0', 'b1', 'splat', 'x0', 'x1', 'x2', 'x3', 'x4', 'x5', 'x6', 'x7'] as Local[]).map((n): [Local, ValueType] => [n, 'v128']),
  ...(['f0', 'f1', 'f2', 'f3', 'bScalar'] as Local[]).map((n): [Local, ValueType] => [n, 'f32']),
];
const { index: L, params: PARAM_TYPES, locals: LOCAL_TYPES } = localFrame(PARAMS, LOCALS);

/** Address of row `r` (0-3) of the current block of a's rows at the current k. */
function aAddress(r: number): number[][] {
  return r === 0 ? [op.get(L.aRow)] : [op.get(L.aRow), op.get([L.k4, L.k8, L.k12][r - 1]), op.i32Add];
}

/**
 * One block of columns from j: `vectors` (2 or 1) SIMD vectors wide, or one scalar column, for
 * `rows` (4, or 1 for the rows left over) rows of a from r0. Accumulates over k, stores into c,
 * then advances j.
 */
function columnBlock(vectors: 2 | 1 | 0, rows: 4 | 1): number[][] {
  const rowList = Array.from({ length: rows }, (_, r) => r);
  const width = vectors === 0 ? 1 : vectors * 4;
  const acc = (r: number, v: number) => [L.x0, L.x1, L.x2, L.x3, L.x4, L.x5, L.x6, L.x7][r * 2 + v];
  const scalarAcc = [L.f0, L.f1, L.f2, L.f3];
  const zero = vectors === 0 ? rowList.flatMap((r) => [op.f32(0), op.set(scalarAcc[r])]) : rowList.flatMap((r) => Array.from({ length: vectors }, (_, v) => [op.v128Zero, op.set(acc(r, v))]).flat());
  const perK =
    vectors === 0
      ? [
          op.get(L.bPtr), op.f32Load(), op.set(L.bScalar),
          ...rowList.flatMap((r) => [op.get(scalarAcc[r]), ...aAddress(r), op.f32Load(), op.get(L.bScalar), op.f32Mul, op.f32Add, op.set(scalarAcc[r])]),
        ]
      : [
          ...Array.from({ length: vectors }, (_, v) => [op.get(L.bPtr), op.v128Load(16 * v), op.set(v === 0 ? L.b0 : L.b1)]).flat(),
          ...rowList.flatMap((r) => [
            ...aAddress(r), op.v128Load32Splat(), op.set(L.splat),
            ...Array.from({ length: vectors }, (_, v) => [op.get(acc(r, v)), op.get(L.splat), op.get(v === 0 ? L.b0 : L.b1), op.f32x4Mul, op.f32x4Add, op.set(acc(r, v))]).flat(),
          ]),
        ];
  const store = rowList.flatMap((r) => [
    // cRow = cP + (r0 + r) n4 + 4 j
    op.get(L.cP), op.get(L.r0), op.i32(r), op.i32Add, op.get(L.n4), op.i32Mul, op.i32Add, op.get(L.j), op.i32(4), op.i32Mul, op.i32Add, op.set(L.cRow),
    ...(vectors === 0
      ? [op.get(L.cRow), op.get(scalarAcc[r]), op.f32Store()]
      : Array.from({ length: vectors }, (_, v) => [op.get(L.cRow), op.get(acc(r, v)), op.v128Store(16 * v)]).flat()),
  ]);
  return [
    op.block(
      op.loop(
        // while j + width <= n
        op.get(L.j), op.i32(width), op.i32Add, op.get(L.n), op.i32GtU, op.brIf(1),
        ...zero,
        op.get(L.aP), op.get(L.r0), op.get(L.k4), op.i32Mul, op.i32Add, op.tee(L.aRow), op.get(L.k4), op.i32Add, op.set(L.aEnd),
        op.get(L.bP), op.get(L.j), op.i32(4), op.i32Mul, op.i32Add, op.set(L.bPtr),
        op.loop(
          ...perK,
          op.get(L.bPtr), op.get(L.n4), op.i32Add, op.set(L.bPtr),
          op.get(L.aRow), op.i32(4), op.i32Add, op.tee(L.aRow), op.get(L.aEnd), op.i32LtU, op.brIf(0),
        ),
        ...store,
        op.get(L.j), op.i32(width), op.i32Add, op.set(L.j),
        op.br(0),
      ),
    ),
  ];
}

/** Blocks of `rows` rows from r0 while r0 + rows <= m, each over every column. */
function rowBlocks(rows: 4 | 1): number[] {
  return op.block(
    op.loop(
      op.get(L.r0), op.i32(rows), op.i32Add, op.get(L.m), op.i32GtU, op.brIf(1),
      op.i32(0), op.set(L.j),
      ...columnBlock(2, rows),
      ...columnBlock(1, rows),
      ...columnBlock(0, rows),
      op.get(L.r0), op.i32(rows), op.i32Add, op.set(L.r0),
      op.br(0),
    ),
  );
}

function smallRowsProductFunction(): AssembledFunction {
  const body = [
    op.get(L.k), op.i32(4), op.i32Mul, op.tee(L.k4), op.get(L.k4), op.i32Add, op.tee(L.k8), op.get(L.k4), op.i32Add, op.set(L.k12),
    op.get(L.n), op.i32(4), op.i32Mul, op.set(L.n4),
    op.i32(0), op.set(L.pair),
    op.block(
      op.loop(
        op.get(L.pair), op.get(L.batch), op.i32GeU, op.brIf(1),
        op.get(L.a), op.get(L.pair), op.get(L.m), op.i32Mul, op.get(L.k4), op.i32Mul, op.i32Add, op.set(L.aP),
        op.get(L.b), op.get(L.pair), op.get(L.k), op.i32Mul, op.get(L.n4), op.i32Mul, op.i32Add, op.set(L.bP),
        op.get(L.c), op.get(L.pair), op.get(L.m), op.i32Mul, op.get(L.n4), op.i32Mul, op.i32Add, op.set(L.cP),
        op.i32(0), op.set(L.r0),
        rowBlocks(4),
        rowBlocks(1),
        op.get(L.pair), op.i32(1), op.i32Add, op.set(L.pair),
        op.br(0),
      ),
    ),
  ].flat();
  return { name: 'smallRowsProduct', params: PARAM_TYPES, locals: LOCAL_TYPES, body };
}

export interface SimdProductExports {
  /** c[p] = a[p] b[p] for p < batch; a [m, k], b [k, n], c [m, n] float32 at those byte addresses; k > 0. */
  smallRowsProduct(a: number, b: number, c: number, batch: number, m: number, k: number, n: number): void;
}

export function simdProductModuleBytes(shared: boolean): Uint8Array {
  return assembleModule({ module: 'env', name: 'memory', shared, maximumPages: 65536 }, [smallRowsProductFunction()]);
}
