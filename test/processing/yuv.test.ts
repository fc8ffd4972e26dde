/**
 * The page's video path without a browser: decoded YUV planes (here from ffmpeg, in the page from WebCodecs; H.264
 * decodes bit-exactly either way) through src/processing/yuv.ts with the colour signal read from the stream's SPS
 * (src/processing/h264.ts) must give the RGB24 bytes Node's ffmpeg reader gives (which test/processing/video.test.ts
 * holds to PyAV).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { runFfmpeg } from '../../src/processing/ffmpeg';
import { avcColourSignal } from '../../src/processing/h264';
import { readVideoFrames } from '../../src/processing/video';
import { yuvToRgb } from '../../src/processing/yuv';

const ROOT = path.join(__dirname, '..', '..');
let tmp: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'video-llava-yuv-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The avcC record of an MP4 (the payload of its first 'avcC' box), found by scanning for the box type. */
function avcC(file: string): Uint8Array {
  const bytes = fs.readFileSync(file);
  const at = bytes.indexOf('avcC', 0, 'latin1');
  expect(at).toBeGreaterThan(4);
  const size = bytes.readUInt32BE(at - 4);
  return new Uint8Array(bytes.subarray(at + 4, at - 4 + size));
}

/** Every frame of the first video stream as raw planes in `pixFmt`, decoded by ffmpeg. */
async function planes(file: string, pixFmt: string): Promise<Buffer> {
  const args = ['-nostdin', '-loglevel', 'error', '-noautorotate', '-i', `file:${file}`, '-map', '0:v:0', '-vsync', 'passthrough', '-pix_fmt', pixFmt, '-f', 'rawvideo', 'pipe:1'];
  const { code, stdout, stderr } = await runFfmpeg(args);
  expect([code, stderr]).toEqual([0, '']);
  return stdout;
}

/** yuvToRgb on every frame and the largest difference from ffmpeg's RGB24 of the frames readVideoFrames keeps. */
async function compare(file: string, pixFmt: 'yuv420p' | 'yuv422p' | 'yuv444p'): Promise<{ max: number; frames: number }> {
  const ref = await readVideoFrames(file, { numFrames: 8 });
  const signal = avcColourSignal(avcC(file))!;
  expect(signal).not.toBeNull();
  // the decoder's own planes, unconverted (as WebCodecs hands them out): full range is yuvj420p to ffmpeg
  const raw = await planes(file, signal.fullRange && pixFmt === 'yuv420p' ? 'yuvj420p' : pixFmt);
  const { width: w, height: h } = ref;
  const [sx, sy] = { yuv420p: [1, 1], yuv422p: [1, 0], yuv444p: [0, 0] }[pixFmt];
  const cw = Math.ceil(w / 2 ** sx);
  const ch = Math.ceil(h / 2 ** sy);
  const frameBytes = w * h + 2 * cw * ch;
  let max = 0;
  ref.indices.forEach((n, i) => {
    const f = raw.subarray(n * frameBytes, (n + 1) * frameBytes);
    const img = { width: w, height: h, y: f.subarray(0, w * h), u: f.subarray(w * h, w * h + cw * ch), v: f.subarray(w * h + cw * ch), yStride: w, uvStride: cw, shiftX: sx, shiftY: sy };
    const rgb = yuvToRgb(img, signal.matrix, signal.fullRange);
    for (let k = 0; k < rgb.length; k++) max = Math.max(max, Math.abs(rgb[k] - ref.frames[i][k]));
  });
  return { max, frames: ref.indices.length };
}

/** A 1 s H.264 test pattern in `pixFmt` with extra encoder flags. */
async function clip(name: string, pixFmt: string, extra: string[]): Promise<string> {
  const file = path.join(tmp, `${name}.mp4`);
  const args = ['-nostdin', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=64x48:rate=8:duration=1', '-pix_fmt', pixFmt, ...extra, '-c:v', 'libx264', '-y', file];
  const { code, stderr } = await runFfmpeg(args);
  expect([code, stderr]).toEqual([0, '']);
  return file;
}

test.each([
  ['assets/sample-shapes.mp4', 2, false],
  ['test/fixtures/videos/h264_yuv420p.mp4', 2, false],
  ['test/fixtures/videos/h264_bt709_full.mp4', 1, true],
])('%s: the SPS says matrix %i, full range %s, and the frames equal ffmpeg\'s exactly', async (file, matrix, fullRange) => {
  const signal = avcColourSignal(avcC(path.join(ROOT, file)))!;
  expect([signal.matrixCoefficients, signal.fullRange]).toEqual([matrix, fullRange]);
  const { max, frames } = await compare(path.join(ROOT, file), 'yuv420p');
  expect(frames).toBeGreaterThan(0);
  expect(max).toBe(0);
});

test.each([
  ['bt709 limited range', 'yuv420p', ['-colorspace', 'bt709', '-color_primaries', 'bt709', '-color_trc', 'bt709'], 'yuv420p', 0],
  ['BT.601 full range', 'yuvj420p', ['-color_range', 'pc'], 'yuv420p', 0],
  ['4:2:2', 'yuv422p', [], 'yuv422p', 0],
  // swscale converts 4:4:4 on another path (interpolating, not 2x2 blocks): measured 3 levels at most
  ['4:4:4', 'yuv444p', [], 'yuv444p', 3],
] as const)('generated H.264 clip, %s: frames within the bound of ffmpeg', async (name, encodeFormat, extra, planeFormat, bound) => {
  const file = await clip(name.replace(/\W+/g, '_'), encodeFormat, [...extra]);
  const { max } = await compare(file, planeFormat);
  console.log(`yuv → rgb vs ffmpeg, ${name}: max abs diff ${max} (bound ${bound})`);
  expect(max).toBeLessThanOrEqual(bound);
});
