/**
 * Video decoding and frame sampling against PyAV (reference/gen_videos.py): the frames that the Hugging Face
 * docs' read_video_pyav returns, with indices = np.arange(0, total, total / 8).astype(int) over the true
 * decoded frame count, and numpy's arange for a grid of (total, numFrames).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InputError, MediaError } from '../../src/errors';
import { liveFfmpegPids, locateFfmpeg, runFfmpeg } from '../../src/processing/ffmpeg';
import { countVideoFrames, parseProbe, probeVideo, readVideoFrames, sampleFrameIndices } from '../../src/processing/video';
import { highDepthFormat } from '../../src/processing/yuv_high_depth';

// The module object itself (not an import-star copy), so that spying on spawn reaches src/processing/ffmpeg.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const childProcess = require('child_process') as typeof import('child_process');

const DIR = path.join(__dirname, '..', 'fixtures', 'videos');
const video = (name: string) => path.join(DIR, name);

/** Raw tensors of expected.safetensors (uint8 frames and int32 indices; tfjs has no uint8 dtype). */
function readExpected(): { tensor(name: string): { shape: number[]; data: Uint8Array | Int32Array }; info: ExpectedInfo } {
  const bytes = fs.readFileSync(path.join(DIR, 'expected.safetensors'));
  const headerLen = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.toString('utf8', 8, 8 + headerLen)) as Record<string, unknown>;
  const base = 8 + headerLen;
  const meta = header.__metadata__ as { info: string };
  return {
    info: JSON.parse(meta.info) as ExpectedInfo,
    tensor(name) {
      const t = header[name] as { dtype: string; shape: number[]; data_offsets: [number, number] } | undefined;
      if (!t) throw new Error(`expected.safetensors has no tensor ${name}`);
      const raw = bytes.subarray(base + t.data_offsets[0], base + t.data_offsets[1]);
      if (t.dtype === 'U8') return { shape: t.shape, data: new Uint8Array(raw) };
      if (t.dtype === 'I32') return { shape: t.shape, data: new Int32Array(new Uint8Array(raw).buffer) };
      throw new Error(`unexpected dtype ${t.dtype} for ${name}`);
    },
  };
}

interface ExpectedInfo {
  videos: Record<string, { total: number; header_frames: number; pix_fmt: string; color_range: number; colorspace: number }>;
}

const expected = readExpected();
const videoNames = Object.keys(expected.info.videos).sort();

/** Does a process with this pid still exist (zombies included: they would also be a leak)? */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

describe('sampleFrameIndices', () => {
  test('equals np.arange(0, total, total / n).astype(int) over the reference grid', () => {
    const pairs = expected.tensor('sample_grid/pairs'); // [G, 3] = (total, numFrames, length)
    const values = expected.tensor('sample_grid/values').data;
    const [count] = pairs.shape;
    let offset = 0;
    let longer = 0;
    for (let g = 0; g < count; g++) {
      const [total, n, length] = [pairs.data[3 * g], pairs.data[3 * g + 1], pairs.data[3 * g + 2]];
      const want = Array.from(values.subarray(offset, offset + length));
      offset += length;
      if (length !== n) longer++;
      expect({ total, n, got: sampleFrameIndices(total, n) }).toEqual({ total, n, got: want }); // exact: integer output
    }
    expect(offset).toBe(values.length);
    expect(longer).toBeGreaterThan(0); // the grid does contain numpy's n + 1 cases (e.g. total 17, n 7)
  });

  test('defaults to 8 frames and rejects bad arguments', () => {
    expect(sampleFrameIndices(16)).toHaveLength(8);
    expect(() => sampleFrameIndices(0)).toThrow(InputError);
    expect(() => sampleFrameIndices(10, 0)).toThrow(InputError);
    expect(() => sampleFrameIndices(10.5)).toThrow(InputError);
    expect(() => sampleFrameIndices(10, 2.5)).toThrow(InputError);
  });
});

describe('readVideoFrames matches PyAV (read_video_pyav, to_ndarray("rgb24"))', () => {
  test.each(videoNames)('%s', async (name) => {
    const meta = expected.info.videos[name];
    const want = expected.tensor(`${name}/frames`); // [k, H, W, 3]
    const [k, h, w] = want.shape;
    const got = await readVideoFrames(video(name));

    expect(got.totalFrames).toBe(meta.total);
    expect(got.sampledIndices).toEqual(Array.from(expected.tensor(`${name}/sampled_indices`).data));
    expect(got.indices).toEqual(Array.from(expected.tensor(`${name}/frame_indices`).data));
    expect([got.frames.length, got.height, got.width]).toEqual([k, h, w]);

    let maxDiff = 0;
    const frameSize = h * w * 3;
    got.frames.forEach((frame, f) => {
      expect(frame).toBeInstanceOf(Uint8Array);
      expect(frame.length).toBe(frameSize);
      for (let i = 0; i < frameSize; i++) maxDiff = Math.max(maxDiff, Math.abs(frame[i] - want.data[f * frameSize + i]));
    });
    // Exact for every codec here, lossy ones included: decoding is bit-exact by each codec's spec, and
    // ffmpeg's YUV/RGB/palette -> RGB24 conversion takes the same libswscale path as PyAV for 8-bit input;
    // 10-bit 4:2:0 (H.264 High 10, HEVC Main 10) is converted by src/processing/yuv.ts as PyAV's FFmpeg does.
    expect(maxDiff).toBe(0);
  });

  test.each(['h264_10bit.mp4', 'hevc_10bit.mp4'])('%s: ffmpeg’s own RGB conversion would differ (why yuv.ts exists)', async (name) => {
    const want = expected.tensor(`${name}/frames`);
    const [k, h, w] = want.shape;
    const r = await runFfmpeg(['-v', 'error', '-i', video(name), '-map', '0:v:0', '-frames:v', '1', '-pix_fmt', 'rgb24', '-f', 'rawvideo', 'pipe:1']);
    expect([r.code, r.stdout.length, k > 0]).toEqual([0, h * w * 3, true]);
    let maxDiff = 0;
    for (let i = 0; i < h * w * 3; i++) maxDiff = Math.max(maxDiff, Math.abs(r.stdout[i] - want.data[i]));
    expect(maxDiff).toBeGreaterThan(20); // its swscale ignores the chroma siting: up to ~100 levels at edges
  });

  test('counts decoded frames, not the header: lying_header.avi claims 100 frames, decodes 21', async () => {
    expect(expected.info.videos['lying_header.avi'].header_frames).toBe(100); // what PyAV's stream.frames says
    const probed = await probeVideo(video('lying_header.avi'));
    expect(probed.frameCountHint).toBe(100); // the container hint is wrong ...
    expect(await countVideoFrames(video('lying_header.avi'))).toBe(21); // ... the count is not
    const got = await readVideoFrames(video('lying_header.avi'));
    expect(got.totalFrames).toBe(21);
    expect(got.indices).toEqual([0, 2, 5, 7, 10, 13, 15, 18]); // same as the PyAV fixture (checked above)
  });

  test('fewer frames than asked: indices repeat and each frame is returned once, as read_video_pyav', async () => {
    const got = await readVideoFrames(video('huffyuv.avi'));
    expect(got.totalFrames).toBe(5);
    expect(got.sampledIndices).toEqual([0, 0, 1, 1, 2, 3, 3, 4]);
    expect(got.indices).toEqual([0, 1, 2, 3, 4]);
    expect(got.frames).toHaveLength(5);
  });

  test('explicit indices and numFrames select the same frames as the full decode', async () => {
    const name = 'ffv1.mkv';
    const all = await readVideoFrames(video(name), { indices: Array.from({ length: 24 }, (_, i) => i) });
    expect(all.frames).toHaveLength(24);
    const some = await readVideoFrames(video(name), { indices: [23, 3, 3, 4, 99] });
    expect(some.indices).toEqual([3, 4, 23]); // distinct, ascending; 99 is past the end and skipped
    expect(some.frames).toEqual([all.frames[3], all.frames[4], all.frames[23]]);
    const four = await readVideoFrames(video(name), { numFrames: 4 });
    expect(four.indices).toEqual([0, 6, 12, 18]);
    expect(four.frames).toEqual([0, 6, 12, 18].map((i) => all.frames[i]));
  });
});

describe('highDepthFormat (what decides the PyAV-exact 10-bit conversion)', () => {
  test('reads depth, range, matrix and chroma siting from the stream line; codec defaults for the siting', () => {
    expect(highDepthFormat('    Stream #0:0(und): Video: hevc (Main 10) (hev1 / 0x31766568), yuv420p10le(tv), 64x32, 17 kb/s')).toEqual({
      pixFmt: 'yuv420p10le', bits: 10, fullRange: false, matrix: 'bt601', chroma: [0, 128],
    });
    expect(highDepthFormat('Stream #0:1: Video: h264 (High 10), yuv420p10le(pc, bt709/bt709/iec61966-2-1, progressive), 1920x1080')).toMatchObject({ fullRange: true, matrix: 'bt709', chroma: [0, 128] });
    expect(highDepthFormat('Stream #0:0: Video: hevc (Main 10), yuv420p10le(tv, bt2020nc/bt2020/smpte2084, topleft), 3840x2160')).toMatchObject({ matrix: 'bt2020', chroma: [0, 0] });
    expect(highDepthFormat('Stream #0:0: Video: vp9 (Profile 2), yuv420p10le(tv), 64x32')).toMatchObject({ chroma: [128, 128] }); // unspecified: centre
    expect(highDepthFormat('Stream #0:0: Video: hevc (Main 12), yuv420p12le(tv), 64x32')).toMatchObject({ pixFmt: 'yuv420p12le', bits: 12 });
    for (const line of ['Stream #0:0: Video: h264 (High), yuv420p, 64x32', 'Stream #0:0: Video: prores, yuv422p10le(tv), 64x32', 'Stream #0:0: Video: hevc, yuv444p10le(tv), 64x32']) {
      expect(highDepthFormat(line)).toBeUndefined();
    }
  });
});

describe('probeVideo', () => {
  test.each(videoNames)('%s: 64x32', async (name) => {
    const info = await probeVideo(video(name));
    expect([info.width, info.height]).toEqual([64, 32]);
    expect(info.fps).toBe(10);
  });

  test('parses ffmpeg -i output without taking the codec tag for a size', () => {
    const text = [
      "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'a.mp4':",
      '  Duration: 00:01:02.50, start: 0.000000, bitrate: 89 kb/s',
      '    Stream #0:0(und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709), 1280x720 [SAR 1:1 DAR 16:9], 29.97 fps, 29.97 tbr, 30k tbn',
    ].join('\n');
    expect(parseProbe(text)).toEqual({ width: 1280, height: 720, codec: 'h264', fps: 29.97, durationSec: 62.5, frameCountHint: 1873 });
    expect(parseProbe("Input #0, wav, from 'a.wav':\n    Stream #0:0: Audio: pcm_s16le, 8000 Hz")).toBeUndefined();
  });
});

describe('errors', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['missing file', 'does_not_exist.mp4', /file not found/],
    ['directory', '.', /not a regular file/],
    ['text file', 'not_a_video.txt', /text file/],
    ['audio only', 'audio_only.wav', /no video stream/],
    ['truncated mp4 (no moov atom)', 'truncated.mp4', /not a video ffmpeg can read/],
    ['zero frames', 'zero_frames.y4m', /0 frames/],
  ];
  test.each(cases)('%s: MediaError naming the file', async (_label, name, message) => {
    const file = video(name);
    const err = await readVideoFrames(file).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MediaError);
    expect((err as MediaError).source).toBe(file);
    expect((err as MediaError).message).toMatch(message);
    expect(liveFfmpegPids()).toEqual([]);
  });

  test('probeVideo rejects non-videos too', async () => {
    await expect(probeVideo(video('audio_only.wav'))).rejects.toThrow(/no video stream/);
    await expect(probeVideo(video('truncated.mp4'))).rejects.toThrow(MediaError);
    await expect(probeVideo(video('not_a_video.txt'))).rejects.toThrow(/text file/);
  });

  test('empty file', async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vl-video-')), 'empty.mp4');
    fs.writeFileSync(file, '');
    await expect(readVideoFrames(file)).rejects.toThrow(/empty/);
  });

  test('bad options are InputErrors', async () => {
    await expect(readVideoFrames(video('ffv1.mkv'), { numFrames: 0 })).rejects.toThrow(InputError);
    await expect(readVideoFrames(video('ffv1.mkv'), { indices: [] })).rejects.toThrow(InputError);
    await expect(readVideoFrames(video('ffv1.mkv'), { indices: [1, -1] })).rejects.toThrow(InputError);
    await expect(readVideoFrames(video('ffv1.mkv'), { indices: [1.5] })).rejects.toThrow(InputError);
    await expect(readVideoFrames(video('ffv1.mkv'), { indices: [24, 30] })).rejects.toThrow(/past the last frame/);
  });

  test('output larger than maxBytes fails', async () => {
    await expect(readVideoFrames(video('ffv1.mkv'), { maxBytes: 10_000 })).rejects.toThrow(/maxStdoutBytes/);
    expect(liveFfmpegPids()).toEqual([]);
  });
});

describe('no ffmpeg outlives an error, a timeout or an abort', () => {
  // An endless synthetic input: this ffmpeg never exits by itself.
  const endless = ['-nostdin', '-f', 'lavfi', '-i', 'testsrc=size=64x32:rate=1000', '-f', 'null', '-'];

  test('timeout kills the child before rejecting', async () => {
    let pid = -1;
    const err = await runFfmpeg(endless, { timeoutMs: 300, onSpawn: (p) => (pid = p), source: 'endless' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MediaError);
    expect((err as Error).message).toMatch(/timeout/);
    expect(pid).toBeGreaterThan(0);
    expect(processExists(pid)).toBe(false);
    expect(liveFfmpegPids()).toEqual([]);
  });

  test('abort kills the child before rejecting', async () => {
    const controller = new AbortController();
    let pid = -1;
    let runningBeforeAbort = false;
    const run = runFfmpeg(endless, { signal: controller.signal, onSpawn: (p) => (pid = p) });
    setTimeout(() => {
      runningBeforeAbort = processExists(pid); // positive control for processExists
      controller.abort();
    }, 200);
    await expect(run).rejects.toThrow(/aborted/);
    expect(runningBeforeAbort).toBe(true);
    expect(processExists(pid)).toBe(false);
    expect(liveFfmpegPids()).toEqual([]);
  });

  describe('with a stand-in ffmpeg that hangs (VIDEO_LLAVA_FFMPEG)', () => {
    const saved = { VIDEO_LLAVA_FFMPEG: process.env.VIDEO_LLAVA_FFMPEG, FFMPEG_PATH: process.env.FFMPEG_PATH };
    afterEach(() => {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      jest.restoreAllMocks();
    });

    test('readVideoFrames times out and leaves no process behind', async () => {
      const real = (await locateFfmpeg()).path;
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-ffmpeg-'));
      const script = path.join(dir, 'ffmpeg');
      // Answers -version like ffmpeg, then hangs on any real work (exec: the pid we get is the sleeper).
      fs.writeFileSync(script, `#!/bin/sh\nif [ "$2" = "-version" ]; then exec "${real}" "$@"; fi\nexec sleep 60\n`, { mode: 0o755 });
      process.env.VIDEO_LLAVA_FFMPEG = script;
      const pids: number[] = [];
      const spawn = childProcess.spawn;
      jest.spyOn(childProcess, 'spawn').mockImplementation(((...args: Parameters<typeof spawn>) => {
        const child = spawn(...args);
        if (child.pid !== undefined) pids.push(child.pid);
        return child;
      }) as typeof spawn);

      const started = Date.now();
      await expect(readVideoFrames(video('ffv1.mkv'), { timeoutMs: 500 })).rejects.toThrow(/timeout/);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(pids.length).toBeGreaterThan(0);
      for (const pid of pids) expect(processExists(pid)).toBe(false);
      expect(liveFfmpegPids()).toEqual([]);
    });

    test('a VIDEO_LLAVA_FFMPEG that does not work is a MediaError naming the variable', async () => {
      process.env.VIDEO_LLAVA_FFMPEG = path.join(DIR, 'no_such_ffmpeg');
      await expect(locateFfmpeg()).rejects.toThrow(/VIDEO_LLAVA_FFMPEG/);
      await expect(readVideoFrames(video('ffv1.mkv'))).rejects.toThrow(MediaError);
      process.env.VIDEO_LLAVA_FFMPEG = '/bin/true'; // runs, but is not ffmpeg
      await expect(locateFfmpeg()).rejects.toThrow(/does not answer -version like ffmpeg/);
    });

    test('FFMPEG_PATH is honoured when VIDEO_LLAVA_FFMPEG is unset', async () => {
      const real = (await locateFfmpeg()).path;
      delete process.env.VIDEO_LLAVA_FFMPEG;
      process.env.FFMPEG_PATH = real;
      const found = await locateFfmpeg();
      expect([found.path, found.from]).toEqual([real, 'environment variable FFMPEG_PATH']);
      expect(found.version).toMatch(/^ffmpeg version/);
    });
  });
});
