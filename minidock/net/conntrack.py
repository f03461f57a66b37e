"""Forget the connection-tracking entries of ports that are no longer published.

A flow the kernel has tracked keeps its NAT decision: a UDP "connection" to a published
port would go on being sent to the address of a container that is gone (or to the next
container that leases that address). When a container's ports go, the entries whose replies
come from its address are deleted, through ctnetlink (pyroute2's Conntrack), as Docker does.
Best effort: a kernel without ctnetlink has nothing to flush that minidock could reach.
"""

from __future__ import annotations

from minidock.linux import trace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from minidock.net.ports import Forward


def forget(forwards: Iterable[Forward]) -> int:
    """Delete the tracked flows answered from the addresses of ``forwards``; how many."""
    ips = {f.ip for f in forwards if f.ip}
    if not ips:
        return 0
    import asyncio

    try:
        gone = asyncio.run(_forget(ips))
    except Exception as e:  # no ctnetlink (module not loaded): nothing minidock could reach
        trace.note(f"conntrack: not reachable ({e}); nothing flushed")
        return 0
    trace.note(f"conntrack: {gone} tracked flow(s) to {', '.join(sorted(ips))} deleted")
    return gone


async def _forget(ips: set[str]) -> int:
    from pyroute2.conntrack import AsyncConntrack

    ct = AsyncConntrack()
    gone = 0
    try:
        doomed = [entry async for entry in await ct.dump_entries()
                  if entry.tuple_reply is not None and entry.tuple_reply.saddr in ips]
        for entry in doomed:
            try:
                await ct.delete(entry)
                gone += 1
            except Exception:  # it ended meanwhile
                pass
    finally:
        ct.close()
    return gone
