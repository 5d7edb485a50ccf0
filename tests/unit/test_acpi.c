/* Unit tests for x86/acpi: the tables Linux walks, RSDP to DSDT. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "x86/acpi.h"
#include "x86/acpi_tables.h"

#define BASE 0xe0000
static uint8_t buf[ACPI_TABLES_MAX];

static void *at(uint64_t gpa)
{
	assert_true(gpa >= BASE && gpa < BASE + sizeof(buf));
	return buf + (gpa - BASE);
}

static const struct acpi_header *table(uint64_t gpa, const char *sig)
{
	const struct acpi_header *h = at(gpa);

	assert_memory_equal(h->signature, sig, 4);
	assert_int_equal(acpi_checksum(h, h->length), 0);
	return h;
}

static void walk(unsigned nr_cpus)
{
	long n = acpi_build(buf, sizeof(buf), BASE, nr_cpus);
	const struct acpi_rsdp *rsdp = (const void *)buf;
	const struct acpi_header *xsdt;
	const struct acpi_fadt *fadt;
	const struct acpi_madt *madt;
	const struct madt_lapic *lapic;
	const struct madt_ioapic *ioapic;
	uint64_t entries[2];

	assert_true(n > 0);
	assert_memory_equal(rsdp->signature, "RSD PTR ", 8);
	assert_int_equal(acpi_checksum(rsdp, 20), 0);
	assert_int_equal(acpi_checksum(rsdp, sizeof(*rsdp)), 0);
	assert_int_equal(rsdp->revision, 2);

	xsdt = table(rsdp->xsdt_address, "XSDT");
	assert_int_equal(xsdt->length, sizeof(*xsdt) + sizeof(entries));
	memcpy(entries, xsdt + 1, sizeof(entries));

	fadt = (const void *)table(entries[0], "FACP");
	assert_true(fadt->flags & FADT_F_HW_REDUCED_ACPI);
	assert_true(fadt->flags & FADT_F_RESET_REG_SUP);
	assert_int_equal(fadt->reset_reg.address, ACPI_RESET_PORT);
	assert_int_equal(fadt->reset_value, ACPI_RESET_VALUE);
	assert_int_equal(fadt->sleep_control_reg.space_id, ACPI_GAS_IO);
	assert_int_equal(fadt->sleep_control_reg.address, ACPI_SLEEP_CONTROL_PORT);
	assert_int_equal(fadt->sleep_status_reg.address, ACPI_SLEEP_STATUS_PORT);
	table(fadt->x_dsdt, "DSDT");

	madt = (const void *)table(entries[1], "APIC");
	assert_int_equal(madt->lapic_address, LAPIC_BASE);
	assert_int_equal(madt->h.length, sizeof(*madt) + nr_cpus * 8 + 12);
	lapic = (const void *)(madt + 1);
	for (unsigned i = 0; i < nr_cpus; i++) {
		assert_int_equal(lapic[i].type, MADT_TYPE_LAPIC);
		assert_int_equal(lapic[i].apic_id, i);
		assert_int_equal(lapic[i].flags & 1, 1);
	}
	ioapic = (const void *)(lapic + nr_cpus);
	assert_int_equal(ioapic->type, MADT_TYPE_IOAPIC);
	assert_int_equal(ioapic->address, IOAPIC_BASE);
	assert_int_equal(ioapic->ioapic_id, nr_cpus); /* distinct from every APIC ID */
}

static void one_cpu(void **state) { walk(1); }
static void four_cpus(void **state) { walk(4); }
static void max_cpus(void **state) { walk(64); }

/* The AML that iasl built says _S5 has the sleep type the PM device expects. */
static void dsdt_s5_matches(void **state)
{
	const struct acpi_rsdp *rsdp = (const void *)buf;
	const struct acpi_header *xsdt, *dsdt;
	const struct acpi_fadt *fadt;
	uint64_t fadt_gpa;
	const uint8_t *p;

	assert_true(acpi_build(buf, sizeof(buf), BASE, 2) > 0);
	xsdt = at(rsdp->xsdt_address);
	memcpy(&fadt_gpa, xsdt + 1, 8);
	fadt = at(fadt_gpa);
	dsdt = at(fadt->x_dsdt);
	p = memmem(dsdt, dsdt->length, "_S5_", 4);
	assert_non_null(p);
	/* NameOp "_S5_" PackageOp PkgLength NumElements BytePrefix(0x0a) value */
	assert_int_equal(p[4], 0x12);
	assert_int_equal(p[7], 0x0a);
	assert_int_equal(p[8], ACPI_SLP_TYP_S5);
}

static void too_small_buffer(void **state)
{
	assert_int_equal(acpi_build(buf, 100, BASE, 2), -ENOSPC);
	assert_int_equal(acpi_build(buf, sizeof(buf), BASE, 0), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(one_cpu),
		cmocka_unit_test(four_cpus),
		cmocka_unit_test(max_cpus),
		cmocka_unit_test(dsdt_s5_matches),
		cmocka_unit_test(too_small_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
