"""bench/pipeline: alter0's orchestration overhead against a raw Huey chain, measured in one run.

Modules: ``rawchain`` (the baseline: three chained Huey tasks, its consumer), ``installs`` (fresh alter0
installs, worker and gunicorn processes, ready times), ``phases`` (throughput and paced latency of both),
``cost`` (the floor, fsyncs counted with strace, RSS), ``extras`` (router latency, routing under long generations, HTTP intake with wrk), ``report`` (the table),
``run`` (the command line).
"""
