/**
 * Reader and writer for the safetensors format:
 *
 *   [u64 LE: N] [N bytes: UTF-8 JSON header] [data section]
 *
 * The header maps each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to
 * the data section) and may hold "__metadata__" (string -> string). The reader validates the whole
 * header at open, then reads each tensor by byte range, so a shard is never held in memory at once.
 *
 * Leniency: the Rust `safetensors` crate also demands that tensors tile the data section with no gap
 * and no trailing bytes. We accept gaps and trailing bytes (they are harmless), but reject overlaps,
 * out-of-range offsets and any size that disagrees with dtype x shape.
 */
import * as tf from '@tensorflow/tfjs';
import { SafetensorsError } from '../errors';
import { platform } from '../platform';
import { ByteSource } from '../platform/files';
import { Backing } from './stored';
import {
  DType,
  DTYPES,
  TensorRef,
  decodeFloat,
  decodeInt32,
  dtypeSize,
  encodeBFloat16,
  encodeFloat16,
  isDType,
  isFloatDType,
  isTypedArray,
} from './dtype';

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute position of the first byte in the file. */
  byteOffset: number;
  byteLength: number;
}

export interface OpenOptions {
  /** Largest JSON header accepted, in bytes. Default 100 000 000, the limit of the Rust crate. */
  maxHeaderBytes?: number;
}

const DEFAULT_MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = '__metadata__';
function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return `array ${JSON.stringify(value).slice(0, 80)}`;
  if (typeof value === 'object') return 'object';
  return `${typeof value} ${JSON.stringify(value)}`;
}

/** The message of an error, also for errors from another realm (which fail `instanceof Error`). */
function message(err: unknown): string {
  const text = (err as { message?: unknown } | null)?.message;
  return typeof text === 'string' ? text : String(err);
}

/** Reads exactly `length` bytes at `position` into a fresh (so aligned) buffer. */
async function readExact(source: ByteSource, position: number, length: number, ref: TensorRef): Promise<Uint8Array> {
  try {
    return await source.read(position, length);
  } catch (err) {
    throw new SafetensorsError(ref.file, message(err), ref.tensor || undefined);
  }
}

// ---------------------------------------------------------------------------------------------------
// Header parsing

interface Header {
  metadata: Record<string, string>;
  tensors: Map<string, TensorInfo>;
}

async function readHeader(handle: ByteSource, file: string, maxHeaderBytes: number): Promise<Header> {
  const { size } = handle;
  if (size < 8) {
    throw new SafetensorsError(file, `file is ${size} bytes, shorter than the 8-byte header length prefix`);
  }
  const prefix = await readExact(handle, 0, 8, { file, tensor: '' });
  const n = new DataView(prefix.buffer).getBigUint64(0, true);
  if (n > BigInt(maxHeaderBytes)) {
    throw new SafetensorsError(file, `header length ${n} exceeds the limit of ${maxHeaderBytes} bytes`);
  }
  const headerBytes = Number(n);
  if (8 + headerBytes > size) {
    throw new SafetensorsError(file, `header length ${headerBytes} runs past the end of the file (${size} bytes)`);
  }
  const json = parseHeaderJson(await readExact(handle, 8, headerBytes, { file, tensor: '' }), file);
  const dataStart = 8 + headerBytes;
  return parseHeaderObject(json, file, dataStart, size - dataStart);
}

function parseHeaderJson(bytes: Uint8Array, file: string): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new SafetensorsError(file, 'header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError(file, `header is not valid JSON: ${message(err)}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new SafetensorsError(file, `header must be a JSON object, found ${describe(json)}`);
  }
  return json as Record<string, unknown>;
}

function parseHeaderObject(json: Record<string, unknown>, file: string, dataStart: number, dataSize: number): Header {
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = Object.freeze({});
  for (const [name, value] of Object.entries(json)) {
    if (name === METADATA_KEY) metadata = parseMetadata(value, file);
    else tensors.set(name, parseEntry(name, value, file, dataStart, dataSize));
  }
  checkNoOverlap([...tensors.values()], file);
  return { metadata, tensors };
}

function parseMetadata(value: unknown, file: string): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SafetensorsError(file, `"${METADATA_KEY}" must be an object of strings, found ${describe(value)}`);
  }
  const out: Record<string, string> = Object.create(null);
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== 'string') {
      throw new SafetensorsError(file, `"${METADATA_KEY}" value for "${key}" must be a string, found ${describe(v)}`);
    }
    out[key] = v;
  }
  return Object.freeze(out);
}

function isIndex(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function parseEntry(name: string, value: unknown, file: string, dataStart: number, dataSize: number): TensorInfo {
  const fail = (msg: string): SafetensorsError => new SafetensorsError(file, msg, name);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw fail(`entry must be an object with dtype, shape and data_offsets, found ${describe(value)}`);
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (!isDType(dtype)) {
    throw fail(`dtype must be one of ${DTYPES.join(', ')}; found ${describe(dtype)}`);
  }
  if (!Array.isArray(shape) || !shape.every(isIndex)) {
    throw fail(`shape must be an array of non-negative integers, found ${describe(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex)) {
    throw fail(`data_offsets must be [begin, end] with non-negative integers, found ${describe(offsets)}`);
  }
  const [begin, end] = offsets as number[];
  if (end < begin) throw fail(`data_offsets [${begin}, ${end}] end before they begin`);
  if (end > dataSize) {
    throw fail(
      `data_offsets [${begin}, ${end}] run past the data section (${dataSize} bytes): ` +
        'the file is truncated or the offsets are wrong',
    );
  }
  checkByteLength(shape as number[], dtype, end - begin, fail);
  const frozenShape = Object.freeze([...shape]) as number[];
  return Object.freeze({ name, dtype, shape: frozenShape, byteOffset: dataStart + begin, byteLength: end - begin });
}

function checkByteLength(shape: number[], dtype: DType, byteLength: number, fail: (m: string) => Error): void {
  // Safe integers only: a huge shape must not wrap around to a plausible size.
  let expected = dtypeSize(dtype);
  for (const dim of shape) {
    expected *= dim;
    if (!Number.isSafeInteger(expected)) throw fail(`shape [${shape}] of ${dtype} is too large`);
  }
  if (expected !== byteLength) {
    throw fail(`shape [${shape}] of ${dtype} needs ${expected} bytes but data_offsets span ${byteLength}`);
  }
}

function checkNoOverlap(infos: TensorInfo[], file: string): void {
  const sorted = [...infos].sort((a, b) => a.byteOffset - b.byteOffset || a.byteLength - b.byteLength);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    const cur = sorted[i];
    if (cur.byteOffset < prev.byteOffset + prev.byteLength) {
      throw new SafetensorsError(file, `byte range overlaps the one of tensor "${prev.name}"`, cur.name);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Reader

export class SafetensorsFile {
  private handle: ByteSource | null;

  private constructor(
    readonly path: string,
    handle: ByteSource,
    readonly metadata: Readonly<Record<string, string>>,
    readonly tensors: ReadonlyMap<string, TensorInfo>,
  ) {
    this.handle = handle;
  }

  /** Opens `file` (a path in Node, a URL in the browser) and validates its whole header; tensor data is read later. */
  static async open(file: string, opts: OpenOptions = {}): Promise<SafetensorsFile> {
    let handle: ByteSource;
    try {
      handle = await platform.openFile(file);
    } catch (err) {
      throw new SafetensorsError(file, `cannot open: ${message(err)}`);
    }
    return SafetensorsFile.fromSource(handle, opts);
  }

  /** Reads a file from any byte source (a local file, HTTP ranges); closes the source when its header is bad. */
  static async fromSource(source: ByteSource, opts: OpenOptions = {}): Promise<SafetensorsFile> {
    try {
      const header = await readHeader(source, source.name, opts.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES);
      return new SafetensorsFile(source.name, source, header.metadata, header.tensors);
    } catch (err) {
      await source.close();
      throw err;
    }
  }

  /** Tensor names, sorted. */
  keys(): string[] {
    return [...this.tensors.keys()].sort();
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new SafetensorsError(this.path, `no tensor named "${name}" in this file`, name);
    return info;
  }

  /** The raw little-endian bytes of one tensor. */
  async readBytes(name: string): Promise<Uint8Array> {
    const info = this.info(name);
    if (!this.handle) throw new SafetensorsError(this.path, 'file is closed', name);
    return readExact(this.handle, info.byteOffset, info.byteLength, { file: this.path, tensor: name });
  }

  /**
   * One tensor's bytes without a copy where the native addon can map the file (each tensor its own mapping, released
   * by `backing.drop()` when its last user is done). Elsewhere the bytes are read into fresh memory and `backing` is
   * null.
   */
  async viewBytes(name: string): Promise<{ bytes: Uint8Array; backing: Backing | null }> {
    const info = this.info(name);
    const addon = platform.nativeAddon();
    const file = this.handle?.localPath;
    if (addon && file !== undefined && info.byteLength > 0) {
      let buffer: ArrayBuffer | null = null;
      try {
        buffer = addon.mapFile(file, info.byteOffset, info.byteLength);
      } catch {
        // unmappable (a special file, an exotic file system): read it instead
      }
      if (buffer) {
        const mapped = buffer;
        return { bytes: new Uint8Array(mapped), backing: new Backing(() => addon.unmap(mapped)) };
      }
    }
    return { bytes: await this.readBytes(name), backing: null };
  }

  /** A float tensor widened to float32 (F64 rounded to nearest). Integer tensors are refused. */
  async readFloat32(name: string): Promise<Float32Array> {
    const { dtype } = this.info(name);
    return decodeFloat(dtype, await this.readBytes(name), { file: this.path, tensor: name });
  }

  /** An integer or BOOL tensor as int32; throws if a value does not fit. Float tensors are refused. */
  async readInt32(name: string): Promise<Int32Array> {
    const { dtype } = this.info(name);
    return decodeInt32(dtype, await this.readBytes(name), { file: this.path, tensor: name });
  }

  /** Float dtypes become a float32 tensor, integer and BOOL dtypes an int32 tensor. Caller disposes it. */
  async readTensor(name: string): Promise<tf.Tensor> {
    const { dtype, shape } = this.info(name);
    if (isFloatDType(dtype)) return tf.tensor(await this.readFloat32(name), [...shape], 'float32');
    return tf.tensor(await this.readInt32(name), [...shape], 'int32');
  }

  /** Closes the file (mapped views still held stay valid). Safe to call twice. */
  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    if (handle) await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// Writer

/**
 * One tensor to write. `data` holds the elements in the dtype's own layout (any view of the right
 * byte length), with two conveniences: F16/BF16 accept a Float32Array (rounded to nearest-even), and
 * I64 accepts an Int32Array (sign-extended).
 */
export interface TensorEntry {
  name: string;
  dtype: DType;
  shape: number[];
  data: ArrayBufferView;
}

interface PendingTensor {
  name: string;
  dtype: DType;
  shape: number[];
  byteLength: number;
  bytes: () => Promise<Uint8Array>;
}

/** The Rust crate's dtype order (increasing alignment); files list tensors by decreasing alignment. */
const WRITE_ORDER: readonly DType[] = [
  'BOOL', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'F64', 'I64', 'U64',
];

const TF_DTYPES: Readonly<Record<string, DType>> = { float32: 'F32', int32: 'I32', bool: 'BOOL' };

function byteLengthOf(file: string, name: string, dtype: DType, shape: number[]): number {
  if (!Array.isArray(shape) || !shape.every(isIndex)) {
    throw new SafetensorsError(file, `shape must be non-negative integers, found ${describe(shape)}`, name);
  }
  const length = shape.reduce((a, b) => a * b, dtypeSize(dtype));
  if (!Number.isSafeInteger(length)) throw new SafetensorsError(file, `shape [${shape}] is too large`, name);
  return length;
}

function entryBytes(entry: TensorEntry): Uint8Array {
  let data = entry.data;
  if (entry.dtype === 'F16' && isTypedArray(data, 'Float32Array')) data = encodeFloat16(data as Float32Array);
  else if (entry.dtype === 'BF16' && isTypedArray(data, 'Float32Array')) data = encodeBFloat16(data as Float32Array);
  else if (entry.dtype === 'I64' && isTypedArray(data, 'Int32Array')) data = BigInt64Array.from(data as Int32Array, (v) => BigInt(v));
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function fromEntries(file: string, entries: TensorEntry[]): PendingTensor[] {
  return entries.map((entry) => {
    const { name, dtype, shape } = entry;
    if (!isDType(dtype)) throw new SafetensorsError(file, `unknown dtype ${describe(dtype)}`, name);
    const byteLength = byteLengthOf(file, name, dtype, shape);
    const bytes = entryBytes(entry);
    if (bytes.byteLength !== byteLength) {
      throw new SafetensorsError(
        file,
        `data has ${bytes.byteLength} bytes but shape [${shape}] of ${dtype} needs ${byteLength}`,
        name,
      );
    }
    return { name, dtype, shape: [...shape], byteLength, bytes: async () => bytes };
  });
}

function fromTfTensors(file: string, tensors: Record<string, tf.Tensor>): PendingTensor[] {
  return Object.entries(tensors).map(([name, t]) => {
    const dtype = TF_DTYPES[t.dtype];
    if (!dtype) throw new SafetensorsError(file, `cannot write a tf.Tensor of dtype ${t.dtype}`, name);
    const byteLength = byteLengthOf(file, name, dtype, t.shape);
    const bytes = async (): Promise<Uint8Array> => {
      const data = (await t.data()) as Float32Array | Int32Array | Uint8Array;
      return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    };
    return { name, dtype, shape: [...t.shape], byteLength, bytes };
  });
}

const utf8 = new TextEncoder();

function compareUtf8(a: string, b: string): number {
  const x = utf8.encode(a);
  const y = utf8.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** Python's order: decreasing dtype alignment, then name by UTF-8 bytes. */
function sortForWriting(tensors: PendingTensor[]): PendingTensor[] {
  return [...tensors].sort(
    (a, b) =>
      WRITE_ORDER.indexOf(b.dtype) - WRITE_ORDER.indexOf(a.dtype) ||
      compareUtf8(a.name, b.name),
  );
}

function checkNames(file: string, tensors: PendingTensor[]): void {
  const seen = new Set<string>();
  for (const { name } of tensors) {
    if (name === METADATA_KEY) throw new SafetensorsError(file, `"${METADATA_KEY}" is reserved`, name);
    if (seen.has(name)) throw new SafetensorsError(file, 'tensor name appears twice', name);
    seen.add(name);
  }
}

/** JSON object text with keys in the given order (a JS object would move integer-like keys first). */
function jsonObject(entries: Array<[string, string]>): string {
  return `{${entries.map(([key, valueJson]) => `${JSON.stringify(key)}:${valueJson}`).join(',')}}`;
}

/** Header JSON as the Python library writes it, padded with spaces to a multiple of 8 bytes. */
function buildHeader(file: string, tensors: PendingTensor[], metadata?: Record<string, string>): Uint8Array {
  const entries: Array<[string, string]> = [];
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') {
        throw new SafetensorsError(file, `metadata "${k}" must be a string, found ${describe(v)}`);
      }
    }
    entries.push([METADATA_KEY, jsonObject(Object.entries(metadata).map(([k, v]) => [k, JSON.stringify(v)]))]);
  }
  let offset = 0;
  for (const t of tensors) {
    const offsets = `[${offset},${offset + t.byteLength}]`;
    entries.push([t.name, `{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":${offsets}}`]);
    offset += t.byteLength;
  }
  const json = utf8.encode(jsonObject(entries));
  const padded = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20);
  padded.set(json);
  return padded;
}

/** Writes through a temporary file in the same directory and renames it, so no partial file is seen. */
async function writeAtomically(file: string, write: (append: (bytes: Uint8Array) => Promise<void>) => Promise<void>): Promise<void> {
  try {
    await platform.writeFileAtomically(file, write);
  } catch (err) {
    if (err instanceof SafetensorsError) throw err;
    throw new SafetensorsError(file, `cannot write: ${message(err)}`);
  }
}

/** The 8-byte length, the header, then every tensor's bytes in order, through a temporary file. */
async function writePending(file: string, pending: PendingTensor[], metadata?: Record<string, string>): Promise<void> {
  checkNames(file, pending);
  const header = buildHeader(file, pending, metadata);
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(header.byteLength), true);
  await writeAtomically(file, async (append) => {
    await append(prefix);
    await append(header);
    for (const t of pending) await append(await t.bytes());
  });
}

/**
 * Writes a safetensors file byte-identical to what the Python library writes for the same tensors:
 * tensors ordered by decreasing dtype alignment then name, contiguous offsets, header padded with
 * spaces to 8 bytes. tf.Tensor values are written as F32 (float32), I32 (int32) or BOOL (bool); use
 * the array form for other dtypes (F16, BF16, I64, ...).
 */
export async function writeSafetensors(
  file: string,
  tensors: TensorEntry[] | Record<string, tf.Tensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  const pending = sortForWriting(Array.isArray(tensors) ? fromEntries(file, tensors) : fromTfTensors(file, tensors));
  await writePending(file, pending, metadata);
}

/** One tensor whose bytes are produced when the writer reaches it (dtype layout, little-endian). */
export interface LazyTensorEntry {
  name: string;
  dtype: DType;
  shape: number[];
  bytes: () => Promise<Uint8Array>;
}

/**
 * writeSafetensors for tensors too large to hold together (a multi-GB shard): the same bytes on disk, each
 * tensor's data produced and written in turn, so memory holds one tensor at a time.
 */
export async function writeSafetensorsLazy(file: string, tensors: LazyTensorEntry[], metadata?: Record<string, string>): Promise<void> {
  const pending = sortForWriting(
    tensors.map(({ name, dtype, shape, bytes }) => {
      if (!isDType(dtype)) throw new SafetensorsError(file, `unknown dtype ${describe(dtype)}`, name);
      const byteLength = byteLengthOf(file, name, dtype, shape);
      const checked = async (): Promise<Uint8Array> => {
        const b = await bytes();
        if (b.byteLength !== byteLength) throw new SafetensorsError(file, `data has ${b.byteLength} bytes but shape [${shape}] of ${dtype} needs ${byteLength}`, name);
        return b;
      };
      return { name, dtype, shape: [...shape], byteLength, bytes: checked };
    }),
  );
  await writePending(file, pending, metadata);
}
