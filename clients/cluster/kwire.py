"""Hand-encoded Kafka requests over a raw socket, for the cluster tests.

Only the few old (non-flexible) request versions the tests need, so that a request goes to
exactly the broker the test names (a client library would pick a broker itself), and so that
a request can be written into a paused broker's socket and its answer read later.

  Metadata v1, FindCoordinator v1, OffsetCommit v2, OffsetFetch v1, DescribeGroups v0.
"""
import socket
import struct

METADATA, OFFSET_COMMIT, OFFSET_FETCH, FIND_COORDINATOR, DESCRIBE_GROUPS = 3, 8, 9, 10, 15
NOT_COORDINATOR = 16
COORDINATOR_NOT_AVAILABLE = 15


# ---- encoding -------------------------------------------------------------------------------

def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def string(v):
    if v is None:
        return i16(-1)
    b = v.encode()
    return i16(len(b)) + b


def array(items, enc):
    if items is None:
        return i32(-1)
    items = list(items)
    return i32(len(items)) + b"".join(enc(x) for x in items)


def frame(api_key, version, correlation_id, body, client_id="cluster-test"):
    """A whole request: size, header v1 (api key, version, correlation id, client id), body."""
    msg = i16(api_key) + i16(version) + i32(correlation_id) + string(client_id) + body
    return i32(len(msg)) + msg


# ---- decoding -------------------------------------------------------------------------------

class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def _take(self, fmt):
        v = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def i8(self):
        return self._take(">b")

    def i16(self):
        return self._take(">h")

    def i32(self):
        return self._take(">i")

    def i64(self):
        return self._take(">q")

    def bool(self):
        return self.i8() != 0

    def string(self):
        n = self.i16()
        if n < 0:
            return None
        v = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return v

    def bytes(self):
        n = self.i32()
        if n < 0:
            return None
        v = self.data[self.pos:self.pos + n]
        self.pos += n
        return v

    def array(self, dec):
        n = self.i32()
        if n < 0:
            return None
        return [dec(self) for _ in range(n)]


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def read_response(sock, correlation_id):
    """Reads one response (header v0); returns a Reader positioned at the body."""
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    r = Reader(recv_exact(sock, size))
    got = r.i32()
    assert got == correlation_id, f"correlation id {got}, expected {correlation_id}"
    return r


class Conn:
    """One connection to one broker (`addr` is "host:port")."""

    def __init__(self, addr, timeout=10.0):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.next_id = 1

    def send(self, api_key, version, body):
        """Writes a request; returns its correlation id (read the answer with recv)."""
        cid = self.next_id
        self.next_id += 1
        self.sock.sendall(frame(api_key, version, cid, body))
        return cid

    def recv(self, cid, timeout=None):
        if timeout is not None:
            self.sock.settimeout(timeout)
        return read_response(self.sock, cid)

    def call(self, api_key, version, body):
        return self.recv(self.send(api_key, version, body))

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- the requests ---------------------------------------------------------------------------

def metadata(addr, topics=None, timeout=10.0):
    """Metadata v1 from the broker at `addr` (all topics when `topics` is None):
    {"brokers": {id: (host, port)}, "controller": id,
     "topics": {name: {"error": code, "partitions": {p: leader}}}}"""
    with Conn(addr, timeout=timeout) as c:
        r = c.call(METADATA, 1, array(topics, string))
    brokers = {}
    for node, host, port, _rack in r.array(lambda r: (r.i32(), r.string(), r.i32(), r.string())):
        brokers[node] = (host, port)
    controller = r.i32()

    def partition(r):
        err, p, leader = r.i16(), r.i32(), r.i32()
        r.array(Reader.i32)
        r.array(Reader.i32)
        return p, leader, err

    out = {}
    for err, name, _internal, parts in r.array(
            lambda r: (r.i16(), r.string(), r.bool(), r.array(partition))):
        out[name] = {"error": err, "partitions": {p: leader for p, leader, _ in parts}}
    return {"brokers": brokers, "controller": controller, "topics": out}


def find_coordinator(addr, group):
    """FindCoordinator v1 (group) at `addr`: (error code, node id, host, port)."""
    with Conn(addr) as c:
        r = c.call(FIND_COORDINATOR, 1, string(group) + i8(0))
    r.i32()  # throttle
    err = r.i16()
    r.string()  # error message
    return err, r.i32(), r.string(), r.i32()


def offset_commit_body(group, generation, member, offsets, retention_ms=-1):
    """OffsetCommit v2 body; `offsets` is {topic: {partition: offset}}."""
    def part(item):
        p, off = item
        return i32(p) + i64(off) + string("")

    def topic(item):
        name, parts = item
        return string(name) + array(sorted(parts.items()), part)

    return (string(group) + i32(generation) + string(member) + i64(retention_ms)
            + array(sorted(offsets.items()), topic))


def offset_commit_result(r):
    """The OffsetCommit v2 answer: {(topic, partition): error code}."""
    out = {}
    for name, parts in r.array(lambda r: (r.string(), r.array(lambda r: (r.i32(), r.i16())))):
        for p, err in parts:
            out[(name, p)] = err
    return out


def offset_fetch(addr, group, topic, partitions):
    """OffsetFetch v1 at `addr`: {partition: (offset, error code)}."""
    with Conn(addr) as c:
        r = c.call(OFFSET_FETCH, 1, string(group) + array([topic], lambda t: string(t)
                                                          + array(partitions, i32)))
    out = {}
    for _name, parts in r.array(
            lambda r: (r.string(), r.array(lambda r: (r.i32(), r.i64(), r.string(), r.i16())))):
        for p, off, _meta, err in parts:
            out[p] = (off, err)
    return out


def describe_group(addr, group):
    """DescribeGroups v0 at `addr`: (error code, state, sorted client ids of the members)."""
    with Conn(addr) as c:
        r = c.call(DESCRIBE_GROUPS, 0, array([group], string))

    def member(r):
        _member_id, client_id, _host = r.string(), r.string(), r.string()
        r.bytes()
        r.bytes()
        return client_id

    (err, _gid, state, _ptype, _proto, members), = r.array(
        lambda r: (r.i16(), r.string(), r.string(), r.string(), r.string(), r.array(member)))
    return err, state, sorted(members)


def group_at(addrs, group):
    """Asks the brokers at `addrs` in turn for the group's coordinator, then asks that one to
    describe the group: (coordinator id, error code, state, client ids); None when nobody
    answers."""
    for addr in addrs:
        try:
            err, node, host, port = find_coordinator(addr, group)
        except OSError:
            continue
        if err != 0:
            return node, err, None, []
        try:
            return (node, *describe_group(f"{host}:{port}", group))
        except OSError:
            return node, -1, None, []
    return None
