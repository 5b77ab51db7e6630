/* nn_f32_elementwise.c: float32 add with a fused clamp (ReLU, ReLU6). */
#include "nn_f32_support.h"

void eenn_add_f32(const eenn_add_f32_t *add, const float *a, const float *b, float *output) {
  int32_t i;
  for (i = 0; i < add->size; ++i) output[i] = clamp_f32(a[i] + b[i], add->min, add->max);
}
