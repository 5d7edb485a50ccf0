# console-blocked guest: about 150 KiB of numbered lines on the console, more
# than the pipe (64 KiB) and hvmm's buffers (20 KiB) hold.
report flood start
i=1
while [ $i -le 1500 ]; do
    echo "flood-line $i ................................................................................."
    i=$((i + 1))
done
report flood done
while :; do sleep 3600; done
