"""GET PATH COUNT times on one keep-alive connection to 127.0.0.1:PORT (after
waiting up to 120 s for the server), checking each answer is a 200 of 2048
bytes. Used by the instructions-per-request scripts."""
import http.client, sys, time
port, count, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
deadline = time.time() + 120
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", path); r = c.getresponse(); r.read()
        break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.2)
for _ in range(count):
    c.request("GET", path); r = c.getresponse(); body = r.read()
    assert r.status == 200 and len(body) == 2048, (r.status, len(body))
