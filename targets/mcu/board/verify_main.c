/* verify_main.c: runs eenn_infer on every input in inputs.bin and writes one record per sample to
 * results.bin, and for a sample the device hands over (EENN_CONTINUE) its live tensor to live.bin
 * (semihosting file I/O on the target, plain files on the host). `eenn-tvm verify` and `run` drive it. */
#include <stdio.h>

#include "board.h"
#include "eenn_model.h"
#include "record.h"

static float input[EENN_INPUT_ELEMENTS];

int main(void) {
  FILE *in = fopen("inputs.bin", "rb"), *out = fopen("results.bin", "wb"), *live = fopen("live.bin", "wb");
  uint32_t milli_instructions_per_tick;
  size_t samples = 0;
  if (in == NULL || out == NULL || live == NULL) {
    printf("eenn: cannot open inputs.bin, results.bin or live.bin\n");
    return 1;
  }
  milli_instructions_per_tick = board_counter_start();
  board_stack_paint();
  while (fread(input, sizeof(float), EENN_INPUT_ELEMENTS, in) == EENN_INPUT_ELEMENTS) {
    eenn_result_t result = {0};
    uint64_t start = board_counter_ticks();
    eenn_status_t status = eenn_infer(input, &result);
    record_t record = record_of(status, &result, board_counter_ticks() - start);
    fwrite(&record, sizeof(record), 1, out);
    if (record.status == EENN_CONTINUE) fwrite(result.live, 1, result.live_bytes, live);
    ++samples;
  }
  fclose(live);
  fclose(out);
  fclose(in);
  printf("eenn: samples=%lu milli_instructions_per_tick=%lu stack_bytes=%lu\n", (unsigned long)samples,
         (unsigned long)milli_instructions_per_tick, (unsigned long)board_stack_used());
  return 0;
}
