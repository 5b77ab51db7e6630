/* nn_s8_elementwise.c: int8 add, rescale, and the conversions from and to float32. */
#include "nn_s8_support.h"

#define ADD_LEFT_SHIFT 20 /* the headroom both inputs of an add get before they meet at a common scale */
#define ADD_TABLE_FROM 512 /* elements from which tables of each input's 256 rescaled values pay for themselves */

/* An input of an add at the common scale: requantize((x - z) << 20, scale). */
EENN_INLINE int32_t add_input(int32_t x, int32_t zero_point, eenn_scale_t scale) {
  return requantize((x - zero_point) * (1 << ADD_LEFT_SHIFT), scale);
}

size_t eenn_add_s8_scratch_bytes(const eenn_add_s8_t *add) {
  return add->size >= ADD_TABLE_FROM ? 2 * 256 * sizeof(int32_t) : 0;
}

/* out = saturate(requantize(a_table[a] + b_table[b])) over the inputs' uint8 bits. */
static void add_tabled(const int32_t *a_table, const int32_t *b_table, const uint8_t *a, const uint8_t *b,
                       int8_t *output, int32_t size, eenn_scale_t scale, eenn_output_t out) {
  int32_t i;
  if (scale.shift > 32) {
    const int32_t k = scale.shift - 33;
    for (i = 0; i < size; ++i)
      output[i] = (int8_t)saturate(requantize_high(a_table[a[i]] + b_table[b[i]], scale.multiplier, k, 1), out);
  } else {
    for (i = 0; i < size; ++i) output[i] = (int8_t)saturate(requantize(a_table[a[i]] + b_table[b[i]], scale), out);
  }
}

void eenn_add_s8(const eenn_add_s8_t *add, const int8_t *a, const int8_t *b, int8_t *output, void *scratch) {
  const eenn_scale_t a_scale = add->a_scale, b_scale = add->b_scale, output_scale = add->output_scale;
  const eenn_output_t out = add->output;
  const int32_t size = add->size, a_zero = add->a_zero_point, b_zero = add->b_zero_point;
  int32_t i;
  if (size >= ADD_TABLE_FROM) {
    /* Indexed by the input's bits as uint8: entry v holds the rescaled (int8_t)v. */
    int32_t *a_table = (int32_t *)scratch, *b_table = a_table + 256;
    for (i = 0; i < 256; ++i) {
      a_table[i] = add_input((int8_t)i, a_zero, a_scale);
      b_table[i] = add_input((int8_t)i, b_zero, b_scale);
    }
    add_tabled(a_table, b_table, (const uint8_t *)a, (const uint8_t *)b, output, size, output_scale, out);
    return;
  }
  for (i = 0; i < size; ++i) {
    const int32_t sum = add_input(a[i], a_zero, a_scale) + add_input(b[i], b_zero, b_scale);
    output[i] = (int8_t)saturate(requantize(sum, output_scale), out);
  }
}

void eenn_rescale_s8(const eenn_rescale_s8_t *rescale, const int8_t *input, int8_t *output) {
  int32_t i;
  for (i = 0; i < rescale->size; ++i)
    output[i] = (int8_t)saturate(requantize(input[i] - rescale->input_zero_point, rescale->scale), rescale->output);
}

/* Adding and taking away 1.5 * 2^23 rounds a float of magnitude below 2^22 to an integer, half to even, in the
 * default rounding mode (C without -ffast-math keeps the two operations); values beyond the int8 range are
 * clamped first, so it always applies. */
#define ROUNDING_BIAS 12582912.0f

void eenn_quantize_s8(const eenn_quantize_t *quantize, const float *input, int8_t *output) {
  int32_t i;
  for (i = 0; i < quantize->size; ++i) {
    float r = input[i] / quantize->scale;
    int32_t q;
    r = r > -256.0f ? r : -256.0f; /* also NaN */
    r = r < 256.0f ? r : 256.0f;
    q = (int32_t)((r + ROUNDING_BIAS) - ROUNDING_BIAS) + quantize->zero_point;
    output[i] = (int8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));
  }
}

void eenn_dequantize_s8(const eenn_quantize_t *quantize, const int8_t *input, float *output) {
  int32_t i;
  for (i = 0; i < quantize->size; ++i) output[i] = (float)(input[i] - quantize->zero_point) * quantize->scale;
}
