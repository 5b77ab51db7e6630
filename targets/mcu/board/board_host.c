/* board_host.c: the verify program on the computer building the firmware: nothing is counted. */
#include "board.h"

uint32_t board_counter_start(void) { return 0; }
uint64_t board_counter_ticks(void) { return 0; }
void board_stack_paint(void) {}
size_t board_stack_used(void) { return 0; }
