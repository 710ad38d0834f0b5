"""The serve and train workloads: their systemd units (`units`), the files the units, the
daemon and the CLI hand each other (`state`), a start request (`request`), the units'
entrypoint (`entrypoint`) and what launching in the ML venv needs (`launch`).

The modules are imported one by one, never from here: the entrypoint reaches serve/ and
train/, which themselves use `state` and `launch`."""
