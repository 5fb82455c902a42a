# filebridge %postun: forget the removed unit; after an upgrade, restart the service if it
# runs, so the new binary (and its database migrations) take over.
systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -ge 1 ]; then
    systemctl try-restart filebridge.service >/dev/null 2>&1 || :
fi
