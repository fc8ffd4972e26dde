/**
 * A shapes data set written out as an evaluation manifest (src/eval/manifest.ts): each example's video
 * (H.264 MP4, as the shipped sample) or image (PNG) under `media/`, and one manifest line per question
 * with its exact answer and type. What `video-llava eval` and the benchmarks run the trained demo model on.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { writeImage, writeVideo } from './media';
import { QaPair, ShapesExample, questionsFor } from './questions';

export interface ShapesManifestOptions {
  /** The questions asked of an example (default: every answerable one, canonical phrasing). */
  questions?: (example: ShapesExample) => QaPair[];
  /** Stop after this many manifest lines. */
  maxItems?: number;
}

/** Writes `dir/manifest.jsonl` and `dir/media/*`; returns the manifest path and its line count. */
export async function writeShapesManifest(dir: string, examples: readonly ShapesExample[], options: ShapesManifestOptions = {}): Promise<{ manifest: string; items: number }> {
  const media = path.join(dir, 'media');
  await fsp.mkdir(media, { recursive: true });
  const lines: string[] = [];
  const max = options.maxItems ?? Infinity;
  for (const ex of examples) {
    if (lines.length >= max) break;
    const name = `${ex.seed}-${ex.index}`;
    const field = ex.facts.media === 'video' ? 'video' : 'image';
    const file = `media/${name}.${field === 'video' ? 'mp4' : 'png'}`;
    if (field === 'video') await writeVideo(ex.frames, path.join(dir, file));
    else await writeImage(ex.frames[0], path.join(dir, file));
    for (const qa of (options.questions ?? ((e) => questionsFor(e.facts)))(ex)) {
      if (lines.length >= max) break;
      lines.push(JSON.stringify({ id: `${name}-${qa.type}`, [field]: file, question: qa.question, answer: qa.answer, type: qa.type }));
    }
  }
  const manifest = path.join(dir, 'manifest.jsonl');
  await fsp.writeFile(manifest, lines.map((l) => `${l}\n`).join(''));
  return { manifest, items: lines.length };
}
