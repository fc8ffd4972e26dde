/**
 * A cross-process lock on `.locks/models--org--name/<etag>.lock`, the path Python's huggingface_hub
 * locks, so that two processes do not download the same blob at once.
 *
 * Node has no flock(2), so the lock is the file's existence: it is created exclusively ('wx') and holds
 * {owner, pid, host, token}; its mtime is refreshed while held and it is removed on release. A lock is
 * stale, and taken over, when its process is gone (same host) or its mtime is older than `staleMs`
 * (another host sharing the cache). A file that is not one of ours (Python leaves its flock files
 * behind, empty) is taken over once it is older than `graceMs`: Python never relies on the file's
 * existence, and it writes each download to a temp name of its own, so the two never share a partial file.
 *
 * Correctness never rests on the lock alone: a blob is published only after its size and hash are
 * checked, by an atomic rename. The lock saves bandwidth and keeps the resumable `.incomplete` file to a
 * single writer.
 */
import { randomUUID } from 'crypto';
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { errnoCode } from './errors';

const OWNER = 'video-llava';

export interface LockOptions {
  /** A lock whose mtime is older than this is stale (default 60 s; the holder refreshes it every staleMs / 4). */
  staleMs?: number;
  /** A file that is not one of our lock records is respected for this long after its last change (default 2 s). */
  graceMs?: number;
  /** Called with the lock file once when the lock is busy and we start waiting. */
  onWait?: (lockFile: string) => void;
}

interface LockRecord {
  owner: string;
  pid: number;
  host: string;
  token: string;
}

function parseRecord(text: string): LockRecord | undefined {
  try {
    const r = JSON.parse(text) as Partial<LockRecord>;
    if (r.owner === OWNER && typeof r.pid === 'number' && typeof r.host === 'string' && typeof r.token === 'string') {
      return r as LockRecord;
    }
  } catch {
    // not one of ours
  }
  return undefined;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM'; // exists, owned by another user
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** 'free' (gone), 'held' (live holder: wait) or 'stale' (take it over). */
async function inspect(file: string, staleMs: number, graceMs: number): Promise<'free' | 'held' | 'stale'> {
  const [stat, text] = await Promise.all([fsp.stat(file).catch(() => null), fsp.readFile(file, 'utf8').catch(() => null)]);
  if (stat === null || text === null) return 'free';
  const age = Date.now() - stat.mtimeMs;
  const record = parseRecord(text);
  if (record === undefined) return age > graceMs ? 'stale' : 'held';
  if (record.host === os.hostname() && !processAlive(record.pid)) return 'stale';
  return age > staleMs ? 'stale' : 'held';
}

/** Runs `fn` while holding the lock file `file`. */
export async function withLock<T>(file: string, fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  const staleMs = options.staleMs ?? 60_000;
  const graceMs = options.graceMs ?? 2_000;
  const record: LockRecord = { owner: OWNER, pid: process.pid, host: os.hostname(), token: randomUUID() };
  const text = JSON.stringify(record);
  await fsp.mkdir(path.dirname(file), { recursive: true });

  let waited = false;
  for (let delay = 25; ; delay = Math.min(delay * 2, 500)) {
    try {
      await fsp.writeFile(file, text, { flag: 'wx' });
      break;
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
    }
    const state = await inspect(file, staleMs, graceMs);
    if (state === 'stale') {
      // Replace the stale file atomically, then check that no other taker replaced it after us.
      const tmp = `${file}.${record.token}.tmp`;
      await fsp.writeFile(tmp, text);
      await fsp.rename(tmp, file);
      if ((await fsp.readFile(file, 'utf8').catch(() => '')) === text) break;
    } else if (state === 'held') {
      if (!waited) options.onWait?.(file);
      waited = true;
      await sleep(delay);
    }
  }

  const heartbeat = setInterval(() => {
    const now = new Date();
    fsp.utimes(file, now, now).catch(() => undefined);
  }, staleMs / 4);
  heartbeat.unref();
  try {
    return await fn();
  } finally {
    clearInterval(heartbeat);
    // Remove the file only if it is still ours (a taker may have judged us stale).
    if ((await fsp.readFile(file, 'utf8').catch(() => '')) === text) await fsp.rm(file, { force: true });
  }
}
