/** A one-line progress bar on stderr while loading weights; a single summary line when stderr is not a terminal. */
import { DownloadProgress } from '../hub';
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

/** Download progress of a Hub model on stderr: bytes, total and speed. */
export function downloadProgress(stream: NodeJS.WriteStream = process.stderr): (p: DownloadProgress) => void {
  let lastDraw = 0;
  return (p) => {
    const now = Date.now();
    const finished = p.total > 0 && p.bytes >= p.total;
    if (now - lastDraw < 200 && !finished) return;
    lastDraw = now;
    const text = `downloading ${p.file}: ${(p.bytes / MB).toFixed(1)}/${(p.total / MB).toFixed(1)} MB at ${(p.bytesPerSecond / MB).toFixed(1)} MB/s`;
    stream.write(stream.isTTY ? `\r${text}${finished ? '\n' : ''}` : `${text}\n`);
  };
}
