#!/bin/bash
# Print what uninstall must restore, one sorted section each: packages, enabled units, files under
# /etc (with checksums), apt holds, users, groups, listening TCP ports with the program listening
# (a port the kernel picked from its ephemeral range, as containerd's CRI streaming server's, shows
# as "ephemeral": it changes with every start), and the folders directly
# under /opt, /srv and /var/lib (where installs and data land outside /etc). Left out of /etc: the
# linker cache and shadow-utils' backup copies (passwd-, group-, ...), which every account change
# rewrites with the previous content; the account files themselves are compared.
set -euo pipefail
section() { echo "## $1"; }
section packages;  dpkg-query -W -f '${Package}\n' | sort
section units;     systemctl list-unit-files --state=enabled --no-legend --plain | awk '{print $1}' | sort
section etc;       find /etc -xdev -type f ! -path /etc/ld.so.cache \
                     ! -regex '/etc/\(passwd\|shadow\|group\|gshadow\|subuid\|subgid\)-' -print0 | sort -z | xargs -0 -r sha256sum \
                     | awk '{print $2, $1}'
                   find /etc -xdev -type l -printf '%p -> %l\n' | sort
section holds;     apt-mark showhold | sort
section users;     getent passwd | cut -d: -f1 | sort
section groups;    getent group | cut -d: -f1 | sort
section ports;     read -r low high < /proc/sys/net/ipv4/ip_local_port_range
                   ss -ltnpH | awk -v low="$low" -v high="$high" '{
                     port = $4; sub(/.*:/, "", port); address = substr($4, 1, length($4) - length(port))
                     program = $6; sub(/^users:\(\("/, "", program); sub(/".*/, "", program)
                     print address (port >= low && port <= high ? "ephemeral" : port), program }' | sort -u
section places;    find /opt /srv /var/lib -mindepth 1 -maxdepth 1 | sort
