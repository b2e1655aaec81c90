# syn6.py SRC DST PORT NHDRS: one TCP SYN from SRC to [DST]:PORT behind NHDRS destination-options
# headers, sent from a raw socket; prints "synack" when [DST]:PORT answers with SYN+ACK within 2 s.
import random, socket, struct, sys, time
src, dst, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sport = random.randint(40000, 60000)
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
s6, d6 = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
tcp = struct.pack("!HHIIBBHHH", sport, port, random.getrandbits(32), 0, 5 << 4, 0x02, 65535, 0, 0)
pseudo = s6 + d6 + struct.pack("!I3xB", len(tcp), 6)
tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
ext = b"".join(struct.pack("!BB", 60 if i < n - 1 else 6, 0) + b"\x01\x04\0\0\0\0" for i in range(n))
payload = ext + tcp
ip6 = struct.pack("!IHBB", 6 << 28, len(payload), 60 if n else 6, 64) + s6 + d6
rx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_TCP)
tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
tx.sendto(ip6 + payload, (dst, 0))
rx.settimeout(0.2)
end = time.time() + 2
while time.time() < end:
    try:
        seg, addr = rx.recvfrom(2048)
    except socket.timeout:
        continue
    if addr[0] != dst or len(seg) < 14:
        continue
    sp, dp = struct.unpack("!HH", seg[:4])
    if sp == port and dp == sport and seg[13] & 0x12 == 0x12:
        print("synack")
        break
