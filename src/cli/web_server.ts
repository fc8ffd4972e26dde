/**
 * A small static server for the demo page (`video-llava web`) and the browser tests: files from a few folders,
 * single-range requests (the page reads safetensors by ranges), and the headers that make the page cross-origin
 * isolated (COOP/COEP), which tfjs-backend-wasm needs for threads. Loopback by default; nothing is written.
 */
import * as fs from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as path from 'path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.jinja': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.mp4': 'video/mp4',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.safetensors': 'application/octet-stream',
};

export interface WebServerOptions {
  /** URL prefix ("/", "/assets/") → folder. The longest matching prefix wins. */
  mounts: Record<string, string>;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Called for each request (tests count them). */
  onRequest?: (method: string, url: string, status: number) => void;
}

export interface WebServer {
  url: string;
  close(): Promise<void>;
}

const ISOLATION = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-resource-policy': 'same-origin',
};

/** The file a URL path names, or null when no mount holds it (or it would leave its folder). */
function resolvePath(mounts: Array<[string, string]>, urlPath: string): string | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  for (const [prefix, dir] of mounts) {
    if (!decoded.startsWith(prefix)) continue;
    const file = path.resolve(dir, `.${path.posix.sep}${decoded.slice(prefix.length)}`);
    const rel = path.relative(dir, file);
    if (rel.startsWith('..') || path.isAbsolute(rel)) return null;
    return fs.existsSync(file) && fs.statSync(file).isDirectory() ? path.join(file, 'index.html') : file;
  }
  return null;
}

/** [start, end) of a "bytes=a-b" / "bytes=a-" / "bytes=-n" header, null when unsatisfiable, undefined when absent or not one range. */
function parseRange(header: string | undefined, size: number): [number, number] | null | undefined {
  const m = header ? /^bytes=(\d*)-(\d*)$/.exec(header.trim()) : null;
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size : Math.min(size, Number(m[2]) + 1);
  }
  return start < end && start < size ? [start, end] : null;
}

export async function startWebServer(options: WebServerOptions): Promise<WebServer> {
  const mounts = Object.entries(options.mounts)
    .map(([prefix, dir]) => [prefix.endsWith('/') ? prefix : `${prefix}/`, path.resolve(dir)] as [string, string])
    .sort((a, b) => b[0].length - a[0].length);
  const server = http.createServer((req, res) => {
    const done = (status: number, headers: Record<string, string | number> = {}, body?: string): void => {
      res.writeHead(status, { ...ISOLATION, 'cache-control': 'no-cache', ...headers });
      res.end(body);
      options.onRequest?.(req.method ?? '', req.url ?? '', status);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return done(405, { allow: 'GET, HEAD' });
    const urlPath = new URL(req.url ?? '/', 'http://localhost').pathname;
    const file = resolvePath(mounts, urlPath);
    const stat = file ? fs.statSync(file, { throwIfNoEntry: false }) : undefined;
    if (!file || !stat?.isFile()) return done(404, { 'content-type': 'text/plain' }, `not found: ${urlPath}\n`);
    const type = TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
    const base = { 'content-type': type, 'accept-ranges': 'bytes', 'last-modified': stat.mtime.toUTCString() };
    const range = parseRange(req.headers.range, stat.size);
    if (range === null) return done(416, { ...base, 'content-range': `bytes */${stat.size}` });
    const [start, end] = range ?? [0, stat.size];
    const status = range ? 206 : 200;
    res.writeHead(status, {
      ...ISOLATION,
      'cache-control': 'no-cache',
      ...base,
      'content-length': end - start,
      ...(range ? { 'content-range': `bytes ${start}-${end - 1}/${stat.size}` } : {}),
    });
    options.onRequest?.(req.method, req.url ?? '', status);
    if (req.method === 'HEAD' || end === start) return void res.end();
    fs.createReadStream(file, { start, end: end - 1 }).on('error', () => res.destroy()).pipe(res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
