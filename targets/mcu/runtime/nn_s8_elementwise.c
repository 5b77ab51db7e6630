/* nn_s8_elementwise.c: int8 add, rescale, and the conversions from and to float32. */
#include "nn_s8_support.h"

#define ADD_LEFT_SHIFT 20 /* the headroom both inputs of an add get before they meet at a common scale */

void eenn_add_s8(const eenn_add_s8_t *add, const int8_t *a, const int8_t *b, int8_t *output) {
  int32_t i;
  for (i = 0; i < add->size; ++i) {
    const int32_t a_common = requantize((a[i] - add->a_zero_point) * (1 << ADD_LEFT_SHIFT), add->a_scale);
    const int32_t b_common = requantize((b[i] - add->b_zero_point) * (1 << ADD_LEFT_SHIFT), add->b_scale);
    output[i] = saturate(requantize(a_common + b_common, add->output_scale), add->output);
  }
}

void eenn_rescale_s8(const eenn_rescale_s8_t *rescale, const int8_t *input, int8_t *output) {
  int32_t i;
  for (i = 0; i < rescale->size; ++i)
    output[i] = saturate(requantize(input[i] - rescale->input_zero_point, rescale->scale), rescale->output);
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
