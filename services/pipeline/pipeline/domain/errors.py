"""Errors the pipeline's rules raise when a request breaks them; the API maps them to 4xx."""

from __future__ import annotations

from dataclasses import dataclass


class DomainError(Exception):
    """A request that the pipeline's rules refuse, with the reason in the message."""


class IllegalTransition(DomainError):
    """A change was asked to do something its current state does not allow."""

    def __init__(self, change_id: str, action: str, state: str, why: str = "") -> None:
        self.change_id = change_id
        self.action = action
        self.state = state
        detail = f": {why}" if why else ""
        super().__init__(f"cannot {action} change {change_id} while it is {state}{detail}")


class InvalidChange(DomainError):
    """A change request whose target does not fit its kind."""


class PlanningError(DomainError):
    """A change that cannot be turned into a plan."""


@dataclass(frozen=True)
class Shortage:
    """Room missing in one zone for one batch: how many instances and what they need."""

    zone: str
    batch: int
    instances: int
    cpu: float
    memory_mb: int
    free_cpu: float
    free_memory_mb: int

    def describe(self) -> str:
        """Say in one sentence what is missing where."""
        return (
            f"zone {self.zone} lacks room for {self.instances} instance(s) in batch {self.batch}"
            f" (they need cpu {self.cpu:g} and memory {self.memory_mb} MiB; its hosts have"
            f" cpu {self.free_cpu:g} and memory {self.free_memory_mb} MiB free in total)"
        )


class InsufficientCapacity(PlanningError):
    """The hosts lack the room a plan needs; `shortages` says how much is missing where."""

    def __init__(self, shortages: list[Shortage]) -> None:
        self.shortages = shortages
        super().__init__(
            "not enough capacity: " + "; ".join(shortage.describe() for shortage in shortages)
        )
