# reboot guest: every boot reboots at once; the host counts the boots.
reboot -f
