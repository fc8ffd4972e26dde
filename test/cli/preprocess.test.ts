/**
 * `video-llava preprocess` against the transformers processor (reference/gen_processor.py, case
 * "batch_left_padding": three prompts, one image, one video, padding=True), and its one-line typed errors.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { PREPROCESS_HELP, preprocessCommand } from '../../src/cli/preprocess';
import { InputError, MediaError, VideoLlavaError } from '../../src/errors';

const FIXTURES = path.join(__dirname, '..', 'fixtures');
const DIR = path.join(FIXTURES, 'processor');
const MODEL = path.join(DIR, 'model');
const image = (name: string) => path.join(FIXTURES, 'images', name);
const video = (name: string) => path.join(FIXTURES, 'videos', name);

type Raw = { dtype: string; shape: number[]; values: number[]; bytes: Uint8Array };

function readSafetensors(file: string): Map<string, Raw> {
  const bytes = fs.readFileSync(file);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.toString('utf8', 8, 8 + headerLen)) as Record<string, unknown>;
  const out = new Map<string, Raw>();
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const t = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const raw = new Uint8Array(bytes.subarray(8 + headerLen + t.data_offsets[0], 8 + headerLen + t.data_offsets[1]));
    let values: number[];
    if (t.dtype === 'I64') values = Array.from(new BigInt64Array(raw.buffer), Number);
    else if (t.dtype === 'I32') values = Array.from(new Int32Array(raw.buffer));
    else if (t.dtype === 'F32') values = Array.from(new Float32Array(raw.buffer));
    else throw new Error(`${name}: unexpected dtype ${t.dtype}`);
    out.set(name, { dtype: t.dtype, shape: t.shape, values, bytes: raw });
  }
  return out;
}

const cases = JSON.parse(fs.readFileSync(path.join(DIR, 'cases.json'), 'utf8')).cases as Array<Record<string, unknown>>;
const batch = cases.find((c) => c.name === 'batch_left_padding') as {
  text: string[];
  images: string[];
  videos: Array<[string, number]>;
  pixel_values_images_sha256: string;
  pixel_values_videos_sha256: string;
};
const expected = readSafetensors(path.join(DIR, 'expected.safetensors'));

describe('video-llava preprocess', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-preprocess-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const lines: string[] = [];
  const log = (line: string) => lines.push(line);

  test('writes what the Python processor returns, under the Hugging Face names', async () => {
    const out = path.join(tmp, 'batch.safetensors');
    const argv = ['--model', MODEL, '--out', out, '--image', image(batch.images[0]), '--video', video(batch.videos[0][0])];
    for (const p of batch.text) argv.push('--prompt', p);
    argv.push('--num-frames', String(batch.videos[0][1]));
    await preprocessCommand(argv, log);
    expect(lines.at(-1)).toMatch(/^wrote 5 tensors/);

    const got = readSafetensors(out);
    expect([...got.keys()].sort()).toEqual(
      ['attention_mask', 'frame_indices', 'input_ids', 'pixel_values_images', 'pixel_values_videos'],
    );
    for (const name of ['input_ids', 'attention_mask', 'frame_indices']) {
      const want = expected.get(`batch_left_padding/${name}`)!;
      expect(got.get(name)!.dtype).toBe('I64');
      expect(got.get(name)!.shape).toEqual(want.shape);
      expect(got.get(name)!.values).toEqual(want.values); // discrete values: exact
    }
    // Bit-identical float32 pixel values (Pillow-exact pipeline): SHA-256 of the bytes.
    const sha = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex');
    expect(got.get('pixel_values_images')!.dtype).toBe('F32');
    expect(sha(got.get('pixel_values_images')!.bytes)).toBe(batch.pixel_values_images_sha256);
    expect(sha(got.get('pixel_values_videos')!.bytes)).toBe(batch.pixel_values_videos_sha256);
    expect(got.get('pixel_values_videos')!.shape).toEqual([1, 8, 3, 224, 224]);
  });

  test('--help prints the usage', async () => {
    await preprocessCommand(['--help'], log);
    expect(lines.at(-1)).toBe(PREPROCESS_HELP);
  });

  const out = () => path.join(tmp, 'err.safetensors');
  const errors: Array<[string, () => string[], new (...a: never[]) => VideoLlavaError, RegExp]> = [
    ['missing image file', () => ['--prompt', '<image>', '--image', image('nope.png')], MediaError, /nope\.png/],
    ['an image that is not one', () => ['--prompt', '<image>', '--image', video('not_a_video.txt')], MediaError, /not_a_video/],
    ['a corrupt video', () => ['--prompt', '<video>', '--video', video('truncated.mp4')], MediaError, /truncated\.mp4/],
    ['more placeholders than media', () => ['--prompt', '<image><image>', '--image', image('grad_300x200.png')], InputError, /images/],
    ['media without placeholder', () => ['--prompt', 'hi', '--video', video('ffv1.mkv')], InputError, /videos/],
    ['no prompt', () => ['--image', image('grad_300x200.png')], InputError, /--prompt/],
    ['a bad --num-frames', () => ['--prompt', '<video>', '--video', video('ffv1.mkv'), '--num-frames', 'x'], InputError, /--num-frames/],
    ['an unknown option', () => ['--prompt', 'hi', '--bogus'], InputError, /bogus/],
  ];

  test.each(errors)('%s: a one-line typed error, no file written', async (_name, extra, type, pattern) => {
    const argv = ['--model', MODEL, '--out', out(), ...extra()];
    const error = await preprocessCommand(argv, log).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(type);
    expect((error as Error).message).toMatch(pattern);
    expect((error as Error).message).not.toContain('\n');
    expect(fs.existsSync(out())).toBe(false);
  });
});
