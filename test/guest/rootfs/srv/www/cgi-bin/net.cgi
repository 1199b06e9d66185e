#!/bin/sh
# GET /cgi-bin/net.cgi on port 80: what the guest's network layer sees beyond
# the main page, one fact per line: each ethN's MTU, and its global IPv6
# addresses (from SLAAC or DHCPv6), in CIDR form.
#   mtu: <ifname> <mtu>
#   inet6: <ifname> <cidr>
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
printf 'Content-Type: text/plain\r\nCache-Control: no-store\r\n\r\n'
for nic in $(podvisor-info ifnames); do
  echo "mtu: $nic $(cat "/sys/class/net/$nic/mtu")"
  ip -o -6 addr show dev "$nic" scope global | awk -v nic="$nic" '{ print "inet6: " nic " " $4 }'
done
