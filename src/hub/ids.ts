/** Hub repository ids and the default endpoint: plain rules shared by Node's cache (./resolve.ts) and the page. */

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

/** Python's repo-id rule: "name" or "namespace/name", [A-Za-z0-9_.-], no "--" or "..", edges alphanumeric or "_". */
const REPO_PART = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$/;

export function isRepoId(id: string): boolean {
  const parts = id.split('/');
  return (
    parts.length <= 2 &&
    parts.every((p) => REPO_PART.test(p)) &&
    !id.includes('--') &&
    !id.includes('..') &&
    !id.endsWith('.git')
  );
}
