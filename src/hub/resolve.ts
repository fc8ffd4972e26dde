/**
 * resolveModel: a model id or directory in, a local directory out.
 *
 *   1. an existing directory is returned as it is;
 *   2. else the Hugging Face cache (the layout Python's huggingface_hub uses, see cache.ts) is looked
 *      up: a snapshot that holds every file the model needs, with every optional file either present
 *      or known to be absent, is returned without a single request;
 *   3. else, unless offline, the revision is resolved to a commit, the repository listed, and the
 *      missing files downloaded into the cache (see download.ts); the snapshot folder is returned.
 *
 * Which files: config.json, the weights (model.safetensors, or model.safetensors.index.json and every
 * shard it names) and, when the repository has them, the generation, tokenizer, processor and chat
 * template files (MODEL_FILES). `allowPatterns` replaces that choice by fnmatch patterns, as
 * huggingface_hub's snapshot_download(allow_patterns=...) does.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { listFiles, modelInfo } from '@huggingface/hub';
import { SafetensorsError } from '../errors';
import { MODEL_FILES, SINGLE_WEIGHTS, WEIGHTS_INDEX } from '../platform/files';
import { readIndex } from '../weights/checkpoint';
import {
  COMMIT_HASH,
  entryEtag,
  entrySize,
  isFile,
  knownAbsent,
  linkPointer,
  readRef,
  readTree,
  RepoCache,
  repoCache,
  snapshotDir,
  snapshotFile,
  tagCacheDir,
  TreeEntry,
  unsafeRepoPath,
  writeRef,
  writeTree,
  blobPath,
  lockPath,
} from './cache';
import { downloadBlob } from './download';
import { errorMessage, HubError } from './errors';
import { isRepoId } from './ids';
import type { DownloadProgress, ResolveOptions } from './types';

export type { DownloadProgress, ResolveOptions } from './types';
import { apiError, Fetch, hubFetch, RequestContext } from './http';
import { HubSettings, hubSettings } from './settings';

export { MODEL_FILES, PROCESSOR_FILES, SINGLE_WEIGHTS, WEIGHTS_INDEX } from '../platform/files';

/** An index lists one line per tensor; 100 MB is far beyond any real one. */
const PARALLEL_DOWNLOADS = 4;
const PROGRESS_INTERVAL_MS = 100;

function looksLikePath(id: string): boolean {
  return /^(\.{1,2}([/\\]|$)|[/\\~])/.test(id) || id.includes('\\') || id.split('/').length > 2 || /^[A-Za-z]:/.test(id);
}

/** The directory itself when `idOrDir` is one; an error when it names a file or an impossible id. */
async function localDirectory(idOrDir: string): Promise<string | undefined> {
  const stat = await fsp.stat(idOrDir).catch(() => null);
  if (stat?.isDirectory()) return path.resolve(idOrDir);
  if (stat !== null) {
    throw new HubError('invalid-id', idOrDir, 'this is a file; expected a model directory or a Hub repo id ("org/name")');
  }
  if (looksLikePath(idOrDir) || !isRepoId(idOrDir)) {
    throw new HubError(
      'invalid-id',
      idOrDir,
      'no such directory, and not a Hub repo id ("name" or "org/name" of letters, digits, "_", "-", "."; no "--" or "..")',
    );
  }
  return undefined;
}

/** Python fnmatch.fnmatchcase: * (also across "/"), ?, [seq], [!seq]; a pattern ending in "/" matches below it. */
export function fnmatch(name: string, pattern: string): boolean {
  const p = (pattern.endsWith('/') ? `${pattern}*` : pattern).replace(/\\/g, '/');
  let re = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[' && p.indexOf(']', i + 2) !== -1) {
      const end = p.indexOf(']', i + 2);
      let set = p.slice(i + 1, end).replace(/\\/g, '\\\\');
      if (set.startsWith('!')) set = `^${set.slice(1)}`;
      else if (set.startsWith('^')) set = `\\${set}`;
      re += `[${set}]`;
      i = end;
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's').test(name);
}

/** What one place (the cache, or the Hub's listing) says about a file: there, not there, or cannot tell. */
type Presence = 'yes' | 'no' | 'unknown';

interface RepoView {
  has(file: string): Promise<Presence>;
  /** Every file, when the view knows them all. */
  files(): string[] | undefined;
  /** The weight index's shard names, reading (or first downloading) the index. */
  shards(): Promise<string[]>;
}

interface Plan {
  required: string[];
  optional: string[];
}

/** The files a model needs, as seen by `view`. `optional` files are fetched only if present. */
async function plan(view: RepoView, repo: string, revision: string, patterns: string[] | undefined): Promise<Plan> {
  if (patterns !== undefined) {
    const all = view.files();
    // Without a listing (a cache filled file by file), only literal names can be checked, and as optional.
    if (all === undefined) return { required: [], optional: patterns };
    const matched = all.filter((f) => patterns.some((p) => fnmatch(f, p)));
    if (matched.length === 0) {
      const why = `no file of the repository matches allowPatterns ${JSON.stringify(patterns)}`;
      throw new HubError('entry-not-found', repo, why, { revision });
    }
    return { required: matched, optional: [] };
  }
  const required = ['config.json'];
  if ((await view.has(SINGLE_WEIGHTS)) === 'yes') {
    required.push(SINGLE_WEIGHTS);
  } else if ((await view.has(WEIGHTS_INDEX)) === 'yes') {
    required.push(WEIGHTS_INDEX, ...(await view.shards()));
  } else if ((await view.has(SINGLE_WEIGHTS)) === 'no' && (await view.has(WEIGHTS_INDEX)) === 'no') {
    const other = (view.files() ?? []).filter((f) => /\.(bin|pt|pth|ckpt|h5|msgpack|gguf)$/.test(f));
    throw new HubError(
      'entry-not-found',
      repo,
      `no safetensors weights: neither ${SINGLE_WEIGHTS} nor ${WEIGHTS_INDEX} is in the repository` +
        (other.length > 0 ? ` (found ${other.join(', ')}; only safetensors checkpoints are supported)` : ''),
      { revision },
    );
  } else {
    required.push(SINGLE_WEIGHTS); // unknown: reported as missing
  }
  return { required, optional: MODEL_FILES.filter((f) => !required.includes(f)) };
}

/** Shard names of a downloaded or cached index, each checked to stay inside the snapshot. */
async function readShardNames(indexFile: string): Promise<string[]> {
  const shards = new Set<string>();
  for (const [tensor, shard] of await readIndex(indexFile)) {
    const unsafe = unsafeRepoPath(shard);
    if (unsafe !== undefined) {
      const why = `weight_map names shard "${shard}", which lies outside the repository snapshot: ${unsafe}`;
      throw new SafetensorsError(indexFile, why, tensor);
    }
    shards.add(shard);
  }
  return [...shards].sort();
}

// ---------------------------------------------------------------------------------------------------
// The cache's view

interface CacheState {
  commit?: string;
  dir?: string;
  /** Required files absent from the snapshot (or a sentence when there is no snapshot at all). */
  missing: string[];
  /** Optional files neither present nor known to be absent. */
  unknown: string[];
}

async function inspectCache(c: RepoCache, revision: string, patterns: string[] | undefined): Promise<CacheState> {
  const commit = await readRef(c, revision);
  const dir = commit !== undefined ? snapshotDir(c, commit) : undefined;
  if (commit === undefined || dir === undefined || !(await fsp.stat(dir).catch(() => null))?.isDirectory()) {
    return { missing: [`any snapshot for revision "${revision}"`], unknown: [] };
  }
  const tree = await readTree(c, commit);
  const present = (f: string) => unsafeRepoPath(f) === undefined && isFile(snapshotFile(c, commit, f));
  const view: RepoView = {
    async has(f) {
      if (await present(f)) return 'yes';
      if (tree !== undefined) return tree.has(f) ? 'unknown' : 'no';
      return unsafeRepoPath(f) === undefined && (await knownAbsent(c, commit, f)) ? 'no' : 'unknown';
    },
    files: () => (tree !== undefined ? [...tree.keys()] : undefined),
    shards: () => readShardNames(snapshotFile(c, commit, WEIGHTS_INDEX)),
  };
  const p = await plan(view, c.repo, revision, patterns);
  const missing: string[] = [];
  for (const f of p.required) if (!(await present(f))) missing.push(f);
  const unknown: string[] = [];
  for (const f of p.optional) if ((await view.has(f)) === 'unknown') unknown.push(f);
  return { commit, dir, missing, unknown };
}

function cacheUsable(s: CacheState): s is CacheState & { dir: string } {
  return s.dir !== undefined && s.missing.length === 0;
}

// ---------------------------------------------------------------------------------------------------
// The Hub's view

interface Remote {
  settings: HubSettings;
  fetch: Fetch;
  last: ReturnType<typeof hubFetch>['last'];
  ctx: RequestContext;
}

async function remoteCommit(r: Remote, revision: string): Promise<string> {
  if (COMMIT_HASH.test(revision)) return revision;
  let sha: unknown;
  try {
    const info = await modelInfo({
      name: r.ctx.repo,
      revision,
      additionalFields: ['sha'],
      hubUrl: r.settings.endpoint,
      fetch: r.fetch,
    });
    sha = (info as { sha?: unknown }).sha;
  } catch (err) {
    throw apiError(err, r.last(), r.ctx);
  }
  if (typeof sha !== 'string' || !COMMIT_HASH.test(sha)) {
    const why = `the Hub's model info has no commit sha (got ${JSON.stringify(sha)})`;
    throw new HubError('http', r.ctx.repo, why, { revision });
  }
  return sha;
}

async function remoteListing(r: Remote, commit: string): Promise<Map<string, TreeEntry>> {
  const out = new Map<string, TreeEntry>();
  try {
    for await (const e of listFiles({
      repo: { type: 'model', name: r.ctx.repo },
      revision: commit,
      recursive: true,
      hubUrl: r.settings.endpoint,
      fetch: r.fetch,
    })) {
      if (e.type !== 'file' || typeof e.oid !== 'string') continue;
      out.set(e.path, {
        size: e.size,
        blobId: e.oid,
        lfsSha256: e.lfs?.oid,
        lfsSize: e.lfs?.size,
        xetHash: e.xetHash,
      });
    }
  } catch (err) {
    throw apiError(err, r.last(), { ...r.ctx, revision: commit });
  }
  return out;
}

/** Aggregates per-file byte counts into throttled DownloadProgress events. */
function progressReporter(onProgress: ResolveOptions['onProgress'], total: number) {
  const have = new Map<string, number>();
  const received = new Map<string, number>();
  let started = 0;
  let lastEmit = 0;
  return (file: string, fileTotal: number) =>
    (fileBytes: number, fileReceived: number): void => {
      if (onProgress === undefined) return;
      const now = Date.now();
      if (started === 0) started = now;
      have.set(file, fileBytes);
      received.set(file, Math.max(received.get(file) ?? 0, fileReceived));
      if (fileBytes < fileTotal && now - lastEmit < PROGRESS_INTERVAL_MS) return;
      lastEmit = now;
      const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
      const seconds = Math.max((now - started) / 1000, 1e-3);
      onProgress({ file, fileBytes, fileTotal, bytes: sum(have), total, bytesPerSecond: sum(received) / seconds });
    };
}

/** Runs `fn` over `items`, `limit` at a time; after a failure starts nothing new, lets the rest finish, rethrows. */
async function parallel<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (failure === undefined && next < items.length) {
      const item = items[next++];
      await fn(item).catch((error: unknown) => {
        failure ??= { error };
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure.error;
}

/** Puts `files` of `commit` into the snapshot: download (or reuse) each blob, then link its pointer. */
async function fetchFiles(
  r: Remote,
  c: RepoCache,
  commit: string,
  listing: Map<string, TreeEntry>,
  files: string[],
  options: ResolveOptions,
): Promise<void> {
  const todo: string[] = [];
  for (const f of files) if (!(await isFile(snapshotFile(c, commit, f)))) todo.push(f);
  if (todo.length === 0) return;
  await tagCacheDir(c.root);
  const report = progressReporter(options.onProgress, todo.reduce((n, f) => n + entrySize(listing.get(f) as TreeEntry), 0));
  const stallSeconds = Number(process.env.HF_HUB_DOWNLOAD_TIMEOUT);
  await parallel(todo, PARALLEL_DOWNLOADS, async (file) => {
    const entry = listing.get(file) as TreeEntry;
    const etag = entryEtag(entry);
    const ctx = { ...r.ctx, file };
    if (!/^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$/.test(etag)) {
      throw new HubError('http', c.repo, `the listing gives "${file}" an unusable ETag ${JSON.stringify(etag)}`, ctx);
    }
    const blob = blobPath(c, etag);
    await fsp.mkdir(path.dirname(blob), { recursive: true }).catch((err: unknown) => {
      throw new HubError('disk', c.repo, `cannot create ${path.dirname(blob)}: ${errorMessage(err)}`, ctx);
    });
    const encoded = file.split('/').map(encodeURIComponent).join('/');
    const isNew = await downloadBlob({
      ctx,
      url: `${r.settings.endpoint}/${c.repo}/resolve/${commit}/${encoded}`,
      token: r.settings.token,
      etag,
      size: entrySize(entry),
      blob,
      lock: lockPath(c, etag),
      fetch: options.fetch ?? fetch,
      stallMs: (stallSeconds > 0 ? stallSeconds : 10) * 1000,
      lockOptions: options.lock,
      onBytes: report(file, entrySize(entry)),
    });
    report(file, entrySize(entry))(entrySize(entry), 0); // also counts a blob that was already there
    await linkPointer(blob, snapshotFile(c, commit, file), isNew).catch((err: unknown) => {
      const why = `cannot link ${snapshotFile(c, commit, file)} to its blob: ${errorMessage(err)}`;
      throw new HubError('disk', c.repo, why, ctx);
    });
  });
}

// ---------------------------------------------------------------------------------------------------

function describeMissing(s: CacheState): string {
  return s.missing.join(', ');
}

/**
 * A local directory holding the model `idOrDir` names: the directory itself, a complete cached
 * snapshot (no request), or a snapshot completed by downloading what it lacks.
 */
export async function resolveModel(idOrDir: string, options: ResolveOptions = {}): Promise<string> {
  const local = await localDirectory(idOrDir);
  if (local !== undefined) return local;
  const repo = idOrDir;
  const settings = hubSettings(options);
  const revision = options.revision ?? 'main';
  const c = repoCache(settings.cacheDir, repo);
  const patterns = options.allowPatterns;

  const cached = await inspectCache(c, revision, patterns);
  if (cacheUsable(cached) && cached.unknown.length === 0) return cached.dir;
  if (settings.offline) {
    if (cacheUsable(cached)) return cached.dir;
    throw new HubError(
      'offline',
      repo,
      `offline mode is on (HF_HUB_OFFLINE=1 or the offline option) and the cache at ${settings.cacheDir} lacks: ` +
        `${describeMissing(cached)}. Run once with network access to download it, or pass a local directory.`,
      { revision },
    );
  }

  const etagTimeout = Number(process.env.HF_HUB_ETAG_TIMEOUT);
  const timeoutMs = (etagTimeout > 0 ? etagTimeout : 10) * 1000;
  const { fetch: wrapped, last } = hubFetch(settings.endpoint, settings.token, timeoutMs, options.fetch);
  const ctx = { repo, endpoint: settings.endpoint, revision, hadToken: settings.token !== undefined };
  const r: Remote = { settings, fetch: wrapped, last, ctx };
  let commit: string;
  let listing: Map<string, TreeEntry>;
  try {
    commit = await remoteCommit(r, revision);
    const known = await readTree(c, commit);
    listing = known ?? (await remoteListing(r, commit));
    if (known === undefined) await writeTree(c, commit, listing);
  } catch (err) {
    const e = err instanceof HubError ? err : apiError(err, last(), r.ctx);
    // Like huggingface_hub: if the Hub cannot answer, a cached snapshot with every required file will do.
    if (e.code !== 'revision-not-found' && cacheUsable(cached)) return cached.dir;
    if (e.code === 'repo-not-found') {
      throw new HubError(e.code, repo, `${e.reason} (There is no local directory "${repo}" either.)`, e.details);
    }
    if (e.code === 'network') {
      const why = `${e.reason}; and the cache at ${settings.cacheDir} lacks: ${describeMissing(cached)}`;
      throw new HubError(e.code, repo, why, e.details);
    }
    throw e;
  }
  await writeRef(c, revision, commit).catch(() => undefined); // as in Python: a read-only cache may still serve

  const view: RepoView = {
    has: async (f) => (listing.has(f) ? 'yes' : 'no'),
    files: () => [...listing.keys()],
    async shards() {
      await fetchFiles(r, c, commit, listing, [WEIGHTS_INDEX], options);
      const names = await readShardNames(snapshotFile(c, commit, WEIGHTS_INDEX));
      const absent = names.filter((s) => !listing.has(s));
      if (absent.length > 0) {
        const why = `${WEIGHTS_INDEX} names shards that are not in the repository: ${absent.join(', ')}`;
        throw new HubError('entry-not-found', repo, why, { revision, file: absent[0] });
      }
      return names;
    },
  };
  const p = await plan(view, repo, revision, patterns);
  for (const f of p.required) {
    if (!listing.has(f)) {
      const why = `"${f}" is not in the repository at commit ${commit}`;
      throw new HubError('entry-not-found', repo, why, { revision, file: f });
    }
  }
  const files = [...p.required, ...p.optional.filter((f) => listing.has(f))];
  for (const f of files) {
    const unsafe = unsafeRepoPath(f);
    if (unsafe !== undefined) {
      throw new HubError('http', repo, `the repository lists an unsafe file name: ${unsafe}`, { revision, file: f });
    }
  }
  await fetchFiles(r, c, commit, listing, files, options);
  return snapshotDir(c, commit);
}
