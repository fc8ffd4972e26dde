/**
 * Video decoding and frame sampling, matching the Hugging Face Video-LLaVA recipe:
 *
 *   indices = np.arange(0, total, total / 8).astype(int)
 *   for i, frame in enumerate(container.decode(video=0)): keep it if i in indices
 *   frame.to_ndarray(format="rgb24")
 *
 * Decoding runs the ffmpeg executable (see ./ffmpeg.ts) in two passes:
 *   1. count the frames by decoding the whole stream into 1x1 grey pixels (one byte per frame), since
 *      a container's frame count can lie;
 *   2. decode again, let ffmpeg's `select` filter pass only the chosen frame numbers, convert them to RGB24
 *      and stop after the last one, so only the kept frames are ever converted or held at full size.
 * On 8-bit material (yuv420p/422p/444p in either range, BT.601/709/2020, RGB codecs, GIF) the RGB24 pixels
 * equal PyAV's `to_ndarray(format="rgb24")` exactly. High-bit-depth 4:2:0 sources (10-bit H.264, HEVC Main 10,
 * 12-bit) are decoded to their raw planes and converted as PyAV's FFmpeg does (./yuv.ts): exact too. Other
 * high-bit-depth layouts (4:2:2, 4:4:4) go through ffmpeg's own conversion, not verified against PyAV.
 */
import * as fs from 'fs';
import * as path from 'path';
import { InputError, MediaError } from '../errors';
import { locateFfmpeg, runProcess, type FfmpegBinary } from './ffmpeg';
import { HighDepthFormat, highDepthFormat, yuv420HighDepthToRgb } from './yuv_high_depth';
import { ReadVideoOptions, VideoFrames, explicitIndices, framesToKeep } from './frames';

export { sampleFrameIndices } from './frames';
export type { ReadVideoOptions, VideoFrames } from './frames';

export interface VideoInfo {
  width: number;
  height: number;
  /** round(duration × fps) from the container; an estimate that may be wrong. readVideoFrames counts. */
  frameCountHint?: number;
  fps?: number;
  durationSec?: number;
  /** Codec name as ffmpeg prints it, e.g. `h264`. */
  codec?: string;
}

const DEFAULT_TIMEOUT_MS = 120_000;
// Linux caps one command-line argument at 128 KiB.
const MAX_SELECT_CHARS = 100_000;

/** Check the path is a readable, non-empty regular file; ffmpeg gets it as `file:<absolute path>`. */
function checkFile(file: string): string {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new MediaError(file, code === 'ENOENT' ? 'file not found' : `cannot read file: ${(err as Error).message}`);
  }
  if (!stat.isFile()) throw new MediaError(file, 'not a regular file');
  if (stat.size === 0) throw new MediaError(file, 'file is empty (0 bytes), not a video');
  // "file:" stops ffmpeg from reading a name like "a:b.mp4" as a protocol.
  return `file:${path.resolve(file)}`;
}

/** The last meaningful stderr lines, for error messages. */
function stderrTail(stderr: string, lines = 3): string {
  const kept = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('Press [q]') && !l.startsWith('frame='));
  return kept.slice(-lines).join(' | ') || '(no message)';
}

function failureMessage(stderr: string): string {
  if (/matches no streams/.test(stderr)) return 'contains no video stream';
  if (/Invalid data found when processing input/.test(stderr)) {
    return `not a video ffmpeg can read (${stderrTail(stderr, 1)})`;
  }
  return `ffmpeg could not decode it: ${stderrTail(stderr)}`;
}

/** Width, height and container hints of the first video stream, from `ffmpeg -i` (no decoding). */
export async function probeVideo(file: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<VideoInfo> {
  const input = checkFile(file);
  const ffmpeg = await locateFfmpeg();
  const args = ['-nostdin', '-hide_banner', '-protocol_whitelist', 'file', '-i', input];
  const { stderr } = await runProcess(ffmpeg.path, args, {
    timeoutMs: options.timeoutMs ?? 30_000,
    signal: options.signal,
    source: file,
  });
  if (!/^Input #0/m.test(stderr)) throw new MediaError(file, failureMessage(stderr));
  checkInputFormat(file, stderr);
  const info = parseProbe(stderr);
  if (!info) throw new MediaError(file, 'contains no video stream');
  return info;
}

/** Parse the `Input #0` section that `ffmpeg -i` prints. Exported for tests. */
export function parseProbe(stderr: string): VideoInfo | undefined {
  // e.g. "    Stream #0:0(und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709), 64x32 [SAR 1:1 DAR 2:1], 10 fps, ..."
  const stream = /^\s*Stream #0:\d+.*?: Video: (.*)$/m.exec(stderr);
  if (!stream) return undefined;
  const desc = stream[1];
  const size = /(?:^|[\s,])(\d+)x(\d+)(?=[\s,[]|$)/.exec(desc);
  if (!size) return undefined;
  const info: VideoInfo = { width: Number(size[1]), height: Number(size[2]), codec: desc.split(/[\s,]/)[0] };
  const fps = /([\d.]+)(k?) fps/.exec(desc) ?? /([\d.]+)(k?) tbr/.exec(desc);
  if (fps) info.fps = Number(fps[1]) * (fps[2] ? 1000 : 1);
  const duration = /Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)/.exec(stderr);
  if (duration) info.durationSec = Number(duration[1]) * 3600 + Number(duration[2]) * 60 + Number(duration[3]);
  if (info.fps && info.durationSec !== undefined) info.frameCountHint = Math.round(info.fps * info.durationSec);
  return info;
}

interface Deadline {
  remaining(file: string): number;
}

function deadline(timeoutMs: number): Deadline {
  const end = Date.now() + timeoutMs;
  return {
    remaining(file) {
      const left = end - Date.now();
      if (left <= 0) throw new MediaError(file, `reading the video took longer than ${timeoutMs} ms (timeout)`);
      return left;
    },
  };
}

// Arguments shared by both passes: first video stream only, no rotation (PyAV does not rotate), every
// decoded frame passed through once (no frame-rate duplication or dropping).
// Nested inputs (playlists, concat lists) may only open local files.
function decodeArgs(ffmpeg: FfmpegBinary, input: string, logLevel = 'error', inputOptions: string[] = []): string[] {
  const sync = ffmpeg.hasFpsMode ? ['-fps_mode', 'passthrough'] : ['-vsync', 'passthrough'];
  return [
    ...['-nostdin', '-hide_banner', '-loglevel', logLevel, '-noautorotate', '-protocol_whitelist', 'file'],
    ...inputOptions,
    ...['-i', input, '-map', '0:v:0', ...sync],
  ];
}

/** Older ffmpeg builds read any *.txt as "tty" (ANSI art) video, which PyAV's FFmpeg rejects. */
function checkInputFormat(file: string, stderr: string): void {
  const format = /^Input #0, ([^,]+),/m.exec(stderr)?.[1];
  if (format === 'tty') throw new MediaError(file, 'a text file (ffmpeg reads it as ANSI art), not a video');
}

/** Number of frames the first video stream decodes to (decodes everything, keeps one grey pixel each). */
export async function countVideoFrames(file: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<number> {
  const input = checkFile(file);
  const ffmpeg = await locateFfmpeg();
  return (await countFrames(ffmpeg, file, input, options.timeoutMs ?? DEFAULT_TIMEOUT_MS, options.signal)).count;
}

/** The frame count, and ffmpeg's log (stream description included) for the second pass. */
async function countFrames(ffmpeg: FfmpegBinary, file: string, input: string, timeoutMs: number, signal?: AbortSignal): Promise<{ count: number; stderr: string }> {
  let count = 0;
  // Log level verbose (without progress lines) so that the input format name and the stream's chroma
  // location, when it has one, are printed. Skipping the
  // deblocking filter changes pixels only, never how many frames come out, and saves about a quarter.
  const args = [
    ...decodeArgs(ffmpeg, input, 'verbose', ['-skip_loop_filter', 'all']),
    ...['-nostats', '-vf', 'scale=1:1:flags=neighbor,format=gray', '-f', 'rawvideo', 'pipe:1'],
  ];
  const { code, stderr } = await runProcess(ffmpeg.path, args, {
    timeoutMs,
    signal,
    source: file,
    maxStdoutBytes: Number.MAX_SAFE_INTEGER,
    onStdout: (chunk) => {
      count += chunk.length;
    },
  });
  checkInputFormat(file, stderr);
  if (code !== 0) throw new MediaError(file, failureMessage(stderr));
  return { count, stderr };
}

/** ffmpeg `select` expression keeping the given sorted frame numbers, runs collapsed to between(). */
function selectExpression(sorted: readonly number[]): string {
  const terms: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    // Commas are escaped: unescaped they would separate filters in the filtergraph.
    terms.push(i === j ? `eq(n\\,${sorted[i]})` : `between(n\\,${sorted[i]}\\,${sorted[j]})`);
    i = j + 1;
  }
  return terms.join('+');
}

interface PpmImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Split ffmpeg's image2pipe PPM stream ("P6\n<w> <h>\n255\n" + RGB bytes, repeated). */
function parsePpmStream(file: string, bytes: Buffer): PpmImage[] {
  const images: PpmImage[] = [];
  let pos = 0;
  const token = (): string => {
    while (pos < bytes.length && /\s/.test(String.fromCharCode(bytes[pos]))) pos++;
    const start = pos;
    while (pos < bytes.length && !/\s/.test(String.fromCharCode(bytes[pos]))) pos++;
    return bytes.toString('latin1', start, pos);
  };
  while (pos < bytes.length) {
    const magic = token();
    const width = Number(token());
    const height = Number(token());
    const maxval = token();
    pos++; // the single whitespace byte after maxval
    const size = width * height * 3;
    if (magic !== 'P6' || maxval !== '255' || !(width > 0 && height > 0) || pos + size > bytes.length) {
      throw new MediaError(file, `unexpected RGB output from ffmpeg at byte ${pos} (header "${magic} ${width} ${height} ${maxval}")`);
    }
    // A copy: stdout may sit in Node's shared buffer pool, which a view would expose.
    images.push({ width, height, data: new Uint8Array(bytes.subarray(pos, pos + size)) });
    pos += size;
  }
  return images;
}

/**
 * Decode the sampled frames of a video as RGB24, the way the Hugging Face docs' `read_video_pyav` does:
 * frames are numbered in decode order over the first video stream; every frame whose number is in the
 * index list is kept once, in ascending order. Indices past the end are skipped as in read_video_pyav
 * (numpy's arange can yield `total` itself); when total < numFrames indices repeat and fewer frames return.
 */
export async function readVideoFrames(file: string, options: ReadVideoOptions = {}): Promise<VideoFrames> {
  const explicit = explicitIndices(options);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const input = checkFile(file);
  const ffmpeg = await locateFfmpeg();
  const clock = deadline(timeoutMs);

  const { count: totalFrames, stderr: log } = await countFrames(ffmpeg, file, input, clock.remaining(file), options.signal);
  if (totalFrames === 0) throw new MediaError(file, 'the video stream has no decodable frames (0 frames)');

  const { sampled: sampledIndices, wanted } = framesToKeep(totalFrames, options, explicit);

  const select = selectExpression(wanted);
  if (select.length > MAX_SELECT_CHARS) {
    throw new InputError('indices', `${wanted.length} scattered indices make too long an ffmpeg command; ask for fewer`);
  }
  const stream = /^\s*Stream #0:\d+.*?: Video: .*$/m.exec(log)?.[0];
  const deep = stream ? highDepthFormat(stream) : undefined;
  const size = deep ? parseProbe(log) : undefined;
  const output = deep && size ? ['-pix_fmt', deep.pixFmt, '-f', 'rawvideo', 'pipe:1'] : ['-pix_fmt', 'rgb24', '-f', 'image2pipe', '-c:v', 'ppm', 'pipe:1'];
  const args = [
    ...decodeArgs(ffmpeg, input),
    '-vf',
    `select=${select}`,
    '-frames:v',
    String(wanted.length), // stop decoding after the last wanted frame
    ...output,
  ];
  const { code, stdout, stderr } = await runProcess(ffmpeg.path, args, {
    timeoutMs: clock.remaining(file),
    signal: options.signal,
    source: file,
    maxStdoutBytes: options.maxBytes,
  });
  if (code !== 0) throw new MediaError(file, failureMessage(stderr));

  const images = deep && size ? splitHighDepth(file, stdout, size.width, size.height, deep) : parsePpmStream(file, stdout);
  if (images.length !== wanted.length) {
    throw new MediaError(file, `expected ${wanted.length} frames from the second decoding pass, got ${images.length} (did the file change?)`);
  }
  const { width, height } = images[0];
  const odd = images.find((im) => im.width !== width || im.height !== height);
  if (odd) {
    throw new MediaError(file, `frame size changes mid-stream (${width}x${height}, then ${odd.width}x${odd.height}); not supported`);
  }
  return { frames: images.map((im) => im.data), width, height, indices: wanted, sampledIndices, totalFrames };
}

/** Raw 4:2:0 frames of `format.bits` bits (little-endian) → RGB24 images, converted as PyAV does (./yuv.ts). */
function splitHighDepth(file: string, bytes: Buffer, width: number, height: number, format: HighDepthFormat): PpmImage[] {
  const samples = width * height + 2 * ((width + 1) >> 1) * ((height + 1) >> 1);
  const frameBytes = 2 * samples;
  if (bytes.length % frameBytes !== 0) {
    throw new MediaError(file, `ffmpeg gave ${bytes.length} bytes of ${format.pixFmt}, not a whole number of ${width}x${height} frames (does the frame size change mid-stream?)`);
  }
  const images: PpmImage[] = [];
  for (let at = 0; at < bytes.length; at += frameBytes) {
    const planes = new Uint16Array(samples);
    for (let i = 0; i < samples; i++) planes[i] = bytes.readUInt16LE(at + 2 * i);
    images.push({ width, height, data: yuv420HighDepthToRgb(planes, width, height, format, file) });
  }
  return images;
}
