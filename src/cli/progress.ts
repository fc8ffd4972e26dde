/** A one-line progress bar on stderr while loading weights; a single summary line when stderr is not a terminal. */
import { LoadProgress } from '../models/video_llava/loading';

const MB = 1024 * 1024;

export function loadProgressBar(stream: NodeJS.WriteStream = process.stderr): { update: (p: LoadProgress) => void; done: () => void } {
  const tty = stream.isTTY === true;
  let last: LoadProgress | null = null;
  let lastDraw = 0;
  const line = (p: LoadProgress) => {
    const frac = p.bytesTotal > 0 ? p.bytesLoaded / p.bytesTotal : 1;
    const width = 24;
    const filled = Math.round(frac * width);
    return `loading [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(p.bytesLoaded / MB).toFixed(1)}/${(p.bytesTotal / MB).toFixed(1)} MB, ${p.tensorsLoaded}/${p.tensorsTotal} tensors`;
  };
  return {
    update(p) {
      last = p;
      const now = Date.now();
      if (tty && (now - lastDraw > 100 || p.tensorsLoaded === p.tensorsTotal)) {
        stream.write(`\r${line(p)}`);
        lastDraw = now;
      }
    },
    done() {
      if (!last) return;
      stream.write(tty ? '\n' : `${line(last)}\n`);
    },
  };
}
