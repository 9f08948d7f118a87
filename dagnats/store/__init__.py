"""Data access over JetStream shared by the API, the engine and the workers.

`history`: append and read run events (the source of truth); `snapshots`: the
`workflow_runs` cache with compare-and-set; `definitions`: registered workflows.
"""
