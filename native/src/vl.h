/*
 * video-llava native kernels: products of float32 activations with weights kept in their stored format
 * (float32, bfloat16, float16), multi-threaded, with a portable C path and per-ISA paths chosen at run time.
 *
 * Every product is C[M][N] = beta·C + A[M][K] · B[K][N], where A is float32 (activations, optionally
 * transposed) and B is a "stored matrix": its element (k, n) is data[n·ld + k] when trans is set (a weight
 * W[out][in] in PyTorch's layout, used as Wᵀ: the forward product x·Wᵀ) and data[k·ld + n] otherwise (W itself:
 * the backward product dy·W). Accumulation is always float32; compute VL_COMPUTE_BF16 rounds A to bfloat16
 * first (what torch_dtype=bfloat16 does), else every product is exact float32 arithmetic on the widened values.
 */
#ifndef VL_H
#define VL_H

#include <stddef.h>
#include <stdint.h>

/*
 * Stored formats. VL_Q4: bitsandbytes' 4-bit (NF4/FP4): two codes a byte, the first in the high nibble, over the
 * flattened matrix; value = round_to(original dtype, code[q] · scales[flat / block]). VL_I8: bitsandbytes' LLM.int8
 * weight: value = (q · scales[row]) · (1/127), two float32 products.
 */
enum vl_format { VL_F32 = 0, VL_BF16 = 1, VL_F16 = 2, VL_Q4 = 3, VL_I8 = 4 };
enum vl_compute { VL_COMPUTE_F32 = 0, VL_COMPUTE_BF16 = 1 };
/* Kernel families, best last. vl_isa_set() may pick a lower one (tests compare each with the portable one). */
enum vl_isa { VL_ISA_PORTABLE = 0, VL_ISA_AVX2 = 1, VL_ISA_AVX512 = 2, VL_ISA_AMX = 3 };
/* Up to this many rows of A a product takes the memory-bound kernels (small_dot / small_axpy). */
#define VL_SMALL_M 4

typedef struct {
  int format;       /* enum vl_format */
  const void *data; /* element (k, n) at [n·ld + k] (trans) or [k·ld + n] */
  int64_t ld;
  int trans;
  /* quantized formats only */
  const float *scales; /* VL_Q4: one per block of the flattened matrix; VL_I8: one per row (SCB) */
  const float *code;   /* VL_Q4: the 16-entry table */
  int64_t block;       /* VL_Q4: values per scale */
  int round;           /* VL_Q4: the original dtype the product is rounded to (VL_F32: none, VL_BF16, VL_F16) */
} vl_bmat;

#define VL_INV_127 7.874015718698502e-3f /* bitsandbytes' 1/127 */

typedef struct {
  int avx2;        /* AVX2 + FMA + F16C with the OS saving ymm state */
  int avx512;      /* AVX-512 F/BW/VL/DQ with the OS saving zmm state, plus FMA and F16C */
  int avx512_bf16; /* VDPBF16PS */
  int amx;         /* AMX-TILE + AMX-BF16 and the kernel granted tile data to this process */
  int cores;
} vl_features;

/* cpu.c */
const vl_features *vl_cpu(void);
int vl_isa_best(void);
int vl_isa(void);
int vl_isa_set(int isa); /* returns the ISA in effect: min(isa, best) */

/* pool.c: fn(ctx, task) for task in [0, tasks), on up to vl_threads() threads (the caller is one of them). */
typedef void (*vl_task_fn)(void *ctx, int64_t task);
void vl_parallel(int64_t tasks, vl_task_fn fn, void *ctx);

/* bitsandbytes' 4-bit codes of whole blocks (quantize.c) of float32 values x, or of bfloat16 values bf16 (x NULL; widened
 * a block at a time): -1, the smallest index of a value that is not finite (bfloat16; the codes are then incomplete),
 * or -2 for a block longer than 4096. */
int64_t vl_quantize4bit(const float *x, const uint16_t *bf16, int64_t blocks, int64_t block, const float *bounds,
                        const uint8_t *order, float *absmax, uint8_t *packed);
/* bitsandbytes' 8-bit codes and row scales (SCB) of a [rows][cols] matrix of float32 values x or bfloat16 values bf16
 * (x NULL); *non_finite and *overflow: -1, or the smallest index of a value that is not finite / that overflows
 * float16 (then codes and scales are incomplete). */
void vl_quantize_int8(const float *x, const uint16_t *bf16, int64_t rows, int64_t cols, int8_t *codes, float *scb,
                      int64_t *non_finite, int64_t *overflow);
/* The first index of x[0, n) not finite or, with bf16 set, not a bfloat16 value; -1 if none (quantize.c). */
int64_t vl_first_unrepresentable(const float *x, int64_t n, int bf16);
int vl_threads(void);
void vl_set_threads(int n);

/* dnnl.c: oneDNN's sgemm when libdnnl is installed (benchmarks only). */
int vl_dnnl_available(void);
int vl_dnnl_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float beta, float *C, int64_t ldc);

/* bandwidth.c: bytes per second of all threads reading main memory (best of `repeats` passes). */
double vl_read_bandwidth(int64_t bytes, int repeats);

/* matmul.c: the entry point. */
void vl_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, int transA, const vl_bmat *B, float *C,
             int64_t ldc, float beta, int compute);
/* Rows [r0, r1) of a [rows][cols] stored matrix widened to float32 (dst holds (r1 − r0)·cols values). */
void vl_widen_rows(int format, const void *data, int64_t cols, int64_t r0, int64_t r1, float *dst);

/* ---- conversions shared by every path ---------------------------------------------------------------- */
static inline float vl_bf16_to_f32(uint16_t h) {
  union { uint32_t u; float f; } v = {(uint32_t)h << 16};
  return v.f;
}

/* Round to nearest even, NaN kept quiet: torch's float → bfloat16. */
static inline uint16_t vl_f32_to_bf16(float f) {
  union { float f; uint32_t u; } v = {f};
  if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
  return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}

static inline float vl_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  union { uint32_t u; float f; } v;
  if (exp == 0) {
    /* zero or subnormal: man · 2^-24, exact in float32 */
    v.f = (float)man * 5.9604644775390625e-8f;
    v.u |= sign;
    return v.f;
  }
  if (exp == 31) v.u = sign | 0x7f800000u | (man << 13);
  else v.u = sign | ((exp + 112) << 23) | (man << 13);
  return v.f;
}

/* float32 → float16 bits, nearest even (subnormals, overflow to infinity, NaN kept). */
static inline uint16_t vl_f32_to_f16(float f) {
  union { float f; uint32_t u; } v = {f};
  uint32_t sign = (v.u >> 16) & 0x8000u, exp = (v.u >> 23) & 0xffu, man = v.u & 0x7fffffu;
  if (exp == 0xff) return (uint16_t)(sign | (man ? 0x7e00u : 0x7c00u));
  int e = (int)exp - 112;
  if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u);
  if (e <= 0) {
    if (e < -10) return (uint16_t)sign;
    uint32_t m = man | 0x800000u;
    int shift = 14 - e;
    uint32_t half = 1u << (shift - 1), rest = m & ((1u << shift) - 1);
    uint32_t r = m >> shift;
    if (rest > half || (rest == half && (r & 1))) r++;
    return (uint16_t)(sign | r);
  }
  uint32_t r = ((uint32_t)e << 10) | (man >> 13), rest = man & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (r & 1))) r++;
  return (uint16_t)(sign | r);
}

/* A float32 rounded to the given stored dtype and widened back (VL_F32: unchanged). */
static inline float vl_round_to(int dtype, float v) {
  if (dtype == VL_BF16) return vl_bf16_to_f32(vl_f32_to_bf16(v));
  if (dtype == VL_F16) return vl_f16_to_f32(vl_f32_to_f16(v));
  return v;
}

/* Element (k, n) of a stored matrix as float32. */
static inline float vl_bmat_get(const vl_bmat *b, int64_t k, int64_t n) {
  int64_t i = b->trans ? n * b->ld + k : k * b->ld + n;
  switch (b->format) {
    case VL_BF16: return vl_bf16_to_f32(((const uint16_t *)b->data)[i]);
    case VL_F16: return vl_f16_to_f32(((const uint16_t *)b->data)[i]);
    case VL_Q4: {
      uint8_t byte = ((const uint8_t *)b->data)[i >> 1];
      int q = (i & 1) ? byte & 15 : byte >> 4;
      return vl_round_to(b->round, b->code[q] * b->scales[i / b->block]);
    }
    case VL_I8: {
      float t = (float)((const int8_t *)b->data)[i] * b->scales[b->trans ? n : k];
      return t * VL_INV_127;
    }
    default: return ((const float *)b->data)[i];
  }
}

/* count consecutive stored values of one storage row, starting at (row, col), widened into dst. */
void vl_bmat_row(const vl_bmat *b, int64_t row, int64_t col, int64_t count, float *dst);

/* ---- kernel tables: one per ISA ------------------------------------------------------------------------ */

/*
 * Pack B(k0..k0+kc, n0..n0+nr) into dst[kc][NR] float32 (columns past nr zero). NR is the micro-kernel width.
 */
typedef void (*vl_pack_b_fn)(const vl_bmat *b, int64_t k0, int64_t kc, int64_t n0, int64_t nr, float *dst, int compute);
/* C[mr][nr] (ldc) = beta·C + Ap[kc][MR] · Bp[kc][NR]; mr ≤ MR, nr ≤ NR. */
typedef void (*vl_micro_fn)(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, int64_t mr, int64_t nr,
                            float beta);
/* Rows m of C[m][n0..n1) = beta·C + A[m]·B(·, n) for small M (every stored byte read once). */
typedef void (*vl_small_fn)(int64_t M, int64_t K, const float *A, int64_t lda, const vl_bmat *B, int64_t n0, int64_t n1,
                            float *C, int64_t ldc, float beta, int compute);

typedef struct {
  int mr, nr;
  vl_pack_b_fn pack_b;
  vl_micro_fn micro;
  vl_small_fn small_dot;  /* B.trans: a dot product per (m, n) */
  vl_small_fn small_axpy; /* !B.trans: rows of B scaled and summed */
} vl_kernels;

extern const vl_kernels vl_kernels_ref;
extern const vl_kernels vl_kernels_avx2;
extern const vl_kernels vl_kernels_avx512;

/*
 * bfloat16 compute on VDPBF16PS: the same driver with k counted in (even, odd) pairs. pack_b writes ceil(kc/2) rows
 * of NR 32-bit pairs; micro takes the pair count; A is packed as pairs per row (matmul.c). mr = 0 where not built.
 */
typedef struct {
  int mr, nr;
  vl_pack_b_fn pack_b;
  vl_micro_fn micro;
} vl_bf16_kernels;
extern const vl_bf16_kernels vl_kernels_avx512bf16;

/* One row of decode (x: bfloat16 values as float32, K of them) times 4-bit weights of bfloat16 values (B->round
 * VL_BF16), rows [n0, n1) of C = beta·C + x·Bᵀ on VDPBF16PS; returns how many rows it did from n0 (0 where it does
 * not apply), the rest left to the caller. */
int64_t vl_q4_decode_bf16(int64_t K, const float *x, const vl_bmat *B, int64_t n0, int64_t n1, float *C, float beta);
static inline int vl_q4_decode_bf16_applies(int64_t K, const vl_bmat *B) {
  return B->format == VL_Q4 && B->trans && B->round == VL_BF16 && B->ld == K && B->block % 64 == 0 && K % B->block == 0;
}

/* Fused attention (attention.c): softmax(q·kᵀ·scale + mask)·v for every (batch, head). */
typedef struct {
  int64_t B, H, Hkv, Lq, D;
  int64_t nblocks;             /* keys and values as consecutive blocks along the key axis */
  const float *const *k;       /* block i: [B][Hkv][len[i]][D] */
  const float *const *v;
  const int64_t *len;
  float scale;
  const float *mask;           /* NULL, or additive, element strides mb, mh, mq (0 broadcasts); keys contiguous */
  int64_t mb, mh, mq;
  const float *q;              /* [B][H][Lq][D] */
  float *out;                  /* [B][H][Lq][D] */
} vl_attention_args;
/* 1 when done; 0 where it does not apply (no AVX-512, D not a multiple of 16 up to 128): the caller falls back. */
int vl_attention(const vl_attention_args *a);

/* AMX (kernels_amx.c): forward products with bfloat16 weights. Returns 0 when it does not apply. */
int vl_amx_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const vl_bmat *B, float *C, int64_t ldc,
                float beta, int compute);
int vl_amx_compiled(void);

#endif
