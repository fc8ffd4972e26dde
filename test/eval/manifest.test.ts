import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InputError } from '../../src/errors';
import { parseManifest, readManifest } from '../../src/eval/manifest';

const FILE = '/data/set/manifest.jsonl';
const lines = (...objects: unknown[]) => objects.map((o) => (typeof o === 'string' ? o : JSON.stringify(o))).join('\n');

describe('parseManifest', () => {
  test('reads ids, media (relative to the manifest), question or conversation, answer and type', () => {
    const items = parseManifest(
      lines(
        { id: 'a', video: 'clips/a.mp4', question: 'What happens?', answer: 'cooking', type: 'what' },
        '',
        { id: 7, image: ['/abs/x.png', 'y.png'], conversation: [{ role: 'user', content: [{ type: 'image' }, { type: 'image' }, { type: 'text', text: 'Same?' }] }] },
        { id: 'c', video: ['v1.mp4', 'v2.mp4'], image: 'i.png', question: 'Q', answer: null },
      ),
      FILE,
    );
    expect(items).toEqual([
      { id: 'a', line: 1, images: [], videos: ['/data/set/clips/a.mp4'], question: 'What happens?', answer: 'cooking', type: 'what' },
      { id: '7', line: 3, images: ['/abs/x.png', '/data/set/y.png'], videos: [], conversation: [{ role: 'user', content: [{ type: 'image' }, { type: 'image' }, { type: 'text', text: 'Same?' }] }] },
      { id: 'c', line: 4, images: ['/data/set/i.png'], videos: ['/data/set/v1.mp4', '/data/set/v2.mp4'], question: 'Q' },
    ]);
  });

  test('every structural problem is reported at once, with its line', () => {
    const text = lines(
      '{"id": "a", "question": ',
      { question: 'no id' },
      { id: 'b' },
      { id: 'c', question: 'q', conversation: [] },
      { id: 'd', question: 'q', vidoe: 'typo.mp4' },
      { id: 'e', question: 'q', video: 3 },
      { id: 'f', conversation: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] },
      { id: 'g', conversation: [{ role: 'bot', content: 'x' }] },
      { id: 'h', question: 'q', answer: 4 },
      { id: 'ok', question: 'q' },
      { id: 'ok', question: 'duplicate id' },
    );
    let err: unknown;
    try {
      parseManifest(text, FILE);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InputError);
    const message = (err as Error).message;
    expect(message).toMatch(/^\/data\/set\/manifest\.jsonl: 10 bad manifest line\(s\)/);
    for (const want of [
      /line 1: not valid JSON/,
      /line 2: "id" must be a non-empty string or a number/,
      /line 3: needs "question" or "conversation"/,
      /line 4: give "question" or "conversation", not both/,
      /line 5: unknown field\(s\) vidoe/,
      /line 6: "video" must be a path or a list of paths/,
      /line 7: the conversation must end with a user message/,
      /line 8: conversation\[0\]\.role must be user, assistant or system/,
      /line 9: "answer" must be a string/,
      /line 11: id "ok" already used on line 10/,
    ]) {
      expect(message).toMatch(want);
    }
  });

  test('an empty manifest and a missing file are InputErrors', async () => {
    expect(() => parseManifest('\n\n', FILE)).toThrow(/no items/);
    await expect(readManifest(path.join(os.tmpdir(), 'no-such-manifest.jsonl'))).rejects.toThrow(/manifest not found/);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-manifest-'));
    fs.writeFileSync(path.join(dir, 'm.jsonl'), lines({ id: 1, image: 'a.png', question: 'q' }));
    expect((await readManifest(path.join(dir, 'm.jsonl')))[0].images).toEqual([path.join(dir, 'a.png')]);
  });
});
