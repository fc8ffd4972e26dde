/**
 * HTTP plumbing shared by the metadata calls (made through @huggingface/hub) and the blob downloads:
 * one fetch wrapper that adds the token (only towards the Hub's own origin) and a timeout and keeps the
 * last response, so that a failure can be told apart by the Hub's X-Error-Code header, and the mapping
 * of those failures to typed errors.
 */
import { HubApiError } from '@huggingface/hub';
import { errorMessage, HubError } from './errors';

export type Fetch = typeof fetch;

export interface RequestContext {
  repo: string;
  endpoint: string;
  revision?: string;
  file?: string;
  hadToken: boolean;
}

/** Status and headers of a failed response. */
export interface FailedResponse {
  status: number;
  headers: Headers;
}

function origin(url: string): string {
  return new URL(url).origin;
}

/**
 * A fetch for the Hub: Authorization only for requests to the endpoint's origin, a timeout for the
 * response headers, and `last()` = the latest response (for mapping errors thrown by @huggingface/hub).
 */
export function hubFetch(
  endpoint: string,
  token: string | undefined,
  timeoutMs: number,
  base: Fetch = fetch,
): { fetch: Fetch; last: () => FailedResponse | undefined } {
  let last: FailedResponse | undefined;
  const wrapped: Fetch = async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const headers = new Headers(init?.headers);
    if (token !== undefined && origin(url) === origin(endpoint)) headers.set('authorization', `Bearer ${token}`);
    const signal = init?.signal ?? AbortSignal.timeout(timeoutMs);
    const res = await base(url, { ...init, headers, signal });
    last = { status: res.status, headers: res.headers };
    return res;
  };
  return { fetch: wrapped, last: () => last };
}

/** The Hub's answer to a failed request, as a typed error naming what to do. */
export function httpError(res: FailedResponse, ctx: RequestContext): HubError {
  const code = res.headers.get('x-error-code');
  const serverMessage = res.headers.get('x-error-message');
  const said = serverMessage ? ` The Hub said: "${serverMessage}".` : '';
  const details = { revision: ctx.revision, file: ctx.file, status: res.status };
  const tokenHint = ctx.hadToken
    ? 'the token that was sent does not grant access to it'
    : 'no token was sent: pass one with the "token" option, HF_TOKEN, or `hf auth login`';
  if (code === 'GatedRepo') {
    return new HubError(
      'gated',
      ctx.repo,
      `HTTP ${res.status}: this repository is gated and ${tokenHint}. ` +
        `Accept its conditions at ${ctx.endpoint}/${ctx.repo} with the account of the token.${said}`,
      details,
    );
  }
  if (code === 'RevisionNotFound') {
    return new HubError(
      'revision-not-found',
      ctx.repo,
      `HTTP ${res.status}: revision "${ctx.revision}" does not exist (no branch, tag or commit of that name).${said}`,
      details,
    );
  }
  if (code === 'EntryNotFound' || (res.status === 404 && ctx.file !== undefined && code !== 'RepoNotFound')) {
    return new HubError(
      'entry-not-found',
      ctx.repo,
      `HTTP ${res.status}: file "${ctx.file}" does not exist in the repository at this revision.${said}`,
      details,
    );
  }
  if (code === 'RepoNotFound' || res.status === 401 || res.status === 404) {
    return new HubError(
      'repo-not-found',
      ctx.repo,
      `HTTP ${res.status}: repository not found at ${ctx.endpoint}. ` +
        `Check the id; if it is private or gated, ${tokenHint}.${said}`,
      details,
    );
  }
  return new HubError('http', ctx.repo, `HTTP ${res.status} from ${ctx.endpoint}.${said}`, details);
}

/** Converts what a @huggingface/hub call threw into a typed error. */
export function apiError(err: unknown, last: FailedResponse | undefined, ctx: RequestContext): HubError {
  if (err instanceof HubError) return err;
  if (err instanceof HubApiError) {
    const res = last && last.status === err.statusCode ? last : { status: err.statusCode, headers: new Headers() };
    return httpError(res, ctx);
  }
  if (isNetworkError(err)) {
    return new HubError('network', ctx.repo, `cannot reach ${ctx.endpoint}: ${describeNetworkError(err)}`, {
      revision: ctx.revision,
      file: ctx.file,
    });
  }
  return new HubError('http', ctx.repo, `unexpected answer from ${ctx.endpoint}: ${errorMessage(err)}`, {
    revision: ctx.revision,
    file: ctx.file,
  });
}

/** fetch() failures that mean "no usable connection": refused, reset, DNS, TLS, timeouts, aborted bodies. */
export function isNetworkError(err: unknown): boolean {
  // undici reports every transport failure as TypeError("fetch failed" / "terminated"); compared by name,
  // because the error may come from another realm (jest's sandbox) where `instanceof TypeError` fails.
  const name = (err as { name?: unknown } | null)?.name;
  return name === 'AbortError' || name === 'TimeoutError' || name === 'TypeError';
}

export function describeNetworkError(err: unknown): string {
  const cause = (err as { cause?: unknown } | null)?.cause;
  const name = (err as { name?: unknown } | null)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') return 'timed out';
  return cause !== undefined ? `${errorMessage(err)} (${errorMessage(cause)})` : errorMessage(err);
}
