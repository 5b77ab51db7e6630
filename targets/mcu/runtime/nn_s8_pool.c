/* nn_s8_pool.c: int8 average and max pooling, NHWC, over the taps of each window inside the input. */
#include "nn_s8_support.h"
#include "nn_window.h"

void eenn_avg_pool_s8(const eenn_avg_pool_s8_t *pool, const int8_t *input, int8_t *output) {
  const eenn_window_t *w = &pool->window;
  const int32_t channels = w->input_channels;
  int32_t oy, ox, c, ky, kx;
  for (oy = 0; oy < w->output_height; ++oy) {
    for (ox = 0; ox < w->output_width; ++ox, output += channels) {
      const window_taps_t t = window_taps(w, oy, ox);
      /* Padding holds the zero point, so only the taps inside add (x - z). */
      const int32_t offset = -pool->input_zero_point * window_count(&t);
      for (c = 0; c < channels; ++c) {
        int32_t sum = offset;
        for (ky = t.ky0; ky < t.ky1; ++ky) {
          const int8_t *x = input + window_row(&t, ky) + c;
          for (kx = t.kx1 - t.kx0; kx > 0; --kx, x += t.tap_x) sum += *x;
        }
        output[c] = (int8_t)saturate(requantize(sum, pool->scale), pool->output);
      }
    }
  }
}

void eenn_max_pool_s8(const eenn_max_pool_s8_t *pool, const int8_t *input, int8_t *output) {
  const eenn_window_t *w = &pool->window;
  const int32_t channels = w->input_channels;
  int32_t oy, ox, c, ky, kx;
  for (oy = 0; oy < w->output_height; ++oy) {
    for (ox = 0; ox < w->output_width; ++ox, output += channels) {
      const window_taps_t t = window_taps(w, oy, ox);
      for (c = 0; c < channels; ++c) {
        int32_t best = pool->min;
        for (ky = t.ky0; ky < t.ky1; ++ky) {
          const int8_t *x = input + window_row(&t, ky) + c;
          for (kx = t.kx1 - t.kx0; kx > 0; --kx, x += t.tap_x) best = *x > best ? *x : best;
        }
        output[c] = (int8_t)(best < pool->max ? best : pool->max);
      }
    }
  }
}
