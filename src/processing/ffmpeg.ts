/**
 * Finding and running the ffmpeg executable.
 *
 * Where ffmpeg comes from, in order:
 *   1. the environment variable VIDEO_LLAVA_FFMPEG, else FFMPEG_PATH (if set, it must work: no fallback);
 *   2. the binary shipped by the `@ffmpeg-installer/ffmpeg` package;
 *   3. `ffmpeg` on PATH.
 * ffprobe is never needed: the installer package does not ship it, so probing parses `ffmpeg -i` instead.
 *
 * Every child is killed (SIGKILL) and reaped before a run settles with an error, on timeout, on abort, when
 * its output grows past the allowed size, and when this Node process exits: no ffmpeg outlives its caller.
 */
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { MediaError } from '../errors';

/** A located ffmpeg executable. */
export interface FfmpegBinary {
  path: string;
  /** Where it came from: an environment variable name, `@ffmpeg-installer/ffmpeg`, or `PATH`. */
  from: string;
  /** First line of `ffmpeg -version`. */
  version: string;
  /** True when the binary takes `-fps_mode` (FFmpeg 5.1 and later); older ones only know `-vsync`. */
  hasFpsMode: boolean;
}

export interface RunOptions {
  /** Kill the child and fail after this many milliseconds (default 120 000). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Fail (and kill the child) once stdout exceeds this many bytes (default 1 GiB). */
  maxStdoutBytes?: number;
  /** Receive stdout chunks instead of collecting them (`stdout` in the result is then empty). */
  onStdout?: (chunk: Buffer) => void;
  /** Called with the child's pid right after it starts (diagnostics and tests). */
  onSpawn?: (pid: number) => void;
  /** What errors name as their source, usually the input file. */
  source?: string;
}

export interface RunResult {
  /** Exit code; ffmpeg exits 1 after `-i file` without an output, which probing relies on. */
  code: number;
  stdout: Buffer;
  /** The last 64 KiB of stderr. */
  stderr: string;
}

const DEFAULT_TIMEOUT_MS = 120_000;
const DEFAULT_MAX_STDOUT = 1 << 30;
const STDERR_KEEP = 64 * 1024;
const ENV_VARS = ['VIDEO_LLAVA_FFMPEG', 'FFMPEG_PATH'] as const;

// Children still running, killed if this process exits first.
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

/** Pids of ffmpeg children started by this module that have not been reaped yet. */
export function liveFfmpegPids(): number[] {
  return [...live].map((c) => c.pid).filter((p): p is number => p !== undefined);
}

/** Run a program, collecting stdout as bytes and the tail of stderr. See {@link RunOptions}. */
export function runProcess(program: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const source = options.source ?? program;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxStdout = options.maxStdoutBytes ?? DEFAULT_MAX_STDOUT;
  if (options.signal?.aborted) return Promise.reject(new MediaError(source, 'aborted before ffmpeg started'));

  return new Promise<RunResult>((resolve, reject) => {
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    const chunks: Buffer[] = [];
    let stdoutBytes = 0;
    let stderr = '';
    let failure: Error | undefined;
    let settled = false;

    const cleanup = (): void => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      live.delete(child);
    };
    const settle = (err: Error | undefined, result?: RunResult): void => {
      if (settled) return;
      settled = true;
      cleanup();
      if (err) reject(err);
      else resolve(result as RunResult);
    };
    // Remember the first failure, kill the child, and settle only once it has been reaped ('close').
    const fail = (err: Error): void => {
      failure ??= err;
      if (child.pid === undefined) settle(failure); // never started: there is nothing to reap
      else if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    const onAbort = (): void => fail(new MediaError(source, 'aborted'));
    const timer = setTimeout(
      () => fail(new MediaError(source, `ffmpeg did not finish within ${timeoutMs} ms (timeout); it was killed`)),
      timeoutMs,
    );
    options.signal?.addEventListener('abort', onAbort);

    child.on('error', (err: NodeJS.ErrnoException) => {
      const what = err.code === 'ENOENT' ? `executable not found: ${program}` : `could not run ${program}: ${err.message}`;
      fail(new MediaError(source, what));
    });
    if (child.pid !== undefined) {
      live.add(child);
      installExitHook();
      options.onSpawn?.(child.pid);
    }
    child.stdout.on('data', (chunk: Buffer) => {
      if (failure) return;
      stdoutBytes += chunk.length;
      if (stdoutBytes > maxStdout) {
        fail(new MediaError(source, `ffmpeg output exceeds the limit of ${maxStdout} bytes (maxStdoutBytes)`));
        return;
      }
      try {
        if (options.onStdout) options.onStdout(chunk);
        else chunks.push(chunk);
      } catch (err) {
        fail(err instanceof Error ? err : new Error(String(err)));
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => {
      stderr += text;
      if (stderr.length > 2 * STDERR_KEEP) stderr = stderr.slice(-STDERR_KEEP);
    });
    child.on('close', (code, signal) => {
      if (failure) return settle(failure);
      if (code === null) return settle(new MediaError(source, `ffmpeg was killed by signal ${signal ?? 'unknown'}`));
      settle(undefined, { code, stdout: Buffer.concat(chunks), stderr: stderr.slice(-STDERR_KEEP) });
    });
  });
}

function isExecutableFile(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function installerPath(): string | undefined {
  try {
    // The package throws a plain string when its platform binary is missing.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require('@ffmpeg-installer/ffmpeg') as { path?: unknown };
    return typeof mod.path === 'string' ? mod.path : undefined;
  } catch {
    return undefined;
  }
}

function pathLookup(name: string): string | undefined {
  const exe = process.platform === 'win32' ? `${name}.exe` : name;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutableFile(path.join(dir, exe))) return path.join(dir, exe);
  }
  return undefined;
}

/** `ffmpeg version 4.4.2 ...` → whether `-fps_mode` exists (5.1+). Git builds (`N-12345-g...`) are
 * treated as old: `-vsync` still works on every release up to at least 7.x. */
function parseHasFpsMode(versionLine: string): boolean {
  const m = /ffmpeg version n?(\d+)\.(\d+)/.exec(versionLine);
  if (!m) return false;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  return major > 5 || (major === 5 && minor >= 1);
}

async function verify(file: string, from: string): Promise<FfmpegBinary | string> {
  if (!isExecutableFile(file)) return `${file} (from ${from}) is not an executable file`;
  try {
    const { code, stdout } = await runProcess(file, ['-hide_banner', '-version'], { timeoutMs: 15_000, source: file });
    const version = stdout.toString('utf8').split('\n')[0].trim();
    if (code !== 0 || !version.startsWith('ffmpeg version')) {
      return `${file} (from ${from}) does not answer -version like ffmpeg (exit ${code}: "${version}")`;
    }
    return { path: file, from, version, hasFpsMode: parseHasFpsMode(version) };
  } catch (err) {
    return `${file} (from ${from}) failed to run: ${(err as Error).message}`;
  }
}

async function locate(): Promise<FfmpegBinary> {
  for (const name of ENV_VARS) {
    const value = process.env[name];
    if (value) {
      const found = await verify(value, `environment variable ${name}`);
      if (typeof found === 'string') throw new MediaError('ffmpeg', `${found}; fix or unset ${name}`);
      return found;
    }
  }
  const tried: string[] = [];
  const candidates: Array<[string | undefined, string]> = [
    [installerPath(), '@ffmpeg-installer/ffmpeg'],
    [pathLookup('ffmpeg'), 'PATH'],
  ];
  for (const [file, from] of candidates) {
    if (!file) {
      tried.push(`${from}: none`);
      continue;
    }
    const found = await verify(file, from);
    if (typeof found !== 'string') return found;
    tried.push(found);
  }
  throw new MediaError(
    'ffmpeg',
    `no working ffmpeg found (tried ${tried.join('; ')}). Install @ffmpeg-installer/ffmpeg, put ffmpeg on PATH, ` +
      `or set ${ENV_VARS[0]} to its path`,
  );
}

// One lookup per distinct environment setting, so that changing the variables takes effect.
const cache = new Map<string, Promise<FfmpegBinary>>();

/** Locate a working ffmpeg (cached). Throws MediaError (source "ffmpeg") when none works. */
export function locateFfmpeg(): Promise<FfmpegBinary> {
  const key = ENV_VARS.map((v) => process.env[v] ?? '').join('\0');
  let found = cache.get(key);
  if (!found) {
    found = locate();
    found.catch(() => cache.delete(key)); // do not remember failures: the user may install ffmpeg
    cache.set(key, found);
  }
  return found;
}

/** Run the located ffmpeg with `args` (see {@link runProcess}). */
export async function runFfmpeg(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const ffmpeg = await locateFfmpeg();
  return runProcess(ffmpeg.path, args, options);
}
