import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { assembleModule, forEachAddress, op, signedLeb, unsignedLeb } from '../lib/networks/wasm-assembler';

test('LEB128: the encodings of the WebAssembly specification, and out-of-range values refused', () => {
  assert.deepEqual(unsignedLeb(0), [0]);
  assert.deepEqual(unsignedLeb(127), [0x7f]);
  assert.deepEqual(unsignedLeb(128), [0x80, 0x01]);
  assert.deepEqual(unsignedLeb(624485), [0xe5, 0x8e, 0x26]);
  assert.deepEqual(unsignedLeb(0xffffffff), [0xff, 0xff, 0xff, 0xff, 0x0f]);
  assert.deepEqual(signedLeb(0), [0]);
  assert.deepEqual(signedLeb(63), [0x3f]);
  assert.deepEqual(signedLeb(64), [0xc0, 0x00]);
  assert.deepEqual(signedLeb(-1), [0x7f]);
  assert.deepEqual(signedLeb(-64), [0x40]);
  assert.deepEqual(signedLeb(-65), [0xbf, 0x7f]);
  assert.deepEqual(signedLeb(-123456), [0xc0, 0xbb, 0x78]);
  assert.throws(() => unsignedLeb(-1), /not a 32-bit unsigned integer/);
  assert.throws(() => signedLeb(2 ** 31), /not a 32-bit integer/);
});

test('an assembled module runs: a SIMD loop over shared and unshared memory, and a nested instruction list refused', () => {
  // scale(p, bytes, factor): every float32 in [p, p + bytes) times factor, 4 at a time.
  const scale = {
    name: 'scale',
    params: ['i32', 'i32', 'f32'] as const,
    locals: ['i32'] as const,
    body: [
      op.get(0), op.get(1), op.i32Add, op.set(3),
      forEachAddress(0, 3, op.i32(16), [op.get(0), op.get(0), op.v128Load(), op.get(2), op.f32x4Splat, op.f32x4Mul, op.v128Store()]),
    ].flat(),
  };
  for (const shared of [false, true]) {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 16, shared });
    const bytes = assembleModule({ module: 'env', name: 'memory', shared, maximumPages: 16 }, [{ ...scale, params: [...scale.params], locals: [...scale.locals] }]);
    const exports = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } }).exports as { scale(p: number, bytes: number, factor: number): void };
    const floats = new Float32Array(memory.buffer, 64, 12);
    floats.set(Array.from({ length: 12 }, (_, i) => i + 1));
    exports.scale(64, 32, -2);
    assert.deepEqual(Array.from(floats), [-2, -4, -6, -8, -10, -12, -14, -16, 9, 10, 11, 12], `shared ${shared}: the first 8 values scaled, the rest untouched`);
  }
  assert.throws(
    () => assembleModule({ module: 'env', name: 'memory', shared: false, maximumPages: 1 }, [{ name: 'bad', params: [], locals: [], body: [op.get(0)] as unknown as number[] }]),
    /bad's body holds \[32,0\] at 0, not a byte/,
  );
});
