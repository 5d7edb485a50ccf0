# bench guest: /init has already printed the user-space marker; stay idle.
while :; do sleep 3600; done
