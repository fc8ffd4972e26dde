/**
 * Image preprocessing against the slow (Pillow) VideoLlavaImageProcessor of transformers 5.24 with Pillow 13
 * (fixtures written by reference/gen_images.py): decoding under both Python entry points, the resized uint8
 * image, the final pixel_values, the config file, raw-array input and typed errors.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import * as tf from '@tensorflow/tfjs';
import { ConfigError, InputError, MediaError } from '../../src/errors';
import {
  decodeImage,
  DecodeConvention,
  IMAGE_PREPROCESSOR_DEFAULTS,
  ImagePreprocessorConfig,
  loadImagePreprocessorConfig,
  parseImagePreprocessorConfig,
  pixelValuesTensor,
  preprocessImage,
  preprocessImages,
  RawImage,
  resizeImage,
} from '../../src/processing/image';

const DIR = path.join(__dirname, '..', 'fixtures', 'images');

interface Case {
  file: string;
  convention: DecodeConvention;
  variant: string;
  conventions_agree?: boolean;
  decoded_shape: number[];
  pixel_values_shape: number[];
  pixel_values_sha256: string;
  pixel_values_full?: boolean;
  resized_shape?: number[];
  resized_sha256?: string;
  resized_sub_stride?: [number, number];
}

interface Manifest {
  variants: Record<string, Record<string, unknown>>;
  cases: Case[];
}

type Tensor = { shape: number[]; u8?: Uint8Array; f32?: Float32Array };

/** Reads the U8 and F32 tensors of a safetensors file. */
function readTensors(file: string): Map<string, Tensor> {
  const buf = fs.readFileSync(file);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const out = new Map<string, Tensor>();
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const bytes = buf.subarray(8 + headerLen + info.data_offsets[0], 8 + headerLen + info.data_offsets[1]);
    const copy = new Uint8Array(bytes); // aligned copy
    if (info.dtype === 'U8') out.set(name, { shape: info.shape, u8: copy });
    else if (info.dtype === 'F32') out.set(name, { shape: info.shape, f32: new Float32Array(copy.buffer) });
    else throw new Error(`${name}: unexpected dtype ${info.dtype}`);
  }
  return out;
}

const manifest = JSON.parse(fs.readFileSync(path.join(DIR, 'manifest.json'), 'utf8')) as Manifest;
const tensors = readTensors(path.join(DIR, 'expected.safetensors'));
const baseConfigJson = JSON.parse(fs.readFileSync(path.join(DIR, 'preprocessor_config.json'), 'utf8'));

function configFor(variant: string): ImagePreprocessorConfig {
  return parseImagePreprocessorConfig({ ...baseConfigJson, ...manifest.variants[variant] });
}

function sha256(a: Uint8Array | Float32Array): string {
  return crypto.createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** rows r0::sr, columns c0::sc of an HWC uint8 image. */
function strided(img: RawImage, sr: number, sc: number): Uint8Array {
  const rows = Math.ceil(img.height / sr);
  const cols = Math.ceil(img.width / sc);
  const out = new Uint8Array(rows * cols * 3);
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < cols; x++) {
      const s = (y * sr * img.width + x * sc) * 3;
      out.set(img.data.subarray(s, s + 3), (y * cols + x) * 3);
    }
  }
  return out;
}

/** pixel_values[:, 3::14, 3::14] of a [3, H, W] array. */
function pixelSub(pv: Float32Array, h: number, w: number): Float32Array {
  const rows = Math.ceil((h - 3) / 14);
  const cols = Math.ceil((w - 3) / 14);
  const out = new Float32Array(3 * rows * cols);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < cols; x++) out[(c * rows + y) * cols + x] = pv[(c * h + 3 + 14 * y) * w + 3 + 14 * x];
    }
  }
  return out;
}

/** The decoded array Python recorded for this file and convention (the load_image one when both agree). */
function expectedDecoded(c: Case): Tensor | undefined {
  return tensors.get(`${c.file}.${c.convention}.decoded`) ?? tensors.get(`${c.file}.load_image.decoded`);
}

const measured: string[] = [];
afterAll(() => {
  // the per-file maximum differences, for the report
  if (process.env.VIDEO_LLAVA_REPORT) console.log(measured.join('\n'));
});

describe('decodeImage matches Pillow + transformers decoding', () => {
  const decodeCases = manifest.cases.filter((c) => c.variant === 'clip' && expectedDecoded(c));
  test('the fixtures hold decoded arrays for every special format', () => {
    expect(decodeCases.length).toBeGreaterThan(40);
  });
  for (const c of decodeCases) {
    test(`${c.file} (${c.convention})`, async () => {
      const expected = expectedDecoded(c)!;
      if (!tensors.has(`${c.file}.${c.convention}.decoded`)) expect(c.conventions_agree).toBe(true);
      const img = await decodeImage(path.join(DIR, c.file), { convention: c.convention });
      expect([img.height, img.width, 3]).toEqual(expected.shape);
      const d = maxAbsDiff(img.data, expected.u8!);
      measured.push(`decode ${c.file} ${c.convention}: max |diff| ${d}`);
      // Tolerance 0: PNG/GIF/WebP-lossless are lossless, and for JPEG and lossy WebP sharp's decoders
      // (mozjpeg = libjpeg-turbo's decoder, libwebp) run the same integer IDCT / upsampling as Pillow's.
      expect(d).toBe(0);
    });
  }
});

describe('resize and pixel_values match VideoLlavaImageProcessor (slow)', () => {
  for (const c of manifest.cases) {
    test(`${c.file} (${c.convention}, ${c.variant})`, async () => {
      const cfg = configFor(c.variant);
      const img = await decodeImage(path.join(DIR, c.file), { convention: c.convention });
      const key = `${c.file}.${c.convention}.${c.variant}`;

      if (c.resized_shape) {
        const resized = resizeImage(img, cfg);
        expect([resized.height, resized.width, 3]).toEqual(c.resized_shape);
        const [sr, sc] = c.resized_sub_stride!;
        const dr = maxAbsDiff(strided(resized, sr, sc), tensors.get(`${key}.resized_sub`)!.u8!);
        measured.push(`resize ${key}: max |diff| on the stored subsample ${dr}`);
        // Tolerance 0 (subsample and SHA-256 of the whole array): the resampler is Pillow's integer arithmetic.
        expect(dr).toBe(0);
        expect(sha256(resized.data)).toBe(c.resized_sha256);
      }

      const pv = preprocessImage(img, cfg);
      const [, h, w] = c.pixel_values_shape;
      expect(pv.length).toBe(3 * h * w);
      const full = tensors.get(`${key}.pixel_values`);
      const dp = full
        ? maxAbsDiff(pv, full.f32!)
        : maxAbsDiff(pixelSub(pv, h, w), tensors.get(`${key}.pixel_values_sub`)!.f32!);
      measured.push(`pixel_values ${key}: max |diff| ${dp} (${full ? 'full array' : 'subsample'})`);
      // Tolerance 0 (the brief allows 1e-6): rescale is float64 then one rounding to float32 and normalize is
      // float32 subtract then divide, the same IEEE operations numpy performs, so the bits agree; the SHA-256
      // of the whole float32 array checks every element.
      expect(dp).toBe(0);
      expect(sha256(pv)).toBe(c.pixel_values_sha256);
    });
  }

  test('a raw RGB array (the Python-decoded JPEG) gives the same pixel_values', async () => {
    const c = manifest.cases.find((x) => x.file === 'photo_240x180.jpg' && x.convention === 'load_image')!;
    const t = tensors.get('photo_240x180.jpg.load_image.decoded')!;
    const raw: RawImage = { data: t.u8!, width: t.shape[1], height: t.shape[0], channels: 3 };
    const img = await decodeImage(raw);
    expect(img.data).toBe(raw.data); // validated and passed through
    expect(sha256(preprocessImage(img, configFor('clip')))).toBe(c.pixel_values_sha256);
  });
});

describe('preprocessImages', () => {
  test('stacks a batch in input order and converts to a tf tensor', async () => {
    const cfg = configFor('clip');
    const files = ['grad_640x480.png', 'palette_trns_64x48.png'];
    const batch = await preprocessImages(
      files.map((f) => path.join(DIR, f)),
      cfg,
      { convention: 'pil_image' },
    );
    expect(batch.shape).toEqual([2, 3, 224, 224]);
    const per = 3 * 224 * 224;
    files.forEach((f, i) => {
      const c = manifest.cases.find((x) => x.file === f && x.convention === 'pil_image' && x.variant === 'clip')!;
      expect(sha256(batch.pixelValues.subarray(i * per, (i + 1) * per))).toBe(c.pixel_values_sha256);
    });
    const before = tf.memory().numTensors;
    const t = pixelValuesTensor(batch);
    expect(t.shape).toEqual([2, 3, 224, 224]);
    expect(t.dtype).toBe('float32');
    t.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  test('accepts bytes and data URLs like paths', async () => {
    const file = path.join(DIR, 'lossless_alpha_64x48.webp');
    const bytes = fs.readFileSync(file);
    const c = manifest.cases.find((x) => x.file === 'lossless_alpha_64x48.webp' && x.convention === 'load_image')!;
    const url = `data:image/webp;base64,${bytes.toString('base64')}`;
    const batch = await preprocessImages([bytes, new Uint8Array(bytes), url], configFor('clip'));
    const per = 3 * 224 * 224;
    for (let i = 0; i < 3; i++) {
      expect(sha256(batch.pixelValues.subarray(i * per, (i + 1) * per))).toBe(c.pixel_values_sha256);
    }
  });

  test('images whose outputs differ in size cannot be stacked', async () => {
    const cfg = configFor('nocrop');
    await expect(
      preprocessImages([path.join(DIR, 'grad_300x200.png'), path.join(DIR, 'grad_100x60.png')], cfg),
    ).rejects.toThrow(InputError);
  });
});

describe('preprocessor config', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-image-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const write = (json: string): string => {
    const dir = fs.mkdtempSync(path.join(tmp, 'c-'));
    fs.writeFileSync(path.join(dir, 'preprocessor_config.json'), json);
    return dir;
  };

  test("the checkpoint's file equals the Python defaults", () => {
    expect(loadImagePreprocessorConfig(DIR)).toEqual(IMAGE_PREPROCESSOR_DEFAULTS);
  });

  test('a missing file gives the defaults', () => {
    expect(loadImagePreprocessorConfig(tmp)).toEqual(IMAGE_PREPROCESSOR_DEFAULTS);
  });

  test('ints and single numbers expand as get_size_dict and normalize do', () => {
    const cfg = parseImagePreprocessorConfig({ size: 300, crop_size: 256, image_mean: 0.5, image_std: [1, 2, 3] });
    expect(cfg.size).toEqual({ shortest_edge: 300 });
    expect(cfg.crop_size).toEqual({ height: 256, width: 256 });
    expect(cfg.image_mean).toEqual([0.5, 0.5, 0.5]);
    expect(parseImagePreprocessorConfig({ size: { height: 10, width: 20 } }).size).toEqual({ height: 10, width: 20 });
  });

  const bad: [string, string][] = [
    ['{"do_resize": "yes"}', 'do_resize'],
    ['{"size": {"longest_edge": 5}}', 'size'],
    ['{"size": {"shortest_edge": 0}}', 'size.shortest_edge'],
    ['{"crop_size": {"height": 2.5, "width": 3}}', 'crop_size.height'],
    ['{"image_mean": [0.5, 0.5]}', 'image_mean'],
    ['{"rescale_factor": "1/255"}', 'rescale_factor'],
    ['{"resample": 2}', 'resample'],
    ['[1, 2]', 'preprocessor_config.json'],
    ['{"do_resize": tru', 'preprocessor_config.json'],
  ];
  for (const [json, field] of bad) {
    test(`rejects ${json} naming ${field}`, () => {
      const dir = write(json);
      let err: unknown;
      try {
        loadImagePreprocessorConfig(dir);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).field).toBe(field);
      expect((err as ConfigError).file).toBe(path.join(dir, 'preprocessor_config.json'));
    });
  }
});

describe('decode errors are typed and name the source', () => {
  const expectMediaError = async (p: Promise<unknown>, source: string | RegExp, message: RegExp) => {
    let err: unknown;
    try {
      await p;
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MediaError);
    if (typeof source === 'string') expect((err as MediaError).source).toBe(source);
    else expect((err as MediaError).source).toMatch(source);
    expect((err as Error).message).toMatch(message);
  };

  test('missing file', async () => {
    const p = path.join(DIR, 'no_such_image.png');
    await expectMediaError(decodeImage(p), p, /file not found/);
  });

  test('a directory', async () => {
    await expectMediaError(decodeImage(DIR), DIR, /directory/);
  });

  test('not an image', async () => {
    const p = path.join(DIR, 'manifest.json');
    await expectMediaError(decodeImage(p), p, /not a decodable image/);
    await expectMediaError(decodeImage(Buffer.from('hello')), /image buffer/, /not a decodable image/);
  });

  test('empty bytes', async () => {
    await expectMediaError(decodeImage(new Uint8Array(0)), /image buffer \(0 bytes\)/, /empty/);
  });

  test('a truncated PNG', async () => {
    const bytes = fs.readFileSync(path.join(DIR, 'grad_640x480.png'));
    await expectMediaError(decodeImage(bytes.subarray(0, bytes.length / 2)), /image buffer/, /decod/);
  });

  test('a PNG declaring zero width', async () => {
    const bytes = Buffer.from(fs.readFileSync(path.join(DIR, 'gray_64x48.png')));
    bytes.writeUInt32BE(0, 16); // IHDR width
    await expectMediaError(decodeImage(bytes), /image buffer/, /not a decodable image|zero-size/);
  });

  test("an image above Pillow's decompression-bomb limit is refused before decoding", async () => {
    const bytes = Buffer.from(fs.readFileSync(path.join(DIR, 'gray_64x48.png')));
    bytes.writeUInt32BE(20000, 16); // IHDR width and height: 4e8 pixels
    bytes.writeUInt32BE(20000, 20);
    bytes.writeUInt32BE(zlib.crc32(bytes.subarray(12, 29)), 29);
    await expectMediaError(decodeImage(bytes), /image buffer/, /pixel limit|exceeds/);
  });

  test('a zero-size raw image', async () => {
    const raw: RawImage = { data: new Uint8Array(0), width: 0, height: 5, channels: 3 };
    await expectMediaError(decodeImage(raw), 'raw image 0x5', /zero-size/);
  });

  test('raw images with the wrong length or channel count', async () => {
    await expect(decodeImage({ data: new Uint8Array(10), width: 2, height: 2, channels: 3 })).rejects.toThrow(
      /12 bytes, found 10/,
    );
    const four = { data: new Uint8Array(16), width: 2, height: 2, channels: 4 } as unknown as RawImage;
    await expect(decodeImage(four)).rejects.toThrow(InputError);
    const short: RawImage = { data: new Uint8Array(5), width: 2, height: 2, channels: 3 };
    expect(() => preprocessImage(short, IMAGE_PREPROCESSOR_DEFAULTS)).toThrow(InputError);
  });

  test('URLs and malformed data URLs', async () => {
    await expectMediaError(decodeImage('https://example.com/a.png'), 'https://example.com/a.png', /not fetched/);
    await expectMediaError(decodeImage('data:text/plain,hello'), 'data URL', /base64 data URL/);
  });
});
