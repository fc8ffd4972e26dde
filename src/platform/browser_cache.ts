/**
 * Model bytes kept in the browser's Cache Storage (./http.ts decides what to keep: whole small files, blocks of large
 * ones, known absences), so that a second visit loads without the network. Cache Storage exists in secure contexts
 * only (https, or http://localhost); elsewhere nothing is kept.
 */
import type { ByteCache } from './http';

export const MODEL_CACHE_NAME = 'video-llava-models';

let warned = false;

/** The Cache Storage cache `name` as a ByteCache; null where the page has no Cache Storage. */
export function cacheStorage(name = MODEL_CACHE_NAME): ByteCache | null {
  if (typeof caches === 'undefined') return null;
  let opened: Promise<Cache> | null = null;
  const open = (): Promise<Cache> => (opened ??= caches.open(name));
  return {
    async get(key) {
      const res = await (await open()).match(key);
      return res ? new Uint8Array(await res.arrayBuffer()) : undefined;
    },
    async put(key, bytes) {
      try {
        await (await open()).put(key, new Response(bytes as Uint8Array<ArrayBuffer>));
      } catch (err) {
        // Over quota (or private mode): the model still loads, just not from the cache next time.
        if (!warned) console.warn(`video-llava: model bytes not kept in Cache Storage (${(err as Error).message})`);
        warned = true;
      }
    },
  };
}

/** Drops every model kept by this page's origin (the next load fetches again). */
export async function clearModelCache(name = MODEL_CACHE_NAME): Promise<boolean> {
  return typeof caches === 'undefined' ? false : caches.delete(name);
}
