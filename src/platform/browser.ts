/**
 * The platform in a web page: model files over HTTP (Range requests) kept in Cache Storage, images decoded by the
 * browser, videos by WebCodecs, backends wasm (SIMD, threads when the page is cross-origin isolated), WebGL and
 * WebGPU. No native code, no file system. The browser bundle (scripts/build-web.js) puts this file where
 * ./node.ts stands in Node.
 */
import '@tensorflow/tfjs-backend-webgpu';
import * as tf from '@tensorflow/tfjs';
import { getThreadsCount, setThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { BackendError, InputError } from '../errors';
import type { BackendName } from '../backend';
import { DEFAULT_ENDPOINT, isRepoId } from '../hub/ids';
import { cacheStorage } from './browser_cache';
import { decodeImageInPage } from './browser_image';
import { readVideoFramesInPage } from './browser_video';
import { ByteSource, ModelFiles } from './files';
import { fetchText, httpModelFiles, openHttpFile } from './http';
import type { ModelSourceOptions, Platform } from './types';

const NODE_ONLY = 'needs Node (a file system); in the browser pass a URL';

/** Where the tfjs-backend-wasm binaries are served: next to this bundle unless configureWasm() says otherwise. */
let wasmConfigured = false;

/**
 * Where the .wasm binaries are (default: the folder of this bundle, where the build copies them) and how many
 * threads XNNPACK may use. Threads run only where the page is cross-origin isolated (COOP/COEP headers, as
 * `video-llava web` sends); tfjs-backend-wasm starts min(4, cores / 2) workers, which also caps `threads`. Call
 * before setBackend('wasm').
 */
export function configureWasm(options: { prefix?: string; threads?: number } = {}): void {
  setWasmPaths(options.prefix ?? new URL('./', import.meta.url).href);
  if (options.threads !== undefined) setThreadsCount(options.threads);
  wasmConfigured = true;
}

/** What runs the model, in words: "wasm (SIMD, 2 threads)", "webgl (ANGLE …)", "webgpu (…)". */
export async function describeBackend(): Promise<string> {
  const name = tf.getBackend();
  if (name === 'wasm') {
    const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    const threads = getThreadsCount();
    return `wasm (${simd ? 'SIMD' : 'no SIMD'}, ${threads} thread${threads === 1 ? '' : 's'})`;
  }
  if (name === 'webgl') {
    const gl = (tf.backend() as unknown as { gpgpu?: { gl?: WebGL2RenderingContext } }).gpgpu?.gl;
    const info = gl?.getExtension('WEBGL_debug_renderer_info');
    const renderer = gl && info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : '';
    return renderer ? `webgl (${renderer.replace(/\s*\(0x[0-9A-F]+\)/gi, '')})` : 'webgl';
  }
  if (name === 'webgpu') {
    const info = (tf.backend() as unknown as { adapterInfo?: { vendor?: string; architecture?: string; description?: string } }).adapterInfo;
    const words = [info?.vendor, info?.architecture, info?.description].filter((w) => w).join(' ');
    return words ? `webgpu (${words})` : 'webgpu';
  }
  return name;
}

/** A URL relative to the page, or a Hub id ("org/name"). */
function modelBase(idOrDir: string, options: ModelSourceOptions): { base: string; headers: Record<string, string> } {
  if (!isRepoId(idOrDir) || /^(\.{0,2}\/|[a-z][a-z0-9+.-]*:)/i.test(idOrDir)) return { base: new URL(idOrDir, location.href).href, headers: {} };
  const endpoint = (options.endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  const revision = encodeURIComponent(options.revision ?? 'main');
  return { base: `${endpoint}/${idOrDir}/resolve/${revision}/`, headers: options.token ? { authorization: `Bearer ${options.token}` } : {} };
}

async function modelFiles(idOrDir: string, options: ModelSourceOptions = {}): Promise<ModelFiles> {
  const { base, headers } = modelBase(idOrDir, options);
  const cache = options.cache === undefined ? cacheStorage() : options.cache;
  return httpModelFiles(base, { fetch: options.fetch, headers, cache, onProgress: options.onProgress });
}

async function openFile(file: string): Promise<ByteSource> {
  const url = new URL(file, location.href).href;
  const source = await openHttpFile(url, { cache: cacheStorage() });
  if (!source) throw new InputError('file', `${url}: not found (HTTP 404)`);
  return source;
}

async function readTextFile(file: string): Promise<string> {
  const url = new URL(file, location.href).href;
  const text = await fetchText(url, { cache: cacheStorage() });
  if (text === undefined) throw new InputError('file', `${url}: not found (HTTP 404)`);
  return text;
}

async function loadBackend(name: BackendName): Promise<void> {
  if (name === 'wasm' && !wasmConfigured) configureWasm();
  if (name === 'webgpu') {
    const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
    const adapter = gpu ? await gpu.requestAdapter().catch(() => null) : null;
    if (!adapter) throw new BackendError('backend "webgpu": this browser exposes no WebGPU adapter; use wasm or webgl');
  }
}

/** A macrotask without setTimeout's 4 ms clamp, so a streamed answer can paint between tokens. */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}

export const platform: Platform = {
  name: 'browser',
  backends: ['wasm', 'webgl', 'webgpu', 'cpu'],
  env: () => undefined,
  modelFiles,
  localFiles: (dir) => {
    throw new InputError('dir', `${dir}: reading a local directory ${NODE_ONLY}`);
  },
  isDirectory: async (dir) => {
    throw new InputError('dir', `${dir}: reading a local directory ${NODE_ONLY}`);
  },
  openFile,
  readTextFile,
  writeFileAtomically: async (file) => {
    throw new InputError('file', `${file}: writing files ${NODE_ONLY}`);
  },
  loadOriginalModel: async () => undefined,
  decodeImage: decodeImageInPage,
  readVideoFrames: readVideoFramesInPage,
  // navigator.deviceMemory is a rounded, capped hint (GiB); the wasm heap's own 4 GiB limit is checked apart.
  availableMemory: () => ((navigator as Navigator & { deviceMemory?: number }).deviceMemory ?? Infinity) * 1024 ** 3,
  nativeAddon: () => null,
  nativeKernelsActive: () => false,
  loadBackend,
  configureBackend: () => undefined,
  yieldToEventLoop,
};
