/* nn_s8_matmul.c: int8 weight rows times a block of int16 columns (nn_s8_support.h), requantised as each result
 * is done. Four columns per inner loop: a weight word is split once (SXTB16) and feeds eight SMLADs, with four
 * accumulators, two weight halves and two column words in registers: 15 instructions per 16 multiply-adds. */
#include "nn_s8_support.h"

void block_append(int16_t *block, int32_t columns, int32_t column, int32_t at, const int8_t *x, int32_t count,
                  int32_t zero_point) {
  const int32_t groups = count >> 2, tail = count & 3;
  int32_t g, i;
#if EENN_DSP
  const uint32_t offset = offset_pair(zero_point);
  word_t *words = (word_t *)block + 2 * (at / 4 * columns + column);
  for (g = 0; g < groups; ++g, x += 4, words += 2 * columns) {
    const uint32_t v = read_s8x4(x);
    words[0] = (uint32_t)__sxtab16(offset, v);
    words[1] = (uint32_t)sxtab16_ror8(offset, v);
  }
#else
  int16_t *values = block + 4 * (at / 4 * columns + column);
  for (g = 0; g < groups; ++g, x += 4, values += 4 * columns) {
    values[0] = (int16_t)(x[0] - zero_point);
    values[1] = (int16_t)(x[2] - zero_point);
    values[2] = (int16_t)(x[1] - zero_point);
    values[3] = (int16_t)(x[3] - zero_point);
  }
#endif
  for (i = 0; i < tail; ++i) block[4 * ((at + count) / 4 * columns) + i * columns + column] = (int16_t)(x[i] - zero_point);
}

void block_pad(int16_t *block, int32_t columns, int32_t column, int32_t at, int32_t count) {
  word_t *words = (word_t *)block + 2 * (at / 4 * columns + column);
  int32_t g;
  for (g = count >> 2; g > 0; --g, words += 2 * columns) words[0] = words[1] = 0;
}

/* One weight row (4 values a group) dotted with 4 columns; the accumulators come in holding the bias. */
EENN_INLINE void dot_1x4(int32_t *acc0, int32_t *acc1, int32_t *acc2, int32_t *acc3, const int8_t *w,
                         const int16_t *block, int32_t depth) {
  int32_t a0 = *acc0, a1 = *acc1, a2 = *acc2, a3 = *acc3, g;
#if EENN_ASM
  const word_t *c = (const word_t *)block;
#pragma GCC unroll 2
  for (g = depth >> 2; g > 0; --g) {
    /* GCC keeps neither the loads paired nor everything in registers here (about 25 instructions a group):
     * written out, a group is one LDR of weights, two LDMs of column words, two SXTB16 and eight SMLAD. LDM needs
     * its registers in ascending order, hence the fixed ones. */
    register uint32_t x0 __asm("r8"), x1 __asm("r9"), x2 __asm("r10"), x3 __asm("r11");
    uint32_t v, w02;
    __asm volatile(
        "ldr %[v], [%[w]], #4\n\t"
        "ldmia %[c]!, {%[x0], %[x1], %[x2], %[x3]}\n\t"
        "sxtb16 %[w02], %[v]\n\t"
        "sxtb16 %[v], %[v], ror #8\n\t"
        "smlad %[a0], %[w02], %[x0], %[a0]\n\t"
        "smlad %[a0], %[v], %[x1], %[a0]\n\t"
        "smlad %[a1], %[w02], %[x2], %[a1]\n\t"
        "smlad %[a1], %[v], %[x3], %[a1]\n\t"
        "ldmia %[c]!, {%[x0], %[x1], %[x2], %[x3]}\n\t"
        "smlad %[a2], %[w02], %[x0], %[a2]\n\t"
        "smlad %[a2], %[v], %[x1], %[a2]\n\t"
        "smlad %[a3], %[w02], %[x2], %[a3]\n\t"
        "smlad %[a3], %[v], %[x3], %[a3]"
        : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [w] "+r"(w), [c] "+r"(c), [v] "=&r"(v),
          [w02] "=&r"(w02), [x0] "=&r"(x0), [x1] "=&r"(x1), [x2] "=&r"(x2), [x3] "=&r"(x3)
        :
        : "memory");
  }
  block = (const int16_t *)c;
#else
  for (g = depth >> 2; g > 0; --g, w += 4, block += 16) {
    const int32_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
    a0 += block[0] * w0 + block[1] * w2 + block[2] * w1 + block[3] * w3;
    a1 += block[4] * w0 + block[5] * w2 + block[6] * w1 + block[7] * w3;
    a2 += block[8] * w0 + block[9] * w2 + block[10] * w1 + block[11] * w3;
    a3 += block[12] * w0 + block[13] * w2 + block[14] * w1 + block[15] * w3;
  }
#endif
  for (g = depth & 3; g > 0; --g, ++w, block += 4) {
    a0 += block[0] * *w;
    a1 += block[1] * *w;
    a2 += block[2] * *w;
    a3 += block[3] * *w;
  }
  *acc0 = a0;
  *acc1 = a1;
  *acc2 = a2;
  *acc3 = a3;
}

/* One weight row dotted with column `column` of a block of `columns` (fewer than four: the last pixels, dense). */
static int32_t dot_1x1(int32_t acc, const int8_t *w, const int16_t *block, int32_t columns, int32_t column,
                       int32_t depth) {
  int32_t g;
#if EENN_DSP
  const word_t *c = (const word_t *)block + 2 * column;
  for (g = depth >> 2; g > 0; --g, w += 4, c += 2 * columns) {
    const uint32_t v = read_s8x4(w);
    acc = __smlad(__sxtb16(v), c[0], acc);
    acc = __smlad(sxtb16_ror8(v), c[1], acc);
  }
#else
  const int16_t *c = block + 4 * column;
  for (g = depth >> 2; g > 0; --g, w += 4, c += 4 * columns)
    acc += c[0] * w[0] + c[1] * w[2] + c[2] * w[1] + c[3] * w[3];
#endif
  block += 4 * (depth >> 2) * columns + column;
  for (g = depth & 3; g > 0; --g, ++w, block += columns) acc += *block * *w;
  return acc;
}

/* The four results of one row, requantised (the branch taken once for all four) and stored to four pixels. */
EENN_INLINE void store_4(const output_stage_t *stage, eenn_scale_t scale, int32_t a0, int32_t a1, int32_t a2,
                         int32_t a3, int8_t *out0, int8_t *out1, int8_t *out2, int8_t *out3) {
  if (EENN_LIKELY(stage->fast)) {
    *out0 = (int8_t)output_fast(stage, a0, scale);
    *out1 = (int8_t)output_fast(stage, a1, scale);
    *out2 = (int8_t)output_fast(stage, a2, scale);
    *out3 = (int8_t)output_fast(stage, a3, scale);
  } else {
    *out0 = (int8_t)output_value(stage, a0, scale);
    *out1 = (int8_t)output_value(stage, a1, scale);
    *out2 = (int8_t)output_value(stage, a2, scale);
    *out3 = (int8_t)output_value(stage, a3, scale);
  }
}

void matmul_s8(const int8_t *weights, const int32_t *bias, const eenn_scale_t *scales, const output_stage_t *output,
               int32_t rows, int32_t depth, const int16_t *block, int32_t columns, int8_t *const *outputs) {
  const output_stage_t stage = *output;
  int32_t row, j;
  if (columns == BLOCK_COLUMNS) {
    int8_t *out0 = outputs[0], *out1 = outputs[1], *out2 = outputs[2], *out3 = outputs[3];
    for (row = 0; row < rows; ++row, weights += depth) {
      int32_t a0 = bias != NULL ? bias[row] : 0, a1 = a0, a2 = a0, a3 = a0;
      dot_1x4(&a0, &a1, &a2, &a3, weights, block, depth);
      store_4(&stage, scales[row], a0, a1, a2, a3, out0++, out1++, out2++, out3++);
    }
    return;
  }
  for (row = 0; row < rows; ++row, weights += depth) {
    const int32_t b = bias != NULL ? bias[row] : 0;
    for (j = 0; j < columns; ++j)
      outputs[j][row] = (int8_t)output_value(&stage, dot_1x1(b, weights, block, columns, j, depth), scales[row]);
  }
}

#if EENN_MVE
void matmul_s8_mve(const int8_t *weights, const int32_t *bias, const eenn_scale_t *scales,
                   const output_stage_t *output, int32_t rows, int32_t depth, const int8_t *block, int32_t columns,
                   int32_t zero_point, int8_t *const *outputs) {
  const output_stage_t stage = *output;
  /* Missing columns repeat the first; their results are not stored. */
  const int8_t *c0 = block, *c1 = columns > 1 ? block + depth : block;
  const int8_t *c2 = columns > 2 ? block + 2 * depth : block, *c3 = columns > 3 ? block + 3 * depth : block;
  int8_t *sink[BLOCK_COLUMNS];
  int32_t row, k, j;
  for (j = 0; j < BLOCK_COLUMNS; ++j) sink[j] = j < columns ? outputs[j] : outputs[0];
  for (row = 0; row < rows; ++row, weights += depth) {
    const int8_t *w = weights, *x0 = c0, *x1 = c1, *x2 = c2, *x3 = c3;
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, weight_sum = 0, base;
    /* Whole vectors without predication (GCC 12 saves and restores the predicate around each predicated load). */
    for (k = depth; k >= 16; k -= 16, w += 16, x0 += 16, x1 += 16, x2 += 16, x3 += 16) {
      const int8x16_t v = vld1q_s8(w);
      weight_sum = vaddvaq_s8(weight_sum, v);
      s0 = vmladavaq_s8(s0, vld1q_s8(x0), v);
      s1 = vmladavaq_s8(s1, vld1q_s8(x1), v);
      s2 = vmladavaq_s8(s2, vld1q_s8(x2), v);
      s3 = vmladavaq_s8(s3, vld1q_s8(x3), v);
    }
    if (k > 0) { /* the lanes past the depth load as zeros and add nothing */
      const mve_pred16_t lanes = vctp8q((uint32_t)k);
      const int8x16_t v = vldrbq_z_s8(w, lanes);
      weight_sum = vaddvaq_s8(weight_sum, v);
      s0 = vmladavaq_s8(s0, vldrbq_z_s8(x0, lanes), v);
      s1 = vmladavaq_s8(s1, vldrbq_z_s8(x1, lanes), v);
      s2 = vmladavaq_s8(s2, vldrbq_z_s8(x2, lanes), v);
      s3 = vmladavaq_s8(s3, vldrbq_z_s8(x3, lanes), v);
    }
    base = (bias != NULL ? bias[row] : 0) - zero_point * weight_sum;
    store_4(&stage, scales[row], base + s0, base + s1, base + s2, base + s3, sink[0] + row, sink[1] + row,
            sink[2] + row, sink[3] + row);
  }
}
#endif
