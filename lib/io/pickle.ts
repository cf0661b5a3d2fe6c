/**
 * A safe reader of Python pickles (protocols 0-5, the opcodes `torch.save` and common
 * checkpoints use). It never executes anything: a GLOBAL is looked up in the caller's allow-list
 * of constructors (plain TypeScript functions that build data) and any other name is refused,
 * like PyTorch's `weights_only=True`. Dicts become `Map`s, lists and tuples arrays.
 */

/** A constructor the pickle may call: receives the REDUCE/NEWOBJ arguments, returns data. */
export type PickleConstructor = (args: unknown[]) => unknown;

export interface UnpickleOptions {
  /** Allowed globals by "module.name". */
  globals: Record<string, PickleConstructor>;
  /** Resolves persistent ids (PyTorch storages). */
  persistentLoad?: (id: unknown) => unknown;
}

export class UnsafePickleError extends Error {}

/** A global named by the pickle and found in the allow-list (not yet called). */
export class Global {
  constructor(
    readonly qualifiedName: string,
    readonly construct: PickleConstructor,
  ) {}
}

const MARK = Symbol('mark');

export function unpickle(bytes: Uint8Array, options: UnpickleOptions): unknown {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const decoder = new TextDecoder('utf-8');
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;

  const need = (n: number) => {
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`pickle claims a length of ${n} bytes at byte ${pos}`);
    if (pos + n > bytes.length) throw new Error(`pickle claims ${n} bytes at byte ${pos} but ${bytes.length - pos} remain (truncated?)`);
  };
  const u8 = () => (need(1), bytes[pos++]);
  const u16 = () => (need(2), (pos += 2), view.getUint16(pos - 2, true));
  const u32 = () => (need(4), (pos += 4), view.getUint32(pos - 4, true));
  const i32 = () => (need(4), (pos += 4), view.getInt32(pos - 4, true));
  const u64 = () => (need(8), (pos += 8), Number(view.getBigUint64(pos - 8, true)));
  const take = (n: number) => (need(n), (pos += n), bytes.subarray(pos - n, pos));
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw new Error('pickle data ends unexpectedly (truncated?)');
    const text = decoder.decode(bytes.subarray(pos, end));
    pos = end + 1;
    return text;
  };
  const popMark = (): unknown[] => {
    const index = stack.lastIndexOf(MARK);
    if (index < 0) throw new Error('pickle MARK not found');
    const items = stack.splice(index);
    items.shift();
    return items;
  };
  const top = () => {
    if (stack.length === 0) throw new Error('pickle stack underflow');
    return stack[stack.length - 1];
  };
  const pop = () => {
    if (stack.length === 0) throw new Error('pickle stack underflow');
    return stack.pop();
  };
  const resolveGlobal = (module: string, name: string): Global => {
    const qualified = `${module}.${name}`;
    const construct = options.globals[qualified];
    if (!construct) throw new UnsafePickleError(`refusing to load global '${qualified}': only tensors, storages and plain containers are accepted`);
    return new Global(qualified, construct);
  };
  const call = (callable: unknown, args: unknown) => {
    if (!(callable instanceof Global)) throw new UnsafePickleError('pickle calls something that is not an allowed global');
    return callable.construct(Array.isArray(args) ? args : [args]);
  };
  const decodeLong = (data: Uint8Array) => {
    let value = 0n;
    for (let i = data.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(data[i]);
    if (data.length > 0 && data[data.length - 1] & 0x80) value -= 1n << BigInt(8 * data.length);
    return Number.isSafeInteger(Number(value)) ? Number(value) : value;
  };
  const setItems = (target: unknown, items: unknown[]) => {
    if (!(target instanceof Map)) throw new Error('pickle SETITEM on a non-dict');
    for (let i = 0; i + 1 < items.length; i += 2) target.set(items[i], items[i + 1]);
  };

  for (;;) {
    const opcode = u8();
    switch (opcode) {
      case 0x80: // PROTO
        u8();
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(decodeLong(take(u8())));
        break;
      case 0x8b: // LONG4
        stack.push(decodeLong(take(i32())));
        break;
      case 0x49: {
        // INT (protocol 0): "01"/"00" are booleans
        const text = line();
        stack.push(text === '01' ? true : text === '00' ? false : Number(text));
        break;
      }
      case 0x4c: // LONG (protocol 0)
        stack.push(Number(line().replace(/L$/, '')));
        break;
      case 0x46: // FLOAT (protocol 0)
        stack.push(Number(line()));
        break;
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(Buffer.from(take(u8())).toString('latin1'));
        break;
      case 0x54: // BINSTRING
        stack.push(Buffer.from(take(i32())).toString('latin1'));
        break;
      case 0x58: // BINUNICODE
        stack.push(decoder.decode(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(decoder.decode(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(decoder.decode(take(u64())));
        break;
      case 0x42: // BINBYTES
        stack.push(Uint8Array.from(take(u32())));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(Uint8Array.from(take(u8())));
        break;
      case 0x8e: // BINBYTES8
        stack.push(Uint8Array.from(take(u64())));
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x74: // TUPLE
        stack.push(popMark());
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x61: {
        // APPEND
        const item = pop();
        (top() as unknown[]).push(item);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const list = top();
        if (!Array.isArray(list)) throw new Error('pickle APPENDS on a non-list');
        list.push(...items);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x64: {
        // DICT
        const items = popMark();
        const dict = new Map();
        setItems(dict, items);
        stack.push(dict);
        break;
      }
      case 0x73: {
        // SETITEM
        const value = pop();
        const key = pop();
        setItems(top(), [key, value]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x8f: // EMPTY_SET
        stack.push(new Set());
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const set = top();
        if (!(set instanceof Set)) throw new Error('pickle ADDITEMS on a non-set');
        for (const item of items) set.add(item);
        break;
      }
      case 0x91: // FROZENSET
        stack.push(new Set(popMark()));
        break;
      case 0x63: {
        // GLOBAL
        const module = line();
        stack.push(resolveGlobal(module, line()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw new Error('pickle STACK_GLOBAL needs two strings');
        stack.push(resolveGlobal(module, name));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const callable = pop();
        stack.push(call(callable, args));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        const cls = pop();
        stack.push(call(cls, args));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        pop(); // kwargs
        const args = pop();
        const cls = pop();
        stack.push(call(cls, args));
        break;
      }
      case 0x62: {
        // BUILD: only plain-dict state onto dicts (e.g. OrderedDict with _metadata) is accepted
        const state = pop();
        const target = top();
        if (target instanceof Map && state instanceof Map) for (const [k, v] of state) target.set(k, v);
        else if (!(target instanceof Map && (state === null || Array.isArray(state)))) {
          throw new UnsafePickleError('refusing BUILD on an object that is not a plain container');
        }
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x70: // PUT (protocol 0)
        memo.set(Number(line()), top());
        break;
      case 0x68: // BINGET
        stack.push(memoGet(memo, u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(memo, u32()));
        break;
      case 0x67: // GET (protocol 0)
        stack.push(memoGet(memo, Number(line())));
        break;
      case 0x51: {
        // BINPERSID
        const id = pop();
        if (!options.persistentLoad) throw new UnsafePickleError('pickle uses persistent ids but none are expected');
        stack.push(options.persistentLoad(id));
        break;
      }
      default:
        throw new Error(`unsupported pickle opcode 0x${opcode.toString(16)} at byte ${pos - 1}`);
    }
  }
}

function memoGet(memo: Map<number, unknown>, key: number): unknown {
  if (!memo.has(key)) throw new Error(`pickle memo key ${key} missing`);
  return memo.get(key);
}
