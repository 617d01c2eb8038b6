#!/usr/bin/env python3
"""idle_memory.py - memory per idle connection of an echo server.

usage: idle_memory.py SERVER_CMD... PORT

Starts the server, opens 10 connections (warm-up), reads its RSS, opens 2000 more
idle connections (each sends one byte and reads the echo, so the server has set the
connection up), and prints the RSS growth per connection. Run with `ulimit -n 8192`.
"""
import socket, sys, time, subprocess, os
cmd, port = sys.argv[1:-1], int(sys.argv[-1])
p = subprocess.Popen(cmd + [str(port)], env=dict(os.environ))
time.sleep(0.4)
def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
socks=[]
def conn(n):
    for _ in range(n):
        s=socket.create_connection(("127.0.0.1", port)); s.sendall(b"x"); s.recv(1); socks.append(s)
conn(10); time.sleep(0.2); r0=rss(p.pid)
conn(2000); time.sleep(0.5); r1=rss(p.pid)
print(f"{cmd[-1].split('/')[-1]}: {(r1-r0)*1024/2000:.0f} bytes per idle connection (RSS {r0} -> {r1} KiB)")
for s in socks: s.close()
p.terminate(); p.wait()
