"""Running as a service: systemd notification, worker health, restart budget, reload planning."""
