/**
 * resolveModel against the local Hub of server.ts: downloads into a Python-layout cache, cache hits
 * without requests, pinned revisions, resume, verification, locking, offline mode and the Hub's
 * error answers. Every test gets its own cache folder.
 */
import { createHash } from 'crypto';
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { SafetensorsError } from '../../src/errors';
import { DownloadProgress, HubError, PROCESSOR_FILES, resolveModel, ResolveOptions } from '../../src/hub';
import { fixtureRepos, GATED, HubServer, SHARDED, startHubServer, TESTER, testerFiles, VALID_TOKEN, FixtureRepo } from './server';

const ENV_KEYS = ['HF_HOME', 'HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_ENDPOINT', 'HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_TOKEN_PATH', 'HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE'];
const savedEnv: Record<string, string | undefined> = {};

const NEEDED = ['config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json'];

const ESCAPE = 'tiny-org/escaping-index';
const MISSING_SHARD = 'tiny-org/missing-shard';
const BIN_ONLY = 'tiny-org/bin-only';

let server: HubServer;
let tmp: string;
let cacheDir: string;

function extraRepos(): FixtureRepo[] {
  const config = testerFiles()['config.json'];
  const index = (shard: string) => Buffer.from(JSON.stringify({ metadata: {}, weight_map: { 'lm_head.weight': shard } }));
  return [
    { id: ESCAPE, commits: [{ files: { 'config.json': config, 'model.safetensors.index.json': index('../x') } }], refs: { main: 0 } },
    { id: MISSING_SHARD, commits: [{ files: { 'config.json': config, 'model.safetensors.index.json': index('model-00001-of-00001.safetensors') } }], refs: { main: 0 } },
    { id: BIN_ONLY, commits: [{ files: { 'config.json': config, 'pytorch_model.bin': Buffer.from('not really torch') } }], refs: { main: 0 } },
  ];
}

beforeAll(async () => {
  for (const k of ENV_KEYS) savedEnv[k] = process.env[k];
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'hub-test-'));
  server = await startHubServer([...fixtureRepos(), ...extraRepos()]);
});
afterAll(async () => {
  await server.close();
  await fsp.rm(tmp, { recursive: true, force: true });
});
beforeEach(async () => {
  // Nothing from the developer's environment (a real token, HF_HUB_OFFLINE, ...) leaks into a test.
  for (const k of ENV_KEYS) delete process.env[k];
  process.env.HF_HOME = path.join(tmp, 'no-home');
  cacheDir = await fsp.mkdtemp(path.join(tmp, 'cache-'));
  server.requests.length = 0;
  server.faults.dropAfter.clear();
  server.faults.corrupt.clear();
  server.faults.throttle = undefined;
});
afterEach(() => {
  jest.restoreAllMocks();
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
});

const opts = (extra: ResolveOptions = {}): ResolveOptions => ({ cacheDir, endpoint: server.endpoint, ...extra });
const storage = (repo: string) => path.join(cacheDir, `models--${repo.replace('/', '--')}`);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const cdnGets = () => server.requests.filter((r) => r.server === 'cdn');

async function hubError(p: Promise<unknown>): Promise<HubError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HubError);
  return err as HubError;
}

/** Every file under `dir`, relative, with symlinks listed as links. */
async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)).map((x) => `${e.name}/${x}`));
    else out.push(e.name);
  }
  return out.sort();
}

/**
 * resolveModel in a separate Node process (the sources are transpiled on the fly with the TypeScript
 * compiler already installed), so that locking is exercised between processes.
 */
function resolveInChild(repo: string, cache: string, onWait: (lock: string) => void): Promise<{ code: number | null; out: string }> {
  const script = `
    const ts = require('typescript');
    require.extensions['.ts'] = (m, file) => m._compile(ts.transpileModule(require('fs').readFileSync(file, 'utf8'), {
      fileName: file, compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    }).outputText, file);
    const [repo, cacheDir, endpoint] = process.argv.slice(1);
    require(${JSON.stringify(path.join(__dirname, '..', '..', 'src', 'hub', 'index.ts'))})
      .resolveModel(repo, { cacheDir, endpoint, lock: { onWait: (f) => process.stderr.write('waiting ' + f + '\\n') } })
      .then((dir) => process.stdout.write(dir), (e) => { process.stderr.write(String(e && e.stack)); process.exit(1); });`;
  const child = spawn(process.execPath, ['-e', script, repo, cache, server.endpoint], {
    cwd: path.join(__dirname, '..', '..'),
    env: { PATH: process.env.PATH, HF_HOME: path.join(tmp, 'no-home') },
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  let seen = 0;
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    const lines = err.split('\n');
    for (; seen < lines.length - 1; seen++) if (lines[seen].startsWith('waiting ')) onWait(lines[seen].slice(8));
  });
  return new Promise((resolve) =>
    child.on('close', (code) => resolve({ code, out: code === 0 ? out : `${out}\n${err}` })),
  );
}

describe('download into the cache', () => {
  test('a fresh download writes the huggingface_hub layout and only the files the model needs', async () => {
    const events: DownloadProgress[] = [];
    const dir = await resolveModel(TESTER, opts({ token: VALID_TOKEN, onProgress: (p) => events.push(p) }));
    const commit = server.commit(TESTER, 'main');
    expect(dir).toBe(path.join(storage(TESTER), 'snapshots', commit));
    expect(await walk(dir)).toEqual(NEEDED);

    const files = testerFiles();
    for (const f of NEEDED) {
      const pointer = path.join(dir, f);
      const meta = server.file(TESTER, 'main', f);
      const etag = meta.lfs ? meta.sha256 : meta.oid;
      expect(await fsp.readlink(pointer)).toBe(path.join('..', '..', 'blobs', etag));
      expect((await fsp.readFile(pointer)).equals(files[f])).toBe(true);
    }
    expect(await fsp.readFile(path.join(storage(TESTER), 'refs', 'main'), 'utf8')).toBe(commit);
    const tree = JSON.parse(await fsp.readFile(path.join(storage(TESTER), 'trees', `${commit}.json`), 'utf8'));
    expect(tree.format_version).toBe(1);
    expect(Object.keys(tree.files)).toEqual(Object.keys(files).sort());
    expect(tree.files['model.safetensors'].lfs_sha256).toBe(sha256(files['model.safetensors']));
    expect(fs.existsSync(path.join(cacheDir, 'CACHEDIR.TAG'))).toBe(true);
    // Nothing half-done is left behind, and locks are released.
    expect((await walk(storage(TESTER))).filter((f) => f.endsWith('.incomplete'))).toEqual([]);
    expect(await walk(path.join(cacheDir, '.locks'))).toEqual([]);

    // One model-info call, one listing, one resolve per file, one CDN fetch for the LFS file.
    const hub = server.requests.filter((r) => r.server === 'hub');
    expect(hub.filter((r) => r.url.includes('/revision/main'))).toHaveLength(1);
    expect(hub.filter((r) => r.url.includes('/tree/'))).toHaveLength(1);
    expect(hub.filter((r) => r.url.includes('/resolve/')).map((r) => r.url.split('/').pop()).sort()).toEqual(NEEDED);
    expect(cdnGets()).toHaveLength(1);
    // The token goes to the Hub, never to the CDN.
    expect(hub.every((r) => r.authorization === `Bearer ${VALID_TOKEN}`)).toBe(true);
    expect(cdnGets()[0].authorization).toBeUndefined();

    // Progress: per-file byte counts end at the file size, the last event covers everything.
    const total = NEEDED.reduce((n, f) => n + files[f].length, 0);
    const last = events[events.length - 1];
    expect(last.total).toBe(total);
    expect(last.bytes).toBe(total);
    expect(last.bytesPerSecond).toBeGreaterThan(0);
    for (const f of NEEDED) {
      const mine = events.filter((e) => e.file === f);
      expect(mine[mine.length - 1].fileBytes).toBe(files[f].length);
      expect(mine.every((e, i) => i === 0 || e.fileBytes >= mine[i - 1].fileBytes)).toBe(true);
    }
  });

  test('a complete cached snapshot is returned without any request', async () => {
    const first = await resolveModel(TESTER, opts());
    server.requests.length = 0;
    expect(await resolveModel(TESTER, opts())).toBe(first);
    expect(await resolveModel(TESTER, opts({ revision: server.commit(TESTER, 'main') }))).toBe(first);
    expect(server.requests).toEqual([]);
  });

  test('HF_HUB_CACHE and HF_ENDPOINT are used when no option is given', async () => {
    process.env.HF_HUB_CACHE = cacheDir;
    process.env.HF_ENDPOINT = `${server.endpoint}/`;
    const dir = await resolveModel(TESTER);
    expect(dir.startsWith(storage(TESTER))).toBe(true);
    expect(server.requests.length).toBeGreaterThan(0);
  });

  test('a pinned revision gets its own snapshot and reuses the blobs it shares', async () => {
    const main = await resolveModel(TESTER, opts());
    server.requests.length = 0;
    const events: DownloadProgress[] = [];
    const v1 = await resolveModel(TESTER, opts({ revision: 'v1', onProgress: (p) => events.push(p) }));
    expect(events[events.length - 1].bytes).toBe(events[events.length - 1].total); // reused blobs count as done
    expect(v1).toBe(path.join(storage(TESTER), 'snapshots', server.commit(TESTER, 'v1')));
    expect(v1).not.toBe(main);
    expect(await walk(v1)).toEqual(['config.json', 'generation_config.json', 'model.safetensors']);
    expect(JSON.parse(await fsp.readFile(path.join(v1, 'generation_config.json'), 'utf8')).max_length).toBe(64);
    expect(await fsp.readFile(path.join(storage(TESTER), 'refs', 'v1'), 'utf8')).toBe(server.commit(TESTER, 'v1'));
    expect(cdnGets()).toEqual([]); // model.safetensors is the same blob as on main
    expect(await fsp.realpath(path.join(v1, 'model.safetensors'))).toBe(await fsp.realpath(path.join(main, 'model.safetensors')));
  });

  test('a commit hash revision skips the revision lookup', async () => {
    const commit = server.commit(TESTER, 'v1');
    await resolveModel(TESTER, opts({ revision: commit }));
    expect(server.requests.some((r) => r.url.includes('/revision/'))).toBe(false);
    expect(fs.existsSync(path.join(storage(TESTER), 'refs', commit))).toBe(false);
  });

  test('a sharded checkpoint brings its index and every shard', async () => {
    const dir = await resolveModel(SHARDED, opts());
    expect(await walk(dir)).toEqual(['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']);
  });

  test('allowPatterns replaces the default choice of files (fnmatch, as snapshot_download)', async () => {
    const dir = await resolveModel(TESTER, opts({ allowPatterns: ['*.json'] }));
    expect(await walk(dir)).toEqual(['config.json', 'generation_config.json', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']);
    server.requests.length = 0;
    expect(await resolveModel(TESTER, opts({ allowPatterns: ['*.json'] }))).toBe(dir);
    expect(server.requests).toEqual([]);
  });

  test('a processor can be resolved without the weights, which come later with the model', async () => {
    const dir = await resolveModel(TESTER, opts({ allowPatterns: [...PROCESSOR_FILES] }));
    expect(await walk(dir)).toEqual(['special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']);
    expect(cdnGets()).toEqual([]);
    server.requests.length = 0;
    expect(await resolveModel(TESTER, opts())).toBe(dir);
    const fetched = server.requests.filter((r) => r.url.includes('/resolve/')).map((r) => r.url.split('/').pop());
    expect(fetched.sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors']);
  });
});

describe('resume, verification, locking', () => {
  const weights = () => testerFiles()['model.safetensors'];

  test('a connection dropped mid-file is resumed with a Range request', async () => {
    const sha = sha256(weights());
    server.faults.dropAfter.set(sha, 100_000);
    const dir = await resolveModel(TESTER, opts());
    expect((await fsp.readFile(path.join(dir, 'model.safetensors'))).equals(weights())).toBe(true);
    const gets = cdnGets();
    expect(gets).toHaveLength(2);
    expect(gets[0].range).toBeUndefined();
    const from = Number(/^bytes=(\d+)-$/.exec(gets[1].range ?? '')?.[1]);
    expect(from).toBeGreaterThan(0);
    expect(from).toBeLessThanOrEqual(100_000);
  });

  test('a partial file left by an interrupted run is resumed, not restarted', async () => {
    const sha = sha256(weights());
    await fsp.mkdir(path.join(storage(TESTER), 'blobs'), { recursive: true });
    await fsp.writeFile(path.join(storage(TESTER), 'blobs', `${sha}.incomplete`), weights().subarray(0, 50_000));
    const dir = await resolveModel(TESTER, opts());
    expect((await fsp.readFile(path.join(dir, 'model.safetensors'))).equals(weights())).toBe(true);
    expect(cdnGets().map((r) => r.range)).toEqual(['bytes=50000-']);
  });

  test('a corrupted body fails the sha256 check and nothing is published', async () => {
    const sha = sha256(weights());
    server.faults.corrupt.add(sha);
    const err = await hubError(resolveModel(TESTER, opts()));
    expect(err.code).toBe('integrity');
    expect(err.file).toBe('model.safetensors');
    expect(err.message).toContain(sha);
    const blobs = await walk(path.join(storage(TESTER), 'blobs'));
    expect(blobs.filter((b) => b.startsWith(sha))).toEqual([]); // neither the blob nor its .incomplete
    const snapshot = path.join(storage(TESTER), 'snapshots', server.commit(TESTER, 'main'));
    expect(fs.existsSync(path.join(snapshot, 'model.safetensors'))).toBe(false);

    server.faults.corrupt.clear();
    const dir = await resolveModel(TESTER, opts());
    expect((await fsp.readFile(path.join(dir, 'model.safetensors'))).equals(weights())).toBe(true);
  });

  test('two concurrent downloads of one model both succeed and fetch the blob once', async () => {
    server.faults.throttle = { chunk: 32 * 1024, delayMs: 15 };
    const [a, b] = await Promise.all([resolveModel(TESTER, opts()), resolveModel(TESTER, opts())]);
    expect(a).toBe(b);
    expect(cdnGets()).toHaveLength(1);
    expect((await fsp.readFile(path.join(a, 'model.safetensors'))).equals(weights())).toBe(true);
    expect((await walk(path.join(storage(TESTER), 'blobs'))).filter((f) => !/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(f))).toEqual([]);
  });

  test('two processes downloading one model into one cache fetch the blob once', async () => {
    // The CDN holds the weights back until one process reports waiting on the other's lock for them.
    const sha = sha256(weights());
    let release = () => {};
    server.faults.hold = new Promise<void>((resolve) => (release = resolve));
    const fallback = setTimeout(() => release(), 20_000);
    const waits: string[] = [];
    const onWait = (lock: string) => {
      waits.push(lock);
      if (lock.endsWith(`${sha}.lock`)) release();
    };
    const [a, b] = await Promise.all([resolveInChild(TESTER, cacheDir, onWait), resolveInChild(TESTER, cacheDir, onWait)]);
    clearTimeout(fallback);
    server.faults.hold = undefined;
    const snapshot = path.join(storage(TESTER), 'snapshots', server.commit(TESTER, 'main'));
    expect([a, b]).toEqual([{ code: 0, out: snapshot }, { code: 0, out: snapshot }]);
    expect(waits.filter((w) => w.endsWith(`${sha}.lock`))).toHaveLength(1);
    expect(cdnGets().filter((r) => r.url.includes(sha))).toHaveLength(1);
    expect((await fsp.readFile(path.join(snapshot, 'model.safetensors'))).equals(weights())).toBe(true);
  });

  test('a lock left by a dead process, or an old foreign lock file, is taken over', async () => {
    const sha = sha256(weights());
    const locks = path.join(cacheDir, '.locks', `models--${TESTER.replace('/', '--')}`);
    await fsp.mkdir(locks, { recursive: true });
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    const record = { owner: 'video-llava', pid: Number(dead), host: os.hostname(), token: 'x' };
    await fsp.writeFile(path.join(locks, `${sha}.lock`), JSON.stringify(record));
    // An empty lock file, as Python's filelock leaves behind, for a JSON blob.
    const configOid = server.file(TESTER, 'main', 'config.json').oid;
    await fsp.writeFile(path.join(locks, `${configOid}.lock`), '');
    const old = new Date(Date.now() - 60_000);
    await fsp.utimes(path.join(locks, `${configOid}.lock`), old, old);
    const dir = await resolveModel(TESTER, opts());
    expect(await walk(dir)).toEqual(NEEDED);
  });

  test('a write failure (disk full) raises a disk error and leaves no half-written blob', async () => {
    const handle = await fsp.open(path.join(tmp, 'probe'), 'w');
    const proto = Object.getPrototypeOf(handle) as { write: (...args: unknown[]) => Promise<unknown> };
    await handle.close();
    const realWrite = proto.write;
    jest.spyOn(proto, 'write').mockImplementation(function (this: unknown, ...args: unknown[]) {
      const bytes = args[0] as Uint8Array;
      if (bytes.length > 0 && (args[3] as number) >= 64 * 1024) {
        return Promise.reject(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }));
      }
      return realWrite.apply(this, args);
    });
    const err = await hubError(resolveModel(TESTER, opts()));
    expect(err.code).toBe('disk');
    expect(err.file).toBe('model.safetensors');
    expect(err.message).toContain('disk is full');
    const sha = sha256(weights());
    expect((await walk(path.join(storage(TESTER), 'blobs'))).filter((b) => b.startsWith(sha))).toEqual([]);
    const snapshot = path.join(storage(TESTER), 'snapshots', server.commit(TESTER, 'main'));
    expect(fs.existsSync(path.join(snapshot, 'model.safetensors'))).toBe(false);
    expect(await walk(path.join(cacheDir, '.locks'))).toEqual([]);
  });

  test('where symlinks are impossible the snapshot holds the files themselves', async () => {
    jest.spyOn(fsp, 'symlink').mockRejectedValue(Object.assign(new Error('EPERM: operation not permitted, symlink'), { code: 'EPERM' }));
    const dir = await resolveModel(TESTER, opts());
    const files = testerFiles();
    for (const f of NEEDED) {
      expect((await fsp.lstat(path.join(dir, f))).isSymbolicLink()).toBe(false);
      expect((await fsp.readFile(path.join(dir, f))).equals(files[f])).toBe(true);
    }
    server.requests.length = 0;
    expect(await resolveModel(TESTER, opts())).toBe(dir);
    expect(server.requests).toEqual([]);
  });
});

describe('offline and errors', () => {
  test('HF_HUB_OFFLINE=1 with an empty cache says what is missing and sends nothing', async () => {
    process.env.HF_HUB_OFFLINE = '1';
    const err = await hubError(resolveModel(TESTER, opts()));
    expect(err.code).toBe('offline');
    expect(err.message).toContain('HF_HUB_OFFLINE');
    expect(err.message).toContain('any snapshot for revision "main"');
    expect(server.requests).toEqual([]);
  });

  test('offline with a cached snapshot returns it; with a file missing, names the file', async () => {
    const dir = await resolveModel(TESTER, opts());
    server.requests.length = 0;
    expect(await resolveModel(TESTER, opts({ offline: true }))).toBe(dir);
    await fsp.rm(path.join(dir, 'model.safetensors'));
    const err = await hubError(resolveModel(TESTER, opts({ offline: true })));
    expect(err.code).toBe('offline');
    expect(err.message).toContain('lacks: model.safetensors');
    expect(server.requests).toEqual([]);
  });

  test('a gated repository needs a token; HF_TOKEN is read', async () => {
    const none = await hubError(resolveModel(GATED, opts()));
    expect([none.code, none.status]).toEqual(['gated', 401]);
    expect(['config.json', 'model.safetensors']).toContain(none.file);
    expect(none.message).toContain('HF_TOKEN');
    const wrong = await hubError(resolveModel(GATED, opts({ token: 'hf_wrong' })));
    expect([wrong.code, wrong.status]).toEqual(['gated', 403]);
    process.env.HF_TOKEN = VALID_TOKEN;
    const dir = await resolveModel(GATED, opts());
    expect(await walk(dir)).toEqual(['config.json', 'model.safetensors']);
  });

  test('an unknown revision, repository or file is a typed error', async () => {
    const rev = await hubError(resolveModel(TESTER, opts({ revision: 'no-such-branch' })));
    expect([rev.code, rev.status, rev.revision]).toEqual(['revision-not-found', 404, 'no-such-branch']);
    const repo = await hubError(resolveModel('tiny-org/does-not-exist', opts()));
    expect([repo.code, repo.status]).toEqual(['repo-not-found', 401]);
    expect(repo.message).toContain('no local directory');
    const file = await hubError(resolveModel(TESTER, opts({ allowPatterns: ['adapter_config.json'] })));
    expect(file.code).toBe('entry-not-found');
    const shard = await hubError(resolveModel(MISSING_SHARD, opts()));
    expect([shard.code, shard.file]).toEqual(['entry-not-found', 'model-00001-of-00001.safetensors']);
    const bin = await hubError(resolveModel(BIN_ONLY, opts()));
    expect(bin.code).toBe('entry-not-found');
    expect(bin.message).toContain('pytorch_model.bin');
  });

  test('an index naming a shard outside the snapshot is rejected before any request for it', async () => {
    const err = await resolveModel(ESCAPE, opts()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as Error).message).toContain('"../x"');
    expect(server.requests.some((r) => r.url.includes('/x'))).toBe(false);
    expect(fs.existsSync(path.join(storage(ESCAPE), 'snapshots', 'x'))).toBe(false);
  });

  test('an unreachable Hub is a network error, unless the cache already has the model', async () => {
    const closed = await startHubServer([]);
    const endpoint = closed.endpoint;
    await closed.close();
    const err = await hubError(resolveModel(TESTER, opts({ endpoint })));
    expect(err.code).toBe('network');
    expect(err.message).toContain('lacks');
    // A snapshot with every required file is used when the Hub cannot be asked about the optional ones.
    const dir = await resolveModel(TESTER, opts());
    await fsp.rm(path.join(storage(TESTER), 'trees'), { recursive: true });
    expect(await resolveModel(TESTER, opts({ endpoint }))).toBe(dir);
  });

  test('a directory is returned as is; a missing path or a malformed id is an invalid-id error', async () => {
    const local = path.join(__dirname, '..', 'fixtures', 'models', 'tester');
    expect(await resolveModel(local, opts())).toBe(path.resolve(local));
    for (const bad of ['./no/such/dir', '/no/such/dir', 'a--b/c', 'org/na..me', 'one/two/three']) {
      expect((await hubError(resolveModel(bad, opts()))).code).toBe('invalid-id');
    }
    expect((await hubError(resolveModel(path.join(local, 'config.json'), opts()))).code).toBe('invalid-id');
    expect(server.requests).toEqual([]);
  });
});
