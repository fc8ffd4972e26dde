/**
 * Questions about a scene and their exact answers, plus the examples of a data set: (seed, index) →
 * scene, frames and every question that has one right answer for that scene.
 *
 *   type       asked of                         answer
 *   shape      every scene                      "circle."
 *   colour     every scene but 'recolour'       "red."
 *   direction  'move'                           "left." | "right." | "up." | "down."
 *   count      'still' and 'move'               "one." … "four."
 *   change     videos                           "it moves." | "it appears." | "it disappears." |
 *                                               "it changes colour." | "nothing."
 *   describe   every scene                      "a red circle moves left." | "an orange cross." |
 *                                               "three blue squares stay still." | …
 */
import type { RawImage } from '../processing/image';
import { Rng, hashSeed } from './rng';
import { COLOUR_NAMES, DIRECTIONS, Placed, RenderOptions, SHAPES, SceneFacts, SceneOptions, ShapeName, renderScene, sampleScene } from './shapes';

export const QUESTION_TYPES = ['shape', 'colour', 'direction', 'count', 'change', 'describe'] as const;
export type QuestionType = (typeof QUESTION_TYPES)[number];

/** The phrasings of each question; the first is the canonical one (README, tests). */
export const TEMPLATES: Record<QuestionType, { image: readonly string[]; video: readonly string[] }> = {
  shape: { image: ['What shape is it?', 'What shape do you see?'], video: ['What shape is it?', 'What shape do you see?'] },
  colour: { image: ['What colour is the shape?', 'What color is the shape?'], video: ['What colour is the shape?', 'What color is the shape?'] },
  direction: { image: [], video: ['Which way does the shape move?', 'Where is the shape moving?'] },
  count: { image: ['How many shapes are there?', 'How many shapes do you see?'], video: ['How many shapes are there?', 'How many shapes do you see?'] },
  change: { image: [], video: ['What changes in the video?', 'What happens to the shape?'] },
  describe: { image: ['What is in this image?', 'Describe the image.'], video: ['What is happening in this video?', 'Describe the video.'] },
};

export const NUMBER_WORDS = ['zero', 'one', 'two', 'three', 'four'] as const;

const PLURAL: Record<ShapeName, string> = { circle: 'circles', square: 'squares', triangle: 'triangles', cross: 'crosses' };

const CHANGE_ANSWER: Record<SceneFacts['event'], string> = {
  still: 'nothing.',
  move: 'it moves.',
  appear: 'it appears.',
  disappear: 'it disappears.',
  recolour: 'it changes colour.',
};

/** The question types with exactly one right answer for these facts, in QUESTION_TYPES order. */
export function questionTypes(facts: SceneFacts): QuestionType[] {
  return QUESTION_TYPES.filter((type) => {
    switch (type) {
      case 'colour':
        return facts.event !== 'recolour';
      case 'direction':
        return facts.event === 'move';
      case 'count':
        return facts.event === 'still' || facts.event === 'move';
      case 'change':
        return facts.media === 'video';
      default:
        return true;
    }
  });
}

/** The exact answer (with its final period) to a question of this type. */
export function answer(type: QuestionType, facts: SceneFacts): string {
  const { shape, colour, count } = facts;
  switch (type) {
    case 'shape':
      return `${shape}.`;
    case 'colour':
      return `${colour}.`;
    case 'direction':
      return `${facts.direction}.`;
    case 'count':
      return `${NUMBER_WORDS[count]}.`;
    case 'change':
      return CHANGE_ANSWER[facts.event];
    case 'describe': {
      const what = count === 1 ? `${/^[aeiou]/.test(colour) ? 'an' : 'a'} ${colour} ${shape}` : `${NUMBER_WORDS[count]} ${colour} ${PLURAL[shape]}`;
      if (facts.media === 'image') return `${what}.`;
      switch (facts.event) {
        case 'still':
          return count === 1 ? `${what} stays still.` : `${what} stay still.`;
        case 'move':
          return `${what} moves ${facts.direction}.`;
        case 'appear':
          return `${what} appears.`;
        case 'disappear':
          return `${what} disappears.`;
        case 'recolour':
          return `${what} turns ${facts.toColour}.`;
      }
    }
  }
}

export interface QaPair {
  type: QuestionType;
  question: string;
  answer: string;
}

/** Every answerable question of the scene, each in a phrasing drawn by `rng` (or the canonical one). */
export function questionsFor(facts: SceneFacts, rng?: Rng): QaPair[] {
  return questionTypes(facts).map((type) => {
    const phrasings = TEMPLATES[type][facts.media];
    const question = rng ? rng.pick(phrasings) : phrasings[0];
    return { type, question, answer: answer(type, facts) };
  });
}

/** The single-turn prompt in the Video-LLaVA format (what the chat template makes of one user message). */
export function promptFor(media: 'image' | 'video', question: string): string {
  return `USER: ${media === 'image' ? '<image>' : '<video>'}\n${question} ASSISTANT:`;
}

/** Every word a question or answer can contain, sorted (the demo tokenizer's word list). */
export function vocabularyWords(): string[] {
  const texts: string[] = ['USER: ASSISTANT:'];
  for (const t of QUESTION_TYPES) texts.push(...TEMPLATES[t].image, ...TEMPLATES[t].video);
  texts.push(...Object.values(CHANGE_ANSWER), ...NUMBER_WORDS, ...Object.values(PLURAL));
  texts.push(...SHAPES, ...COLOUR_NAMES, ...DIRECTIONS, 'a an stays stay still moves appears disappears turns');
  const words = new Set<string>();
  for (const text of texts) for (const w of text.split(/[^A-Za-z]+/)) if (w) words.add(w);
  return [...words].sort();
}

/**
 * The questions of one training conversation. Each turn can read the answers before it, so the order
 * matters: the atomic questions (shape, colour, direction, count, change) have disjoint answers and come
 * in random order, none giving another away; the description repeats most of them, so it is asked only
 * as the first turn (with probability `describeFirst`), never after them, where it could be copied.
 */
export function conversationTurns(facts: SceneFacts, rng: Rng, describeFirst = 0.3): QaPair[] {
  const all = questionsFor(facts, rng);
  const atomic = rng.shuffle(all.filter((q) => q.type !== 'describe'));
  const describe = all.find((q) => q.type === 'describe')!;
  return rng.next() < describeFirst ? [describe, ...atomic] : atomic;
}

export interface ExampleOptions extends SceneOptions, RenderOptions {}

export interface ShapesExample {
  seed: number;
  index: number;
  facts: SceneFacts;
  /** One frame for an image, VIDEO_FRAMES for a video. */
  frames: RawImage[];
  /** The shapes drawn in each frame (positions and radii as fractions of the side). */
  shapes: Placed[][];
  /** The questions of its training conversation (see conversationTurns), in a random phrasing. */
  qa: QaPair[];
}

/** Example `index` of the data set `seed`: independent of every other index. */
export function makeExample(seed: number, index: number, options: ExampleOptions = {}): ShapesExample {
  const rng = new Rng(hashSeed(seed, index));
  const scene = sampleScene(rng, options);
  const qa = conversationTurns(scene.facts, rng); // before rendering: the render size must not change the questions
  const frames = renderScene(scene, rng, options);
  return { seed, index, facts: scene.facts, frames, shapes: scene.frames, qa };
}
