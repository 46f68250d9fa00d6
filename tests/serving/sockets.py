"""Which process holds which end of a loopback TCP connection, read from /proc: for tests that must know
which `--workers` worker a connection landed on, or that a server has accepted connections."""

from __future__ import annotations

import os


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process `pid` has open."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(int(link[8:-1]))
    return inodes


def tcp_table() -> list[tuple[int, int, int]]:
    """(local port, remote port, inode) of every established TCP connection in this namespace (IPv6
    too: gRPC's sockets are dual-stack). A connection the server has not accepted yet has inode 0."""
    rows = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as table:
            next(table)
            for line in table:
                fields = line.split()
                if fields[3] == "01":  # ESTABLISHED
                    local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
                    rows.append((local, remote, int(fields[9])))
    return rows


def client_ports(server_port: int) -> set[int]:
    """The local ports of this process's connections to `server_port`."""
    mine = socket_inodes(os.getpid())
    return {local for local, remote, inode in tcp_table() if remote == server_port and inode in mine}


def worker_of(client_port: int, server_port: int, workers: list[int]) -> int | None:
    """The worker pid holding the server end of the connection from `client_port`."""
    table = tcp_table()
    for pid in workers:
        inodes = socket_inodes(pid)
        for local, remote, inode in table:
            if local == server_port and remote == client_port and inode in inodes:
                return pid
    return None


def accepted(pid: int, server_port: int) -> int:
    """How many connections to `server_port` process `pid` has accepted and still holds."""
    inodes = socket_inodes(pid)
    return sum(1 for local, _, inode in tcp_table() if local == server_port and inode in inodes)
