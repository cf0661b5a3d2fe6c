import { FseftError } from '../util/errors';
import { HostTensor, bfloat16ToFloat, elementCount, halfToFloat } from './host-tensor';
import { Global, PickleConstructor, UnsafePickleError, unpickle } from './pickle';
import { ZipArchive } from './zip';
import { readFileOrThrow } from '../util/read-file';

/** Storage classes of PyTorch and how their elements are stored. */
const STORAGE_TYPES: Record<string, { bytes: number; read: (view: DataView, offset: number) => number; float: boolean }> = {
  FloatStorage: { bytes: 4, read: (v, o) => v.getFloat32(o, true), float: true },
  DoubleStorage: { bytes: 8, read: (v, o) => v.getFloat64(o, true), float: true },
  HalfStorage: { bytes: 2, read: (v, o) => halfToFloat(v.getUint16(o, true)), float: true },
  BFloat16Storage: { bytes: 2, read: (v, o) => bfloat16ToFloat(v.getUint16(o, true)), float: true },
  LongStorage: { bytes: 8, read: (v, o) => Number(v.getBigInt64(o, true)), float: false },
  IntStorage: { bytes: 4, read: (v, o) => v.getInt32(o, true), float: false },
  ShortStorage: { bytes: 2, read: (v, o) => v.getInt16(o, true), float: false },
  CharStorage: { bytes: 1, read: (v, o) => v.getInt8(o), float: false },
  ByteStorage: { bytes: 1, read: (v, o) => v.getUint8(o), float: false },
  BoolStorage: { bytes: 1, read: (v, o) => v.getUint8(o), float: false },
};

/** The storage class a persistent id names (a `torch.FloatStorage`-like global), if it is one. */
function storageTypeOf(value: unknown): string | undefined {
  if (!(value instanceof Global)) return undefined;
  const name = value.qualifiedName.replace(/^torch\./, '');
  return STORAGE_TYPES[name] ? name : undefined;
}

class Storage {
  constructor(
    readonly type: string,
    private readonly bytes: Uint8Array,
  ) {}

  get float(): boolean {
    return STORAGE_TYPES[this.type].float;
  }

  /** Elements the stored bytes hold. */
  get elementCount(): number {
    return Math.floor(this.bytes.byteLength / STORAGE_TYPES[this.type].bytes);
  }

  /** Element `i` (no copy of the storage: a tensor may use a small part of a large one). */
  reader(): (i: number) => number {
    const { bytes: width, read } = STORAGE_TYPES[this.type];
    const view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    return (i) => read(view, i * width);
  }
}

/** Marks a value that came out of `_rebuild_tensor_v2` (or `_rebuild_parameter`). */
class TensorValue {
  constructor(readonly tensor: HostTensor) {}
}

/**
 * A tensor from its storage, offset, size and stride. Every claim is checked against the storage
 * before anything is allocated: a tensor may not have more elements than its storage holds
 * (stride 0 would otherwise expand a few bytes into gigabytes), nor read before or past it.
 */
function rebuildTensor([storage, offset, size, stride]: unknown[]): TensorValue {
  if (!(storage instanceof Storage)) throw new Error('tensor without a storage');
  const shape = checkedIntegers(size, 'size');
  const strides = checkedIntegers(stride, 'stride');
  const start = Number(offset);
  if (strides.length !== shape.length) throw new Error(`tensor size ${JSON.stringify(shape)} and stride ${JSON.stringify(strides)} differ in length`);
  if (!Number.isSafeInteger(start) || start < 0) throw new Error(`tensor storage offset ${String(offset)} is not a non-negative integer`);
  const available = storage.elementCount;
  const count = elementCount(shape);
  if (count > available) throw new Error(`tensor of size ${JSON.stringify(shape)} claims ${count} elements but its storage holds ${available}`);
  if (count > 0) {
    const last = shape.reduce((at, extent, axis) => at + (extent - 1) * strides[axis], start);
    if (last >= available) throw new Error(`tensor of size ${JSON.stringify(shape)}, stride ${JSON.stringify(strides)} and offset ${start} reads element ${last} of a storage of ${available} (truncated checkpoint?)`);
  }
  const read = storage.reader();
  const out = storage.float ? new Float32Array(count) : new Int32Array(count);
  const index = new Array<number>(shape.length).fill(0);
  let source = start;
  for (let o = 0; o < count; o++) {
    const value = read(source);
    if (!storage.float && (value > 2147483647 || value < -2147483648)) throw new Error(`an integer tensor holds ${value}, outside the 32-bit range the kit keeps integers in`);
    out[o] = value;
    for (let a = shape.length - 1; a >= 0; a--) {
      index[a]++;
      source += strides[a];
      if (index[a] < shape[a]) break;
      source -= strides[a] * shape[a];
      index[a] = 0;
    }
  }
  return new TensorValue({ dtype: storage.float ? 'float32' : 'int32', shape, data: out });
}

/** A tensor's size or stride: a list of non-negative integers. */
function checkedIntegers(value: unknown, what: string): number[] {
  if (!Array.isArray(value)) throw new Error(`tensor ${what} is not a list`);
  return value.map((item) => {
    const n = Number(item);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`tensor ${what} ${JSON.stringify(value.map(String))} holds ${String(item)}, not a non-negative integer`);
    return n;
  });
}

const asMap: PickleConstructor = (args) => new Map(Array.isArray(args[0]) ? (args[0] as Array<[unknown, unknown]>) : []);

/**
 * The allow-list: tensor rebuild functions, storages and plain containers (as weights_only=True).
 * `rebuild` builds tensors (deferred in legacy files, whose storage bytes follow the pickle).
 */
function allowedGlobals(rebuild: PickleConstructor = rebuildTensor): Record<string, PickleConstructor> {
  const globals: Record<string, PickleConstructor> = {
    'collections.OrderedDict': asMap,
    'builtins.dict': asMap,
    'builtins.list': (args) => [...((args[0] as unknown[]) ?? [])],
    'builtins.tuple': (args) => [...((args[0] as unknown[]) ?? [])],
    'builtins.set': (args) => new Set((args[0] as unknown[]) ?? []),
    'builtins.frozenset': (args) => new Set((args[0] as unknown[]) ?? []),
    'torch.Size': (args) => [...((args[0] as unknown[]) ?? [])],
    'torch._utils._rebuild_tensor_v2': rebuild,
    'torch._utils._rebuild_tensor': rebuild,
    'torch._utils._rebuild_parameter': (args) => args[0],
    'torch._utils._rebuild_parameter_with_state': (args) => args[0],
    '_codecs.encode': (args) => Uint8Array.from(Buffer.from(String(args[0]), 'latin1')),
    'numpy.dtype': (args) => ({ numpyDtype: String(args[0]) }),
    'numpy.core.multiarray.scalar': (args) => numpyScalar(args[0] as { numpyDtype: string }, args[1] as Uint8Array),
    'numpy._core.multiarray.scalar': (args) => numpyScalar(args[0] as { numpyDtype: string }, args[1] as Uint8Array),
  };
  for (const name of Object.keys(STORAGE_TYPES)) {
    globals[`torch.${name}`] = () => {
      throw new UnsafePickleError(`a storage class (torch.${name}) is called instead of named`);
    };
  }
  return globals;
}

function numpyScalar(dtype: { numpyDtype: string }, bytes: Uint8Array): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype?.numpyDtype) {
    case 'f8':
      return view.getFloat64(0, true);
    case 'f4':
      return view.getFloat32(0, true);
    case 'i8':
      return Number(view.getBigInt64(0, true));
    case 'i4':
      return view.getInt32(0, true);
    default:
      throw new UnsafePickleError(`unsupported numpy scalar type ${dtype?.numpyDtype}`);
  }
}

export interface TorchCheckpoint {
  format: 'zip' | 'legacy';
  /** Every tensor found, by its key as stored (wrapper key removed, prefixes kept). */
  tensors: Map<string, HostTensor>;
  /** The wrapper dictionary key the weights sat under ('state_dict', 'net', 'model'), if any. */
  wrapperKey?: string;
  /** Other top-level entries (e.g. 'epoch', 'optimizer'), by name. */
  otherEntries: string[];
}

const WRAPPER_KEYS = ['state_dict', 'model_state_dict', 'net', 'model', 'network', 'module'];

/**
 * Reads a PyTorch checkpoint (`torch.save` zip archive, or the legacy pre-1.6 format) without
 * executing any of it, and finds its state dict (top level or under state_dict / net / model).
 */
export function readTorchCheckpoint(file: string): TorchCheckpoint {
  const bytes = readFileOrThrow(file);
  try {
    const { root, format } = ZipArchive.isZip(bytes) ? readZipCheckpoint(bytes) : readLegacyCheckpoint(bytes);
    return collectStateDict(root, format);
  } catch (error) {
    if (error instanceof FseftError) throw new FseftError(error.message, file);
    if (error instanceof UnsafePickleError) throw new FseftError(`unsafe checkpoint: ${error.message}`, file);
    throw new FseftError(`not a readable PyTorch checkpoint (${(error as Error).message})`, file);
  }
}

function readZipCheckpoint(bytes: Buffer): { root: unknown; format: 'zip' } {
  const archive = new ZipArchive(bytes);
  const names = archive.names();
  if (names.some((n) => /(^|\/)constants\.pkl$/.test(n) || /(^|\/)code\//.test(n))) {
    throw new FseftError('this is a TorchScript archive (torch.jit.save); export the weights with torch.save(model.state_dict(), path) and import that');
  }
  const pickleName = names.find((n) => /(^|\/)data\.pkl$/.test(n));
  if (!pickleName) throw new FseftError(`zip archive without data.pkl (entries: ${names.slice(0, 5).join(', ')}${names.length > 5 ? ', ...' : ''}); not a torch.save file`);
  const prefix = pickleName.slice(0, -'data.pkl'.length);
  const storages = new Map<string, Storage>();
  const root = unpickle(archive.read(pickleName), {
    globals: allowedGlobals(),
    persistentLoad: (id) => {
      const [kind, typeGlobal, key] = id as [string, unknown, string];
      const type = storageTypeOf(typeGlobal);
      if (kind !== 'storage' || !type) throw new UnsafePickleError(`unexpected persistent id ${JSON.stringify(kind)}`);
      let storage = storages.get(key);
      if (!storage) {
        storage = new Storage(type, archive.read(`${prefix}data/${key}`));
        storages.set(key, storage);
      }
      return storage;
    },
  });
  return { root, format: 'zip' };
}

/**
 * Legacy format: pickles of the magic number, protocol version and system info, then the data
 * pickle (persistent ids name storages), then the list of storage keys, then each storage as
 * an int64 element count followed by its raw bytes.
 */
function readLegacyCheckpoint(bytes: Buffer): { root: unknown; format: 'legacy' } {
  if (bytes.length < 2 || bytes[0] !== 0x80) throw new FseftError('neither a torch.save zip archive nor a legacy pickle checkpoint');
  let offset = 0;
  const nextPickle = (options: Parameters<typeof unpickle>[1]) => {
    const length = pickleLength(bytes, offset);
    const value = unpickle(bytes.subarray(offset, offset + length), options);
    offset += length;
    return value;
  };
  const magic = nextPickle({ globals: {} });
  if (typeof magic !== 'bigint' && typeof magic !== 'number') throw new FseftError('not a PyTorch checkpoint (no magic number)');
  nextPickle({ globals: {} });
  nextPickle({ globals: {} });
  const byKey = new Map<string, { type: string; proxy: LegacyStorage }>();
  const root = nextPickle({
    globals: allowedGlobals((args) => new DeferredTensor(args)),
    persistentLoad: (id) => {
      const [kind, typeGlobal, key] = id as [string, unknown, string];
      const type = storageTypeOf(typeGlobal);
      if (kind !== 'storage' || !type) throw new UnsafePickleError('unexpected persistent id');
      let entry = byKey.get(key);
      if (!entry) {
        entry = { type, proxy: new LegacyStorage(type) };
        byKey.set(key, entry);
      }
      return entry.proxy;
    },
  });
  const keys = nextPickle({ globals: {} });
  if (!Array.isArray(keys)) throw new Error('the list of storage keys is missing');
  for (const key of keys as string[]) {
    const entry = byKey.get(key);
    if (offset + 8 > bytes.length) throw new Error('storage data truncated');
    const count = Number(bytes.readBigInt64LE(offset));
    offset += 8;
    const width = STORAGE_TYPES[entry?.type ?? 'ByteStorage'].bytes;
    if (count < 0 || offset + count * width > bytes.length) throw new Error(`storage '${key}' claims ${count} elements but ${bytes.length - offset} bytes remain (truncated?)`);
    if (entry) entry.proxy.fill(bytes.subarray(offset, offset + count * width));
    offset += count * width;
  }
  return { root: resolveLegacy(root), format: 'legacy' };
}

/** A storage whose bytes arrive after the pickle that refers to it. */
class LegacyStorage extends Storage {
  private filled?: Storage;
  constructor(type: string) {
    super(type, new Uint8Array(0));
  }
  fill(bytes: Uint8Array): void {
    this.filled = new Storage(this.type, bytes);
  }
  override get elementCount(): number {
    if (!this.filled) throw new Error('storage bytes missing');
    return this.filled.elementCount;
  }
  override reader(): (i: number) => number {
    if (!this.filled) throw new Error('storage bytes missing');
    return this.filled.reader();
  }
}

/**
 * In legacy files tensors are rebuilt before their storages are read: rebuild them now, in place.
 * Containers the pickle shares (memo references) are visited once, so a small file whose
 * references nest many levels deep cannot make this exponential; each deferred tensor is rebuilt once.
 */
function resolveLegacy(root: unknown): unknown {
  const rebuilt = new Map<DeferredTensor, TensorValue>();
  const visited = new Set<unknown>();
  const resolve = (value: unknown): unknown => {
    if (value instanceof DeferredTensor) {
      let tensor = rebuilt.get(value);
      if (!tensor) rebuilt.set(value, (tensor = rebuildTensor(value.args)));
      return tensor;
    }
    if (!(value instanceof Map || Array.isArray(value)) || visited.has(value)) return value;
    visited.add(value);
    if (value instanceof Map) for (const [key, item] of value) value.set(key, resolve(item));
    else for (let i = 0; i < value.length; i++) value[i] = resolve(value[i]);
    return value;
  };
  return resolve(root);
}

class DeferredTensor {
  constructor(readonly args: unknown[]) {}
}

/** Length in bytes of the pickle starting at `offset`: walks the opcodes to the STOP opcode. */
function pickleLength(bytes: Buffer, offset: number): number {
  let pos = offset;
  // Each argument's length is checked against the bytes left before the position moves.
  const counted = (p: number, prefix: number, length: number | bigint) => {
    const n = Number(length);
    if (!Number.isSafeInteger(n) || n < 0 || p + prefix + n > bytes.length) throw new Error(`pickle claims a length of ${length} bytes at byte ${p} (${bytes.length - p - prefix} remain)`);
    return prefix + n;
  };
  const fixed = (n: number) => (p: number) => {
    if (p + n > bytes.length) throw new Error('pickle data ends unexpectedly (truncated?)');
    return n;
  };
  const argLength: Record<number, (p: number) => number> = {
    0x80: fixed(1), 0x95: fixed(8), 0x4a: fixed(4), 0x4b: fixed(1), 0x4d: fixed(2), 0x47: fixed(8), 0x71: fixed(1), 0x72: fixed(4), 0x68: fixed(1), 0x6a: fixed(4),
    0x8a: (p) => counted(p, 1, fixed(1)(p) && bytes[p]),
    0x55: (p) => counted(p, 1, fixed(1)(p) && bytes[p]),
    0x8c: (p) => counted(p, 1, fixed(1)(p) && bytes[p]),
    0x43: (p) => counted(p, 1, fixed(1)(p) && bytes[p]),
    0x8b: (p) => counted(p, 4, fixed(4)(p) && bytes.readInt32LE(p)),
    0x54: (p) => counted(p, 4, fixed(4)(p) && bytes.readInt32LE(p)),
    0x58: (p) => counted(p, 4, fixed(4)(p) && bytes.readUInt32LE(p)),
    0x42: (p) => counted(p, 4, fixed(4)(p) && bytes.readUInt32LE(p)),
    0x8d: (p) => counted(p, 8, fixed(8)(p) && bytes.readBigUInt64LE(p)),
    0x8e: (p) => counted(p, 8, fixed(8)(p) && bytes.readBigUInt64LE(p)),
  };
  const lineOpcodes = new Set([0x49, 0x4c, 0x46, 0x70, 0x67, 0x50]);
  const endOfLine = (from: number) => {
    const end = bytes.indexOf(0x0a, from);
    if (end < 0) throw new Error('pickle data ends unexpectedly (truncated?)');
    return end + 1;
  };
  while (pos < bytes.length) {
    const opcode = bytes[pos++];
    if (opcode === 0x2e) return pos - offset;
    if (opcode === 0x63) pos = endOfLine(endOfLine(pos));
    else if (lineOpcodes.has(opcode)) pos = endOfLine(pos);
    else if (argLength[opcode]) pos += argLength[opcode](pos);
  }
  throw new Error('pickle data ends unexpectedly (truncated?)');
}

function collectStateDict(root: unknown, format: 'zip' | 'legacy'): TorchCheckpoint {
  if (!(root instanceof Map)) throw new FseftError('the checkpoint holds no dictionary of weights (a whole pickled model is not supported; save model.state_dict())');
  let dict: Map<unknown, unknown> = root;
  let wrapperKey: string | undefined;
  const hasTensors = (m: Map<unknown, unknown>) => [...m.values()].some((v) => v instanceof TensorValue);
  if (!hasTensors(root)) {
    wrapperKey = WRAPPER_KEYS.find((k) => root.get(k) instanceof Map && hasTensors(root.get(k) as Map<unknown, unknown>));
    if (!wrapperKey) throw new FseftError(`no tensors found at the top level or under ${WRAPPER_KEYS.join('/')} (keys: ${[...root.keys()].slice(0, 8).join(', ')})`);
    dict = root.get(wrapperKey) as Map<unknown, unknown>;
  }
  const tensors = new Map<string, HostTensor>();
  for (const [key, value] of dict) if (value instanceof TensorValue && typeof key === 'string') tensors.set(key, value.tensor);
  const otherEntries = wrapperKey ? [...root.keys()].filter((k) => k !== wrapperKey).map(String) : [];
  return { format, tensors, wrapperKey, otherEntries };
}
