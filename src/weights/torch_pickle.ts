/**
 * A restricted reader of the pickle inside a PyTorch checkpoint (`data.pkl` of a torch.save zip): it understands
 * the opcodes a state dict uses and resolves only the globals a state dict names (OrderedDict, the tensor and
 * parameter rebuild functions, the typed storage classes). Nothing is executed: any other global is an error.
 * Tensors come back as references to a storage (a zip member) plus offset, shape and strides.
 */
import { SafetensorsError } from '../errors';
import { DType } from './dtype';

/** A storage: the zip member `data/<key>`, `numel` elements of `dtype`. */
export interface TorchStorage {
  key: string;
  dtype: DType;
  numel: number;
}

/** A tensor as torch._utils._rebuild_tensor_v2 describes it. */
export interface TorchTensorRef {
  storage: TorchStorage;
  offset: number; // in elements
  shape: number[];
  strides: number[]; // in elements
}

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  DoubleStorage: 'F64',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

class Mark {}
const MARK = new Mark();
type Global = { global: string };
type Reduced = { reduce: string; args: unknown[] };

function isGlobal(x: unknown): x is Global {
  return typeof x === 'object' && x !== null && typeof (x as Global).global === 'string';
}

function toInt(x: unknown, what: string, file: string): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x)) throw new SafetensorsError(file, `pickle: ${what} is not an integer`);
  return x;
}

function intTuple(x: unknown, what: string, file: string): number[] {
  if (!Array.isArray(x)) throw new SafetensorsError(file, `pickle: ${what} is not a tuple`);
  return x.map((v) => toInt(v, what, file));
}

/** What a REDUCE of an allowed global produces. */
function reduce(fn: Global, args: unknown[], file: string): unknown {
  switch (fn.global) {
    case 'collections OrderedDict':
    case 'builtins dict':
      return new Map<unknown, unknown>();
    case 'torch._utils _rebuild_tensor_v2':
    case 'torch._utils _rebuild_tensor': {
      const [storage, offset, size, stride] = args;
      if (!storage || typeof storage !== 'object' || !('key' in storage)) throw new SafetensorsError(file, 'pickle: tensor without a storage');
      return { storage: storage as TorchStorage, offset: toInt(offset, 'storage offset', file), shape: intTuple(size, 'size', file), strides: intTuple(stride, 'stride', file) } satisfies TorchTensorRef;
    }
    case 'torch._utils _rebuild_parameter':
    case 'torch._utils _rebuild_parameter_with_state':
      return args[0]; // nn.Parameter(data, requires_grad, ...): the data
    default:
      return { reduce: fn.global, args } satisfies Reduced;
  }
}

const ALLOWED_GLOBALS = new Set([
  'collections OrderedDict',
  'builtins dict',
  'torch._utils _rebuild_tensor_v2',
  'torch._utils _rebuild_tensor',
  'torch._utils _rebuild_parameter',
  'torch._utils _rebuild_parameter_with_state',
  ...Object.keys(STORAGE_DTYPES).map((s) => `torch ${s}`),
]);

/** Runs the pickle and returns the top-level object (Map for dicts, arrays for tuples and lists). */
export function unpickle(data: Uint8Array, file: string): unknown {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let p = 0;
  const fail = (msg: string): never => {
    throw new SafetensorsError(file, `pickle at byte ${p}: ${msg}`);
  };
  const need = (n: number) => {
    if (p + n > data.length) fail('truncated');
  };
  const u8 = () => (need(1), data[p++]);
  const u16 = () => (need(2), (p += 2), view.getUint16(p - 2, true));
  const u32 = () => (need(4), (p += 4), view.getUint32(p - 4, true));
  const text = (n: number) => {
    need(n);
    p += n;
    return new TextDecoder().decode(data.subarray(p - n, p));
  };
  const line = () => {
    const end = data.indexOf(0x0a, p);
    if (end < 0) fail('unterminated line');
    const s = new TextDecoder().decode(data.subarray(p, end));
    p = end + 1;
    return s;
  };
  const popMark = (): unknown[] => {
    for (let i = stack.length - 1; i >= 0; i--) {
      if (stack[i] === MARK) return stack.splice(i).slice(1);
    }
    return fail('no MARK on the stack');
  };
  const global = (name: string): Global => {
    if (!ALLOWED_GLOBALS.has(name)) fail(`refusing global ${name.replace(' ', '.')} (only state dicts of tensors are read)`);
    return { global: name };
  };
  const setItems = (dict: unknown, items: unknown[]) => {
    if (!(dict instanceof Map)) fail('SETITEM(S) on something that is not a dict');
    for (let i = 0; i + 1 < items.length; i += 2) (dict as Map<unknown, unknown>).set(items[i], items[i + 1]);
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: need(8); p += 8; break; // FRAME
      case 0x2e: return stack.pop(); // STOP
      case 0x28: stack.push(MARK); break; // MARK
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x4a: need(4); p += 4; stack.push(view.getInt32(p - 4, true)); break; // BININT
      case 0x8a: { // LONG1
        const n = u8();
        need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[p + i]);
        if (n > 0 && data[p + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        p += n;
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) fail('integer beyond 2^53');
        stack.push(Number(v));
        break;
      }
      case 0x47: need(8); p += 8; stack.push(view.getFloat64(p - 8, false)); break; // BINFLOAT
      case 0x58: stack.push(text(u32())); break; // BINUNICODE
      case 0x8c: stack.push(text(u8())); break; // SHORT_BINUNICODE
      case 0x43: { const n = u8(); need(n); stack.push(data.slice(p, (p += n))); break; } // SHORT_BINBYTES
      case 0x42: { const n = u32(); need(n); stack.push(data.slice(p, (p += n))); break; } // BINBYTES
      case 0x71: memo.set(u8(), stack[stack.length - 1]); break; // BINPUT
      case 0x72: memo.set(u32(), stack[stack.length - 1]); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, stack[stack.length - 1]); break; // MEMOIZE
      case 0x68: stack.push(memo.get(u8())); break; // BINGET
      case 0x6a: stack.push(memo.get(u32())); break; // LONG_BINGET
      case 0x63: { const module = line(); stack.push(global(`${module} ${line()}`)); break; } // GLOBAL
      case 0x93: { const name = stack.pop() as string; const module = stack.pop() as string; stack.push(global(`${module} ${name}`)); break; } // STACK_GLOBAL
      case 0x74: stack.push(popMark()); break; // TUPLE
      case 0x85: stack.push([stack.pop()]); break; // TUPLE1
      case 0x86: { const b = stack.pop(); stack.push([stack.pop(), b]); break; } // TUPLE2
      case 0x87: { const c = stack.pop(); const b = stack.pop(); stack.push([stack.pop(), b, c]); break; } // TUPLE3
      case 0x61: { const v = stack.pop(); (stack[stack.length - 1] as unknown[]).push(v); break; } // APPEND
      case 0x65: { const items = popMark(); (stack[stack.length - 1] as unknown[]).push(...items); break; } // APPENDS
      case 0x73: { const v = stack.pop(); const k = stack.pop(); setItems(stack[stack.length - 1], [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(stack[stack.length - 1], items); break; } // SETITEMS
      case 0x62: stack.pop(); break; // BUILD: instance state (a state dict's _metadata) is not needed
      case 0x52: { // REDUCE
        const args = stack.pop();
        const fn = stack.pop();
        if (!isGlobal(fn) || !Array.isArray(args)) fail('REDUCE of something that is not an allowed global');
        stack.push(reduce(fn as Global, args as unknown[], file));
        break;
      }
      case 0x51: { // BINPERSID: ('storage', <storage class>, key, location, numel)
        const pid = stack.pop();
        if (!Array.isArray(pid) || pid[0] !== 'storage' || !isGlobal(pid[1])) fail('unknown persistent id (not a torch storage)');
        const [, cls, key, , numel] = pid as [string, Global, unknown, unknown, unknown];
        const dtype = STORAGE_DTYPES[cls.global.replace(/^torch /, '')];
        if (!dtype) fail(`unsupported storage ${cls.global}`);
        stack.push({ key: String(key), dtype, numel: toInt(numel, 'storage size', file) } satisfies TorchStorage);
        break;
      }
      default:
        fail(`unsupported opcode 0x${op.toString(16)} (not a state dict as torch.save writes it)`);
    }
  }
}
