/* nn_f32_depthwise.c: float32 depthwise convolution, NHWC. Each output pixel takes the taps of its window that lie
 * inside the input (a window wholly inside walks one flat list of tap offsets), four channels abreast so each tap's
 * loads and multiply-adds go four at a time. */
#include "nn_f32_support.h"
#include "nn_window.h"

#define MAX_TAPS 49 /* 7x7; larger kernels take the taps row by row */

typedef struct {
  const float *weights, *bias;
  int32_t channels, taps, kernel_width;
  float min, max;
} depthwise_t;

typedef struct {
  float a0, a1, a2, a3;
} sums_t;

static inline void tap_4(sums_t *acc, const float *x, const float *w) {
  acc->a0 = MULTIPLY_ADD(acc->a0, x[0], w[0]);
  acc->a1 = MULTIPLY_ADD(acc->a1, x[1], w[1]);
  acc->a2 = MULTIPLY_ADD(acc->a2, x[2], w[2]);
  acc->a3 = MULTIPLY_ADD(acc->a3, x[3], w[3]);
}

static inline void store(const depthwise_t *d, float acc, int32_t c, float *out) {
  out[c] = clamp_f32(acc + (d->bias != NULL ? d->bias[c] : 0.0f), d->min, d->max);
}

/* Channels [c, c + 4) of one output pixel: every tap (offsets != NULL: the window lies inside) or those inside. */
static void channels_4(const depthwise_t *d, const window_taps_t *t, const float *input, const intptr_t *offsets,
                       int32_t c, float *out) {
  const int32_t channels = d->channels;
  sums_t acc = {0.0f, 0.0f, 0.0f, 0.0f};
  int32_t k, ky, kx;
  if (offsets != NULL) {
    const float *origin = input + t->origin + c, *w = d->weights + c;
    for (k = 0; k < d->taps; ++k, w += channels) tap_4(&acc, origin + offsets[k], w);
  } else {
    for (ky = t->ky0; ky < t->ky1; ++ky) {
      const float *x = input + window_row(t, ky) + c;
      const float *w = d->weights + (ky * d->kernel_width + t->kx0) * channels + c;
      for (kx = t->kx1 - t->kx0; kx > 0; --kx, x += t->tap_x, w += channels) tap_4(&acc, x, w);
    }
  }
  store(d, acc.a0, c, out), store(d, acc.a1, c + 1, out), store(d, acc.a2, c + 2, out), store(d, acc.a3, c + 3, out);
}

/* Channel c of one output pixel (the channels left over from the groups of four). */
static void channel_1(const depthwise_t *d, const window_taps_t *t, const float *input, int32_t c, float *out) {
  float acc = 0.0f;
  int32_t ky, kx;
  for (ky = t->ky0; ky < t->ky1; ++ky) {
    const float *x = input + window_row(t, ky) + c;
    const float *w = d->weights + (ky * d->kernel_width + t->kx0) * d->channels + c;
    for (kx = t->kx1 - t->kx0; kx > 0; --kx, x += t->tap_x, w += d->channels) acc = MULTIPLY_ADD(acc, *x, *w);
  }
  store(d, acc, c, out);
}

void eenn_depthwise_f32(const eenn_conv_f32_t *conv, const float *input, float *output) {
  const eenn_window_t w = conv->window;
  intptr_t offsets[MAX_TAPS]; /* of each tap from the window's origin, in elements */
  depthwise_t d;
  int32_t oy, ox, c, k;
  d.weights = conv->weights;
  d.bias = conv->bias;
  d.channels = w.output_channels;
  d.taps = w.kernel_height * w.kernel_width;
  d.kernel_width = w.kernel_width;
  d.min = conv->min;
  d.max = conv->max;
  for (k = 0; k < d.taps && d.taps <= MAX_TAPS; ++k)
    offsets[k] = ((intptr_t)(k / w.kernel_width) * w.dilation_height * w.input_width +
                  (intptr_t)(k % w.kernel_width) * w.dilation_width) *
                 w.input_channels;
  for (oy = 0; oy < w.output_height; ++oy) {
    for (ox = 0; ox < w.output_width; ++ox, output += d.channels) {
      const window_taps_t t = window_taps(&w, oy, ox);
      const intptr_t *inside = window_count(&t) == d.taps && d.taps <= MAX_TAPS ? offsets : NULL;
      for (c = 0; c + 4 <= d.channels; c += 4) channels_4(&d, &t, input, inside, c, output);
      for (; c < d.channels; ++c) channel_1(&d, &t, input, c, output);
    }
  }
}
