/**
 * The Hugging Face cache layout, as Python's huggingface_hub writes and reads it:
 *
 *   <cache>/models--org--name/
 *     refs/<revision>              text file: the commit a branch or tag pointed to when last resolved
 *     blobs/<etag>                 file contents, named by ETag (sha256 for LFS files, git sha1 otherwise)
 *     snapshots/<commit>/<file>    relative symlink to ../../blobs/<etag> (a plain file where links fail)
 *     trees/<commit>.json          the repository's file listing at that commit (format_version 1)
 *     .no_exist/<commit>/<file>    empty marker: the file is known to be absent at that commit
 *   <cache>/.locks/models--org--name/<etag>.lock
 *
 * Nothing here talks to the network. Every path built from a repository file name is checked to stay
 * inside its folder first (see `safeRepoPath`).
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { assertSafeShardFilename, getRepoFolderName } from '@huggingface/hub';
import { errnoCode, errorMessage } from './errors';

export const COMMIT_HASH = /^[0-9a-f]{40}$/;

const CACHEDIR_TAG =
  'Signature: 8a477f597d28d172789f06886806bc55\n' +
  '# This file is a cache directory tag created by huggingface_hub.\n' +
  '# For information about cache directory tags, see:\n' +
  '#\thttps://bford.info/cachedir/\n';

/** The folders of one repository in one cache. */
export interface RepoCache {
  repo: string;
  root: string;
  /** <root>/models--org--name */
  storage: string;
  /** <root>/.locks/models--org--name */
  lockDir: string;
}

export function repoCache(root: string, repo: string): RepoCache {
  const folder = getRepoFolderName({ name: repo, type: 'model' });
  return { repo, root, storage: path.join(root, folder), lockDir: path.join(root, '.locks', folder) };
}

/**
 * Why a repository file name is unsafe to join onto a local folder (absolute, `..`, backslash,
 * drive letter, control characters, percent-encoded variants of those), or undefined if it is safe.
 */
export function unsafeRepoPath(name: string): string | undefined {
  try {
    assertSafeShardFilename(name);
  } catch (err) {
    return errorMessage(err);
  }
  if (name.split('/').includes('')) return `Unsafe file name "${name}" (empty path segment)`;
  return undefined;
}

/** `dir/<name>` for a repository path already checked by `unsafeRepoPath`; throws if it would escape. */
function inside(dir: string, name: string): string {
  const full = path.join(dir, ...name.split('/'));
  const rel = path.relative(dir, full);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) {
    throw new Error(`internal: "${name}" resolves outside ${dir}`);
  }
  return full;
}

export function snapshotDir(c: RepoCache, commit: string): string {
  return path.join(c.storage, 'snapshots', commit);
}

export function snapshotFile(c: RepoCache, commit: string, file: string): string {
  return inside(snapshotDir(c, commit), file);
}

export function blobPath(c: RepoCache, etag: string): string {
  return inside(path.join(c.storage, 'blobs'), etag);
}

export function lockPath(c: RepoCache, etag: string): string {
  return inside(c.lockDir, `${etag}.lock`);
}

/** True for an existing regular file, following symlinks (a dangling pointer counts as missing). */
export async function isFile(p: string): Promise<boolean> {
  return (await fsp.stat(p).catch(() => null))?.isFile() ?? false;
}

/** The commit a revision stands for in this cache: itself if it is a commit hash, else refs/<revision>. */
export async function readRef(c: RepoCache, revision: string): Promise<string | undefined> {
  if (COMMIT_HASH.test(revision)) return revision;
  if (unsafeRepoPath(revision) !== undefined) return undefined;
  const text = await fsp.readFile(inside(path.join(c.storage, 'refs'), revision), 'utf8').catch(() => undefined);
  const commit = text?.trim();
  return commit !== undefined && COMMIT_HASH.test(commit) ? commit : undefined;
}

/** Writes refs/<revision> atomically (temp file + rename), and only when it changes. */
export async function writeRef(c: RepoCache, revision: string, commit: string): Promise<void> {
  if (revision === commit || unsafeRepoPath(revision) !== undefined) return;
  const ref = inside(path.join(c.storage, 'refs'), revision);
  if ((await fsp.readFile(ref, 'utf8').catch(() => undefined)) === commit) return;
  await fsp.mkdir(path.dirname(ref), { recursive: true });
  const tmp = `${ref}.${process.pid}.${Date.now()}.tmp`;
  await fsp.writeFile(tmp, commit);
  await fsp.rename(tmp, ref);
}

/** One file of the repository listing (the fields of the Hub's tree API that matter here). */
export interface TreeEntry {
  size: number;
  /** git blob sha1 of the file (of its LFS pointer for LFS files) */
  blobId: string;
  lfsSha256?: string;
  lfsSize?: number;
  xetHash?: string;
}

/** The ETag the Hub serves for a file, hence its blob name: sha256 for LFS files, git sha1 otherwise. */
export function entryEtag(e: TreeEntry): string {
  return e.lfsSha256 ?? e.blobId;
}

export function entrySize(e: TreeEntry): number {
  return e.lfsSize ?? e.size;
}

function treeFile(c: RepoCache, commit: string): string {
  return path.join(c.storage, 'trees', `${commit}.json`);
}

/** trees/<commit>.json, or undefined when absent, unreadable or of an unknown format. */
export async function readTree(c: RepoCache, commit: string): Promise<Map<string, TreeEntry> | undefined> {
  try {
    const data = JSON.parse(await fsp.readFile(treeFile(c, commit), 'utf8')) as {
      format_version?: unknown;
      files?: Record<string, Record<string, unknown>>;
    };
    if (data.format_version !== 1 || typeof data.files !== 'object' || data.files === null) return undefined;
    const out = new Map<string, TreeEntry>();
    for (const [name, info] of Object.entries(data.files)) {
      if (typeof info.size !== 'number' || typeof info.blob_id !== 'string') return undefined;
      out.set(name, {
        size: info.size,
        blobId: info.blob_id,
        lfsSha256: typeof info.lfs_sha256 === 'string' ? info.lfs_sha256 : undefined,
        lfsSize: typeof info.lfs_size === 'number' ? info.lfs_size : undefined,
        xetHash: typeof info.xet_hash === 'string' ? info.xet_hash : undefined,
      });
    }
    return out;
  } catch {
    return undefined;
  }
}

/** Writes trees/<commit>.json as Python does (sorted, indent 1, atomic). Best effort: a failure is ignored. */
export async function writeTree(c: RepoCache, commit: string, entries: Map<string, TreeEntry>): Promise<void> {
  const files: Record<string, Record<string, unknown>> = {};
  for (const name of [...entries.keys()].sort()) {
    const e = entries.get(name) as TreeEntry;
    const info: Record<string, unknown> = { size: e.size, blob_id: e.blobId };
    if (e.lfsSha256 !== undefined) Object.assign(info, { lfs_sha256: e.lfsSha256, lfs_size: e.lfsSize });
    if (e.xetHash !== undefined) info.xet_hash = e.xetHash;
    files[name] = info;
  }
  const file = treeFile(c, commit);
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  try {
    await fsp.mkdir(path.dirname(file), { recursive: true });
    await fsp.writeFile(tmp, JSON.stringify({ format_version: 1, files }, null, 1));
    await fsp.rename(tmp, file);
  } catch {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
  }
}

/** Whether Python recorded that `file` does not exist at `commit` (.no_exist marker). */
export async function knownAbsent(c: RepoCache, commit: string, file: string): Promise<boolean> {
  return isFile(inside(path.join(c.storage, '.no_exist', commit), file));
}

/** CACHEDIR.TAG in the cache root, so that backup tools skip the cache (as huggingface_hub does). */
export async function tagCacheDir(root: string): Promise<void> {
  const tag = path.join(root, 'CACHEDIR.TAG');
  await fsp.mkdir(root, { recursive: true }).catch(() => undefined);
  await fsp.writeFile(tag, CACHEDIR_TAG, { flag: 'wx' }).catch(() => undefined);
}

/**
 * Makes snapshots/<commit>/<file> point at a published blob: a relative symlink, or, where links are
 * impossible (Windows without developer mode, some network drives), the blob itself moved there if this
 * call just downloaded it, else a copy. The copy goes through a temp name so the pointer is never partial.
 */
export async function linkPointer(blob: string, pointer: string, newBlob: boolean): Promise<void> {
  await fsp.mkdir(path.dirname(pointer), { recursive: true });
  await fsp.rm(pointer, { force: true });
  try {
    await fsp.symlink(path.relative(path.dirname(pointer), blob), pointer);
    return;
  } catch (err) {
    if (errnoCode(err) === 'EEXIST' && (await samePath(pointer, blob))) return; // a concurrent caller linked it
    if (!['EPERM', 'EACCES', 'ENOTSUP', 'EOPNOTSUPP', 'EINVAL', 'ENOSYS'].includes(errnoCode(err) ?? '')) throw err;
  }
  if (newBlob) {
    await fsp.rename(blob, pointer);
    return;
  }
  const tmp = `${pointer}.${process.pid}.${Date.now()}.tmp`;
  try {
    await fsp.copyFile(blob, tmp);
    await fsp.rename(tmp, pointer);
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}

async function samePath(a: string, b: string): Promise<boolean> {
  const [ra, rb] = await Promise.all([fsp.realpath(a).catch(() => a), fsp.realpath(b).catch(() => b)]);
  return ra === rb;
}
