#!/usr/bin/env bash
# Inbound firewall for the box (nftables): only HTTPS, mDNS and the media UDP range.
#
# Everything lives in one table, `inet clinicbox`, replaced atomically on every run, so
# running this twice gives the same ruleset. Outbound traffic is not filtered.
#   HTTPS_PORTS  ports of the portal (default "443, 8443")
#   MEDIA_PORTS  UDP range for WebRTC media (default: the kernel's ephemeral range,
#                where aiortc binds its ICE sockets)
#   --print      print the ruleset instead of loading it
set -euo pipefail

HTTPS_PORTS="${HTTPS_PORTS:-443, 8443}"
if [ -z "${MEDIA_PORTS:-}" ]; then
    read -r low high < /proc/sys/net/ipv4/ip_local_port_range
    MEDIA_PORTS="$low-$high"
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
