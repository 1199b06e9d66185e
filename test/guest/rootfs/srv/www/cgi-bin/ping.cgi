#!/bin/sh
# GET /cgi-bin/ping.cgi?IP: 10 pings from this guest to IP (busybox ping's summary), for latency tests.
printf 'Content-Type: text/plain\r\nCache-Control: no-store\r\n\r\n'
ip=$QUERY_STRING
echo "$ip" | grep -Eq '^[0-9]{1,3}(\.[0-9]{1,3}){3}$' || { echo "ping: bad address $ip"; exit 0; }
ping -c 10 -i 0.2 -W 2 "$ip" 2>&1 | tail -n 2
