#!/usr/bin/env python3
# How many bytes a socket whose peer never reads accepts before a write would block, with the
# kernel send buffer uncapped (0) and capped (SO_SNDBUF); BENCHMARKS.md, issue 20.
import socket,sys,time
def run(snd):
    l=socket.socket(); l.bind(('127.0.0.1',0)); l.listen()
    c=socket.create_connection(l.getsockname()); s,_=l.accept()
    if snd: s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, snd)
    s.setblocking(False); n=0; chunk=b'x'*16384; t=time.time()
    while True:
        try: n+=s.send(chunk)
        except BlockingIOError:
            time.sleep(0.05)
            try: n+=s.send(chunk)
            except BlockingIOError: break
    print(snd, n, s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF), c.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
for v in [0, 65536, 131072, 262144]: run(v)
