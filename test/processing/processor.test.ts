/**
 * VideoLlavaProcessor against the real transformers 5.24 VideoLlavaProcessor (reference/gen_processor.py):
 * input_ids / attention_mask element for element, pixel values bit for bit (SHA-256 of the float32 bytes, plus a
 * subsample and one full tensor for a readable failure), frame indices, and the cases where Python raises.
 * Videos in the reference go through the slow Pillow image pipeline frame by frame (see gen_processor.py).
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { InputError, MediaError } from '../../src/errors';
import { ChatMessage } from '../../src/processing/chat_template';
import { RawImage } from '../../src/processing/image';
import {
  ProcessorCallOptions,
  VideoLlavaProcessor,
  disposeProcessorOutput,
  expandPlaceholders,
} from '../../src/processing/processor';

const FIXTURES = path.join(__dirname, '..', 'fixtures');
const DIR = path.join(FIXTURES, 'processor');
const MODEL = path.join(DIR, 'model');
const image = (name: string) => path.join(FIXTURES, 'images', name);
const video = (name: string) => path.join(FIXTURES, 'videos', name);

interface Case {
  name: string;
  text?: string | string[];
  chat?: ChatMessage[];
  rendered?: string;
  images?: string[];
  videos?: Array<[string, number]>;
  options?: { padding?: boolean; truncation?: boolean; maxLength?: number };
  error?: string;
  input_ids_shape?: number[];
  pixel_values_images_shape?: number[];
  pixel_values_images_sha256?: string;
  pixel_values_videos_shape?: number[];
  pixel_values_videos_sha256?: string;
}

const doc = JSON.parse(fs.readFileSync(path.join(DIR, 'cases.json'), 'utf8')) as {
  info: { sub_stride: number };
  cases: Case[];
};

type Raw = { shape: number[]; data: Float32Array | Int32Array | Uint8Array };

/** The F32 / I32 / U8 tensors of a safetensors file, as typed arrays. */
function readSafetensors(file: string): (name: string) => Raw {
  const bytes = fs.readFileSync(file);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.toString('utf8', 8, 8 + headerLen)) as Record<string, unknown>;
  const base = 8 + headerLen;
  return (name) => {
    const t = header[name] as { dtype: string; shape: number[]; data_offsets: [number, number] } | undefined;
    if (!t) throw new Error(`${file} has no tensor ${name}`);
    const raw = new Uint8Array(bytes.subarray(base + t.data_offsets[0], base + t.data_offsets[1])); // aligned copy
    if (t.dtype === 'F32') return { shape: t.shape, data: new Float32Array(raw.buffer) };
    if (t.dtype === 'I32') return { shape: t.shape, data: new Int32Array(raw.buffer) };
    if (t.dtype === 'U8') return { shape: t.shape, data: raw };
    throw new Error(`${name}: unexpected dtype ${t.dtype}`);
  };
}

const expected = readSafetensors(path.join(DIR, 'expected.safetensors'));

function rows(r: Raw): number[][] {
  const [b, l] = r.shape;
  return Array.from({ length: b }, (_, i) => Array.from(r.data.subarray(i * l, (i + 1) * l)));
}

function sha256(a: Float32Array): string {
  return crypto.createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
}

function subsample(a: Float32Array, stride: number): Float32Array {
  const out = new Float32Array(Math.ceil(a.length / stride));
  for (let i = 0; i < out.length; i++) out[i] = a[i * stride];
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function callArgs(c: Case, processor: VideoLlavaProcessor): { text: string | string[]; options: ProcessorCallOptions } {
  const text = c.chat ? processor.applyChatTemplate(c.chat, { addGenerationPrompt: true }) : c.text!;
  const options: ProcessorCallOptions = { ...c.options };
  if (c.images) options.images = c.images.map(image);
  if (c.videos) {
    options.videos = c.videos.map(([file]) => video(file));
    options.numFrames = c.videos[0][1];
  }
  return { text, options };
}

let processor: VideoLlavaProcessor;
beforeAll(async () => {
  processor = await VideoLlavaProcessor.fromPretrained(MODEL);
});

describe('VideoLlavaProcessor parity with transformers', () => {
  const ok = doc.cases.filter((c) => !c.error).map((c) => [c.name, c] as const);
  const failing = doc.cases.filter((c) => c.error).map((c) => [c.name, c] as const);

  test('loads the folder save_pretrained wrote (processor_config.json with nested sub-processors)', () => {
    expect(processor.config).toEqual({
      patch_size: 14,
      vision_feature_select_strategy: 'default',
      num_additional_image_tokens: 1,
      image_token: '<image>',
      video_token: '<video>',
      video_preprocessing: 'hf', // this package's field (the original LanguageBind pipeline is 'languagebind')
    });
    expect(processor.chatTemplate).toBeDefined();
    expect(processor.videoConfig).toEqual(processor.imageConfig);
  });

  test.each(ok)('%s', async (name, c) => {
    const { text, options } = callArgs(c, processor);
    if (c.rendered !== undefined) expect(text).toBe(c.rendered); // the template renders exactly as Python's
    const before = tf.memory().numTensors;
    const out = await processor.call(text, options);
    try {
      // Token ids and masks are discrete: exact equality.
      expect(out.inputIds).toEqual(rows(expected(`${name}/input_ids`)));
      expect(out.attentionMask).toEqual(rows(expected(`${name}/attention_mask`)));
      expect([out.inputIds.length, out.inputIds[0].length]).toEqual(c.input_ids_shape);

      const stride = doc.info.sub_stride;
      for (const [key, tensor] of [
        ['pixel_values_images', out.pixelValuesImages],
        ['pixel_values_videos', out.pixelValuesVideos],
      ] as const) {
        const shape = c[`${key}_shape`];
        if (!shape) {
          expect(tensor).toBeUndefined();
          continue;
        }
        expect(tensor?.shape).toEqual(shape);
        const values = tensor!.dataSync() as Float32Array;
        // Pillow-exact pipeline on identical RGB input: bit-identical, so max diff 0 and equal hashes.
        expect(maxAbsDiff(subsample(values, stride), expected(`${name}/${key}_sub`).data as Float32Array)).toBe(0);
        expect(sha256(values)).toBe(c[`${key}_sha256`]);
      }
      if (name === 'image') {
        const full = expected('image/pixel_values_images').data as Float32Array;
        expect(maxAbsDiff(out.pixelValuesImages!.dataSync() as Float32Array, full)).toBe(0); // bit-exact, see above
      }
      if (c.videos) expect(out.frameIndices).toEqual(rows(expected(`${name}/frame_indices`)));
      else expect(out.frameIndices).toBeUndefined();
    } finally {
      disposeProcessorOutput(out);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  /** The argument our InputError should name, read off Python's message for the same case. */
  function argumentFor(pythonError: string): string {
    if (pythonError.startsWith('Mismatch in `')) return 'text'; // _check_special_mm_tokens after truncation
    if (pythonError.startsWith('Unable to create tensor')) return 'padding'; // ragged rows, no padding
    if (pythonError.includes('<image>')) return 'images'; // validate_inputs
    if (pythonError.includes('<video>')) return 'videos';
    throw new Error(`unclassified Python error: ${pythonError}`);
  }

  test.each(failing)('%s: Python raises, so does TypeScript (InputError)', async (_name, c) => {
    const { text, options } = callArgs(c, processor);
    const before = tf.memory().numTensors;
    const error = await processor.call(text, options).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).argument).toBe(argumentFor(c.error!));
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('VideoLlavaProcessor inputs and formats', () => {
  const videoCase = doc.cases.find((c) => c.name === 'video')!;

  test('already decoded frames give the same result as the file (PyAV frames from the video fixtures)', async () => {
    const videos = readSafetensors(path.join(FIXTURES, 'videos', 'expected.safetensors'));
    const frames = videos('ffv1.mkv/frames'); // [T, H, W, 3] uint8, read_video_pyav
    const indices = Array.from(videos('ffv1.mkv/frame_indices').data);
    const [T, H, W] = frames.shape;
    const list: RawImage[] = Array.from({ length: T }, (_, t) => ({
      data: (frames.data as Uint8Array).subarray(t * H * W * 3, (t + 1) * H * W * 3),
      width: W,
      height: H,
      channels: 3,
    }));
    const out = await processor.call(videoCase.text!, { videos: { frames: list, indices } });
    expect(out.inputIds).toEqual(rows(expected('video/input_ids')));
    expect(sha256(out.pixelValuesVideos!.dataSync() as Float32Array)).toBe(videoCase.pixel_values_videos_sha256);
    expect(out.frameIndices).toEqual(rows(expected('video/frame_indices')));
    disposeProcessorOutput(out);
  });

  test('a folder in the -hf checkpoint layout (preprocessor_config.json, no processor_config.json) loads the same', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-processor-'));
    try {
      for (const f of ['tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja']) {
        fs.copyFileSync(path.join(MODEL, f), path.join(tmp, f));
      }
      fs.copyFileSync(image('preprocessor_config.json'), path.join(tmp, 'preprocessor_config.json'));
      const legacy = await VideoLlavaProcessor.fromPretrained(tmp);
      expect(legacy.config).toEqual(processor.config);
      expect(legacy.imageConfig).toEqual(processor.imageConfig);
      expect(legacy.videoConfig).toEqual(processor.videoConfig);
      const c = doc.cases.find((x) => x.name === 'image_and_video')!;
      const { text, options } = callArgs(c, legacy);
      const out = await legacy.call(text, options);
      expect(out.inputIds).toEqual(rows(expected('image_and_video/input_ids')));
      expect(sha256(out.pixelValuesImages!.dataSync() as Float32Array)).toBe(c.pixel_values_images_sha256);
      disposeProcessorOutput(out);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('expandPlaceholders fills placeholders in batch order, row 0 first', () => {
    const out = expandPlaceholders(['a<image>b<video>', '<image>'], [
      { token: '<image>', counts: [2, 3] },
      { token: '<video>', counts: [1] },
    ]);
    expect(out).toEqual(['a<image><image>b<video>', '<image><image><image>']);
  });

  test('bad media and arguments are typed errors naming the input', async () => {
    const text = 'USER: <image>\nWhat? ASSISTANT:';
    const vtext = 'USER: <video>\nWhat? ASSISTANT:';
    await expect(processor.call(text, { images: image('missing.png') })).rejects.toThrow(MediaError);
    await expect(processor.call(text, { images: video('not_a_video.txt') })).rejects.toThrow(/not_a_video\.txt/);
    await expect(processor.call(vtext, { videos: video('truncated.mp4') })).rejects.toThrow(MediaError);
    await expect(processor.call(vtext, { videos: video('not_a_video.txt') })).rejects.toThrow(MediaError);
    await expect(processor.call(vtext, { videos: video('ffv1.mkv'), numFrames: 0 })).rejects.toThrow(InputError);
    await expect(processor.call(vtext, { videos: { frames: [] } })).rejects.toThrow(InputError);
    await expect(processor.call([], {})).rejects.toThrow(InputError);
    await expect(processor.call([1 as unknown as string], {})).rejects.toThrow(InputError);
    // Videos are stacked: they must share a frame count (Python cannot stack them either).
    await expect(
      processor.call('<video><video>', { videos: [video('ffv1.mkv'), video('huffyuv.avi')] }),
    ).rejects.toThrow(/stacked/);
  });
});
