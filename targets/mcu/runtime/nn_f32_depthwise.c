/* nn_f32_depthwise.c: float32 depthwise convolution, NHWC, over the taps of each window inside the input;
 * channels four at a time so each tap's loads and multiply-adds go four abreast. */
#include "nn_f32_support.h"
#include "nn_window.h"

typedef struct {
  const float *input, *weights, *bias;
  int32_t channels, kernel_width;
  float min, max;
} depthwise_t;

/* Channels [c, c + count) of one output pixel, count 1..4. */
static void channels_upto_4(const depthwise_t *d, const window_taps_t *t, int32_t c, int32_t count, float *out) {
  const int32_t channels = d->channels;
  float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
  int32_t ky, kx;
  for (ky = t->ky0; ky < t->ky1; ++ky) {
    const float *x = d->input + window_row(t, ky) + c;
    const float *w = d->weights + (ky * d->kernel_width + t->kx0) * channels + c;
    if (count == 4) {
      for (kx = t->kx1 - t->kx0; kx > 0; --kx, x += t->tap_x, w += channels) {
        a0 = MULTIPLY_ADD(a0, x[0], w[0]);
        a1 = MULTIPLY_ADD(a1, x[1], w[1]);
        a2 = MULTIPLY_ADD(a2, x[2], w[2]);
        a3 = MULTIPLY_ADD(a3, x[3], w[3]);
      }
    } else {
      for (kx = t->kx1 - t->kx0; kx > 0; --kx, x += t->tap_x, w += channels) a0 = MULTIPLY_ADD(a0, x[0], w[0]);
    }
  }
  out[c] = clamp_f32(a0 + (d->bias != NULL ? d->bias[c] : 0.0f), d->min, d->max);
  if (count == 4) {
    out[c + 1] = clamp_f32(a1 + (d->bias != NULL ? d->bias[c + 1] : 0.0f), d->min, d->max);
    out[c + 2] = clamp_f32(a2 + (d->bias != NULL ? d->bias[c + 2] : 0.0f), d->min, d->max);
    out[c + 3] = clamp_f32(a3 + (d->bias != NULL ? d->bias[c + 3] : 0.0f), d->min, d->max);
  }
}

void eenn_depthwise_f32(const eenn_conv_f32_t *conv, const float *input, float *output) {
  const eenn_window_t w = conv->window;
  depthwise_t d;
  int32_t oy, ox, c;
  d.input = input;
  d.weights = conv->weights;
  d.bias = conv->bias;
  d.channels = w.output_channels;
  d.kernel_width = w.kernel_width;
  d.min = conv->min;
  d.max = conv->max;
  for (oy = 0; oy < w.output_height; ++oy) {
    for (ox = 0; ox < w.output_width; ++ox, output += d.channels) {
      const window_taps_t t = window_taps(&w, oy, ox);
      for (c = 0; c + 4 <= d.channels; c += 4) channels_upto_4(&d, &t, c, 4, output);
      for (; c < d.channels; ++c) channels_upto_4(&d, &t, c, 1, output);
    }
  }
}
