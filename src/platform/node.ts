/**
 * The platform in Node: local files, the Hugging Face cache on disk (src/hub), ffmpeg (src/processing/video.ts),
 * sharp (src/processing/image_decode.ts), the native addon and BLAS kernels (src/native), /proc/meminfo. The only
 * place shared code reaches them from; the browser bundle replaces this file by ./browser.ts.
 */
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import { promises as fsp } from 'fs';
import type { FileHandle } from 'fs/promises';
import * as os from 'os';
import * as path from 'path';
import { BackendError } from '../errors';
import type { BackendName } from '../backend';
import { nativeAddon } from '../native/addon';
import { configureNativeMatmul } from '../native';
import { nativeKernelsActive } from '../native/kernels';
import type { DecodeOptions, EncodedImage, RawImage } from '../processing/image';
import type { ReadVideoOptions, VideoFrames, VideoSource } from '../processing/frames';
import type { VideoLlavaForConditionalGeneration } from '../models/video_llava/modeling';
import type { OriginalLoadOptions } from '../models/video_llava/original';
import { ByteSource, ModelFiles } from './files';
import { httpModelFiles } from './http';
import type { ModelSourceOptions, Platform } from './types';

/** Largest single read; Node refuses reads of 2 GiB or more. */
const READ_CHUNK = 1 << 30;

class FileSource implements ByteSource {
  private handle: FileHandle | null;

  constructor(readonly name: string, handle: FileHandle, readonly size: number) {
    this.handle = handle;
  }

  get localPath(): string {
    return this.name;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (!this.handle) throw new Error('file is closed');
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.handle.read(out, done, Math.min(READ_CHUNK, length - done), offset + done);
      if (bytesRead === 0) {
        throw new Error(`unexpected end of file at byte ${offset + done} while reading ${length} bytes at ${offset} (was the file changed after it was opened?)`);
      }
      done += bytesRead;
    }
    return out;
  }

  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    if (handle) await handle.close();
  }
}

async function openFile(file: string): Promise<ByteSource> {
  const handle = await fsp.open(file, 'r');
  try {
    return new FileSource(file, handle, (await handle.stat()).size);
  } catch (err) {
    await handle.close();
    throw err;
  }
}

function absent(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** A local directory; small files are read synchronously, when asked for. */
function localFiles(dir: string): ModelFiles {
  return {
    location: dir,
    where: (name) => path.join(dir, name),
    text(name) {
      try {
        return fs.readFileSync(path.join(dir, name), 'utf8');
      } catch (err) {
        if (absent(err)) return undefined;
        throw err;
      }
    },
    async open(name) {
      const file = path.join(dir, name);
      const stat = await fsp.stat(file).catch(() => null);
      return stat?.isFile() ? openFile(file) : null;
    },
  };
}

async function modelFiles(idOrDir: string, options: ModelSourceOptions = {}): Promise<ModelFiles> {
  if (/^https?:\/\//i.test(idOrDir)) return httpModelFiles(idOrDir, { fetch: options.fetch, cache: options.cache ?? null, onProgress: options.onProgress });
  const { cache: _cache, ...resolve } = options;
  const { resolveModel } = await import('../hub/resolve');
  return localFiles(await resolveModel(idOrDir, resolve));
}

async function writeFileAtomically(file: string, write: (append: (bytes: Uint8Array) => Promise<void>) => Promise<void>): Promise<void> {
  const suffix = `${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${suffix}`);
  let handle: FileHandle | null = null;
  try {
    handle = await fsp.open(tmp, 'wx');
    const h = handle;
    await write(async (bytes) => {
      for (let done = 0; done < bytes.byteLength; ) {
        done += (await h.write(bytes, done, Math.min(READ_CHUNK, bytes.byteLength - done))).bytesWritten;
      }
    });
    await handle.sync();
    await handle.close();
    handle = null;
    await fsp.rename(tmp, file);
  } catch (err) {
    if (handle) await handle.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

async function loadOriginalModel(dir: string, options: OriginalLoadOptions): Promise<VideoLlavaForConditionalGeneration | undefined> {
  const { originalCheckpointDir, loadOriginalVideoLlava } = await import('../models/video_llava/original');
  const original = await originalCheckpointDir(dir, options);
  return original ? loadOriginalVideoLlava(original, options) : undefined;
}

async function decodeImage(input: EncodedImage, options: DecodeOptions): Promise<RawImage> {
  const { decodeImageWithSharp } = await import('../processing/image_decode');
  return decodeImageWithSharp(input, options);
}

async function readVideoFrames(source: VideoSource, options: ReadVideoOptions): Promise<VideoFrames> {
  const video = await import('../processing/video');
  if (typeof source !== 'string') {
    // ffmpeg reads files: a Blob goes through a temporary one
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'video-llava-video-'));
    const file = path.join(dir, 'video');
    try {
      await fsp.writeFile(file, new Uint8Array(await source.arrayBuffer()));
      return await video.readVideoFrames(file, options);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }
  return video.readVideoFrames(source, options);
}

/** MemAvailable on Linux (free + reclaimable cache), else os.freemem(). */
function availableMemory(): number {
  try {
    const match = /^MemAvailable:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
    if (match) return Number(match[1]) * 1024;
  } catch {
    // not Linux
  }
  return os.freemem();
}

function loadNodeBinding(): void {
  for (const pkg of ['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu']) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      require(pkg);
      return;
    } catch {
      // try the next one
    }
  }
  throw new BackendError(
    'backend "tensorflow" needs @tensorflow/tfjs-node or @tensorflow/tfjs-node-gpu installed; ' +
      'use --backend wasm (default) or cpu otherwise',
  );
}

async function loadBackend(name: BackendName): Promise<void> {
  // Registers the backend with tfjs; its .wasm binaries ship inside the package.
  if (name === 'wasm') require('@tensorflow/tfjs-backend-wasm');
  else if (name === 'tensorflow') loadNodeBinding();
}

export const platform: Platform = {
  name: 'node',
  backends: ['wasm', 'cpu', 'tensorflow'],
  env: (name) => process.env[name],
  modelFiles,
  localFiles,
  isDirectory: async (dir) => (await fsp.stat(dir)).isDirectory(),
  openFile,
  readTextFile: (file) => fsp.readFile(file, 'utf8'),
  writeFileAtomically,
  loadOriginalModel,
  decodeImage,
  readVideoFrames,
  availableMemory,
  nativeAddon,
  nativeKernelsActive,
  loadBackend,
  configureBackend: (_name, native) => void configureNativeMatmul(native),
  yieldToEventLoop: () => new Promise((resolve) => setImmediate(resolve)),
};
