# bad-args guest: never booted.
