/** Typed reading of config.json fields: the default when absent (or null), a ConfigError naming the field when mistyped. */
import { ConfigError } from '../errors';

export type Json = Record<string, unknown>;

export class FieldReader {
  constructor(
    private readonly raw: Json,
    private readonly prefix = '',
    readonly file?: string,
  ) {}

  private fail(key: string, expected: string, value: unknown): never {
    throw new ConfigError(`${this.prefix}${key}`, `expected ${expected}, found ${JSON.stringify(value)}`, this.file);
  }

  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  raw_(key: string): unknown {
    return this.raw[key];
  }

  int(key: string, fallback: number): number {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v)) this.fail(key, 'an integer', v);
    return v;
  }

  optInt(key: string): number | null {
    const v = this.raw[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isInteger(v)) this.fail(key, 'an integer or null', v);
    return v;
  }

  num(key: string, fallback: number): number {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(key, 'a number', v);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'boolean') this.fail(key, 'true or false', v);
    return v;
  }

  str<T extends string>(key: string, fallback: T, allowed?: readonly T[]): T {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'string') this.fail(key, 'a string', v);
    if (allowed && !allowed.includes(v as T)) this.fail(key, `one of ${allowed.join(', ')}`, v);
    return v as T;
  }

  /** An int, or a list of ints (e.g. eos_token_id, vision_feature_layer). */
  intOrList(key: string, fallback: number | number[] | null): number | number[] | null {
    const v = this.raw[key] === undefined ? fallback : this.raw[key];
    if (v === null) return null;
    if (typeof v === 'number' && Number.isInteger(v)) return v;
    if (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number' && Number.isInteger(x))) return v as number[];
    this.fail(key, 'an integer or a non-empty list of integers', v);
  }

  object(key: string): Json | null {
    const v = this.raw[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'object' || Array.isArray(v)) this.fail(key, 'an object', v);
    return v as Json;
  }

  sub(key: string): FieldReader | null {
    const o = this.object(key);
    return o ? new FieldReader(o, `${this.prefix}${key}.`, this.file) : null;
  }
}
