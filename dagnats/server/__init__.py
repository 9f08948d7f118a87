"""dagnats.server: everything `dagnats serve` runs on one machine.

    binary         find_nats_server, nats_server_version, survey (for `dagnats doctor`)
    nats_process   NatsServer: a nats-server child with JetStream on a local store
    ready          notify_ready (children call it), wait_ready (the supervisor side)
    lock           DataDirLock: one serve per data dir
    child          ChildSpec and the running ChildProcess
    supervisor     Supervisor, RestartPolicy, self_command
    serve          serve(ServeOptions): lock, NATS, provision, supervise until a signal
    procs          process and port helpers shared by the above

Nothing is re-exported here: every child imports `dagnats.server.ready`, and that must not
drag in the rest.
"""
