/**
 * JSON as Python writes and reads it, for config files that go back to Python. transformers 5.24
 * validates config fields strictly (a float field given `1` is rejected), and JSON.parse/stringify lose
 * the difference between `1` and `1.0`. So config files are re-read with number literals kept as they
 * were written, and numbers built in code can be marked as Python floats.
 * Output matches json.dumps(obj, indent=2, sort_keys=True) (ensure_ascii included).
 */
import { ConfigError } from '../errors';

/** A number as it was written in the source file: an int, or a float if written with a point or exponent. */
export class JsonNumber {
  constructor(readonly literal: string) {}
  get value(): number {
    return Number(this.literal);
  }
  /** As Python writes it back: ints unchanged (any size), floats in repr form. */
  toPython(): string {
    return /^-?\d+$/.test(this.literal) ? this.literal : pyFloatRepr(this.value);
  }
}

/** A number Python holds as a float: written as repr(float) writes it (`10000.0`, `1e-06`). */
export class PyFloat {
  constructor(readonly value: number) {}
}

/** Python's repr of a float: shortest round-trip digits, exponent form below 1e-4 and from 1e16. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const [mantissa, expText] = Math.abs(x).toExponential().split('e');
  const digits = mantissa.replace('.', '');
  const exp = Number(expText);
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  if (digits.length <= exp + 1) return `${sign}${digits}${'0'.repeat(exp + 1 - digits.length)}.0`;
  return `${sign}${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
}

/** Parses JSON text, keeping every number as a JsonNumber (so 1.0 stays a float). */
export function parseLossless(text: string, file = 'config.json'): unknown {
  let i = 0;
  const fail = (what: string): never => {
    throw new ConfigError(file, `invalid JSON at offset ${i}: ${what}`);
  };
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const value = (): unknown => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj: Record<string, unknown> = {};
      ws();
      if (text[i] === '}') return i++, obj;
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a key');
        const key = string();
        ws();
        if (text[i++] !== ':') fail('expected ":"');
        obj[key] = value();
        ws();
        const sep = text[i++];
        if (sep === '}') return obj;
        if (sep !== ',') fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      i++;
      const arr: unknown[] = [];
      ws();
      if (text[i] === ']') return i++, arr;
      for (;;) {
        arr.push(value());
        ws();
        const sep = text[i++];
        if (sep === ']') return arr;
        if (sep !== ',') fail('expected "," or "]"');
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [['true', true], ['false', false], ['null', null], ['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return typeof v === 'number' ? new JsonNumber(word) : v;
      }
    }
    const m = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m) fail(`unexpected ${c === undefined ? 'end of text' : JSON.stringify(c)}`);
    i += m![0].length;
    return new JsonNumber(m![0]);
  };
  const string = (): string => {
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (i >= text.length) fail('unterminated string');
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const out = value();
  ws();
  if (i !== text.length) fail('trailing characters');
  return out;
}

/** json.dumps(s) with ensure_ascii: every character outside space..~ escaped. */
function pyString(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** json.dumps(value, indent=2, sort_keys=True). Plain numbers: integers as ints, others as floats. */
export function toPythonJson(value: unknown, depth = 0): string {
  const pad = (d: number) => '  '.repeat(d);
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'string') return pyString(value);
  if (value instanceof JsonNumber) return value.toPython();
  if (value instanceof PyFloat) return pyFloatRepr(value.value);
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : pyFloatRepr(value);
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[\n${value.map((v) => pad(depth + 1) + toPythonJson(v, depth + 1)).join(',\n')}\n${pad(depth)}]`;
  }
  if (typeof value === 'object') {
    const keys = Object.keys(value).sort();
    if (keys.length === 0) return '{}';
    const items = keys.map((k) => `${pad(depth + 1)}${pyString(k)}: ${toPythonJson((value as Record<string, unknown>)[k], depth + 1)}`);
    return `{\n${items.join(',\n')}\n${pad(depth)}}`;
  }
  throw new ConfigError('json', `cannot write a value of type ${typeof value}`);
}
