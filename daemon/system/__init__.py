"""Living under systemd: sd_notify, the watchdog, signals and logging."""
