#!/bin/sh
# install.sh: lay down a pgplane appliance node. Safe to run again: it
# replaces the binaries and the unit, and never touches a configuration
# file, key, certificate or state that is already there.
#
#   deploy/install.sh [--root DIR] [--bin DIR]
#
# --bin   where pgplane and pgplanectl are (default: bin, as `make build` leaves them)
# --root  install below DIR instead of / (for packaging and tests: no user is
#         made, nothing is chowned and systemd is not told)
set -eu

root=
bin=bin
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
here=$(cd "$(dirname "$0")" && pwd)
for b in pgplane pgplanectl; do
    [ -x "$bin/$b" ] || { echo "install.sh: $bin/$b not found; run make build first" >&2; exit 1; }
done

etc=$root/etc/pgplane
state=$root/var/lib/pgplane
unitdir=$root/etc/systemd/system
say() { printf '%s\n' "$*"; }

# The service user: no shell, no home.
if [ -z "$root" ] && ! getent passwd pgplane >/dev/null; then
    useradd --system --user-group --no-create-home --home-dir /var/lib/pgplane --shell /usr/sbin/nologin pgplane
    say "user pgplane created"
fi

install -d -m 0755 "$root/usr/local/bin" "$unitdir"
install -m 0755 "$bin/pgplane" "$bin/pgplanectl" "$root/usr/local/bin/"
say "binaries: $root/usr/local/bin/pgplane, pgplanectl"
install -m 0644 "$here/pgplane.service" "$unitdir/pgplane.service"
say "unit: $unitdir/pgplane.service"

install -d -m 0750 "$etc" "$state"
ctl=$root/usr/local/bin/pgplanectl
keep() { say "kept: $1"; }
[ -e "$etc/Corefile" ] && keep "$etc/Corefile" || { install -m 0640 "$here/Corefile.example" "$etc/Corefile"; say "Corefile: $etc/Corefile (edit the lines marked EDIT)"; }
[ -e "$etc/topology.yaml" ] && keep "$etc/topology.yaml" || { install -m 0640 "$here/topology.example.yaml" "$etc/topology.yaml"; say "topology: $etc/topology.yaml"; }
if [ -e "$etc/gossip.key" ]; then keep "$etc/gossip.key"; else
    (umask 077; "$ctl" cluster-key > "$etc/gossip.key")
    say "gossip key: $etc/gossip.key (copy this one file to every other node)"
fi
if [ -e "$etc/admin.token" ]; then keep "$etc/admin.token"; else
    (umask 077; "$ctl" cluster-key > "$etc/admin.token")
    say "admin token: $etc/admin.token (pgplanectl --token, or PGPLANE_TOKEN)"
fi
if [ -e "$etc/auth.pgpass" ]; then keep "$etc/auth.pgpass"; else
    (umask 077; printf '# host:port:database:role:password of the gateway auth role (gateway_auth_user)\n*:*:*:pgplane_auth:%s\n' "$("$ctl" cluster-key | tr -d '=+/')" > "$etc/auth.pgpass")
    say "gateway auth role: $etc/auth.pgpass (create role pgplane_auth with this password on every backend: docs/operator-guide.md)"
fi
if [ -e "$etc/tls/server.crt" ]; then keep "$etc/tls/server.crt"; else
    "$ctl" certs create --dir "$etc/tls" --topology "$etc/topology.yaml" >/dev/null
    say "TLS: a CA and the gateway certificate in $etc/tls (or put your own server.crt and server.key there)"
fi

if [ -z "$root" ]; then
    chown -R root:pgplane "$etc"
    chmod 0750 "$etc/tls"
    chmod 0640 "$etc/gossip.key" "$etc/admin.token" "$etc/auth.pgpass" "$etc/tls/server.key"
    [ ! -e "$etc/tls/ca.key" ] || chmod 0600 "$etc/tls/ca.key"
    chown pgplane:pgplane "$state"
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        say "systemd reloaded: systemctl enable --now pgplane"
    fi
fi
say "next: edit $etc/Corefile, then pgplanectl validate --corefile $etc/Corefile"
