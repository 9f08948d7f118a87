"""dagnats.server: everything `dagnats serve` runs on one machine.

    binary         find_nats_server, nats_server_version, survey (for `dagnats doctor`)
    download       the pinned nats-server release, verified, into the user cache
    nats_process   NatsServer: a nats-server child with JetStream on a local store
    ready          notify_ready (children call it), wait_ready (the supervisor side)
    lock           DataDirLock: one serve per data dir
    child          ChildSpec and the running ChildProcess
    supervisor     Supervisor, RestartPolicy, self_command
    serve          serve(ServeOptions): lock, NATS, provision, supervise until a signal
    store_version  <data_dir>/store-version.json: migrate older stores, refuse newer ones
    state          serve.json (the pid file), running_pid, stop_serve (`dagnats stop`)
    detach         `serve --detach`: serve in the background, back once it is ready
    logs           per-process log files, rotation, tail and follow (`dagnats logs`)
    doctor         the checks of `dagnats doctor`
    about          the versions `dagnats version` prints
    procs          process and port helpers shared by the above

Nothing is re-exported here: every child imports `dagnats.server.ready`, and that must not
drag in the rest.
"""
