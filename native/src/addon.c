/*
 * The N-API surface (src/native/addon.ts is its only caller):
 *
 *   features()                        → { avx512, avx512bf16, amx, cores, isa, bestIsa, threads }
 *   setIsa(name) / setThreads(n)      kernel family ('portable' | 'avx2' | 'avx512' | 'amx'), worker threads
 *   gemm(M, N, K, A, lda, transA, bFormat, B, ldb, transB, C, ldc, beta, compute)
 *   gemmQuant(... as gemm, then scales, code, block, round, ...)   gemm with a bitsandbytes 4-bit or int8 weight
 *   widenRows(format, data, cols, r0, r1, dst)
 *   firstUnrepresentable(x, format)   -1, or the first index of x not finite (or, format bf16, not a bfloat16 value)
 *   quantize4bit(x, blocks, ...)      bitsandbytes' 4-bit codes of whole blocks of float32 or bfloat16 values
 *   quantizeInt8(x, rows, ...)        its 8-bit codes → [first index not finite, first overflowing float16]
 *   mapFile(path, offset, length)     an ArrayBuffer over those bytes of the file, privately mapped (no copy);
 *                                     unmap(buffer) releases it before the garbage collector would
 *   readBandwidth(bytes, repeats)     main-memory read rate of all threads, bytes/s (for the benchmarks)
 *   dnnlSgemm(...)                    oneDNN's sgemm where libdnnl is installed (for the benchmarks), else false
 *
 * Arrays are typed arrays used in place (views of the wasm heap included); lengths are checked against the
 * extents each call reads or writes, so a wrong argument is an exception, never a stray access.
 */
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include "mapping.h"
#include "vl.h"

#define THROW(env, msg)                        \
  do {                                         \
    napi_throw_error((env), "VL_NATIVE", msg); \
    return NULL;                               \
  } while (0)

#define CHECK(env, call)                                   \
  do {                                                     \
    if ((call) != napi_ok) THROW(env, "N-API call failed"); \
  } while (0)

static const char *ISA_NAMES[] = {"portable", "avx2", "avx512", "amx"};

static int get_i64(napi_env env, napi_value v, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return 0;
  if (d != d || d < -9007199254740991.0 || d > 9007199254740991.0 || (double)(int64_t)d != d) return 0;
  *out = (int64_t)d;
  return 1;
}

typedef struct {
  void *data;
  size_t bytes;   /* byte length of the view */
  size_t element; /* bytes an element */
} view;

static int get_view(napi_env env, napi_value v, view *out) {
  bool is_typed;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed) return 0;
  napi_typedarray_type type;
  size_t length, offset;
  napi_value buffer;
  void *data;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, &buffer, &offset) != napi_ok) return 0;
  size_t element = type == napi_float32_array || type == napi_int32_array || type == napi_uint32_array ? 4
                   : type == napi_uint16_array || type == napi_int16_array                           ? 2
                   : type == napi_float64_array || type == napi_bigint64_array || type == napi_biguint64_array ? 8
                                                                                                               : 1;
  out->data = data;
  out->bytes = length * element;
  out->element = element;
  return 1;
}

static size_t format_size(int format) { return format == VL_F32 ? 4 : 2; }

/* Bytes spanned by a row-major [rows][cols] matrix with leading dimension ld. */
static int64_t span(int64_t rows, int64_t cols, int64_t ld) { return rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols; }

static napi_value features(napi_env env, napi_callback_info info) {
  (void)info;
  const vl_features *f = vl_cpu();
  napi_value obj, v;
  CHECK(env, napi_create_object(env, &obj));
#define SET_BOOL(name, value)                           \
  CHECK(env, napi_get_boolean(env, (value) != 0, &v)); \
  CHECK(env, napi_set_named_property(env, obj, name, v))
#define SET_INT(name, value)                         \
  CHECK(env, napi_create_int32(env, (value), &v)); \
  CHECK(env, napi_set_named_property(env, obj, name, v))
#define SET_STR(name, value)                                               \
  CHECK(env, napi_create_string_utf8(env, (value), NAPI_AUTO_LENGTH, &v)); \
  CHECK(env, napi_set_named_property(env, obj, name, v))
  SET_BOOL("avx2", f->avx2);
  SET_BOOL("avx512", f->avx512);
  SET_BOOL("avx512bf16", f->avx512_bf16);
  SET_BOOL("amx", f->amx);
  SET_INT("cores", f->cores);
  SET_INT("threads", vl_threads());
  SET_STR("isa", ISA_NAMES[vl_isa()]);
  SET_STR("bestIsa", ISA_NAMES[vl_isa_best()]);
  return obj;
}

static napi_value set_isa(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[32] = {0};
  size_t len;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok) THROW(env, "setIsa: expected a name");
  int isa = -1;
  for (int i = 0; i < 4; i++)
    if (strcmp(name, ISA_NAMES[i]) == 0) isa = i;
  if (isa < 0) THROW(env, "setIsa: expected 'portable', 'avx2', 'avx512' or 'amx'");
  CHECK(env, napi_create_string_utf8(env, ISA_NAMES[vl_isa_set(isa)], NAPI_AUTO_LENGTH, &out));
  return out;
}

static napi_value set_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  int64_t n;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !get_i64(env, argv[0], &n) || n < 1) THROW(env, "setThreads: expected a positive integer");
  vl_set_threads((int)n);
  CHECK(env, napi_create_int32(env, vl_threads(), &out));
  return out;
}

/* gemm(M, N, K, A, lda, transA, bFormat, B, ldb, transB, C, ldc, beta, compute) */
static napi_value gemm(napi_env env, napi_callback_info info) {
  size_t argc = 14;
  napi_value argv[14];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 14) THROW(env, "gemm: expected 14 arguments");
  int64_t M, N, K, lda, ldb, ldc, format, compute;
  bool transA, transB;
  double beta;
  view a, b, c;
  if (!get_i64(env, argv[0], &M) || !get_i64(env, argv[1], &N) || !get_i64(env, argv[2], &K) || M < 0 || N < 0 || K < 0)
    THROW(env, "gemm: M, N, K must be non-negative integers");
  if (!get_view(env, argv[3], &a) || !get_view(env, argv[7], &b) || !get_view(env, argv[10], &c))
    THROW(env, "gemm: A, B and C must be typed arrays");
  if (!get_i64(env, argv[4], &lda) || !get_i64(env, argv[8], &ldb) || !get_i64(env, argv[11], &ldc) ||
      napi_get_value_bool(env, argv[5], &transA) != napi_ok || napi_get_value_bool(env, argv[9], &transB) != napi_ok ||
      !get_i64(env, argv[6], &format) || napi_get_value_double(env, argv[12], &beta) != napi_ok ||
      !get_i64(env, argv[13], &compute))
    THROW(env, "gemm: bad argument types");
  if (format < VL_F32 || format > VL_F16 || (compute != VL_COMPUTE_F32 && compute != VL_COMPUTE_BF16))
    THROW(env, "gemm: unknown weight format or compute type");
  if (lda < (transA ? M : K) || ldb < (transB ? K : N) || ldc < N) THROW(env, "gemm: leading dimension too small");
  int64_t a_need = transA ? span(K, M, lda) : span(M, K, lda);
  int64_t b_need = transB ? span(N, K, ldb) : span(K, N, ldb);
  if ((size_t)a_need * 4 > a.bytes || (size_t)b_need * format_size((int)format) > b.bytes ||
      (size_t)span(M, N, ldc) * 4 > c.bytes)
    THROW(env, "gemm: an array is shorter than the product reads or writes");
  vl_bmat B = {(int)format, b.data, ldb, transB, NULL, NULL, 0, VL_F32};
  vl_gemm(M, N, K, a.data, lda, transA, &B, c.data, ldc, (float)beta, (int)compute);
  return NULL;
}

/*
 * gemmQuant(M, N, K, A, lda, transA, format, B, ldb, transB, scales, code, block, round, C, ldc, beta, compute): gemm with
 * a bitsandbytes-format B (VL_Q4: packed nibbles, per-block scales, 16-entry code, the dtype values round to; VL_I8:
 * int8 codes and one scale per storage row). B's storage is [rows][ldb] with rows = N (transB) or K.
 */
static napi_value gemm_quant(napi_env env, napi_callback_info info) {
  size_t argc = 18;
  napi_value argv[18];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 18) THROW(env, "gemmQuant: expected 18 arguments");
  int64_t M, N, K, lda, ldb, ldc, format, block, round, compute;
  bool transA, transB;
  double beta;
  view a, b, scales, code, c;
  if (!get_i64(env, argv[0], &M) || !get_i64(env, argv[1], &N) || !get_i64(env, argv[2], &K) || M < 0 || N < 0 || K < 0 ||
      !get_view(env, argv[3], &a) || !get_i64(env, argv[4], &lda) || napi_get_value_bool(env, argv[5], &transA) != napi_ok ||
      !get_i64(env, argv[6], &format) || !get_view(env, argv[7], &b) || !get_i64(env, argv[8], &ldb) ||
      napi_get_value_bool(env, argv[9], &transB) != napi_ok || !get_view(env, argv[10], &scales) || !get_view(env, argv[11], &code) ||
      !get_i64(env, argv[12], &block) || !get_i64(env, argv[13], &round) || !get_view(env, argv[14], &c) ||
      !get_i64(env, argv[15], &ldc) || napi_get_value_double(env, argv[16], &beta) != napi_ok || !get_i64(env, argv[17], &compute))
    THROW(env, "gemmQuant: bad argument types");
  if ((format != VL_Q4 && format != VL_I8) || (compute != VL_COMPUTE_F32 && compute != VL_COMPUTE_BF16) ||
      (round != VL_F32 && round != VL_BF16 && round != VL_F16))
    THROW(env, "gemmQuant: unknown format, compute type or rounding dtype");
  int64_t rows = transB ? N : K, cols = transB ? K : N;
  if (lda < (transA ? M : K) || ldb != cols || ldc < N) THROW(env, "gemmQuant: leading dimensions do not fit (B must be dense)");
  int64_t values = rows * cols;
  size_t b_need = format == VL_Q4 ? (size_t)((values + 1) / 2) : (size_t)values;
  size_t scales_need = format == VL_Q4 ? (size_t)(block > 0 ? (values + block - 1) / block : 0) : (size_t)rows;
  if (format == VL_Q4 && (block <= 0 || code.bytes < 16 * 4)) THROW(env, "gemmQuant: a 4-bit weight needs a block size and 16 code values");
  int64_t a_need = transA ? span(K, M, lda) : span(M, K, lda);
  if ((size_t)a_need * 4 > a.bytes || b_need > b.bytes || scales_need * 4 > scales.bytes || (size_t)span(M, N, ldc) * 4 > c.bytes)
    THROW(env, "gemmQuant: an array is shorter than the product reads or writes");
  vl_bmat B = {(int)format, b.data, ldb, transB, scales.data, code.data, block, (int)round};
  vl_gemm(M, N, K, a.data, lda, transA, &B, c.data, ldc, (float)beta, (int)compute);
  return NULL;
}

/* widenRows(format, data, cols, r0, r1, dst) */
static napi_value widen_rows(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t format, cols, r0, r1;
  view src, dst;
  if (argc != 6 || !get_i64(env, argv[0], &format) || !get_view(env, argv[1], &src) || !get_i64(env, argv[2], &cols) ||
      !get_i64(env, argv[3], &r0) || !get_i64(env, argv[4], &r1) || !get_view(env, argv[5], &dst))
    THROW(env, "widenRows: bad arguments");
  if (format < VL_F32 || format > VL_F16 || cols < 0 || r0 < 0 || r1 < r0) THROW(env, "widenRows: bad arguments");
  if ((size_t)(r1 * cols) * format_size((int)format) > src.bytes || (size_t)((r1 - r0) * cols) * 4 > dst.bytes)
    THROW(env, "widenRows: an array is shorter than the rows");
  vl_widen_rows((int)format, src.data, cols, r0, r1, dst.data);
  return NULL;
}

/* quantize4bit(x, blocks, block, bounds, order, absmax, packed): bitsandbytes' 4-bit codes of `blocks` whole blocks of
 * x, float32 values (a Float32Array) or bfloat16 ones (a Uint16Array, widened a block at a time); -1, or the first
 * index of a value that is not finite (bfloat16 only: float32 values are checked by the caller). */
static napi_value quantize4bit(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7], out;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t blocks, block;
  view x, bounds, order, absmax, packed;
  if (argc != 7 || !get_view(env, argv[0], &x) || !get_i64(env, argv[1], &blocks) || !get_i64(env, argv[2], &block) ||
      !get_view(env, argv[3], &bounds) || !get_view(env, argv[4], &order) || !get_view(env, argv[5], &absmax) ||
      !get_view(env, argv[6], &packed) || (x.element != 4 && x.element != 2))
    THROW(env, "quantize4bit: bad arguments");
  if (blocks < 0 || block < 2 || block % 2 != 0 || block > 4096 || bounds.bytes < 15 * 4 || order.bytes < 16 ||
      (size_t)(blocks * block) * x.element > x.bytes || (size_t)blocks * 4 > absmax.bytes || (size_t)(blocks * block / 2) > packed.bytes)
    THROW(env, "quantize4bit: an array is shorter than the blocks, or the block size is not even (or above 4096)");
  const int bf16 = x.element == 2;
  int64_t bad = vl_quantize4bit(bf16 ? NULL : x.data, bf16 ? x.data : NULL, blocks, block, bounds.data, order.data, absmax.data, packed.data);
  CHECK(env, napi_create_int64(env, bad, &out));
  return out;
}

/* quantizeInt8(x, rows, cols, codes, scb) → [nonFinite, overflow]: bitsandbytes' 8-bit codes of x, float32 values or
 * bfloat16 ones (a Uint16Array); each -1, or the first index of a value that is not finite / overflows float16. */
static napi_value quantize_int8(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], out, a, b;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t rows, cols, non_finite, overflow;
  view x, codes, scb;
  if (argc != 5 || !get_view(env, argv[0], &x) || !get_i64(env, argv[1], &rows) || !get_i64(env, argv[2], &cols) ||
      !get_view(env, argv[3], &codes) || !get_view(env, argv[4], &scb) || (x.element != 4 && x.element != 2))
    THROW(env, "quantizeInt8: bad arguments");
  if (rows < 0 || cols < 0 || (size_t)(rows * cols) * x.element > x.bytes || (size_t)(rows * cols) > codes.bytes || (size_t)rows * 4 > scb.bytes)
    THROW(env, "quantizeInt8: an array is shorter than rows x cols");
  const int bf16 = x.element == 2;
  vl_quantize_int8(bf16 ? NULL : x.data, bf16 ? x.data : NULL, rows, cols, codes.data, scb.data, &non_finite, &overflow);
  CHECK(env, napi_create_array_with_length(env, 2, &out));
  CHECK(env, napi_create_int64(env, non_finite, &a));
  CHECK(env, napi_create_int64(env, overflow, &b));
  CHECK(env, napi_set_element(env, out, 0, a));
  CHECK(env, napi_set_element(env, out, 1, b));
  return out;
}

/* firstUnrepresentable(x, format): -1, or the first index not finite or (format bf16) not a bfloat16 value. */
static napi_value first_unrepresentable(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t format;
  view x;
  if (argc != 2 || !get_view(env, argv[0], &x) || !get_i64(env, argv[1], &format) || (format != VL_F32 && format != VL_BF16))
    THROW(env, "firstUnrepresentable: bad arguments");
  CHECK(env, napi_create_int64(env, vl_first_unrepresentable(x.data, (int64_t)(x.bytes / 4), format == VL_BF16), &out));
  return out;
}

/*
 * attention(q, keys[], values[], B, H, Hkv, Lq, D, scale, mask | null, mb, mh, mq, out): the fused attention of
 * attention.c; keys[i] and values[i] are blocks [B][Hkv][len_i][D]. Returns false where it does not apply.
 */
#define MAX_BLOCKS 1024
static napi_value attention(napi_env env, napi_callback_info info) {
  size_t argc = 14;
  napi_value argv[14], out;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  vl_attention_args a;
  memset(&a, 0, sizeof a);
  double scale;
  view q, o, mask = {0};
  uint32_t nk = 0, nv = 0;
  napi_valuetype mask_type;
  if (argc != 14 || !get_view(env, argv[0], &q) || napi_get_array_length(env, argv[1], &nk) != napi_ok ||
      napi_get_array_length(env, argv[2], &nv) != napi_ok || !get_i64(env, argv[3], &a.B) || !get_i64(env, argv[4], &a.H) ||
      !get_i64(env, argv[5], &a.Hkv) || !get_i64(env, argv[6], &a.Lq) || !get_i64(env, argv[7], &a.D) ||
      napi_get_value_double(env, argv[8], &scale) != napi_ok || napi_typeof(env, argv[9], &mask_type) != napi_ok ||
      !get_i64(env, argv[10], &a.mb) || !get_i64(env, argv[11], &a.mh) || !get_i64(env, argv[12], &a.mq) ||
      !get_view(env, argv[13], &o))
    THROW(env, "attention: bad arguments");
  if (nk != nv || nk == 0 || nk > MAX_BLOCKS || a.B <= 0 || a.H <= 0 || a.Hkv <= 0 || a.Lq <= 0 || a.D <= 0)
    THROW(env, "attention: bad shapes or block lists");
  const float *kp[MAX_BLOCKS], *vp[MAX_BLOCKS];
  int64_t len[MAX_BLOCKS], lk = 0;
  for (uint32_t i = 0; i < nk; i++) {
    napi_value ek, ev;
    view kb, vb;
    if (napi_get_element(env, argv[1], i, &ek) != napi_ok || napi_get_element(env, argv[2], i, &ev) != napi_ok ||
        !get_view(env, ek, &kb) || !get_view(env, ev, &vb) || kb.bytes != vb.bytes ||
        kb.bytes % (size_t)(a.B * a.Hkv * a.D * 4) != 0)
      THROW(env, "attention: a key or value block is not [B, Hkv, len, D] float32, or the two differ");
    kp[i] = kb.data;
    vp[i] = vb.data;
    len[i] = (int64_t)(kb.bytes / (size_t)(a.B * a.Hkv * a.D * 4));
    lk += len[i];
  }
  size_t qo = (size_t)(a.B * a.H * a.Lq * a.D) * 4;
  if (q.bytes < qo || o.bytes < qo) THROW(env, "attention: q or out is shorter than [B, H, Lq, D]");
  if (mask_type != napi_null && mask_type != napi_undefined) {
    if (!get_view(env, argv[9], &mask)) THROW(env, "attention: mask must be a Float32Array or null");
    int64_t need = (a.B - 1) * a.mb + (a.H - 1) * a.mh + (a.Lq - 1) * a.mq + lk;
    if (a.mb < 0 || a.mh < 0 || a.mq < 0 || (size_t)need * 4 > mask.bytes) THROW(env, "attention: the mask is shorter than its strides read");
    a.mask = mask.data;
  }
  a.nblocks = nk;
  a.k = kp;
  a.v = vp;
  a.len = len;
  a.scale = (float)scale;
  a.q = q.data;
  a.out = o.data;
  CHECK(env, napi_get_boolean(env, vl_attention(&a) != 0, &out));
  return out;
}

typedef struct {
  void *base;
  size_t mapped;
  int unmapped;
} mapping;

static void finalize_mapping(napi_env env, void *data, void *hint) {
  (void)env, (void)data;
  mapping *m = hint;
  if (!m->unmapped) vl_unmap(m->base, m->mapped);
  free(m);
}

/* mapFile(path, offset, length): an ArrayBuffer over bytes [offset, offset + length) of the file, mapped. */
static napi_value map_file(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  size_t len;
  int64_t offset, length;
  if (argc != 3 || napi_get_value_string_utf8(env, argv[0], NULL, 0, &len) != napi_ok || !get_i64(env, argv[1], &offset) ||
      !get_i64(env, argv[2], &length) || offset < 0 || length < 0)
    THROW(env, "mapFile: expected a path, a byte offset and a byte length");
  char *path = malloc(len + 1);
  napi_get_value_string_utf8(env, argv[0], path, len + 1, &len);
  char error[512];
  void *data;
  mapping *m = calloc(1, sizeof *m);
  int rc = vl_map_range(path, (uint64_t)offset, (size_t)length, &m->base, &m->mapped, &data, error, sizeof error);
  free(path);
  if (rc != 0) {
    free(m);
    THROW(env, error);
  }
  if (m->mapped == 0) {
    free(m);
    CHECK(env, napi_create_arraybuffer(env, 0, NULL, &out));
    return out;
  }
  napi_status status = napi_create_external_arraybuffer(env, data, (size_t)length, finalize_mapping, m, &out);
  if (status != napi_ok) {
    /* The runtime may already have run the finalizer (it owns m then): report, and leave m alone. */
    const napi_extended_error_info *why = NULL;
    napi_get_last_error_info(env, &why);
    char message[256];
    snprintf(message, sizeof message, "mapFile: cannot expose %lld mapped bytes as an ArrayBuffer (%s)", (long long)length,
             why && why->error_message ? why->error_message : "external buffers not allowed");
    THROW(env, message);
  }
  CHECK(env, napi_wrap(env, out, m, NULL, NULL, NULL));
  return out;
}

/* unmap(buffer): detaches the ArrayBuffer (every view of it then reads as empty) and releases the mapping. */
static napi_value unmap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  mapping *m;
  if (argc < 1 || napi_unwrap(env, argv[0], (void **)&m) != napi_ok) THROW(env, "unmap: not a buffer from mapFile");
  if (m->unmapped) return NULL;
  CHECK(env, napi_detach_arraybuffer(env, argv[0]));
  vl_unmap(m->base, m->mapped);
  m->unmapped = 1;
  return NULL;
}

/* dnnlSgemm(M, N, K, A, lda, transA, B, ldb, transB, C, ldc, beta) → false when oneDNN is not installed */
static napi_value dnnl_sgemm(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value argv[12], out;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t M, N, K, lda, ldb, ldc;
  bool transA, transB;
  double beta;
  view a, b, c;
  if (argc != 12 || !get_i64(env, argv[0], &M) || !get_i64(env, argv[1], &N) || !get_i64(env, argv[2], &K) ||
      !get_view(env, argv[3], &a) || !get_i64(env, argv[4], &lda) || napi_get_value_bool(env, argv[5], &transA) != napi_ok ||
      !get_view(env, argv[6], &b) || !get_i64(env, argv[7], &ldb) || napi_get_value_bool(env, argv[8], &transB) != napi_ok ||
      !get_view(env, argv[9], &c) || !get_i64(env, argv[10], &ldc) || napi_get_value_double(env, argv[11], &beta) != napi_ok ||
      M < 0 || N < 0 || K < 0)
    THROW(env, "dnnlSgemm: bad arguments");
  if ((size_t)(transA ? span(K, M, lda) : span(M, K, lda)) * 4 > a.bytes || (size_t)(transB ? span(N, K, ldb) : span(K, N, ldb)) * 4 > b.bytes ||
      (size_t)span(M, N, ldc) * 4 > c.bytes)
    THROW(env, "dnnlSgemm: an array is shorter than the product reads or writes");
  int ok = vl_dnnl_sgemm(transA, transB, M, N, K, a.data, lda, b.data, ldb, (float)beta, c.data, ldc) == 0;
  CHECK(env, napi_get_boolean(env, ok, &out));
  return out;
}

/* readBandwidth(bytes, repeats) → bytes per second */
static napi_value read_bandwidth(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  int64_t bytes, repeats;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 2 || !get_i64(env, argv[0], &bytes) || !get_i64(env, argv[1], &repeats) || bytes < 4096 || repeats < 1)
    THROW(env, "readBandwidth: expected a byte count (≥ 4096) and a repeat count");
  CHECK(env, napi_create_double(env, vl_read_bandwidth(bytes, (int)repeats), &out));
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"features", NULL, features, NULL, NULL, NULL, napi_default, NULL},
      {"setIsa", NULL, set_isa, NULL, NULL, NULL, napi_default, NULL},
      {"setThreads", NULL, set_threads, NULL, NULL, NULL, napi_default, NULL},
      {"gemm", NULL, gemm, NULL, NULL, NULL, napi_default, NULL},
      {"gemmQuant", NULL, gemm_quant, NULL, NULL, NULL, napi_default, NULL},
      {"widenRows", NULL, widen_rows, NULL, NULL, NULL, napi_default, NULL},
      {"firstUnrepresentable", NULL, first_unrepresentable, NULL, NULL, NULL, napi_default, NULL},
      {"quantize4bit", NULL, quantize4bit, NULL, NULL, NULL, napi_default, NULL},
      {"quantizeInt8", NULL, quantize_int8, NULL, NULL, NULL, napi_default, NULL},
      {"attention", NULL, attention, NULL, NULL, NULL, napi_default, NULL},
      {"mapFile", NULL, map_file, NULL, NULL, NULL, napi_default, NULL},
      {"unmap", NULL, unmap, NULL, NULL, NULL, napi_default, NULL},
      {"readBandwidth", NULL, read_bandwidth, NULL, NULL, NULL, napi_default, NULL},
      {"dnnlSgemm", NULL, dnnl_sgemm, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
