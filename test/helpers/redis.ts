/**
 * A private redis-server for the queue tests: started on loopback on a free port, no persistence, stopped
 * after the tests. Without redis-server (Debian package redis-server) the queue tests are skipped with one
 * line, unless VIDEO_LLAVA_REQUIRE_REDIS=1 (CI installs it and sets that), where its absence fails them.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';

export function redisServerPath(): string | undefined {
  const explicit = process.env.VIDEO_LLAVA_REDIS_SERVER;
  if (explicit) return explicit;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).concat(['/usr/bin', '/usr/sbin', '/usr/local/bin'])) {
    const file = path.join(dir, 'redis-server');
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      // next
    }
  }
  return undefined;
}

/** `describe` when redis-server exists (or is required), else `describe.skip` after one line on stderr. */
export function describeWithRedis(file: string): jest.Describe {
  if (redisServerPath() || process.env.VIDEO_LLAVA_REQUIRE_REDIS === '1') return describe;
  process.stderr.write(`${path.basename(file)}: redis-server not found: queue tests skipped (apt-get install redis-server; CI installs it)\n`);
  return describe.skip;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface RedisServer {
  url: string;
  port: number;
  stop(): Promise<void>;
  /** Starts it again on the same port (empty: nothing is persisted). */
  start(): Promise<void>;
}

export async function startRedis(): Promise<RedisServer> {
  const bin = redisServerPath();
  if (!bin) throw new Error('redis-server not found (install the Debian package redis-server, or set VIDEO_LLAVA_REDIS_SERVER)');
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    const proc = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start within 10 s: ${output}`)), 10_000);
      proc.stdout!.on('data', (d: Buffer) => {
        output += d.toString();
        if (/Ready to accept connections/.test(output)) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited (${code}): ${output}`));
      });
    });
    proc.stdout!.resume();
    proc.stderr!.resume();
  };
  const stop = async () => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await exited;
  };
  await start();
  return { url: `redis://127.0.0.1:${port}`, port, stop, start };
}
