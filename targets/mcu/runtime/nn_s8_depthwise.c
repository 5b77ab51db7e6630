/* nn_s8_depthwise.c: int8 depthwise convolution (one filter per channel), NHWC.
 *
 * Each output pixel sums over the taps of its window that lie inside the input (padding holds the zero point, so
 * it adds nothing and is skipped). Channels go four at a time: a word of four input bytes and one of four weights
 * give 16-bit pairs, and SMLABB / SMLATT multiply-add each channel's halves. */
#include "nn_s8_support.h"
#include "nn_window.h"

/* Channels [c, c + 4) of one output pixel. */
EENN_INLINE void depthwise_4(const eenn_conv_s8_t *conv, const int8_t *input, const window_taps_t *t, int32_t c,
                             int8_t *out) {
  const eenn_window_t *w = &conv->window;
  const int32_t channels = w->input_channels;
  int32_t acc[4] = {0, 0, 0, 0}, ky, kx, i;
  if (conv->bias != NULL)
    for (i = 0; i < 4; ++i) acc[i] = conv->bias[c + i];
  for (ky = t->ky0; ky < t->ky1; ++ky) {
    const int8_t *x = input + window_row(t, ky) + c;
    const int8_t *wt = conv->weights + (ky * w->kernel_width + t->kx0) * channels + c;
#if EENN_DSP
    const uint32_t offset = ((uint32_t)-conv->input_zero_point & 0xFFFFu) * 0x10001u;
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (kx = t->kx1 - t->kx0; kx > 0; --kx, x += t->tap_x, wt += channels) {
      const uint32_t xv = read_s8x4(x), wv = read_s8x4(wt);
      const int32_t x02 = __sxtab16(offset, xv), x13 = sxtab16_ror8(offset, xv);
      const int32_t w02 = __sxtb16(wv), w13 = sxtb16_ror8(wv);
      a0 = __smlabb(x02, w02, a0);
      a2 = __smlatt(x02, w02, a2);
      a1 = __smlabb(x13, w13, a1);
      a3 = __smlatt(x13, w13, a3);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
#else
    for (kx = t->kx1 - t->kx0; kx > 0; --kx, x += t->tap_x, wt += channels)
      for (i = 0; i < 4; ++i) acc[i] += (x[i] - conv->input_zero_point) * wt[i];
#endif
  }
  for (i = 0; i < 4; ++i) out[c + i] = saturate(requantize(acc[i], conv->scales[c + i]), conv->output);
}

/* One channel of one output pixel (those left over from the groups of four). */
static void depthwise_1(const eenn_conv_s8_t *conv, const int8_t *input, const window_taps_t *t, int32_t c,
                        int8_t *out) {
  const int32_t channels = conv->window.input_channels;
  int32_t acc = conv->bias != NULL ? conv->bias[c] : 0, ky, kx;
  for (ky = t->ky0; ky < t->ky1; ++ky) {
    const int8_t *x = input + window_row(t, ky) + c;
    const int8_t *wt = conv->weights + (ky * conv->window.kernel_width + t->kx0) * channels + c;
    for (kx = t->kx1 - t->kx0; kx > 0; --kx, x += t->tap_x, wt += channels) acc += (*x - conv->input_zero_point) * *wt;
  }
  out[c] = saturate(requantize(acc, conv->scales[c]), conv->output);
}

void eenn_depthwise_s8(const eenn_conv_s8_t *conv, const int8_t *input, int8_t *output) {
  const eenn_window_t *w = &conv->window;
  const int32_t channels = w->output_channels;
  int32_t oy, ox, c;
  for (oy = 0; oy < w->output_height; ++oy) {
    for (ox = 0; ox < w->output_width; ++ox, output += channels) {
      const window_taps_t t = window_taps(w, oy, ox);
      for (c = 0; c + 4 <= channels; c += 4) depthwise_4(conv, input, &t, c, output);
      for (; c < channels; ++c) depthwise_1(conv, input, &t, c, output);
    }
  }
}
