"""Budgets that keep one visitor, or a few, from filling the server: per address and for the whole store.

Pure objects, as ``transport/limits.py``: no Quart, no clock of their own (callers pass ``now``,
``time.monotonic()``), so the tests drive them with a fake clock. docs/security.md gives each default
and why.

- ``AddressBudgets``: what one client address (``transport.limits.address_key``: an IPv4 address or
  an IPv6 /64) may spend across all its connections, sockets and HTTP channels alike: visitor messages
  and their bytes per minute, new conversations per hour, consultant replies per minute. Each is a
  token bucket that holds one period's worth, so a visitor who was quiet may spend it at once.
- ``StoreBudget``: the store's size against a warning level and a refusal level; above the refusal
  level new conversations are refused and the conversations that exist go on.
"""

import logging

from protocol.ratelimit import TokenBucket

log = logging.getLogger("chat_widget.budgets")

MINUTE = 60
HOUR = 3600

OK = "ok"
WARN = "warn"
FULL = "full"


class AddressBudget:
    """The buckets of one address."""

    __slots__ = ("messages", "bytes", "conversations", "replies")

    def __init__(self, limits):
        self.messages = TokenBucket(limits.messages_per_minute, MINUTE, limits.messages_per_minute)
        self.bytes = TokenBucket(limits.bytes_per_minute, MINUTE, limits.bytes_per_minute)
        self.conversations = TokenBucket(limits.conversations_per_hour, HOUR, limits.conversations_per_hour)
        self.replies = TokenBucket(limits.replies_per_minute, MINUTE, limits.replies_per_minute)

    def full(self, now):
        """Every bucket is full again: the address is as good as new and need not be remembered."""
        buckets = (self.messages, self.bytes, self.conversations, self.replies)
        return all(bucket.wait(now, bucket.burst) == 0 for bucket in buckets)


class AddressBudgets:
    """The budgets of every address seen lately (one process: see docs/security.md for clusters)."""

    def __init__(self, messages_per_minute, bytes_per_minute, conversations_per_hour, replies_per_minute):
        if min(messages_per_minute, bytes_per_minute, conversations_per_hour, replies_per_minute) < 1:
            raise ValueError("every budget must be at least 1")
        self.messages_per_minute = messages_per_minute
        self.bytes_per_minute = bytes_per_minute
        self.conversations_per_hour = conversations_per_hour
        self.replies_per_minute = replies_per_minute
        self.addresses = {}  # address -> AddressBudget

    @classmethod
    def from_config(cls, config):
        return cls(config.address_messages_per_minute, config.address_bytes_per_minute,
                   config.address_conversations_per_hour, config.address_replies_per_minute)

    def _of(self, address):
        budget = self.addresses.get(address)
        if budget is None:
            budget = self.addresses[address] = AddressBudget(self)
        return budget

    def message_wait(self, address, size, now):
        """Seconds until ``address`` may send a message of ``size`` bytes (0: now). Takes nothing."""
        budget = self._of(address)
        return max(budget.messages.wait(now), budget.bytes.wait(now, min(size, budget.bytes.burst)))

    def spend_message(self, address, size, now):
        """A message of ``size`` bytes was accepted (after ``message_wait`` said 0)."""
        budget = self._of(address)
        budget.messages.take(now)
        budget.bytes.take(now, min(size, budget.bytes.burst))

    def start_conversation(self, address, now):
        """Take one new conversation; False when the address started its hourly budget's worth."""
        return self._of(address).conversations.take(now)

    def conversation_wait(self, address, now):
        return self._of(address).conversations.wait(now)

    def reply(self, address, now):
        """Take one consultant reply; False when the address used up this minute's."""
        return self._of(address).replies.take(now)

    def prune(self, now):
        """Forget the addresses whose buckets are all full again; returns how many are kept."""
        for address in [a for a, budget in self.addresses.items() if budget.full(now)]:
            del self.addresses[address]
        return len(self.addresses)


class StoreBudget:
    """The store's size (bytes in use, as the store measures it) against its budget.

    ``level``: ``"ok"``, ``"warn"`` (at ``warn_percent`` of the budget) or ``"full"`` (at the budget:
    new conversations are refused). ``used`` is None until the first measurement.
    """

    def __init__(self, max_bytes, warn_percent):
        if max_bytes < 1 or not 1 <= warn_percent <= 100:
            raise ValueError("max_bytes must be positive and warn_percent between 1 and 100")
        self.max_bytes = max_bytes
        self.warn_bytes = max_bytes * warn_percent // 100
        self.used = None
        self.level = OK

    def update(self, used):
        """A new measurement; logs when the level changes. Returns the level."""
        self.used = used
        level = FULL if used >= self.max_bytes else (WARN if used >= self.warn_bytes else OK)
        if level != self.level:
            report = log.warning if level != OK else log.info
            report("store budget level=%s used=%d warn=%d max=%d", level, used, self.warn_bytes, self.max_bytes)
        self.level = level
        return level

    @property
    def accepting(self):
        """New conversations may start."""
        return self.level != FULL

    def describe(self):
        """For /healthz: what the level means, in one sentence."""
        used = "unknown" if self.used is None else f"{self.used:,}"
        if self.level == FULL:
            return (f"store holds {used} of its {self.max_bytes:,} bytes budget: new conversations are refused "
                    "until expired ones are swept (setting store_max_bytes)")
        if self.level == WARN:
            return f"store holds {used} bytes, above the warning level of {self.warn_bytes:,} (setting store_warn_percent)"
        return None
