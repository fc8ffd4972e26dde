/**
 * The one error type of the Hub layer. `code` says what went wrong in a way a caller can branch on;
 * the message names the repository, revision and file and says what to do.
 */
import { VideoLlavaError } from '../errors';

export type HubErrorCode =
  /** The argument is neither an existing directory nor a valid repo id. */
  | 'invalid-id'
  /** Offline (HF_HUB_OFFLINE=1 or `offline: true`) and the cache lacks what is needed. */
  | 'offline'
  /** The Hub could not be reached (connection refused, DNS, timeout) and the cache cannot stand in. */
  | 'network'
  /** The repository does not exist, or is private and the token (if any) cannot see it. */
  | 'repo-not-found'
  /** The repository is gated: no token, or the token's owner has not been granted access. */
  | 'gated'
  /** The revision (branch, tag or commit) does not exist in the repository. */
  | 'revision-not-found'
  /** A file the model needs is not in the repository at this revision. */
  | 'entry-not-found'
  /** Any other HTTP failure (5xx, unexpected status, a response without the Hub's headers). */
  | 'http'
  /** Downloaded bytes do not match the size, ETag or sha256 announced by the Hub. */
  | 'integrity'
  /** Writing to the cache failed (disk full, quota, permissions). */
  | 'disk';

export class HubError extends VideoLlavaError {
  constructor(
    readonly code: HubErrorCode,
    readonly repo: string,
    /** The message without the "repo@revision (file): " prefix. */
    readonly reason: string,
    readonly details: { revision?: string; file?: string; status?: number } = {},
  ) {
    const at = details.revision ? `@${details.revision}` : '';
    const file = details.file ? ` (${details.file})` : '';
    super(`${repo}${at}${file}: ${reason}`);
  }

  get revision(): string | undefined {
    return this.details.revision;
  }

  get file(): string | undefined {
    return this.details.file;
  }

  get status(): number | undefined {
    return this.details.status;
  }
}

/** The message of an error, also for errors from another realm (which fail `instanceof Error`). */
export function errorMessage(err: unknown): string {
  const text = (err as { message?: unknown } | null)?.message;
  return typeof text === 'string' ? text : String(err);
}

/** The `code` of a Node system error (ENOSPC, ENOENT, ...), if any. */
export function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
