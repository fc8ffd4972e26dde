/**
 * The demo's word-level tokenizer (src/data/vocab.ts) and its training sequences (src/data/conversation.ts).
 * That Python's AutoTokenizer encodes the same texts to the same ids is checked by reference/check_demo.py.
 */
import { conversationText, encodeConversation, IGNORE_INDEX } from '../../src/data/conversation';
import { makeExample, promptFor, questionsFor, QaPair, TEMPLATES, QUESTION_TYPES, vocabularyWords } from '../../src/data/questions';
import { buildWordTokenizer } from '../../src/data/vocab';
import { InputError, TokenizerError } from '../../src/errors';
import { applyChatTemplate } from '../../src/processing/chat_template';
import { LlamaTokenizer } from '../../src/processing/tokenizer';

const BARE = ['What', 'Which', 'Where', 'How', 'Describe', 'USER'];

function demoTokenizer(): LlamaTokenizer {
  const files = buildWordTokenizer(vocabularyWords(), BARE);
  const model = files.tokenizer.model as { vocab: Record<string, number>; merges: Array<[string, string]> };
  return new LlamaTokenizer({
    vocab: model.vocab,
    merges: model.merges,
    addedTokens: (files.tokenizer.added_tokens as Array<{ id: number; content: string }>).map((t) => ({ ...t, special: true })),
    addBosToken: true,
    addEosToken: false,
    padToken: '<pad>',
  });
}

describe('demo tokenizer', () => {
  const tok = demoTokenizer();
  const pieces = (text: string) => tok.tokenize(text);

  test('layout: specials, bytes, then pieces; <image> <video> <pad> added after the vocabulary', () => {
    const files = buildWordTokenizer(vocabularyWords(), BARE);
    expect(tok.convertIdsToTokens([0, 1, 2, 3, 258])).toEqual(['<unk>', '<s>', '</s>', '<0x00>', '<0xFF>']);
    expect(files.ids).toEqual({ unk: 0, bos: 1, eos: 2, image: tok.vocabSize, video: tok.vocabSize + 1, pad: tok.vocabSize + 2 });
    expect(tok.size).toBe(files.size);
    expect([tok.imageTokenId, tok.videoTokenId, tok.padTokenId]).toEqual([files.ids.image, files.ids.video, files.ids.pad]);
  });

  test('every word is one piece after a space; the words that open a line are one piece bare too', () => {
    for (const w of vocabularyWords()) expect(pieces(` ${w}`)).toEqual([`▁${w}`]);
    for (const w of BARE) expect(pieces(`<video>${w}`)).toEqual(['<video>', w]);
  });

  test('the prompt of every question type is whole words, no byte fallback', () => {
    for (const type of QUESTION_TYPES) {
      for (const q of [...TEMPLATES[type].image, ...TEMPLATES[type].video]) {
        const p = pieces(promptFor('video', q));
        expect(p.filter((t) => /^<0x/.test(t))).toEqual(['<0x0A>']); // only the newline after <video>
      }
    }
    expect(pieces('USER: <video>\nWhat colour is the shape? ASSISTANT: red.')).toEqual(
      ['▁USER', ':', '▁', '<video>', '<0x0A>', 'What', '▁colour', '▁is', '▁the', '▁shape', '?', '▁ASSISTANT', ':', '▁red', '.'],
    );
  });

  test('unknown text still round-trips (characters, then bytes)', () => {
    const text = 'Is the ZEBRA ünder 42 ÷ 7?';
    expect(tok.decode(tok.encode(text), { skipSpecialTokens: true })).toBe(text);
  });

  test('the single-turn prompt is what the chat template makes of one user message', () => {
    const q = TEMPLATES.direction.video[0];
    expect(applyChatTemplate([{ role: 'user', content: [{ type: 'video' }, { type: 'text', text: q }] }], { addGenerationPrompt: true })).toBe(promptFor('video', q));
    expect(applyChatTemplate([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: q }] }], { addGenerationPrompt: true })).toBe(promptFor('image', q));
  });

  test('rejects words that are not plain letters', () => {
    expect(() => buildWordTokenizer(['ok', 'not ok'], [])).toThrow(TokenizerError);
  });
});

describe('training conversations', () => {
  const tok = demoTokenizer();

  test('labels are the answers and their </s>, -100 elsewhere; placeholders expanded', () => {
    for (let i = 0; i < 30; i++) {
      const ex = makeExample(9, i, { size: 16 });
      const n = ex.facts.media === 'image' ? 16 : 136;
      const enc = encodeConversation(tok, ex.facts.media, ex.qa, n);
      const placeholder = ex.facts.media === 'image' ? tok.imageTokenId : tok.videoTokenId;
      expect(enc.inputIds.filter((id) => id === placeholder)).toHaveLength(n);
      expect(enc.labels).toHaveLength(enc.inputIds.length);
      enc.labels.forEach((l, j) => expect(l === IGNORE_INDEX || l === enc.inputIds[j]).toBe(true));
      // the labelled tokens, split at </s>, decode to the answers in order
      const answers: string[] = [];
      let current: number[] = [];
      for (const l of enc.labels) {
        if (l === IGNORE_INDEX) continue;
        if (l === tok.eosTokenId) {
          answers.push(tok.decode(current));
          current = [];
        } else current.push(l);
      }
      expect(answers).toEqual(ex.qa.map((q) => q.answer));
      // the whole sequence is the tokenization of the conversation text
      const { text } = conversationText(ex.facts.media, ex.qa);
      const whole = tok.encode(text);
      const at = whole.indexOf(placeholder!);
      expect([...enc.inputIds.slice(0, at), ...enc.inputIds.slice(at + n)]).toEqual([...whole.slice(0, at), ...whole.slice(at + 1)]);
    }
  });

  test('the first turn is the inference prompt followed by the answer', () => {
    const ex = makeExample(9, 1, { size: 16 });
    const qa = questionsFor(ex.facts);
    const enc = encodeConversation(tok, ex.facts.media, qa, 1);
    const prompt = tok.encode(promptFor(ex.facts.media, qa[0].question));
    expect(enc.inputIds.slice(0, prompt.length)).toEqual(prompt);
    expect(enc.labels.slice(0, prompt.length).every((l) => l === IGNORE_INDEX)).toBe(true);
    const answer = tok.encode(` ${qa[0].answer}`, { addSpecialTokens: false });
    expect(enc.labels.slice(prompt.length, prompt.length + answer.length + 1)).toEqual([...answer, tok.eosTokenId]);
  });

  test('bad inputs are typed errors', () => {
    const qa: QaPair[] = [{ type: 'shape', question: 'What shape is it?', answer: 'circle.' }];
    expect(() => encodeConversation(tok, 'video', [], 8)).toThrow(InputError);
    expect(() => encodeConversation(tok, 'video', qa, 0)).toThrow(/placeholders/);
  });
});
