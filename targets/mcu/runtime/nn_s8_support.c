/* nn_s8_support.c: the out-of-line parts of the int8 kernels' shared arithmetic (nn_s8_support.h). */
#include "nn_s8_support.h"

int32_t requantize_wide(int32_t acc, int32_t multiplier, int32_t shift) {
  const int64_t y = ((int64_t)acc * multiplier + ((int64_t)1 << (shift - 1))) >> shift;
  return y > (1 << 30) ? 1 << 30 : (y < -(1 << 30) ? -(1 << 30) : (int32_t)y);
}

output_stage_t output_stage(eenn_output_t output, const eenn_scale_t *scales, int32_t channels) {
  output_stage_t stage;
  int32_t c;
  stage.output = output;
  stage.offset = 1 + 2 * output.zero_point;
  stage.fast = output.min == -128 && output.max == 127;
  for (c = 0; c < channels; ++c) stage.fast = stage.fast && scales[c].shift > 32;
  return stage;
}
