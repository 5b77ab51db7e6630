/* nn_f32_pool.c: float32 average and max pooling, NHWC, over the taps of each window inside the input. */
#include "nn_f32_support.h"
#include "nn_window.h"

void eenn_avg_pool_f32(const eenn_pool_f32_t *pool, const float *input, float *output) {
  const eenn_window_t *w = &pool->window;
  const int32_t channels = w->input_channels;
  int32_t oy, ox, c, ky, kx;
  for (oy = 0; oy < w->output_height; ++oy) {
    for (ox = 0; ox < w->output_width; ++ox, output += channels) {
      const window_taps_t t = window_taps(w, oy, ox);
      const int32_t count = pool->count_padding ? w->kernel_height * w->kernel_width : window_count(&t);
      const float scale = 1.0f / (float)count;
      for (c = 0; c < channels; ++c) {
        float sum = 0.0f;
        for (ky = t.ky0; ky < t.ky1; ++ky) {
          const float *x = input + window_row(&t, ky) + c;
          for (kx = t.kx1 - t.kx0; kx > 0; --kx, x += t.tap_x) sum += *x;
        }
        output[c] = clamp_f32(sum * scale, pool->min, pool->max);
      }
    }
  }
}

void eenn_max_pool_f32(const eenn_pool_f32_t *pool, const float *input, float *output) {
  const eenn_window_t *w = &pool->window;
  const int32_t channels = w->input_channels;
  int32_t oy, ox, c, ky, kx;
  for (oy = 0; oy < w->output_height; ++oy) {
    for (ox = 0; ox < w->output_width; ++ox, output += channels) {
      const window_taps_t t = window_taps(w, oy, ox);
      for (c = 0; c < channels; ++c) {
        float best = -3.402823466e38f;
        for (ky = t.ky0; ky < t.ky1; ++ky) {
          const float *x = input + window_row(&t, ky) + c;
          for (kx = t.kx1 - t.kx0; kx > 0; --kx, x += t.tap_x) best = *x > best ? *x : best;
        }
        output[c] = clamp_f32(best, pool->min, pool->max);
      }
    }
  }
}
