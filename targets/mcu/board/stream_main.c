/* stream_main.c: the firmware as a sensor node of a live deployment runs it. Inputs arrive over the UART; for
 * each, one result record leaves over the UART. When no exit fires on the device, the record carries the
 * hand-over tensor, as it would leave through a radio, and the device's last exit's answer, which the gateway
 * gives (marked degraded) when the next tier does not answer in time. `eenn-tvm device` drives it; the byte
 * layout is in docs/tiers.md ("The board's stream"). */
#include <stdint.h>
#include <stdio.h>

#include "board.h"
#include "eenn_model.h"
#include "record.h"
#include "uart.h"

#define STREAM_VERSION 1u
#define MAGIC_HELLO 0x424E4545u  /* "EENB" in memory order (little-endian) */
#define MAGIC_INPUT 0x494E4545u  /* "EENI" */
#define MAGIC_RESULT 0x524E4545u /* "EENR" */
#define STOP_INDEX 0xFFFFFFFFu

typedef struct {
  uint32_t magic, version, input_elements, classes, live_bytes, milli_instructions_per_tick;
} hello_t;

typedef struct {
  uint32_t magic, index;
  record_t record;
  uint32_t live_bytes; /* this many bytes of the hand-over tensor follow */
} result_t;

static float input[EENN_INPUT_ELEMENTS];

/* The index of the next input: bytes up to the input magic are skipped, so a stray byte costs one sample, not
 * the rest of the stream. */
static uint32_t next_input(void) {
  uint32_t window = 0, index;
  uint8_t byte;
  while (window != MAGIC_INPUT) {
    board_uart_read(&byte, 1);
    window = (window >> 8) | ((uint32_t)byte << 24);
  }
  board_uart_read(&index, sizeof index);
  return index;
}

int main(void) {
  hello_t hello = {MAGIC_HELLO, STREAM_VERSION, EENN_INPUT_ELEMENTS, EENN_CLASSES, EENN_LIVE_BYTES, 0};
  uint32_t index;
  board_uart_init();
  hello.milli_instructions_per_tick = board_counter_start();
  board_uart_write(&hello, sizeof hello);
  while ((index = next_input()) != STOP_INDEX) {
    result_t result = {MAGIC_RESULT, index};
    eenn_result_t r = {0};
    uint64_t start;
    eenn_status_t status;
    board_uart_read(input, sizeof input);
    start = board_counter_ticks();
    status = eenn_infer(input, &r);
    result.record = record_of(status, &r, board_counter_ticks() - start);
    result.live_bytes = status == EENN_CONTINUE ? (uint32_t)r.live_bytes : 0u;
    board_uart_write(&result, sizeof result);
    board_uart_write(r.live, result.live_bytes);
  }
  printf("eenn: stream closed\n");
  return 0;
}
