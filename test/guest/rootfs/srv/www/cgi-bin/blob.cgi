#!/bin/sh
# GET /cgi-bin/blob.cgi?N: N MiB (at most 64) of zeros, for throughput tests.
printf 'Content-Type: application/octet-stream\r\nCache-Control: no-store\r\n\r\n'
n=$QUERY_STRING
echo "$n" | grep -Eq '^[0-9]{1,2}$' && [ "$n" -le 64 ] || n=1
dd if=/dev/zero bs=1048576 count="$n" 2>/dev/null
