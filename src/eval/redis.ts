/** Connecting to Redis for the evaluation queue (producer, and the worker's queue thread). */
import { Redis } from 'ioredis';
import { InputError, QueueError } from '../errors';

/** The URL with its password replaced, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/^(\w+:\/\/[^:@/]*:)[^@/]*@/, '$1***@');
}

/**
 * Connects, failing fast with a QueueError when Redis does not answer; then a client that reconnects by
 * itself. Workers need maxRetriesPerRequest null (BullMQ's blocking calls wait through reconnections).
 */
export async function connectRedis(url: string, role: 'producer' | 'worker', connectTimeoutMs = 5000): Promise<Redis> {
  if (!/^rediss?:\/\//.test(url)) throw new InputError('--queue', `expected a redis:// or rediss:// URL, found "${redactUrl(url)}"`);
  const probe = new Redis(url, { lazyConnect: true, connectTimeout: connectTimeoutMs, retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false });
  let cause: Error | undefined; // the socket's error says more than the rejected connect ("Connection is closed.")
  probe.on('error', (e: Error) => (cause ??= e));
  try {
    await probe.connect();
    await probe.ping();
  } catch (e) {
    throw new QueueError(redactUrl(url), `Redis is unreachable (${(cause ?? (e as Error)).message}); start redis-server there or fix --queue`);
  } finally {
    probe.disconnect();
  }
  const client = new Redis(url, {
    maxRetriesPerRequest: role === 'worker' ? null : 2,
    retryStrategy: (times) => Math.min(100 * times, 2000),
  });
  client.on('error', () => undefined); // ioredis reconnects; callers see failed requests
  return client;
}
