# console-blocked guest: about 400 KiB of numbered lines on the console.
report flood start
i=1
while [ $i -le 4000 ]; do
    echo "flood-line $i ................................................................................."
    i=$((i + 1))
done
report flood done
while :; do sleep 3600; done
