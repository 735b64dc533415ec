#!/usr/bin/env bash
# Inbound firewall for the box (nftables): only HTTPS, mDNS and the media UDP range.
#
# Everything lives in one table, `inet clinicbox`, replaced atomically on every run, so
# running this twice gives the same ruleset. Outbound traffic is not filtered.
#   HTTPS_PORTS  ports of the portal (default "443, 8443")
#   MEDIA_PORTS  UDP range for WebRTC media (default: the box's `media_ports` setting, read
#                with `clinicbox config show`, else 40000-40999): the SFU binds its ICE
#                sockets only there (appliance/media/ports.py), so nothing else is opened
#   --print      print the ruleset instead of loading it
set -euo pipefail

PREFIX="${CLINICBOX_PREFIX:-/opt/clinicbox}"
HTTPS_PORTS="${HTTPS_PORTS:-443, 8443}"
if [ -z "${MEDIA_PORTS:-}" ] && [ -x "$PREFIX/bin/clinicbox" ]; then
    MEDIA_PORTS="$("$PREFIX/bin/clinicbox" config show 2>/dev/null \
        | sed -n 's/^media_ports = "\(.*\)"$/\1/p')" || MEDIA_PORTS=""
fi
MEDIA_PORTS="${MEDIA_PORTS:-40000-40999}"
if ! [[ "$MEDIA_PORTS" =~ ^[0-9]+-[0-9]+$ ]]; then
    echo "firewall: MEDIA_PORTS must be LOW-HIGH, e.g. 40000-40999, got '$MEDIA_PORTS'" >&2
    exit 2
fi

ruleset() {
    cat <<RULES
table inet clinicbox
delete table inet clinicbox
table inet clinicbox {
    chain input {
        type filter hook input priority filter; policy drop;
        iif "lo" accept
        ct state established,related accept
        ct state invalid drop
        # Path-MTU discovery and IPv6 neighbour discovery need these to work at all.
        ip protocol icmp icmp type { echo-request, destination-unreachable, time-exceeded } accept
        ip6 nexthdr icmpv6 icmpv6 type { echo-request, destination-unreachable, packet-too-big, time-exceeded, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept
        tcp dport { $HTTPS_PORTS } accept comment "portal (HTTPS)"
        udp dport 5353 ip daddr 224.0.0.251 accept comment "mDNS"
        udp dport 5353 ip6 daddr ff02::fb accept comment "mDNS"
        udp dport $MEDIA_PORTS accept comment "WebRTC media"
    }
}
RULES
}

if [ "${1:-}" = "--print" ]; then
    ruleset
    exit 0
fi
ruleset | nft -f -
echo "firewall: inet clinicbox loaded (HTTPS ${HTTPS_PORTS}, mDNS, media UDP ${MEDIA_PORTS})"
