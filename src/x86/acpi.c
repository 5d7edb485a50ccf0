#include "x86/acpi.h"

#include <errno.h>
#include <string.h>

#include "x86/acpi_tables.h"

extern const uint8_t dsdt_aml[], dsdt_aml_end[];

uint8_t acpi_checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	while (len--)
		sum += *b++;
	return (uint8_t)-sum;
}

static void header_init(struct acpi_header *h, const char sig[4], uint32_t len, uint8_t rev)
{
	memcpy(h->signature, sig, 4);
	h->length = len;
	h->revision = rev;
	memcpy(h->oem_id, "HVMM  ", 6);
	memcpy(h->oem_table_id, "HVMMACPI", 8);
	h->oem_revision = 1;
	memcpy(h->creator_id, "HVMM", 4);
	h->creator_revision = 1;
}

static void header_finish(struct acpi_header *h)
{
	h->checksum = 0;
	h->checksum = acpi_checksum(h, h->length);
}

static struct acpi_gas io_reg(uint16_t port)
{
	return (struct acpi_gas){ .space_id = ACPI_GAS_IO, .bit_width = 8, .access_size = 1, .address = port };
}

static size_t build_fadt(uint8_t *p, uint64_t dsdt_gpa)
{
	struct acpi_fadt *f = (struct acpi_fadt *)p;

	memset(f, 0, sizeof(*f));
	header_init(&f->h, "FACP", sizeof(*f), 6);
	f->minor_version = 5;
	f->flags = FADT_F_HW_REDUCED_ACPI | FADT_F_RESET_REG_SUP;
	f->iapc_boot_arch = FADT_BOOT_VGA_NOT_PRESENT | FADT_BOOT_CMOS_RTC_NOT_PRESENT;
	f->reset_reg = io_reg(ACPI_RESET_PORT);
	f->reset_value = ACPI_RESET_VALUE;
	f->x_dsdt = dsdt_gpa;
	f->sleep_control_reg = io_reg(ACPI_SLEEP_CONTROL_PORT);
	f->sleep_status_reg = io_reg(ACPI_SLEEP_STATUS_PORT);
	memcpy(&f->hypervisor_vendor_id, "HVMM\0\0\0\0", 8);
	header_finish(&f->h);
	return sizeof(*f);
}

static size_t build_madt(uint8_t *p, unsigned nr_cpus)
{
	struct acpi_madt *m = (struct acpi_madt *)p;
	size_t len = sizeof(*m) + nr_cpus * sizeof(struct madt_lapic) + sizeof(struct madt_ioapic);
	struct madt_lapic *lapic = (struct madt_lapic *)(m + 1);
	struct madt_ioapic *ioapic = (struct madt_ioapic *)(lapic + nr_cpus);

	memset(m, 0, len);
	header_init(&m->h, "APIC", len, 5);
	m->lapic_address = LAPIC_BASE;
	for (unsigned i = 0; i < nr_cpus; i++)
		lapic[i] = (struct madt_lapic){ .type = MADT_TYPE_LAPIC, .length = 8,
						.processor_id = i, .apic_id = i, .flags = 1 };
	*ioapic = (struct madt_ioapic){ .type = MADT_TYPE_IOAPIC, .length = 12,
					.ioapic_id = nr_cpus, .address = IOAPIC_BASE };
	header_finish(&m->h);
	return len;
}

#define ALIGN16(x) (((x) + 15) & ~(size_t)15)

long acpi_build(uint8_t *buf, size_t cap, uint64_t gpa, unsigned nr_cpus)
{
	size_t dsdt_len = dsdt_aml_end - dsdt_aml;
	size_t madt_len = sizeof(struct acpi_madt) + nr_cpus * sizeof(struct madt_lapic) +
			  sizeof(struct madt_ioapic);
	size_t xsdt_off = ALIGN16(sizeof(struct acpi_rsdp));
	size_t xsdt_len = sizeof(struct acpi_header) + 2 * sizeof(uint64_t);
	size_t fadt_off = ALIGN16(xsdt_off + xsdt_len);
	size_t madt_off = ALIGN16(fadt_off + sizeof(struct acpi_fadt));
	size_t dsdt_off = ALIGN16(madt_off + madt_len);
	size_t total = dsdt_off + dsdt_len;
	struct acpi_rsdp *rsdp = (struct acpi_rsdp *)buf;
	struct acpi_header *xsdt = (struct acpi_header *)(buf + xsdt_off);
	uint64_t entries[2] = { gpa + fadt_off, gpa + madt_off };

	if (nr_cpus == 0 || nr_cpus > 255 || total > cap)
		return -ENOSPC;
	memset(buf, 0, total);

	memcpy(buf + dsdt_off, dsdt_aml, dsdt_len);
	build_madt(buf + madt_off, nr_cpus);
	build_fadt(buf + fadt_off, gpa + dsdt_off);

	header_init(xsdt, "XSDT", xsdt_len, 1);
	memcpy(xsdt + 1, entries, sizeof(entries));
	header_finish(xsdt);

	memcpy(rsdp->signature, "RSD PTR ", 8);
	memcpy(rsdp->oem_id, "HVMM  ", 6);
	rsdp->revision = 2;
	rsdp->length = sizeof(*rsdp);
	rsdp->xsdt_address = gpa + xsdt_off;
	rsdp->checksum = acpi_checksum(rsdp, 20);
	rsdp->extended_checksum = acpi_checksum(rsdp, sizeof(*rsdp));
	return (long)total;
}

int acpi_install(struct guest_mem *gm, unsigned nr_cpus, uint64_t *rsdp)
{
	uint8_t *p = guest_mem_ptr(gm, ACPI_TABLES_GPA, ACPI_TABLES_MAX);
	long n;

	if (!p)
		return -EFAULT;
	n = acpi_build(p, ACPI_TABLES_MAX, ACPI_TABLES_GPA, nr_cpus);
	if (n < 0)
		return (int)n;
	*rsdp = ACPI_TABLES_GPA;
	return 0;
}
