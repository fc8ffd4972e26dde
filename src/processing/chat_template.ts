/**
 * Chat template of the Video-LLaVA processor (spec §7), rendered with @huggingface/jinja the way transformers'
 * `apply_chat_template(..., tokenize=False)` renders it (jinja with trim_blocks/lstrip_blocks; the tokenizer's
 * special tokens `bos_token`, `eos_token`, `unk_token`, `pad_token` are template variables).
 *
 * The -hf checkpoint ships no template on its main branch, so the default below is ours. It produces the prompt
 * format of the model card and integration tests:
 *   "USER: <video>\nWhy is this video funny? ASSISTANT:"
 *   "USER: <video>\nWhat do you see? ASSISTANT: A baby reading a book. USER: Why is it funny? ASSISTANT:"
 * Per message: the role in capitals and ": " (system messages have no role prefix), then one "<image>\n" or
 * "<video>\n" per media item in order, then each text item followed by a space; the generation prompt is
 * "ASSISTANT:". reference/gen_tokenizer.py renders the same string with Python for the parity test.
 */


import { Template } from '@huggingface/jinja';

import { InputError, TokenizerError } from '../errors';
import { platform } from '../platform';
import { ModelFiles } from '../platform/files';

export type ChatRole = 'user' | 'assistant' | 'system';

export type ChatContent = { type: 'text'; text: string } | { type: 'image' } | { type: 'video' };

export interface ChatMessage {
  role: ChatRole;
  content: string | ChatContent[];
}

export interface ApplyChatTemplateOptions {
  /** Append "ASSISTANT:" so that the model answers next. Default false, as in Python. */
  addGenerationPrompt?: boolean;
  /** A jinja template to use instead of the default (e.g. from `loadChatTemplate`). */
  chatTemplate?: string;
  /** Template variables for special tokens, e.g. `tokenizer.specialTokensMap`. */
  specialTokens?: Record<string, string>;
}

export const VIDEO_LLAVA_CHAT_TEMPLATE = [
  "{%- for message in messages -%}",
  "    {%- if message['role'] != 'system' -%}",
  "        {{- message['role'] | upper -}}{{- ': ' -}}",
  '    {%- endif -%}',
  "    {%- if message['content'] is string -%}",
  "        {{- message['content'] + ' ' -}}",
  '    {%- else -%}',
  "        {%- for item in message['content'] -%}",
  "            {%- if item['type'] == 'image' -%}",
  "                {{- '<image>\\n' -}}",
  "            {%- elif item['type'] == 'video' -%}",
  "                {{- '<video>\\n' -}}",
  '            {%- endif -%}',
  '        {%- endfor -%}',
  "        {%- for item in message['content'] -%}",
  "            {%- if item['type'] == 'text' -%}",
  "                {{- item['text'] + ' ' -}}",
  '            {%- endif -%}',
  '        {%- endfor -%}',
  '    {%- endif -%}',
  '{%- endfor -%}',
  '{%- if add_generation_prompt -%}',
  "    {{- 'ASSISTANT:' -}}",
  '{%- endif -%}',
  '',
].join('\n');

const ROLES: ReadonlySet<string> = new Set(['user', 'assistant', 'system']);
const compiled = new Map<string, Template>();

/** Renders a conversation into the prompt string (Python `processor.apply_chat_template(..., tokenize=False)`). */
export function applyChatTemplate(messages: ChatMessage[], options: ApplyChatTemplateOptions = {}): string {
  validateMessages(messages);
  const source = options.chatTemplate ?? VIDEO_LLAVA_CHAT_TEMPLATE;
  let template = compiled.get(source);
  try {
    if (!template) {
      template = new Template(source);
      compiled.set(source, template);
    }
    return template.render({
      ...options.specialTokens,
      messages,
      add_generation_prompt: options.addGenerationPrompt ?? false,
    });
  } catch (err) {
    throw new InputError('chatTemplate', `could not render the chat template: ${(err as Error).message}`);
  }
}

/**
 * The chat template stored in a model directory, looked up in the order transformers' processor uses:
 * processor_config.json "chat_template", chat_template.json (legacy), chat_template.jinja, then
 * tokenizer_config.json "chat_template". Undefined when the directory has none (use the default then).
 */
export function loadChatTemplate(modelDir: string | ModelFiles): string | undefined {
  const files = typeof modelDir === 'string' ? platform.localFiles(modelDir) : modelDir;
  const read = (file: string): string | undefined => {
    try {
      return files.text(file);
    } catch (err) {
      throw new TokenizerError(`${files.where(file)}: cannot read (${(err as Error).message})`);
    }
  };
  const fromJsonKey = (file: string): string | undefined => {
    const full = files.where(file);
    const text = read(file);
    if (text === undefined) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new TokenizerError(`${full}: malformed JSON (${(err as Error).message})`);
    }
    const value = parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>).chat_template : undefined;
    if (value === undefined || value === null) return undefined;
    if (typeof value === 'string') return value;
    // A list of named templates: [{ name, template }]; the one named "default" is the chat template.
    if (Array.isArray(value)) {
      const entry = value.find((t) => t && typeof t === 'object' && t.name === 'default');
      if (entry && typeof entry.template === 'string') return entry.template;
    }
    throw new TokenizerError(`${full}: "chat_template" must be a string (or a list with a "default" entry)`);
  };
  return (
    fromJsonKey('processor_config.json') ??
    fromJsonKey('chat_template.json') ??
    read('chat_template.jinja') ??
    fromJsonKey('tokenizer_config.json')
  );
}

function validateMessages(messages: unknown): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages)) {
    throw new InputError('messages', `expected an array of messages, found ${typeof messages}`);
  }
  messages.forEach((message: unknown, i) => {
    const where = `messages[${i}]`;
    if (!message || typeof message !== 'object') {
      throw new InputError(where, 'expected an object with "role" and "content"');
    }
    const { role, content } = message as Record<string, unknown>;
    if (typeof role !== 'string' || !ROLES.has(role)) {
      throw new InputError(`${where}.role`, `expected "user", "assistant" or "system", found ${JSON.stringify(role)}`);
    }
    if (typeof content === 'string') return;
    if (!Array.isArray(content)) {
      throw new InputError(`${where}.content`, 'expected a string or an array of content items');
    }
    content.forEach((item: unknown, j) => validateContentItem(item, `${where}.content[${j}]`));
  });
}

function validateContentItem(item: unknown, at: string): void {
  const fields = item && typeof item === 'object' ? (item as Record<string, unknown>) : {};
  if (fields.type === 'image' || fields.type === 'video') return;
  if (fields.type !== 'text') {
    throw new InputError(`${at}.type`, `expected "text", "image" or "video", found ${JSON.stringify(fields.type)}`);
  }
  if (typeof fields.text !== 'string') throw new InputError(`${at}.text`, 'expected a string');
}
