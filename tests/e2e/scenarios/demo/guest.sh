# demo guest: a greeting, some facts, then an interactive shell on the console.
# `poweroff -f` (or leaving the shell) shuts the VM down.
echo
echo "Hello from a guest of hvmm!"
uname -a
echo "processors: $(nproc)"
free -m
echo "Type 'poweroff -f' to stop the VM."
cd /
setsid cttyhack sh -l
