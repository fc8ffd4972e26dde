/**
 * What loading reads, wherever a model lives. A `ModelFiles` is a model folder: a local directory (Node) or a URL
 * prefix read over HTTP (the browser, or Node given a URL). Its small files (config, tokenizer, processor settings,
 * chat template) are read whole; its weights are `ByteSource`s read by byte range, so a shard is never held whole.
 */

export const SINGLE_WEIGHTS = 'model.safetensors';
export const WEIGHTS_INDEX = 'model.safetensors.index.json';

/** Small files a Video-LLaVA folder may hold besides the weights (config.json and the weights are required). */
export const MODEL_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'preprocessor_config.json',
  'video_preprocessor_config.json',
  'processor_config.json',
  'chat_template.json',
  'chat_template.jinja',
] as const;

/** The files a processor (tokenizer, image and video processors, chat template) reads. */
export const PROCESSOR_FILES = MODEL_FILES.filter((f) => f !== 'config.json' && f !== 'generation_config.json');

/** A file read by byte range: a local file, or a URL fetched with Range requests. */
export interface ByteSource {
  /** The path or URL, for messages. */
  readonly name: string;
  /** Size in bytes. */
  readonly size: number;
  /** Exactly `length` bytes at `offset`, in a fresh buffer (so aligned); throws past the end. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** A local file the native addon may map instead of reading (Node files only). */
  readonly localPath?: string;
  close(): Promise<void>;
}

export interface ModelFiles {
  /** The directory or base URL, for messages. */
  readonly location: string;
  /** A file's full path or URL, for messages. */
  where(name: string): string;
  /** A small file's text; undefined when the folder has no such file. Throws when it exists but cannot be read. */
  text(name: string): string | undefined;
  /** A large file for reads by byte range; null when the folder has no such file. */
  open(name: string): Promise<ByteSource | null>;
}

export function isModelFiles(value: unknown): value is ModelFiles {
  const v = value as Partial<ModelFiles> | null;
  return typeof v === 'object' && v !== null && typeof v.text === 'function' && typeof v.open === 'function' && typeof v.where === 'function';
}

/** The message of an error, also for errors from another realm (which fail `instanceof Error`). */
export function errorText(err: unknown): string {
  const text = (err as { message?: unknown } | null)?.message;
  return typeof text === 'string' ? text : String(err);
}

/**
 * A shard name from an index, resolved lexically inside the folder ("a/../b" → "b"); null when it is absolute or
 * leaves the folder. Lexical on purpose: in the Hugging Face cache every snapshot file is a symlink into ../../blobs.
 */
export function innerPath(name: string): string | null {
  if (/^([/\\]|[A-Za-z]:)/.test(name) || /^[a-z][a-z0-9+.-]*:/i.test(name)) return null;
  const parts: string[] = [];
  for (const part of name.split(/[/\\]/)) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length === 0) return null;
      parts.pop();
    } else parts.push(part);
  }
  return parts.length === 0 ? null : parts.join('/');
}
