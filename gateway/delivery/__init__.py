"""Delivery to agent endpoints (PROTOCOL section 6): the outbox worker, the webhook sender,
the retry schedule, and the address checks that keep the gateway from being turned on its own
network.

    addresses.py  pure: which IP addresses and URL hosts are refused
    resolve.py    one DNS lookup, every answer checked
    sender.py     the HTTP POST, pinned to the checked addresses, no redirects
    schedule.py   pure: status classification, backoff with jitter, Retry-After
    worker.py     the generic outbox worker (kinds, partitions, leases, attempts)
    wakeup.py     the `work.<kind>` message: the committed row and its partition
    deliverer.py  the "delivery" kind: signed webhooks, synchronous replies
"""
