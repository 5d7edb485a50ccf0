# /lib/e2e/guest.sh — helpers sourced before every scenario's guest.sh (busybox sh).
#   report KEY VALUE   prints the marker "##e2e## KEY=VALUE"; host.sh reads it
#                      back with guest_value LOG KEY.
#   load_module NAME   insmods a staged module and its dependencies.
#   $SCENARIO          the scenario's name.
report() { echo "##e2e## $1=$2"; }
