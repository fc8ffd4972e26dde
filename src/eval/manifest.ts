/**
 * The evaluation manifest: JSON Lines, one item a line.
 *
 *   {"id": "msvd-0001", "video": "videos/a.mp4", "question": "what is the man doing?", "answer": "cooking", "type": "what"}
 *   {"id": 7, "image": ["a.jpg", "b.jpg"], "conversation": [{"role": "user", "content": [{"type": "image"}, ...]}]}
 *
 *   id            string or number, unique in the file (numbers are read as their decimal text)
 *   video, image  a path or a list of paths; relative paths are relative to the manifest's folder
 *   question      the question, wrapped in the model's chat template with one placeholder per image and
 *                 video (a question that already holds <image>/<video> placeholders, or starts with
 *                 "USER:", is used as it is, as `video-llava generate --prompt` does); or
 *   conversation  the whole conversation as chat messages (role user/assistant/system, content a string or
 *                 a list of {type: text, text} / {type: image} / {type: video}); the model answers its end
 *   answer        optional reference answer (scored by exact match)
 *   type          optional question type (accuracy is reported per type)
 *
 * Structural problems (bad JSON, a missing id or question, a duplicate id) are found before any model work
 * and reported together with their line numbers; problems with an item's media or prompt are that item's
 * error at run time, and the run goes on.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { InputError } from '../errors';
import type { ChatContent, ChatMessage } from '../processing/chat_template';

export interface EvalItem {
  id: string;
  /** 1-based line of the manifest. */
  line: number;
  /** Absolute paths. */
  images: string[];
  videos: string[];
  question?: string;
  conversation?: ChatMessage[];
  /** Reference answer. */
  answer?: string;
  type?: string;
}

const KNOWN_FIELDS = new Set(['id', 'video', 'image', 'question', 'conversation', 'answer', 'type']);
const MAX_REPORTED = 10;

/** Parses manifest text; `file` names it in errors and anchors relative media paths. */
export function parseManifest(text: string, file: string): EvalItem[] {
  const dir = path.dirname(path.resolve(file));
  const items: EvalItem[] = [];
  const problems: string[] = [];
  const seen = new Map<string, number>();
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    try {
      const item = parseItem(raw, line, dir);
      const first = seen.get(item.id);
      if (first !== undefined) throw new Error(`id ${JSON.stringify(item.id)} already used on line ${first}`);
      seen.set(item.id, line);
      items.push(item);
    } catch (e) {
      problems.push(`line ${line}: ${(e as Error).message}`);
    }
  });
  if (problems.length > 0) {
    const more = problems.length > MAX_REPORTED ? ` (and ${problems.length - MAX_REPORTED} more)` : '';
    throw new InputError(file, `${problems.length} bad manifest line(s): ${problems.slice(0, MAX_REPORTED).join('; ')}${more}`);
  }
  if (items.length === 0) throw new InputError(file, 'the manifest has no items');
  return items;
}

export async function readManifest(file: string): Promise<EvalItem[]> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(file, code === 'ENOENT' ? 'manifest not found' : `cannot read the manifest: ${(e as Error).message}`);
  }
  return parseManifest(text, file);
}

function parseItem(raw: string, line: number, dir: string): EvalItem {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (e) {
    throw new Error(`not valid JSON (${(e as Error).message})`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error('expected a JSON object');
  const o = value as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !KNOWN_FIELDS.has(k));
  if (unknown.length > 0) throw new Error(`unknown field(s) ${unknown.join(', ')} (expected ${[...KNOWN_FIELDS].join(', ')})`);

  const id = typeof o.id === 'number' && Number.isFinite(o.id) ? String(o.id) : o.id;
  if (typeof id !== 'string' || id === '') throw new Error('"id" must be a non-empty string or a number');
  const item: EvalItem = { id, line, images: paths(o.image, 'image', dir), videos: paths(o.video, 'video', dir) };
  if (o.question !== undefined && o.conversation !== undefined) throw new Error('give "question" or "conversation", not both');
  if (o.question !== undefined) {
    if (typeof o.question !== 'string' || o.question.trim() === '') throw new Error('"question" must be a non-empty string');
    item.question = o.question;
  } else if (o.conversation !== undefined) {
    item.conversation = conversation(o.conversation);
  } else {
    throw new Error('needs "question" or "conversation"');
  }
  for (const key of ['answer', 'type'] as const) {
    if (o[key] === undefined || o[key] === null) continue;
    if (typeof o[key] !== 'string') throw new Error(`"${key}" must be a string`);
    item[key] = o[key] as string;
  }
  return item;
}

function paths(value: unknown, field: string, dir: string): string[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  if (list.some((p) => typeof p !== 'string' || p === '')) throw new Error(`"${field}" must be a path or a list of paths`);
  return (list as string[]).map((p) => path.resolve(dir, p));
}

function conversation(value: unknown): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0) throw new Error('"conversation" must be a non-empty list of messages');
  const messages = value.map((m, i): ChatMessage => {
    const where = `conversation[${i}]`;
    if (!m || typeof m !== 'object') throw new Error(`${where} must be an object with role and content`);
    const { role, content } = m as Record<string, unknown>;
    if (role !== 'user' && role !== 'assistant' && role !== 'system') throw new Error(`${where}.role must be user, assistant or system`);
    if (typeof content === 'string') return { role, content };
    if (!Array.isArray(content)) throw new Error(`${where}.content must be a string or a list`);
    return { role, content: content.map((c, j) => contentItem(c, `${where}.content[${j}]`)) };
  });
  if (messages[messages.length - 1].role !== 'user') throw new Error('the conversation must end with a user message (the model answers it)');
  return messages;
}

function contentItem(c: unknown, where: string): ChatContent {
  const o = (c ?? {}) as Record<string, unknown>;
  if (o.type === 'image' || o.type === 'video') return { type: o.type };
  if (o.type === 'text' && typeof o.text === 'string') return { type: 'text', text: o.text };
  throw new Error(`${where} must be {"type": "text", "text": …}, {"type": "image"} or {"type": "video"}`);
}
