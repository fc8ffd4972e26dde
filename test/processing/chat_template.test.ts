// Chat template parity: the strings Python's tokenizer.apply_chat_template renders from the same template
// (reference/gen_tokenizer.py). Exact string comparison: rendering is discrete, there is no tolerance.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { InputError, TokenizerError } from '../../src/errors';
import {
  applyChatTemplate,
  ChatMessage,
  loadChatTemplate,
  VIDEO_LLAVA_CHAT_TEMPLATE,
} from '../../src/processing/chat_template';
import { LlamaTokenizer } from '../../src/processing/tokenizer';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'tokenizer');
const expected = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8')).chat_template as {
  template: string;
  special_tokens_map: Record<string, string>;
  cases: Array<{ name: string; messages: ChatMessage[]; add_generation_prompt: boolean; rendered: string }>;
};

describe('applyChatTemplate', () => {
  it('uses the template that Python rendered', () => {
    expect(VIDEO_LLAVA_CHAT_TEMPLATE).toBe(expected.template);
  });

  const specialTokens = LlamaTokenizer.fromPretrained(path.join(FIXTURES, 'small')).specialTokensMap;
  const cases = expected.cases.map((c) => [`${c.name} (generation prompt: ${c.add_generation_prompt})`, c] as const);

  it('passes the special tokens Python passes', () => {
    expect(specialTokens).toEqual(expected.special_tokens_map);
  });

  it.each(cases)('%s', (_name, c) => {
    const rendered = applyChatTemplate(c.messages, { addGenerationPrompt: c.add_generation_prompt, specialTokens });
    expect(rendered).toBe(c.rendered);
  });

  it('produces the spec §7 prompt formats', () => {
    // Spec §7 strings are the HF model-card prompt format; the Python-rendered cases above are the parity check.
    const single = expected.cases.find((c) => c.name === 'single_video' && c.add_generation_prompt);
    expect(single?.rendered).toBe('USER: <video>\nWhy is this video funny? ASSISTANT:');
    const multi = expected.cases.find((c) => c.name === 'multi_turn' && c.add_generation_prompt);
    expect(multi?.rendered).toBe(
      'USER: <video>\nWhat do you see in this video? ASSISTANT: A baby reading a book. USER: Why is it funny? ASSISTANT:',
    );
  });

  it('accepts a custom template and passes special tokens to it', () => {
    const out = applyChatTemplate([{ role: 'user', content: 'hi' }], {
      chatTemplate: '{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}',
      specialTokens: { bos_token: '<s>' },
    });
    expect(out).toBe('<s>[user]hi');
  });

  it('rejects malformed messages and broken templates with typed errors', () => {
    const bad = (message: unknown) => () => applyChatTemplate([message as ChatMessage]);
    expect(bad({ role: 'robot', content: 'x' })).toThrow(/messages\[0\]\.role/);
    expect(bad({ role: 'user', content: [{ type: 'audio' }] })).toThrow(InputError);
    expect(bad({ role: 'user', content: [{ type: 'text' }] })).toThrow(/content\[0\]\.text/);
    expect(bad({ role: 'user', content: 42 })).toThrow(/messages\[0\]\.content/);
    expect(() => applyChatTemplate([], { chatTemplate: '{% for %}' })).toThrow(InputError);
    expect(() => applyChatTemplate([], { chatTemplate: "{{ raise_exception('no') }}" })).toThrow(/no/);
  });
});

describe('loadChatTemplate', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('returns undefined when the directory has no template', () => {
    expect(loadChatTemplate(path.join(FIXTURES, 'small'))).toBeUndefined();
  });

  it('prefers chat_template.json, then chat_template.jinja, then tokenizer_config.json', () => {
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: 'from-config' }));
    expect(loadChatTemplate(dir)).toBe('from-config');
    fs.writeFileSync(path.join(dir, 'chat_template.jinja'), 'from-jinja');
    expect(loadChatTemplate(dir)).toBe('from-jinja');
    fs.writeFileSync(path.join(dir, 'chat_template.json'), JSON.stringify({ chat_template: 'from-json' }));
    expect(loadChatTemplate(dir)).toBe('from-json');
  });

  it('reports malformed JSON with the file name', () => {
    fs.writeFileSync(path.join(dir, 'chat_template.json'), '{');
    expect(() => loadChatTemplate(dir)).toThrow(TokenizerError);
    expect(() => loadChatTemplate(dir)).toThrow(/chat_template\.json/);
  });
});
