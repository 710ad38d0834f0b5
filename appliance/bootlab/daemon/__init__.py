"""bootlabd: the appliance's REST API over a Unix socket, socket-activated by systemd."""
