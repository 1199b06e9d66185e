#!/bin/sh
# GET / on port 80: busybox httpd runs cgi-bin/index.cgi for a directory that
# has no index.html, so the page is computed at request time.
printf 'Content-Type: text/plain\r\nCache-Control: no-store\r\n\r\n'
exec /usr/bin/podvisor-info page
