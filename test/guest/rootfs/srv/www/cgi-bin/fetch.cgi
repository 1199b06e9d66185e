#!/bin/sh
# GET /cgi-bin/fetch.cgi?IP[/PATH]: this guest fetches http://IP/PATH itself
# (over whichever NIC routes to IP, e.g. an L2 segment) and reports the outcome,
# then its neighbour entry for IP (was ARP resolved?), then the body's first
# 4 KiB. For tests of VM-to-VM traffic; the address and path are checked.
printf 'Content-Type: text/plain\r\nCache-Control: no-store\r\n\r\n'
target=$QUERY_STRING
ip=${target%%/*}
case $target in
  */*) path=${target#*/} ;;
  *) path= ;;
esac
if ! echo "$ip" | grep -Eq '^[0-9]{1,3}(\.[0-9]{1,3}){3}$' || ! echo "$path" | grep -Eq '^[A-Za-z0-9._/?=-]*$'; then
  echo "fetch: bad target $target"
  exit 0
fi
start=$(cut -d' ' -f1 /proc/uptime)
timeout 30 wget -q -O /tmp/fetch.$$ "http://$ip/$path"
status=$?
end=$(cut -d' ' -f1 /proc/uptime)
echo "fetch: exit=$status bytes=$(wc -c < /tmp/fetch.$$ 2>/dev/null || echo 0) seconds=$(awk "BEGIN { print $end - $start }")"
echo "neigh: $(ip neigh show "$ip")"
echo '---'
head -c 4096 /tmp/fetch.$$ 2>/dev/null
rm -f /tmp/fetch.$$
