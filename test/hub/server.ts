/**
 * A local stand-in for the Hugging Face Hub, on 127.0.0.1 (two ephemeral ports: the Hub and its CDN),
 * serving fixture repositories with the URLs, status codes and headers huggingface_hub
 * (file_download.py, hf_api.py, utils/_http.py) and @huggingface/hub read:
 *
 *   GET  /api/models/{repo}[/revision/{rev}]         model info: {id, sha, siblings, gated, ...}
 *   GET  /api/models/{repo}/tree/{rev}[?recursive=]  listing: {type, path, size, oid, lfs{oid,size,pointerSize}}
 *   HEAD|GET /{repo}/resolve/{rev}/{file}
 *        regular file: 200, ETag "<git blob sha1>", X-Repo-Commit, Content-Length, Accept-Ranges, Range -> 206
 *        LFS file:     302 to the CDN, X-Linked-Etag "<sha256>", X-Linked-Size, X-Repo-Commit
 *   HEAD|GET {cdn}/repos/{id}/{sha256}                the bytes, ETag "<sha256>", Range -> 206 / 416
 *
 * Errors as the Hub sends them: unknown repo 401 (404 with a token) X-Error-Code RepoNotFound; a file
 * of a gated repo 401 (403 with a wrong token) GatedRepo (its metadata stays public); unknown revision 404 RevisionNotFound; unknown file 404
 * EntryNotFound with X-Repo-Commit. Every request is logged; faults (dropped connections, corrupted or
 * slow bodies) are injected per blob.
 *
 * Also a CLI, for reference/hub_interop.py: `node server.js` prints {"endpoint", "cdn", "repos"} as
 * one JSON line and serves the fixture repositories until stdin closes.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import { AddressInfo } from 'net';
import * as path from 'path';

export const VALID_TOKEN = 'hf_local_test_token';

export interface FixtureCommit {
  /** repo path -> content */
  files: Record<string, Buffer>;
}

export interface FixtureRepo {
  id: string;
  commits: FixtureCommit[];
  /** branch or tag -> index into commits */
  refs: Record<string, number>;
  gated?: boolean;
}

export interface LoggedRequest {
  server: 'hub' | 'cdn';
  method: string;
  url: string;
  range?: string;
  authorization?: string;
}

export interface Faults {
  /** sha256 -> cut the connection after this many body bytes (once, then the entry is removed). */
  dropAfter: Map<string, number>;
  /** sha256s whose bodies are served with one byte flipped. */
  corrupt: Set<string>;
  /** Serve CDN bodies in chunks of `chunk` bytes, `delayMs` apart. */
  throttle?: { chunk: number; delayMs: number };
  /** CDN bodies start only once this settles. */
  hold?: Promise<void>;
}

export interface HubServer {
  endpoint: string;
  cdn: string;
  requests: LoggedRequest[];
  faults: Faults;
  /** The commit hash a ref (or commit index) of a repo stands for. */
  commit(repo: string, ref: string | number): string;
  /** git blob sha1 / sha256 of a file at a ref. */
  file(repo: string, ref: string, file: string): { oid: string; sha256: string; size: number; lfs: boolean };
  close(): Promise<void>;
}

const sha1 = (b: Buffer | string) => createHash('sha1').update(b).digest('hex');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const gitOid = (b: Buffer) => sha1(Buffer.concat([Buffer.from(`blob ${b.length}\0`), b]));

/** Which files the fixture repos keep in LFS (the Hub's default .gitattributes covers these). */
const isLfs = (file: string) => /\.(safetensors|bin|model|pt)$/.test(file);

interface ServedFile {
  content: Buffer;
  oid: string;
  sha256: string;
  lfs: boolean;
  pointer: Buffer;
}

interface ServedCommit {
  hash: string;
  files: Map<string, ServedFile>;
}

interface ServedRepo {
  repo: FixtureRepo;
  commits: ServedCommit[];
}

function serveFile(content: Buffer, file: string): ServedFile {
  const sha = sha256(content);
  const lfs = isLfs(file);
  const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha}\nsize ${content.length}\n`);
  return { content, sha256: sha, lfs, pointer, oid: gitOid(lfs ? pointer : content) };
}

/** Deterministic commit hashes: sha1 of the repo id, the commit's position and its file ids. */
function serveRepo(repo: FixtureRepo): ServedRepo {
  const commits = repo.commits.map((c, i) => {
    const files = new Map(Object.entries(c.files).map(([p, b]) => [p, serveFile(b, p)] as const));
    const lines = [...files.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([p, f]) => `${f.oid} ${p}`);
    return { hash: sha1(`${repo.id}\n${i}\n${lines.join('\n')}`), files };
  });
  return { repo, commits };
}

const LAST_MODIFIED = '2024-05-01T12:00:00.000Z';

export async function startHubServer(repos: FixtureRepo[]): Promise<HubServer> {
  const served = new Map(repos.map((r) => [r.id, serveRepo(r)]));
  const blobs = new Map<string, ServedFile>();
  for (const r of served.values()) for (const c of r.commits) for (const f of c.files.values()) blobs.set(f.sha256, f);
  const requests: LoggedRequest[] = [];
  const faults: Faults = { dropAfter: new Map(), corrupt: new Set() };

  const log = (server: 'hub' | 'cdn', req: http.IncomingMessage) =>
    requests.push({
      server,
      method: req.method ?? '',
      url: req.url ?? '',
      range: req.headers.range,
      authorization: req.headers.authorization,
    });

  const hub = http.createServer((req, res) => {
    log('hub', req);
    handleHub(req, res).catch((err: unknown) => {
      res.statusCode = 500;
      res.end(String(err));
    });
  });
  const cdn = http.createServer((req, res) => {
    log('cdn', req);
    handleCdn(req, res);
  });
  await Promise.all([listen(hub), listen(cdn)]);
  const endpoint = `http://127.0.0.1:${(hub.address() as AddressInfo).port}`;
  const cdnUrl = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;

  function error(res: http.ServerResponse, status: number, code: string | undefined, message: string, commit?: string) {
    res.statusCode = status;
    if (code !== undefined) res.setHeader('X-Error-Code', code);
    res.setHeader('X-Error-Message', message);
    if (commit !== undefined) res.setHeader('X-Repo-Commit', commit);
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.end(JSON.stringify({ error: message }));
  }

  /**
   * The repo, if the request may see it; otherwise answers as the Hub does and returns undefined. As on
   * the Hub, a gated repo's metadata (model info, listing) is public and only its files need access.
   */
  function access(req: http.IncomingMessage, res: http.ServerResponse, id: string, files: boolean): ServedRepo | undefined {
    const r = served.get(id);
    const auth = req.headers.authorization;
    if (r === undefined) {
      error(res, auth ? 404 : 401, 'RepoNotFound', 'Repository not found');
      return undefined;
    }
    if (files && r.repo.gated && auth !== `Bearer ${VALID_TOKEN}`) {
      if (auth) {
        error(res, 403, 'GatedRepo', `Access to model ${id} is restricted and you are not in the authorized list. Visit ${endpoint}/${id} to ask for access.`);
      } else {
        error(res, 401, 'GatedRepo', `Access to model ${id} is restricted. You must have access to it and be authenticated to access it. Please log in.`);
      }
      return undefined;
    }
    return r;
  }

  function revision(res: http.ServerResponse, r: ServedRepo, rev: string): ServedCommit | undefined {
    const byRef = r.repo.refs[rev];
    const c = byRef !== undefined ? r.commits[byRef] : r.commits.find((x) => x.hash === rev);
    if (c === undefined) error(res, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
    return c;
  }

  async function handleHub(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', endpoint);
    const parts = url.pathname.split('/').slice(1).map(decodeURIComponent);
    if (parts[0] === 'api' && parts[1] === 'models') return handleApi(req, res, parts.slice(2), url);
    const at = parts.indexOf('resolve');
    if (at < 1 || at > 2 || parts.length < at + 3) return error(res, 404, undefined, 'Not found');
    const r = access(req, res, parts.slice(0, at).join('/'), true);
    if (r === undefined) return;
    const c = revision(res, r, parts[at + 1]);
    if (c === undefined) return;
    const file = parts.slice(at + 2).join('/');
    const f = c.files.get(file);
    if (f === undefined) return error(res, 404, 'EntryNotFound', 'Entry not found', c.hash);
    res.setHeader('X-Repo-Commit', c.hash);
    if (f.lfs) {
      res.statusCode = 302;
      res.setHeader('Location', `${cdnUrl}/repos/${sha1(r.repo.id).slice(0, 12)}/${f.sha256}?response-content-disposition=attachment&Expires=1999999999&Signature=local`);
      res.setHeader('X-Linked-Etag', `"${f.sha256}"`);
      res.setHeader('X-Linked-Size', String(f.content.length));
      res.end();
      return;
    }
    res.setHeader('ETag', `"${f.oid}"`);
    res.setHeader('Content-Type', file.endsWith('.json') ? 'application/json; charset=utf-8' : 'text/plain; charset=utf-8');
    sendBytes(req, res, f.content, f.sha256, false);
  }

  function handleApi(req: http.IncomingMessage, res: http.ServerResponse, parts: string[], url: URL): void {
    // {repo}[/revision/{rev}] or {repo}/tree/{rev}[/{path}]; repo ids have one or two segments.
    const kw = parts.findIndex((p, i) => i >= 1 && i <= 2 && (p === 'revision' || p === 'tree'));
    const id = (kw === -1 ? parts : parts.slice(0, kw)).join('/');
    const r = access(req, res, id, false);
    if (r === undefined) return;
    const c = revision(res, r, kw === -1 ? 'main' : (parts[kw + 1] ?? ''));
    if (c === undefined) return;
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    if (kw === -1 || parts[kw] === 'revision') {
      res.end(
        JSON.stringify({
          _id: sha1(id).slice(0, 24),
          id,
          modelId: id,
          author: id.split('/')[0],
          sha: c.hash,
          lastModified: LAST_MODIFIED,
          createdAt: LAST_MODIFIED,
          private: false,
          gated: r.repo.gated ? 'auto' : false,
          disabled: false,
          downloads: 0,
          likes: 0,
          tags: ['transformers', 'safetensors', 'video_llava'],
          pipeline_tag: 'image-text-to-text',
          library_name: 'transformers',
          siblings: [...c.files.keys()].sort().map((rfilename) => ({ rfilename })),
        }),
      );
      return;
    }
    const prefix = parts.slice(kw + 2).join('/');
    const recursive = ['true', 'True', '1'].includes(url.searchParams.get('recursive') ?? '');
    const entries: unknown[] = [];
    const dirs = new Set<string>();
    for (const p of [...c.files.keys()].sort()) {
      if (prefix !== '' && !p.startsWith(`${prefix}/`)) continue;
      const rest = prefix === '' ? p : p.slice(prefix.length + 1);
      const segs = rest.split('/');
      for (let i = 1; i < segs.length; i++) {
        const dir = [prefix, ...segs.slice(0, i)].filter((s) => s !== '').join('/');
        if (!dirs.has(dir) && (recursive || i === 1)) entries.push({ type: 'directory', oid: sha1(`tree ${dir}`), size: 0, path: dir });
        dirs.add(dir);
      }
      if (!recursive && segs.length > 1) continue;
      const f = c.files.get(p) as ServedFile;
      entries.push({
        type: 'file',
        oid: f.oid,
        size: f.content.length,
        path: p,
        ...(f.lfs ? { lfs: { oid: f.sha256, size: f.content.length, pointerSize: f.pointer.length } } : {}),
      });
    }
    res.end(JSON.stringify(entries));
  }

  function handleCdn(req: http.IncomingMessage, res: http.ServerResponse): void {
    const parts = new URL(req.url ?? '/', cdnUrl).pathname.split('/');
    const f = parts[1] === 'repos' ? blobs.get(parts[3] ?? '') : undefined;
    if (f === undefined) {
      res.statusCode = 404;
      res.end('NoSuchKey');
      return;
    }
    res.setHeader('ETag', `"${f.sha256}"`);
    res.setHeader('Content-Type', 'application/octet-stream');
    res.setHeader('Content-Disposition', `attachment; filename*=UTF-8''blob; filename="blob";`);
    sendBytes(req, res, f.content, f.sha256, true);
  }

  /** 200 or 206 (Range: bytes=a- / a-b), 416 when unsatisfiable; faults apply to CDN bodies. */
  function sendBytes(req: http.IncomingMessage, res: http.ServerResponse, content: Buffer, sha: string, cdnBody: boolean): void {
    res.setHeader('Accept-Ranges', 'bytes');
    let start = 0;
    let end = content.length - 1;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (req.headers.range !== undefined && range !== null) {
      start = Number(range[1]);
      end = range[2] === '' ? content.length - 1 : Math.min(Number(range[2]), content.length - 1);
      if (start >= content.length || start > end) {
        res.statusCode = 416;
        res.setHeader('Content-Range', `bytes */${content.length}`);
        res.end();
        return;
      }
      res.statusCode = 206;
      res.setHeader('Content-Range', `bytes ${start}-${end}/${content.length}`);
    }
    res.setHeader('Content-Length', String(end - start + 1));
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    let body = content.subarray(start, end + 1);
    if (cdnBody && faults.corrupt.has(sha)) {
      const bad = Buffer.from(content);
      bad[Math.floor(bad.length / 2)] ^= 0xff;
      body = bad.subarray(start, end + 1);
    }
    const drop = cdnBody ? faults.dropAfter.get(sha) : undefined;
    if (drop !== undefined) faults.dropAfter.delete(sha);
    const throttle = cdnBody ? faults.throttle : undefined;
    void stream(res, body, drop, throttle, cdnBody ? faults.hold : undefined);
  }

  async function stream(
    res: http.ServerResponse,
    body: Buffer,
    drop: number | undefined,
    throttle: Faults['throttle'],
    hold: Promise<void> | undefined,
  ): Promise<void> {
    await hold;
    const limit = drop ?? body.length;
    const chunk = throttle?.chunk ?? 64 * 1024;
    for (let at = 0; at < limit; at += chunk) {
      const piece = body.subarray(at, Math.min(at + chunk, limit));
      if (!res.write(piece)) await new Promise((resolve) => res.once('drain', resolve));
      if (throttle !== undefined) await new Promise((resolve) => setTimeout(resolve, throttle.delayMs));
      if (res.destroyed) return;
    }
    if (drop !== undefined) {
      // Let the bytes leave, then cut the connection mid-body.
      await new Promise((resolve) => setTimeout(resolve, 20));
      res.socket?.destroy();
      return;
    }
    res.end();
  }

  return {
    endpoint,
    cdn: cdnUrl,
    requests,
    faults,
    commit(repo, ref) {
      const r = served.get(repo) as ServedRepo;
      return r.commits[typeof ref === 'number' ? ref : r.repo.refs[ref]].hash;
    },
    file(repo, ref, file) {
      const r = served.get(repo) as ServedRepo;
      const f = r.commits[r.repo.refs[ref]].files.get(file) as ServedFile;
      return { oid: f.oid, sha256: f.sha256, size: f.content.length, lfs: f.lfs };
    },
    async close() {
      for (const s of [hub, cdn]) s.closeAllConnections();
      await Promise.all([hub, cdn].map((s) => new Promise((resolve) => s.close(resolve))));
    },
  };
}

function listen(server: http.Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
}

// ---------------------------------------------------------------------------------------------------
// Fixture repositories, built from files already in test/fixtures.

const FIXTURES = path.join(__dirname, '..', 'fixtures');
const read = (...p: string[]) => fs.readFileSync(path.join(FIXTURES, ...p));

export const TESTER = 'tiny-org/video-llava-tester';
export const SHARDED = 'tiny-org/sharded-tester';
export const GATED = 'tiny-org/gated-tester';

/** The files of a tiny Video-LLaVA repo: the tester model, a Video-LLaVA-style tokenizer, a README. */
export function testerFiles(): Record<string, Buffer> {
  return {
    '.gitattributes': Buffer.from('*.safetensors filter=lfs diff=lfs merge=lfs -text\n'),
    'README.md': Buffer.from('---\nlibrary_name: transformers\n---\n# Tiny Video-LLaVA tester (random weights)\n'),
    'config.json': read('models', 'tester', 'config.json'),
    'generation_config.json': read('models', 'tester', 'generation_config.json'),
    'model.safetensors': read('models', 'tester', 'model.safetensors'),
    'tokenizer.json': read('tokenizer', 'videollava_style', 'tokenizer.json'),
    'tokenizer_config.json': read('tokenizer', 'videollava_style', 'tokenizer_config.json'),
    'special_tokens_map.json': read('tokenizer', 'videollava_style', 'special_tokens_map.json'),
  };
}

/** The repositories the tests and reference/hub_interop.py use. */
export function fixtureRepos(): FixtureRepo[] {
  const main = testerFiles();
  // v1: an older commit with a different generation config and no tokenizer; the weights are the same blob.
  const v1: Record<string, Buffer> = {
    'config.json': main['config.json'],
    'generation_config.json': Buffer.from(JSON.stringify({ bos_token_id: 4, eos_token_id: 5, max_length: 64 }, null, 2) + '\n'),
    'model.safetensors': main['model.safetensors'],
  };
  const sharded: Record<string, Buffer> = { 'config.json': main['config.json'] };
  for (const f of fs.readdirSync(path.join(FIXTURES, 'safetensors', 'sharded'))) sharded[f] = read('safetensors', 'sharded', f);
  return [
    { id: TESTER, commits: [{ files: v1 }, { files: main }], refs: { v1: 0, main: 1 } },
    { id: SHARDED, commits: [{ files: sharded }], refs: { main: 0 } },
    { id: GATED, commits: [{ files: { 'config.json': main['config.json'], 'model.safetensors': main['model.safetensors'] } }], refs: { main: 0 }, gated: true },
  ];
}

if (require.main === module) {
  void startHubServer(fixtureRepos()).then((server) => {
    const repos: Record<string, Record<string, string>> = {};
    for (const r of fixtureRepos()) {
      repos[r.id] = Object.fromEntries(Object.keys(r.refs).map((ref) => [ref, server.commit(r.id, ref)]));
    }
    process.stdout.write(`${JSON.stringify({ endpoint: server.endpoint, cdn: server.cdn, repos })}\n`);
    process.stdin.resume();
    process.stdin.on('end', () => void server.close().then(() => process.exit(0)));
  });
}
