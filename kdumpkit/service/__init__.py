"""Service: config, readiness checks, crashkernel=, kexec, systemd."""
