/**
 * Training sequences in the Video-LLaVA conversation format:
 *
 *   <s>USER: <video>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT: A2</s>…
 *
 * The first turn is exactly the single-turn prompt the CLI builds (promptFor + the answer), so what is
 * learnt there is what is asked at inference; later turns reuse the same visual features for more
 * supervision per forward pass. Labels are -100 everywhere except on the answer tokens and the </s>
 * closing each answer (the causal-LM loss shifts them: position t predicts labels[t + 1]).
 */
import { InputError } from '../errors';
import type { LlamaTokenizer } from '../processing/tokenizer';
import type { QaPair } from './questions';

export const IGNORE_INDEX = -100;

export interface EncodedConversation {
  inputIds: number[];
  labels: number[];
}

/** The conversation text, and the character spans [start, end) of each answer including its </s>. */
export function conversationText(media: 'image' | 'video', turns: readonly QaPair[], eos = '</s>'): { text: string; answers: Array<[number, number]> } {
  if (turns.length === 0) throw new InputError('turns', 'expected at least one question');
  let text = '';
  const answers: Array<[number, number]> = [];
  turns.forEach((turn, i) => {
    text += i === 0 ? `USER: ${media === 'image' ? '<image>' : '<video>'}\n${turn.question} ASSISTANT:` : `USER: ${turn.question} ASSISTANT:`;
    const start = text.length;
    text += ` ${turn.answer}${eos}`;
    answers.push([start, text.length]);
  });
  return { text, answers };
}

/**
 * Token ids and labels of a conversation about one image or video, with its placeholder expanded to
 * `placeholders` copies (the processor's count: patches per image, frames × (patches + 1) per video).
 * Answer spans are located by encoding text prefixes, which must tokenize as prefixes of the whole.
 */
export function encodeConversation(tokenizer: LlamaTokenizer, media: 'image' | 'video', turns: readonly QaPair[], placeholders: number): EncodedConversation {
  const { text, answers } = conversationText(media, turns, tokenizer.specialTokensMap.eos_token);
  const ids = tokenizer.encode(text);
  const labels = new Array<number>(ids.length).fill(IGNORE_INDEX);
  const prefixLength = (end: number) => {
    const p = tokenizer.encode(text.slice(0, end));
    if (p.some((id, i) => id !== ids[i])) throw new InputError('turns', `the text up to character ${end} does not tokenize as a prefix of the whole conversation`);
    return p.length;
  };
  for (const [start, end] of answers) {
    const from = prefixLength(start);
    const to = prefixLength(end);
    for (let i = from; i < to; i++) labels[i] = ids[i];
  }
  const placeholderId = media === 'image' ? tokenizer.imageTokenId : tokenizer.videoTokenId;
  const at = ids.indexOf(placeholderId ?? -1);
  if (at < 0 || !(placeholders >= 1)) throw new InputError('placeholders', `expected one ${media} placeholder to expand to ${placeholders} ≥ 1 tokens`);
  return {
    inputIds: [...ids.slice(0, at), ...new Array<number>(placeholders).fill(ids[at]), ...ids.slice(at + 1)],
    labels: [...labels.slice(0, at), ...new Array<number>(placeholders).fill(IGNORE_INDEX), ...labels.slice(at + 1)],
  };
}
