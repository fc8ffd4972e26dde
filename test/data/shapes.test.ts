/**
 * The procedural shapes data: determinism, and labels that match the pixels. The facts of each scene are
 * recovered from its rendered frames by simple image analysis (saturated pixels, connected components,
 * fill ratios, centroids, mean colours) and compared with what the generator says it drew.
 */
import { makeExample, questionTypes, answer, questionsFor, vocabularyWords, QUESTION_TYPES, NUMBER_WORDS } from '../../src/data/questions';
import { Rng, hashSeed } from '../../src/data/rng';
import { COLOURS, COLOUR_NAMES, ColourName, EVENTS, SHAPES, ShapeName, VIDEO_FRAMES, renderScene, sampleScene } from '../../src/data/shapes';
import { InputError } from '../../src/errors';
import type { RawImage } from '../../src/processing/image';
import { createHash } from 'crypto';
import { exampleOptions, readTrainConfig } from '../../examples/train_demo/common';

const SIZE = 96;

/** Pixels that belong to a shape: shapes are saturated, backgrounds are not (and antialiased edges are skipped). */
function shapeMask(img: RawImage): Uint8Array {
  const mask = new Uint8Array(img.width * img.height);
  for (let i = 0; i < mask.length; i++) {
    const r = img.data[3 * i];
    const g = img.data[3 * i + 1];
    const b = img.data[3 * i + 2];
    mask[i] = Math.max(r, g, b) - Math.min(r, g, b) > 90 ? 1 : 0;
  }
  return mask;
}

interface Component {
  pixels: number[];
  x0: number;
  x1: number;
  y0: number;
  y1: number;
}

/** 4-connected components of the mask, ignoring specks of fewer than 12 pixels. */
function components(mask: Uint8Array, w: number, h: number): Component[] {
  const seen = new Uint8Array(mask.length);
  const out: Component[] = [];
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || seen[start]) continue;
    const c: Component = { pixels: [], x0: w, x1: -1, y0: h, y1: -1 };
    const stack = [start];
    seen[start] = 1;
    while (stack.length) {
      const p = stack.pop()!;
      const x = p % w;
      const y = Math.floor(p / w);
      c.pixels.push(p);
      c.x0 = Math.min(c.x0, x);
      c.x1 = Math.max(c.x1, x);
      c.y0 = Math.min(c.y0, y);
      c.y1 = Math.max(c.y1, y);
      for (const q of [x > 0 ? p - 1 : -1, x < w - 1 ? p + 1 : -1, y > 0 ? p - w : -1, y < h - 1 ? p + w : -1]) {
        if (q >= 0 && mask[q] && !seen[q]) {
          seen[q] = 1;
          stack.push(q);
        }
      }
    }
    if (c.pixels.length >= 12) out.push(c);
  }
  return out;
}

/** Which shape a component is: fill ratio of its box, then the widths of its top and bottom rows. */
function classify(c: Component, w: number): ShapeName {
  const bw = c.x1 - c.x0 + 1;
  const bh = c.y1 - c.y0 + 1;
  const fill = c.pixels.length / (bw * bh);
  if (fill > 0.88) return 'square';
  if (fill > 0.68) return 'circle';
  const rowWidth = (y: number) => c.pixels.filter((p) => Math.floor(p / w) === y).length;
  const top = rowWidth(c.y0 + Math.round(0.2 * (bh - 1)));
  const bottom = rowWidth(c.y0 + Math.round(0.8 * (bh - 1)));
  return bottom > 1.8 * top ? 'triangle' : 'cross';
}

function meanColour(img: RawImage, c: Component): [number, number, number] {
  const sum = [0, 0, 0];
  for (const p of c.pixels) for (let k = 0; k < 3; k++) sum[k] += img.data[3 * p + k];
  return sum.map((s) => s / c.pixels.length) as [number, number, number];
}

function nearestColour(rgb: readonly number[]): ColourName {
  const d = (name: ColourName) => COLOURS[name].reduce((s, v, k) => s + (v - rgb[k]) ** 2, 0);
  return COLOUR_NAMES.reduce((best, name) => (d(name) < d(best) ? name : best));
}

function centroid(c: Component, w: number): [number, number] {
  let sx = 0;
  let sy = 0;
  for (const p of c.pixels) {
    sx += p % w;
    sy += Math.floor(p / w);
  }
  return [sx / c.pixels.length, sy / c.pixels.length];
}

const frameComponents = (f: RawImage) => components(shapeMask(f), f.width, f.height);

describe('procedural shapes', () => {
  test('an example depends only on (seed, index)', () => {
    const a = makeExample(5, 17);
    makeExample(5, 3); // generating others in between changes nothing
    const b = makeExample(5, 17);
    expect(b.facts).toEqual(a.facts);
    expect(b.qa).toEqual(a.qa);
    expect(b.frames.map((f) => Buffer.from(f.data).toString('base64'))).toEqual(a.frames.map((f) => Buffer.from(f.data).toString('base64')));
    const c = makeExample(6, 17);
    expect(Buffer.from(c.frames[0].data).equals(Buffer.from(a.frames[0].data))).toBe(false);
  });

  test('the shipped model\'s training data is pinned (examples of examples/train_demo/config.json)', async () => {
    // Golden values of this generator, not of a reference: if they change, the data behind
    // assets/trained-model changed and the model must be retrained (examples/train_demo/train.ts).
    const cfg = await readTrainConfig();
    const pinned = [
      { facts: { media: 'video', event: 'still', shape: 'triangle', colour: 'yellow', count: 2 }, sha256: '6e5a036378b7c9da52f34a0e0e0364afe40a9c43141579cd7509dde264caeb7a', turns: ['describe', 'colour', 'shape', 'change', 'count'] },
      { facts: { media: 'video', event: 'move', shape: 'cross', colour: 'purple', count: 1, direction: 'down' }, sha256: '66dd36016f6221c950acdb189be016a211d3706ebb32b7f83164d87ef3516b8d', turns: ['change', 'count', 'colour', 'direction', 'shape'] },
      { facts: { media: 'video', event: 'still', shape: 'square', colour: 'orange', count: 2 }, sha256: '4db49d71205bd1f47be8c6ef0956b8a43383d19e71b3789a46dd1a5cf5d53a02', turns: ['describe', 'change', 'count', 'shape', 'colour'] },
    ];
    pinned.forEach((pin, i) => {
      const ex = makeExample(cfg.dataSeed, i, exampleOptions(cfg));
      const hash = createHash('sha256');
      for (const f of ex.frames) hash.update(f.data);
      expect({ facts: ex.facts, sha256: hash.digest('hex'), turns: ex.qa.map((q) => q.type) }).toEqual(pin);
    });
  });

  test('images have one frame, videos eight, at the requested size', () => {
    const img = makeExample(2, 0, { media: 'image', size: 64 });
    expect(img.frames).toHaveLength(1);
    expect(img.frames[0]).toMatchObject({ width: 64, height: 64, channels: 3 });
    expect(img.frames[0].data).toHaveLength(64 * 64 * 3);
    const vid = makeExample(2, 0, { media: 'video', size: 64 });
    expect(vid.frames).toHaveLength(VIDEO_FRAMES);
  });

  test('every shape, colour, event and count occurs', () => {
    const facts = Array.from({ length: 300 }, (_, i) => makeExample(3, i, { size: 16 }).facts);
    expect(new Set(facts.map((f) => f.shape))).toEqual(new Set(SHAPES));
    expect(new Set(facts.map((f) => f.colour))).toEqual(new Set(COLOUR_NAMES));
    expect(new Set(facts.map((f) => f.event))).toEqual(new Set(EVENTS));
    expect(new Set(facts.filter((f) => f.event === 'still').map((f) => f.count))).toEqual(new Set([1, 2, 3, 4]));
    expect(new Set(facts.filter((f) => f.event === 'move').map((f) => f.direction))).toEqual(new Set(['left', 'right', 'up', 'down']));
    const images = facts.filter((f) => f.media === 'image').length;
    expect(images / facts.length).toBeGreaterThan(0.2); // default imageFraction 0.3
    expect(images / facts.length).toBeLessThan(0.4);
  });

  test('the labels match the pixels (shape, colour, count, direction, change frame)', () => {
    for (let i = 0; i < 40; i++) {
      const ex = makeExample(11, i, { size: SIZE, noise: 0 });
      const f = ex.facts;
      const comps = ex.frames.map(frameComponents);
      const where = `example ${i} ${JSON.stringify(f)}`;
      const visible = comps.map((c) => c.length);
      const k = f.changeFrame ?? 0;
      const expectedVisible = ex.frames.map((_, t) => (f.event === 'appear' ? (t >= k ? 1 : 0) : f.event === 'disappear' ? (t < k ? 1 : 0) : f.count));
      expect([where, visible]).toEqual([where, expectedVisible]);
      comps.forEach((frame, t) =>
        frame.forEach((c) => {
          expect([where, t, classify(c, SIZE)]).toEqual([where, t, f.shape]);
          const colour = f.event === 'recolour' && t >= k ? f.toColour : f.colour;
          expect([where, t, nearestColour(meanColour(ex.frames[t], c))]).toEqual([where, t, colour]);
        }),
      );
      if (f.event === 'move') {
        const [x0, y0] = centroid(comps[0][0], SIZE);
        const [x1, y1] = centroid(comps[VIDEO_FRAMES - 1][0], SIZE);
        const dx = x1 - x0;
        const dy = y1 - y0;
        const seen = Math.abs(dx) > Math.abs(dy) ? (dx > 0 ? 'right' : 'left') : dy > 0 ? 'down' : 'up';
        expect([where, seen]).toEqual([where, f.direction]);
        expect(Math.max(Math.abs(dx), Math.abs(dy))).toBeGreaterThan(0.3 * SIZE); // visible motion: ≥ 30% of the frame
      }
    }
  });

  test('shapes lie inside the frame and do not overlap', () => {
    for (let i = 0; i < 200; i++) {
      const scene = sampleScene(new Rng(hashSeed(21, i)));
      for (const frame of scene.frames) {
        for (const s of frame) {
          expect(s.x - s.r).toBeGreaterThan(0);
          expect(s.y - s.r).toBeGreaterThan(0);
          expect(s.x + s.r).toBeLessThan(1);
          expect(s.y + s.r).toBeLessThan(1);
        }
        for (let a = 0; a < frame.length; a++) {
          for (let b = a + 1; b < frame.length; b++) expect(Math.hypot(frame[a].x - frame[b].x, frame[a].y - frame[b].y)).toBeGreaterThan(frame[a].r + frame[b].r);
        }
      }
    }
  });

  test('bad render options are typed errors', () => {
    const scene = sampleScene(new Rng(1));
    expect(() => renderScene(scene, new Rng(1), { size: 4 })).toThrow(InputError);
    expect(() => renderScene(scene, new Rng(1), { size: 10.5 })).toThrow(/size/);
    expect(() => renderScene(scene, new Rng(1), { noise: -1 })).toThrow(/noise/);
  });
});

describe('questions and answers', () => {
  test('which questions are asked of which scenes', () => {
    const base = { media: 'video' as const, shape: 'circle' as const, colour: 'red' as const, count: 1 };
    expect(questionTypes({ ...base, event: 'move', direction: 'left' })).toEqual(['shape', 'colour', 'direction', 'count', 'change', 'describe']);
    expect(questionTypes({ ...base, event: 'still', count: 3 })).toEqual(['shape', 'colour', 'count', 'change', 'describe']);
    expect(questionTypes({ ...base, event: 'appear', changeFrame: 3 })).toEqual(['shape', 'colour', 'change', 'describe']);
    expect(questionTypes({ ...base, event: 'recolour', toColour: 'blue', changeFrame: 3 })).toEqual(['shape', 'change', 'describe']);
    expect(questionTypes({ ...base, media: 'image', event: 'still', count: 2 })).toEqual(['shape', 'colour', 'count', 'describe']);
  });

  test('answers', () => {
    const move = { media: 'video' as const, event: 'move' as const, shape: 'cross' as const, colour: 'purple' as const, count: 1, direction: 'up' as const };
    expect(QUESTION_TYPES.filter((t) => questionTypes(move).includes(t)).map((t) => answer(t, move))).toEqual([
      'cross.',
      'purple.',
      'up.',
      'one.',
      'it moves.',
      'a purple cross moves up.',
    ]);
    const still = { media: 'video' as const, event: 'still' as const, shape: 'cross' as const, colour: 'green' as const, count: 3 };
    expect(answer('describe', still)).toBe('three green crosses stay still.');
    expect(answer('change', still)).toBe('nothing.');
    expect(answer('describe', { ...still, media: 'image', count: 1 })).toBe('a green cross.');
    expect(answer('describe', { ...still, event: 'recolour', count: 1, toColour: 'red', changeFrame: 4 })).toBe('a green cross turns red.');
    expect(answer('change', { ...still, event: 'disappear', count: 1, changeFrame: 4 })).toBe('it disappears.');
  });

  test('every word of every question and answer is in the vocabulary', () => {
    const words = new Set(vocabularyWords());
    for (let i = 0; i < 200; i++) {
      const ex = makeExample(4, i, { size: 16 });
      for (const q of questionsFor(ex.facts, new Rng(i))) {
        for (const w of `${q.question} ${q.answer}`.split(/[^A-Za-z]+/).filter(Boolean)) expect([w, words.has(w)]).toEqual([w, true]);
      }
    }
    for (const n of NUMBER_WORDS.slice(1)) expect(words.has(n)).toBe(true);
  });
});

describe('training conversations', () => {
  test('atomic questions in random order; the description only first, never after answers it repeats', () => {
    let describedFirst = 0;
    const firstTypes = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const ex = makeExample(12, i, { size: 8 });
      const types = ex.qa.map((q) => q.type);
      const atomic = questionTypes(ex.facts).filter((t) => t !== 'describe');
      expect([...types].filter((t) => t !== 'describe').sort()).toEqual([...atomic].sort());
      expect(types.indexOf('describe')).toBeLessThanOrEqual(0);
      if (types[0] === 'describe') describedFirst++;
      firstTypes.add(types[0]);
    }
    expect(describedFirst / 200).toBeGreaterThan(0.2); // describeFirst 0.3
    expect(describedFirst / 200).toBeLessThan(0.4);
    expect(firstTypes).toEqual(new Set(QUESTION_TYPES)); // every type gets asked as the (single-turn-like) first question
  });
});
