"""An order: charge, wait for the warehouse, ship. Refunds the charge if shipping fails.

stepstone run order-flow --params '{"order_id": "A-1", "amount": 42}' --wait
stepstone events send order-flow <instance id> packed --payload '{"by": "sam"}'
"""

from __future__ import annotations

from typing import Any

from stepstone import RollbackContext, WorkflowEntrypoint, WorkflowEvent, WorkflowStep


def charge_card(order_id: str, amount: float) -> dict[str, Any]:
    return {"charge_id": f"ch_{order_id}", "amount": amount}


def refund(ctx: RollbackContext) -> None:
    print(f"refunding {ctx.output['charge_id']}")


class OrderFlow(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> dict[str, Any]:
        order = event.payload or {}
        charge = await step.do(
            "charge",
            charge_card,
            order.get("order_id", "demo"),
            order.get("amount", 10),
            retries={"limit": 3, "delay": "1 second", "backoff": "exponential"},
            timeout="30 seconds",
            rollback=refund,
        )
        await step.sleep("cool off", "2 seconds")
        packed = await step.wait_for_event("packed", type="packed", timeout="1 hour")

        @step.do("ship")
        async def ship() -> dict[str, Any]:
            return {"tracking": f"TRK-{charge['charge_id']}", "packed_by": packed.payload}

        return {"charge": charge, "shipment": await ship()}
