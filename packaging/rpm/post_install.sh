# filebridge %post: the directory for the LoadCredential= sources (read by systemd, as
# root, when the service starts), then enable the unit on first install without starting
# it: it needs /etc/filebridge/filebridge.toml and the master key first (docs/install.md).
# Works without a running systemd (systemctl enable only creates symlinks).
if [ ! -d /etc/filebridge/credentials ]; then
    install -d -m 0700 -o root -g root /etc/filebridge/credentials
fi
if [ "$1" -eq 1 ]; then
    systemctl --no-reload enable filebridge.service >/dev/null 2>&1 || :
fi
