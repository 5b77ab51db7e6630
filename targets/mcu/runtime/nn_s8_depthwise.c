/* nn_s8_depthwise.c: int8 depthwise convolution (one filter per channel), NHWC.
 *
 * Each output pixel sums over the taps of its window that lie inside the input (padding holds the zero point, so
 * it adds nothing and is skipped). Channels go four at a time: a word of four input bytes and one of four weights
 * give 16-bit pairs, and SMLABB / SMLATT multiply-add each channel's halves. */
#include "nn_s8_support.h"
#include "nn_window.h"

/* The parameters the loops use, in locals: stores through int8_t pointers may alias anything, so fields read
 * through `conv` would be loaded again after every store. */
typedef struct {
  const int8_t *input, *weights;
  const int32_t *bias;
  const eenn_scale_t *scales;
  output_stage_t stage;
  int32_t channels, kernel_width, zero_point;
} depthwise_t;

/* Channels [c, c + 4) of one output pixel. */
EENN_INLINE void channels_4(const depthwise_t *d, const window_taps_t *t, int32_t c, int8_t *out) {
  const int32_t channels = d->channels;
  const intptr_t tap_x = t->tap_x;
  int32_t a0, a1, a2, a3, ky, kx;
  if (d->bias != NULL) {
    a0 = d->bias[c], a1 = d->bias[c + 1], a2 = d->bias[c + 2], a3 = d->bias[c + 3];
  } else {
    a0 = a1 = a2 = a3 = 0;
  }
  for (ky = t->ky0; ky < t->ky1; ++ky) {
    const int8_t *x = d->input + window_row(t, ky) + c;
    const int8_t *wt = d->weights + (ky * d->kernel_width + t->kx0) * channels + c;
#if EENN_DSP
    const uint32_t offset = offset_pair(d->zero_point);
    for (kx = t->kx1 - t->kx0; kx > 0; --kx, x += tap_x, wt += channels) {
      const uint32_t wv = read_s8x4(wt), xv = read_s8x4(x);
      const int32_t w02 = __sxtb16(wv), x02 = __sxtab16(offset, xv);
      const int32_t w13 = sxtb16_ror8(wv), x13 = sxtab16_ror8(offset, xv);
      a0 = __smlabb(x02, w02, a0);
      a2 = __smlatt(x02, w02, a2);
      a1 = __smlabb(x13, w13, a1);
      a3 = __smlatt(x13, w13, a3);
    }
#else
    for (kx = t->kx1 - t->kx0; kx > 0; --kx, x += tap_x, wt += channels) {
      a0 += (x[0] - d->zero_point) * wt[0];
      a1 += (x[1] - d->zero_point) * wt[1];
      a2 += (x[2] - d->zero_point) * wt[2];
      a3 += (x[3] - d->zero_point) * wt[3];
    }
#endif
  }
  if (EENN_LIKELY(d->stage.fast)) {
    out[c] = (int8_t)output_fast(&d->stage, a0, d->scales[c]);
    out[c + 1] = (int8_t)output_fast(&d->stage, a1, d->scales[c + 1]);
    out[c + 2] = (int8_t)output_fast(&d->stage, a2, d->scales[c + 2]);
    out[c + 3] = (int8_t)output_fast(&d->stage, a3, d->scales[c + 3]);
  } else {
    out[c] = (int8_t)output_value(&d->stage, a0, d->scales[c]);
    out[c + 1] = (int8_t)output_value(&d->stage, a1, d->scales[c + 1]);
    out[c + 2] = (int8_t)output_value(&d->stage, a2, d->scales[c + 2]);
    out[c + 3] = (int8_t)output_value(&d->stage, a3, d->scales[c + 3]);
  }
}

/* Channel c of one output pixel (the channels left over from the groups of four). */
static void channel_1(const depthwise_t *d, const window_taps_t *t, int32_t c, int8_t *out) {
  int32_t acc = d->bias != NULL ? d->bias[c] : 0, ky, kx;
  for (ky = t->ky0; ky < t->ky1; ++ky) {
    const int8_t *x = d->input + window_row(t, ky) + c;
    const int8_t *wt = d->weights + (ky * d->kernel_width + t->kx0) * d->channels + c;
    for (kx = t->kx1 - t->kx0; kx > 0; --kx, x += t->tap_x, wt += d->channels) acc += (*x - d->zero_point) * *wt;
  }
  out[c] = (int8_t)output_value(&d->stage, acc, d->scales[c]);
}

void eenn_depthwise_s8(const eenn_conv_s8_t *conv, const int8_t *input, int8_t *output) {
  const eenn_window_t w = conv->window;
  depthwise_t d;
  int32_t oy, ox;
  d.input = input;
  d.weights = conv->weights;
  d.bias = conv->bias;
  d.scales = conv->scales;
  d.stage = output_stage(conv->output, conv->scales, w.output_channels);
  d.channels = w.output_channels;
  d.kernel_width = w.kernel_width;
  d.zero_point = conv->input_zero_point;
  for (oy = 0; oy < w.output_height; ++oy) {
    for (ox = 0; ox < w.output_width; ++ox, output += d.channels) {
      const window_taps_t t = window_taps(&w, oy, ox);
      int32_t c;
      for (c = 0; c + 4 <= d.channels; c += 4) channels_4(&d, &t, c, output);
      for (; c < d.channels; ++c) channel_1(&d, &t, c, output);
    }
  }
}
