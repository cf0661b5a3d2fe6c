import { AssembledFunction, ValueType, assembleModule, forEachAddress, localFrame, op } from './wasm-assembler';

/**
 * Instance norm's passes as 128-bit SIMD functions on tfjs-wasm's own memory. Rows are voxels and
 * columns channels (channels-last), 4 columns to a vector, so the column count must be a multiple
 * of 4. Statistics accumulate in float64, as in the JavaScript kernels: rows are taken in blocks of
 * 64 whose sums (each float32 lane promoted) are added to accumulators in memory. Every function
 * takes a range of rows, so that threads could share a pass.
 *
 * Accumulators: 64 bytes per group of 4 columns, [first sum lanes 0-1, lanes 2-3, second sum
 * lanes 0-1, lanes 2-3] as float64; `columnSums` unpacks them.
 */

const ROW_BLOCK = 64;

/**
 * `perGroup` for every group of 4 columns (byte offset gOff) of every row from rowStart to rowEnd
 * of the matrix at `base`; p is the row's address. Also sets rowBytes.
 */
function overRowGroups(L: Record<'cols' | 'rowBytes' | 'rowStart' | 'rowEnd' | 'p' | 'end' | 'gOff', number>, base: number, perGroup: number[][]): number[][] {
  return [
    op.get(L.cols), op.i32(4), op.i32Mul, op.set(L.rowBytes),
    op.get(base), op.get(L.rowStart), op.get(L.rowBytes), op.i32Mul, op.i32Add, op.set(L.p),
    op.get(base), op.get(L.rowEnd), op.get(L.rowBytes), op.i32Mul, op.i32Add, op.set(L.end),
    op.block(
      op.get(L.p), op.get(L.end), op.i32GeU, op.brIf(0),
      forEachAddress(L.p, L.end, op.get(L.rowBytes), [
        op.i32(0), op.set(L.gOff),
        forEachAddress(L.gOff, L.rowBytes, op.i32(16), perGroup),
      ]),
    ),
  ];
}

const STAT_LOCALS: Array<[string, ValueType]> = [
  ['rowBytes', 'i32'], ['r', 'i32'], ['blockEnd', 'i32'], ['gOff', 'i32'], ['p', 'i32'], ['pEnd', 'i32'], ['a', 'i32'],
  ['first', 'v128'], ['second', 'v128'], ['s0', 'v128'], ['s1', 'v128'], ['q0', 'v128'], ['q1', 'v128'],
  ['v', 'v128'], ['w', 'v128'], ['mask', 'v128'], ['slopeV', 'v128'], ['zDelta', 'i32'],
];

/**
 * Sums over rows of two per-column quantities. `norm`: x and x^2 (x promoted, squared in float64).
 * `gradient`: g = dz lrelu'(z) and dz z, z the forward's output (lrelu' read from its sign).
 */
function statsFunction(kind: 'norm' | 'gradient'): AssembledFunction {
  // One signature for both (slope and z unused by the norm's): x is dz for the gradient.
  const params: Array<[string, ValueType]> = [['x', 'i32'], ['rowStart', 'i32'], ['rowEnd', 'i32'], ['cols', 'i32'], ['acc', 'i32'], ['slope', 'f32'], ['z', 'i32']];
  const { index: L, params: types, locals } = localFrame(params, STAT_LOCALS);
  const promoteBoth = (value: number, low: number, high: number): number[][] => [
    op.get(low), op.get(value), op.f64x2PromoteLow, op.f64x2Add, op.set(low),
    op.get(high), op.get(value), op.get(value), op.f32x4UpperToLower, op.f64x2PromoteLow, op.f64x2Add, op.set(high),
  ];
  const perRow =
    kind === 'norm'
      ? [
          op.get(L.p), op.v128Load(), op.set(L.v),
          op.get(L.v), op.f64x2PromoteLow, op.tee(L.first), op.get(L.s0), op.f64x2Add, op.set(L.s0),
          op.get(L.first), op.get(L.first), op.f64x2Mul, op.get(L.q0), op.f64x2Add, op.set(L.q0),
          op.get(L.v), op.get(L.v), op.f32x4UpperToLower, op.f64x2PromoteLow, op.tee(L.second), op.get(L.s1), op.f64x2Add, op.set(L.s1),
          op.get(L.second), op.get(L.second), op.f64x2Mul, op.get(L.q1), op.f64x2Add, op.set(L.q1),
        ]
      : [
          op.get(L.p), op.v128Load(), op.set(L.v),
          op.get(L.p), op.get(L.zDelta), op.i32Add, op.v128Load(), op.set(L.w),
          op.get(L.w), op.v128Zero, op.f32x4Gt, op.set(L.mask),
          op.get(L.v), op.get(L.v), op.get(L.slopeV), op.f32x4Mul, op.get(L.mask), op.v128Bitselect, op.set(L.first),
          op.get(L.v), op.get(L.w), op.f32x4Mul, op.set(L.second),
          ...promoteBoth(L.first, L.s0, L.s1),
          ...promoteBoth(L.second, L.q0, L.q1),
        ];
  const addTo = (offset: number, local: number) => [op.get(L.a), op.get(L.a), op.v128Load(offset), op.get(local), op.f64x2Add, op.v128Store(offset)].flat();
  const body = [
    op.get(L.cols), op.i32(4), op.i32Mul, op.set(L.rowBytes),
    op.get(L.slope), op.f32x4Splat, op.set(L.slopeV),
    op.get(L.z), op.get(L.x), op.i32Sub, op.set(L.zDelta),
    op.get(L.rowStart), op.set(L.r),
    op.block(
      op.loop(
        op.get(L.r), op.get(L.rowEnd), op.i32GeU, op.brIf(1),
        // blockEnd = min(r + ROW_BLOCK, rowEnd)
        op.get(L.r), op.i32(ROW_BLOCK), op.i32Add, op.tee(L.blockEnd), op.get(L.rowEnd), op.get(L.blockEnd), op.get(L.rowEnd), op.i32LtU, op.select, op.set(L.blockEnd),
        op.i32(0), op.set(L.gOff),
        op.loop(
          op.v128Zero, op.set(L.s0), op.v128Zero, op.set(L.s1), op.v128Zero, op.set(L.q0), op.v128Zero, op.set(L.q1),
          op.get(L.x), op.get(L.r), op.get(L.rowBytes), op.i32Mul, op.i32Add, op.get(L.gOff), op.i32Add, op.set(L.p),
          op.get(L.x), op.get(L.blockEnd), op.get(L.rowBytes), op.i32Mul, op.i32Add, op.get(L.gOff), op.i32Add, op.set(L.pEnd),
          forEachAddress(L.p, L.pEnd, op.get(L.rowBytes), perRow),
          op.get(L.acc), op.get(L.gOff), op.i32(4), op.i32Mul, op.i32Add, op.set(L.a),
          addTo(0, L.s0), addTo(16, L.s1), addTo(32, L.q0), addTo(48, L.q1),
          op.get(L.gOff), op.i32(16), op.i32Add, op.tee(L.gOff), op.get(L.rowBytes), op.i32LtU, op.brIf(0),
        ),
        op.get(L.blockEnd), op.set(L.r),
        op.br(0),
      ),
    ),
  ].flat();
  return { name: kind === 'norm' ? 'normStats' : 'gradientStats', params: types, locals, body };
}

/** out = lrelu((x - mean) scale) per column; params: mean[cols], scale[cols] as float32. */
function normalizeFunction(): AssembledFunction {
  const { index: L, params, locals } = localFrame(
    [['x', 'i32'], ['out', 'i32'], ['rowStart', 'i32'], ['rowEnd', 'i32'], ['cols', 'i32'], ['params', 'i32'], ['slope', 'f32']],
    [['rowBytes', 'i32'], ['p', 'i32'], ['end', 'i32'], ['outDelta', 'i32'], ['gOff', 'i32'], ['slopeV', 'v128'], ['y', 'v128'], ['rowEndAddress', 'i32']],
  );
  const perGroup = [
    op.get(L.p), op.get(L.gOff), op.i32Add, op.get(L.outDelta), op.i32Add,
    op.get(L.p), op.get(L.gOff), op.i32Add, op.v128Load(),
    op.get(L.params), op.get(L.gOff), op.i32Add, op.v128Load(), op.f32x4Sub,
    op.get(L.params), op.get(L.rowBytes), op.i32Add, op.get(L.gOff), op.i32Add, op.v128Load(), op.f32x4Mul, op.tee(L.y),
    op.get(L.y), op.get(L.slopeV), op.f32x4Mul,
    op.get(L.y), op.v128Zero, op.f32x4Gt, op.v128Bitselect,
    op.v128Store(),
  ];
  const body = [
    op.get(L.slope), op.f32x4Splat, op.set(L.slopeV),
    op.get(L.out), op.get(L.x), op.i32Sub, op.set(L.outDelta),
    ...overRowGroups(L, L.x, perGroup),
  ].flat();
  return { name: 'normalize', params, locals, body };
}

/**
 * dx = rstd (g - mean(g) - y mean(g y)) per column with g = dz lrelu'(z), y = lrelu^-1(z);
 * params: rstd[cols], mean(g)[cols], mean(g y)[cols] as float32.
 */
function gradientFunction(): AssembledFunction {
  const { index: L, params, locals } = localFrame(
    [['dz', 'i32'], ['z', 'i32'], ['out', 'i32'], ['rowStart', 'i32'], ['rowEnd', 'i32'], ['cols', 'i32'], ['params', 'i32'], ['slope', 'f32'], ['invSlope', 'f32']],
    [['rowBytes', 'i32'], ['p', 'i32'], ['end', 'i32'], ['zDelta', 'i32'], ['outDelta', 'i32'], ['gOff', 'i32'], ['slopeV', 'v128'], ['invV', 'v128'], ['d', 'v128'], ['w', 'v128'], ['mask', 'v128'], ['pg', 'i32']],
  );
  const perGroup = [
    op.get(L.p), op.get(L.gOff), op.i32Add, op.get(L.outDelta), op.i32Add,
    op.get(L.p), op.get(L.gOff), op.i32Add, op.v128Load(), op.set(L.d),
    op.get(L.p), op.get(L.gOff), op.i32Add, op.get(L.zDelta), op.i32Add, op.v128Load(), op.set(L.w),
    op.get(L.w), op.v128Zero, op.f32x4Gt, op.set(L.mask),
    op.get(L.params), op.get(L.gOff), op.i32Add, op.tee(L.pg), op.v128Load(),
    op.get(L.d), op.get(L.d), op.get(L.slopeV), op.f32x4Mul, op.get(L.mask), op.v128Bitselect,
    op.get(L.pg), op.get(L.rowBytes), op.i32Add, op.v128Load(), op.f32x4Sub,
    op.get(L.w), op.get(L.w), op.get(L.invV), op.f32x4Mul, op.get(L.mask), op.v128Bitselect,
    op.get(L.pg), op.get(L.rowBytes), op.get(L.rowBytes), op.i32Add, op.i32Add, op.v128Load(), op.f32x4Mul,
    op.f32x4Sub,
    op.f32x4Mul,
    op.v128Store(),
  ];
  const body = [
    op.get(L.slope), op.f32x4Splat, op.set(L.slopeV),
    op.get(L.invSlope), op.f32x4Splat, op.set(L.invV),
    op.get(L.z), op.get(L.dz), op.i32Sub, op.set(L.zDelta),
    op.get(L.out), op.get(L.dz), op.i32Sub, op.set(L.outDelta),
    ...overRowGroups(L, L.dz, perGroup),
  ].flat();
  return { name: 'normGradient', params, locals, body };
}

/**
 * A pass over `bytes` (a multiple of 16) of two inputs into out, with a slope: (first, second, out,
 * bytes, slope). `value` leaves each output vector on the stack, given the locals of the first
 * input's vector address (p), the second input's offset from it (secondDelta), the splatted slope
 * (slopeV) and a scratch vector (v).
 */
function pairwisePassFunction(name: string, value: (L: Record<'p' | 'secondDelta' | 'slopeV' | 'v', number>) => number[][]): AssembledFunction {
  const { index: L, params, locals } = localFrame(
    [['first', 'i32'], ['second', 'i32'], ['out', 'i32'], ['bytes', 'i32'], ['slope', 'f32']],
    [['p', 'i32'], ['end', 'i32'], ['secondDelta', 'i32'], ['outDelta', 'i32'], ['slopeV', 'v128'], ['v', 'v128']],
  );
  const body = [
    op.get(L.slope), op.f32x4Splat, op.set(L.slopeV),
    op.get(L.second), op.get(L.first), op.i32Sub, op.set(L.secondDelta),
    op.get(L.out), op.get(L.first), op.i32Sub, op.set(L.outDelta),
    op.get(L.first), op.set(L.p),
    op.get(L.first), op.get(L.bytes), op.i32Add, op.set(L.end),
    op.block(
      op.get(L.p), op.get(L.end), op.i32GeU, op.brIf(0),
      forEachAddress(L.p, L.end, op.i32(16), [op.get(L.p), op.get(L.outDelta), op.i32Add, ...value(L), op.v128Store()]),
    ),
  ].flat();
  return { name, params, locals, body };
}

/** out = dy where z > 0, slope dy elsewhere (first dy, second z). */
function leakyGradientFunction(): AssembledFunction {
  return pairwisePassFunction('leakyGradient', (L) => [
    op.get(L.p), op.v128Load(), op.tee(L.v),
    op.get(L.v), op.get(L.slopeV), op.f32x4Mul,
    op.get(L.p), op.get(L.secondDelta), op.i32Add, op.v128Load(), op.v128Zero, op.f32x4Gt,
    op.v128Bitselect,
  ]);
}

/** out = lrelu(a + b): where a + b > 0 the sum, else slope times it. */
function addLeakyFunction(): AssembledFunction {
  return pairwisePassFunction('addLeaky', (L) => [
    op.get(L.p), op.v128Load(), op.get(L.p), op.get(L.secondDelta), op.i32Add, op.v128Load(), op.f32x4Add, op.tee(L.v),
    op.get(L.v), op.get(L.slopeV), op.f32x4Mul,
    op.get(L.v), op.v128Zero, op.f32x4Gt,
    op.v128Bitselect,
  ]);
}

export interface SimdNormExports {
  normStats(x: number, rowStart: number, rowEnd: number, cols: number, acc: number, slope: number, z: number): void;
  gradientStats(dz: number, rowStart: number, rowEnd: number, cols: number, acc: number, slope: number, z: number): void;
  normalize(x: number, out: number, rowStart: number, rowEnd: number, cols: number, params: number, slope: number): void;
  normGradient(dz: number, z: number, out: number, rowStart: number, rowEnd: number, cols: number, params: number, slope: number, invSlope: number): void;
  leakyGradient(dy: number, z: number, out: number, bytes: number, slope: number): void;
  addLeaky(a: number, b: number, out: number, bytes: number, slope: number): void;
}

/** The module's bytes for a memory that is shared (threaded tfjs-wasm) or not. */
export function simdNormModuleBytes(shared: boolean): Uint8Array {
  return assembleModule({ module: 'env', name: 'memory', shared, maximumPages: 65536 }, [
    statsFunction('norm'),
    statsFunction('gradient'),
    normalizeFunction(),
    gradientFunction(),
    leakyGradientFunction(),
    addLeakyFunction(),
  ]);
}

/** Per-column (sum of the first quantity, sum of the second) from the accumulators' layout. */
export function columnSums(acc: Float64Array, cols: number): { first: Float64Array; second: Float64Array } {
  const first = new Float64Array(cols);
  const second = new Float64Array(cols);
  for (let g = 0; g < cols / 4; g++) {
    for (let lane = 0; lane < 4; lane++) {
      first[4 * g + lane] = acc[8 * g + lane];
      second[4 * g + lane] = acc[8 * g + 4 + lane];
    }
  }
  return { first, second };
}
