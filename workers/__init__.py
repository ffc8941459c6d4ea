"""RQ jobs, the per-process runtime they share, the scheduler, the process supervisor and channel health.

Queues are named for what waits on them: ``inbound`` (polls that fetch customers' messages), ``outbound`` (replies
customers wait for) and ``default`` (sweeps and housekeeping).
"""
