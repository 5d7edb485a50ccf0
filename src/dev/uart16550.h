/* A 16550A UART register model (National Semiconductor PC16550D data
 * sheet): eight registers, a receive FIFO, transmit buffering, interrupt
 * identification and priorities, loopback. No I/O of its own: the owner
 * feeds received bytes, drains transmitted ones and wires the IRQ line.
 * Locking is the owner's job. */
#ifndef HVMM_UART16550_H
#define HVMM_UART16550_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UART_RX_SIZE 256   /* deeper than a real FIFO: pastes don't drop */
#define UART_TX_SIZE 4096  /* bytes buffered until the owner drains them */
#define UART_FIFO_SIZE 16  /* a 16550A's FIFO: what a driver writes per THRE */

/* Register offsets. */
enum {
	UART_RBR = 0, UART_THR = 0, UART_DLL = 0,
	UART_IER = 1, UART_DLM = 1,
	UART_IIR = 2, UART_FCR = 2,
	UART_LCR = 3, UART_MCR = 4, UART_LSR = 5, UART_MSR = 6, UART_SCR = 7,
};

#define UART_LSR_DR 0x01
#define UART_LSR_OE 0x02
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_IER_RDI 0x01
#define UART_IER_THRI 0x02
#define UART_IER_RLSI 0x04
#define UART_IER_MSI 0x08
#define UART_IIR_NO_INT 0x01
#define UART_IIR_MSI 0x00
#define UART_IIR_THRI 0x02
#define UART_IIR_RDI 0x04
#define UART_IIR_RLSI 0x06
#define UART_IIR_FIFO 0xc0
#define UART_FCR_ENABLE 0x01
#define UART_FCR_CLEAR_RX 0x02
#define UART_FCR_CLEAR_TX 0x04
#define UART_LCR_DLAB 0x80
#define UART_MCR_LOOP 0x10

struct uart16550 {
	uint8_t ier, lcr, mcr, lsr, msr, scr, fcr, dll, dlm;
	bool thri_pending; /* THR-empty interrupt raised and not yet acknowledged */
	uint8_t rx[UART_RX_SIZE];
	unsigned rx_head, rx_len;
	uint8_t tx[UART_TX_SIZE];
	unsigned tx_head, tx_len;
};

void uart_reset(struct uart16550 *u);

/* A guest register access; `off` is 0..7. Writes return nothing. */
uint8_t uart_read(struct uart16550 *u, unsigned off);
void uart_write(struct uart16550 *u, unsigned off, uint8_t val);

/* The level of the interrupt output line. */
bool uart_irq_level(const struct uart16550 *u);

/* Bytes from the outside world; returns how many fitted. */
size_t uart_receive(struct uart16550 *u, const uint8_t *buf, size_t len);
size_t uart_rx_space(const struct uart16550 *u);

/* Take up to `len` transmitted bytes; the transmitter then has room again. */
size_t uart_drain_tx(struct uart16550 *u, uint8_t *buf, size_t len);

#endif
