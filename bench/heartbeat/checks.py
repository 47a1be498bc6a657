"""The heartbeat benchmark's correctness checks, read from the database after the load.

- Stored seq: every node's `last_seq` must be the highest seq of its heartbeats answered 200 in the
  load (a stale report that overwrote a newer one would leave it lower).
- A stopped agent: one agent sends nothing for three intervals; its node must go down within
  2 intervals + 1 s of its last accepted heartbeat (the issue's bound; the liveness sweep plans
  its next run at the oldest heartbeat's deadline, apps/capacity/tasks.py), and be ready again
  with its next heartbeat.
"""

from __future__ import annotations

from .portal import SimulatedAgent
from .report import Measured


def correctness_print(*, agents: list[SimulatedAgent], load: Measured, pause: dict | None, interval: float) -> bool:
    from apps.capacity.models import Node, NodeEvent, NodeState

    node_of = {agent.index: agent.auth.split(":", 1)[0] for agent in agents}
    stored = {str(pk): seq for pk, seq in Node.objects.filter(pk__in=node_of.values()).values_list("pk", "last_seq")}
    accepted = load.result["accepted_seq"]
    newest = sum(1 for index, seq in accepted.items() if stored[node_of[index]] == seq)
    lost = sum(1 for index, seq in accepted.items() if stored[node_of[index]] < seq)
    print(
        f"\nCorrectness: {newest} of {len(accepted)} nodes that reported hold their newest accepted seq, "
        f"{len(accepted) - newest - lost} a newer one (its answer came after the load ended); "
        f"{lost} hold an older one (a stale report won: must be 0)"
    )
    ok = lost == 0
    if pause is None:
        print("   stopped agent: skipped (the load is too short for it)")
        return ok
    node = node_of[pause["index"]]
    beats = sorted(load.result["beats"].get(pause["index"], []))
    if not beats:
        print("   stopped agent: none of its heartbeats was accepted in the load")
        return False
    # Only what happened during the load (earlier phases leave the node down between them).
    events = [
        (state, at.timestamp())
        for state, at in NodeEvent.objects.filter(node_id=node)
        .order_by("created_at")
        .values_list("to_state", "created_at")
        if at.timestamp() > beats[0]
    ]
    down = next((at for state, at in events if state == NodeState.DOWN), None)
    if down is None:
        print(f"   stopped agent: its node did NOT go down (events: {events})")
        return False
    before = max((t for t in beats if t < down), default=None)
    after = min((t for t in beats if t > down), default=None)
    ready = next((at for state, at in events if state == NodeState.READY and at > down), None)
    bound = 2 * interval + 1
    went = down - before if before is not None else float("nan")
    print(
        f"   stopped agent ({pause['until'] - pause['from']:g} s): its node went down {went:.1f} s after its last "
        f"accepted heartbeat (bound 2 intervals + 1 s = {bound:g} s: {'met' if went <= bound else 'MISSED'})"
    )
    if ready is None or after is None:
        print("   ... and did NOT come back")
        return False
    print(f"   ... and was ready again {ready - after:+.2f} s after its first heartbeat back")
    return ok
