/* uart_cmsdk.c: UART0 of QEMU's MPS2/MPS3 boards, an Arm CMSDK APB UART (Cortex-M System Design Kit TRM,
 * "APB UART"). EENN_UART_BASE is the board's address for it (cores.py), given by the CMake project. */
#include <stdint.h>

#include "uart.h"

#define UART_DATA (*(volatile uint32_t *)(EENN_UART_BASE + 0x00u))
#define UART_STATE (*(volatile uint32_t *)(EENN_UART_BASE + 0x04u))
#define UART_CTRL (*(volatile uint32_t *)(EENN_UART_BASE + 0x08u))
#define UART_BAUDDIV (*(volatile uint32_t *)(EENN_UART_BASE + 0x10u))
#define STATE_TX_FULL 0x1u
#define STATE_RX_FULL 0x2u
#define CTRL_TX_RX_ENABLE 0x3u
#define SLOWEST_VALID_BAUDDIV 16u /* the smallest divider the UART accepts */

void board_uart_init(void) {
  UART_BAUDDIV = SLOWEST_VALID_BAUDDIV;
  UART_CTRL = CTRL_TX_RX_ENABLE;
}

void board_uart_write(const void *data, size_t bytes) {
  const uint8_t *p = (const uint8_t *)data;
  while (bytes--) {
    while (UART_STATE & STATE_TX_FULL) {
    }
    UART_DATA = *p++;
  }
}

void board_uart_read(void *data, size_t bytes) {
  uint8_t *p = (uint8_t *)data;
  while (bytes--) {
    while (!(UART_STATE & STATE_RX_FULL)) {
    }
    *p++ = (uint8_t)UART_DATA;
  }
}
