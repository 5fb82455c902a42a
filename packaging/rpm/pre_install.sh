# filebridge %pre: the system user first, so /etc/filebridge/filebridge.toml is installed
# with its group. The same line as packaging/systemd/filebridge.sysusers, fed on stdin
# because that file is not installed yet (Fedora's %sysusers_create_compat does the same).
echo 'u filebridge - "filebridge daemon" / /usr/sbin/nologin' |
    systemd-sysusers --replace=/usr/lib/sysusers.d/filebridge.conf - || :
