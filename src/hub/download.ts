/**
 * Downloads one blob into the cache:
 *
 *   lock .locks/<repo>/<etag>.lock
 *   append to blobs/<etag>.incomplete, resuming with `Range: bytes=<size>-` after a dropped connection
 *     (in this process, up to 5 tries without progress) or after an earlier run was interrupted
 *   check size, then sha256 (LFS files: the ETag is the sha256) or the git blob sha1 (other files)
 *   rename to blobs/<etag>   (atomic: a blob is either absent or complete and verified)
 *
 * Redirects are followed by hand: the resolve response carries the metadata (X-Linked-Etag,
 * X-Linked-Size) and the token must not follow a redirect to another origin (the CDN).
 * Write failures (disk full, quota, read-only) delete the partial file and raise a 'disk' error;
 * corrupt downloads are deleted and raise 'integrity'; network failures keep the partial file so the
 * next call resumes it.
 */
import { createHash } from 'crypto';
import { constants as fsc, createReadStream, promises as fsp } from 'fs';
import { errnoCode, errorMessage, HubError } from './errors';
import { describeNetworkError, Fetch, httpError, isNetworkError, RequestContext } from './http';
import { LockOptions, withLock } from './lock';

export interface BlobDownload {
  ctx: RequestContext;
  /** {endpoint}/{repo}/resolve/{commit}/{file} */
  url: string;
  token?: string;
  /** Expected ETag: sha256 (LFS) or git blob sha1, from the repository listing. */
  etag: string;
  size: number;
  blob: string;
  lock: string;
  fetch: Fetch;
  /** Seconds without a byte before a connection counts as dropped (HF_HUB_DOWNLOAD_TIMEOUT, default 10). */
  stallMs: number;
  lockOptions?: LockOptions;
  /** `have` bytes of the file are on disk; `received` of them came over the network in this call. */
  onBytes?: (have: number, received: number) => void;
}

const MAX_TRIES_WITHOUT_PROGRESS = 5;
const MAX_REDIRECTS = 5;
const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const DISK_ERRORS = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'EIO', 'EFBIG']);

const SHA256 = /^[0-9a-f]{64}$/;
const GIT_SHA1 = /^[0-9a-f]{40}$/;

/** `W/"abc"` or `"abc"` -> `abc`, as huggingface_hub normalizes ETags. */
export function normalizeEtag(etag: string | null): string | undefined {
  return etag === null ? undefined : etag.replace(/^W\//, '').replace(/^"|"$/g, '');
}

/** Ensures blobs/<etag> exists and is verified. Returns true if this call downloaded it. */
export async function downloadBlob(d: BlobDownload): Promise<boolean> {
  if (await exists(d.blob)) return false;
  return withLock(
    d.lock,
    async () => {
      if (await exists(d.blob)) return false; // another process finished it while we waited
      const partial = `${d.blob}.incomplete`;
      try {
        await fetchInto(d, partial);
        await verify(d, partial);
        await fsp.rename(partial, d.blob).catch((err: unknown) => diskError(d, partial, err));
      } catch (err) {
        // A corrupt or half-written partial file must not survive; one cut by the network is resumed later.
        if (err instanceof HubError && (err.code === 'integrity' || err.code === 'disk')) {
          await fsp.rm(partial, { force: true }).catch(() => undefined);
        }
        throw err;
      }
      return true;
    },
    d.lockOptions,
  );
}

async function exists(p: string): Promise<boolean> {
  return (await fsp.stat(p).catch(() => null))?.isFile() ?? false;
}

class RetryableError extends Error {}

/** Downloads the missing tail of `partial` until it holds `d.size` bytes. */
async function fetchInto(d: BlobDownload, partial: string): Promise<void> {
  const handle = await fsp.open(partial, fsc.O_RDWR | fsc.O_CREAT).catch((err: unknown) => diskError(d, partial, err));
  // Writes go to explicit offsets (never O_APPEND): bytes land where they belong even on a restart from 0.
  let received = 0;
  try {
    let have = (await handle.stat()).size;
    if (have > d.size) {
      await handle.truncate(0); // not a prefix of this blob
      have = 0;
    }
    d.onBytes?.(have, 0);
    let triesWithoutProgress = 0;
    while (have < d.size) {
      const receivedBefore = received;
      try {
        const { body, start } = await open(d, have);
        have = start;
        try {
          for await (const chunk of body.stream) {
            body.stall.reset();
            const bytes = chunk as Uint8Array;
            if (have + bytes.length > d.size) throw integrity(d, `the server sent more than the ${d.size} bytes announced`);
            await handle.write(bytes, 0, bytes.length, have).catch((err: unknown) => diskError(d, partial, err));
            have += bytes.length;
            received += bytes.length;
            d.onBytes?.(have, received);
          }
        } finally {
          body.stall.clear();
        }
        if (have < d.size) throw new RetryableError(`connection closed after ${have} of ${d.size} bytes`);
      } catch (err) {
        if (err instanceof HubError) throw err;
        if (!(err instanceof RetryableError) && !isNetworkError(err)) throw err;
        triesWithoutProgress = received > receivedBefore ? 1 : triesWithoutProgress + 1;
        if (triesWithoutProgress > MAX_TRIES_WITHOUT_PROGRESS) {
          const why = err instanceof RetryableError ? err.message : describeNetworkError(err);
          throw new HubError(
            'network',
            d.ctx.repo,
            `download interrupted at ${have} of ${d.size} bytes (${why}); ` +
              'the partial file is kept and the next call resumes it',
            { revision: d.ctx.revision, file: d.ctx.file },
          );
        }
        await sleep(100 * 2 ** (triesWithoutProgress - 1));
      }
    }
  } finally {
    await handle.close().catch(() => undefined);
  }
}

interface Body {
  stream: AsyncIterable<unknown>;
  stall: { reset(): void; clear(): void };
}

/**
 * GET the file from byte `from`, following redirects by hand. Returns the body and the offset it
 * starts at (0 when the server ignored the Range header).
 */
async function open(d: BlobDownload, from: number): Promise<{ body: Body; start: number }> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const stall = {
    reset() {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(), d.stallMs);
    },
    clear() {
      clearTimeout(timer);
    },
  };
  stall.reset();
  let url = d.url;
  try {
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const headers: Record<string, string> = { 'accept-encoding': 'identity' };
      if (from > 0) headers.range = `bytes=${from}-`;
      const sameOrigin = new URL(url).origin === new URL(d.url).origin;
      if (d.token !== undefined && sameOrigin) headers.authorization = `Bearer ${d.token}`;
      const res = await d.fetch(url, { headers, redirect: 'manual', signal: controller.signal });
      if (hop === 0) checkAnnounced(d, res.headers);
      if (res.status >= 300 && res.status < 400 && res.headers.has('location')) {
        await res.body?.cancel();
        url = new URL(res.headers.get('location') as string, url).href;
        continue;
      }
      if (RETRY_STATUS.has(res.status)) {
        await res.body?.cancel();
        throw new RetryableError(`HTTP ${res.status}`);
      }
      if (res.status === 416) {
        await res.body?.cancel();
        throw integrity(d, `the server refused the range bytes=${from}- (HTTP 416)`);
      }
      if (res.status !== 200 && res.status !== 206) {
        await res.body?.cancel();
        throw httpError(res, d.ctx);
      }
      if (res.body === null) throw new RetryableError('empty response body');
      let start = 0;
      if (res.status === 206) {
        const range = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
        if (range === null || Number(range[1]) !== from) {
          await res.body.cancel();
          throw integrity(d, `asked for bytes=${from}- and got Content-Range "${res.headers.get('content-range')}"`);
        }
        start = from;
      }
      return { body: { stream: res.body, stall }, start };
    }
    throw new HubError('http', d.ctx.repo, `more than ${MAX_REDIRECTS} redirects from ${d.url}`, {
      revision: d.ctx.revision,
      file: d.ctx.file,
    });
  } catch (err) {
    stall.clear();
    throw err;
  }
}

/** The ETag and size the resolve response announces must be the ones the listing gave. */
function checkAnnounced(d: BlobDownload, headers: Headers): void {
  const etag = normalizeEtag(headers.get('x-linked-etag') ?? headers.get('etag'));
  if (etag !== undefined && (SHA256.test(etag) || GIT_SHA1.test(etag)) && etag !== d.etag) {
    throw integrity(d, `the Hub announces ETag ${etag} but the repository listing says ${d.etag}`);
  }
  const size = headers.get('x-linked-size');
  if (size !== null && Number(size) !== d.size) {
    throw integrity(d, `the Hub announces ${size} bytes but the repository listing says ${d.size}`);
  }
}

/** Size, then content hash: sha256 for LFS ETags, git's blob sha1 ("blob <size>\0" + bytes) otherwise. */
async function verify(d: BlobDownload, partial: string): Promise<void> {
  const size = (await fsp.stat(partial)).size;
  if (size !== d.size) throw integrity(d, `downloaded ${size} bytes, expected ${d.size}`);
  let hash;
  if (SHA256.test(d.etag)) {
    hash = createHash('sha256');
  } else if (GIT_SHA1.test(d.etag)) {
    hash = createHash('sha1').update(`blob ${size}\0`);
  } else {
    return; // an ETag that is not a content hash (some mirrors): the size is all we can check
  }
  for await (const chunk of createReadStream(partial, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  const digest = hash.digest('hex');
  if (digest !== d.etag) {
    const kind = SHA256.test(d.etag) ? 'sha256' : 'git sha1';
    throw integrity(d, `${kind} of the downloaded bytes is ${digest}, expected ${d.etag}; the download was discarded`);
  }
}

/** An 'integrity' error (downloadBlob deletes the partial file: it must not be resumed). */
function integrity(d: BlobDownload, message: string): HubError {
  return new HubError('integrity', d.ctx.repo, message, { revision: d.ctx.revision, file: d.ctx.file });
}

/** Rethrows a file-system failure as a 'disk' error (downloadBlob deletes the partial file). */
async function diskError(d: BlobDownload, partial: string, err: unknown): Promise<never> {
  const code = errnoCode(err);
  const what = code === 'ENOSPC' ? 'the disk is full' : code === 'EDQUOT' ? 'the disk quota is exceeded' : errorMessage(err);
  const hint = DISK_ERRORS.has(code ?? '') ? ` Free space or point HF_HUB_CACHE / the cacheDir option elsewhere.` : '';
  throw new HubError('disk', d.ctx.repo, `cannot write ${partial}: ${what}.${hint}`, {
    revision: d.ctx.revision,
    file: d.ctx.file,
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
