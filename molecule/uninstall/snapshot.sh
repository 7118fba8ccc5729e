#!/bin/bash
# Print what uninstall must restore, one sorted section each: packages, enabled units, files under
# /etc (with checksums), apt holds, users, groups, listening TCP ports, and the folders directly
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
section ports;     ss -ltnH | awk '{print $4}' | sort -u
section places;    find /opt /srv /var/lib -mindepth 1 -maxdepth 1 | sort
