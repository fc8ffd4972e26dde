/**
 * SafetensorsFile and writeSafetensors: reading files written by the Python `safetensors` library,
 * writing byte-identical files, and typed errors for malformed input (built here by hand in a temp dir).
 */
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { SafetensorsError } from '../../src/errors';
import { DType, isFloatDType } from '../../src/weights/dtype';
import { SafetensorsFile, TensorEntry, writeSafetensors } from '../../src/weights/safetensors';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'safetensors');
const DTYPES_FILE = path.join(FIXTURES, 'dtypes.safetensors');

interface ExpectedTensor {
  dtype: string;
  shape: number[];
  values: number[] | null;
}
interface ExpectedJson {
  metadata: Record<string, string>;
  tensors: Record<string, ExpectedTensor>;
}

/** torch dtype names (as written by the generator) for each safetensors dtype. */
const TORCH_NAMES: Record<DType, string> = {
  F64: 'float64', F32: 'float32', F16: 'float16', BF16: 'bfloat16', F8_E4M3: 'float8_e4m3fn',
  F8_E5M2: 'float8_e5m2', I64: 'int64', I32: 'int32', I16: 'int16', I8: 'int8', U64: 'uint64',
  U32: 'uint32', U16: 'uint16', U8: 'uint8', BOOL: 'bool',
};
const OUT_OF_RANGE = ['i64_big', 'i64_small', 'u64_big', 'u32_big'];

let expected: ExpectedJson;
let tmp: string;

beforeAll(async () => {
  expected = JSON.parse(await fsp.readFile(path.join(FIXTURES, 'expected.json'), 'utf8')) as ExpectedJson;
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'safetensors-test-'));
});
afterAll(() => fsp.rm(tmp, { recursive: true, force: true }));

let counter = 0;
function tmpPath(name = 'file.safetensors'): string {
  counter += 1;
  return path.join(tmp, `${counter}-${name}`);
}

/** Writes [u64 header length][header][data] and returns the path. */
async function rawFile(header: unknown, data: number | Uint8Array = 0, headerLength?: bigint): Promise<string> {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(headerLength ?? BigInt(json.length));
  const body = typeof data === 'number' ? new Uint8Array(data) : data;
  const file = tmpPath();
  await fsp.writeFile(file, Buffer.concat([prefix, json, body]));
  return file;
}

async function openError(file: string): Promise<SafetensorsError> {
  const err = await SafetensorsFile.open(file).then(
    async (f) => {
      await f.close();
      return null;
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SafetensorsError);
  return err as SafetensorsError;
}

const entry = (dtype: string, shape: unknown, offsets: unknown): Record<string, unknown> => ({
  dtype,
  shape,
  data_offsets: offsets,
});

describe('reading the Python-written fixture', () => {
  let file: SafetensorsFile;
  beforeAll(async () => {
    file = await SafetensorsFile.open(DTYPES_FILE);
  });
  afterAll(() => file.close());

  it('has the metadata, names, dtypes and shapes torch saved', () => {
    expect({ ...file.metadata }).toEqual(expected.metadata);
    expect(file.keys()).toEqual(Object.keys(expected.tensors).sort());
    for (const name of file.keys()) {
      const info = file.info(name);
      const want = expected.tensors[name];
      expect([name, TORCH_NAMES[info.dtype], info.shape]).toEqual([name, want.dtype, want.shape]);
    }
  });

  it('reads F32 tensors bit-exactly', async () => {
    for (const name of ['f32', 'f32_scalar', 'f32_empty']) {
      const values = await file.readFloat32(name);
      expect([name, [...new Uint32Array(values.buffer, values.byteOffset, values.length)]]).toEqual([
        name,
        expected.tensors[name].values,
      ]);
    }
  });

  it('reads every in-range integer and BOOL tensor exactly', async () => {
    const names = file.keys().filter((n) => !isFloatDType(file.info(n).dtype) && !OUT_OF_RANGE.includes(n));
    expect(names).toHaveLength(9);
    for (const name of names) {
      expect([name, [...(await file.readInt32(name))]]).toEqual([name, expected.tensors[name].values]);
    }
  });

  it.each(OUT_OF_RANGE)('refuses %s, whose values do not fit int32, naming file and tensor', async (name) => {
    const err = await file.readInt32(name).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect(err).toMatchObject({ file: DTYPES_FILE, tensor: name });
    expect((err as Error).message).toMatch(/outside the int32 range/);
  });

  it('readTensor gives float32 for float dtypes and int32 otherwise, without leaking', async () => {
    const before = tf.memory().numTensors;
    const f16 = await file.readTensor('f16');
    const i64 = await file.readTensor('i64');
    const scalar = await file.readTensor('f32_scalar');
    expect([f16.dtype, f16.shape]).toEqual(['float32', file.info('f16').shape]);
    expect([i64.dtype, i64.shape, [...(await i64.data())]]).toEqual(['int32', [2, 3], expected.tensors.i64.values]);
    expect([scalar.shape, await scalar.data()]).toEqual([[], new Float32Array([2.5])]);
    tf.dispose([f16, i64, scalar]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses the wrong reader and unknown names', async () => {
    await expect(file.readFloat32('i32')).rejects.toThrow(/not a float type/);
    await expect(file.readInt32('f16')).rejects.toThrow(/float type/);
    expect(() => file.info('nope')).toThrow(SafetensorsError);
  });

  it('records absolute byte ranges that tile the data section', async () => {
    const bytes = await fsp.readFile(DTYPES_FILE);
    const dataStart = 8 + Number(bytes.readBigUInt64LE(0));
    const infos = file.keys().map((k) => file.info(k));
    expect(Math.min(...infos.map((i) => i.byteOffset))).toBe(dataStart);
    expect(infos.reduce((sum, i) => sum + i.byteLength, 0)).toBe(bytes.length - dataStart);
    const f16 = file.info('f16');
    const f16Bytes = bytes.subarray(f16.byteOffset, f16.byteOffset + f16.byteLength);
    expect(Buffer.from(await file.readBytes('f16'))).toEqual(f16Bytes);
  });
});

describe('writeSafetensors', () => {
  /** Reads every tensor of `file` as raw bytes, in the array form the writer takes. */
  async function rawEntries(file: SafetensorsFile): Promise<TensorEntry[]> {
    const out: TensorEntry[] = [];
    for (const name of file.keys().reverse()) {
      const { dtype, shape } = file.info(name);
      out.push({ name, dtype, shape, data: await file.readBytes(name) });
    }
    return out;
  }

  it.each([
    ['dtypes.safetensors'],
    ['encode.safetensors'],
    ['expected.safetensors'],
    ['sharded/model-00001-of-00002.safetensors'],
  ])('rewrites %s byte for byte as the Python library wrote it', async (name) => {
    const source = await SafetensorsFile.open(path.join(FIXTURES, name));
    const out = tmpPath();
    try {
      const metadata = Object.keys(source.metadata).length > 0 ? { ...source.metadata } : undefined;
      await writeSafetensors(out, await rawEntries(source), metadata);
    } finally {
      await source.close();
    }
    expect(Buffer.compare(await fsp.readFile(out), await fsp.readFile(path.join(FIXTURES, name)))).toBe(0);
  });

  it('round-trips tf tensors as F32, I32 and BOOL', async () => {
    const out = tmpPath();
    const tensors = {
      w: tf.tensor([[1.5, -2], [Infinity, 3e-40]], [2, 2], 'float32'),
      ids: tf.tensor([-5, 2 ** 31 - 1], [2], 'int32'),
      mask: tf.tensor([true, false, true], [3], 'bool'),
      '10': tf.scalar(7, 'float32'),
    };
    await writeSafetensors(out, tensors, { format: 'pt', '1': 'numeric key' });
    const file = await SafetensorsFile.open(out);
    try {
      expect(file.keys().map((k) => [k, file.info(k).dtype])).toEqual([
        ['10', 'F32'], ['ids', 'I32'], ['mask', 'BOOL'], ['w', 'F32'],
      ]);
      expect({ ...file.metadata }).toEqual({ format: 'pt', '1': 'numeric key' });
      expect(await file.readFloat32('w')).toEqual(await tensors.w.data());
      expect(file.info('w').shape).toEqual([2, 2]);
      expect([...(await file.readInt32('ids'))]).toEqual([-5, 2 ** 31 - 1]);
      expect([...(await file.readInt32('mask'))]).toEqual([1, 0, 1]);
      expect([...(await file.readFloat32('10'))]).toEqual([7]);
    } finally {
      await file.close();
      tf.dispose(Object.values(tensors));
    }
  });

  it('encodes F16/BF16 from float32 and widens I64 from int32', async () => {
    const out = tmpPath();
    const values = new Float32Array([1, -0.5, 65504, 1 / 3]);
    await writeSafetensors(out, [
      { name: 'h', dtype: 'F16', shape: [4], data: values },
      { name: 'b', dtype: 'BF16', shape: [2, 2], data: values },
      { name: 'i', dtype: 'I64', shape: [3], data: new Int32Array([-1, 0, 2 ** 31 - 1]) },
      { name: 'u', dtype: 'U8', shape: [2], data: new Uint8Array([0, 255]) },
    ]);
    const file = await SafetensorsFile.open(out);
    try {
      expect([...(await file.readFloat32('h'))]).toEqual([1, -0.5, 65504, 0.333251953125]);
      expect([...(await file.readFloat32('b'))]).toEqual([1, -0.5, 65536, 0.333984375]);
      expect([...(await file.readInt32('i'))]).toEqual([-1, 0, 2 ** 31 - 1]);
      expect([...(await file.readInt32('u'))]).toEqual([0, 255]);
    } finally {
      await file.close();
    }
  });

  it('pads the header to 8 bytes and leaves no temporary files', async () => {
    const dir = await fsp.mkdtemp(path.join(tmp, 'w-'));
    const out = path.join(dir, 'x.safetensors');
    await writeSafetensors(out, [{ name: 'abc', dtype: 'U8', shape: [1], data: new Uint8Array([9]) }]);
    const bytes = await fsp.readFile(out);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    expect(bytes.subarray(8, 8 + n).toString('utf8')).toBe(
      '{"abc":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'.padEnd(n, ' '),
    );
    expect(await fsp.readdir(dir)).toEqual(['x.safetensors']);
  });

  it('refuses bad input with a typed error and writes nothing', async () => {
    const dir = await fsp.mkdtemp(path.join(tmp, 'w-'));
    const out = path.join(dir, 'x.safetensors');
    const u8 = (name: string, n: number): TensorEntry => ({ name, dtype: 'U8', shape: [n], data: new Uint8Array(n) });
    const wrongSize = writeSafetensors(out, [{ ...u8('a', 2), shape: [3] }]);
    await expect(wrongSize).rejects.toThrow(/data has 2 bytes but shape \[3\]/);
    await expect(writeSafetensors(out, [u8('a', 1), u8('a', 1)])).rejects.toThrow(/appears twice/);
    await expect(writeSafetensors(out, [u8('__metadata__', 1)])).rejects.toThrow(/reserved/);
    await expect(writeSafetensors(out, [{ ...u8('a', 1), shape: [-1] }])).rejects.toThrow(SafetensorsError);
    await expect(writeSafetensors(out, [{ ...u8('a', 1), dtype: 'F4' as DType }])).rejects.toThrow(/unknown dtype/);
    const badMetadata = { k: 1 as unknown as string };
    await expect(writeSafetensors(out, [u8('a', 1)], badMetadata)).rejects.toThrow(/must be a string/);
    const s = tf.tensor(['x'], [1], 'string');
    await expect(writeSafetensors(out, { s })).rejects.toThrow(/tf.Tensor of dtype string/);
    s.dispose();
    expect(await fsp.readdir(dir)).toEqual([]);
    await expect(writeSafetensors(path.join(dir, 'missing', 'x.safetensors'), [u8('a', 1)])).rejects.toThrow(
      /cannot write/,
    );
  });
});

describe('malformed files give a SafetensorsError naming the file', () => {
  const good = { a: entry('F32', [2], [0, 8]), b: entry('U8', [3], [8, 11]) };

  it('accepts the well-formed baseline, including gaps and trailing bytes', async () => {
    const gappy = { a: entry('F32', [2], [4, 12]), b: entry('U8', [3], [16, 19]) };
    for (const file of [await rawFile(good, 11), await rawFile(gappy, 24)]) {
      const f = await SafetensorsFile.open(file);
      expect(f.keys()).toEqual(['a', 'b']);
      await f.close();
    }
  });

  it('file shorter than 8 bytes', async () => {
    const file = tmpPath();
    await fsp.writeFile(file, Buffer.from([1, 0, 0]));
    const err = await openError(file);
    expect(err.file).toBe(file);
    expect(err.message).toMatch(/3 bytes, shorter than the 8-byte/);
  });

  it('missing file', async () => {
    expect((await openError(path.join(tmp, 'absent.safetensors'))).message).toMatch(/cannot open: ENOENT/);
  });

  it('header length past the end of the file', async () => {
    expect((await openError(await rawFile(good, 11, 500n))).message).toMatch(/header length 500 runs past the end/);
  });

  it('absurd header length is refused before any allocation', async () => {
    expect((await openError(await rawFile(good, 11, 2n ** 63n))).message).toMatch(/exceeds the limit of 100000000/);
    const small = await rawFile(good, 11);
    await expect(SafetensorsFile.open(small, { maxHeaderBytes: 16 })).rejects.toThrow(/exceeds the limit of 16/);
  });

  it('header that is not UTF-8, not JSON, or not an object', async () => {
    const notUtf8 = tmpPath();
    const bytes = Buffer.from([2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe]);
    await fsp.writeFile(notUtf8, bytes);
    expect((await openError(notUtf8)).message).toMatch(/not valid UTF-8/);
    expect((await openError(await rawFile('{"a": '))).message).toMatch(/not valid JSON/);
    expect((await openError(await rawFile('[1, 2]'))).message).toMatch(/must be a JSON object, found array/);
    expect((await openError(await rawFile('null'))).message).toMatch(/found null/);
  });

  it.each([
    ['entry not an object', { a: 5 }, /entry must be an object/],
    ['missing dtype', { a: { shape: [1], data_offsets: [0, 4] } }, /dtype must be one of F64, .*; found nothing/],
    ['unknown dtype', { a: entry('F4', [1], [0, 4]) }, /found string "F4"/],
    ['dtype of wrong case', { a: entry('f32', [1], [0, 4]) }, /found string "f32"/],
    ['missing shape', { a: { dtype: 'F32', data_offsets: [0, 4] } }, /shape must be an array/],
    ['negative dimension', { a: entry('F32', [-1], [0, 4]) }, /non-negative integers, found array \[-1\]/],
    ['fractional dimension', { a: entry('F32', [1.5], [0, 4]) }, /shape must be/],
    ['string offsets', { a: entry('F32', [1], ['0', '4']) }, /data_offsets must be \[begin, end\]/],
    ['three offsets', { a: entry('F32', [1], [0, 4, 8]) }, /data_offsets must be/],
    ['missing offsets', { a: { dtype: 'F32', shape: [1] } }, /data_offsets must be/],
    ['end before begin', { a: entry('F32', [0], [4, 0]) }, /end before they begin/],
    ['offsets past the data', { a: entry('F32', [4], [0, 16]) }, /run past the data section \(8 bytes\)/],
    ['size mismatch', { a: entry('F32', [3], [0, 8]) }, /needs 12 bytes but data_offsets span 8/],
    ['overflowing shape', { a: entry('F32', [2 ** 40, 2 ** 40], [0, 8]) }, /too large/],
    [
      'overlapping ranges',
      { a: entry('F32', [2], [0, 8]), b: entry('U8', [4], [4, 8]) },
      /overlaps the one of tensor "a"/,
    ],
  ])('%s', async (_case, header, pattern) => {
    const err = await openError(await rawFile(header, 8));
    expect(err.message).toMatch(pattern);
    expect(err.tensor).toBe(pattern.source.includes('tensor "a"') ? 'b' : 'a');
  });

  it('__metadata__ that is not string -> string', async () => {
    expect((await openError(await rawFile({ __metadata__: { a: 1 } }))).message).toMatch(
      /"__metadata__" value for "a" must be a string, found number 1/,
    );
    expect((await openError(await rawFile({ __metadata__: ['x'] }))).message).toMatch(/must be an object of strings/);
  });

  it('file truncated after the header fails at open', async () => {
    const copy = tmpPath();
    const bytes = await fsp.readFile(DTYPES_FILE);
    await fsp.writeFile(copy, bytes.subarray(0, bytes.length - 10));
    const err = await openError(copy);
    expect(err.message).toMatch(/run past the data section .* the file is truncated/);
  });

  it('reads after close are refused', async () => {
    const f = await SafetensorsFile.open(await rawFile(good, 11));
    await f.close();
    await f.close();
    await expect(f.readBytes('a')).rejects.toThrow(/file is closed/);
  });
});
