"""What the head, the actors and the driver share: settings, MongoDB access, event payloads, errors.

Nothing in here imports from `head`, `actors` or `cluster`.
"""
