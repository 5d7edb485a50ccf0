#include "dev/uart16550.h"

#include <string.h>

void uart_reset(struct uart16550 *u)
{
	memset(u, 0, sizeof(*u));
	u->lsr = UART_LSR_THRE | UART_LSR_TEMT;
	u->msr = 0xb0; /* DCD, DSR and CTS asserted: a terminal is attached */
}

static bool rx_ready(const struct uart16550 *u)
{
	return u->rx_len > 0;
}

static void update_lsr(struct uart16550 *u)
{
	u->lsr &= ~(UART_LSR_DR | UART_LSR_THRE | UART_LSR_TEMT);
	if (rx_ready(u))
		u->lsr |= UART_LSR_DR;
	/* The transmitter is empty while the host-side buffer has room for a
	 * whole FIFO (a driver writes that much per THRE without looking): the
	 * guest then never outruns the console and loses nothing. A byte in that
	 * buffer counts as sent, holding register and line alike (THRE and
	 * TEMT): Linux's console waits for TEMT after every message, polling
	 * the LSR, and each poll is an exit to user space. */
	if (u->tx_len <= UART_TX_SIZE - UART_FIFO_SIZE)
		u->lsr |= UART_LSR_THRE | UART_LSR_TEMT;
}

static uint8_t pending_iir(const struct uart16550 *u)
{
	if ((u->ier & UART_IER_RLSI) && (u->lsr & UART_LSR_OE))
		return UART_IIR_RLSI;
	if ((u->ier & UART_IER_RDI) && rx_ready(u))
		return UART_IIR_RDI;
	if ((u->ier & UART_IER_THRI) && u->thri_pending)
		return UART_IIR_THRI;
	if ((u->ier & UART_IER_MSI) && (u->msr & 0x0f))
		return UART_IIR_MSI;
	return UART_IIR_NO_INT;
}

bool uart_irq_level(const struct uart16550 *u)
{
	return pending_iir(u) != UART_IIR_NO_INT;
}

static void push_rx(struct uart16550 *u, uint8_t c)
{
	if (u->rx_len == UART_RX_SIZE) {
		u->lsr |= UART_LSR_OE;
		return;
	}
	u->rx[(u->rx_head + u->rx_len) % UART_RX_SIZE] = c;
	u->rx_len++;
}

/* Modem status in loopback: the outputs feed back to the inputs. */
static uint8_t loopback_msr(const struct uart16550 *u)
{
	uint8_t m = u->mcr;

	return (uint8_t)(((m & 0x02) << 3) | ((m & 0x01) << 5) | ((m & 0x04) << 4) | ((m & 0x08) << 4));
}

static void transmit(struct uart16550 *u, uint8_t c)
{
	if (u->mcr & UART_MCR_LOOP) {
		push_rx(u, c);
	} else if (u->tx_len < UART_TX_SIZE) {
		u->tx[(u->tx_head + u->tx_len) % UART_TX_SIZE] = c;
		u->tx_len++;
	}
	update_lsr(u);
	u->thri_pending = (u->lsr & UART_LSR_THRE) != 0;
}

uint8_t uart_read(struct uart16550 *u, unsigned off)
{
	uint8_t v = 0;

	switch (off & 7) {
	case UART_RBR:
		if (u->lcr & UART_LCR_DLAB)
			return u->dll;
		if (rx_ready(u)) {
			v = u->rx[u->rx_head];
			u->rx_head = (u->rx_head + 1) % UART_RX_SIZE;
			u->rx_len--;
		}
		update_lsr(u);
		return v;
	case UART_IER:
		return (u->lcr & UART_LCR_DLAB) ? u->dlm : u->ier;
	case UART_IIR:
		v = pending_iir(u);
		if (v == UART_IIR_THRI)
			u->thri_pending = false; /* reading IIR acknowledges THRE */
		return v | ((u->fcr & UART_FCR_ENABLE) ? UART_IIR_FIFO : 0);
	case UART_LCR:
		return u->lcr;
	case UART_MCR:
		return u->mcr;
	case UART_LSR:
		v = u->lsr;
		u->lsr &= ~UART_LSR_OE;
		return v;
	case UART_MSR:
		v = (u->mcr & UART_MCR_LOOP) ? loopback_msr(u) : u->msr;
		u->msr &= 0xf0; /* reading clears the delta bits */
		return v;
	default:
		return u->scr;
	}
}

void uart_write(struct uart16550 *u, unsigned off, uint8_t val)
{
	switch (off & 7) {
	case UART_THR:
		if (u->lcr & UART_LCR_DLAB)
			u->dll = val;
		else
			transmit(u, val);
		break;
	case UART_IER:
		if (u->lcr & UART_LCR_DLAB) {
			u->dlm = val;
			break;
		}
		/* Enabling THRI while the transmitter is empty raises it at once. */
		if (!(u->ier & UART_IER_THRI) && (val & UART_IER_THRI) && (u->lsr & UART_LSR_THRE))
			u->thri_pending = true;
		u->ier = val & 0x0f;
		break;
	case UART_FCR:
		u->fcr = val & 0xc9;
		if (val & UART_FCR_CLEAR_RX)
			u->rx_len = 0;
		if (val & UART_FCR_CLEAR_TX)
			u->tx_len = 0;
		update_lsr(u);
		break;
	case UART_LCR:
		u->lcr = val;
		break;
	case UART_MCR:
		u->mcr = val & 0x1f;
		break;
	case UART_SCR:
		u->scr = val;
		break;
	default: /* LSR and MSR are read-only */
		break;
	}
}

size_t uart_rx_space(const struct uart16550 *u)
{
	return UART_RX_SIZE - u->rx_len;
}

size_t uart_receive(struct uart16550 *u, const uint8_t *buf, size_t len)
{
	size_t n = len < uart_rx_space(u) ? len : uart_rx_space(u);

	/* In loopback the line is disconnected from the outside world. */
	if (u->mcr & UART_MCR_LOOP)
		return len;
	for (size_t i = 0; i < n; i++)
		push_rx(u, buf[i]);
	update_lsr(u);
	return n;
}

size_t uart_drain_tx(struct uart16550 *u, uint8_t *buf, size_t len)
{
	size_t n = 0;
	bool was_full = !(u->lsr & UART_LSR_THRE);

	while (n < len && u->tx_len) {
		buf[n++] = u->tx[u->tx_head];
		u->tx_head = (u->tx_head + 1) % UART_TX_SIZE;
		u->tx_len--;
	}
	update_lsr(u);
	if (was_full && (u->lsr & UART_LSR_THRE))
		u->thri_pending = true; /* room again: tell a guest waiting for THRE */
	return n;
}
