"""What a message does: roles and policy, the recipient, the task state machine, escalation
rules and the language port. Pure: imports `identity` only and does no I/O."""
