/**
 * Where the cache is, which endpoint to talk to, which token to send and whether the network may be
 * used: options first, then the environment variables Python's huggingface_hub reads, with the same
 * precedence, so both share one cache and one login.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DEFAULT_ENDPOINT } from './ids';

export { DEFAULT_ENDPOINT } from './ids';

export interface HubSettings {
  /** The hub cache root (the folder holding `models--org--name`). */
  cacheDir: string;
  /** Base URL of the Hub or a mirror, without a trailing slash. */
  endpoint: string;
  token?: string;
  offline: boolean;
}

export interface SettingsOptions {
  cacheDir?: string;
  endpoint?: string;
  token?: string;
  offline?: boolean;
}

type Env = Record<string, string | undefined>;

/** `HF_HUB_OFFLINE=1` style flags: 1, ON, YES, TRUE in any case. */
function isTrue(value: string | undefined): boolean {
  return value !== undefined && ['1', 'ON', 'YES', 'TRUE'].includes(value.trim().toUpperCase());
}

/** `~` and `$VAR` / `${VAR}` expansion as os.path.expanduser + expandvars do it (unknown vars stay). */
function expandPath(p: string, env: Env): string {
  const vars = p.replace(/\$(\w+)|\$\{(\w+)\}/g, (m, a: string | undefined, b: string | undefined) => {
    const value = env[a ?? b ?? ''];
    return value ?? m;
  });
  if (vars === '~') return os.homedir();
  if (vars.startsWith('~/') || vars.startsWith(`~${path.sep}`)) return path.join(os.homedir(), vars.slice(2));
  return vars;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value !== undefined && value !== '' ? value : undefined;
}

/** HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
export function hfHome(env: Env = process.env): string {
  const xdg = nonEmpty(env.XDG_CACHE_HOME) ?? path.join(os.homedir(), '.cache');
  const home = nonEmpty(env.HF_HOME) ?? path.join(xdg, 'huggingface');
  return expandPath(home, env);
}

/** HF_HUB_CACHE, else the legacy HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub. */
export function hubCacheDir(env: Env = process.env): string {
  const dir = nonEmpty(env.HF_HUB_CACHE) ?? nonEmpty(env.HUGGINGFACE_HUB_CACHE) ?? path.join(hfHome(env), 'hub');
  return expandPath(dir, env);
}

/** HF_TOKEN, else the legacy HUGGING_FACE_HUB_TOKEN, else the file written by `hf auth login`. */
export function hubToken(env: Env = process.env): string | undefined {
  const fromEnv = (nonEmpty(env.HF_TOKEN) ?? nonEmpty(env.HUGGING_FACE_HUB_TOKEN))?.trim();
  if (fromEnv) return fromEnv;
  const file = expandPath(nonEmpty(env.HF_TOKEN_PATH) ?? path.join(hfHome(env), 'token'), env);
  try {
    return nonEmpty(fs.readFileSync(file, 'utf8').trim());
  } catch {
    return undefined;
  }
}

export function hubSettings(options: SettingsOptions, env: Env = process.env): HubSettings {
  const endpoint = (options.endpoint ?? nonEmpty(env.HF_ENDPOINT) ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  return {
    cacheDir: path.resolve(options.cacheDir !== undefined ? expandPath(options.cacheDir, env) : hubCacheDir(env)),
    endpoint,
    token: options.token ?? hubToken(env),
    offline: options.offline ?? (isTrue(env.HF_HUB_OFFLINE) || isTrue(env.TRANSFORMERS_OFFLINE)),
  };
}
