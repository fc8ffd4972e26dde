/**
 * torch.sum / torch.mean of a contiguous 1-D float32 tensor on CPU, bit for bit: ATen's cascade sum
 * (aten/src/ATen/native/cpu/SumKernel.cpp) in one thread. bitsandbytes' double quantization subtracts
 * `absmax.mean()` from every block scale, so its checkpoints depend on this exact summation order.
 *
 * The order depends on the width of torch's float vectors in that kernel: 8 lanes on x86 (the sum kernel
 * runs its AVX2 build on AVX512 machines too: measured, test/fixtures/bnb/torch_sum.safetensors) and on the
 * portable build. A tensor larger than torch's grain size (32768 elements) is also split between threads when
 * torch runs with more than one, which changes the order again; the reference fixtures use one thread.
 */

// Math functions bound once: in hot loops a global `Math.` lookup is slow in some hosts (jest's vm contexts: ~50x).
const { floor, fround, log2, max } = Math;

const NUM_LEVELS = 4;
const ILP = 4;

/** utils::CeilLog2: ceil(log2(x)) for x > 2, and 1 below. */
function ceilLog2(x: number): number {
  if (x <= 2) return 1;
  return floor(log2(x - 1)) + 1;
}

/**
 * multi_row_sum: `rows` rows of `nrows` accumulators of `width` float lanes each, summed in cascades of
 * 2^levelPower rows. `load(i, k, lane)` returns element k of row i.
 */
function multiRowSum(
  rows: number,
  nrows: number,
  width: number,
  load: (row: number, k: number, lane: number) => number,
): Float32Array[] {
  const levelPower = max(4, floor(ceilLog2(rows) / NUM_LEVELS));
  const levelStep = 2 ** levelPower;
  const levelMask = levelStep - 1;
  const acc = Array.from({ length: NUM_LEVELS }, () => Array.from({ length: nrows }, () => new Float32Array(width)));
  const addRow = (i: number): void => {
    for (let k = 0; k < nrows; k++) {
      const a = acc[0][k];
      for (let l = 0; l < width; l++) a[l] += load(i, k, l);
    }
  };
  let i = 0;
  while (i + levelStep <= rows) {
    for (let j = 0; j < levelStep; j++, i++) addRow(i);
    for (let j = 1; j < NUM_LEVELS; j++) {
      for (let k = 0; k < nrows; k++) {
        const up = acc[j][k];
        const down = acc[j - 1][k];
        for (let l = 0; l < width; l++) {
          up[l] += down[l];
          down[l] = 0;
        }
      }
      // The mask (levelMask << j*levelPower) may exceed 32 bits: test it with arithmetic.
      const unit = 2 ** (j * levelPower);
      if (floor(i / unit) % levelStep !== 0) break;
    }
  }
  for (; i < rows; i++) addRow(i);
  for (let j = 1; j < NUM_LEVELS; j++) {
    for (let k = 0; k < nrows; k++) {
      const a = acc[0][k];
      const b = acc[j][k];
      for (let l = 0; l < width; l++) a[l] += b[l];
    }
  }
  return acc[0];
}

/** row_sum: `size` elements (vectors of `width` lanes) read as rows of 4, then the leftovers, then the 4 partials. */
function rowSum(size: number, width: number, load: (index: number, lane: number) => number): Float32Array {
  const rows = floor(size / ILP);
  const partial = multiRowSum(rows, ILP, width, (i, k, l) => load(i * ILP + k, l));
  const first = partial[0];
  for (let i = rows * ILP; i < size; i++) {
    for (let l = 0; l < width; l++) first[l] += load(i, l);
  }
  for (let k = 1; k < ILP; k++) {
    for (let l = 0; l < width; l++) first[l] += partial[k][l];
  }
  return first;
}

/**
 * torch.sum(x) for a contiguous float32 vector on CPU (one thread), as a float32 value.
 * `lanes` is Vectorized<float>::size() of the kernel torch ran: 8 (x86 AVX2 and AVX512 machines alike).
 */
export function torchSumFloat32(x: Float32Array, lanes = 8): number {
  const n = x.length;
  if (n < lanes) {
    return fround(0 + rowSum(n, 1, (i) => x[i])[0]);
  }
  const vectors = floor(n / lanes);
  const vacc = rowSum(vectors, lanes, (i, l) => x[i * lanes + l]);
  let acc = 0;
  for (let k = vectors * lanes; k < n; k++) acc = fround(acc + x[k]);
  for (let l = 0; l < lanes; l++) acc = fround(acc + vacc[l]);
  return fround(0 + acc); // the output starts at 0 and the result is accumulated into it
}

/** torch.mean(x) on CPU: the cascade sum divided by the element count in float32. */
export function torchMeanFloat32(x: Float32Array, lanes = 8): number {
  return fround(torchSumFloat32(x, lanes) / x.length);
}
