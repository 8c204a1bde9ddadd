"""Talking to the edit server (bpy-free): :mod:`.api` (HTTP client and the job poller) and
:mod:`.server_process` (start and stop a local server)."""
