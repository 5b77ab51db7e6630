/* nn_f32_elementwise.c: float32 add with a fused clamp (ReLU, ReLU6). */
#include "eenn_nn.h"

void eenn_add_f32(const eenn_add_f32_t *add, const float *a, const float *b, float *output) {
  int32_t i;
  for (i = 0; i < add->size; ++i) {
    const float v = a[i] + b[i];
    output[i] = v < add->min ? add->min : (v > add->max ? add->max : v);
  }
}
