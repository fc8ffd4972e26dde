/**
 * Models over HTTP (src/platform/http.ts), the path the page takes, run here in Node against the local server of
 * `video-llava web` (src/cli/web_server.ts): Range reads in blocks, progress, a byte cache that makes a second load
 * need no server, servers that ignore Range, absent files, typed errors; and the server itself.
 */
import * as fs from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { HubError } from '../../src/hub/errors';
import { SafetensorsError } from '../../src/errors';
import { WebServer, startWebServer } from '../../src/cli/web_server';
import { VideoLlavaForConditionalGeneration, disposeOutput } from '../../src/models/video_llava/modeling';
import { VideoLlavaProcessor } from '../../src/processing/processor';
import { innerPath } from '../../src/platform/files';
import { ByteCache, httpModelFiles, openHttpFile } from '../../src/platform/http';

const ROOT = path.join(__dirname, '..', '..');
const MODEL = path.join(ROOT, 'assets', 'trained-model');

let server: WebServer;
const requests: string[] = [];

beforeAll(async () => {
  server = await startWebServer({ mounts: { '/model/': MODEL, '/': path.join(ROOT, 'test', 'fixtures') }, onRequest: (m, u, s) => requests.push(`${m} ${u} ${s}`) });
});
afterAll(() => server.close());

function mapCache(): ByteCache & { entries: Map<string, Uint8Array> } {
  const entries = new Map<string, Uint8Array>();
  return { entries, get: async (k) => entries.get(k), put: async (k, v) => void entries.set(k, v) };
}

async function logits(model: VideoLlavaForConditionalGeneration): Promise<Float32Array> {
  const out = model.forward({ inputIds: [[1, 5, 9, 33, 2]] });
  const data = (await out.logits.data()) as Float32Array;
  disposeOutput(out);
  return data;
}

test('a model over HTTP by byte ranges (1 MiB blocks) gives the same weights and logits as from its directory', async () => {
  const local = await VideoLlavaForConditionalGeneration.fromPretrained(MODEL);
  requests.length = 0;
  const progress: number[] = [];
  const files = await httpModelFiles(`${server.url}model/`, { blockBytes: 1 << 20 });
  const remote = await VideoLlavaForConditionalGeneration.fromPretrained(files, { onProgress: (p) => progress.push(p.bytesLoaded / p.bytesTotal) });
  try {
    expect(Buffer.from((await logits(remote)).buffer).equals(Buffer.from((await logits(local)).buffer))).toBe(true);
    const ranges = requests.filter((r) => /model\.safetensors 206$/.test(r));
    const size = fs.statSync(path.join(MODEL, 'model.safetensors')).size;
    expect(ranges).toHaveLength(Math.ceil(size / (1 << 20))); // each block once, none read twice
    expect(progress[progress.length - 1]).toBe(1);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    const processor = await VideoLlavaProcessor.fromPretrained(files);
    const fromDir = await VideoLlavaProcessor.fromPretrained(MODEL);
    expect(processor.tokenizer.encode('a purple cross moves left.')).toEqual(fromDir.tokenizer.encode('a purple cross moves left.'));
    expect(processor.chatTemplate).toBe(fromDir.chatTemplate);
  } finally {
    local.dispose();
    remote.dispose();
  }
});

test('with a byte cache, a second load needs no server at all; without one it fails with a typed error naming the URL', async () => {
  const cache = mapCache();
  const first = await VideoLlavaForConditionalGeneration.fromPretrained(await httpModelFiles(`${server.url}model/`, { cache }));
  const expected = await logits(first);
  first.dispose();
  const down = await startWebServer({ mounts: { '/model/': MODEL } });
  const url = `${down.url}model/`;
  await down.close(); // nothing listens there now
  const files = await httpModelFiles(url, { cache: { get: (k) => cache.get(k.replace(url, `${server.url}model/`)), put: async () => undefined } });
  const second = await VideoLlavaForConditionalGeneration.fromPretrained(files);
  expect(Buffer.from((await logits(second)).buffer).equals(Buffer.from(expected.buffer))).toBe(true);
  second.dispose();
  const err = await httpModelFiles(url).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(HubError);
  expect((err as HubError).code).toBe('network');
  expect((err as HubError).message).toMatch(new RegExp(`^${url.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\S+: cannot be fetched`));
});

test('a server that ignores Range: one plain request per file, the same bytes', async () => {
  const file = path.join(MODEL, 'model.safetensors');
  let plain = 0;
  const ignoring = http.createServer((req, res) => {
    plain++;
    res.writeHead(200, { 'content-length': fs.statSync(file).size });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise<void>((resolve) => ignoring.listen(0, '127.0.0.1', resolve));
  try {
    const source = (await openHttpFile(`http://127.0.0.1:${(ignoring.address() as AddressInfo).port}/model.safetensors`, { blockBytes: 4096 }))!;
    const bytes = fs.readFileSync(file);
    expect(source.size).toBe(bytes.length);
    expect(Buffer.from(await source.read(5000, 10000)).equals(bytes.subarray(5000, 15000))).toBe(true);
    expect(Buffer.from(await source.read(bytes.length - 3, 3)).equals(bytes.subarray(bytes.length - 3))).toBe(true);
    expect(plain).toBe(1);
    await expect(source.read(bytes.length - 3, 4)).rejects.toThrow(/runs past the end of the file/);
  } finally {
    ignoring.closeAllConnections();
    ignoring.close();
  }
});

test('absent files: 404 small files are absent, a folder without weights is a SafetensorsError naming it', async () => {
  expect(await openHttpFile(`${server.url}model/nothing.safetensors`)).toBeNull();
  const files = await httpModelFiles(`${server.url}images/`);
  expect(files.text('config.json')).toBeUndefined();
  expect(() => files.text('weights.bin')).toThrow(/only .* are read as small files over HTTP/);
  const err = await VideoLlavaForConditionalGeneration.fromPretrained(files).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(Error);
  expect((err as Error).message).toMatch(/config\.json/);
  const noWeights = await import('../../src/weights/checkpoint').then((m) => m.Checkpoint.open(files).catch((e: unknown) => e));
  expect(noWeights).toBeInstanceOf(SafetensorsError);
  expect((noWeights as Error).message).toMatch(/no model\.safetensors or model\.safetensors\.index\.json/);
});

test('shard names stay inside the folder (lexically)', () => {
  expect(innerPath('model-00001-of-00002.safetensors')).toBe('model-00001-of-00002.safetensors');
  expect(innerPath('sub/../a.safetensors')).toBe('a.safetensors');
  for (const bad of ['../a', 'sub/../../a', '/abs/a', 'C:\\a', '.', 'https://evil/a']) expect(innerPath(bad)).toBeNull();
});

describe('the web server', () => {
  const get = (url: string, headers: Record<string, string> = {}) => fetch(new URL(url, server.url), { headers });

  test('ranges, isolation headers, and no way out of its folders', async () => {
    const size = fs.statSync(path.join(MODEL, 'config.json')).size;
    const whole = await get('model/config.json');
    expect(whole.status).toBe(200);
    expect(whole.headers.get('cross-origin-opener-policy')).toBe('same-origin');
    expect(whole.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
    expect(whole.headers.get('content-type')).toMatch(/application\/json/);
    const text = await whole.text();
    const tail = await get('model/config.json', { range: 'bytes=-10' });
    expect([tail.status, tail.headers.get('content-range'), await tail.text()]).toEqual([206, `bytes ${size - 10}-${size - 1}/${size}`, text.slice(-10)]);
    const open = await get('model/config.json', { range: 'bytes=5-' });
    expect([open.status, await open.text()]).toEqual([206, text.slice(5)]);
    const beyond = await get('model/config.json', { range: `bytes=${size}-` });
    expect([beyond.status, beyond.headers.get('content-range')]).toEqual([416, `bytes */${size}`]);
    for (const escape of ['model/../../package.json', 'model/%2e%2e/%2e%2e/package.json', 'model/..%2f..%2fpackage.json']) expect((await get(escape)).status).toBe(404);
  });
});

test('no tensors are left behind by loading over HTTP', async () => {
  const before = tf.memory().numTensors;
  const model = await VideoLlavaForConditionalGeneration.fromPretrained(await httpModelFiles(`${server.url}model/`));
  model.dispose();
  expect(tf.memory().numTensors).toBe(before);
});
