/*
 * hvmm's DSDT. The machine is ACPI hardware-reduced: power-off goes through
 * the FADT sleep control register (see x86/acpi.h), so _S5's SLP_TYP must
 * match ACPI_SLP_TYP_S5. Add a device here as one more Device() block.
 */
DefinitionBlock ("dsdt.aml", "DSDT", 2, "HVMM  ", "HVMMDSDT", 1)
{
    Name (_S5, Package (4) { 5, 5, 0, 0 })

    Scope (\_SB)
    {
        Device (COM1)
        {
            Name (_HID, EisaId ("PNP0501"))
            Name (_UID, 1)
            Name (_CRS, ResourceTemplate ()
            {
                IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08)
                IRQNoFlags () { 4 }
            })
        }

        /*
         * The VMBus root device hv_vmbus waits for (it gives up after 5 s).
         * On x86 its interrupt is the fixed vector 0xF3; the IRQ here is
         * what Hyper-V and QEMU declare, and is not used.
         */
        Device (VMBS)
        {
            /* A method: iasl refuses a 5-character _HID name, Linux needs it. */
            Method (_HID, 0, NotSerialized) { Return ("VMBus") }
            Name (_UID, 0)
            Name (_DDN, "VMBUS")
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Name (_CRS, ResourceTemplate ()
            {
                IRQNoFlags () { 5 }
            })
        }
    }
}
