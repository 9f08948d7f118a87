"""The `dagnats` command line, built on dagnats.AsyncClient.

    main.py           the root group, main(), and error -> exit code mapping (one place)
    workflow_cmds.py  workflow register / validate / list / show / delete
    run_cmds.py       run start / retry / rerun [--watch], status / events / list / cancel
    dlq_cmds.py       dlq list / replay / discard
    serve_cmds.py     serve, worker run, and the hidden _component api|engine
    render.py         pure output formatting
    common.py         shared options, client sessions, logging
"""
