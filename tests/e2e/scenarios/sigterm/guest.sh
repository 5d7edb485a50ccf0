# sigterm guest: stay up until the host kills the VMM.
report idle yes
while :; do sleep 3600; done
