import { crc32 } from '../lib/util/crc32';

/**
 * Test helper: writes state dicts in PyTorch's torch.save zip format (pickle protocol 2 with
 * persistent storage ids, one stored entry per storage), so importer tests can make checkpoints
 * with any keys and shapes without PyTorch.
 */
export interface TorchTensorSpec {
  shape: number[];
  data: Float32Array;
  /** Written as given instead of the contiguous strides (hostile-file tests). */
  stride?: number[];
  offset?: number;
}

class PickleWriter {
  private parts: number[] = [];
  op(code: number) {
    this.parts.push(code);
    return this;
  }
  bytes(values: Uint8Array | number[]) {
    for (const v of values) this.parts.push(v);
    return this;
  }
  global(module: string, name: string) {
    return this.op(0x63).bytes(Buffer.from(`${module}\n${name}\n`, 'latin1'));
  }
  str(value: string) {
    const encoded = Buffer.from(value, 'utf8');
    const length = Buffer.alloc(4);
    length.writeUInt32LE(encoded.length);
    return this.op(0x58).bytes(length).bytes(encoded);
  }
  int(value: number) {
    const b = Buffer.alloc(4);
    b.writeInt32LE(value);
    return this.op(0x4a).bytes(b);
  }
  tuple(values: number[]) {
    this.op(0x28);
    for (const v of values) this.int(v);
    return this.op(0x74);
  }
  build(): Buffer {
    return Buffer.from(this.parts);
  }
}

export function torchZip(entries: Map<string, TorchTensorSpec>, { wrapKey, rawPickle }: { wrapKey?: string; rawPickle?: Buffer } = {}): Buffer {
  const w = new PickleWriter().op(0x80).op(2);
  if (wrapKey) w.op(0x7d).str(wrapKey);
  w.global('collections', 'OrderedDict').op(0x29).op(0x52);
  let index = 0;
  const storages: Array<[string, Buffer]> = [];
  for (const [key, tensor] of entries) {
    const strides = tensor.stride ?? tensor.shape.map((_, a) => tensor.shape.slice(a + 1).reduce((x, y) => x * y, 1));
    w.str(key).global('torch._utils', '_rebuild_tensor_v2').op(0x28);
    w.op(0x28).str('storage').global('torch', 'FloatStorage').str(String(index)).str('cpu').int(tensor.data.length).op(0x74).op(0x51);
    w.int(tensor.offset ?? 0).tuple(tensor.shape).tuple(strides).op(0x89).global('collections', 'OrderedDict').op(0x29).op(0x52);
    w.op(0x74).op(0x52).op(0x73);
    storages.push([`archive/data/${index}`, Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength)]);
    index++;
  }
  if (wrapKey) w.op(0x73);
  w.op(0x2e);
  return zip([['archive/data.pkl', rawPickle ?? w.build()], ...storages, ['archive/version', Buffer.from('3\n')]]);
}

/**
 * A ZIP archive of the given entries, stored (uncompressed) unless an entry asks to be written as
 * already-deflated `data` whose directory claims `claimedSize` bytes (hostile-file tests).
 */
export function zip(files: Array<[string, Buffer] | [string, Buffer, { deflated: true; claimedSize: number }]>): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, data, deflate] of files) {
    const method = deflate ? 8 : 0;
    const size = deflate ? deflate.claimedSize : data.length;
    const nameBytes = Buffer.from(name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc32(data), 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(crc32(data), 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(nameBytes.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, nameBytes, data);
    centrals.push(central, nameBytes);
    offset += 30 + nameBytes.length + data.length;
  }
  const centralSize = centrals.reduce((s, b) => s + b.length, 0);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(files.length, 8);
  end.writeUInt16LE(files.length, 10);
  end.writeUInt32LE(centralSize, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, ...centrals, end]);
}
