/* nn_s8_support.h: what the int8 kernels share: requantisation, the column blocks, and the DSP instructions.
 *
 * A column is a window's int8 values (im2col) minus the input zero point, as int16, four at a time in the order
 * (x0, x2, x1, x3): SXTB16 splits a word of four int8 weights into the int16 pairs (w0, w2) and (w1, w3), so one
 * SMLAD multiplies and adds two of each with no repacking. A block interleaves the columns of up to four output
 * pixels group by group (group g of column j at int16 index 4 * (g * columns + j)), so one pointer walks them
 * all; the last depth % 4 values follow, value i of column j at 4 * groups * columns + i * columns + j. */
#ifndef NN_S8_SUPPORT_H
#define NN_S8_SUPPORT_H

#include <string.h>

#include "eenn_nn.h"

#if defined(__ARM_FEATURE_SAT) || defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

/* Helium (M-profile vector extension, Cortex-M55): sixteen int8 multiply-adds per VMLADAVA. */
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define EENN_MVE 1
#include <arm_mve.h>
#else
#define EENN_MVE 0
#endif

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define EENN_DSP 1

/* GCC 12 does not fold a rotation into SXTB16 / SXTAB16, hence the one-instruction forms here. */
static inline int32_t sxtb16_ror8(uint32_t x) {
  int32_t r;
  __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
  return r;
}

static inline int32_t sxtab16_ror8(uint32_t add, uint32_t x) {
  int32_t r;
  __asm("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(add), "r"(x));
  return r;
}
#else
#define EENN_DSP 0
#endif

/* The hand-scheduled inner loops need the registers an optimising build leaves free (at -O0 one of them is the
 * frame pointer); an unoptimised build takes the C of the same arithmetic. */
#if EENN_DSP && defined(__OPTIMIZE__)
#define EENN_ASM 1
#else
#define EENN_ASM 0
#endif

#if defined(__GNUC__)
#define EENN_INLINE static inline __attribute__((always_inline))
#define EENN_LIKELY(x) __builtin_expect(!!(x), 1)
#else
#define EENN_INLINE static inline
#define EENN_LIKELY(x) (x)
#endif

/* Columns are written and read as words of two int16 (SXTAB16, SMLAD): this type may alias them. */
#if defined(__GNUC__)
typedef uint32_t __attribute__((may_alias)) word_t;
#else
typedef uint32_t word_t;
#endif

/* -z in both halfwords: SXTAB16 with it takes the zero point from two int8 at once. */
EENN_INLINE uint32_t offset_pair(int32_t zero_point) { return ((uint32_t)-zero_point & 0xFFFFu) * 0x10001u; }

/* A word of four int8 from any address (LDR on Armv7-M and later handles unaligned addresses). */
EENN_INLINE uint32_t read_s8x4(const int8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

/* y clamped to int8: one SSAT where the core has it. */
EENN_INLINE int32_t clamp_int8(int32_t y) {
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT
  return __ssat(y, 8);
#else
  return y < -128 ? -128 : (y > 127 ? 127 : y);
#endif
}

/* The multiplier 2^-r for shifts up to 32 (multipliers of 1/2 and more): out of line, it is rare. */
int32_t requantize_wide(int32_t acc, int32_t multiplier, int32_t shift);

/* requantize() for r > 32 (multipliers below 1/2, the usual case), k = r - 33, plus the output zero point z,
 * given offset = 1 + 2z. 2^(r-1) is then a multiple of 2^32: rounding adds to the high word of the product alone
 * (no carry comes from the low word), and (high + 2^k) >> (k + 1) is ((high >> k) + 1) >> 1; z joins the last
 * step as 2z. */
EENN_INLINE int32_t requantize_high(int32_t acc, int32_t multiplier, int32_t k, int32_t offset) {
  const int32_t high = (int32_t)(((int64_t)acc * multiplier) >> 32);
  return ((high >> k) + offset) >> 1;
}

/* y = (acc * M + 2^(r-1)) >> r, saturated to +-2^30: any value that large saturates an int8 output anyway, and
 * an add's inputs never get there (their multipliers are at most 1/2). */
EENN_INLINE int32_t requantize(int32_t acc, eenn_scale_t scale) {
  if (EENN_LIKELY(scale.shift > 32)) return requantize_high(acc, scale.multiplier, scale.shift - 33, 1);
  return requantize_wide(acc, scale.multiplier, scale.shift);
}

/* out = clamp(y + zero point, min, max). */
EENN_INLINE int32_t saturate(int32_t y, eenn_output_t output) {
  y += output.zero_point;
  y = y < output.min ? output.min : y;
  return y > output.max ? output.max : y;
}

/* The last step of a kernel, set up once per call: requantisation, output zero point, clamp. */
typedef struct {
  eenn_output_t output;
  int32_t offset; /* 1 + 2 * zero point, for requantize_high */
  int fast;       /* every shift is above 32 and min/max are int8's own: output_fast() applies */
} output_stage_t;

output_stage_t output_stage(eenn_output_t output, const eenn_scale_t *scales, int32_t channels);

/* The output value of an accumulator when stage->fast: four instructions and an SSAT. */
EENN_INLINE int32_t output_fast(const output_stage_t *stage, int32_t acc, eenn_scale_t scale) {
  return clamp_int8(requantize_high(acc, scale.multiplier, scale.shift - 33, stage->offset));
}

EENN_INLINE int32_t output_value(const output_stage_t *stage, int32_t acc, eenn_scale_t scale) {
  return saturate(requantize(acc, scale), stage->output);
}

#define BLOCK_COLUMNS 4 /* columns (output pixels) per matmul block */

/* Writes `count` int8 values minus the zero point into column `column` of a block of `columns`, from value `at`
 * (a multiple of 4). A count that is not a multiple of 4 ends the column: its last values go to the tail. */
void block_append(int16_t *block, int32_t columns, int32_t column, int32_t at, const int8_t *x, int32_t count,
                  int32_t zero_point);
/* Zeros (padding: the zero point minus itself) for values [at, at + count) of a column, both multiples of 4. */
void block_pad(int16_t *block, int32_t columns, int32_t column, int32_t at, int32_t count);

/* outputs[j][row] = output(bias[row] + weights[row] . column j) for every row and column j of a block of
 * `columns` (1..4) columns of `depth` values: the heart of convolution and dense layers. */
void matmul_s8(const int8_t *weights, const int32_t *bias, const eenn_scale_t *scales, const output_stage_t *output,
               int32_t rows, int32_t depth, const int16_t *block, int32_t columns, int8_t *const *outputs);

#if EENN_MVE
/* matmul_s8 on Helium: a block of `columns` int8 columns of `depth` values, one after the other (padding holds the
 * zero point): (x - z) . w is x . w - z * sum(w), with the row's weight sum taken in the same loop. */
void matmul_s8_mve(const int8_t *weights, const int32_t *bias, const eenn_scale_t *scales,
                   const output_stage_t *output, int32_t rows, int32_t depth, const int8_t *block, int32_t columns,
                   int32_t zero_point, int8_t *const *outputs);
#endif

#endif /* NN_S8_SUPPORT_H */
