/* nn_s8_pool.c: int8 average and max pooling, NHWC, over the taps of each window inside the input. */
#include "nn_s8_support.h"
#include "nn_window.h"

typedef struct {
  const void *pool;
  const int8_t *input;
  int8_t *output;
} pooling_t;

static int32_t window_sum(const int8_t *input, const window_taps_t *t, int32_t c) {
  int32_t sum = 0, ky;
  for (ky = t->ky0; ky < t->ky1; ++ky) {
    const int8_t *x = input + window_row(t, ky) + c;
    const int8_t *end = x + (t->kx1 - t->kx0) * t->tap_x;
    for (; x != end; x += t->tap_x) sum += *x;
  }
  return sum;
}

static int32_t window_max(const int8_t *input, const window_taps_t *t, int32_t c, int32_t floor) {
  int32_t best = floor, ky;
  for (ky = t->ky0; ky < t->ky1; ++ky) {
    const int8_t *x = input + window_row(t, ky) + c;
    const int8_t *end = x + (t->kx1 - t->kx0) * t->tap_x;
    for (; x != end; x += t->tap_x) best = *x > best ? *x : best;
  }
  return best;
}

static void average(const void *context, const window_taps_t *t, int32_t pixel) {
  const pooling_t *p = (const pooling_t *)context;
  const eenn_avg_pool_s8_t *pool = (const eenn_avg_pool_s8_t *)p->pool;
  const int32_t channels = pool->window.input_channels;
  /* Padding holds the zero point, so only the taps inside add (x - z). */
  const int32_t offset = -pool->input_zero_point * window_count(t);
  int8_t *out = p->output + (intptr_t)pixel * channels;
  int32_t c;
  for (c = 0; c < channels; ++c)
    out[c] = (int8_t)saturate(requantize(pool->weight * (window_sum(p->input, t, c) + offset), pool->scale),
                              pool->output);
}

static void maximum(const void *context, const window_taps_t *t, int32_t pixel) {
  const pooling_t *p = (const pooling_t *)context;
  const eenn_max_pool_s8_t *pool = (const eenn_max_pool_s8_t *)p->pool;
  const int32_t channels = pool->window.input_channels;
  int8_t *out = p->output + (intptr_t)pixel * channels;
  int32_t c;
  for (c = 0; c < channels; ++c) {
    const int32_t best = window_max(p->input, t, c, pool->min);
    out[c] = (int8_t)(best < pool->max ? best : pool->max);
  }
}

void eenn_avg_pool_s8(const eenn_avg_pool_s8_t *pool, const int8_t *input, int8_t *output) {
  const pooling_t p = {pool, input, output};
  for_each_window(&pool->window, average, &p);
}

void eenn_max_pool_s8(const eenn_max_pool_s8_t *pool, const int8_t *input, int8_t *output) {
  const pooling_t p = {pool, input, output};
  for_each_window(&pool->window, maximum, &p);
}
