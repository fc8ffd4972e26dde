/**
 * The output JSONL of an evaluation, which is also the run's state: one line per finished item, appended
 * and fsync'd as soon as the item finishes, so that a crash loses at most the items in flight. Reopening
 * the file reads back every finished id (those are never run again) and repairs a torn tail:
 *
 *   - a last line without its newline, or whose JSON does not parse, is what a kill during a write leaves
 *     (or a crash of the machine: zeros); it is cut off and its item runs again;
 *   - a bad line anywhere else is not ours to repair: an error naming the line.
 *
 * One process writes a file at a time: `<file>.lock` holds the writer's pid and host, and a second writer
 * is refused while that process lives.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InputError } from '../errors';
import type { FinishReason } from '../generation/generate';

/** One line of the output file. */
export interface ItemResult {
  id: string;
  type?: string;
  /** The question, or the last user message of a conversation. */
  question?: string;
  /** The reference answer, when the manifest gives one. */
  reference?: string;
  /** The generated answer (special tokens skipped, whitespace trimmed); null when the item failed. */
  answer: string | null;
  /** answer === reference (both trimmed); absent without a reference or on error. */
  exact?: boolean;
  /** Equal after normalisation (case, punctuation, articles, spacing: see score.ts). */
  match?: boolean;
  /** New tokens generated (eos included). */
  tokens: number;
  promptTokens?: number;
  finishReason?: FinishReason;
  /**
   * Milliseconds. preprocessMs: from the start of the item's preparation until its inputs were ready (waiting
   * for a decoder included); model times: this item's share of its batch (batch time / batchSize).
   */
  timings?: { preprocessMs: number; visionMs: number; prefillMs: number; decodeMs: number; batchSize: number };
  /** The typed error that stopped this item (class name and message). */
  error?: { type: string; message: string };
  /** Queue runs: which worker (host:pid) answered, and after how many attempts. */
  worker?: string;
  attempts?: number;
}

export interface OpenedResults {
  /** Finished items by id (the first line wins if an id repeats). */
  results: Map<string, ItemResult>;
  /** Bytes of a torn last line that were cut off (0 when the file was clean). */
  droppedBytes: number;
  /** Ids that occur on more than one line (a file edited by hand); they count once. */
  duplicates: string[];
}

/** Reads an output file without changing it (a missing file reads as empty). */
export function readResults(file: string): OpenedResults & { validBytes: number } {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { results: new Map(), droppedBytes: 0, duplicates: [], validBytes: 0 };
    throw new InputError(file, `cannot read the results file: ${(e as Error).message}`);
  }
  const results = new Map<string, ItemResult>();
  const duplicates: string[] = [];
  let start = 0;
  let line = 0;
  while (start < bytes.length) {
    line++;
    const nl = bytes.indexOf(0x0a, start);
    const text = bytes.toString('utf8', start, nl < 0 ? bytes.length : nl);
    // A line without its newline is torn even if it parses: the write was cut short.
    const parsed = nl < 0 ? undefined : parseLine(text);
    if (parsed === undefined && (nl < 0 || text.trim() !== '')) {
      const last = nl < 0 || nl === bytes.length - 1;
      if (last) return { results, droppedBytes: bytes.length - start, duplicates, validBytes: start };
      throw new InputError(`${file} line ${line}`, 'not a result line (invalid JSON or no "id"); fix or delete that line, then rerun');
    }
    if (parsed && results.has(parsed.id)) duplicates.push(parsed.id);
    else if (parsed) results.set(parsed.id, parsed);
    start = nl + 1;
  }
  return { results, droppedBytes: 0, duplicates, validBytes: bytes.length };
}

function parseLine(text: string): ItemResult | undefined {
  try {
    const v = JSON.parse(text) as ItemResult;
    return v && typeof v === 'object' && typeof v.id === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The output file opened for appending, with the lock held. */
export class ResultsWriter {
  private constructor(
    readonly file: string,
    private fd: number,
    private readonly lock: string,
    readonly opened: OpenedResults,
  ) {}

  /**
   * Takes the lock, reads what is finished, cuts a torn last line off. With `dropErrors` the lines of
   * failed items are removed (atomically: a new file renamed over the old) so that those items run again.
   */
  static open(file: string, options: { dropErrors?: boolean } = {}): ResultsWriter {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    const lock = `${file}.lock`;
    takeLock(lock, file);
    try {
      const read = readResults(file);
      if (read.droppedBytes > 0) fs.truncateSync(file, read.validBytes);
      if (options.dropErrors) {
        const failed = [...read.results.values()].filter((r) => r.error);
        if (failed.length > 0) {
          for (const r of failed) read.results.delete(r.id);
          rewrite(file, [...read.results.values()]);
        }
      }
      const fd = fs.openSync(file, 'a');
      return new ResultsWriter(file, fd, lock, read);
    } catch (e) {
      fs.rmSync(lock, { force: true });
      throw e;
    }
  }

  get results(): Map<string, ItemResult> {
    return this.opened.results;
  }

  /** Appends the lines and fsyncs before returning: once this returns they survive a crash. */
  append(results: readonly ItemResult[]): void {
    if (results.length === 0) return;
    for (const r of results) {
      if (this.opened.results.has(r.id)) throw new InputError(this.file, `internal: item ${JSON.stringify(r.id)} already has a result line`);
    }
    fs.writeSync(this.fd, results.map((r) => `${JSON.stringify(r)}\n`).join(''));
    fs.fsyncSync(this.fd);
    for (const r of results) this.opened.results.set(r.id, r);
  }

  close(): void {
    if (this.fd < 0) return;
    fs.closeSync(this.fd);
    this.fd = -1;
    fs.rmSync(this.lock, { force: true });
  }
}

function rewrite(file: string, results: ItemResult[]): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, results.map((r) => `${JSON.stringify(r)}\n`).join(''));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

interface LockRecord {
  pid: number;
  host: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Creates the lock file exclusively; a lock whose process is gone (same host) is taken over. */
function takeLock(lock: string, file: string): void {
  const record: LockRecord = { pid: process.pid, host: os.hostname() };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      fs.writeFileSync(lock, JSON.stringify(record), { flag: 'wx' });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new InputError(lock, `cannot create the lock file: ${(e as Error).message}`);
    }
    let holder: LockRecord | undefined;
    try {
      holder = JSON.parse(fs.readFileSync(lock, 'utf8')) as LockRecord;
    } catch {
      holder = undefined; // unreadable or half-written: treat as stale
    }
    if (holder && holder.host !== os.hostname()) {
      throw new InputError(file, `another run on ${holder.host} (pid ${holder.pid}) is writing it; if none is, delete ${lock}`);
    }
    if (holder && holder.pid !== process.pid && alive(holder.pid)) {
      throw new InputError(file, `another run (pid ${holder.pid}) is writing it; wait for it or stop it`);
    }
    if (holder?.pid === process.pid) throw new InputError(file, 'this process already has it open');
    fs.rmSync(lock, { force: true });
  }
  throw new InputError(lock, 'could not take the lock (it keeps reappearing)');
}
