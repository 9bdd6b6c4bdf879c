"""The operator layer: the `clientvault` command, the `up` supervisor, the embedded servers, the data dir, the
migration runner and the one registry of processes (ops/registry.py).

It sits on top: it may import the kit (`clientvault/`), the gateway's `main()`, and of each service only its
`main()` and its operator surface `services/<name>/admin.py`. Nothing below imports it.
"""
