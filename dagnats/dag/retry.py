"""Retry maths: whether a failed attempt gets another, and how long to wait before it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from dagnats.dag.durations import Duration


class RetryPolicy(BaseModel):
    """What to do when an attempt fails: how many retries, and how long to wait before each.

    Numbers are strict: `true` or `"3"` is refused, not coerced.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: StrictInt = Field(default=3, ge=0, le=1000)
    """Retries after the first failure (so max_attempts + 1 attempts in all)."""
    strategy: Literal["fixed", "linear", "exponential"] = "exponential"
    initial_delay: Duration = 1.0
    max_delay: Duration = 300.0
    multiplier: StrictFloat = Field(default=2.0, ge=1.0, le=100.0, allow_inf_nan=False)


def total_attempts(policy: RetryPolicy | None) -> int:
    """Attempts allowed in all: the first plus `max_attempts` retries (1 with no policy)."""
    return 1 + (policy.max_attempts if policy else 0)


def retry_delay_s(policy: RetryPolicy, retry_number: int) -> float:
    """Seconds to wait before retry number `retry_number` (1 for the first retry).

    fixed waits initial_delay each time; linear waits initial_delay * n; exponential waits
    initial_delay * multiplier ** (n - 1). Every wait is capped at max_delay.
    """
    if retry_number < 1:
        raise ValueError("retry_number starts at 1")
    base = policy.initial_delay
    if policy.strategy == "fixed":
        delay = base
    elif policy.strategy == "linear":
        delay = base * retry_number
    else:
        delay = base * policy.multiplier ** (retry_number - 1)
    return min(delay, policy.max_delay)


def should_retry(policy: RetryPolicy | None, attempts_made: int, retryable: bool) -> bool:
    """True when a failure after `attempts_made` attempts gets another attempt."""
    return retryable and attempts_made < total_attempts(policy)
