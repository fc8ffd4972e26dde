/**
 * Model files over HTTP (the browser, or Node given a URL): small files fetched whole, large ones read by Range
 * requests in blocks, so a multi-GB shard is never held whole. Every byte fetched can be kept in a `ByteCache`
 * (the browser's Cache Storage: ./browser_cache.ts), and a cached block, file or known absence is used without any
 * request, so a second visit loads with the network off. A server that ignores Range gets one plain request per
 * file (its body kept for the reads that follow).
 */
import type { DownloadProgress } from '../hub/types';
import { HubError } from '../hub/errors';
import { ByteSource, MODEL_FILES, ModelFiles, WEIGHTS_INDEX, errorText } from './files';

/** Bytes kept by key (an http(s) URL): the browser's Cache Storage, or nothing. */
export interface ByteCache {
  get(key: string): Promise<Uint8Array | undefined>;
  put(key: string, bytes: Uint8Array): Promise<void>;
}

export interface HttpOptions {
  fetch?: typeof fetch;
  /** Extra request headers (Authorization for a private Hub repository). */
  headers?: Record<string, string>;
  /** Where fetched bytes are kept; none by default. */
  cache?: ByteCache | null;
  /** Network bytes as they arrive (cache hits are not reported). */
  onProgress?: (progress: DownloadProgress) => void;
  /** Bytes per Range request and per cache entry (default 16 MiB). */
  blockBytes?: number;
}

export const DEFAULT_BLOCK_BYTES = 16 * 1024 * 1024;
const ABSENT = new Uint8Array([0]);

/** The cache key of one part of `url` ("meta", "absent", "block-16777216-3"): the URL with a marked query. */
function partKey(url: string, part: string): string {
  const u = new URL(url);
  u.searchParams.set('video-llava-part', part);
  return u.href;
}

/** Network progress summed over the files of one loader (one HttpContext). */
class Progress {
  private files = new Map<string, { loaded: number; total: number }>();
  private readonly start = Date.now();

  constructor(private readonly report?: (progress: DownloadProgress) => void) {}

  add(file: string, bytes: number, fileTotal: number): void {
    if (!this.report) return;
    const entry = this.files.get(file) ?? { loaded: 0, total: fileTotal };
    entry.loaded += bytes;
    this.files.set(file, entry);
    let loaded = 0;
    let total = 0;
    for (const e of this.files.values()) {
      loaded += e.loaded;
      total += e.total;
    }
    const seconds = Math.max((Date.now() - this.start) / 1000, 1e-3);
    this.report({ file, fileBytes: entry.loaded, fileTotal: entry.total, bytes: loaded, total, bytesPerSecond: loaded / seconds });
  }
}

interface HttpContext {
  fetch: typeof fetch;
  headers: Record<string, string>;
  cache: ByteCache | null;
  progress: Progress;
  blockBytes: number;
}

function context(options: HttpOptions): HttpContext {
  const blockBytes = options.blockBytes ?? DEFAULT_BLOCK_BYTES;
  if (!Number.isSafeInteger(blockBytes) || blockBytes < 1) throw new HubError('http', 'blockBytes', `expected a positive integer, found ${blockBytes}`);
  return {
    fetch: options.fetch ?? ((input, init) => fetch(input, init)),
    headers: options.headers ?? {},
    cache: options.cache ?? null,
    progress: new Progress(options.onProgress),
    blockBytes,
  };
}

async function request(ctx: HttpContext, url: string, range?: [number, number]): Promise<Response> {
  const headers: Record<string, string> = { ...ctx.headers };
  if (range) headers.range = `bytes=${range[0]}-${range[1] - 1}`;
  try {
    return await ctx.fetch(url, { headers });
  } catch (err) {
    throw new HubError('network', url, `cannot be fetched (${errorText(err)}); check the URL and the server, or load it once while online so that the cache has it`);
  }
}

function httpFailure(url: string, res: Response): HubError {
  if (res.status === 404) return new HubError('entry-not-found', url, 'not found (HTTP 404)', { status: 404 });
  return new HubError('http', url, `HTTP ${res.status} ${res.statusText}`.trim(), { status: res.status });
}

/** The whole body, reporting progress as it arrives; `expected` bytes exactly when given. */
async function readBody(ctx: HttpContext, url: string, res: Response, fileTotal: number, expected?: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let received = 0;
  const reader = res.body?.getReader();
  if (reader) {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      received += value.byteLength;
      ctx.progress.add(url, value.byteLength, fileTotal);
    }
  }
  if (expected !== undefined && received !== expected) {
    throw new HubError('integrity', url, `expected ${expected} bytes from the server, received ${received} (was the file changed or the connection cut?)`);
  }
  const out = new Uint8Array(received);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** A small file's text, from the cache or the network; undefined when the server says 404 (remembered as such). */
export async function fetchText(url: string, options: HttpOptions = {}): Promise<string | undefined> {
  return fetchTextIn(context(options), url);
}

async function fetchTextIn(ctx: HttpContext, url: string): Promise<string | undefined> {
  const cached = await ctx.cache?.get(url);
  if (cached) return new TextDecoder().decode(cached);
  if (await ctx.cache?.get(partKey(url, 'absent'))) return undefined;
  const res = await request(ctx, url);
  if (res.status === 404) {
    await ctx.cache?.put(partKey(url, 'absent'), ABSENT);
    return undefined;
  }
  if (!res.ok) throw httpFailure(url, res);
  const bytes = await readBody(ctx, url, res, Number(res.headers.get('content-length') ?? 0));
  await ctx.cache?.put(url, bytes);
  return new TextDecoder().decode(bytes);
}

/** Size from "Content-Range: bytes 0-9/1234" (or "bytes * /1234" on a 416). */
function rangeTotal(res: Response): number | undefined {
  const match = /\/(\d+)\s*$/.exec(res.headers.get('content-range') ?? '');
  return match ? Number(match[1]) : undefined;
}

class HttpByteSource implements ByteSource {
  /** The last blocks read (the loader reads tensors nearly in file order). */
  private recent = new Map<number, Promise<Uint8Array>>();
  private closed = false;

  constructor(
    readonly name: string,
    readonly size: number,
    private readonly ctx: HttpContext,
    /** The whole file, when the server ignored the Range header. */
    private readonly whole: Uint8Array | null,
    first: Uint8Array | null,
  ) {
    if (first) this.recent.set(0, Promise.resolve(first));
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (this.closed) throw new HubError('http', this.name, 'file is closed');
    if (!(offset >= 0 && length >= 0 && offset + length <= this.size)) {
      throw new HubError('http', this.name, `read of ${length} bytes at ${offset} runs past the end of the file (${this.size} bytes)`);
    }
    if (this.whole) return this.whole.slice(offset, offset + length);
    const out = new Uint8Array(length);
    const B = this.ctx.blockBytes;
    for (let b = Math.floor(offset / B); b * B < offset + length; b++) {
      const block = await this.block(b);
      const from = Math.max(offset, b * B);
      const to = Math.min(offset + length, (b + 1) * B);
      out.set(block.subarray(from - b * B, to - b * B), from - offset);
    }
    return out;
  }

  private block(b: number): Promise<Uint8Array> {
    let pending = this.recent.get(b);
    if (!pending) {
      pending = this.fetchBlock(b);
      this.recent.set(b, pending);
      pending.catch(() => this.recent.delete(b));
      if (this.recent.size > 2) this.recent.delete(this.recent.keys().next().value as number);
    }
    return pending;
  }

  private async fetchBlock(b: number): Promise<Uint8Array> {
    const B = this.ctx.blockBytes;
    const key = partKey(this.name, `block-${B}-${b}`);
    const cached = await this.ctx.cache?.get(key);
    const end = Math.min(this.size, (b + 1) * B);
    if (cached && cached.byteLength === end - b * B) return cached;
    const res = await request(this.ctx, this.name, [b * B, end]);
    if (res.status !== 206) {
      throw res.ok ? new HubError('http', this.name, `answered a Range request with ${res.status} after answering one with 206`) : httpFailure(this.name, res);
    }
    const bytes = await readBody(this.ctx, this.name, res, this.size, end - b * B);
    await this.ctx.cache?.put(key, bytes);
    return bytes;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.recent.clear();
  }
}

/** `url` for reads by byte range; null when the server says 404. */
export async function openHttpFile(url: string, options: HttpOptions = {}): Promise<ByteSource | null> {
  return openIn(context(options), url);
}

async function openIn(ctx: HttpContext, url: string): Promise<ByteSource | null> {
  const meta = await ctx.cache?.get(partKey(url, 'meta'));
  if (meta) return new HttpByteSource(url, Number(new TextDecoder().decode(meta)), ctx, null, null);
  const first = await request(ctx, url, [0, ctx.blockBytes]);
  if (first.status === 404) return null;
  let source: HttpByteSource;
  if (first.status === 206) {
    const size = rangeTotal(first);
    if (size === undefined) throw new HubError('http', url, 'a 206 answer without the file size in Content-Range');
    const bytes = await readBody(ctx, url, first, size, Math.min(size, ctx.blockBytes));
    await ctx.cache?.put(partKey(url, `block-${ctx.blockBytes}-0`), bytes);
    source = new HttpByteSource(url, size, ctx, null, bytes);
  } else if (first.status === 416) {
    source = new HttpByteSource(url, rangeTotal(first) ?? 0, ctx, new Uint8Array(0), null); // an empty file
  } else if (first.ok) {
    const whole = await readBody(ctx, url, first, Number(first.headers.get('content-length') ?? 0));
    for (let b = 0; b * ctx.blockBytes < whole.byteLength; b++) {
      await ctx.cache?.put(partKey(url, `block-${ctx.blockBytes}-${b}`), whole.slice(b * ctx.blockBytes, (b + 1) * ctx.blockBytes));
    }
    source = new HttpByteSource(url, whole.byteLength, ctx, whole, null);
  } else {
    throw httpFailure(url, first);
  }
  await ctx.cache?.put(partKey(url, 'meta'), new TextEncoder().encode(String(source.size)));
  return source;
}

/**
 * A model folder at `baseUrl` (absolute). Its small files (MODEL_FILES and the shard index) are fetched at once, in
 * parallel; a 404 means the folder has no such file. Weights are opened on demand.
 */
export async function httpModelFiles(baseUrl: string, options: HttpOptions = {}): Promise<ModelFiles> {
  const ctx = context(options);
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  const url = (name: string) => new URL(name, base).href;
  const names = [...MODEL_FILES, WEIGHTS_INDEX];
  const texts = new Map(await Promise.all(names.map(async (n) => [n, await fetchTextIn(ctx, url(n))] as const)));
  return {
    location: base,
    where: url,
    text(name) {
      if (!texts.has(name)) throw new HubError('http', url(name), `only ${names.join(', ')} are read as small files over HTTP`);
      return texts.get(name);
    },
    open: (name) => openIn(ctx, url(name)),
  };
}
