"""Prefect's documented automation for zombie flow runs ("Detect zombie flows"), for one pool: when
a running flow run of the pool has sent no heartbeat for the window, the server marks it Crashed.

A flow run's engine emits `prefect.flow-run.heartbeat` every PREFECT_FLOWS_HEARTBEAT_FREQUENCY
seconds while it runs (prefect 3.9.1, flow_engine.py `_send_heartbeats`), and its events client
adds the run's work pool as a related resource (events/related.py
`related_resources_from_run_context`), as the server does to state-change events: so the trigger
can watch this pool's runs alone. A run that never sent a heartbeat is never watched, and one that
ends (Completed, Failed, Cancelled, Crashed) or is paused or suspended (its process may be gone on
purpose) stops being watched until it runs again."""

from datetime import timedelta
from typing import Any

from prefect import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
# The documented automation's expected events, plus Paused and Suspended: a suspended run's
# process exits by design, and is not dead.
ENDS_THE_WATCH = (
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
    "prefect.flow-run.Paused",
    "prefect.flow-run.Suspended",
)


def automation_name(pool_name: str) -> str:
    return f"prefect-aci: crash runs of {pool_name} without heartbeats"


def zombie_automation(pool_name: str, pool_id: str, window_seconds: int) -> AutomationCore:
    """The automation for the pool of id ``pool_id``: after each heartbeat of one of its flow
    runs, another heartbeat or an end is expected within ``window_seconds``; else that run is
    proposed Crashed (not forced: a run that has just ended keeps its state)."""
    return AutomationCore(
        name=automation_name(pool_name),
        enabled=True,
        description=(
            f"Made by prefect-aci register: marks a flow run of work pool {pool_name} Crashed when "
            f"it has sent no heartbeat for {window_seconds} s (its container or its worker died "
            "without reporting)."
        ),
        trigger=EventTrigger(
            match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
            match_related=ResourceSpecification(
                {
                    "prefect.resource.role": "work-pool",
                    "prefect.resource.id": f"prefect.work-pool.{pool_id}",
                }
            ),
            after={HEARTBEAT_EVENT},
            expect={HEARTBEAT_EVENT, *ENDS_THE_WATCH},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=window_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=(
                    f"No heartbeat for {window_seconds} s: the flow run's container or its "
                    "worker stopped without reporting a final state (prefect-aci's heartbeat "
                    "automation)"
                ),
            )
        ],
    )


def _comparable(automation: AutomationCore) -> dict[str, Any]:
    """What the automation does, with its trigger's sets in a fixed order and no ids."""
    fields = set(AutomationCore.model_fields) - {"owner_resource"}
    dumped = AutomationCore.model_validate(automation.model_dump()).model_dump(
        mode="json", include=fields, exclude={"trigger": {"id"}}
    )
    trigger = dumped["trigger"]
    for key in ("after", "expect", "for_each"):
        trigger[key] = sorted(trigger.get(key) or [])
    return dumped


def save_automation(automation: AutomationCore, dry_run: bool) -> str:
    """Create the automation, or update the one of its name when it differs; returns
    created, updated or unchanged. Extra automations of the same name are deleted (updated)."""
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(automation.name)
        if existing and len(existing) == 1 and _comparable(existing[0]) == _comparable(automation):
            return "unchanged"
        if dry_run:
            return "updated" if existing else "created"
        if not existing:
            client.create_automation(automation)
            return "created"
        first, *others = existing
        client.update_automation(first.id, automation)
        for other in others:
            client.delete_automation(other.id)
        return "updated"
