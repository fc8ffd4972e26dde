/**
 * Procedural scenes for the demo model: coloured shapes on plain or textured backgrounds, as one image or
 * as an 8-frame video in which a shape moves, appears, disappears or changes colour (or nothing happens).
 * Everything is drawn here in TypeScript into RGB frames (antialiased by 4×4 supersampling), from a
 * seeded generator, so a data set is a (seed, index) → example function with no files behind it.
 *
 * Sizes are fractions of the frame side, so the same scene can be drawn at any resolution; the processor
 * later resizes frames to the model's input size (bicubic, as for any other image).
 */
import { InputError } from '../errors';
import type { RawImage } from '../processing/image';
import { Rng, hashSeed } from './rng';

export const SHAPES = ['circle', 'square', 'triangle', 'cross'] as const;
export type ShapeName = (typeof SHAPES)[number];

/** Shape colours: saturated, far from each other and from the (dark, muted) backgrounds. */
export const COLOURS = {
  red: [225, 35, 35],
  orange: [250, 140, 20],
  yellow: [245, 225, 40],
  green: [40, 190, 60],
  blue: [45, 100, 240],
  purple: [160, 60, 215],
} as const satisfies Record<string, readonly [number, number, number]>;
export type ColourName = keyof typeof COLOURS;
export const COLOUR_NAMES = Object.keys(COLOURS) as ColourName[];

export const DIRECTIONS = ['left', 'right', 'up', 'down'] as const;
export type Direction = (typeof DIRECTIONS)[number];

/** What happens in a video ('still' for images and videos where nothing changes). */
export const EVENTS = ['still', 'move', 'appear', 'disappear', 'recolour'] as const;
export type SceneEvent = (typeof EVENTS)[number];

export const MAX_COUNT = 4;
export const VIDEO_FRAMES = 8;

type Rgb = readonly [number, number, number];

/** Muted background colours (no shape colour is near any of them). */
const BACKGROUNDS: readonly Rgb[] = [
  [18, 18, 20],
  [45, 45, 50],
  [80, 80, 80],
  [110, 110, 115],
  [30, 32, 62],
  [62, 44, 32],
  [30, 58, 48],
];

export const TEXTURES = ['plain', 'checker', 'stripes', 'noise'] as const;
export type TextureName = (typeof TEXTURES)[number];

export interface Background {
  texture: TextureName;
  base: Rgb;
  /** Second colour of checker / stripes, amplitude direction of noise. */
  other: Rgb;
  /** Cell, stripe or noise-grid size as a fraction of the side. */
  scale: number;
  /** Stripe orientation: 0 horizontal, 1 vertical, 2 diagonal. */
  orientation: number;
  /** Seed of the noise texture. */
  seed: number;
}

/** One shape in one frame; position and radius are fractions of the side. */
export interface Placed {
  shape: ShapeName;
  rgb: Rgb;
  x: number;
  y: number;
  r: number;
}

/** What a scene shows, in words the questions are answered from. */
export interface SceneFacts {
  media: 'image' | 'video';
  event: SceneEvent;
  shape: ShapeName;
  /** Colour of every shape (before the change, for 'recolour'). */
  colour: ColourName;
  /** Number of shapes (all the same shape and colour); 1 unless the event is 'still'. */
  count: number;
  direction?: Direction; // 'move'
  toColour?: ColourName; // 'recolour'
  /** First frame that differs ('appear', 'disappear', 'recolour'). */
  changeFrame?: number;
}

export interface Scene {
  facts: SceneFacts;
  background: Background;
  /** The shapes of each frame (one entry for an image). */
  frames: Placed[][];
}

export interface SceneOptions {
  /** 'image', 'video', or undefined: drawn with probability imageFraction. */
  media?: 'image' | 'video';
  /** Share of images when media is not fixed (default 0.3). */
  imageFraction?: number;
  /** Relative weights of the video events (default move 0.35, the others 0.15 or 0.2). */
  eventWeights?: Partial<Record<SceneEvent, number>>;
}

const DEFAULT_EVENT_WEIGHTS: Record<SceneEvent, number> = { move: 0.35, still: 0.2, appear: 0.15, disappear: 0.15, recolour: 0.15 };

function jitter(rng: Rng, c: Rgb, amount: number): Rgb {
  const j = (v: number) => Math.max(0, Math.min(255, Math.round(v + rng.uniform(-amount, amount))));
  return [j(c[0]), j(c[1]), j(c[2])];
}

function sampleBackground(rng: Rng): Background {
  const base = jitter(rng, rng.pick(BACKGROUNDS), 8);
  const texture = rng.weighted<TextureName>({ plain: 0.4, checker: 0.2, stripes: 0.2, noise: 0.2 });
  const delta = rng.uniform(14, 30) * (rng.next() < 0.5 ? -1 : 1);
  const other: Rgb = [0, 1, 2].map((c) => Math.max(0, Math.min(255, Math.round(base[c] + delta)))) as unknown as Rgb;
  return { texture, base, other, scale: rng.uniform(0.07, 0.16), orientation: rng.int(0, 2), seed: Math.floor(rng.next() * 2 ** 32) };
}

/**
 * Shape centres lie on a lattice of LATTICE steps per side, and each kind of scene has one shape size.
 * At the model's input (32 px, patch 8) a lattice step is half a patch, so a shape shows the patch
 * embedding one of a few pixel patterns instead of a continuum of sub-patch offsets and sizes: a small
 * ViT trained from scratch then learns shapes in hundreds of steps instead of not at all (measured).
 */
export const LATTICE = 8;
/** Radii (fractions of the side): one shape, several shapes, a moving shape. */
export const RADIUS = { single: 0.19, several: 0.1 } as const;
/** A moving shape advances half a lattice step per frame: 7/16 of the side over 8 frames. */
const MOVE_STEP = 1 / (2 * LATTICE);

/**
 * Lattice coordinates k / LATTICE that keep a shape of radius r inside the frame (margin 0.02), with k of
 * the given parity when asked: odd k are patch centres, even k patch corners (at 32 px, patch 8).
 */
function latticeRange(r: number, parity?: 0 | 1): number[] {
  const out: number[] = [];
  for (let k = 1; k < LATTICE; k++) {
    if (parity !== undefined && k % 2 !== parity) continue;
    if (k / LATTICE - r >= 0.02 && k / LATTICE + r <= 0.98) out.push(k / LATTICE);
  }
  return out;
}

/** Non-overlapping lattice centres for `n` shapes of radius r: several small shapes sit on patch centres, one big shape on patch corners. */
function placeApart(rng: Rng, n: number, r: number): Array<[number, number]> {
  const axis = latticeRange(r, n === 1 ? 0 : 1);
  for (let attempt = 0; attempt < 500; attempt++) {
    const centres: Array<[number, number]> = [];
    for (let i = 0; i < n; i++) {
      const c: [number, number] = [rng.pick(axis), rng.pick(axis)];
      if (centres.every(([x, y]) => Math.hypot(x - c[0], y - c[1]) >= 2 * r + 0.04)) centres.push(c);
      else break;
    }
    if (centres.length === n) return centres;
  }
  throw new InputError('count', `cannot place ${n} shapes of radius ${r} apart`);
}

/** A random scene. Same rng state → same scene. */
export function sampleScene(rng: Rng, options: SceneOptions = {}): Scene {
  const media = options.media ?? (rng.next() < (options.imageFraction ?? 0.3) ? 'image' : 'video');
  const event: SceneEvent = media === 'image' ? 'still' : rng.weighted({ ...DEFAULT_EVENT_WEIGHTS, ...options.eventWeights });
  const shape = rng.pick(SHAPES);
  const colour = rng.pick(COLOUR_NAMES);
  const rgb = jitter(rng, COLOURS[colour], 18);
  const background = sampleBackground(rng);
  const facts: SceneFacts = { media, event, shape, colour, count: 1 };
  const T = media === 'image' ? 1 : VIDEO_FRAMES;
  const frames: Placed[][] = [];

  if (event === 'still') {
    facts.count = rng.int(1, MAX_COUNT);
    const r = facts.count === 1 ? RADIUS.single : RADIUS.several;
    const placed = placeApart(rng, facts.count, r).map(([x, y]) => ({ shape, rgb, x, y, r }));
    for (let t = 0; t < T; t++) frames.push(placed);
    return { facts, background, frames };
  }

  if (event === 'move') {
    const r = RADIUS.single;
    const direction = rng.pick(DIRECTIONS);
    facts.direction = direction;
    const travel = MOVE_STEP * (T - 1);
    // along the motion: the lower end of the path on the half-step lattice, the whole path inside the frame
    const starts = latticeRange(r).flatMap((x) => [x, x + MOVE_STEP]).filter((x) => x + travel + r <= 0.98);
    const start = rng.pick(starts);
    const across = rng.pick(latticeRange(r, 0));
    const sign = direction === 'right' || direction === 'down' ? 1 : -1;
    const from = sign > 0 ? start : start + travel;
    for (let t = 0; t < T; t++) {
      const along = from + sign * MOVE_STEP * t;
      const horizontal = direction === 'left' || direction === 'right';
      frames.push([{ shape, rgb, x: horizontal ? along : across, y: horizontal ? across : along, r }]);
    }
    return { facts, background, frames };
  }

  const r = RADIUS.single;
  const [[x, y]] = placeApart(rng, 1, r);
  const k = rng.int(2, T - 2); // first changed frame: at least two frames before and after
  facts.changeFrame = k;
  let toRgb = rgb;
  if (event === 'recolour') {
    facts.toColour = rng.pick(COLOUR_NAMES.filter((c) => c !== colour));
    toRgb = jitter(rng, COLOURS[facts.toColour], 18);
  }
  for (let t = 0; t < T; t++) {
    const before = t < k;
    if (event === 'appear') frames.push(before ? [] : [{ shape, rgb, x, y, r }]);
    else if (event === 'disappear') frames.push(before ? [{ shape, rgb, x, y, r }] : []);
    else frames.push([{ shape, rgb: before ? rgb : toRgb, x, y, r }]);
  }
  return { facts, background, frames };
}

// ------------------------------------------------------------------------------------------------ drawing

/** Is the point (dx, dy), relative to the centre and in units of the radius, inside the shape? */
function inside(shape: ShapeName, dx: number, dy: number): boolean {
  switch (shape) {
    case 'circle':
      return dx * dx + dy * dy <= 1;
    case 'square':
      return Math.abs(dx) <= 0.82 && Math.abs(dy) <= 0.82;
    case 'triangle': {
      // equilateral, apex up, circumradius 1.15, centroid at the centre
      const R = 1.15;
      return dy >= -R && dy <= R / 2 && Math.abs(dx) <= (dy + R) / Math.sqrt(3);
    }
    case 'cross': {
      const arm = 0.34;
      return (Math.abs(dx) <= 1 && Math.abs(dy) <= arm) || (Math.abs(dy) <= 1 && Math.abs(dx) <= arm);
    }
  }
}

/** Smooth value noise in [-1, 1] on a grid of `cells` cells per side, bilinear between grid values. */
function valueNoise(seed: number, cells: number, u: number, v: number): number {
  const gx = u * cells;
  const gy = v * cells;
  const x0 = Math.floor(gx);
  const y0 = Math.floor(gy);
  const fx = gx - x0;
  const fy = gy - y0;
  const at = (i: number, j: number) => hashSeed(seed, i, j) / 2 ** 31 - 1;
  const sx = fx * fx * (3 - 2 * fx);
  const sy = fy * fy * (3 - 2 * fy);
  const top = at(x0, y0) * (1 - sx) + at(x0 + 1, y0) * sx;
  const bottom = at(x0, y0 + 1) * (1 - sx) + at(x0 + 1, y0 + 1) * sx;
  return top * (1 - sy) + bottom * sy;
}

/** The background as float RGB, [size·size·3]. */
function drawBackground(bg: Background, size: number): Float32Array {
  const out = new Float32Array(size * size * 3);
  const cells = Math.max(2, Math.round(1 / bg.scale));
  for (let py = 0; py < size; py++) {
    for (let px = 0; px < size; px++) {
      const u = (px + 0.5) / size;
      const v = (py + 0.5) / size;
      let w = 0; // weight of `other`
      if (bg.texture === 'checker') w = (Math.floor(u / bg.scale) + Math.floor(v / bg.scale)) % 2;
      else if (bg.texture === 'stripes') w = Math.floor((bg.orientation === 0 ? v : bg.orientation === 1 ? u : (u + v) / Math.SQRT2) / bg.scale) % 2;
      else if (bg.texture === 'noise') w = 0.5 + 0.5 * valueNoise(bg.seed, cells, u, v);
      const o = (py * size + px) * 3;
      for (let c = 0; c < 3; c++) out[o + c] = bg.base[c] * (1 - w) + bg.other[c] * w;
    }
  }
  return out;
}

const SUBSAMPLES = 4;

/** Draws one shape over `img` (float RGB), with coverage from SUBSAMPLES² points per pixel. */
function drawShape(img: Float32Array, size: number, s: Placed): void {
  const cx = s.x * size;
  const cy = s.y * size;
  const rad = s.r * size;
  const reach = 1.2 * rad + 1;
  const x0 = Math.max(0, Math.floor(cx - reach));
  const x1 = Math.min(size - 1, Math.ceil(cx + reach));
  const y0 = Math.max(0, Math.floor(cy - reach));
  const y1 = Math.min(size - 1, Math.ceil(cy + reach));
  for (let py = y0; py <= y1; py++) {
    for (let px = x0; px <= x1; px++) {
      let hits = 0;
      for (let sy = 0; sy < SUBSAMPLES; sy++) {
        for (let sx = 0; sx < SUBSAMPLES; sx++) {
          const dx = (px + (sx + 0.5) / SUBSAMPLES - cx) / rad;
          const dy = (py + (sy + 0.5) / SUBSAMPLES - cy) / rad;
          if (inside(s.shape, dx, dy)) hits++;
        }
      }
      if (hits === 0) continue;
      const a = hits / (SUBSAMPLES * SUBSAMPLES);
      const o = (py * size + px) * 3;
      for (let c = 0; c < 3; c++) img[o + c] = img[o + c] * (1 - a) + s.rgb[c] * a;
    }
  }
}

export interface RenderOptions {
  /** Side of the square frames in pixels (default 96). */
  size?: number;
  /** Per-pixel uniform noise amplitude in levels, fresh in every frame (default 3; 0 for none). */
  noise?: number;
}

/** The frames of a scene as RGB images. `rng` supplies the per-frame pixel noise. */
export function renderScene(scene: Scene, rng: Rng, options: RenderOptions = {}): RawImage[] {
  const size = options.size ?? 96;
  const noise = options.noise ?? 3;
  if (!Number.isInteger(size) || size < 8 || size > 1024) throw new InputError('size', `expected an integer in [8, 1024], found ${size}`);
  if (!(noise >= 0 && noise <= 64)) throw new InputError('noise', `expected a number in [0, 64], found ${noise}`);
  const background = drawBackground(scene.background, size);
  return scene.frames.map((shapes) => {
    const img = background.slice();
    for (const s of shapes) drawShape(img, size, s);
    const data = new Uint8Array(img.length);
    for (let i = 0; i < img.length; i++) {
      const v = img[i] + (noise > 0 ? rng.uniform(-noise, noise) : 0);
      data[i] = Math.max(0, Math.min(255, Math.round(v)));
    }
    return { data, width: size, height: size, channels: 3 as const };
  });
}
