/** Spawning a benchmark worker and talking to it over the line protocol (protocol.ts). */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as readline from 'readline';
import { REPLY_PREFIX, Reply } from './protocol';

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void; cmd: string };

// Requests are written as JSON lines; each carries an `id` added here.
type Outgoing = { cmd: string } & Record<string, unknown>;

export class Worker {
  private child: ChildProcess;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private tail: string[] = [];
  private exited: string | null = null;

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    private readonly logFile: fs.WriteStream,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
    readline.createInterface({ input: this.child.stdout! }).on('line', (line) => this.onLine(line));
    readline.createInterface({ input: this.child.stderr! }).on('line', (line) => this.onLog(line));
    this.child.on('error', (e) => this.fail(`could not start: ${e.message}`));
    this.child.on('exit', (code, signal) => this.fail(`exited (code ${code}, signal ${signal})`));
  }

  private onLog(line: string): void {
    this.logFile.write(`[${this.name}] ${line}\n`);
    this.tail.push(line);
    if (this.tail.length > 20) this.tail.shift();
  }

  private onLine(line: string): void {
    if (!line.startsWith(REPLY_PREFIX)) return this.onLog(line);
    let reply: Reply;
    try {
      reply = JSON.parse(line.slice(REPLY_PREFIX.length)) as Reply;
    } catch {
      return this.onLog(`unparsable reply: ${line.slice(0, 200)}`);
    }
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    if (reply.ok) p.resolve(reply.result);
    else p.reject(new Error(`${this.name} ${p.cmd}: ${reply.error}`));
  }

  private fail(why: string): void {
    if (this.exited) return;
    this.exited = why;
    const detail = this.tail.length ? `; last output:\n  ${this.tail.join('\n  ')}` : '';
    for (const p of this.pending.values()) p.reject(new Error(`${this.name} ${why} during ${p.cmd}${detail}`));
    this.pending.clear();
  }

  get alive(): boolean {
    return this.exited === null;
  }

  request<T>(req: Outgoing): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`${this.name} ${this.exited}`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, cmd: req.cmd });
      this.child.stdin!.write(JSON.stringify({ ...req, id }) + '\n');
    });
  }

  /** Asks the worker to exit; kills it if it has not after `graceMs`. */
  async close(graceMs = 10_000): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.request({ cmd: 'exit' }).catch(() => undefined);
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await done;
    clearTimeout(timer);
  }
}
