/* nn_f32_depthwise.c: float32 depthwise convolution, NHWC, over the taps of each window inside the input. */
#include "eenn_nn.h"
#include "nn_window.h"

void eenn_depthwise_f32(const eenn_conv_f32_t *conv, const float *input, float *output) {
  const eenn_window_t *w = &conv->window;
  const int32_t channels = w->output_channels;
  int32_t oy, ox, c, ky, kx;
  for (oy = 0; oy < w->output_height; ++oy) {
    for (ox = 0; ox < w->output_width; ++ox, output += channels) {
      const window_taps_t t = window_taps(w, oy, ox);
      for (c = 0; c < channels; ++c) {
        float acc = conv->bias != NULL ? conv->bias[c] : 0.0f;
        for (ky = t.ky0; ky < t.ky1; ++ky) {
          const float *x = input + window_row(&t, ky) + c;
          const float *wt = conv->weights + (ky * w->kernel_width + t.kx0) * channels + c;
          for (kx = t.kx1 - t.kx0; kx > 0; --kx, x += t.tap_x, wt += channels) acc += *x * *wt;
        }
        output[c] = acc < conv->min ? conv->min : (acc > conv->max ? conv->max : acc);
      }
    }
  }
}
