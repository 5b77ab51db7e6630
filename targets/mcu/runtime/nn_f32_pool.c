/* nn_f32_pool.c: float32 average and max pooling, NHWC, over the taps of each window inside the input. */
#include "nn_f32_support.h"
#include "nn_window.h"

typedef struct {
  const eenn_pool_f32_t *pool;
  const float *input;
  float *output;
} pooling_t;

static float window_sum(const float *input, const window_taps_t *t, int32_t c) {
  float sum = 0.0f;
  int32_t ky;
  for (ky = t->ky0; ky < t->ky1; ++ky) {
    const float *x = input + window_row(t, ky) + c;
    const float *end = x + (t->kx1 - t->kx0) * t->tap_x;
    for (; x != end; x += t->tap_x) sum += *x;
  }
  return sum;
}

static float window_max(const float *input, const window_taps_t *t, int32_t c) {
  float best = -3.402823466e38f;
  int32_t ky;
  for (ky = t->ky0; ky < t->ky1; ++ky) {
    const float *x = input + window_row(t, ky) + c;
    const float *end = x + (t->kx1 - t->kx0) * t->tap_x;
    for (; x != end; x += t->tap_x) best = *x > best ? *x : best;
  }
  return best;
}

static void average(const void *context, const window_taps_t *t, int32_t pixel) {
  const pooling_t *p = (const pooling_t *)context;
  const eenn_window_t *w = &p->pool->window;
  const int32_t channels = w->input_channels;
  const int32_t count = p->pool->count_padding ? w->kernel_height * w->kernel_width : window_count(t);
  const float scale = 1.0f / (float)count;
  float *out = p->output + (intptr_t)pixel * channels;
  int32_t c;
  for (c = 0; c < channels; ++c) out[c] = clamp_f32(window_sum(p->input, t, c) * scale, p->pool->min, p->pool->max);
}

static void maximum(const void *context, const window_taps_t *t, int32_t pixel) {
  const pooling_t *p = (const pooling_t *)context;
  const int32_t channels = p->pool->window.input_channels;
  float *out = p->output + (intptr_t)pixel * channels;
  int32_t c;
  for (c = 0; c < channels; ++c) out[c] = clamp_f32(window_max(p->input, t, c), p->pool->min, p->pool->max);
}

void eenn_avg_pool_f32(const eenn_pool_f32_t *pool, const float *input, float *output) {
  const pooling_t p = {pool, input, output};
  for_each_window(&pool->window, average, &p);
}

void eenn_max_pool_f32(const eenn_pool_f32_t *pool, const float *input, float *output) {
  const pooling_t p = {pool, input, output};
  for_each_window(&pool->window, maximum, &p);
}
