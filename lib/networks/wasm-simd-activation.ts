import { AssembledFunction, assembleModule, forEachAddress, localFrame, op } from './wasm-assembler';

/**
 * GELU (the exact, erf form of PyTorch's nn.GELU) and its gradient as 128-bit SIMD passes on
 * tfjs-wasm's memory, for the MLPs of the Swin blocks. tfjs's composite took five passes and four
 * temporaries (two Multiply, Erf, Add, Multiply; Erf on one thread): at F = 48 and 96^3 its
 * 110,592 x 192 hidden layer cost 0.5 s of a forward. Both functions take a range of bytes, so that
 * the row pool's threads share a pass.
 *
 * With a = |x| and e = exp(-a^2 / 2): Phi(-a) = erfc(a / sqrt 2) / 2 by Abramowitz and Stegun
 * 7.1.26 (erfc(u) = t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) exp(-u^2), t = 1 / (1 + p u),
 * absolute error below 1.5e-7), Phi(x) = 1 - Phi(-a) for x > 0 and Phi(-a) otherwise, so that the
 * negative tail keeps its relative precision (1 + erf(x) in float32 rounds it away).
 * GELU(x) = x Phi(x); its derivative Phi(x) + x e / sqrt(2 pi) shares e.
 * exp(v) for v in [-84.5, 0]: v = k ln 2 + r with k = round(v / ln 2) (ln 2 in two parts, Cody and
 * Waite), exp(r) by its Taylor series to r^6 (|r| <= ln 2 / 2: relative error below 2e-7), times
 * 2^k built in the exponent bits.
 */

const AS_P = 0.3275911;
const AS_A = [0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429];
const LN2_HIGH = 0.693359375;
const LN2_LOW = -2.12194440e-4;
/** Beyond |x| = 13 Phi is 0 or 1 in float32 and x e underflows; clamping keeps exp's 2^k normal. */
const X_LIMIT = 13;

type Locals = Record<'x' | 'a' | 'e' | 'k' | 'r' | 't' | 'phi', number>;

/** Leaves exp(-a^2 / 2) in L.e and Phi(x) in L.phi from L.x. */
function normalCdf(L: Locals): number[][] {
  const horner = (variable: number, coefficients: number[]) => [
    op.f32x4Const(coefficients[coefficients.length - 1]),
    ...coefficients.slice(0, -1).reverse().flatMap((c) => [op.get(variable), op.f32x4Mul, op.f32x4Const(c), op.f32x4Add]),
  ];
  return [
    op.get(L.x), op.f32x4Abs, op.f32x4Const(X_LIMIT), op.f32x4Min, op.set(L.a),
    // v = -a^2 / 2 (kept in r until it is reduced)
    op.f32x4Const(0), op.get(L.a), op.get(L.a), op.f32x4Mul, op.f32x4Const(0.5), op.f32x4Mul, op.f32x4Sub, op.set(L.r),
    op.get(L.r), op.f32x4Const(Math.LOG2E), op.f32x4Mul, op.f32x4Nearest, op.set(L.k),
    op.get(L.r), op.get(L.k), op.f32x4Const(LN2_HIGH), op.f32x4Mul, op.f32x4Sub,
    op.get(L.k), op.f32x4Const(LN2_LOW), op.f32x4Mul, op.f32x4Sub, op.set(L.r),
    ...horner(L.r, [1, 1, 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720]),
    op.get(L.k), op.i32x4TruncSatF32x4S, op.i32(127), op.i32x4Splat, op.i32x4Add, op.i32(23), op.i32x4Shl,
    op.f32x4Mul, op.set(L.e),
    // t = 1 / (1 + p a / sqrt 2)
    op.f32x4Const(1), op.f32x4Const(1), op.get(L.a), op.f32x4Const(AS_P * Math.SQRT1_2), op.f32x4Mul, op.f32x4Add, op.f32x4Div, op.set(L.t),
    // Phi(-a) = t P(t) e / 2
    ...horner(L.t, AS_A), op.get(L.t), op.f32x4Mul, op.get(L.e), op.f32x4Mul, op.f32x4Const(0.5), op.f32x4Mul, op.set(L.phi),
    // x > 0 ? 1 - Phi(-a) : Phi(-a)
    op.f32x4Const(1), op.get(L.phi), op.f32x4Sub, op.get(L.phi), op.get(L.x), op.v128Zero, op.f32x4Gt, op.v128Bitselect, op.set(L.phi),
  ];
}

const LOCALS: Array<[keyof Locals | 'p' | 'end' | 'outDelta' | 'dyDelta', 'i32' | 'v128']> = [
  ['p', 'i32'], ['end', 'i32'], ['outDelta', 'i32'], ['dyDelta', 'i32'],
  ['x', 'v128'], ['a', 'v128'], ['e', 'v128'], ['k', 'v128'], ['r', 'v128'], ['t', 'v128'], ['phi', 'v128'],
];

/**
 * name(...inputs, out, bytes) over `bytes` (a multiple of 16) of x (`source`, walked by p; `dy`
 * the upstream gradient where there is one): normalCdf from each vector of x, then `value` leaves
 * the output vector on the stack.
 */
function elementwiseFunction(name: string, inputs: Array<'dy' | 'source'>, value: (L: Locals & { p: number; dyDelta: number }) => number[][]): AssembledFunction {
  const { index: L, params, locals } = localFrame([...inputs.map((input): ['dy' | 'source', 'i32'] => [input, 'i32']), ['out', 'i32'], ['bytes', 'i32']], LOCALS);
  const body = [
    op.get(L.out), op.get(L.source), op.i32Sub, op.set(L.outDelta),
    ...(inputs.includes('dy') ? [op.get(L.dy), op.get(L.source), op.i32Sub, op.set(L.dyDelta)] : []),
    op.get(L.source), op.set(L.p),
    op.get(L.source), op.get(L.bytes), op.i32Add, op.set(L.end),
    op.block(
      op.get(L.p), op.get(L.end), op.i32GeU, op.brIf(0),
      forEachAddress(L.p, L.end, op.i32(16), [
        op.get(L.p), op.v128Load(), op.set(L.x),
        ...normalCdf(L),
        op.get(L.p), op.get(L.outDelta), op.i32Add, ...value(L), op.v128Store(),
      ]),
    ),
  ].flat();
  return { name, params, locals, body };
}

/** gelu(x, out, bytes): out = x Phi(x). */
const geluFunction = () => elementwiseFunction('gelu', ['source'], (L) => [op.get(L.x), op.get(L.phi), op.f32x4Mul]);

/** geluGradient(dy, x, out, bytes): out = dy (Phi(x) + x exp(-x^2 / 2) / sqrt(2 pi)). */
const geluGradientFunction = () =>
  elementwiseFunction('geluGradient', ['dy', 'source'], (L) => [
    op.get(L.p), op.get(L.dyDelta), op.i32Add, op.v128Load(),
    op.get(L.phi), op.get(L.x), op.get(L.e), op.f32x4Mul, op.f32x4Const(1 / Math.sqrt(2 * Math.PI)), op.f32x4Mul, op.f32x4Add,
    op.f32x4Mul,
  ]);

export interface SimdActivationExports {
  gelu(source: number, out: number, bytes: number): void;
  geluGradient(dy: number, source: number, out: number, bytes: number): void;
}

/** The module's bytes for a memory that is shared (threaded tfjs-wasm) or not. */
export function simdActivationModuleBytes(shared: boolean): Uint8Array {
  return assembleModule({ module: 'env', name: 'memory', shared, maximumPages: 65536 }, [geluFunction(), geluGradientFunction()]);
}

/** The same arithmetic on one value, in float64 (for the tails the vectors leave and other backends' tests). */
export function geluAndSlope(x: number): { value: number; slope: number } {
  const a = Math.min(Math.abs(x), X_LIMIT);
  const e = Math.exp((-a * a) / 2);
  const t = 1 / (1 + AS_P * Math.SQRT1_2 * a);
  const tail = (t * (AS_A[0] + t * (AS_A[1] + t * (AS_A[2] + t * (AS_A[3] + t * AS_A[4])))) * e) / 2;
  const phi = x > 0 ? 1 - tail : tail;
  return { value: x * phi, slope: phi + (x * e) / Math.sqrt(2 * Math.PI) };
}
